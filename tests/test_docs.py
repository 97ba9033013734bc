"""The README keeps up with the code: every command is documented and has an example in its help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from varctl import errors
from varctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def _section(title: str) -> str:
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_the_app_registers_exactly_the_commands_of_cli_py():
    assert COMMANDS == sorted(["list", "freeze", "unfreeze", "check", "diff", "stats", "view"])


@pytest.mark.parametrize("name", COMMANDS)
def test_command_is_documented_in_the_readme(name):
    assert f"### `varctl {name}`" in _section("Commands"), (
        f"add a '### `varctl {name}`' section under '## Commands' in README.md"
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_command_help_has_an_example(name):
    result = CliRunner().invoke(app, [name, "--help"], env=ENV, prog_name="varctl")
    assert result.exit_code == 0, result.output
    assert "Example" in result.stdout
    example = " ".join(result.stdout.split("Example", 1)[1].split())  # help text is wrapped
    assert f"varctl {name} " in example


def test_readme_documents_no_command_that_does_not_exist():
    documented = re.findall(r"^### `varctl (\S+)`", _section("Commands"), re.M)
    assert sorted(documented) == COMMANDS


def test_readme_has_the_setup_commands_ci_runs():
    try_it = (
        "python3 -m venv .venv && .venv/bin/pip install -e . && "
        ".venv/bin/varctl list sample_models/transfer_learning.keras"
    )
    assert f"```sh\n{try_it}\n```" in README
    assert "```sh\nbash .ci/run\n```" in README
    assert (ROOT / ".ci" / "run").is_file()


def test_readme_exit_codes_match_errors_py():
    codes = {int(c) for c in re.findall(r"^\| (\d+) \|", _section("Exit codes"), re.M)}
    defined = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert codes == defined


def test_readme_documents_every_json_key():
    from varctl.model import LIST_SCHEMA
    from varctl.views import LAYERS_SCHEMA

    json_doc = _section("JSON output")
    assert LIST_SCHEMA in json_doc and LAYERS_SCHEMA in json_doc
    list_keys = ["schema", "model", "format", "keras_version", "variables", "totals", "warnings"]
    var_keys = ["path", "layer", "name", "shape", "dtype", "params", "trainable", "reason"]
    total_keys = ["params", "trainable", "non_trainable", "bytes"]
    layer_keys = [
        "path",
        "name",
        "class_name",
        "depth",
        "variables",
        "params",
        "trainable_params",
        "state",
        "flag",
    ]
    for key in list_keys + layer_keys:
        assert re.search(rf"\| `{key}(` \||\.|\[\]\.)", json_doc), key
    for key in var_keys:
        assert f"| `variables[].{key}` |" in json_doc, key
    for key in total_keys:
        assert f"| `totals.{key}` |" in json_doc, key
