"""The Python API (varctl/api.py): the CLI's answers as data, Keras as the oracle for edits.

Every example of docs/python.md is run here too, and must print what the page shows.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

import varctl
from varctl.errors import EXIT_UNREADABLE, EXIT_UNWRITABLE, EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
TL = SAMPLES / "transfer_learning.keras"

READABLE = [
    "seed_dense.keras",
    "seed_dense.h5",
    "transfer_learning.keras",
    "transfer_learning.h5",
    "batchnorm.keras",
    "seed_custom_layer.keras",
    "lora.keras",
    "quant_int8.keras",
]


# -- import cost ------------------------------------------------------------------------------------


def test_import_varctl_imports_nothing_heavy():
    probe = (
        "import sys, varctl\n"
        "heavy = ('h5py', 'numpy', 'rich', 'typer', 'tensorflow', 'keras', 'click', 'pydantic')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
        "print(sorted(m for m in sys.modules if m.startswith('varctl')))\n"
        "varctl.read, varctl.check, varctl.VarctlError\n"  # the API itself is cheap too
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    proc = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    heavy_at_import, varctl_modules, heavy_after_lookup = proc.stdout.splitlines()
    assert heavy_at_import == "[]", proc.stderr
    assert varctl_modules == "['varctl']"
    assert heavy_after_lookup == "[]"


def test_every_public_name_resolves_and_is_typed():
    for name in varctl.__all__:
        assert getattr(varctl, name) is not None, name
    assert set(dir(varctl)) >= set(varctl.__all__)
    assert (ROOT / "varctl" / "py.typed").is_file()
    assert re.search(r'^varctl = \["py\.typed"\]', (ROOT / "pyproject.toml").read_text(), re.M)
    with pytest.raises(AttributeError):
        varctl.no_such_name  # noqa: B018


def test_diff_and_stats_are_plain_functions_even_after_their_cores_are_imported():
    import inspect

    import varctl.diffs
    import varctl.valuestats
    from varctl import diff, stats

    assert inspect.isfunction(diff) and inspect.isfunction(stats)
    assert diff is varctl.diff and stats is varctl.stats
    assert list(inspect.signature(varctl.diff).parameters) == ["a", "b", "values", "atol"]


# -- read() is `varctl list -f json` ----------------------------------------------------------------


@pytest.mark.parametrize("name", READABLE)
def test_read_matches_list_json(name, cli):
    path = str(SAMPLES / name)
    expected = json.loads(cli("list", path, "-f", "json").stdout)
    info = varctl.read(path)
    assert isinstance(info, varctl.ModelInfo)
    assert json.loads(json.dumps(info.to_dict())) == expected
    assert info.source == path


def test_read_accepts_a_pathlike_and_load_options_mirror_the_cli():
    assert varctl.read(SAMPLES / "seed_dense.keras").source == str(SAMPLES / "seed_dense.keras")
    with pytest.raises(varctl.UsageError, match="custom_objects only applies with load=True"):
        varctl.read(TL, custom_objects=["layers.py"])
    with pytest.raises(varctl.UsageError, match="unsafe only applies"):
        varctl.read(TL, unsafe=True)


def test_read_with_load_matches_list_load_json(cli, samples_on_path):
    path = str(SAMPLES / "seed_custom_layer.keras")
    module = str(SAMPLES / "varctl_samples.py")
    expected = json.loads(cli("list", path, "--load", "--custom-objects", module, "-f", "json").stdout)
    info = varctl.read(path, load=True, custom_objects=[module])
    assert json.loads(json.dumps(info.to_dict())) == expected


# -- freeze/unfreeze: Keras loads what the plan says ------------------------------------------------


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "tuned.keras"
    plan = varctl.unfreeze(TL, ["block_16_project*", "block_15_project"], output=out, verify=True)
    return out, plan


def test_unfreeze_writes_what_keras_loads(tuned):
    from tests import keras_oracle

    out, plan = tuned
    assert TL.read_bytes() != out.read_bytes()
    keras_rows = keras_oracle.expected(str(out))
    predicted = [(v.path, v.shape, v.dtype, v.trainable) for v in plan.after.variables]
    assert predicted == keras_rows
    assert [v.path for v in varctl.read(out).variables if v.trainable] == [
        p for p, _, _, t in keras_rows if t
    ]
    changed = {c.layer for c in plan.changes}
    assert changed == {
        "mobilenetv2_0.35_96",
        "mobilenetv2_0.35_96/block_15_project",
        "mobilenetv2_0.35_96/block_16_project",
        "mobilenetv2_0.35_96/block_16_project_BN",
    }
    assert all(c.before is False and c.after is True for c in plan.changes)
    assert plan.before.totals() == varctl.read(TL).totals()  # the input as read


def test_freeze_in_place_and_dry_run_match_the_cli(tmp_path, cli):
    src = tmp_path / "m.keras"
    src.write_bytes(TL.read_bytes())
    dry = varctl.freeze(src, "dense", dry_run=True)
    cli_plan = json.loads(cli("freeze", str(src), "-p", "dense", "--dry-run", "-f", "json").stdout)
    assert [c.layer for c in dry.changes] == [c["layer"] for c in cli_plan["changes"]] == ["dense"]
    assert cli_plan["trainable_params"] == {
        "before": dry.before.totals()["trainable"],
        "after": dry.after.totals()["trainable"],
    }
    assert src.read_bytes() == TL.read_bytes()  # a dry run writes nothing
    plan = varctl.freeze(str(src), "dense", in_place=True)
    assert plan.after.totals()["trainable"] == 0
    assert varctl.read(src).totals()["trainable"] == 0
    assert "1 layer flag(s) changed ['dense': True -> False]" in repr(plan)


def test_a_string_pattern_is_one_pattern(tmp_path):
    one = varctl.freeze(TL, "dense", dry_run=True)
    listed = varctl.freeze(TL, ["dense"], dry_run=True)
    assert [c.layer for c in one.changes] == [c.layer for c in listed.changes] == ["dense"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of output=, in_place=True or dry_run=True"),
        ({"output": "x.keras", "in_place": True}, r"\(got output, in_place\)"),
        ({"dry_run": True, "verify": True}, "verify=True checks a written file"),
        ({"dry_run": True, "optimizer_state": "bogus"}, "optimizer-state must be one of"),
    ],
)
def test_edit_usage_errors(kwargs, message):
    with pytest.raises(varctl.UsageError, match=message) as e:
        varctl.freeze(TL, "dense", **kwargs)
    assert e.value.exit_code == EXIT_USAGE


def test_edit_errors_are_the_documented_classes(tmp_path):
    with pytest.raises(varctl.UsageError, match="matches no layer"):
        varctl.freeze(TL, "no_such_layer*", dry_run=True)
    with pytest.raises(varctl.UnreadableModel, match="cannot open") as e:
        varctl.freeze(tmp_path / "missing.keras", "dense", output=tmp_path / "o.keras")
    assert e.value.exit_code == EXIT_UNREADABLE
    with pytest.raises(varctl.OutputError) as e:
        varctl.freeze(TL, "dense", output=tmp_path)  # a directory
    assert e.value.exit_code == EXIT_UNWRITABLE
    assert not list(tmp_path.iterdir())


def test_read_errors_are_the_documented_classes(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip at all")
    for path in (tmp_path / "missing.keras", junk):
        with pytest.raises(varctl.UnreadableModel, match=f"cannot open '{re.escape(str(path))}'") as e:
            varctl.read(path)
        assert isinstance(e.value, varctl.VarctlError) and e.value.exit_code == EXIT_UNREADABLE


# -- check / diff / stats ---------------------------------------------------------------------------


def test_check_matches_the_cli(tuned, cli):
    out, _ = tuned
    args = {"frozen": "block_14*", "trainable": ["block_16_project"], "max_trainable_params": 10}
    result = varctl.check(out, **args)
    doc = json.loads(
        cli(
            "check", str(out), "--frozen", "block_14*", "--trainable", "block_16_project",
            "--max-trainable-params", "10", "-f", "json", code=1,
        ).stdout
    )  # fmt: skip
    assert not result.ok
    assert [o.to_dict() for o in result.outcomes] == doc["assertions"]
    assert [o.ok for o in result.outcomes] == [True, True, False]
    assert "FAILED: max_trainable_params(10)" in repr(result)
    assert varctl.check(varctl.read(out), frozen="block_14*", finite=True, no_lambda=True).ok


def test_check_errors():
    with pytest.raises(varctl.UsageError):
        varctl.check(TL, frozen="[", regex=True)
    with pytest.raises(varctl.UsageError):
        varctl.check(TL, max_trainable_params=-1)


def test_diff_matches_the_cli(tuned, cli):
    out, plan = tuned
    result = varctl.diff(TL, out, values=True)
    doc = json.loads(cli("diff", str(TL), str(out), "--values", "-f", "json", code=1).stdout)
    assert not result.identical
    assert result.counts() == {k: doc["summary"][k] for k in result.counts()}
    changed = [e.path for e in result.changes]
    assert changed == [c["path"] for c in doc["changes"]]
    assert {e.fields for e in result.changes} == {("trainable",)}
    assert varctl.diff(TL, str(TL)).identical
    with pytest.raises(varctl.UsageError):
        varctl.diff(TL, TL, atol=float("nan"))


def test_stats_matches_the_cli(cli):
    path = str(SAMPLES / "seed_dense.keras")
    doc = json.loads(cli("stats", path, "-p", "dense_1", "-f", "json").stdout)
    found = varctl.stats(path, "dense_1")
    assert [s.variable.path for s in found] == ["dense_1/kernel", "dense_1/bias"]
    rows = doc["variables"]
    assert [r["path"] for r in rows] == [s.variable.path for s in found]
    for row, s in zip(rows, found, strict=True):
        assert s.values["min"] == pytest.approx(row["min"]) and s.values["max"] == pytest.approx(row["max"])
    with pytest.raises(varctl.UsageError, match="matches no layer"):
        varctl.stats(path, "nothing*")


# -- how a ModelInfo shows itself -------------------------------------------------------------------


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str | None]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += attrs

    def handle_data(self, data):
        self.text.append(data)


HOSTILE = '<img src=x onerror="alert(1)">&amp;\u202e'


@pytest.fixture(scope="module")
def hostile_model(tmp_path_factory):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((3,))
    outputs = keras.layers.Dense(2, name=HOSTILE)(inputs)
    model = keras.Model(inputs, outputs, name="m<script>x")
    path = tmp_path_factory.mktemp("hostile") / "hostile.keras"
    model.save(path)
    return path


def test_repr_html_escapes_a_hostile_name(hostile_model):
    info = varctl.read(hostile_model)
    assert any(HOSTILE in v.path for v in info.variables)  # the name survived the round trip
    page = info._repr_html_()
    parsed = _Tags()
    parsed.feed(page)
    assert parsed.tags == {"div", "style", "table", "caption", "br", "thead", "tr", "th", "tbody", "td"}
    assert {name for name, _ in parsed.attrs} == {"class", "style"}
    assert "<img" not in page and "<script" not in page.lower() and "</script" not in page.lower()
    text = "".join(parsed.text)
    assert '<img src=x onerror="alert(1)">&amp;\\u202e/kernel' in text  # shown as text, bidi escaped
    assert "\u202e" not in page


def test_repr_html_shows_every_variable_and_state():
    info = varctl.read(TL)
    parsed = _Tags()
    parsed.feed(info._repr_html_())
    text = "\n".join(parsed.text)
    for v in info.variables:
        assert v.path in text
    assert "Trainable params: 1,281 (0.31%)" in text
    assert info._repr_html_().count('class="on"') == 2  # dense/kernel and dense/bias


def test_rich_and_summary(hostile_model):
    from rich.console import Console

    info = varctl.read(SAMPLES / "seed_dense.keras")
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(info)
    shown = console.file.getvalue()
    for v in info.variables:
        assert v.path in shown
    assert "Total params: 769" in shown
    assert info.summary().splitlines()[1:3] == ["2 layers, 4 variables", "Total params: 769 (3.08 KB)"]
    assert "\u202e" not in varctl.read(hostile_model).summary()


# -- docs/python.md ---------------------------------------------------------------------------------

EXAMPLE = re.compile(r"^```python\n(.*?)^```\n(?:\n```text\n(.*?)^```$)?", re.M | re.S)


def test_the_python_docs_examples_print_what_the_page_shows(tmp_path, monkeypatch, request):
    import rich

    page = ROOT / "docs" / "python.md"
    text = page.read_text(encoding="utf-8")
    assert len(EXAMPLE.findall(text)) >= 8
    (tmp_path / "sample_models").symlink_to(SAMPLES)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setattr(rich, "_console", None)  # a fresh console reads COLUMNS
    namespace: dict[str, object] = {}

    def run(m: re.Match[str]) -> str:
        code, expected = m.group(1), m.group(2)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            exec(compile(code, "docs/python.md", "exec"), namespace)
        if expected is None:
            return m.group(0)
        got = "".join(line.rstrip() + "\n" for line in printed.getvalue().splitlines())
        return f"```python\n{code}```\n\n```text\n{got}```"

    fresh = EXAMPLE.sub(run, text)
    if request.config.getoption("--update-golden") and fresh != text:
        page.write_text(fresh, encoding="utf-8")
        text = fresh
    assert text == fresh, "docs/python.md: an example prints something else now (--update-golden)"


def test_read_takes_the_step_of_an_orbax_folder_and_a_config_like_the_cli(cli, tmp_path):
    import zipfile

    folder = ROOT / "tests" / "orbax_files" / "dense"
    for step in (0, None):
        args = ["--step", str(step)] if step is not None else []
        expected = json.loads(cli("list", str(folder), *args, "-f", "json").stdout)
        assert json.loads(json.dumps(varctl.read(folder, step=step).to_dict())) == expected
    with pytest.raises(varctl.UsageError):
        varctl.read(SAMPLES / "seed_dense.keras", step=1)
    weights = tmp_path / "m.weights.h5"
    with zipfile.ZipFile(SAMPLES / "seed_dense.keras") as z:
        weights.write_bytes(z.read("model.weights.h5"))
    cfg = SAMPLES / "seed_dense.keras"
    expected = json.loads(cli("list", str(weights), "--config", str(cfg), "-f", "json").stdout)
    assert json.loads(json.dumps(varctl.read(weights, config=cfg).to_dict())) == expected
