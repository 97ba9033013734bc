"""The plain table (stdout not a terminal) writes exactly what rich's table would, character for character.

render.py draws the non-TTY table itself because rich lays out every cell as a renderable (0.2 s for
268 rows). These tests pin that shortcut to rich: same reports through both, same text.
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from varctl import out, render, views
from varctl.formats import open_model
from varctl.render import Column, Report

SAMPLES = Path(__file__).resolve().parent.parent / "sample_models"


def _rich(report: Report, monkeypatch: pytest.MonkeyPatch) -> str:
    buf = io.StringIO()
    console = out._make(buf, stderr=False)  # the console varctl uses when stdout is not a TTY
    console.file = buf
    monkeypatch.setattr(render, "_plain_ok", lambda: False)
    monkeypatch.setattr(out, "out", lambda: console)
    render._table(report)
    monkeypatch.undo()
    return buf.getvalue()


def _plain(report: Report) -> str:
    text = render._plain_table(report, [c for c in report.columns if c.in_table])
    assert text is not None
    return text


@pytest.mark.parametrize("sample", sorted(p.name for p in SAMPLES.glob("*.keras")) + ["transfer_learning.h5"])
@pytest.mark.parametrize("view", [views.list_report, views.layers_report])
def test_sample_reports_match_rich(sample, view, monkeypatch):
    info = open_model(str(SAMPLES / sample))
    report = view(info, list(info.variables))
    assert _plain(report) == _rich(report, monkeypatch)


_ALPHABET = (
    "abcXYZ019 _-/.()[]{}|+:*✓✗—"  # ordinary names, rich markup characters, the marks
    "日本語한국어"  # double-width
    "e\u0301\u0308"  # combining marks (zero width)
    "😀🤖"  # emoji, two cells
    "\x1b\t\u202e\u200b"  # controls and invisible characters (escaped by out.clean)
)


def _word(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(rng.randint(0, n)))


def test_random_reports_match_rich(monkeypatch):
    rng = random.Random(0)
    headers = ["path", "shape", "params", "why not trainable", "vars", "h"]
    compared = 0
    for _ in range(300):
        ncols = rng.randint(1, 6)
        cols = [
            Column(
                rng.choice(["path", "layer", "trainable", "state", "status", "reason", "x", "n"]) + str(i),
                rng.choice(headers) if rng.random() < 0.9 else _word(rng, 8) or "h",
                numeric=rng.random() < 0.3,
            )
            for i in range(ncols)
        ]
        # Keys the renderer styles specially, with the values it expects there.
        for c in cols[: rng.randint(0, ncols)]:
            object.__setattr__(c, "key", rng.choice(["trainable", "state", "status", "reason"]))
        values = [
            None,
            True,
            False,
            0,
            7,
            1234567,
            0.5,
            1e-9,
            "pass",
            "FAIL",
            "partial",
            "frozen",
            (3, 4),
            (5,),
        ]
        rows = [
            {c.key: rng.choice(values) if rng.random() < 0.5 else _word(rng, 12) for c in cols}
            for _ in range(rng.randint(0, 5))
        ]
        title = _word(rng, 30).strip()
        summary = [_word(rng, 20).strip() for _ in range(rng.randint(0, 3))]
        report = Report(title, cols, rows, summary)
        plain = render._plain_table(report, cols)
        if plain is None:
            continue
        assert plain == _rich(report, monkeypatch), (title, cols, rows, summary)
        compared += 1
    assert compared > 200


def test_plain_only_off_a_terminal(monkeypatch):
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert render._plain_ok()
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not render._plain_ok()
