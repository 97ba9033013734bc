"""The Typer app: options -> core call -> render. Commands stay thin; no h5py, json or TensorFlow here."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, Optional, TypeVar

import typer

from varctl import __version__, out
from varctl.errors import EXIT_BUG, VarctlError
from varctl.render import Format

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    help="Inspect, freeze and check the variables of saved Keras models (.keras, .h5) without TensorFlow.",
)

F = TypeVar("F", bound=Callable[..., Any])

# Shared option types: one definition each, used by every command.
PathsArg = Annotated[list[str], typer.Argument(help="Model files (.keras or legacy .h5).", metavar="MODEL...")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
PatternOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--pattern", "-p",
        help="Select layers: a glob on layer names at any depth, or on the layer path if it contains '/'. Repeatable.",
    ),
]
RegexOpt = Annotated[bool, typer.Option("--regex", help="Patterns are regular expressions (full match), not globs.")]


def handle_errors(fn: F) -> F:
    """Turn VarctlError into one stderr line + its exit code; anything else is a bug (exit 70)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VarctlError as e:
            out.message("error", e.message)
            if e.hint:
                out.message("hint", e.hint)
            raise typer.Exit(e.exit_code) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            out.message("error", "interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # stdout closed early (`varctl list m.keras | head`): not an error.
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            raise typer.Exit(0) from None
        except Exception as e:  # noqa: BLE001 - the one place a bug becomes a clean exit
            if os.environ.get("VARCTL_DEBUG"):
                traceback.print_exc()
            out.message("error", f"internal error: {type(e).__name__}: {e}; set VARCTL_DEBUG=1 for a traceback")
            raise typer.Exit(EXIT_BUG) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        print(f"varctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """varctl: see every variable of a saved Keras model, freeze layers, and check models in CI."""


def _open(path: str) -> Any:
    from varctl.errors import UnreadableModel
    from varctl.formats import open_model

    try:
        return open_model(path)
    except UnreadableModel as e:
        raise type(e)(f"cannot open '{path}': {e.message}", hint=e.hint) from e


@app.command("list")
@handle_errors
def list_(
    models: PathsArg,
    fmt: FormatOpt = Format.table,
    pattern: PatternOpt = None,
    regex: RegexOpt = False,
    trainable: Annotated[Optional[bool], typer.Option("--trainable/--frozen", help="Keep only trainable (or only frozen) variables.", show_default=False)] = None,
    by_layer: Annotated[bool, typer.Option("--by-layer", "--tree", help="One row per layer, nested layers as a tree.")] = False,
) -> None:
    """List variables with shape, dtype, params and effective trainable state.  Example: varctl list m.keras -f json"""
    from varctl import views
    from varctl.render import render
    from varctl.select import Selector, filter_trainable, no_match_error

    selector = Selector(tuple(pattern or ()), regex)
    infos = [_open(p) for p in models]
    if selector.patterns and (missing := selector.unmatched(infos)):
        raise no_match_error(missing, infos)
    make = views.layers_report if by_layer else views.list_report
    reports = [make(i, filter_trainable(selector.variables(i), trainable)) for i in infos]
    for info in infos:
        for w in info.warnings:
            out.message("warning", f"{info.source}: {w}")
    render(reports, fmt)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="varctl")
