"""`varctl check`: assertions on trainable state, parameter budgets, finite values and code in the
config, evaluated on one model. Data in, data out: nothing here prints.

Values (--finite) are read by values.ValueReader inside the sandboxed child (values.in_child), a batch
of variables per child; progress is reported after each batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from varctl.model import Cause, ModelInfo, Record, Variable, within
from varctl.select import Selector, no_match_error

if TYPE_CHECKING:  # numpy and h5py (via values) only when values are read: `check` of flags needs neither
    from varctl.values import ValueReader

Progress = Callable[[int], None]  # called with the number of file bytes just read


def _no_progress(_n: int) -> None:
    pass


def _nbytes(v: Variable) -> int:
    return v.nbytes


# Records (model.Record), not dataclasses: `check` imports no dataclasses either (~7 ms).
class Assertions(Record):
    """What `varctl check` asserts about every model. Empty: only that each model is readable."""

    frozen: tuple[str, ...] = ()
    trainable: tuple[str, ...] = ()
    max_trainable_params: int | None = None
    min_trainable_params: int | None = None
    finite: bool = False
    patterns: tuple[str, ...] = ()  # restrict every assertion to these layers
    regex: bool = False
    no_lambda: bool = False  # no Lambda layer, serialized lambda or other layer that wraps code
    only_keras_layers: bool = False  # nothing but Keras's own classes and functions (implies no_lambda)

    def __init__(
        self,
        frozen: tuple[str, ...] = (),
        trainable: tuple[str, ...] = (),
        max_trainable_params: int | None = None,
        min_trainable_params: int | None = None,
        finite: bool = False,
        patterns: tuple[str, ...] = (),
        regex: bool = False,
        no_lambda: bool = False,
        only_keras_layers: bool = False,
    ) -> None:
        self._init(locals())
        Selector(frozen + trainable + patterns, regex)  # bad regex: UsageError now


def bytes_to_read(info: ModelInfo, assertions: Assertions) -> int:
    """Weight bytes `check` reads for this model (0 unless a value assertion is asked)."""
    if not assertions.finite:
        return 0
    return sum(v.nbytes for v in scope_of(info, assertions.patterns, assertions.regex))


class Offender(Record):
    """A variable that breaks an assertion, and how."""

    path: str
    detail: str
    trainable: bool | None = None
    reason: str | None = None
    nan: int | None = None
    inf: int | None = None

    def __init__(
        self,
        path: str,
        detail: str,
        trainable: bool | None = None,
        reason: str | None = None,
        nan: int | None = None,
        inf: int | None = None,
    ) -> None:
        self._init(locals())

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "detail": self.detail,
            "trainable": self.trainable,
            "reason": self.reason,
            "nan": self.nan,
            "inf": self.inf,
        }


class Outcome(Record):
    """One assertion evaluated on one model."""

    assertion: str  # frozen | trainable | max_trainable_params | min_trainable_params | finite
    argument: str | int | None  # the pattern or the bound
    ok: bool
    message: str
    checked: int  # variables the assertion looked at
    offenders: tuple[Offender, ...] = ()
    hint: str | None = None

    def __init__(
        self,
        assertion: str,
        argument: str | int | None,
        ok: bool,
        message: str,
        checked: int,
        offenders: tuple[Offender, ...] = (),
        hint: str | None = None,
    ) -> None:
        self._init(locals())

    def to_dict(self) -> dict[str, Any]:
        return {
            "assertion": self.assertion,
            "argument": self.argument,
            "ok": self.ok,
            "message": self.message,
            "hint": self.hint,
            "checked": self.checked,
            "variables": [o.to_dict() for o in self.offenders],
        }


class CheckResult(Record):
    """The outcomes of the assertions on one model."""

    info: ModelInfo
    outcomes: tuple[Outcome, ...]

    def __init__(self, info: ModelInfo, outcomes: tuple[Outcome, ...]) -> None:
        self._init(locals())

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)

    def __repr__(self) -> str:  # the default would print every variable of the model
        failed = [f"{o.assertion}({o.argument!r})" for o in self.outcomes if not o.ok]
        verdict = "ok" if self.ok else "FAILED: " + ", ".join(failed)
        return f"<CheckResult {self.info.source!r}: {len(self.outcomes)} assertion(s), {verdict}>"


def _pattern_outcome(
    info: ModelInfo, scope: list[Variable], pattern: str, regex: bool, want_trainable: bool
) -> Outcome:
    kind = "trainable" if want_trainable else "frozen"
    selector = Selector((pattern,), regex)
    if selector.unmatched([info]):
        # A check that cannot be evaluated must not pass; it fails for this model only, so one
        # model without the layer does not hide the results for the others.
        err = no_match_error([pattern], [info])
        return Outcome(kind, pattern, False, err.message, 0, hint=err.hint)
    in_scope = {v.path for v in scope}
    selected = [v for v in selector.variables(info) if v.path in in_scope]
    if want_trainable:
        # Variables Keras never trains (BatchNormalization moving statistics, ...) cannot be
        # trainable whatever the flags say: asserting it of a layer means its trainable variables.
        never = [v for v in selected if v.cause is Cause.NATURE]
        looked = [v for v in selected if v not in never]
        bad = [v for v in looked if v.trainable is not True]
    else:
        looked = selected
        bad = [v for v in looked if v.trainable is not False]
    offenders = tuple(
        Offender(
            v.path,
            ("trainable" if v.trainable else f"not trainable: {v.reason}" if v.reason else "not trainable")
            if v.trainable is not None
            else "trainable state unknown (settle it with --load or a saved optimizer state)",
            trainable=v.trainable,
            reason=v.reason,
        )
        for v in bad
    )
    if not looked:
        message = f"pattern '{pattern}' selects no variable that can be {kind}"
        return Outcome(kind, pattern, False, message, 0)
    unknown = sum(1 for v in bad if v.trainable is None)
    if unknown:
        # neither passes nor fails on a guess: the assertion cannot be made (exit 1, docs/trainable.md)
        known_bad = len(bad) - unknown
        message = (
            f"{known_bad} of {len(looked)} variables selected by '{pattern}' are not {kind}; "
            if known_bad
            else f"cannot assert that the variables selected by '{pattern}' are {kind}: "
        ) + (
            f"trainable state unknown for {unknown} variable{'s' if unknown != 1 else ''}: settle it "
            "with --load (and --custom-objects) or by saving with optimizer state"
        )
    elif offenders:
        message = f"{len(offenders)} of {len(looked)} variables selected by '{pattern}' are not {kind}"
    else:
        message = f"all {len(looked)} variables selected by '{pattern}' are {kind}"
    return Outcome(kind, pattern, not offenders, message, len(looked), offenders)


def _param_outcome(scope: list[Variable], bound: int, is_max: bool) -> Outcome:
    trainable = [v for v in scope if v.trainable]
    count = sum(v.params for v in trainable)
    ok = count <= bound if is_max else count >= bound
    op = ("<=" if ok else ">") if is_max else (">=" if ok else "<")
    message = f"{count:,} trainable params {op} {'max' if is_max else 'min'} {bound:,}"
    offenders = (
        ()
        if ok or not is_max
        else tuple(Offender(v.path, f"{v.params:,} trainable params", True) for v in trainable)
    )
    name = "max_trainable_params" if is_max else "min_trainable_params"
    return Outcome(name, bound, ok, message, len(scope), offenders)


def nonfinite(reader: ValueReader, variable: Variable, progress: Progress = _no_progress) -> tuple[int, int]:
    """(NaN count, Inf count) of one variable, read in chunks."""
    import numpy as np

    from varctl.values import is_numeric

    nan = inf = 0
    floating = variable.dtype == "bfloat16" or (is_numeric(variable) and np.dtype(variable.dtype).kind == "f")
    if not floating:
        progress(variable.nbytes)  # integers and bools are always finite: nothing to read
        return 0, 0
    for chunk in reader.chunks(variable):
        if chunk.dtype.kind == "f":  # a bfloat16 marker on integers: finite
            n_nan = int(np.count_nonzero(np.isnan(chunk)))
            nan += n_nan
            inf += int(chunk.size - np.count_nonzero(np.isfinite(chunk))) - n_nan
        progress(chunk.size * variable.itemsize)
    return nan, inf


def _nonfinite_batch(info: ModelInfo, variables: list[Variable]) -> list[tuple[int, int]]:
    """Runs in the sandbox child: (NaN, Inf) counts of each variable."""
    from varctl.values import ValueReader

    with ValueReader(info) as reader:
        return [nonfinite(reader, v) for v in variables]


def _finite_outcome(info: ModelInfo, scope: list[Variable], progress: Progress) -> Outcome:
    from varctl.values import ValueReader, batches, in_child

    ValueReader.require(info)
    counts: list[tuple[int, int]] = []
    for batch in batches(scope, _nbytes):
        nbytes = sum(v.nbytes for v in batch)
        counts.extend(
            in_child(_nonfinite_batch, info, batch, label=f"the values of '{info.source}'", nbytes=nbytes)
        )
        progress(nbytes)
    offenders = []
    for v, (nan, inf) in zip(scope, counts, strict=True):
        if nan or inf:
            offenders.append(Offender(v.path, f"{nan:,} NaN, {inf:,} Inf", v.trainable, v.reason, nan, inf))
    if offenders:
        message = f"{len(offenders)} of {len(scope)} variables hold NaN or Inf values"
    else:
        message = f"all {len(scope)} variables are finite"
    return Outcome("finite", None, not offenders, message, len(scope), tuple(offenders))


def _risk_outcome(info: ModelInfo, assertions: Assertions, name: str, kinds: tuple[str, ...]) -> Outcome:
    """no_lambda / only_keras_layers: the config's references to code (tree.find_risks)."""
    risks = [r for r in info.risks if r.kind in kinds]
    if assertions.patterns:  # only risks inside the selected layers
        chosen = {l.path for l in Selector(assertions.patterns, assertions.regex).layers(info)}
        risks = [r for r in risks if within(r.where.split(": ", 1)[0], chosen)]
    offenders = tuple(Offender(r.where, r.what) for r in risks)
    what = "Lambda layers or other code" if name == "no_lambda" else "classes or code from outside Keras"
    if offenders:
        message = f"{len(offenders)} reference(s) to {what} in the config"
    else:
        message = f"no {what} in the config"
    return Outcome(name, None, not offenders, message, len(info.layers), offenders)


