"""The Typer app: options -> core call -> render. Commands stay thin; no h5py, json or TensorFlow here."""

from __future__ import annotations

import functools
import os
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from varctl import __version__, out
from varctl.errors import EXIT_BUG, InternalError, VarctlError
from varctl.render import Format

app = typer.Typer(
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=True,
    rich_markup_mode=None,
    help="Inspect, freeze and check the variables of saved Keras models (.keras, .h5) without TensorFlow.",
    epilog="Example: varctl list model.keras ; varctl freeze model.keras -p 'base' -o frozen.keras",
)

F = TypeVar("F", bound=Callable[..., Any])

# Shared option types: one definition each, used by every command.
PathsArg = Annotated[
    list[str],
    typer.Argument(
        help="Models: .keras, legacy .h5, .weights.h5, a TF SavedModel directory or a TF checkpoint.",
        metavar="MODEL...",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
PatternOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--pattern",
        "-p",
        help="Select layers: a glob on layer names at any depth, or on the layer path if it contains '/'. Repeatable.",
    ),
]
RegexOpt = Annotated[
    bool, typer.Option("--regex", help="Patterns are regular expressions (full match), not globs.")
]
LoadOpt = Annotated[
    bool,
    typer.Option(
        "--load",
        help="Load .keras/.h5 models with Keras (needs TensorFlow) instead of reading them statically: "
        "exact variable names for custom layers, and a check for variables Keras does not track.",
    ),
]
CustomObjectsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--custom-objects",
        metavar="FILE.py",
        help="With --load: import this Python file first, so the custom classes it defines are known. "
        "Repeatable.",
    ),
]
UnsafeOpt = Annotated[
    bool,
    typer.Option(
        "--unsafe",
        help="With --load: turn Keras safe_mode off (runs code stored in the file, such as Lambda "
        "layers). Only for files you trust.",
    ),
]

EditPatternOpt = Annotated[
    list[str] | None,
    typer.Option("--pattern", "-p", help="Layers to change (same rule as list). Repeatable."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="The whole model.")]
FirstOpt = Annotated[
    int | None,
    typer.Option("--first", help="The first N layers of the model (or of --in), like base_model.layers[:N]."),
]
UptoOpt = Annotated[
    str | None,
    typer.Option("--upto", help="The layers of the model (or of --in) up to and including this one."),
]
WithinOpt = Annotated[
    str | None, typer.Option("--in", help="With --first/--upto: count the layers of this nested model.")
]
OutputOpt = Annotated[str | None, typer.Option("--output", "-o", help="Write the edited model here.")]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", help="Replace MODEL itself (atomically).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")]
KeepBnOpt = Annotated[
    bool, typer.Option("--keep-batchnorm-frozen", help="Leave BatchNormalization layers frozen.")
]
OptStateOpt = Annotated[
    str,
    typer.Option(
        "--optimizer-state",
        help="Stale optimizer state after the trainable set changes: remap (default; drop when not certain), drop or keep.",
    ),
]
VerifyOpt = Annotated[
    bool, typer.Option("--verify", help="Load the result with Keras (needs TensorFlow) and check it.")
]
ModelArg = Annotated[str, typer.Argument(help="The model file (.keras or legacy .h5).", metavar="MODEL")]


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
            text = e.message if isinstance(e, InternalError) else f"internal error: {type(e).__name__}: {e}"
            out.message("error", f"{text}; set VARCTL_DEBUG=1 for a traceback")
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


def load_options(load: bool, custom_objects: list[str] | None, unsafe: bool) -> Any:
    """--load/--custom-objects/--unsafe as one LoadOptions for open_or_fail (None: read statically)."""
    from varctl.errors import UsageError
    from varctl.formats.loaded import UNSAFE_WARNING, LoadOptions

    if not load:
        if custom_objects or unsafe:
            flag = "--custom-objects" if custom_objects else "--unsafe"
            raise UsageError(
                f"{flag} only applies with --load", hint="varctl list MODEL --load --custom-objects layers.py"
            )
        return None
    if unsafe:
        out.message("warning", UNSAFE_WARNING)
    return LoadOptions(tuple(custom_objects or ()), unsafe)


def open_or_fail(path: str, load: Any = None, config: Any = None) -> Any:
    """open_model() with the file name put in front of any error message (bugs included)."""
    from varctl.errors import UnreadableModel
    from varctl.formats import open_model

    try:
        return open_model(path, load=load, config=config)
    except UnreadableModel as e:
        raise type(e)(f"cannot open '{path}': {e.message}", hint=e.hint) from e
    except (VarctlError, KeyboardInterrupt, MemoryError, BrokenPipeError):
        raise
    except Exception as e:
        raise InternalError(f"internal error while reading '{path}': {type(e).__name__}: {e}") from e


def main() -> None:
    """Console-script entry point."""
    app(prog_name="varctl")


# Each module registers its commands on `app` (one file per command family).
# Import order is the order of `varctl --help`.
from varctl.commands import listing  # noqa: E402,F401,I001
from varctl.commands import editing  # noqa: E402,F401,I001
from varctl.commands import ci  # noqa: E402,F401,I001
