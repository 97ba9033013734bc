"""The fast paths of `varctl list` give what the simple code gives, byte for byte.

render.py builds tables, CSV and Markdown a column at a time and encodes JSON itself; out.clean
trusts str.isprintable(); ModelInfo pickles its variables and layers as columns; Selector compiles
each pattern once. Each is checked here against the plain per-value rule it replaces, on random
data full of the characters and types that take the slow paths.
"""

from __future__ import annotations

import csv
import io
import json
import math
import pickle
import random
import sys
import unicodedata
from fnmatch import fnmatchcase

import pytest

from varctl import out, render
from varctl.formats import _sandbox
from varctl.model import Cause, FrozenError, Layer, ModelFormat, ModelInfo, Risk, Variable
from varctl.render import Column, Kind, Report
from varctl.select import Selector

_ALPHABET = (
    "abcXYZ019 _-/.()[]{}|+:*%&<>!~`\\\"'=@✓✗—"
    "日本語e\u0301😀"
    "\x1b\t\r\n\x7f\u00a0\u202e\u200b\u061c\u2028\U000e0041\ud800"
)


def _word(rng: random.Random, n: int = 10) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, n)))


def _scalar(rng: random.Random) -> object:
    return rng.choice(
        [None, True, False, 0, 1, -5, 10**20, 1.5, -0.0, 1e-9, math.nan, math.inf, -math.inf,
         Cause.TRAINABLE, ModelFormat.KERAS, [3, 4], [5], [], (2, 3), {}, ["a", 1], [[1], []],
         _word(rng), _word(rng), "pass", "FAIL"]
    )  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> object:
    r = rng.random()
    if depth < 3 and r < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if depth < 3 and r < 0.3:
        return {_word(rng, 5): _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}
    if depth < 3 and r < 0.45:  # records: the same keys (mostly in the same order)
        keys = [_word(rng, 4) for _ in range(rng.randint(0, 5))]
        return [
            {
                k: _scalar(rng) if rng.random() < 0.8 else _value(rng, depth + 1)
                for k in keys[:: rng.choice((1, 1, -1))]
            }
            for _ in range(rng.randint(1, 5))
        ]
    return _scalar(rng)


def _reference_json(payload: object) -> str:
    """safe_json as it was: json.dumps (NaN and infinities as strings), then hidden characters escaped."""
    try:
        text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(render._finite(payload), indent=2, ensure_ascii=False, allow_nan=False)
    return "".join(render._json_escape(ch) if ch > "\x7f" and out.hidden(ch) else ch for ch in text)


def test_safe_json_is_json_dumps():
    rng = random.Random(0)
    for _ in range(3000):
        payload = _value(rng)
        if rng.random() < 0.03:
            payload = {1: "int key", None: [payload]}  # keys json.dumps converts: left to it
        assert render.safe_json(payload) == _reference_json(payload)


def test_safe_json_of_a_list_report_is_json_dumps():
    info = _info(random.Random(1), 300)
    from varctl import views

    for make in (views.list_report, views.layers_report):
        envelope = make(info, list(info.variables)).envelope
        assert render.safe_json(envelope) == _reference_json(envelope)


def test_clean_trusts_isprintable_over_all_of_unicode():
    """A printable string has no character clean escapes (out.clean's fast path)."""
    printable_but_hidden = [
        hex(c) for c in range(sys.maxunicode + 1) if chr(c).isprintable() and out.hidden(chr(c))
    ]
    assert printable_but_hidden == []
    assert unicodedata.category("\u00a0") == "Zs" and out.clean("a\u00a0b") == "a\u00a0b"


def _report(rng: random.Random) -> Report:
    kinds = [rng.choice(list(Kind)) for _ in range(rng.randint(0, 6))]
    cols = [
        Column(f"k{i}", _word(rng, 8) or "h", kind, in_table=rng.random() < 0.8, in_data=rng.random() < 0.8)
        for i, kind in enumerate(kinds)
    ]
    if cols and rng.random() < 0.2:
        cols[0] = cols[0]._replace(getter=lambda r: str(len(r)))
    records = [
        {c.key: _scalar(rng) if rng.random() < 0.6 else _word(rng, 12) for c in cols if rng.random() < 0.9}
        for _ in range(rng.randint(0, 6))
    ]
    rows = (lambda rec: (rec, dict(rec)) if len(rec) % 2 else ()) if rng.random() < 0.2 else None
    prefix = {"model": _word(rng, 8)} if rng.random() < 0.8 else {}
    summary = [_word(rng, 20) for _ in range(rng.randint(0, 2))]
    return Report(_word(rng, 30), cols, {"rows": records}, "rows", summary, prefix, rows)


