"""Shared fixtures: the Keras-built zoo (session scoped, saved as .keras and .h5) and sample paths."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"


# The environment of every CLI run: FORCE_COLOR / TTY_COMPATIBLE would make rich decorate a non-TTY.
ENV = {
    "NO_COLOR": "1",
    "COLUMNS": "120",
    "FORCE_COLOR": None,
    "TTY_COMPATIBLE": None,
    "GITHUB_STEP_SUMMARY": None,
}


def pytest_addoption(parser):
    parser.addoption(
        "--update-golden", action="store_true", help="Rewrite tests/golden/ from the current output."
    )


@pytest.fixture
def cli():
    """cli(*args, code=0, env=None) -> Result: varctl run through CliRunner with ENV, exit code asserted,
    no traceback; stdout (data) and stderr (messages) kept apart."""
    from typer.testing import CliRunner

    from varctl.cli import app

    def run(*args: str, code: int = 0, env: dict | None = None):
        result = CliRunner().invoke(app, [str(a) for a in args], env={**ENV, **(env or {})})
        assert result.exit_code == code, (result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        return result

    return run


def pytest_report_header(config):
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for pkg in ("keras", "tensorflow", "h5py", "numpy", "typer", "rich"):
        try:
            parts.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            parts.append(f"{pkg} absent")
    return "varctl deps: " + ", ".join(parts)


@pytest.fixture(scope="session")
def samples_on_path():
    """Make the sample models' custom layer module importable (for Keras loading them)."""
    sys.path.insert(0, str(SAMPLES))
    import varctl_samples  # noqa: F401

    return SAMPLES


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory):
    """Every zoo model saved by Keras as name.keras and (when Keras can round-trip it) name.h5."""
    pytest.importorskip("keras")
    import keras

    from tests.zoo import ZOO

    out = tmp_path_factory.mktemp("zoo")
    keras.utils.set_random_seed(0)
    for name, build in ZOO.items():
        model = build()
        model.save(out / f"{name}.keras")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model.save(out / f"{name}.h5")
                keras.saving.load_model(out / f"{name}.h5", compile=False)
            except Exception:
                (out / f"{name}.h5").unlink(missing_ok=True)
    return out


@pytest.fixture
def public_tmp():
    """A folder every user may enter (pytest's tmp_path sits below a 0700 folder of root's), for
    tests that drop privileges."""
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="varctl-test-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def fuzz_settings(default_examples: int):
    """The hypothesis settings every fuzz test uses: VARCTL_FUZZ_EXAMPLES examples (else the
    default), derandomized unless VARCTL_FUZZ_SEED names a seed, no example database."""
    from hypothesis import HealthCheck, seed, settings

    examples = int(os.environ.get("VARCTL_FUZZ_EXAMPLES", str(default_examples)))
    chosen = os.environ.get("VARCTL_FUZZ_SEED")

    def apply(f):
        f = settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=chosen is None,
            suppress_health_check=list(HealthCheck),
        )(f)
        return seed(int(chosen))(f) if chosen else f

    return apply


@pytest.fixture
def tmpfs(tmp_path):
    """`tmpfs("8m")`: a fresh tmpfs of that size under tmp_path (root only; skips where mount is
    not permitted), unmounted after the test."""
    import subprocess

    mounted: list[Path] = []

    def mount(size: str) -> Path:
        mnt = tmp_path / f"disk{len(mounted)}"
        mnt.mkdir()
        proc = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True
        )
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(mnt)
        return mnt

    yield mount
    for mnt in mounted:
        subprocess.run(["umount", str(mnt)], check=True)
