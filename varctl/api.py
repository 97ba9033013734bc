"""The Python API: `varctl.read`, `freeze`, `unfreeze`, `check`, `diff` and `stats`.

Each function does what the command of the same name does, with the same options as keyword
arguments, and returns the result as data instead of printing it. Errors are the exceptions of
varctl.errors (each carries the CLI's exit code); nothing is printed, nothing exits.

This module is imported by `import varctl`, so it imports nothing heavy at module level: h5py,
numpy, rich and TensorFlow are imported inside the functions, when a file is read.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from varctl.errors import UsageError
from varctl.model import ModelInfo

if TYPE_CHECKING:
    from varctl.checks import CheckResult
    from varctl.diffs import DiffResult
    from varctl.edit import Plan
    from varctl.valuestats import VariableStats

__all__ = ["check", "diff", "freeze", "read", "stats", "unfreeze"]

PathLike = str | os.PathLike[str]
Patterns = str | Iterable[str]


def _patterns(value: Patterns | None) -> tuple[str, ...]:
    """One pattern or several: `"dense*"` is one pattern, not six characters."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _open(
    path: PathLike, load: Any = None, config: PathLike | None = None, step: int | None = None
) -> ModelInfo:
    from varctl.formats import read_config_file, read_named

    architecture = read_config_file(os.fspath(config), "config") if config is not None else None
    return read_named(os.fspath(path), load=load, config=architecture, step=step).info


def _info(model: PathLike | ModelInfo) -> ModelInfo:
    return model if isinstance(model, ModelInfo) else _open(model)


def read(
    path: PathLike,
    *,
    load: bool = False,
    custom_objects: Iterable[PathLike] = (),
    unsafe: bool = False,
    config: PathLike | None = None,
    step: int | None = None,
) -> ModelInfo:
    """Read a saved model: every variable with shape, dtype, params and effective trainable state.

    Args:
        path: a .keras archive, a legacy .h5 model, a .weights.h5 file, a SavedModel directory
            or a TF checkpoint (what `varctl list` reads).
        load: load .keras/.h5 models with Keras (needs TensorFlow) instead of reading them
            statically (`--load`).
        custom_objects: with `load`, Python files to import first so their custom classes are
            known (`--custom-objects`).
        unsafe: with `load`, turn Keras safe_mode off: runs code stored in the file (`--unsafe`).
        config: for weights-only and sharded files, the architecture that names their variables
            (a config.json, a model.to_json() file, a .keras file or a preset folder: `--config`).
        step: for an Orbax checkpoint folder, the step to read (default: the latest; `--step`).

    Returns:
        ModelInfo: `.variables` (in `model.weights` order), `.layers`, `.totals()`, `.warnings`.

    Raises:
        UsageError: `custom_objects` or `unsafe` without `load`.
        UnreadableModel: the file is missing, corrupt or not a model (UnsafeFile: refused).
    """
    files = tuple(os.fspath(f) for f in custom_objects)
    if not load:
        if files or unsafe:
            flag = "custom_objects" if files else "unsafe"
            raise UsageError(f"{flag} only applies with load=True")
        return _open(path, config=config, step=step)
    from varctl.formats.loaded import LoadOptions

    return _open(path, LoadOptions(files, unsafe), config=config, step=step)


def _edit(
    action: str,
    trainable: bool,
    path: PathLike,
    patterns: Patterns | None,
    *,
    regex: bool,
    all: bool,
    first: int | None,
    upto: str | None,
    within: str | None,
    output: PathLike | None,
    in_place: bool,
    dry_run: bool,
    keep_batchnorm_frozen: bool,
    optimizer_state: str,
    verify: bool,
) -> Plan:
    """What `varctl freeze/unfreeze` does, minus the printing (varctl/commands/editing.py)."""
    from varctl import edit, formats, safe_write

    model = os.fspath(path)
    chosen = [name for name, on in (("output", output), ("in_place", in_place), ("dry_run", dry_run)) if on]
    if len(chosen) != 1:
        raise UsageError(
            f"{action} needs exactly one of output=, in_place=True or dry_run=True"
            + (f" (got {', '.join(chosen)})" if chosen else "")
        )
    if verify and dry_run:
        raise UsageError("verify=True checks a written file: it does not apply with dry_run=True")
    request = edit.EditRequest(
        action=action, trainable=trainable, patterns=_patterns(patterns), regex=regex,
        all_layers=all, first=first, upto=upto, within=within,
        keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state,
    )  # fmt: skip
    target = model if in_place else (os.fspath(output) if output is not None else None)
    if target and not dry_run:
        safe_write.check_target(target)  # a device, FIFO or directory: refused before any work
    with contextlib.nullcontext() if dry_run else safe_write.locked(model, shared=not in_place) as guard:
        planned = edit.plan(formats.read_named(model, for_edit=True), request)
        if guard is not None and target:
            held = guard

            def check(tmp: str) -> None:  # runs on the finished temp file, before the rename
                held.check_unchanged()
                if verify:
                    edit.verify_plan(planned, tmp, shown_as=target)

            edit.apply(planned, target, check=check)
    return planned


