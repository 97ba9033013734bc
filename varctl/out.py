"""The two consoles: `out` (stdout, data only) and `err` (stderr, messages), and the TTY/colour policy.

A TTY changes decoration (colour, box style), never content. Off a TTY, lines are never cut: rich
would otherwise fall back to 80 columns and truncate long paths. rich honours NO_COLOR, FORCE_COLOR
and COLUMNS itself.
"""

from __future__ import annotations

import functools
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

# Characters never sent raw, in any format or on stderr: controls (Cc: C0, DEL, C1), every format
# character (Cf: zero-width, bidi marks and embeddings, U+061C, U+2060-2064, tag characters
# U+E0000-E007F, ...), unpaired surrogates (Cs) and the line/paragraph separators (Zl, Zp).
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


@functools.lru_cache(maxsize=8192)
def hidden(ch: str) -> bool:
    """True for a character `clean` escapes (cached: names repeat the same few characters)."""
    return unicodedata.category(ch) in HIDDEN_CATEGORIES


def _escape(ch: str) -> str:
    return ch.encode("unicode_escape", "backslashreplace").decode("ascii")


def clean(text: str) -> str:
    """Make a string from a model file safe to show: hidden characters become `\\uXXXX`-style escapes.

    Printable text (nearly every name) costs one C call: str.isprintable() is False for every
    character of HIDDEN_CATEGORIES (checked over all of Unicode in tests/test_render_plain.py), so
    printable text has nothing to escape; other text costs one cached lookup per character.
    """
    if text.isprintable() or not any(map(hidden, text)):
        return text
    return "".join(_escape(ch) if hidden(ch) else ch for ch in text)


def _make(stream: object, stderr: bool) -> Console:
    # rich is imported on first use: `--version`, `--help` and `-f json` never need it (~35 ms).
    from rich.console import Console

    is_tty = bool(getattr(stream, "isatty", lambda: False)())
    if is_tty:
        return Console(stderr=stderr, highlight=False)
    return Console(stderr=stderr, width=10_000, highlight=False, soft_wrap=True)


def out() -> Console:
    """Console for data (stdout). Made per call so tests that swap sys.stdout see their stream."""
    return _make(sys.stdout, stderr=False)


def err() -> Console:
    """Console for messages (stderr)."""
    return _make(sys.stderr, stderr=True)


def message(kind: str, text: str) -> None:
    """`varctl: warning: ...` on stderr, never interpreted as rich markup."""
    err().print(f"varctl: {kind}: {clean(text)}", markup=False, highlight=False, soft_wrap=True)


# Reads smaller than this finish before a bar would be worth drawing.
PROGRESS_MIN_BYTES = 64 * 1024 * 1024


@contextmanager
def progress(total_bytes: int, label: str) -> Iterator[Callable[[int], None]]:
    """An `advance(nbytes)` callback drawing a bar on stderr: only on a TTY, only for large reads.

    The bar is transient (erased when done), so it never mixes with data or messages.
    """
    if total_bytes < PROGRESS_MIN_BYTES:  # (first: `check` of flags reads 0 bytes and needs no rich)
        yield lambda _n: None
        return
    console = err()
    if not console.is_terminal:
        yield lambda _n: None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(escape(clean(label)), total=total_bytes)
        yield lambda n: bar.advance(task, n)


# A run over many files shows a bar once it has taken this long (seconds).
PROGRESS_AFTER_SECONDS = 1.0


class _FileBar:
    """Counts files done; starts a transient rich bar on stderr once the run is slow enough to need one."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self.start = time.monotonic()
        self.bar: Any = None
        self.task: Any = None

    def tick(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.task)
        elif time.monotonic() - self.start >= PROGRESS_AFTER_SECONDS and self.done < self.total:
            from rich.markup import escape
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            columns = (TextColumn(escape(clean(self.label))), BarColumn(), MofNCompleteColumn())
            self.bar = Progress(*columns, console=err(), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=self.total, completed=self.done)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@contextmanager
def many_files(total: int, label: str) -> Iterator[Callable[[], None]]:
    """A `tick()` callback, called once per file done, that draws a transient bar on stderr.

    Only on a TTY, and only once the run has lasted PROGRESS_AFTER_SECONDS: short runs draw nothing.
    """
    if total < 2 or not getattr(sys.stderr, "isatty", lambda: False)():
        yield lambda: None
        return
    bar = _FileBar(total, label)
    try:
        yield bar.tick
    finally:
        bar.stop()
