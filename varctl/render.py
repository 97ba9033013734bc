"""render(reports, fmt): the only formatter. table | json | csv | markdown, all from one record list.

A `Report` is data: `records` (the JSON rows) inside an `envelope` (the JSON document around them),
and `Column`s that say how a record becomes a cell. JSON prints the envelope; the table, CSV and
Markdown read the same records through the same columns, so the formats cannot drift. How a cell
looks comes from `Column.kind`, never from a column's name.

Text from a model file is data in every format:
- JSON is strict: NaN and infinities are written as the strings "nan", "inf" and "-inf" (never the
  `NaN`/`Infinity` tokens most parsers reject); format characters are `\\uXXXX` escapes.
- Markdown cells and headers escape pipes, HTML (`<`, `>`, `&` as entities) and the characters of
  links, images, code and emphasis (`[ ] ! `` ` `` * _ ~ \\` with a backslash), so a name renders as text.
- CSV cells a spreadsheet would run as a formula (starting with `=`, `+`, `-`, `@`, tab or CR) get
  a leading `'` (OWASP's advice); numbers in numeric columns are left alone (`-0.5` stays a number).
- Everywhere, control and format characters are escaped (out.clean).
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from itertools import chain
from json.encoder import encode_basestring as _json_str  # C, as json.dumps(ensure_ascii=False)
from typing import TYPE_CHECKING, Any, NamedTuple

from varctl import out

if TYPE_CHECKING:
    from rich.text import Text


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


class CIFormat(str, Enum):
    """The formats of `check` and `diff`: Format's, plus GitHub workflow annotations (varctl.github)."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"
    github = "github"


class Kind(str, Enum):
    """How a column's cells look: the renderer's only styling input."""

    text = "text"  # a string from the model or from varctl, escaped
    numeric = "numeric"  # right-aligned; ints with thousands separators, floats to 6 digits
    flag = "flag"  # True / False / None: ✓ / ✗ / unknown in the table
    status = "status"  # one word with a colour (pass, FAIL, trainable, frozen, partial); None: —
    note = "note"  # secondary text, dimmed on a terminal


# Column and Annotation are NamedTuples, not frozen dataclasses: the same immutable records,
# made at import in ~0.15 ms each instead of ~0.6 ms (dataclasses compiles six methods).
class Column(NamedTuple):
    """One column: `key` names it in CSV and reads it from a record, unless `getter` computes it."""

    key: str
    header: str
    kind: Kind = Kind.text
    getter: Callable[[dict[str, Any]], Any] | None = None
    in_table: bool = True
    in_data: bool = True  # False: decoration for people (the indented tree), not in csv/markdown

    def value(self, row: dict[str, Any]) -> Any:
        return self.getter(row) if self.getter is not None else row.get(self.key)

    def values(self, rows: list[dict[str, Any]]) -> list[Any]:
        """`value` of every row: one comprehension per column, not one method call per cell."""
        if self.getter is not None:
            return list(map(self.getter, rows))
        key = self.key
        return [row.get(key) for row in rows]


class Annotation(NamedTuple):
    """A GitHub workflow annotation (`::error file=...,title=...::message`) for `-f github`."""

    level: str  # error | warning | notice
    title: str
    message: str
    file: str | None = None


class Report:
    """A report: the JSON `envelope`, whose `records_key` holds the records every format shows.

    `rows` turns one record into its table rows (default: the record itself), for reports whose
    records nest what the table shows flat (an assertion and the variables that fail it).
    `annotations`: what `-f github` reports. (A plain class: see model.Record for why no dataclass.)
    """

    def __init__(
        self,
        title: str,
        columns: list[Column],
        envelope: dict[str, Any],
        records_key: str | None = None,
        summary: list[str] | None = None,
        csv_prefix: dict[str, Any] | None = None,  # e.g. {"model": path}
        rows: Callable[[dict[str, Any]], Iterable[dict[str, Any]]] | None = None,
        annotations: list[Annotation] | None = None,
    ) -> None:
        self.title = title
        self.columns = columns
        self.envelope = envelope
        self.records_key = records_key
        self.summary = [] if summary is None else summary
        self.csv_prefix = {} if csv_prefix is None else csv_prefix
        self.rows = rows
        self.annotations = [] if annotations is None else annotations

    @property
    def records(self) -> list[dict[str, Any]]:
        return self.envelope[self.records_key] if self.records_key else []

    def table_rows(self) -> Iterator[dict[str, Any]]:
        for record in self.records:
            yield from (self.rows(record) if self.rows is not None else (record,))

    def row_list(self) -> list[dict[str, Any]]:
        """The table rows as a list (the records themselves when each record is one row)."""
        return self.records if self.rows is None else list(self.table_rows())


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.2f} {unit}"
        size /= 1000
    return f"{n} B"


