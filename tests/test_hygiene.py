"""Process and output hygiene: no TensorFlow on the list path, the entry points run, and names from a
model file can neither inject markup or control sequences nor get colour codes into piped output."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

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
    code, tf, keras = eval(probe[-1][len("PROBE ") :])
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
    [table] = _check_markdown(out, columns=8)
    assert table[1][0] == "esc\\x1b[31mred/kernel"  # rendered: the ESC shown as text, no markup


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


# -- (f) names that try to inject: every command, every format --------------------------------------

# Layer names a hostile file may carry. Keras accepts the first group; the second (a '/' or a lone
# surrogate) is written into config.json of a saved copy, as a crafted file would.
KERAS_NAMES = [
    "<img src=x onerror=alert(1)>",
    "a|b",
    "+1",
    "-1",
    "@SUM(1)",
    "`code`",
    "*em*",
    "_u_",
    "a&amp;b",
    "al\u061cm",
    "wj\u2060\u2064x",
    "tag\U000e0041\U000e007fx",
    "lrm\u200ex",
    "tab\tx",
]
CRAFTED_NAMES = {
    "crafted_0": "[click](https://evil.example)",
    "crafted_1": "![i](https://evil.example/x.png)",
    "crafted_2": '=HYPERLINK("https://evil.example","x")',
    "crafted_3": "sur\ud800x",
}
INJECT_NAMES = KERAS_NAMES + list(CRAFTED_NAMES.values())


def _no_hidden(text: str) -> bool:
    from varctl.out import hidden

    return not any(hidden(ch) for ch in text if ch not in "\n")


@pytest.fixture(scope="module")
def inject_models(tmp_path_factory) -> tuple[Path, Path]:
    """(names.keras, plain.keras): the same Dense stack, with hostile and with plain layer names.

    The first Dense kernel holds a NaN, an infinity and values near 1e308, so the value commands
    meet them too.
    """
    keras = pytest.importorskip("keras")
    import numpy as np

    out = tmp_path_factory.mktemp("inject")
    names = KERAS_NAMES + list(CRAFTED_NAMES)
    for file, layer_names in (("built.keras", names), ("plain.keras", [f"d{i}" for i in range(len(names))])):
        model = keras.Sequential(
            [keras.Input((2,)), *(keras.layers.Dense(2, name=n) for n in layer_names)], name="top"
        )
        kernel = model.layers[0].kernel.numpy()
        kernel[0, 0], kernel[0, 1], kernel[1, 0], kernel[1, 1] = np.nan, np.inf, 1e38, -3e38
        model.layers[0].kernel.assign(kernel)
        model.save(out / file)
    path = out / "names.keras"
    with zipfile.ZipFile(out / "built.keras") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                for layer in config["config"]["layers"]:
                    name = layer["config"].get("name")
                    layer["config"]["name"] = CRAFTED_NAMES.get(name, name)
                data = json.dumps(config).encode()  # ensure_ascii: the surrogate stays a \\ud800 escape
            dst.writestr(info, data)
    return path, out / "plain.keras"


def _strict_json(text: str):
    def refuse(token: str):
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def _markdown_tables(text: str) -> tuple[str, list[list[list[str]]]]:
    """(HTML, tables as rows of cell texts) from a CommonMark renderer with GFM tables."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(text)
    tables: list[list[list[str]]] = []
    for i, t in enumerate(tokens):
        if t.type == "table_open":
            tables.append([])
        elif t.type == "tr_open":
            tables[-1].append([])
        elif t.type in ("th_open", "td_open"):
            inline = tokens[i + 1]
            assert all(c.type in ("text", "softbreak") for c in inline.children or []), inline.children
            tables[-1][-1].append("".join(c.content for c in inline.children or []))
    return md.renderer.render(tokens, md.options, {}), tables


def _check_markdown(text: str, columns: int) -> list[list[list[str]]]:
    html, tables = _markdown_tables(text)
    assert tables, text
    assert "<img" not in html and "<a " not in html and "<code>" not in html and "<em>" not in html, html
    for table in tables:
        assert all(len(row) == columns for row in table), table
    return tables


def _check_csv(text: str, numeric: set[str]) -> list[dict[str, str]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows
    for row in rows:
        for key, cell in row.items():
            if key not in numeric:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), (key, cell)
    return rows


def _variable_paths(doc: dict) -> list[str]:
    return [v["path"] for v in doc["variables"]]