def _reference_table(report: Report) -> str:
    """plain_table as it was: a cell at a time."""
    cols = [c for c in report.columns if c.in_table]
    title, summary = out.clean(report.title), [out.clean(s) for s in report.summary]
    if not cols:
        return "\n".join([title, *summary]) + "\n"
    header = [out.clean(c.header) for c in cols]
    rows = [[render._cell_str(c, c.value(row)) for c in cols] for row in report.table_rows()]
    widths = [max([render.cell_len(h), *(render.cell_len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        parts = []
        for c, w, text in zip(cols, widths, cells, strict=True):
            pad = " " * (w - render.cell_len(text))
            parts.append(f" {pad}{text} " if c.kind is Kind.numeric else f" {text}{pad} ")
        return "|" + "|".join(parts) + "|"

    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = ([title] if title else []) + [rule, line(header), rule, *map(line, rows), rule, *summary, ""]
    return "\n".join(lines) + "\n"


def _reference_markdown(report: Report) -> str:
    """markdown as it was: a cell at a time."""
    cols = [c for c in report.columns if c.in_data]
    lines = [f"### {render.md_escape(report.title)}", ""]
    if cols:
        lines.append("| " + " | ".join(render.md_escape(c.header) for c in cols) + " |")
        lines.append("|" + "|".join("---:" if c.kind is Kind.numeric else "---" for c in cols) + "|")
        for row in report.table_rows():
            lines.append("| " + " | ".join(render._md_cell(c, c.value(row)) for c in cols) + " |")
        lines.append("")
    lines.extend(f"{render.md_escape(s)}  " for s in report.summary)
    return "\n".join(lines).rstrip() + "\n"


def _reference_csv(reports: list[Report]) -> str:
    """_csv as it was: a cell at a time."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    prefix = list(reports[0].csv_prefix)
    data_cols = [c for c in reports[0].columns if c.in_data]
    writer.writerow(prefix + [c.key for c in data_cols])
    for r in reports:
        for row in r.table_rows():
            writer.writerow(
                [render._csv_cell(None, r.csv_prefix.get(k)) for k in prefix]
                + [render._csv_cell(c, c.value(row)) for c in data_cols]
            )
    return buf.getvalue()


def test_table_markdown_and_csv_are_the_per_cell_rules():
    """Built a column at a time, they are what a cell at a time gave, byte for byte."""
    rng = random.Random(2)
    for _ in range(1500):
        report = _report(rng)
        assert render.plain_table(report) == _reference_table(report)
        assert render.markdown(report) == _reference_markdown(report)
        assert render._csv([report, report]) == _reference_csv([report, report])


def test_md_escape_is_the_documented_rule():
    rng = random.Random(3)
    escapes = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|"}
    for _ in range(2000):
        text = _word(rng, 20)
        expected = "".join(
            escapes.get(ch, "\\" + ch) if ch in "\\`*_[]!~&<>|" else ch for ch in out.clean(text)
        )
        assert render.md_escape(text) == expected


# -- ModelInfo through the sandbox's pickle --------------------------------------------------------


def _info(rng: random.Random, n: int) -> ModelInfo:
    layers = tuple(
        Layer(f"base/l{i}", f"l{i}", "Dense", rng.random() < 0.5, None, True, 1, "base", index=i,
              pointer=("config", "layers", i), quantization=rng.choice([None, "int8"]))
        for i in range(n)
    )  # fmt: skip
    variables = tuple(
        Variable(f"base/l{i // 2}/v{i}", f"base/l{i // 2}", f"v{i}", (rng.randint(0, 9), 3)[: rng.randint(0, 2)],
                 "float32", rng.choice(list(Cause)), rng.choice([None, "base", _word(rng)]), f"w/{i}",
                 quantization=rng.choice([None, "int4"]), logical_params=rng.choice([None, 6]))
        for i in range(2 * n)
    )  # fmt: skip
    return ModelInfo(
        "m.keras", ModelFormat.KERAS, "3.15.0", "m", "Functional", True, layers, variables,
        warnings=("w",), risks=(Risk("custom", "base", "layer class `x`"),),
    )  # fmt: skip


def test_model_info_survives_the_sandbox_pickle():
    info = _info(random.Random(4), 200)
    kind, back = _sandbox._loads(_sandbox._dumps(("ok", info)))
    assert kind == "ok" and back == info
    assert [type(v) for v in back.variables] == [Variable] * 400
    assert back.variables[7].__dict__ == info.variables[7].__dict__
    empty = ModelInfo("e", ModelFormat.H5, None, "e", "Sequential", False, (), ())
    assert _sandbox._loads(_sandbox._dumps(("ok", empty)))[1] == empty


def test_a_variable_subclass_is_pickled_as_itself():
    class Tagged(Variable):  # not packed as columns (its own fields would be lost)
        pass

    info = _info(random.Random(5), 3)
    tagged = ModelInfo(**{**info.__dict__, "variables": (Tagged(*info.variables[0].__dict__.values()),)})
    state = tagged.__getstate__()
    assert "variables" in state and "layers:columns" in state
    back = ModelInfo.__new__(ModelInfo)
    back.__setstate__(state)
    assert back == tagged


def test_the_columns_carry_no_callable():
    """The state the parent rebuilds from holds plain values only: the allowlist stays the guard."""
    data = pickle.dumps(("ok", _info(random.Random(6), 20)), protocol=pickle.HIGHEST_PROTOCOL)
    found = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            found.append(f"{module}.{name}")
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    assert sorted(set(found)) == [
        "varctl.model.Cause", "varctl.model.ModelFormat", "varctl.model.ModelInfo", "varctl.model.Risk"
    ]  # fmt: skip


def test_records_init_takes_their_fields_and_they_stay_frozen():
    """Variable, Layer and ModelInfo (model.Record) fill their __dict__ in their own __init__:
    its parameters are the annotated fields, in order, with their defaults; ==, hash, repr and
    replace() go by those fields; no field can be assigned or deleted (as a frozen dataclass)."""
    import inspect

    from varctl import checks
    from varctl.formats.catalog import LayerSpec
    from varctl.formats.quantization import QuantSpec

    info = _info(random.Random(8), 30)
    records = (checks.Assertions, checks.Offender, checks.Outcome, checks.CheckResult, LayerSpec, QuantSpec)
    for kind in (Variable, Layer, ModelInfo, *records):
        params = list(inspect.signature(kind.__init__).parameters.values())[1:]
        annotated = [k for k, v in inspect.get_annotations(kind).items() if not v.startswith("ClassVar")]
        assert tuple(p.name for p in params) == kind._fields, kind
        assert kind._fields[-len(annotated) :] == tuple(annotated), kind  # a subclass's last
        assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
        for p in params:  # a field's default is its class attribute (as a dataclass's)
            assert p.default is inspect.Parameter.empty or p.default == getattr(kind, p.name), p
    for item in (*info.variables, *info.layers, info):
        made = type(item)(**item.__dict__)
        assert made == item and hash(made) == hash(item) and list(made.__dict__) == list(item._fields)
        assert item.replace() == item and item.replace() is not item
        assert repr(made) == repr(item) and repr(item).startswith(f"{type(item).__name__}(")
        changed = item.replace(name="other name")
        assert changed.name == "other name" and changed != item and item.name != "other name"
        with pytest.raises(TypeError, match="no field 'nope'"):
            item.replace(nope=1)
        with pytest.raises(FrozenError):
            made.name = "x"  # type: ignore[misc]
        with pytest.raises(FrozenError):
            del made.name  # type: ignore[misc]
    assert info.variables[0] != info.layers[0] and info.variables[0] != tuple(info.variables[0]._values())


# -- Selector ------------------------------------------------------------------------------------


def test_selector_is_fnmatchcase_on_the_name_or_the_path():
    rng = random.Random(7)
    paths = ["base", "base/conv", "base/block_1/conv", "head", "head/dense_1", "dense_10", "a[1]/b*"]
    info = ModelInfo(
        "m", ModelFormat.KERAS, None, "m", "F", True,
        tuple(Layer(p, p.rsplit("/", 1)[-1], "Dense", True, True, True, p.count("/"), None) for p in paths), (),
    )  # fmt: skip
    pieces = ["*", "?", "base", "conv", "/", "dense_", "1", "[1]", "[!a]", "head", "b*"]
    for _ in range(500):
        pattern = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 4)))
        target = (lambda p: p) if "/" in pattern else (lambda p: p.rsplit("/", 1)[-1])
        expected = [p for p in paths if fnmatchcase(target(p), pattern)]
        assert [l.path for l in Selector((pattern,)).layers(info)] == expected, pattern
        assert Selector((pattern,)).unmatched([info]) == ([] if expected else [pattern])
