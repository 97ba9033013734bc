"""The Typer app: builds `app` and registers the commands. Nothing but varctl.__main__ imports this module.

The commands are plain functions in varctl/commands/; their shared options and helpers live in
varctl/commands/_options.py. No h5py, json or TensorFlow here.
"""

from __future__ import annotations

from typing import Annotated

import typer

from varctl import __version__
from varctl.commands import checking, editing, listing, view
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


# The order here is the order of `varctl --help`.
app.command("list", cls=Command)(listing.list_)
app.command("freeze", cls=Command)(editing.freeze)
app.command("unfreeze", cls=Command)(editing.unfreeze)
app.command("check", cls=Command)(checking.check)
app.command("diff", cls=Command)(checking.diff)
app.command("stats", cls=Command)(checking.stats)
app.command("view", cls=Command)(view.view)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="varctl")