def freeze(
    path: PathLike,
    patterns: Patterns = (),
    *,
    regex: bool = False,
    all: bool = False,
    first: int | None = None,
    upto: str | None = None,
    within: str | None = None,
    output: PathLike | None = None,
    in_place: bool = False,
    dry_run: bool = False,
    keep_batchnorm_frozen: bool = False,
    optimizer_state: str = "remap",
    verify: bool = False,
) -> Plan:
    """Freeze layers (and everything inside them) and save the result, like `varctl freeze`.

    Args:
        path: the model (.keras or legacy .h5).
        patterns: globs on layer names at any depth (or on layer paths if they contain '/');
            one string or several.
        regex: the patterns are regular expressions (full match).
        all: the whole model.
        first: the first N layers of the model (or of `within`).
        upto: the layers up to and including this one.
        within: with first/upto: count the layers of this nested model.
        output: write the edited model here (atomically; the input is left untouched).
        in_place: replace `path` itself (atomically).
        dry_run: plan only; write nothing. Exactly one of output, in_place and dry_run.
        keep_batchnorm_frozen: unfreeze only; leave BatchNormalization layers frozen.
        optimizer_state: "remap" (default), "drop" or "keep" the stale optimizer state.
        verify: load the written file with Keras (needs TensorFlow) and check it before the rename.

    Returns:
        Plan: `.changes` (layer, before, after), `.before` and `.after` (ModelInfo), `.notes`.

    Raises:
        UsageError: a bad or unmatched selection, or a refused edit.
        UnreadableModel: the input cannot be read. OutputError: the output was not written
        (VerificationFailed: Keras disagrees with it).
    """
    return _edit(
        "freeze", False, path, patterns, regex=regex, all=all, first=first, upto=upto,
        within=within, output=output, in_place=in_place, dry_run=dry_run,
        keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state, verify=verify,
    )  # fmt: skip


def unfreeze(
    path: PathLike,
    patterns: Patterns = (),
    *,
    regex: bool = False,
    all: bool = False,
    first: int | None = None,
    upto: str | None = None,
    within: str | None = None,
    output: PathLike | None = None,
    in_place: bool = False,
    dry_run: bool = False,
    keep_batchnorm_frozen: bool = False,
    optimizer_state: str = "remap",
    verify: bool = False,
) -> Plan:
    """Make layers trainable (and the models that enclose them) and save, like `varctl unfreeze`.

    The arguments, result and errors are those of `freeze`.
    """
    return _edit(
        "unfreeze", True, path, patterns, regex=regex, all=all, first=first, upto=upto,
        within=within, output=output, in_place=in_place, dry_run=dry_run,
        keep_batchnorm_frozen=keep_batchnorm_frozen, optimizer_state=optimizer_state, verify=verify,
    )  # fmt: skip


def check(
    model: PathLike | ModelInfo,
    *,
    frozen: Patterns = (),
    trainable: Patterns = (),
    max_trainable_params: int | None = None,
    min_trainable_params: int | None = None,
    finite: bool = False,
    no_lambda: bool = False,
    only_keras_layers: bool = False,
    patterns: Patterns = (),
    regex: bool = False,
) -> CheckResult:
    """Evaluate the assertions of `varctl check` on one model.

    Args:
        model: a path, or a ModelInfo from `read`.
        frozen: every variable in layers matching these patterns must be frozen.
        trainable: every variable in layers matching these patterns must be trainable.
        max_trainable_params / min_trainable_params: bounds on the trainable params.
        finite: no NaN or Inf in any selected variable (reads the values).
        no_lambda: no Lambda layer or other code in the config.
        only_keras_layers: nothing in the config but Keras's own classes and functions.
        patterns: restrict every assertion to these layers. regex: patterns are regexes.

    Returns:
        CheckResult: `.ok`, and `.outcomes` (one per assertion, with the offending variables).
        A failed assertion is a result, not an exception.

    Raises:
        UsageError: a bad pattern. UnreadableModel: the model cannot be read.
    """
    from varctl import checks

    if max_trainable_params is not None and max_trainable_params < 0:
        raise UsageError("max_trainable_params must be at least 0")
    if min_trainable_params is not None and min_trainable_params < 0:
        raise UsageError("min_trainable_params must be at least 0")
    assertions = checks.Assertions(
        _patterns(frozen), _patterns(trainable), max_trainable_params, min_trainable_params, finite,
        _patterns(patterns), regex, no_lambda, only_keras_layers,
    )  # fmt: skip
    return checks.check(_info(model), assertions)


