"""render(reports, fmt): the only formatter. table | json | csv | markdown, from plain rows.

Commands build `Report`s (data); this module decides how they look. The table shows the columns
marked for it; csv and markdown carry every column; json prints each report's contract object.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from varctl import out

if TYPE_CHECKING:
    from rich.text import Text


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool = False
    in_table: bool = True
    table_only: bool = False  # decoration for people (the indented tree): not in csv


@dataclass
class Report:
    title: str
    columns: list[Column]
    rows: list[dict[str, Any]]
    summary: list[str] = field(default_factory=list)
    document: Any = None  # the JSON contract object
    csv_prefix: dict[str, Any] = field(default_factory=dict)  # e.g. {"model": path}


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.2f} {unit}"
        size /= 1000
    return f"{n} B"


def _plain(value: Any) -> str:
    """A cell as text for csv/markdown/table: shapes as tuples, bools as yes/no, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(str(v) for v in value) + (",)" if len(value) == 1 else ")")
    return str(value)


def _number(value: Any) -> str | None:
    """Thousands separators for ints, 6 significant digits for floats; None if not a number."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return None


def _table_cell(col: Column, value: Any) -> Text:
    from rich.text import Text

    if col.numeric and (number := _number(value)) is not None:
        return Text(number)
    if col.key == "status" and value in ("pass", "FAIL"):
        return Text(value, style="green" if value == "pass" else "bold red")
    if col.key == "state" and value is None:
        return Text("—", style="dim")
    if col.key == "trainable" or col.key == "state":
        styles = {True: ("✓", "green"), False: ("✗", "red"), None: ("unknown", "yellow")}
        if value in styles:
            mark, style = styles[value]
            return Text(mark, style=style)
        return Text(
            out.clean(str(value)), style={"partial": "yellow", "frozen": "red"}.get(str(value), "green")
        )
    text = Text(out.clean(_plain(value)))
    if col.key == "reason":
        text.stylize("dim")
    return text


def _cell_str(col: Column, value: Any) -> str:
    """The text of `_table_cell(col, value)`, without rich (for the plain table)."""
    if col.numeric and (number := _number(value)) is not None:
        return number
    if col.key == "status" and value in ("pass", "FAIL"):
        return str(value)
    if col.key == "state" and value is None:
        return "—"
    if col.key == "trainable" or col.key == "state":
        marks = {True: "✓", False: "✗", None: "unknown"}
        if value in marks:
            return marks[value]
        return out.clean(str(value))
    return out.clean(_plain(value))


# The width of the non-TTY console (out._make): a wider table is left to rich, which would shrink it.
_PLAIN_WIDTH = 10_000


def _plain_ok() -> bool:
    """True when rich would draw the table undecorated: stdout not a terminal, no colour forced.

    Then `_plain_table` writes the same characters rich would, about 50 times faster (rich lays
    out every cell as a renderable: 0.2 s for 268 rows, 8 s for 10,000).
    """
    if os.environ.get("FORCE_COLOR") is not None or os.environ.get("TTY_COMPATIBLE", "") != "":
        return False
    if "IPython" in sys.modules or "idlelib" in sys.modules:  # rich has its own rules there
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


_NARROW = frozenset("✓✗—")


def cell_len(text: str) -> int:
    """Terminal cells `text` takes, as rich counts them (rich.cells is imported only for wide text)."""
    if all(ch.isascii() or ch in _NARROW for ch in text):
        return len(text)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(text)


def _plain_table(report: Report, cols: list[Column]) -> str | None:
    """rich's ASCII2 table (title, header, rows, summary) as text; None where rich would differ."""
    header = [c.header for c in cols]
    if not all(h.isascii() and h.isprintable() and "[" not in h and ":" not in h for h in header):
        return None  # rich reads a header string as markup (and :emoji:): only plain words here
    rows = [[_cell_str(c, row.get(c.key)) for c in cols] for row in report.rows]
    widths = [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    if sum(w + 3 for w in widths) + 1 > _PLAIN_WIDTH:
        return None

    def line(cells: list[str]) -> str:
        parts = []
        for c, w, text in zip(cols, widths, cells, strict=True):
            if c.numeric:  # rich right-justifies a stripped copy; the width counted the blanks
                text = text.rstrip()
            pad = " " * (w - cell_len(text))
            parts.append(f" {pad}{text} " if c.numeric else f" {text}{pad} ")
        return "|" + "|".join(parts) + "|"

    title = out.clean(report.title)
    summary = [out.clean(s) for s in report.summary]
    if title != title.strip() or any(s != s.strip() for s in summary):
        return None  # leading/trailing blanks: leave the edge cases to rich
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = ([title] if title else []) + [rule, line(header), rule, *map(line, rows), rule, *summary, ""]
    return "\n".join(lines) + "\n"


def _table(report: Report) -> None:
    cols = [c for c in report.columns if c.in_table]
    if _plain_ok() and (text := _plain_table(report, cols)) is not None:
        sys.stdout.write(text)
        return
    # rich.table is imported here, not at module level: cli.py needs this module for Format.
    from rich import box
    from rich.table import Table
    from rich.text import Text

    console = out.out()
    table = Table(
        title=Text(out.clean(report.title), style="bold"),
        box=box.SIMPLE_HEAD if console.is_terminal else box.ASCII2,
        header_style="bold",
        title_justify="left",
    )
    for c in cols:
        table.add_column(
            c.header, justify="right" if c.numeric else "left", no_wrap=c.key in ("path", "layer")
        )
    for row in report.rows:
        table.add_row(*(_table_cell(c, row.get(c.key)) for c in cols))
    console.print(table)
    for line in report.summary:
        console.print(Text(out.clean(line)))
    console.print()


def _markdown(report: Report) -> str:
    def esc(s: str) -> str:
        return out.clean(s).replace("|", "\\|")

    lines = [f"### {esc(report.title)}", ""]
    lines.append("| " + " | ".join(c.header for c in report.columns) + " |")
    lines.append("|" + "|".join("---:" if c.numeric else "---" for c in report.columns) + "|")
    for row in report.rows:
        cells = []
        for c in report.columns:
            v = row.get(c.key)
            number = _number(v) if c.numeric else None
            cells.append(number if number is not None else esc(_plain(v)))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"{esc(s)}  " for s in report.summary)
    return "\n".join(lines).rstrip() + "\n"