def scope_of(info: ModelInfo, patterns: Sequence[str], regex: bool) -> list[Variable]:
    return Selector(tuple(patterns), regex).variables(info)


def check(info: ModelInfo, assertions: Assertions, progress: Progress = _no_progress) -> CheckResult:
    """Evaluate every assertion on one model.

    Args:
        info: the model, as open_model read it.
        assertions: what to check; `patterns` restricts all of them to the selected layers.
        progress: called with the bytes read, for value checks (--finite).

    Returns:
        CheckResult with one Outcome per assertion, in the order: frozen, trainable, max, min, finite,
        no_lambda, only_keras_layers.
    """
    outcomes: list[Outcome] = []
    if assertions.patterns and (missing := Selector(assertions.patterns, assertions.regex).unmatched([info])):
        err = no_match_error(missing, [info])
        outcomes.append(Outcome("pattern", missing[0], False, err.message, 0, hint=err.hint))
        return CheckResult(info, tuple(outcomes))
    scope = scope_of(info, assertions.patterns, assertions.regex)
    for p in assertions.frozen:
        outcomes.append(_pattern_outcome(info, scope, p, assertions.regex, want_trainable=False))
    for p in assertions.trainable:
        outcomes.append(_pattern_outcome(info, scope, p, assertions.regex, want_trainable=True))
    if assertions.max_trainable_params is not None:
        outcomes.append(_param_outcome(scope, assertions.max_trainable_params, is_max=True))
    if assertions.min_trainable_params is not None:
        outcomes.append(_param_outcome(scope, assertions.min_trainable_params, is_max=False))
    if assertions.finite:
        outcomes.append(_finite_outcome(info, scope, progress))
    if assertions.no_lambda:
        outcomes.append(_risk_outcome(info, assertions, "no_lambda", ("lambda",)))
    if assertions.only_keras_layers:
        outcomes.append(_risk_outcome(info, assertions, "only_keras_layers", ("lambda", "custom")))
    return CheckResult(info, tuple(outcomes))