def diff(
    a: PathLike | ModelInfo, b: PathLike | ModelInfo, *, values: bool = False, atol: float = 0.0
) -> DiffResult:
    """Compare the variables of two models, like `varctl diff` (any mix of formats).

    Args:
        a: the old model (a path or a ModelInfo from `read`).
        b: the new model.
        values: also compare values (reads both files in chunks).
        atol: with values, elements whose absolute difference is at most this are equal.

    Returns:
        DiffResult: `.identical`, `.changes` (added, removed, changed), `.counts()`, `.entries`.

    Raises:
        UsageError: a negative atol. UnreadableModel: a model cannot be read.
    """
    from varctl import diffs as diff_core

    if not atol >= 0.0:  # also refuses NaN
        raise UsageError("atol must be at least 0")
    return diff_core.diff(_info(a), _info(b), values=values, atol=atol)


def stats(
    model: PathLike | ModelInfo,
    patterns: Patterns = (),
    *,
    regex: bool = False,
    trainable: bool | None = None,
) -> list[VariableStats]:
    """Per-variable min, max, mean, std, zero fraction, NaN and Inf counts, like `varctl stats`.

    Args:
        model: a path, or a ModelInfo from `read`.
        patterns: only the variables of these layers. regex: patterns are regexes.
        trainable: True: only trainable variables; False: only frozen ones; None: all.

    Returns:
        One VariableStats (`.variable`, `.values`) per selected variable, in file order.

    Raises:
        UsageError: a pattern that matches no layer. UnreadableModel: values that cannot be read.
    """
    from varctl import valuestats as stats_core
    from varctl.select import Selector, filter_trainable, no_match_error

    info = _info(model)
    selector = Selector(_patterns(patterns), regex)
    if selector.patterns and (missing := selector.unmatched([info])):
        raise no_match_error(missing, [info])
    return stats_core.stats(info, filter_trainable(selector.variables(info), trainable))


# -- how a ModelInfo shows itself (ModelInfo._repr_html_, __rich__ and summary call these) --------


def summary_text(info: ModelInfo) -> str:
    """A few lines: the model (file, format, Keras version, class, name) and its totals."""
    from varctl import out
    from varctl.views import summary, title

    lines = [title(info), f"{len(info.layers):,} layers, {len(info.variables):,} variables"]
    lines += summary(info.totals())
    lines += [f"warning: {w}" for w in info.warnings]
    return "\n".join(out.clean(line) for line in lines)


def rich_renderable(info: ModelInfo) -> Any:
    """The table `varctl list` draws on a terminal, as a rich renderable (not printed)."""
    from varctl.render import rich_renderable as renderable
    from varctl.views import list_report

    return renderable(list_report(info, list(info.variables)))


_HTML_STYLE = (
    "<style>"
    ".varctl-model td,.varctl-model th{text-align:left;padding:1px 8px;font-family:monospace}"
    ".varctl-model td.num{text-align:right}"
    ".varctl-model .on{color:#1a7f37}.varctl-model .off{color:#cf222e}.varctl-model .why{opacity:.7}"
    "</style>"
)


def html_table(info: ModelInfo) -> str:
    """A compact, self-contained HTML table of the variables (what Jupyter shows for a ModelInfo).

    No script, no external resource; every string from the file is escaped (and its hidden
    characters shown as escapes, as in every other output).
    """
    from html import escape

    from varctl import out
    from varctl.render import _cell_str
    from varctl.views import list_report

    def text(value: str) -> str:
        return escape(out.clean(value), quote=True)

    report = list_report(info, list(info.variables))
    cols = [c for c in report.columns if c.in_table]
    head = "".join(f"<th>{text(c.header)}</th>" for c in cols)
    rows = []
    for row in report.table_rows():
        cells = []
        for c in cols:
            value = c.value(row)
            css = {"numeric": "num", "note": "why"}.get(c.kind.value, "")
            if c.key == "trainable":
                css = {True: "on", False: "off"}.get(value, "")
            attr = f' class="{css}"' if css else ""
            cells.append(f"<td{attr}>{escape(_cell_str(c, value), quote=True)}</td>")  # cleaned
        rows.append("<tr>" + "".join(cells) + "</tr>")
    caption = "<br>".join(text(line) for line in [report.title, *report.summary, *info.warnings])
    return (
        f'<div class="varctl-model">{_HTML_STYLE}<table>'
        f'<caption style="text-align:left">{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )
