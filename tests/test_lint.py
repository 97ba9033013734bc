"""The code passes its own linters: ruff (style, bugs) and mypy (types). Part of the test command so
CI enforces them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _tool(name):
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is in the test extra)")
    return found


SOURCES = ["varctl", "tests", "benchmarks", "scripts", "sample_models"]


def test_ruff():
    """Style and bugs, plus unused `noqa` comments (RUF100), simplifications (SIM) and a complexity
    bound (C90, pyproject.toml)."""
    result = subprocess.run([_tool("ruff"), "check", *SOURCES], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format():
    """The formatter owns the layout: `ruff format` leaves every file as it is."""
    result = subprocess.run(
        [_tool("ruff"), "format", "--check", *SOURCES], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy():
    result = subprocess.run([_tool("mypy"), "varctl"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
