"""What every command does at run time: the error decorator, opening models, the many-model loop.

No Typer here (nor in the command modules at run time): `varctl/__main__.py` runs a command without
importing Typer when its arguments are plain (varctl/commands/_argv.py), and a command's exit code is
a SystemExit, which Typer and its test runner pass through unchanged.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from varctl import out
from varctl.errors import EXIT_BUG, InternalError, UsageError, VarctlError
from varctl.render import CIFormat, Format, Report

if TYPE_CHECKING:
    from varctl.model import ModelInfo

F = TypeVar("F", bound=Callable[..., Any])


# -- errors -------------------------------------------------------------------------------------


def report_error(e: VarctlError) -> None:
    """`varctl: error: ...` (and `varctl: hint: ...`) on stderr."""
    out.message("error", e.message)
    if e.hint:
        out.message("hint", e.hint)


def _print_traceback() -> None:
    import traceback  # only with VARCTL_DEBUG: 2.5 ms of start-up otherwise

    traceback.print_exc()


def handle_errors(fn: F) -> F:
    """Turn VarctlError into one stderr line + its exit code; anything else is a bug (exit 70)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from varctl.formats import _sandbox  # (every command reads a model: imported anyway)

        try:
            with _sandbox.answers_first():
                return fn(*args, **kwargs)
        except VarctlError as e:
            if os.environ.get("VARCTL_DEBUG") and isinstance(e, InternalError):
                _print_traceback()
            report_error(e)
            raise SystemExit(e.exit_code) from None
        except KeyboardInterrupt:
            out.message("error", "interrupted")
            raise SystemExit(130) from None
        except BrokenPipeError:
            # stdout closed early (`varctl list m.keras | head`): not an error.
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for the rest of the run
            raise SystemExit(0) from None
        except Exception as e:
            if os.environ.get("VARCTL_DEBUG"):
                _print_traceback()
            out.message(
                "error", f"internal error: {type(e).__name__}: {e}; set VARCTL_DEBUG=1 for a traceback"
            )
            raise SystemExit(EXIT_BUG) from None

    return wrapper  # type: ignore[return-value]


# -- opening models -----------------------------------------------------------------------------


def load_options(load: bool, custom_objects: list[str] | None, unsafe: bool) -> Any:
    """--load/--custom-objects/--unsafe as one LoadOptions for open_or_fail (None: read statically)."""
    if not load:
        if custom_objects or unsafe:
            flag = "--custom-objects" if custom_objects else "--unsafe"
            raise UsageError(
                f"{flag} only applies with --load", hint="varctl list MODEL --load --custom-objects layers.py"
            )
        return None
    from varctl.formats.loaded import UNSAFE_WARNING, LoadOptions

    if unsafe:
        out.message("warning", UNSAFE_WARNING)
    return LoadOptions(tuple(custom_objects or ()), unsafe)


def config_option(config_file: str | None) -> Any:
    """--config FILE: the architecture it holds (read in the sandbox), or None."""
    from varctl.formats import read_config_file

    return None if config_file is None else read_config_file(config_file, "--config")


def open_or_fail(path: str, load: Any = None, config: Any = None, step: int | None = None) -> ModelInfo:
    """The model at `path`, read once, its name in front of any error message (bugs included)."""
    from varctl.formats import read_named

    return read_named(path, load=load, config=config, step=step).info


# -- the many-model loop ------------------------------------------------------------------------


def run_each(
    paths: list[str],
    fmt: Format | CIFormat,
    schema: str,
    work: Callable[[ModelInfo], tuple[Report | None, int]],
    *,
    selector: object | None = None,
    warnings: bool = True,
    load: object | None = None,
    config: object | None = None,
    step: int | None = None,
    after: Callable[[list[tuple[str, int]]], None] | None = None,
) -> None:
    """Run `work` on every model and render the reports in argument order; exit with the worst code.

    One model that cannot be read (or read further) is reported on stderr, and as an `error`
    document in JSON, without hiding the others. A `selector` whose patterns match no layer in any
    readable model is a usage error (exit 2). `after` gets every (path, exit code) once the reports
    are rendered (for a closing count line).
    """
    from varctl.model import ModelInfo
    from varctl.render import render
    from varctl.select import Selector, no_match_error
    from varctl.views import error_report

    opened: list[ModelInfo | VarctlError] = []
    with out.many_files(len(paths), "reading") as tick:
        for p in paths:
            try:
                opened.append(open_or_fail(p, load, config, step))
            except VarctlError as e:
                opened.append(e)
            tick()
    infos = [i for i in opened if isinstance(i, ModelInfo)]
    if (
        isinstance(selector, Selector)
        and selector.patterns
        and infos
        and (missing := selector.unmatched(infos))
    ):
        raise no_match_error(missing, infos)
    reports: list[Report] = []
    outcomes: list[tuple[str, int]] = []
    for path, item in zip(paths, opened, strict=True):
        if isinstance(item, ModelInfo):
            if warnings:
                for w in item.warnings:
                    out.message("warning", f"{item.source}: {w}")
            try:
                report, code = work(item)
            except VarctlError as e:
                item = e
            else:
                reports += [report] if report is not None else []
                outcomes.append((path, code))
                continue
        report_error(item)
        outcomes.append((path, item.exit_code))
        if (fmt.value == "json" and len(paths) > 1) or fmt.value == "github":
            reports.append(error_report(schema, path, item.message))  # JSON: aligned with the arguments
    render(reports, fmt)
    if after is not None:
        after(outcomes)
    worst = max((code for _, code in outcomes), default=0)
    if worst:
        raise SystemExit(worst)
