"""`varctl list` through Typer's CliRunner on the committed sample models: every format parsed back,
selection, per-layer view, totals, and the split between data (stdout) and messages (stderr)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from varctl.cli import app

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"
# FORCE_COLOR / TTY_COMPATIBLE would make rich decorate a non-TTY: keep them out of the runs.
ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
FORMATS = ("keras", "h5")
TL = "transfer_learning"
BASE = "mobilenetv2_0.35_96"  # the frozen MobileNetV2 nested in transfer_learning

# name: (variables, trainable variables) as Keras reports them (sample_models/README.md).
SAMPLE_COUNTS = {
    "seed_dense": (4, 4),
    "seed_explicit": (2, 1),
    "seed_custom_layer": (4, 4),
    "transfer_learning": (262, 2),
    "batchnorm": (12, 8),
}
WARNS = {"seed_explicit", "seed_custom_layer"}  # custom layer classes varctl does not know

LIST_KEYS = {"schema", "model", "format", "keras_version", "variables", "totals", "warnings"}
VAR_KEYS = {"index", "path", "layer", "name", "shape", "dtype", "params", "trainable", "cause", "reason"}
TOTAL_KEYS = {"params", "trainable", "non_trainable", "bytes"}
LAYERS_KEYS = {"schema", "model", "format", "keras_version", "layers", "totals", "warnings"}
LAYER_KEYS = {
    "path",
    "name",
    "class_name",
    "depth",
    "variables",
    "params",
    "trainable_params",
    "state",
    "flag",
}
CSV_HEADER = ["model", "path", "layer", "name", "shape", "dtype", "params", "trainable", "reason"]

runner = CliRunner()


def sample(name: str, fmt: str = "keras") -> str:
    return str(SAMPLES / f"{name}.{fmt}")


def varctl(*args: str, code: int = 0, env: dict | None = None):
    result = runner.invoke(app, list(args), env=env or ENV)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def list_json(*args: str) -> dict | list:
    result = varctl("list", *args, "-f", "json")
    return json.loads(result.stdout)


def paths(doc: dict) -> list[str]:
    return [v["path"] for v in doc["variables"]]


# -- formats ---------------------------------------------------------------------------------------


# A custom layer's add_weight(trainable=False) is not in the file: in a .keras archive varctl infers
# it from the saved optimizer slots; the legacy .h5 reader does not (yet) and assumes trainable.
SAMPLE_CASES = [(name, fmt) for name in sorted(SAMPLE_COUNTS) for fmt in FORMATS]


@pytest.mark.parametrize(("name", "fmt"), SAMPLE_CASES)
def test_json_follows_the_list_schema(name, fmt):
    path = sample(name, fmt)
    result = varctl("list", path, "-f", "json")
    doc = json.loads(result.stdout)
    assert set(doc) == LIST_KEYS
    assert doc["schema"] == "varctl.list/2"
    assert doc["model"] == path
    assert doc["format"] == fmt
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["keras_version"])
    n_vars, n_trainable = SAMPLE_COUNTS[name]
    assert len(doc["variables"]) == n_vars
    assert sum(v["trainable"] for v in doc["variables"]) == n_trainable
    for v in doc["variables"]:
        assert set(v) == VAR_KEYS
        assert v["path"] == f"{v['layer']}/{v['name']}"
        assert isinstance(v["shape"], list) and all(isinstance(d, int) for d in v["shape"])
        assert v["params"] == math.prod(v["shape"])
        assert v["dtype"] == "float32"
        assert isinstance(v["trainable"], bool)
        # `reason` says why a variable is not trainable, and only then.
        assert (v["reason"] is None) == v["trainable"], v
    assert set(doc["totals"]) == TOTAL_KEYS
    assert all(isinstance(w, str) for w in doc["warnings"])
    assert bool(doc["warnings"]) == (name in WARNS)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", sorted(SAMPLE_COUNTS))
def test_totals_add_up(name, fmt):
    doc = list_json(sample(name, fmt))
    variables, totals = doc["variables"], doc["totals"]
    assert totals["params"] == sum(v["params"] for v in variables)
    assert totals["trainable"] == sum(v["params"] for v in variables if v["trainable"])
    assert totals["non_trainable"] == totals["params"] - totals["trainable"]
    assert totals["bytes"] == 4 * totals["params"]  # every sample is float32


@pytest.mark.parametrize("fmt", FORMATS)
def test_transfer_learning_trains_only_the_head(fmt):
    doc = list_json(sample(TL, fmt))
    trainable = [v for v in doc["variables"] if v["trainable"]]
    assert [(v["path"], v["shape"]) for v in trainable] == [("dense/kernel", [1280, 1]), ("dense/bias", [1])]
    assert doc["totals"]["trainable"] == 1280 + 1
    assert doc["totals"]["params"] == 411_489
    frozen = [v for v in doc["variables"] if not v["trainable"]]
    assert all(v["path"].startswith(f"{BASE}/") for v in frozen)
    # A moving statistic is never trainable, frozen base or not: that is the reason given for it.
    assert {v["reason"] for v in frozen} == {f"layer `{BASE}` is frozen", "never trainable: moving statistic"}
    assert all(v["reason"].startswith("never") == v["name"].startswith("moving_") for v in frozen)


@pytest.mark.parametrize("fmt", FORMATS)
def test_batchnorm_moving_statistics_are_never_trainable(fmt):
    doc = list_json(sample("batchnorm", fmt))
    frozen = {v["path"]: v["reason"] for v in doc["variables"] if not v["trainable"]}
    assert frozen == {
        f"{bn}/{stat}": "never trainable: moving statistic"
        for bn in ("batch_normalization", "batch_normalization_1")
        for stat in ("moving_mean", "moving_variance")
    }
    # use_bias=False and center=False leave those variables out.
    assert "conv2d_1/bias" not in paths(doc)
    assert "batch_normalization_1/beta" not in paths(doc)
    assert doc["totals"]["non_trainable"] == 32


@pytest.mark.parametrize("name", ["seed_dense", TL, "batchnorm"])
def test_keras_and_h5_copies_list_the_same_variables(name):
    def key(doc):
        return [(v["path"], v["shape"], v["dtype"], v["trainable"], v["reason"]) for v in doc["variables"]]

    a, b = list_json(sample(name, "keras")), list_json(sample(name, "h5"))
    assert key(a) == key(b)
    assert a["totals"] == b["totals"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["seed_dense", "batchnorm", TL])
def test_csv_has_one_header_and_one_row_per_variable(name, fmt):
    path = sample(name, fmt)
    doc = list_json(path)
    result = varctl("list", path, "-f", "csv")
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == CSV_HEADER
    body = [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]
    assert len(body) == len(doc["variables"])
    for row, v in zip(body, doc["variables"], strict=True):
        assert row["model"] == path
        assert (row["path"], row["layer"], row["name"], row["dtype"]) == (
            v["path"],
            v["layer"],
            v["name"],
            v["dtype"],
        )
        assert int(row["params"]) == v["params"]  # raw ints, no separators
        assert row["trainable"] == ("true" if v["trainable"] else "false")
        assert row["reason"] == (v["reason"] or "")
        assert [int(d) for d in re.findall(r"\d+", row["shape"])] == v["shape"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_markdown_is_a_pipe_table_plus_totals(fmt):
    """Rendered by a CommonMark + GFM-tables renderer: a heading, one table, the totals."""
    from markdown_it import MarkdownIt

    path = sample("batchnorm", fmt)
    doc = list_json(path)
    text = varctl("list", path, "-f", "markdown").stdout
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    heading = tokens[[t.type for t in tokens].index("heading_open") + 1]
    assert path in "".join(c.content for c in heading.children)
    cells: list[list[str]] = []
    for i, t in enumerate(tokens):
        if t.type == "tr_open":
            cells.append([])
        elif t.type in ("th_open", "td_open"):
            cells[-1].append("".join(c.content for c in tokens[i + 1].children))
    assert cells[0] == ["path", "layer", "name", "shape", "dtype", "params", "trainable", "why not trainable"]
    assert [r[0] for r in cells[1:]] == paths(doc)
    assert all(len(r) == 8 for r in cells)
    totals = doc["totals"]
    assert f"Total params: {totals['params']:,} (" in text
    assert f"Trainable params: {totals['trainable']:,} (" in text
    assert f"Non-trainable params: {totals['non_trainable']:,}" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_table_shows_every_variable_and_the_totals(fmt):
    path = sample(TL, fmt)
    doc = list_json(path)
    result = varctl("list", path)
    out = result.stdout
    assert result.stderr == ""
    title = out.splitlines()[0]
    assert path in title and f" {fmt} " in title and f"Keras {doc['keras_version']}" in title
    lines = out.splitlines()
    for p in paths(doc):
        assert any(f" {p} " in line for line in lines), p
    assert "Total params: 411,489 (1.65 MB)" in out
    assert "Trainable params: 1,281 (0.31%)" in out
    assert "Non-trainable params: 410,208" in out
    assert f"layer `{BASE}` is frozen" in out  # the "why not trainable" column


def test_table_never_truncates_paths_off_a_tty():
    longest = max(paths(list_json(sample(TL))), key=len)
    result = varctl("list", sample(TL), env={**ENV, "COLUMNS": "80"})
    assert longest in result.stdout
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) > 80


def test_format_name_is_case_insensitive():
    assert list_json(sample("seed_dense")) == json.loads(
        varctl("list", sample("seed_dense"), "-f", "JSON").stdout
    )


# -- several models --------------------------------------------------------------------------------


def test_several_models_give_a_json_array_in_argument_order():
    args = [sample("batchnorm", "h5"), sample("seed_dense"), sample(TL)]
    docs = list_json(*args)
    assert isinstance(docs, list)
    assert [d["model"] for d in docs] == args
    assert [d["format"] for d in docs] == ["h5", "keras", "keras"]
    assert docs[1] == list_json(args[1])


def test_several_models_share_one_csv_header():
    a, b = sample("seed_dense"), sample("batchnorm", "h5")
    rows = list(csv.reader(io.StringIO(varctl("list", a, b, "-f", "csv").stdout)))
    assert rows[0] == CSV_HEADER
    assert [r[0] for r in rows[1:]] == [a] * 4 + [b] * 12


def test_several_models_give_one_table_each():
    a, b = sample("seed_dense"), sample("batchnorm")
    out = varctl("list", a, b).stdout
    assert out.count("Total params:") == 2
    assert out.index(a) < out.index("batch_normalization/gamma") and out.index(b) < out.index(
        "batch_normalization/gamma"
    )


# -- selection -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_pattern_without_slash_matches_a_layer_name_at_any_depth(fmt):
    doc = list_json(sample(TL, fmt), "-p", "Conv1")
    assert paths(doc) == [f"{BASE}/Conv1/kernel"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pattern_with_slash_matches_the_layer_path(fmt):
    everything = list_json(sample(TL, fmt))
    want = [p for p in paths(everything) if p.startswith(f"{BASE}/block_1_")]
    assert len(want) == 15  # expand, depthwise and project convs with their BNs
    assert paths(list_json(sample(TL, fmt), "-p", "mobilenet*/block_1_*")) == want
    assert paths(list_json(sample(TL, fmt), "-p", "block_1_*")) == want
    # A path pattern is anchored at the top: the nested layer's own name is not a path.
    varctl("list", sample(TL, fmt), "-p", "block_1_*/*", code=2)


def test_regex_patterns_use_the_same_rule_and_match_in_full():
    tl = sample(TL)
    by_glob = paths(list_json(tl, "-p", "block_1_*"))
    assert paths(list_json(tl, "--regex", "-p", r"block_1_\w+")) == by_glob
    assert paths(list_json(tl, "--regex", "-p", rf"{re.escape(BASE)}/block_1_.*")) == by_glob
    assert paths(list_json(tl, "--regex", "-p", "Conv_?1")) == [
        f"{BASE}/Conv1/kernel",
        f"{BASE}/Conv_1/kernel",
    ]
    result = varctl("list", tl, "--regex", "-p", "Conv", code=2)  # full match: `Conv` is no layer
    assert result.stdout == ""


def test_invalid_regex_is_a_usage_error():
    result = varctl("list", sample("seed_dense"), "--regex", "-p", "(", code=2)
    assert result.stdout == ""
    assert result.stderr.startswith("varctl: error: invalid regular expression '('")


@pytest.mark.parametrize("fmt", FORMATS)
def test_selecting_a_layer_selects_everything_inside_it(fmt):
    doc = list_json(sample(TL, fmt), "-p", "mobilenet*")
    assert len(doc["variables"]) == 260
    assert all(p.startswith(f"{BASE}/") for p in paths(doc))
    assert doc["totals"] == {
        "params": 410_208,
        "trainable": 0,
        "non_trainable": 410_208,
        "bytes": 4 * 410_208,
    }


def test_repeated_patterns_select_the_union_in_file_order():
    doc = list_json(sample(TL), "-p", "dense", "-p", "Conv1")
    assert paths(doc) == [f"{BASE}/Conv1/kernel", "dense/kernel", "dense/bias"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_trainable_and_frozen_filters(fmt):
    path = sample(TL, fmt)
    trainable = list_json(path, "--trainable")
    assert paths(trainable) == ["dense/kernel", "dense/bias"]
    assert trainable["totals"]["non_trainable"] == 0
    frozen = list_json(path, "--frozen")
    assert len(frozen["variables"]) == 260 and not any(v["trainable"] for v in frozen["variables"])
    assert frozen["totals"]["trainable"] == 0
    assert paths(list_json(path, "-p", "dense", "--frozen")) == []


def test_a_filter_that_keeps_nothing_is_not_an_error():
    doc = list_json(sample("seed_dense"), "--frozen")
    assert doc["variables"] == []
    assert doc["totals"] == {"params": 0, "trainable": 0, "non_trainable": 0, "bytes": 0}


@pytest.mark.parametrize("fmt", FORMATS)
def test_pattern_matching_nothing_is_a_usage_error_with_a_hint(fmt):
    result = varctl("list", sample(TL, fmt), "-p", "dens", code=2)
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "varctl: error: pattern 'dens' matches no layer",
        "varctl: hint: did you mean 'dense'?",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_pattern_naming_a_variable_says_trainability_is_per_layer(fmt):
    result = varctl("list", sample("seed_dense", fmt), "-p", "dense/kernel", code=2)
    assert result.stdout == ""
    err = result.stderr
    assert err.startswith("varctl: error: pattern 'dense/kernel' names a variable, not a layer\n")
    assert "trainability is saved per layer" in err
    assert "'dense'" in err  # the layer to select instead


# -- per-layer view --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_by_layer_json(fmt):
    path = sample(TL, fmt)
    result = varctl("list", path, "--by-layer", "-f", "json")
    doc = json.loads(result.stdout)
    assert set(doc) == LAYERS_KEYS
    assert doc["schema"] == "varctl.layers/1"
    assert (doc["model"], doc["format"]) == (path, fmt)
    assert doc["totals"] == list_json(path)["totals"]
    rows = {r["path"]: r for r in doc["layers"]}
    assert all(set(r) == LAYER_KEYS for r in doc["layers"])
    top = [r for r in doc["layers"] if r["depth"] == 0]
    assert [r["path"] for r in top] == ["input_layer_1", BASE, "global_average_pooling2d", "dropout", "dense"]
    assert sum(r["params"] for r in top) == doc["totals"]["params"]
    base = rows[BASE]
    assert (
        base["class_name"],
        base["variables"],
        base["params"],
        base["trainable_params"],
        base["state"],
    ) == (
        "Functional",
        260,
        410_208,
        0,
        "frozen",
    )
    assert base["flag"] is False
    assert (rows["dense"]["variables"], rows["dense"]["trainable_params"], rows["dense"]["state"]) == (
        2,
        1281,
        "trainable",
    )
    conv = rows[f"{BASE}/Conv1"]
    assert (conv["name"], conv["class_name"], conv["depth"], conv["variables"], conv["params"]) == (
        "Conv1",
        "Conv2D",
        1,
        1,
        432,
    )
    assert rows[f"{BASE}/bn_Conv1"]["variables"] == 4
    assert rows["dropout"]["variables"] == 0


def test_by_layer_table_is_a_tree():
    lines = varctl("list", sample(TL), "--by-layer").stdout.splitlines()
    base = next(line for line in lines if f"| {BASE} " in line)
    assert "Functional" in base and "260" in base and "410,208" in base and "frozen" in base
    assert any("└ Conv1 " in line and "Conv2D" in line for line in lines)
    assert any(
        re.search(r"\| dense +\| Dense +\| +2 \| +1,281 \| +1,281 \| trainable", line) for line in lines
    )
    assert varctl("list", sample(TL), "--tree").stdout == "\n".join(lines) + "\n"


def test_by_layer_with_a_pattern_keeps_the_selected_layers_and_their_parents():
    doc = json.loads(varctl("list", sample(TL), "--by-layer", "-p", "Conv1", "-f", "json").stdout)
    assert [(r["path"], r["variables"], r["params"]) for r in doc["layers"]] == [
        (BASE, 1, 432),
        (f"{BASE}/Conv1", 1, 432),
    ]
    assert doc["totals"]["params"] == 432


def test_by_layer_csv_has_one_row_per_layer():
    doc = json.loads(varctl("list", sample("batchnorm"), "--by-layer", "-f", "json").stdout)
    rows = list(
        csv.DictReader(io.StringIO(varctl("list", sample("batchnorm"), "--by-layer", "-f", "csv").stdout))
    )
    assert [r["path"] for r in rows] == [layer["path"] for layer in doc["layers"]]
    assert [int(r["params"]) for r in rows] == [layer["params"] for layer in doc["layers"]]


# -- messages go to stderr -------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("out_fmt", ["json", "table", "csv", "markdown"])
def test_warnings_go_to_stderr_only(fmt, out_fmt):
    path = sample("seed_custom_layer", fmt)
    result = varctl("list", path, "-f", out_fmt)
    assert "varctl: warning" not in result.stdout
    warnings = result.stderr.splitlines()
    assert warnings and all(line.startswith(f"varctl: warning: {path}: ") for line in warnings)
    assert "MyCustomLayer" in result.stderr
    if out_fmt == "json":
        doc = json.loads(result.stdout)  # stdout stays valid JSON
        assert len(doc["warnings"]) == len(warnings)
        assert "MyCustomLayer" in doc["warnings"][0]


def test_custom_layer_variables_get_generic_names_in_keras_archives():
    doc = list_json(sample("seed_custom_layer"))
    assert [(v["path"], v["shape"]) for v in doc["variables"]] == [
        ("my_custom_layer/vars/0", [16, 1]),
        ("my_custom_layer/vars/1", [1]),
        ("dense/kernel", [1, 1]),
        ("dense/bias", [1]),
    ]
    # legacy .h5 stores variable names, so they are exact there
    assert paths(list_json(sample("seed_custom_layer", "h5")))[:2] == [
        "my_custom_layer/w",
        "my_custom_layer/b",
    ]


def test_clean_runs_print_nothing_on_stderr():
    for fmt in ("table", "json", "csv", "markdown"):
        assert varctl("list", sample("batchnorm"), "-f", fmt).stderr == ""


def test_one_bad_model_does_not_hide_the_others(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_text("not a model")
    good = str(SAMPLES / "seed_dense.keras")
    result = runner.invoke(app, ["list", good, str(bad), good, "-f", "json"], env=ENV)
    assert result.exit_code == 3, result.output
    docs = json.loads(result.stdout)
    assert [d["model"] for d in docs] == [good, str(bad), good]
    assert "error" in docs[1] and len(docs[0]["variables"]) == 4 == len(docs[2]["variables"])
    assert result.stderr.count("varctl: error: cannot open") == 1


# -- help and shell completion ---------------------------------------------------------------------

COMMAND_NAMES = ("list", "freeze", "unfreeze", "check", "diff", "stats")


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_help_uses_plain_metavars(name):
    text = varctl(name, "--help").stdout
    usage = text.splitlines()[0].split(" ", 2)[2]  # "Usage: PROG ..."
    assert usage.startswith(f"{name} [OPTIONS] ")
    assert "{" not in usage and "}" not in usage
    assert not re.search(r"<(str|int|float|text|integer)>", text), text


def test_help_names_what_each_option_takes():
    freeze = " ".join(varctl("freeze", "--help").stdout.split())
    assert "freeze [OPTIONS] MODEL Freeze" in freeze
    for option in ("-p, --pattern PATTERN", "--first N", "--upto LAYER", "--in LAYER", "-o, --output FILE"):
        assert option in freeze
    assert "list [OPTIONS] MODEL...\n" in varctl("list", "--help").stdout


def _complete(*words: str) -> list[str]:
    """What bash completion offers for the last word, through Typer's own completion protocol."""
    env = {**ENV, "_VARCTL_COMPLETE": "complete_bash", "COMP_WORDS": " ".join(("varctl", *words)),
           "COMP_CWORD": str(len(words))}  # fmt: skip
    result = runner.invoke(app, [], env=env, prog_name="varctl")
    assert result.exit_code == 0 and result.stderr == "", result.output
    return result.stdout.split()


def test_pattern_completes_layer_names_of_the_model_on_the_line():
    tl = sample(TL)
    assert _complete("freeze", tl, "-p", "block_16_d") == [
        "block_16_depthwise",
        "block_16_depthwise_BN",
        "block_16_depthwise_relu",
    ]
    assert _complete("list", sample("seed_dense"), "--pattern", "") == ["dense", "dense_1"]
    assert _complete("unfreeze", tl, "--upto", f"{BASE}/block_16_pro") == [
        f"{BASE}/block_16_project",
        f"{BASE}/block_16_project_BN",
    ]
    assert _complete("freeze", "-p", "x", sample("seed_dense", "h5"), "--in", "dense_") == ["dense_1"]


@pytest.mark.parametrize("model", ["missing.keras", "sample_models/README.md", ""])
def test_completion_is_silent_without_a_readable_model(model):
    assert _complete("freeze", *([model] if model else []), "-p", "") == []


# -- progress on many files -------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("tty", "after", "drawn"), [(True, 0.0, True), (True, 60.0, False), (False, 0.0, False)]
)
def test_many_file_bar_only_on_a_terminal_and_only_for_slow_runs(monkeypatch, tty, after, drawn):
    from varctl import out

    stderr = _Terminal() if tty else io.StringIO()
    monkeypatch.setattr("sys.stderr", stderr)
    monkeypatch.setattr(out, "PROGRESS_AFTER_SECONDS", after)
    with out.many_files(3, "reading") as tick:
        for _ in range(3):
            tick()
    assert ("reading" in stderr.getvalue()) is drawn