# -- cells ----------------------------------------------------------------------------------------


def _plain(value: Any) -> str:
    """A value as text: shapes as tuples, bools as yes/no, None empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(map(str, value)) + (",)" if len(value) == 1 else ")")
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


_FLAG_MARKS = {True: "✓", False: "✗", None: "unknown"}
_FLAG_STYLES = {True: "green", False: "red", None: "yellow"}
_STATUS_STYLES = {
    "pass": "green",
    "FAIL": "bold red",
    "trainable": "green",
    "frozen": "red",
    "partial": "yellow",
    "unknown": "yellow",
}


def _cell_str(col: Column, value: Any) -> str:
    """A table cell's text (the same on a terminal and off it)."""
    if col.kind is Kind.numeric and (number := _number(value)) is not None:
        return number
    if col.kind is Kind.flag and (value is None or isinstance(value, bool)):
        return _FLAG_MARKS[value]
    if col.kind is Kind.status and value is None:
        return "—"
    return out.clean(_plain(value))


def _cell_strs(col: Column, values: list[Any]) -> list[str]:
    """`_cell_str` of each value of one column, the common cells (ints, flags, printable strings)
    without a call each: for layers_4000 (8,000 rows) the table went from 102 ms to 16 ms."""
    kind = col.kind
    if kind is Kind.numeric:
        return [f"{v:,}" if type(v) is int else _cell_str(col, v) for v in values]
    if kind is Kind.flag:
        return [_FLAG_MARKS[v] if v is None or type(v) is bool else _cell_str(col, v) for v in values]
    if kind is Kind.status:
        texts = [v if type(v) is str else _cell_str(col, v) for v in values]
    else:
        texts = [v if type(v) is str else "" if v is None else _plain(v) for v in values]
    # One check for the whole column: printable text is what out.clean returns unchanged (and
    # cleaning the texts _cell_str made again changes nothing).
    return texts if "".join(texts).isprintable() else list(map(out.clean, texts))


def _cell_style(col: Column, value: Any) -> str:
    if col.kind is Kind.flag and (value is None or isinstance(value, bool)):
        return _FLAG_STYLES[value]
    if col.kind is Kind.status:
        return "dim" if value is None else _STATUS_STYLES.get(str(value), "")
    return "dim" if col.kind is Kind.note else ""


# -- table ----------------------------------------------------------------------------------------


def _plain_ok() -> bool:
    """True when the table is for a program or a file (stdout not a terminal, no colour forced):
    then varctl writes its own plain ASCII table, fast and pinned by the golden files."""
    if os.environ.get("FORCE_COLOR") is not None or os.environ.get("TTY_COMPATIBLE", "") != "":
        return False
    if "IPython" in sys.modules or "idlelib" in sys.modules:  # rich has its own rules there
        return False
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


# The marks varctl puts in cells: not ASCII, but one terminal cell each.
_DROP_NARROW = str.maketrans("", "", "✓✗—")


def _narrow(text: str) -> bool:
    """True when every character of `text` takes one terminal cell (ASCII or a mark)."""
    return text.isascii() or text.translate(_DROP_NARROW).isascii()


def cell_len(text: str) -> int:
    """Terminal cells `text` takes (rich.cells is imported only for wide text)."""
    if _narrow(text):
        return len(text)
    from rich.cells import cell_len as rich_cell_len

    return rich_cell_len(text)


def _padded(texts: list[str], right: bool) -> tuple[int, list[str]]:
    """A column's width and its texts padded to it (on the left for numbers)."""
    if _narrow("".join(texts)):  # one cell per character (nearly every column): str pads it
        width = max(map(len, texts))
        return width, [t.rjust(width) for t in texts] if right else [t.ljust(width) for t in texts]
    lengths = list(map(cell_len, texts))
    width = max(lengths)
    pads = [" " * (width - n) for n in lengths]
    if right:
        return width, [p + t for p, t in zip(pads, texts, strict=True)]
    return width, [t + p for t, p in zip(texts, pads, strict=True)]


