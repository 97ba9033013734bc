"""The two consoles: `out` (stdout, data only) and `err` (stderr, messages), and the TTY/colour policy.

A TTY changes decoration (colour, box style), never content. Off a TTY, lines are never cut: rich
would otherwise fall back to 80 columns and truncate long paths. rich honours NO_COLOR, FORCE_COLOR
and COLUMNS itself.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

# C0/C1 controls, zero-width and bidi formatting characters: never sent raw to a terminal.
INVISIBLE = re.compile(r"[\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
UNSAFE = re.compile(r"[\x00-\x1f]|" + INVISIBLE.pattern)


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


def clean(text: str) -> str:
    """Make a string from a model file safe to show: control and bidi characters become escapes."""
    return UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


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
    console = err()
    if not console.is_terminal or total_bytes < PROGRESS_MIN_BYTES:
        yield lambda _n: None
        return
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(escape(clean(label)), total=total_bytes)
        yield lambda n: bar.advance(task, n)
