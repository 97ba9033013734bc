"""Start-up stays cheap: `--version` and a plain `list` run without Typer, and `list -f json` never
imports rich.

benchmarks/run.py measures the times; these tests keep the imports that made them from coming back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from varctl import __version__
from varctl.cli import app

ROOT = Path(__file__).resolve().parent.parent

_PROBE = """
import sys
from varctl.__main__ import main
sys.argv = ["varctl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
sys.stderr.write("\\nMODULES " + repr(sorted(m for m in ("typer", "rich", "h5py", "numpy", "pydantic", "varctl.formats.rewrite", "zipfile", "dataclasses", "inspect") if m in sys.modules)) + "\\n")
"""


def _modules(*args: str, env: dict[str, str] | None = None) -> tuple[str, list[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )
    line = [x for x in proc.stderr.splitlines() if x.startswith("MODULES ")][-1]
    return proc.stdout, eval(line[len("MODULES ") :])


def test_version_fast_path_matches_typer():
    stdout, modules = _modules("--version")
    assert stdout == f"varctl {__version__}\n"
    assert stdout == CliRunner().invoke(app, ["--version"]).stdout
    assert modules == []


def test_help_needs_neither_rich_nor_h5py():
    stdout, modules = _modules("--help")
    assert "list" in stdout
    assert modules == ["inspect", "typer"]  # (Typer imports inspect)


def test_list_json_does_not_import_rich():
    stdout, modules = _modules("list", "sample_models/seed_dense.keras", "-f", "json")
    assert '"schema": "varctl.list/2"' in stdout
    assert modules == []  # no typer (varctl/commands/_argv.py), rich, h5py, numpy, pydantic, edit types,
    # no zipfile: the parent never opens the file (the sandbox's reader process does), and no
    # dataclasses nor the inspect it imports (~7 ms: see model.Record)


def test_check_of_flags_imports_neither_rich_nor_dataclasses():
    """No bar to draw (no values read), no TTY: `check` needs no rich (~35 ms), nor dataclasses."""
    stdout, modules = _modules("check", "sample_models/seed_dense.keras", "--trainable", "*")
    assert "1 model checked: 1 passed" in stdout
    assert modules == []


def test_list_of_a_legacy_h5_does_not_import_zipfile():
    """zipfile and what it imports (bz2, lzma, shutil, threading: ~4 ms) are for .keras archives."""
    for env in (None, {"VARCTL_NO_SANDBOX": "1"}):  # the parent; the reader, in-process
        stdout, modules = _modules("list", "sample_models/seed_dense.h5", "-f", "json", env=env)
        assert '"format": "h5"' in stdout
        assert modules == [], env
    stdout, modules = _modules("list", "sample_models/seed_dense.keras", env={"VARCTL_NO_SANDBOX": "1"})
    assert modules == ["zipfile"]  # (the probe sees it: the test can fail)
    stdout, modules = _modules("list", "sample_models/quant_int8.keras", env={"VARCTL_NO_SANDBOX": "1"})
    assert modules == ["dataclasses", "inspect", "zipfile"]  # quantization.py's own records


def _run_probe(probe: str) -> subprocess.CompletedProcess[str]:
    """`python -c probe` from the repository root; it must succeed."""
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _module(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "varctl", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,
    )


def test_the_console_entry_exits_at_once_with_every_byte_and_code():
    """run() ends the process with os._exit after flushing: nothing written may be lost, and
    each exit code (and Typer's own) comes through."""
    import json

    done = _module("list", "sample_models/transfer_learning.keras", "-f", "json")
    assert done.returncode == 0 and done.stderr == ""
    assert len(json.loads(done.stdout)["variables"]) > 200  # the whole document, flushed
    missing = _module("list", "nope.keras")
    assert (
        missing.returncode == 3
        and missing.stderr == "varctl: error: cannot open 'nope.keras': no such file\n"
    )
    assert _module("list", "m.keras", "--no-such-option").returncode == 2  # Typer's usage error
    assert _module("--help").returncode == 0


def test_a_reader_that_stops_early_is_not_an_error():
    """`varctl list m.keras | head -0`: the pipe is closed before varctl writes; it exits 0 quietly."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "varctl", "list", "sample_models/transfer_learning.keras"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # long before varctl has read the model and writes
    assert proc.wait(timeout=120) == 0
    assert proc.stderr.read() == b""


def test_one_read_imports_only_its_reader_and_a_second_read_imports_them_all():
    """The first input's reader is imported in its sandboxed child only; from the second read on,
    every reader is imported once here, so that no further child imports one."""
    probe = (
        "import sys\n"
        "from varctl.formats import open_model\n"
        "open_model('sample_models/seed_dense.keras')\n"
        "print(sorted(m for m in ('varctl.formats.keras_zip', 'varctl.formats.legacy_h5') if m in sys.modules))\n"
        "open_model('sample_models/seed_dense.keras')\n"
        "print(sorted(m for m in ('varctl.formats.keras_zip', 'varctl.formats.legacy_h5') if m in sys.modules))\n"
    )
    proc = _run_probe(probe)
    first, second = proc.stdout.splitlines()
    assert first == "[]"
    assert second == "['varctl.formats.keras_zip', 'varctl.formats.legacy_h5']"


def test_the_cli_reaps_its_reader_children_before_it_exits():
    """The parent goes on while a reader child exits (formats/_sandbox.py), but the CLI reaps it
    before leaving: orphans are not left to PID 1, which in a container may never reap them."""
    probe = (
        "import os, sys\n"
        "from varctl import __main__\n"
        "from varctl.formats import _sandbox\n"
        "def leave(code):\n"
        "    try:\n"
        "        left = os.waitpid(-1, os.WNOHANG)\n"
        "    except ChildProcessError:\n"
        "        left = 'none'\n"
        "    sys.stderr.write(f'EXITING {_sandbox._exiting} {left}\\n')\n"
        "    sys.stderr.flush()\n"
        "    os.__dict__['_exit_real'](code)\n"
        "os.__dict__['_exit_real'] = os._exit\n"
        "os._exit = leave\n"
        "sys.argv = ['varctl', 'list', 'sample_models/seed_dense.keras', '-f', 'json']\n"
        "__main__.run()\n"
    )
    proc = _run_probe(probe)
    line = [x for x in proc.stderr.splitlines() if x.startswith("EXITING ")][-1]
    assert line == "EXITING [] none", line  # no child left, running or a zombie
