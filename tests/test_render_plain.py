"""The plain table (stdout not a terminal): varctl's own documented ASCII format.

tests/golden/*.table pin it on the sample models; these tests pin its rules on any text: every line
of the grid is as wide as the rule, each cell's text comes back out of its column unchanged,
numbers are right-aligned, and cell styles follow Column.kind, never a column's name.
"""

from __future__ import annotations

import io
import random

from varctl import out, render
from varctl.render import Column, Kind, Report, cell_len

_ALPHABET = (
    "abcXYZ019 _-/.()[]{}|+:*✓✗—"  # ordinary names, markup characters, the marks
    "日本語한국어"  # double-width
    "e\u0301\u0308"  # combining marks (zero width)
    "😀🤖"  # emoji, two cells
    "\x1b\t\u202e\u200b\u061c\u2064\U000e0041"  # controls and format characters (escaped by out.clean)
)


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, n)))


def _grid(text: str) -> list[list[str]]:
    """The cells of a plain table's header and body rows, stripped."""
    lines = text.splitlines()
    rules = [i for i, line in enumerate(lines) if line.startswith("+")]
    body = [line for line in lines[rules[0] : rules[-1] + 1] if line.startswith("|")]
    return [[cell.strip() for cell in line[1:-1].split(" | ")] for line in body]


def test_random_reports_keep_every_cell_and_align_the_grid():
    rng = random.Random(0)
    for _ in range(300):
        kinds = [rng.choice(list(Kind)) for _ in range(rng.randint(1, 6))]
        cols = [Column(f"k{i}", _word(rng, 8).replace("|", "") or "h", kind) for i, kind in enumerate(kinds)]
        values = [None, True, False, 0, 7, 1234567, -0.5, 1e-9, "pass", "FAIL", (3, 4), (5,)]
        records = [
            {
                c.key: rng.choice(values) if rng.random() < 0.5 else _word(rng, 12).replace("|", "")
                for c in cols
            }
            for _ in range(rng.randint(0, 5))
        ]
        report = Report("t " + _word(rng, 30), cols, {"rows": records}, "rows", ["s " + _word(rng, 20)])
        text = render.plain_table(report)
        lines = text.splitlines()
        rule = next(line for line in lines if line.startswith("+"))
        grid = [line for line in lines if line.startswith(("+", "|"))]
        assert all(cell_len(line) == cell_len(rule) for line in grid), text
        assert not any(out.hidden(ch) for ch in text if ch != "\n")
        expected = [[out.clean(c.header).strip() for c in cols]] + [
            [render._cell_str(c, r[c.key]).strip() for c in cols] for r in records
        ]
        assert _grid(text) == expected


def test_numbers_are_right_aligned_with_separators_and_flags_are_marks():
    cols = [Column("n", "n", Kind.numeric), Column("f", "f", Kind.flag), Column("s", "s", Kind.status)]
    records = [{"n": 1234567, "f": True, "s": None}, {"n": 5, "f": None, "s": "frozen"}]
    text = render.plain_table(Report("t", cols, {"r": records}, "r"))
    assert text.splitlines()[1:] == [
        "+-----------+---------+--------+",
        "|         n | f       | s      |",
        "+-----------+---------+--------+",
        "| 1,234,567 | ✓       | —      |",
        "|         5 | unknown | frozen |",
        "+-----------+---------+--------+",
        "",
    ]


def test_styles_come_from_the_kind_not_the_key():
    status = Column("anything", "x", Kind.status)
    assert render._cell_style(status, "FAIL") == "bold red"
    assert render._cell_style(Column("status", "x"), "FAIL") == ""  # a text column named "status"
    assert render._cell_style(Column("trainable", "x"), True) == ""
    assert render._cell_str(Column("trainable", "x"), True) == "yes"  # text: no ✓ for a key name


def test_a_report_without_columns_is_its_title_and_summary():
    assert render.plain_table(Report("pass m.keras: ok", [], {}, summary=["s"])) == "pass m.keras: ok\ns\n"


def test_rich_draws_the_same_cells_on_a_terminal(monkeypatch):
    """On a terminal rich draws the table; the cell texts are the plain table's."""
    buf = io.StringIO()
    console = out._make(buf, stderr=False)
    console.file = buf
    monkeypatch.setattr(out, "out", lambda: console)
    cols = [Column("p", "path"), Column("n", "params", Kind.numeric), Column("t", "trainable", Kind.flag)]
    render._rich_table(Report("t", cols, {"r": [{"p": "dense/kernel", "n": 1234, "t": False}]}, "r"))
    assert "dense/kernel" in buf.getvalue() and "1,234" in buf.getvalue() and "✗" in buf.getvalue()


def test_plain_only_off_a_terminal(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert render._plain_ok()
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not render._plain_ok()
