"""The exit-code table (varctl/errors.py, README "Exit codes"), pinned on bad inputs built here.

Every unreadable input must give exit 3, one `varctl: error: ...` line naming the file (plus an
optional `varctl: hint: ...` line), nothing on stdout and never a traceback.
"""

from __future__ import annotations

import os
import shutil
import signal
import struct
import zipfile
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path

import h5py
import pytest
from typer.testing import CliRunner

import varctl
from varctl import errors
from varctl.cli import app
from varctl.errors import EXIT_UNREADABLE, EXIT_USAGE

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
runner = CliRunner()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def missing(tmp: Path) -> Path:
    return tmp / "nope.keras"


def directory(tmp: Path) -> Path:
    (tmp / "model.keras").mkdir()
    return tmp / "model.keras"


def savedmodel_dir(tmp: Path) -> Path:
    (tmp / "export").mkdir()
    (tmp / "export" / "saved_model.pb").write_bytes(b"\x08\x01")
    return tmp / "export"


def broken_symlink(tmp: Path) -> Path:
    (tmp / "link.keras").symlink_to(tmp / "gone.keras")
    return tmp / "link.keras"


def empty(tmp: Path) -> Path:
    return _write(tmp / "empty.keras", b"")


def random_bytes(tmp: Path) -> Path:
    return _write(tmp / "noise.h5", bytes((i * 197 + 13) % 256 for i in range(4096)))


def text_file(tmp: Path) -> Path:
    return _write(tmp / "x.keras", b"this is not a model\n")


def truncated_keras(tmp: Path) -> Path:
    data = (SAMPLES / "seed_dense.keras").read_bytes()
    return _write(tmp / "truncated.keras", data[: len(data) // 2])


def truncated_h5(tmp: Path) -> Path:
    data = (SAMPLES / "seed_dense.h5").read_bytes()
    return _write(tmp / "truncated.h5", data[: len(data) // 2])


def zip_without_config(tmp: Path) -> Path:
    return _zip(tmp / "noconfig.keras", {"metadata.json": b"{}", "model.weights.h5": b""})


def config_not_json(tmp: Path) -> Path:
    return _zip(tmp / "badjson.keras", {"config.json": b"{'class_name': Sequential"})


def config_too_deep(tmp: Path) -> Path:
    return _zip(tmp / "deep.keras", {"config.json": b"[" * 100_000 + b"]" * 100_000})


def keras_without_weights(tmp: Path) -> Path:
    with zipfile.ZipFile(SAMPLES / "seed_dense.keras") as zf:
        config = zf.read("config.json")
    return _zip(tmp / "noweights.keras", {"config.json": config})


def hdf5_without_model_config(tmp: Path) -> Path:
    path = tmp / "weights_only.h5"
    with h5py.File(path, "w") as f:
        f.create_group("model_weights").create_dataset("kernel", data=[1.0, 2.0])
    return path


def h5_external_link(tmp: Path) -> Path:
    path = shutil.copy(SAMPLES / "seed_dense.h5", tmp / "external.h5")
    with h5py.File(path, "a") as f:
        del f["model_weights"]
        f["model_weights"] = h5py.ExternalLink("/etc/passwd", "/")
    return Path(path)


def h5_nested_external_link(tmp: Path) -> Path:
    path = shutil.copy(SAMPLES / "seed_dense.h5", tmp / "external_layer.h5")
    with h5py.File(path, "a") as f:
        del f["model_weights/dense"]
        f["model_weights/dense"] = h5py.ExternalLink("/etc/passwd", "/")
    return Path(path)


def fifo(tmp: Path) -> Path:
    os.mkfifo(tmp / "pipe.keras")
    return tmp / "pipe.keras"


def zip_newer_version(tmp: Path) -> Path:
    # A zip whose central directory asks for a newer extractor: zipfile raises NotImplementedError.
    path = _zip(tmp / "v10.keras", {"config.json": b"{}"})
    data = bytearray(path.read_bytes())
    at = data.rfind(b"PK\x01\x02")
    data[at + 6 : at + 8] = struct.pack("<H", 100)
    return _write(path, bytes(data))


def h5_config_not_utf8(tmp: Path) -> Path:
    path = shutil.copy(SAMPLES / "seed_dense.h5", tmp / "latin1.h5")
    with h5py.File(path, "a") as f:
        raw = f.attrs["model_config"].encode().replace(b"seed_dense", b"seed_\xffdense", 1)
        del f.attrs["model_config"]
        f.attrs.create("model_config", raw, dtype=h5py.string_dtype("utf-8"))
    return Path(path)


Builder = Callable[[Path], Path]
UNREADABLE: list = [
    missing,
    directory,
    savedmodel_dir,
    broken_symlink,
    empty,
    random_bytes,
    text_file,
    truncated_keras,
    truncated_h5,
    zip_without_config,
    config_not_json,
    config_too_deep,
    keras_without_weights,
    hdf5_without_model_config,
    h5_external_link,
    h5_nested_external_link,
    fifo,
    zip_newer_version,
    h5_config_not_utf8,
]


@pytest.fixture(autouse=True)
def _no_hang():
    """A reader that blocks (on a FIFO, say) fails the test instead of hanging the suite."""

    def fire(signum, frame):
        raise TimeoutError("varctl blocked for 30 s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def invoke(*args: str):
    result = runner.invoke(app, list(args), env=ENV, prog_name="varctl")
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.mark.parametrize("build", UNREADABLE)
def test_unreadable_input_exits_3_with_one_line(tmp_path, build):
    path = str(build(tmp_path))
    result = invoke("list", path, "-f", "json")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) in (1, 2), lines
    assert lines[0].startswith(f"varctl: error: cannot open '{path}': "), lines
    assert len(lines[0]) > len(f"varctl: error: cannot open '{path}': ") + 5  # says what is wrong
    if len(lines) == 2:
        assert lines[1].startswith("varctl: hint: ")


def test_one_bad_model_among_good_ones_keeps_their_data(tmp_path):
    """Issue 5: one bad file does not hide the others; the exit code is the worst outcome."""
    bad = str(empty(tmp_path))
    result = invoke("list", str(SAMPLES / "seed_dense.keras"), bad)
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert "dense/kernel" in result.stdout
    assert result.stderr.startswith(f"varctl: error: cannot open '{bad}': ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--bogus", "m.keras"], "No such option: --bogus"),
        (["list"], "Missing argument"),
        (["list", "m.keras", "-f", "yaml"], "Invalid value"),
        (["frobnicate"], "No such command"),
    ],
    ids=["unknown-option", "no-model", "bad-format", "unknown-command"],
)
def test_typer_usage_errors_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stdout == ""
    assert "Usage: varctl" in result.stderr
    assert message in result.stderr


def test_varctl_usage_errors_exit_2():
    result = invoke("list", str(SAMPLES / "seed_dense.keras"), "-p", "nothing_like_it")
    assert result.exit_code == EXIT_USAGE, result.output
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == "varctl: error: pattern 'nothing_like_it' matches no layer"


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"varctl {varctl.__version__}\n"
    assert varctl.__version__ == version("varctl")


def test_root_help_lists_the_commands():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    assert "Usage: varctl" in result.stdout
    for name in ("list", "freeze", "unfreeze", "check", "diff", "stats"):
        assert f"  {name} " in result.stdout


# Every error class and the exit code it gives (README "Exit codes").
ERROR_CODES = {
    errors.VarctlError: errors.EXIT_USAGE,
    errors.UsageError: errors.EXIT_USAGE,
    errors.UnreadableModel: errors.EXIT_UNREADABLE,
    errors.UnsafeFile: errors.EXIT_UNREADABLE,
    errors.UnsupportedFormat: errors.EXIT_UNREADABLE,
    errors.OutputError: errors.EXIT_UNWRITABLE,
    errors.InternalError: errors.EXIT_BUG,
}


def test_every_error_class_is_in_the_table():
    def subclasses(cls: type) -> set[type]:
        return {cls} | {s for sub in cls.__subclasses__() for s in subclasses(sub)}

    assert {c for c in subclasses(errors.VarctlError) if c.__module__ == "varctl.errors"} == set(ERROR_CODES)
    assert [c for c, code in ERROR_CODES.items() if code == errors.EXIT_BUG] == [errors.InternalError]


@pytest.mark.parametrize("cls", list(ERROR_CODES), ids=lambda c: c.__name__)
def test_handle_errors_gives_each_class_its_code_and_one_line(cls):
    """The one decorator every command wears, on a command that raises `cls`."""
    import typer

    from varctl.commands._run import handle_errors

    probe = typer.Typer()

    @probe.command()
    @handle_errors
    def fail() -> None:
        raise cls("it went wrong: 'm.keras'", hint="try this")

    result = CliRunner().invoke(probe, [], env=ENV)
    assert result.exit_code == ERROR_CODES[cls]
    assert result.stderr == "varctl: error: it went wrong: 'm.keras'\nvarctl: hint: try this\n"
    assert result.stdout == ""


def test_a_bug_is_exit_70_with_one_line_and_a_debug_hint():
    import typer

    from varctl.commands._run import handle_errors

    probe = typer.Typer()

    @probe.command()
    @handle_errors
    def crash() -> None:
        {}["missing"]

    result = CliRunner().invoke(probe, [], env=ENV)
    assert result.exit_code == errors.EXIT_BUG
    assert result.stderr == (
        "varctl: error: internal error: KeyError: 'missing'; set VARCTL_DEBUG=1 for a traceback\n"
    )
    result = CliRunner().invoke(probe, [], env={**ENV, "VARCTL_DEBUG": "1"})
    assert "Traceback" in result.stderr and result.exit_code == errors.EXIT_BUG


def test_internal_error_points_at_varctl_debug():
    assert errors.InternalError("x").hint == "set VARCTL_DEBUG=1 for a traceback"
