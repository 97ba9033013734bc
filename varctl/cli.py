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


def _edit(
    *,
    action: str,
    trainable: bool,
    model: str,
    pattern: list[str] | None,
    regex: bool,
    all_layers: bool,
    first: int | None,
    upto: str | None,
    within: str | None,
    output: str | None,
    in_place: bool,
    dry_run: bool,
    keep_batchnorm_frozen: bool,
    optimizer_state: str,
    fmt: Format,
) -> None:
    """The shared core of freeze and unfreeze."""
    from varctl import edit, views
    from varctl.errors import UsageError
    from varctl.render import render
    from varctl.select import Selector, no_match_error

    if output and in_place:
        raise UsageError("give either -o/--output or --in-place, not both")
    if not (output or in_place or dry_run):
        raise UsageError(
            f"{action} needs -o OUT or --in-place (or --dry-run to preview)",
            hint=f"varctl {action} {model} --pattern '...' -o edited.keras",
        )
    if optimizer_state not in edit.OPTIMIZER_STATE_MODES:
        raise UsageError(f"--optimizer-state must be one of {', '.join(edit.OPTIMIZER_STATE_MODES)}")
    info = _open(model)
    selector = Selector(tuple(pattern or ()), regex)
    if selector.patterns and (missing := selector.unmatched([info])):
        raise no_match_error(missing, [info])
    selected = selector.layers(info)
    if first is not None or upto is not None:
        selected += edit.first_layers(info, first, upto, within)
    if not selected and not all_layers:
        raise UsageError(f"{action}: say what to change with --pattern, --first/--upto or --all")
    if all_layers:
        selected = [l for l in info.layers if l.parent is None]
    plan = edit.plan_freeze(
        info, selected, trainable=trainable, whole_model=all_layers,
        keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state, path=model,
    )
    target = model if in_place else output
    if not dry_run and target:
        edit.apply(plan, model, target)
    for note in plan.notes:
        out.message("note", note)
    render([views.plan_report(plan, action=action, output=None if dry_run else target, dry_run=dry_run)], fmt)
    if not dry_run:
        out.message("info", f"wrote {target}" if plan.changes or target != model else f"{target}: nothing to change")


EditPatternOpt = Annotated[
    Optional[list[str]],
    typer.Option("--pattern", "-p", help="Layers to change (same rule as list). Repeatable."),
]
AllOpt = Annotated[bool, typer.Option("--all", help="The whole model.")]
FirstOpt = Annotated[Optional[int], typer.Option("--first", help="The first N layers of the model (or of --in), like base_model.layers[:N].")]
UptoOpt = Annotated[Optional[str], typer.Option("--upto", help="The layers of the model (or of --in) up to and including this one.")]
WithinOpt = Annotated[Optional[str], typer.Option("--in", help="With --first/--upto: count the layers of this nested model.")]
OutputOpt = Annotated[Optional[str], typer.Option("--output", "-o", help="Write the edited model here.")]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", help="Replace MODEL itself (atomically).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")]
KeepBnOpt = Annotated[bool, typer.Option("--keep-batchnorm-frozen", help="Leave BatchNormalization layers frozen.")]
OptStateOpt = Annotated[str, typer.Option("--optimizer-state", help="Stale optimizer state after the trainable set changes: drop (default) or keep.")]
ModelArg = Annotated[str, typer.Argument(help="The model file (.keras or legacy .h5).", metavar="MODEL")]


@app.command("freeze")
@handle_errors
def freeze(
    model: ModelArg,
    pattern: EditPatternOpt = None,
    regex: RegexOpt = False,
    all_layers: AllOpt = False,
    first: FirstOpt = None,
    upto: UptoOpt = None,
    within: WithinOpt = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    dry_run: DryRunOpt = False,
    optimizer_state: OptStateOpt = "drop",
    fmt: FormatOpt = Format.table,
) -> None:
    """Freeze layers (and everything inside them) and re-save.  Example: varctl freeze m.keras -p 'dense_*' -o frozen.keras"""
    _edit(action="freeze", trainable=False, model=model, pattern=pattern, regex=regex, all_layers=all_layers,
          first=first, upto=upto, within=within, output=output, in_place=in_place, dry_run=dry_run,
          keep_batchnorm_frozen=False, optimizer_state=optimizer_state, fmt=fmt)


@app.command("unfreeze")
@handle_errors
def unfreeze(
    model: ModelArg,
    pattern: EditPatternOpt = None,
    regex: RegexOpt = False,
    all_layers: AllOpt = False,
    first: FirstOpt = None,
    upto: UptoOpt = None,
    within: WithinOpt = None,
    output: OutputOpt = None,
    in_place: InPlaceOpt = False,
    dry_run: DryRunOpt = False,
    keep_batchnorm_frozen: KeepBnOpt = False,
    optimizer_state: OptStateOpt = "drop",
    fmt: FormatOpt = Format.table,
) -> None:
    """Make layers trainable (and their enclosing models) and re-save.  Example: varctl unfreeze tl.keras -p 'block_16*' --in-place"""
    _edit(action="unfreeze", trainable=True, model=model, pattern=pattern, regex=regex, all_layers=all_layers,
          first=first, upto=upto, within=within, output=output, in_place=in_place, dry_run=dry_run,
          keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state, fmt=fmt)


def main() -> None:
    """Console-script entry point."""
    app(prog_name="varctl")
