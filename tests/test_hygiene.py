"""Process and output hygiene: no TensorFlow on the list path, the entry points run, and names from a
model file can neither inject markup or control sequences nor get colour codes into piped output."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varctl.cli import app

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069]")
runner = CliRunner()


def _env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that forces colour or a terminal on rich."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    env.update(extra)
    return env


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=ROOT, env=_env(**env), capture_output=True, text=True, timeout=120)


# -- (a) no TensorFlow, no Keras ---------------------------------------------------------------------

_PROBE = """
import sys
from varctl.cli import main
sys.argv = ["varctl", "list", sys.argv[1], "-f", "json"]
try:
    main()
except SystemExit as e:
    code = e.code
sys.stderr.write("\\nPROBE " + repr((code, "tensorflow" in sys.modules, "keras" in sys.modules)) + "\\n")
"""


@pytest.mark.parametrize("model", ["transfer_learning.keras", "transfer_learning.h5"])
def test_list_imports_neither_tensorflow_nor_keras(model):
    proc = _run(sys.executable, "-c", _PROBE, f"sample_models/{model}")
    probe = [line for line in proc.stderr.splitlines() if line.startswith("PROBE ")]
    assert probe, proc.stderr
    code, tf, keras = eval(probe[-1][len("PROBE ") :])  # noqa: S307 - our own repr
    assert code in (0, None), proc.stderr
    assert (tf, keras) == (False, False)
    assert len(json.loads(proc.stdout)["variables"]) == 262


def test_importing_the_cli_is_light():
    code = "import sys, varctl.cli; print(sorted(m for m in ('h5py', 'tensorflow', 'keras') if m in sys.modules))"
    proc = _run(sys.executable, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- (b), (c) entry points ---------------------------------------------------------------------------


def test_python_dash_m_varctl():
    proc = _run(sys.executable, "-m", "varctl", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("Usage: varctl ")
    assert " list " in proc.stdout


def _installed_varctl() -> str:
    beside = Path(sys.executable).parent / "varctl"
    found = str(beside) if beside.exists() else shutil.which("varctl")
    if found is None:
        pytest.fail("the `varctl` console script is not installed (pip install -e .)")
    return found


def test_installed_executable_lists_a_sample():
    proc = _run(_installed_varctl(), "list", "sample_models/seed_dense.h5", "-f", "csv")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "model,path,layer,name,shape,dtype,params,trainable,reason"
    assert [line.split(",")[1] for line in lines[1:]] == [
        "dense/kernel",
        "dense/bias",
        "dense_1/kernel",
        "dense_1/bias",
    ]


def test_installed_executable_reports_errors_cleanly(tmp_path):
    proc = _run(_installed_varctl(), "list", str(tmp_path / "missing.keras"))
    assert proc.returncode == 3
    assert proc.stdout == ""
    assert proc.stderr == f"varctl: error: cannot open '{tmp_path / 'missing.keras'}': no such file\n"


def test_closed_stdout_is_not_an_error():
    # `varctl list big.keras | head -1`: the reader goes away early.
    proc = subprocess.run(
        f"'{_installed_varctl()}' list sample_models/transfer_learning.keras -f csv | head -1",
        shell=True,
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("model,path,")
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


# -- (d) names from the file are escaped -------------------------------------------------------------

# Keras accepts these names; the config is then edited to names Keras refuses ('/' in a name).
ESC_NAME = "esc\x1b[31mred"
BIDI_NAME = "bidi\u202eevil"
MARKUP_NAMES = {"plain_a": "[bold]x[/]", "plain_b": "[/]"}
TOP_NAME = "[link=https://example.invalid]m[/link]"


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory) -> Path:
    keras = pytest.importorskip("keras")
    out = tmp_path_factory.mktemp("hostile")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(2, name=ESC_NAME),
            keras.layers.Dense(2, name=BIDI_NAME),
            keras.layers.Dense(2, name="plain_a"),
            keras.layers.Dense(1, name="plain_b"),
        ],
        name="top",
    )
    model.save(out / "built.keras")
    path = out / "hostile.keras"
    with zipfile.ZipFile(out / "built.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["config"]["name"] = TOP_NAME
                for layer in config["config"]["layers"]:
                    name = layer["config"].get("name")
                    layer["config"]["name"] = MARKUP_NAMES.get(name, name)
                data = json.dumps(config).encode()
            dst.writestr(info, data)
    return path


def _list(path: Path, *args: str):
    result = runner.invoke(app, ["list", str(path), *args], env=ENV)
    assert result.exit_code == 0, result.output
    return result


def test_hostile_names_are_kept_exactly_in_json(hostile_model):
    doc = json.loads(_list(hostile_model, "-f", "json").stdout)
    assert [v["layer"] for v in doc["variables"]][::2] == [ESC_NAME, BIDI_NAME, "[bold]x[/]", "[/]"]


@pytest.mark.parametrize("args", [(), ("--by-layer",)], ids=["variables", "by-layer"])
def test_table_escapes_markup_and_control_characters(hostile_model, args):
    result = _list(hostile_model, *args)
    out = result.stdout
    assert "\x1b" not in out and not BIDI.search(out)
    assert "esc\\x1b[31mred" in out  # the ESC is shown, not sent
    assert "bidi\\u202eevil" in out
    assert "[bold]x[/]" in out and "[/]" in out  # markup is shown literally, not interpreted
    assert TOP_NAME in out.splitlines()[0]
    assert "\x1b" not in result.stderr and not BIDI.search(result.stderr)


def test_markdown_escapes_control_characters(hostile_model):
    out = _list(hostile_model, "-f", "markdown").stdout
    assert "\x1b" not in out and not BIDI.search(out)
    assert "| esc\\x1b[31mred/kernel |" in out


def test_csv_does_not_send_control_characters(hostile_model):
    out = _list(hostile_model, "-f", "csv").stdout
    assert "\x1b" not in out and not BIDI.search(out)


def test_json_does_not_send_bidi_characters(hostile_model):
    out = _list(hostile_model, "-f", "json").stdout
    assert "\x1b" not in out  # json.dumps already escapes C0 controls
    assert not BIDI.search(out)


# -- (e) no colour codes off a terminal --------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["table", "json", "csv", "markdown"])
@pytest.mark.parametrize("extra", [(), ("--by-layer",)], ids=["variables", "by-layer"])
def test_no_ansi_codes_with_no_color(fmt, extra):
    result = runner.invoke(app, ["list", str(SAMPLES / "batchnorm.keras"), "-f", fmt, *extra], env=ENV)
    assert result.exit_code == 0, result.output
    assert not ANSI.search(result.stdout)
    assert "\x1b" not in result.stdout


def test_no_ansi_codes_when_piped_even_without_no_color():
    proc = _run(_installed_varctl(), "list", "sample_models/seed_custom_layer.keras")
    assert proc.returncode == 0, proc.stderr
    assert "my_custom_layer/vars/0" in proc.stdout
    assert "\x1b" not in proc.stdout
    assert proc.stderr.startswith("varctl: warning: ") and "\x1b" not in proc.stderr
