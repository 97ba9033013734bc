"""The Typer declarations of the commands' options: one alias per shared option, the Command class,
layer-name completion. Only varctl.cli imports this module at run time.

The command modules name these aliases (and `typer.Option`) in annotations only, which stay strings
(`from __future__ import annotations`) until varctl.cli resolves them against this module: so a
command runs without importing Typer (varctl/commands/_argv.py), and what it does at run time lives
in varctl/commands/_run.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

import typer
from typer.core import TyperCommand

from varctl.render import CIFormat, Format


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

FrozenOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--frozen",
        metavar="PATTERN",
        help="Every variable in layers matching PATTERN must be frozen. Repeatable.",
    ),
]
TrainableOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--trainable",
        metavar="PATTERN",
        help="Every variable in layers matching PATTERN must be trainable (moving statistics and other "
        "never-trainable variables are not counted). Repeatable.",
    ),
]
MaxParamsOpt = Annotated[
    int | None, typer.Option("--max-trainable-params", metavar="N", min=0, help="At most N trainable params.")
]
MinParamsOpt = Annotated[
    int | None,
    typer.Option("--min-trainable-params", metavar="N", min=0, help="At least N trainable params."),
]
FiniteOpt = Annotated[
    bool, typer.Option("--finite", help="No NaN or Inf value in any selected variable (reads values).")
]
NoLambdaOpt = Annotated[
    bool,
    typer.Option(
        "--no-lambda",
        help="No Lambda layer (nor other code: serialized lambdas, TorchModuleWrapper, JaxLayer, TFSMLayer) "
        "in the config.",
    ),
]
OnlyKerasOpt = Annotated[
    bool,
    typer.Option(
        "--only-keras-layers",
        help="Nothing in the config but Keras's own classes and functions: no custom layers or objects, "
        "no Lambda code.",
    ),
]
VerboseOpt = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also show assertions that hold, and warnings.")
]
TrainableFilterOpt = Annotated[
    bool | None,
    typer.Option(
        "--trainable/--frozen", help="Keep only trainable (or only frozen) variables.", show_default=False
    ),
]
ValuesOpt = Annotated[
    bool, typer.Option("--values", help="Also compare values (max |A-B|, differing elements).")
]
AtolOpt = Annotated[
    float,
    typer.Option(
        "--atol",
        min=0.0,
        metavar="X",
        help="With --values: elements within this absolute difference are equal.",
    ),
]
ArgA = Annotated[str, typer.Argument(metavar="A", help="The model to compare from.", show_default=False)]
ArgB = Annotated[str, typer.Argument(metavar="B", help="The model to compare to.", show_default=False)]
