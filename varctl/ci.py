"""The CI toolkit's core: check assertions, diff two models, per-variable stats. Data in, data out.

Values are read through values.ValueReader in bounded chunks, one open file per model. Nothing here
prints: commands render what these functions return, and report progress through a callback.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from varctl.model import Cause, ModelInfo, Variable
from varctl.select import Selector, no_match_error
from varctl.values import ValueReader, is_numeric

Progress = Callable[[int], None]  # called with the number of file bytes just read


def _no_progress(_n: int) -> None:
    pass


# -- check ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assertions:
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

    def __post_init__(self) -> None:
        Selector(self.frozen + self.trainable + self.patterns, self.regex)  # bad regex: UsageError now


def bytes_to_read(info: ModelInfo, assertions: Assertions) -> int:
    """Weight bytes `check` reads for this model (0 unless a value assertion is asked)."""
    if not assertions.finite:
        return 0
    return sum(v.nbytes for v in scope_of(info, assertions.patterns, assertions.regex))


@dataclass(frozen=True)
class Offender:
    """A variable that breaks an assertion, and how."""

    path: str
    detail: str
    trainable: bool | None = None
    reason: str | None = None
    nan: int | None = None
    inf: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "detail": self.detail,
            "trainable": self.trainable,
            "reason": self.reason,
            "nan": self.nan,
            "inf": self.inf,
        }


@dataclass(frozen=True)
class Outcome:
    """One assertion evaluated on one model."""

    assertion: str  # frozen | trainable | max_trainable_params | min_trainable_params | finite
    argument: str | int | None  # the pattern or the bound
    ok: bool
    message: str
    checked: int  # variables the assertion looked at
    offenders: tuple[Offender, ...] = ()
    hint: str | None = None

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


@dataclass(frozen=True)
class CheckResult:
    info: ModelInfo
    outcomes: tuple[Outcome, ...]

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes)


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
            else "trainable state unknown",
            trainable=v.trainable,
            reason=v.reason,
        )
        for v in bad
    )
    if not looked:
        message = f"pattern '{pattern}' selects no variable that can be {kind}"
        return Outcome(kind, pattern, False, message, 0)
    if offenders:
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
    nan = inf = 0
    floating = variable.dtype == "bfloat16" or (is_numeric(variable) and np.dtype(variable.dtype).kind == "f")
    if not floating:
        progress(variable.nbytes)  # integers and bools are always finite: nothing to read
        return 0, 0
    for chunk in reader.chunks(variable):
        n_nan = int(np.count_nonzero(np.isnan(chunk)))
        nan += n_nan
        inf += int(chunk.size - np.count_nonzero(np.isfinite(chunk))) - n_nan
        progress(chunk.size * variable.itemsize)
    return nan, inf


def _finite_outcome(reader: ValueReader, scope: list[Variable], progress: Progress) -> Outcome:
    offenders = []
    for v in scope:
        nan, inf = nonfinite(reader, v, progress)
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
        risks = [r for r in risks if _inside_any(r.where.split(": ", 1)[0], chosen)]
    offenders = tuple(Offender(r.where, r.what) for r in risks)
    what = "Lambda layers or other code" if name == "no_lambda" else "classes or code from outside Keras"
    if offenders:
        message = f"{len(offenders)} reference(s) to {what} in the config"
    else:
        message = f"no {what} in the config"
    return Outcome(name, None, not offenders, message, len(info.layers), offenders)


def _inside_any(path: str, chosen: set[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[: i + 1]) in chosen for i in range(len(parts)))


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
        with ValueReader(info) as reader:
            outcomes.append(_finite_outcome(reader, scope, progress))
    if assertions.no_lambda:
        outcomes.append(_risk_outcome(info, assertions, "no_lambda", ("lambda",)))
    if assertions.only_keras_layers:
        outcomes.append(_risk_outcome(info, assertions, "only_keras_layers", ("lambda", "custom")))
    return CheckResult(info, tuple(outcomes))


# -- stats ------------------------------------------------------------------------------------


_BLOCK = 1 << 20  # elements per float64 working copy (8 MiB)


@dataclass
class Accumulator:
    """Streaming min/max/mean/std over the finite values (Chan's parallel Welford, float64), plus
    counts of zeros, NaN and Inf over all values."""

    count: int = 0  # all elements
    finite: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    zeros: int = 0
    nan: int = 0
    inf: int = 0

    def add(self, chunk: np.ndarray) -> None:
        x = np.asarray(chunk).reshape(-1)
        if x.size == 0:
            return
        if x.dtype.kind == "b":
            x = x.astype(np.uint8)
        self.count += x.size
        self.zeros += int(np.count_nonzero(x == 0))
        if x.dtype.kind == "f":
            ok = np.isfinite(x)
            n_ok = int(np.count_nonzero(ok))
            if n_ok != x.size:
                n_nan = int(np.count_nonzero(np.isnan(x)))
                self.nan += n_nan
                self.inf += x.size - n_ok - n_nan
                x = x[ok]
        # float64 copies are made a block at a time: the working set stays a fraction of a chunk.
        for start in range(0, x.size, _BLOCK):
            self._merge(x[start : start + _BLOCK])

    def _merge(self, x: np.ndarray) -> None:
        xf = x.astype(np.float64)
        n_b = xf.size
        mean_b = float(xf.mean())
        xf -= mean_b
        m2_b = float(np.dot(xf, xf))
        n_a = self.finite
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * n_a * n_b / n
        self.finite = n
        self.min = min(self.min, float(x.min()))
        self.max = max(self.max, float(x.max()))

    def result(self) -> dict[str, Any]:
        have = self.finite > 0
        return {
            "min": self.min if have else None,
            "max": self.max if have else None,
            "mean": self.mean if have else None,
            "std": math.sqrt(self.m2 / self.finite) if have else None,
            "zero_fraction": self.zeros / self.count if self.count else None,
            "nan_count": self.nan,
            "inf_count": self.inf,
        }


@dataclass(frozen=True)
class VariableStats:
    variable: Variable
    values: dict[
        str, Any
    ]  # min, max, mean, std (finite values, population std), zero_fraction, nan_count, inf_count


def stats(
    info: ModelInfo, variables: Sequence[Variable], progress: Progress = _no_progress
) -> list[VariableStats]:
    """Per-variable statistics, reading each variable once in bounded chunks.

    Args:
        info: the model.
        variables: which of its variables (file order is kept).
        progress: called with the bytes read after each chunk.

    Returns:
        One VariableStats per variable. Non-numeric variables get None for every statistic.
    """
    rows = []
    with ValueReader(info) as reader:
        for v in variables:
            acc = Accumulator()
            if is_numeric(v):
                for chunk in reader.chunks(v):
                    acc.add(chunk)
                    progress(chunk.size * v.itemsize)
                values = acc.result()
            else:
                values = {k: None for k in Accumulator().result()}
                progress(v.nbytes)
            rows.append(VariableStats(v, values))
    return rows


# -- diff -------------------------------------------------------------------------------------

_GENERIC = re.compile(r"vars/\d+")


@dataclass(frozen=True)
class ValueDiff:
    elements: int
    differing: int
    max_abs_diff: float | None  # over element pairs that are both finite; None when there are none

    def to_dict(self) -> dict[str, Any]:
        return {"elements": self.elements, "differing": self.differing, "max_abs_diff": self.max_abs_diff}


@dataclass(frozen=True)
class Change:
    """One variable that differs between A and B (or, with `fields` empty, one that does not)."""

    path: str
    kind: str  # added | removed | changed | same
    a: Variable | None
    b: Variable | None
    fields: tuple[str, ...] = ()  # shape, dtype, trainable, values
    values: ValueDiff | None = None
    matched_by: str | None = None  # path | position (generic names on one side, real on the other)


@dataclass
class DiffResult:
    a: ModelInfo
    b: ModelInfo
    values_compared: bool
    entries: list[Change] = field(default_factory=list)

    @property
    def changes(self) -> list[Change]:
        return [c for c in self.entries if c.kind != "same"]

    @property
    def identical(self) -> bool:
        return not self.changes

    def counts(self) -> dict[str, int]:
        out = {"added": 0, "removed": 0, "changed": 0, "unchanged": 0}
        for c in self.entries:
            out["unchanged" if c.kind == "same" else c.kind] += 1
        return out


def _pair(
    a: ModelInfo, b: ModelInfo
) -> tuple[list[tuple[Variable, Variable, str]], list[Variable], list[Variable]]:
    """Match variables by path; then, inside one layer, generic `vars/N` names on one side with the
    real names on the other by position (a custom layer in a .keras against its .h5), if shapes agree."""
    by_path: dict[str, list[Variable]] = {}
    for v in b.variables:
        by_path.setdefault(v.path, []).append(v)
    pairs: list[tuple[Variable, Variable, str]] = []
    removed: list[Variable] = []
    for v in a.variables:
        candidates = by_path.get(v.path)
        if candidates:
            pairs.append((v, candidates.pop(0), "path"))
        else:
            removed.append(v)
    added = [v for vs in by_path.values() for v in vs]
    added.sort(key=b.variables.index)
    for layer in dict.fromkeys(v.layer for v in removed):
        ra = [v for v in removed if v.layer == layer]
        rb = [v for v in added if v.layer == layer]
        generic_a = all(_GENERIC.fullmatch(v.name) for v in ra)
        generic_b = all(_GENERIC.fullmatch(v.name) for v in rb)
        if (
            len(ra) == len(rb)
            and generic_a != generic_b
            and all(x.shape == y.shape for x, y in zip(ra, rb, strict=True))
        ):
            pairs.extend((x, y, "position") for x, y in zip(ra, rb, strict=True))
            removed = [v for v in removed if v not in ra]
            added = [v for v in added if v not in rb]
    order = {id(v): i for i, v in enumerate(a.variables)}
    pairs.sort(key=lambda p: order[id(p[0])])
    return pairs, removed, added


def compare_values(
    ra: ValueReader,
    rb: ValueReader,
    va: Variable,
    vb: Variable,
    atol: float = 0.0,
    progress: Progress = _no_progress,
) -> ValueDiff:
    """Element-wise comparison of two same-shaped variables, both read in lockstep chunks.

    NaN against NaN counts as equal; a finite value against NaN or Inf counts as differing.
    """
    itemsize = max(va.itemsize, vb.itemsize, 8)  # the float64 working copy sets the budget
    differing = 0
    worst: float | None = None
    for xa, xb in zip(ra.chunks(va, itemsize), rb.chunks(vb, itemsize), strict=True):
        a64 = np.asarray(xa, dtype=np.float64).reshape(-1)
        b64 = np.asarray(xb, dtype=np.float64).reshape(-1)
        both = np.isfinite(a64) & np.isfinite(b64)
        with np.errstate(invalid="ignore", over="ignore"):
            delta = np.abs(a64 - b64)
            same = np.where(both, delta <= atol, (a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
        differing += int(same.size - np.count_nonzero(same))
        if both.any():
            m = float(delta[both].max())
            worst = m if worst is None else max(worst, m)
        progress(xa.size * (va.itemsize + vb.itemsize))
    return ValueDiff(elements=va.params, differing=differing, max_abs_diff=worst)


def diff(
    a: ModelInfo, b: ModelInfo, *, values: bool = False, atol: float = 0.0, progress: Progress = _no_progress
) -> DiffResult:
    """Compare the variables of two models, matched by path (any mix of formats).

    Args:
        a: the old model.
        b: the new model.
        values: also compare values (variables of equal shape), reading both files in chunks.
        atol: with values, elements whose absolute difference is at most this are equal.
        progress: called with the bytes read.

    Returns:
        DiffResult: every variable of A in A's order (removed, changed or same), then B's additions.
    """
    pairs, removed, added = _pair(a, b)
    result = DiffResult(a, b, values)
    removed_ids = {id(v) for v in removed}
    pair_of = {id(x): (x, y, how) for x, y, how in pairs}
    with ExitStack() as stack:
        ra = stack.enter_context(ValueReader(a)) if values else None
        rb = stack.enter_context(ValueReader(b)) if values else None
        for v in a.variables:
            if id(v) in removed_ids:
                result.entries.append(Change(v.path, "removed", v, None))
                continue
            x, y, how = pair_of[id(v)]
            fields = [f for f in ("shape", "dtype", "trainable") if getattr(x, f) != getattr(y, f)]
            vd = None
            if ra and rb and x.shape == y.shape and is_numeric(x) and is_numeric(y):
                vd = compare_values(ra, rb, x, y, atol, progress)
                if vd.differing:
                    fields.append("values")
            result.entries.append(
                Change(x.path, "changed" if fields else "same", x, y, tuple(fields), vd, how)
            )
    result.entries.extend(Change(v.path, "added", None, v) for v in added)
    return result


def diff_bytes(a: ModelInfo, b: ModelInfo) -> int:
    """Bytes `diff --values` reads (for a progress bar)."""
    paths = {v.path: v for v in b.variables}
    return sum(v.nbytes + paths[v.path].nbytes for v in a.variables if v.path in paths)