def _csv(reports: Sequence[Report]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    first = reports[0]
    prefix = list(first.csv_prefix)
    data_cols = [c for c in first.columns if not c.table_only]
    writer.writerow(prefix + [c.key for c in data_cols])
    for r in reports:
        for row in r.rows:
            writer.writerow(
                [out.clean(_plain(r.csv_prefix[k])) for k in prefix]
                + [out.clean(_csv_value(row.get(c.key))) for c in data_cols]
            )
    return buf.getvalue()


def _csv_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _plain(value)


def safe_json(payload: Any) -> str:
    """JSON with non-ASCII text kept readable, but bidi and other invisible format characters
    escaped (`\\u202e`): json.dumps escapes C0 controls itself, not these, and a terminal that
    shows the output would reorder it."""
    text = json.dumps(payload, indent=2, ensure_ascii=False)
    if text.isascii():  # json.dumps has escaped the ASCII controls inside strings already
        return text
    return "".join(_json_escape(ch) if ch > "\x7f" and out.hidden(ch) else ch for ch in text)


def _json_escape(ch: str) -> str:
    """A character as JSON `\\uXXXX` escapes (a surrogate pair above U+FFFF)."""
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def render(reports: Sequence[Report], fmt: Format) -> None:
    """Write reports to stdout in `fmt`. Several reports: one table each, or one JSON array."""
    if not reports:
        return
    stdout = sys.stdout  # what out.out().file is, without importing rich for json/csv/markdown
    if fmt is Format.json:
        docs = [r.document for r in reports]
        payload = docs[0] if len(docs) == 1 else docs
        stdout.write(safe_json(payload) + "\n")
    elif fmt is Format.csv:
        stdout.write(_csv(reports))
    elif fmt is Format.markdown:
        stdout.write("\n".join(_markdown(r) for r in reports))
    else:
        for r in reports:
            _table(r)
    stdout.flush()