def _run_all(cli, *args: str, code: int = 0) -> dict[str, Any]:
    """The command in every format: stdout checked for raw hidden characters, stderr too."""
    outputs = {}
    for fmt in ("table", "json", "csv", "markdown"):
        result = cli(*args, "-f", fmt, code=code)
        assert _no_hidden(result.stdout) and _no_hidden(result.stderr), fmt
        outputs[fmt] = result.stdout
    return outputs


def test_list_keeps_hostile_names_as_data_in_every_format(inject_models, cli):
    from varctl.out import clean

    path = str(inject_models[0])
    outputs = _run_all(cli, "list", path)
    doc = _strict_json(outputs["json"])
    assert [v["layer"] for v in doc["variables"]][::2] == INJECT_NAMES
    shown = [clean(p) for p in _variable_paths(doc)]
    [table] = _check_markdown(outputs["markdown"], columns=8)
    assert [row[0] for row in table[1:]] == shown  # each name renders as exactly its own text
    rows = _check_csv(outputs["csv"], numeric={"params"})
    assert [r["path"] for r in rows] == ["'" + s if s[0] in "=+-@" else s for s in shown]
    for s in shown:
        assert f"| {s} " in outputs["table"]


def test_by_layer_keeps_hostile_names_as_data(inject_models, cli):
    outputs = _run_all(cli, "list", str(inject_models[0]), "--by-layer")
    doc = _strict_json(outputs["json"])
    assert [layer["name"] for layer in doc["layers"]] == INJECT_NAMES
    _check_markdown(outputs["markdown"], columns=8)
    _check_csv(outputs["csv"], numeric={"variables", "params", "trainable_params", "depth"})


def test_stats_is_strict_json_with_nan_inf_and_huge_values(inject_models, cli):
    outputs = _run_all(cli, "stats", str(inject_models[0]))
    doc = _strict_json(outputs["json"])
    first = doc["variables"][0]
    assert first["nan_count"] == 1 and first["inf_count"] == 1
    for record in doc["variables"]:
        for key in ("min", "max", "mean", "std"):
            assert (
                record[key] is None or isinstance(record[key], float) or record[key] in ("nan", "inf", "-inf")
            )
    _check_markdown(outputs["markdown"], columns=14)
    _check_csv(
        outputs["csv"],
        numeric={"params", "min", "max", "mean", "std", "zero_fraction", "nan_count", "inf_count"},
    )


def test_check_names_hostile_variables_as_data(inject_models, cli):
    from varctl.out import clean

    path = str(inject_models[0])
    outputs = _run_all(cli, "check", path, "--frozen", "*", "--finite", code=1)
    doc = _strict_json(outputs["json"])
    frozen = doc["assertions"][0]
    assert [v["path"] for v in frozen["variables"]][::2] == [f"{n}/kernel" for n in INJECT_NAMES]
    [table] = _check_markdown(outputs["markdown"], columns=6)
    assert [clean(f"{n}/kernel") for n in INJECT_NAMES] == [row[4] for row in table[1:]][
        : 2 * len(INJECT_NAMES) : 2
    ]
    _check_csv(outputs["csv"], numeric=set())
    github = cli("check", path, "--frozen", "*", "--finite", "-f", "github", code=1).stdout
    _check_github(github)


def test_diff_keeps_hostile_names_as_data_and_strict_json(inject_models, cli):
    names, plain = (str(p) for p in inject_models)
    outputs = _run_all(cli, "diff", plain, names, "--values", code=1)
    doc = _strict_json(outputs["json"])
    assert {c["path"] for c in doc["changes"] if c["change"] == "added"} == {
        f"{n}/{v}" for n in INJECT_NAMES for v in ("kernel", "bias")
    }
    [table] = _check_markdown(outputs["markdown"], columns=9)
    assert table[0][5] == "max |A-B|"  # the header renders as text, and the table as a table
    _check_csv(outputs["csv"], numeric={"max_abs_diff", "differing", "elements"})
    _check_github(cli("diff", plain, names, "-f", "github", code=1).stdout)


def test_json_never_writes_nan_or_infinity_tokens():
    from varctl.render import safe_json

    text = safe_json({"a": float("nan"), "b": [float("inf"), -float("inf"), 1.5], "c": "x\u061c\U000e0041"})
    assert _strict_json(text) == {"a": "nan", "b": ["inf", "-inf", 1.5], "c": "x\u061c\U000e0041"}
    assert "\\u061c" in text and "\\udb40\\udc41" in text  # escaped, and read back as the same text


