"""The VarctlError hierarchy; each class carries its exit code. The exit-code table lives here."""

from __future__ import annotations

# Exit codes (documented in the README; pinned by tests/test_errors.py).
EXIT_OK = 0
EXIT_FOUND = 1  # a check or comparison ran and found a problem (diff(1) convention)
EXIT_USAGE = 2
EXIT_UNREADABLE = 3
EXIT_UNWRITABLE = 4
EXIT_BUG = 70


class VarctlError(Exception):
    """A failure varctl can name; its message is shown to the user verbatim (no traceback).

    The base class means "the input or the command line is wrong" (exit 2) unless a subclass
    says otherwise; only InternalError means a bug (exit 70).
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(VarctlError):
    """The command line asks for something that cannot be done (bad pattern, no match, ...)."""

    exit_code = EXIT_USAGE


class UnreadableModel(VarctlError):
    """The input is missing, not a model varctl supports, or corrupt."""

    exit_code = EXIT_UNREADABLE


class UnsafeFile(UnreadableModel):
    """The input asks varctl to follow it somewhere (external link, bomb, ...): refused."""


class UnsupportedFormat(UnreadableModel):
    """A real file of a kind varctl does not read (yet)."""


class OutputError(VarctlError):
    """The output could not be written; the original file is left untouched."""

    exit_code = EXIT_UNWRITABLE


class InternalError(VarctlError):
    """A bug met while handling a named file: exit 70, with the file named and a pointer to VARCTL_DEBUG."""

    exit_code = EXIT_BUG

    def __init__(self, message: str, *, hint: str | None = "set VARCTL_DEBUG=1 for a traceback") -> None:
        super().__init__(message, hint=hint)
