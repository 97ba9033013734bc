"""Run a command without importing Typer: the start-up path of `varctl list`, `check`, ...

Importing Typer (and the Click it vendors) costs more than Python's own start (~45 ms of a 25 ms
start here, `python -X importtime`), and `varctl list` otherwise takes about 60 ms. So
varctl/__main__.py first hands the arguments to `parse`, which reads them with the table that
scripts/gen_cli_docs.py compiles from the Typer app (varctl/commands/_argv_table.py), and calls the
command function with the values Typer would have passed (tests/test_argv.py compares the two on
every option). Anything it does not take plainly -- `--help`, an unknown or misspelt option, a bad
value, a missing argument, `--`, shell completion, `-fjson` -- returns None, and Typer handles the
whole command line as before, messages and exit codes included.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable, Sequence
from typing import Any

from varctl.commands._argv_table import COMMANDS

_COMPLETION_ENV = "_VARCTL_COMPLETE"  # set by the shell completion scripts Typer installs


def parse(argv: Sequence[str]) -> Callable[[], Any] | None:
    """The command `argv` asks for, bound to its arguments; None when Typer must read `argv`."""
    if not argv or _COMPLETION_ENV in os.environ:
        return None
    spec = COMMANDS.get(argv[0])
    if spec is None:
        return None
    module, function, positional, options = spec
    values: dict[str, Any] = {}
    args: list[str] = []
    rest = list(argv[1:])
    rest.reverse()  # popped from the end: the next token is rest[-1]
    while rest:
        token = rest.pop()
        if not token.startswith("-"):
            args.append(token)
            continue
        name, eq, attached = token.partition("=") if token.startswith("--") else (token, "", "")
        option = options.get(name)
        if option is None:  # `-`, `--`, `--help`, `-fjson`, a typo: Typer's to read (or refuse)
            return None
        param, action, arg = option
        if action == "const":
            if eq:  # `--regex=yes`: Click refuses it
                return None
            values[param] = arg
            continue
        if not eq:
            if not rest:
                return None
            attached = rest.pop()  # Click takes the next token as the value, even `-x`
        value = _convert(action, arg, attached)
        if value is None:
            return None
        if action == "append":
            values.setdefault(param, []).append(value)
        else:
            values[param] = value
    if not _place(positional, args, values):
        return None
    fn = getattr(importlib.import_module(module), function)
    return functools.partial(fn, **values)


def _convert(action: str, arg: Any, raw: str) -> Any:
    """`raw` as the option's value (None: refused, Typer will say why)."""
    if action in ("str", "append"):
        return raw
    if action == "choice":  # arg: (module, Enum class, case sensitive)
        module, cls_name, case_sensitive = arg
        cls = getattr(importlib.import_module(module), cls_name)
        fold = (lambda s: s) if case_sensitive else str.casefold
        return next((member for member in cls if fold(member.value) == fold(raw)), None)
    low, high = arg
    try:
        number: float = int(raw) if action == "int" else float(raw)
    except ValueError:
        return None
    if (low is not None and number < low) or (high is not None and number > high):
        return None
    return number


def _place(positional: tuple[tuple[str, int], ...], args: list[str], values: dict[str, Any]) -> bool:
    """Give the positional `args` to the parameters, all required: one nargs=-1 parameter (one or
    more values) or nargs=1 ones (the generator accepts no other shape); False if they do not fit."""
    if len(positional) == 1 and positional[0][1] == -1:
        values[positional[0][0]] = args
        return bool(args)
    if len(args) != len(positional):
        return False
    for (name, _), value in zip(positional, args, strict=True):
        values[name] = value
    return True
