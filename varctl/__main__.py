"""`python -m varctl` and the `varctl` console script.

A command whose arguments are plain runs without importing Typer (varctl/commands/_argv.py): that
import costs more than Python's own start. Everything else -- help, completion, a bad option --
goes to the Typer app in varctl.cli, which has the last word on what a command line means.
"""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point: a bare `--version`, a plain command line, or the Typer app."""
    argv = sys.argv[1:]
    if argv == ["--version"]:
        from varctl import __version__

        print(f"varctl {__version__}")
        return
    from varctl.commands._argv import parse

    command = parse(argv)
    if command is not None:
        command()
        return
    from varctl.cli import main as run

    run()


if __name__ == "__main__":
    main()
