"""`python -m varctl` and the `varctl` console script: `--version` answers before Typer is imported."""

from __future__ import annotations

import sys


def main() -> None:
    """Entry point. Everything but a bare `--version` goes to the Typer app in varctl.cli."""
    if sys.argv[1:] == ["--version"]:
        # Importing Typer and the command modules costs more than a Python start; this needs neither.
        from varctl import __version__

        print(f"varctl {__version__}")
        return
    from varctl.cli import main as run

    run()


if __name__ == "__main__":
    main()