@pytest.mark.parametrize(
    "char", ["\u061c", "\u2060", "\u2061", "\u2062", "\u2063", "\u2064", "\U000e0001", "\U000e007f",
             "\u200b", "\u200e", "\u202e", "\u2066", "\ufeff", "\u00ad", "\ud800", "\udfff", "\x85", "\u2028"],
)  # fmt: skip
def test_clean_escapes_format_characters_and_surrogates(char):
    from varctl.out import clean

    shown = clean(f"a{char}b")
    assert shown.isascii() and shown.startswith("a\\") and shown.endswith("b")


def test_clean_keeps_ordinary_text():
    from varctl.out import clean

    for text in ("dense_1/kernel", "日本語/カーネル", "é", "😀", "ü\u0308", "a b"):
        assert clean(text) == text


# GitHub's workflow-command syntax ("Workflow commands for GitHub Actions"; actions/toolkit
# command.ts): `::level key=value,key=value::message`, with `%`, CR and LF escaped in the message
# and additionally `:` and `,` in property values.
_GITHUB_LINE = re.compile(
    r"::(error|warning|notice)( (?P<props>[a-zA-Z]+=[^:,\r\n]*(,[a-zA-Z]+=[^:,\r\n]*)*))?::(?P<msg>[^\r\n]*)"
)


def _unescape(text: str) -> str:
    return (
        text.replace("%0D", "\r")
        .replace("%0A", "\n")
        .replace("%3A", ":")
        .replace("%2C", ",")
        .replace("%25", "%")
    )


def _check_github(text: str) -> list[dict[str, str]]:
    commands = []
    for line in text.splitlines():
        if not line.startswith("::"):
            assert re.fullmatch(r"\d+ models? checked: .*", line), line
            continue
        m = _GITHUB_LINE.fullmatch(line)
        assert m, line
        props = dict(p.split("=", 1) for p in m["props"].split(",")) if m["props"] else {}
        assert set(props) <= {"file", "title", "line", "endLine", "col", "endColumn"}
        commands.append({k: _unescape(v) for k, v in props.items()} | {"message": _unescape(m["msg"])})
    assert commands
    return commands


def test_github_annotations_escape_what_the_syntax_reserves():
    from varctl.render import Annotation, github_command

    a = Annotation("error", "t: a, b", "50% of\r\nvalues", "dir,x/m:1.keras")
    line = github_command(a)
    # out.clean shows CR/LF as the text \r\n first: an annotation is always one line
    assert line == r"::error file=dir%2Cx/m%3A1.keras,title=t%3A a%2C b::50%25 of\r\nvalues"
    [parsed] = _check_github(line)
    assert parsed["file"] == "dir,x/m:1.keras" and parsed["title"] == "t: a, b"


def test_github_step_summary_gets_the_markdown(cli, tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("before\n")
    env = {"GITHUB_STEP_SUMMARY": str(summary)}
    args = (
        "check",
        str(SAMPLES / "batchnorm.keras"),
        str(SAMPLES / "seed_dense.keras"),
        "--max-trainable-params",
        "800",
    )
    result = cli(*args, "-f", "github", code=1, env=env)
    commands = _check_github(result.stdout)
    assert [c["file"] for c in commands] == [
        str(SAMPLES / "batchnorm.keras"),
        str(SAMPLES / "seed_dense.keras"),
    ]
    assert result.stdout.splitlines()[-1] == "2 models checked: 1 passed, 1 failed"
    text = summary.read_text()
    assert text.startswith("before\n### check ")
    _html, tables = _markdown_tables(text)
    assert len(tables) == 1 and "**2 models checked: 1 passed, 1 failed**" in text
    cli(*args, code=1, env=env)  # other formats leave the summary alone
    assert summary.read_text() == text


# -- (g) layering: the app is assembled in one place ------------------------------------------------


def _imports(path: Path) -> set[str]:
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_only_main_imports_the_cli_and_commands_import_options_not_the_app():
    package = ROOT / "varctl"
    importers = sorted(
        str(p.relative_to(package)) for p in package.rglob("*.py") if "varctl.cli" in _imports(p)
    )
    assert importers == ["__main__.py"]
    for p in (package / "commands").glob("*.py"):
        assert not any(m.startswith("varctl.cli") for m in _imports(p)), p
