"""What every command shares: the option aliases, the error decorator, opening models, the many-model loop.

Commands import from here, never from `varctl.cli` (which only assembles the app), so the import graph
runs one way: cli -> commands -> _options -> core.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperCommand

from varctl import out
from varctl.errors import EXIT_BUG, InternalError, UsageError, VarctlError
from varctl.render import CIFormat, Format, Report

if TYPE_CHECKING:
    from varctl.model import ModelInfo

F = TypeVar("F", bound=Callable[..., Any])


class Command(TyperCommand):
    """Typer's command, with `Usage: varctl freeze [OPTIONS] MODEL` (Typer 0.28 writes `{MODEL}`)."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = super().collect_usage_pieces(ctx)
        return [p[1:-1] if p.startswith("{") and p.endswith("}") else p for p in pieces]


# -- shell completion of layer names ------------------------------------------------------------


def _model_from(ctx: typer.Context) -> str | None:
    """The first model path given on the command line being completed (None if there is none yet)."""
    for key in ("model", "models", "a"):
        value = ctx.params.get(key)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        if isinstance(value, str) and value:
            return value
    # Completing the value of an option (`-p <TAB>`) stops the parse early: the model is left over.
    return next((a for a in ctx.args if not a.startswith("-")), None)


def complete_layer(ctx: typer.Context, incomplete: str) -> Iterator[str]:
    """Layer names and paths of the model on the command line that start with `incomplete`.

    Read statically (no TensorFlow), and silent on any error: a completion must never print.
    """
    path = _model_from(ctx)
    if path is None:
        return
    try:
        from varctl.formats import open_model

        info = open_model(path)
        seen: set[str] = set()
        for layer in info.layers:
            for candidate in (layer.name, layer.path):
                if candidate.startswith(incomplete) and candidate not in seen:
                    seen.add(candidate)
                    yield candidate
    except BaseException:
        return


# -- shared option types: one definition each, used by every command ----------------------------

PathsArg = Annotated[
    list[str],
    typer.Argument(
        help="Models: .keras, legacy .h5, .weights.h5, a TF SavedModel directory or a TF checkpoint.",
        metavar="MODEL...",
        show_default=False,
    ),
]
ModelArg = Annotated[
    str, typer.Argument(help="The model file (.keras or legacy .h5).", metavar="MODEL", show_default=False)
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output format.", case_sensitive=False)]
CIFormatOpt = Annotated[
    CIFormat,
    typer.Option(
        "--format",
        "-f",
        help="Output format; github: workflow annotations, plus a job summary in $GITHUB_STEP_SUMMARY.",
        case_sensitive=False,
    ),
]
PatternOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--pattern",
        "-p",
        metavar="PATTERN",
        help="Select layers: a glob on layer names at any depth, or on the layer path if it contains '/'. Repeatable.",
        autocompletion=complete_layer,
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
ConfigOpt = Annotated[
    str | None,
    typer.Option(
        "--config",
        metavar="FILE",
        help="For weights-only files and sharded weights: the model's architecture (config.json, "
        "model.to_json() file, .keras, model folder or keras-hub preset) naming the variables and "
        "giving their flags.",
    ),
]
StepOpt = Annotated[
    int | None,
    typer.Option(
        "--step",
        metavar="N",
        min=0,
        help="For an Orbax checkpoint folder: the step to list (default: the latest).",
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
    typer.Option(
        "--pattern",
        "-p",
        metavar="PATTERN",
        help="Layers to change (same rule as list). Repeatable.",
        autocompletion=complete_layer,
    ),
]
AllOpt = Annotated[bool, typer.Option("--all", help="The whole model.")]
FirstOpt = Annotated[
    int | None,
    typer.Option(
        "--first",
        metavar="N",
        help="The first N layers of the model (or of --in), like base_model.layers[:N].",
    ),
]
UptoOpt = Annotated[
    str | None,
    typer.Option(
        "--upto",
        metavar="LAYER",
        help="The layers of the model (or of --in) up to and including LAYER.",
        autocompletion=complete_layer,
    ),
]
WithinOpt = Annotated[
    str | None,
    typer.Option(
        "--in",
        metavar="LAYER",
        help="With --first/--upto: count the layers of this nested model.",
        autocompletion=complete_layer,
    ),
]
OutputOpt = Annotated[
    str | None, typer.Option("--output", "-o", metavar="FILE", help="Write the edited model here.")
]
InPlaceOpt = Annotated[bool, typer.Option("--in-place", help="Replace MODEL itself (atomically).")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show the plan; write nothing.")]
KeepBnOpt = Annotated[
    bool, typer.Option("--keep-batchnorm-frozen", help="Leave BatchNormalization layers frozen.")
]
OptStateOpt = Annotated[
    str,
    typer.Option(
        "--optimizer-state",
        metavar="MODE",
        help="Stale optimizer state after the trainable set changes: remap (default; drop when not certain), drop or keep.",
    ),
]
VerifyOpt = Annotated[
    bool, typer.Option("--verify", help="Load the result with Keras (needs TensorFlow) and check it.")
]


# -- errors -------------------------------------------------------------------------------------


def report_error(e: VarctlError) -> None:
    """`varctl: error: ...` (and `varctl: hint: ...`) on stderr."""
    out.message("error", e.message)
    if e.hint:
        out.message("hint", e.hint)


def handle_errors(fn: F) -> F:
    """Turn VarctlError into one stderr line + its exit code; anything else is a bug (exit 70)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except VarctlError as e:
            if os.environ.get("VARCTL_DEBUG") and isinstance(e, InternalError):
                traceback.print_exc()
            report_error(e)
            raise typer.Exit(e.exit_code) from None
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            out.message("error", "interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            # stdout closed early (`varctl list m.keras | head`): not an error.
            with contextlib.suppress(OSError):
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaces stdout for the rest of the run
            raise typer.Exit(0) from None
        except Exception as e:
            if os.environ.get("VARCTL_DEBUG"):
                traceback.print_exc()
            out.message(
                "error", f"internal error: {type(e).__name__}: {e}; set VARCTL_DEBUG=1 for a traceback"
            )
            raise typer.Exit(EXIT_BUG) from None

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
        raise typer.Exit(worst)