def plain_table(report: Report) -> str:
    """varctl's plain table: the title, an ASCII grid (numbers right-aligned), the summary lines.

    A report without table columns is its title and summary only (a passing `check`).
    """
    cols = [c for c in report.columns if c.in_table]
    title = out.clean(report.title)
    summary = [out.clean(s) for s in report.summary]
    if not cols:
        return "\n".join([title, *summary]) + "\n"
    rows = report.row_list()
    widths, columns = [], []  # column by column: the header, then a cell per row
    for c in cols:
        width, texts = _padded([out.clean(c.header), *_cell_strs(c, c.values(rows))], c.kind is Kind.numeric)
        widths.append(width)
        columns.append(texts)
    header, *body = ["| " + " | ".join(cells) + " |" for cells in zip(*columns, strict=True)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    lines = ([title] if title else []) + [rule, header, rule, *body, rule, *summary, ""]
    return "\n".join(lines) + "\n"


def rich_renderable(report: Report, *, terminal: bool = True) -> Any:
    """The report as a rich renderable (title, table, summary lines): what a terminal shows."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cols = [c for c in report.columns if c.in_table]
    title = Text(out.clean(report.title), style="bold")
    parts: list[Any] = [title]
    if cols:
        table = Table(
            title=title,
            box=box.SIMPLE_HEAD if terminal else box.ASCII2,
            header_style="bold",
            title_justify="left",
        )
        for c in cols:
            table.add_column(
                Text(out.clean(c.header)),
                justify="right" if c.kind is Kind.numeric else "left",
                no_wrap=c.kind is not Kind.note,
            )
        for row in report.table_rows():
            table.add_row(*(_rich_cell(c, c.value(row)) for c in cols))
        parts = [table]
    return Group(*parts, *(Text(out.clean(line)) for line in report.summary))


def _rich_table(report: Report) -> None:
    """The table on a terminal, drawn by rich (imported only here)."""
    console = out.out()
    console.print(rich_renderable(report, terminal=console.is_terminal))
    console.print()


def _rich_cell(col: Column, value: Any) -> Text:
    from rich.text import Text

    return Text(_cell_str(col, value), style=_cell_style(col, value))


# -- markdown -------------------------------------------------------------------------------------

# HTML's own characters as entities, the pipe and the characters of markup behind a backslash.
_MD_ESCAPES = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", "|": "\\|", **{ch: "\\" + ch for ch in "\\`*_[]!~"}}
)


def md_escape(text: str) -> str:
    """Text for a GFM table cell or heading: rendered as the same characters, never as markup."""
    return out.clean(text).translate(_MD_ESCAPES)


def _md_cell(col: Column, value: Any) -> str:
    if col.kind is Kind.numeric and (number := _number(value)) is not None:
        return number
    return md_escape(_plain(value))


def _md_cells(col: Column, values: list[Any]) -> list[str]:
    """`_md_cell` of each value of one column (ints and printable strings in bulk, as _cell_strs)."""
    if col.kind is Kind.numeric:
        return [f"{v:,}" if type(v) is int else _md_cell(col, v) for v in values]
    texts = [v if type(v) is str else "" if v is None else _plain(v) for v in values]
    if not "".join(texts).isprintable():
        texts = list(map(out.clean, texts))
    # One translate for the column: cleaned text has no newline (out.clean escapes it), and the
    # escapes add none, so the lines come back apart as they went in.
    return "\n".join(texts).translate(_MD_ESCAPES).split("\n") if texts else []


def markdown(report: Report) -> str:
    cols = [c for c in report.columns if c.in_data]
    lines = [f"### {md_escape(report.title)}", ""]
    if cols:
        lines.append("| " + " | ".join(md_escape(c.header) for c in cols) + " |")
        lines.append("|" + "|".join("---:" if c.kind is Kind.numeric else "---" for c in cols) + "|")
        rows = report.row_list()
        columns = [_md_cells(c, c.values(rows)) for c in cols]
        lines.extend("| " + " | ".join(cells) + " |" for cells in zip(*columns, strict=True))
        lines.append("")
    lines.extend(f"{md_escape(s)}  " for s in report.summary)
    return "\n".join(lines).rstrip() + "\n"


# -- csv ------------------------------------------------------------------------------------------

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(col: Column | None, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if col is not None and col.kind is Kind.numeric and _number(value) is not None:
        return str(value)
    text = out.clean(_plain(value))
    # A cell a spreadsheet would run as a formula; out.clean has already escaped tab and CR.
    return "'" + text if text.startswith(_FORMULA_START) else text


_CSV_CONSTANTS = {None: "", True: "true", False: "false"}


def _csv_cells(col: Column, values: list[Any]) -> list[str]:
    """`_csv_cell` of each value of one column (ints and printable strings in bulk, as _cell_strs)."""
    if col.kind is Kind.numeric:
        return [str(v) if type(v) is int else _csv_cell(col, v) for v in values]
    if set(map(type, values)) <= {bool, type(None)}:  # a flag column
        return list(map(_CSV_CONSTANTS.__getitem__, values))
    # _csv_cell's own texts come out of out.clean and the formula guard unchanged
    texts = [v if type(v) is str else "" if v is None else _csv_cell(col, v) for v in values]
    if not "".join(texts).isprintable():
        texts = list(map(out.clean, texts))
    # A formula start is rare: looked for in the whole column first (cleaned text has no newline,
    # so a newline and `=` can only be a cell starting with `=`).
    column = "\n" + "\n".join(texts)
    if not any("\n" + ch in column for ch in _FORMULA_START):
        return texts
    return ["'" + t if t.startswith(_FORMULA_START) else t for t in texts]


def _csv(reports: Sequence[Report]) -> str:
    import csv  # only -f csv needs it

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    first = reports[0]
    prefix = list(first.csv_prefix)
    data_cols = [c for c in first.columns if c.in_data]
    writer.writerow(prefix + [c.key for c in data_cols])
    for r in reports:
        rows = r.row_list()
        fixed = [_csv_cell(None, r.csv_prefix.get(k)) for k in prefix]
        columns = [_csv_cells(c, c.values(rows)) for c in data_cols]
        writer.writerows(
            ([*fixed, *cells] for cells in zip(*columns, strict=True)) if columns else [fixed] * len(rows)
        )
    return buf.getvalue()


# -- json -----------------------------------------------------------------------------------------


def _finite(payload: Any) -> Any:
    """`payload` with every NaN / infinite float replaced by "nan", "inf" or "-inf"."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return "nan" if math.isnan(payload) else ("inf" if payload > 0 else "-inf")
    if isinstance(payload, dict):
        return {k: _finite(v) for k, v in payload.items()}
    if isinstance(payload, (list, tuple)):
        return [_finite(v) for v in payload]
    return payload


class _Unusual(Exception):
    """A value `_json_text` leaves to json.dumps: a key that is not a string, a type it does not know."""


_JSON_CONSTANTS = {None: "null", True: "true", False: "false"}


def _json_text(value: Any, newline: str) -> str:
    """`json.dumps(_finite(value), indent=2, ensure_ascii=False)`; `newline` is "\\n" and the indent.

    json's encoder indents in Python, one generator per value: 72 ms for layers_4000's 8,000 rows.
    Here a list of records (dicts with the same keys) is encoded a column at a time (20 ms).
    Strings go through json's own escaping (C); a float, a str enum and others here.
    """
    t = type(value)
    if t is str:
        return _json_str(value)
    if t is int:
        return int.__repr__(value)
    if value is None or t is bool:
        return _JSON_CONSTANTS[value]
    if t is dict:
        if not value:
            return "{}"
        inner = newline + "  "
        items = [_json_key(k) + ": " + _json_text(v, inner) for k, v in value.items()]
        return "{" + inner + ("," + inner).join(items) + newline + "}"
    if t is list or t is tuple:
        if not value:
            return "[]"
        inner = newline + "  "
        records = _json_records(value, inner) if type(value[0]) is dict else None
        if records is None:
            items = [int.__repr__(v) if type(v) is int else _json_text(v, inner) for v in value]
            return "[" + inner + ("," + inner).join(items) + newline + "]"
        return "[" + inner + ("," + inner).join(records) + newline + "]"
    if isinstance(value, str):  # a str enum (ModelFormat): its value, as json.dumps writes it
        return _json_str(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return float.__repr__(value)
        return '"nan"' if math.isnan(value) else ('"inf"' if value > 0 else '"-inf"')
    raise _Unusual


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return _json_str(key)
    raise _Unusual


def _json_records(rows: list[Any] | tuple[Any, ...], newline: str) -> list[str] | None:
    """Each of `rows`, dicts with the same keys in the same order, as JSON at indent `newline`;
    None for other lists. A column's values are encoded together, then each row fills a template."""
    if set(map(type, rows)) != {dict}:
        return None
    keys = tuple(rows[0])
    if not keys or set(map(tuple, rows)) != {keys}:
        return None
    inner = newline + "  "
    # `%` in a key is the template's own: doubled
    template = "{" + ",".join(f"{inner}{_json_key(k).replace('%', '%%')}: %s" for k in keys) + newline + "}"
    columns = [_json_column(values, inner) for values in zip(*map(dict.values, rows), strict=True)]
    return [template % values for values in zip(*columns, strict=True)]


def _json_column(values: tuple[Any, ...], newline: str) -> list[str]:
    """Each of `values` (one key of many records) as JSON: strings, ints, flags, shapes in one pass."""
    kinds = set(map(type, values))
    if kinds == {str}:
        return list(map(_json_str, values))
    if kinds == {int}:
        return list(map(int.__repr__, values))
    if kinds <= {bool, type(None)}:
        return list(map(_JSON_CONSTANTS.__getitem__, values))
    if kinds <= {str, type(None)}:
        return ["null" if v is None else _json_str(v) for v in values]
    if kinds == {list} and set(map(type, chain.from_iterable(values))) <= {int}:  # shapes
        inner = newline + "  "
        sep = "," + inner
        return [f"[{inner}{sep.join(map(int.__repr__, v))}{newline}]" if v else "[]" for v in values]
    return [_json_text(v, newline) for v in values]


def safe_json(payload: Any) -> str:
    """Strict JSON (no NaN/Infinity tokens), non-ASCII text readable but format characters escaped.

    json.dumps escapes C0 controls itself, not bidi or other invisible characters, which a
    terminal showing the output would act on.
    """
    try:
        text = _json_text(payload, "\n")
    except _Unusual:  # not our plain data: json.dumps says what it makes of it (or what is wrong)
        try:
            text = json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError:  # a NaN or an infinity somewhere: walk the payload once
            text = json.dumps(_finite(payload), indent=2, ensure_ascii=False, allow_nan=False)
    if text.isascii():  # json has escaped the ASCII controls inside strings already
        return text
    hidden = [ch for ch in set(text) if ch > "\x7f" and out.hidden(ch)]
    return text.translate({ord(ch): _json_escape(ch) for ch in hidden}) if hidden else text


def _json_escape(ch: str) -> str:
    """A character as JSON `\\uXXXX` escapes (a surrogate pair above U+FFFF)."""
    code = ord(ch)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


# -- github -----------------------------------------------------------------------------------------


def _gh_data(text: str) -> str:
    """A workflow command's message, escaped as GitHub's toolkit does (escapeData)."""
    return out.clean(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_property(text: str) -> str:
    """A workflow command's property value (escapeProperty): also `:` and `,`."""
    return _gh_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(a: Annotation) -> str:
    """`::error file=m.keras,title=...::message` (docs: "Workflow commands for GitHub Actions")."""
    props = [f"file={_gh_property(a.file)}"] if a.file else []
    props.append(f"title={_gh_property(a.title)}")
    return f"::{a.level} {','.join(props)}::{_gh_data(a.message)}"


def append_step_summary(text: str) -> None:
    """Append Markdown to the job summary ($GITHUB_STEP_SUMMARY), when running in GitHub Actions."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not path:
        return
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
    except OSError as e:
        out.message("warning", f"cannot append to GITHUB_STEP_SUMMARY ({path}): {e.strerror or e}")


def _github(reports: Sequence[Report]) -> str:
    append_step_summary("\n".join(markdown(r) for r in reports))
    return "".join(github_command(a) + "\n" for r in reports for a in r.annotations)


# -- the entry point ------------------------------------------------------------------------------


def render(reports: Sequence[Report], fmt: Format | CIFormat) -> None:
    """Write reports to stdout in `fmt`. Several reports: one table each, or one JSON array.

    `github`: the reports' annotations as workflow commands, and their Markdown appended to the
    job summary when $GITHUB_STEP_SUMMARY is set.
    """
    if not reports:
        return
    stdout = sys.stdout  # what out.out().file is, without importing rich for json/csv/markdown
    kind = fmt.value
    if kind == "json":
        docs = [r.envelope for r in reports]
        stdout.write(safe_json(docs[0] if len(docs) == 1 else docs) + "\n")
    elif kind == "csv":
        stdout.write(_csv(reports))
    elif kind == "markdown":
        stdout.write("\n".join(markdown(r) for r in reports))
    elif kind == "github":
        stdout.write(_github(reports))
    elif _plain_ok():
        stdout.write("".join(plain_table(r) for r in reports))
    else:
        for r in reports:
            _rich_table(r)
    stdout.flush()
