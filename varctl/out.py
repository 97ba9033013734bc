"""The two consoles: `out` (stdout, data only) and `err` (stderr, messages), and the TTY/colour policy.

A TTY changes decoration (colour, box style), never content. Off a TTY, lines are never cut: rich
would otherwise fall back to 80 columns and truncate long paths. rich honours NO_COLOR, FORCE_COLOR
and COLUMNS itself.
"""

from __future__ import annotations

import re
import sys

from rich.console import Console

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _make(stream: object, stderr: bool) -> Console:
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
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def message(kind: str, text: str) -> None:
    """`varctl: warning: ...` on stderr, never interpreted as rich markup."""
    err().print(f"varctl: {kind}: {clean(text)}", markup=False, highlight=False, soft_wrap=True)
