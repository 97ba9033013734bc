"""The Typer app: builds `app` and registers the commands. Nothing but varctl.__main__ imports this module.

The commands are plain functions in varctl/commands/; their options are declared in their signatures
with the aliases of varctl/commands/_options.py, as annotations that stay strings until `_declared`
resolves them here, so that running a command never needs Typer (varctl/commands/_argv.py). What the
commands share at run time lives in varctl/commands/_run.py. No h5py, json or TensorFlow here.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any

import typer

from varctl import __version__
from varctl.commands import _options, checking, editing, listing, view
from varctl.commands._options import Command

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    help="Inspect, freeze and check the variables of saved Keras models (.keras, .h5) without TensorFlow.",
    epilog="Example: varctl list model.keras ; varctl freeze model.keras -p 'base' -o frozen.keras",
)


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


def _declared(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` with its annotations evaluated against `typer` and the aliases of _options (in place:
    the handle_errors wrapper shares the dict), as Typer reads them."""
    target = inspect.unwrap(fn)
    names = {**vars(_options), "typer": typer, **target.__globals__}
    target.__annotations__.update(typing.get_type_hints(target, globalns=names, include_extras=True))
    return fn


# The order here is the order of `varctl --help`.
COMMANDS: dict[str, Callable[..., Any]] = {
    "list": listing.list_,
    "freeze": editing.freeze,
    "unfreeze": editing.unfreeze,
    "check": checking.check,
    "diff": checking.diff,
    "stats": checking.stats,
    "view": view.view,
}
for _name, _fn in COMMANDS.items():
    app.command(_name, cls=Command)(_declared(_fn))


def main() -> None:
    """Console-script entry point."""
    app(prog_name="varctl")
