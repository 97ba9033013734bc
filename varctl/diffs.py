"""`varctl diff`: the variables added, removed or changed (shape, dtype, trainable, values) from
model A to model B, in any mix of formats. Data in, data out: nothing here prints.

Values (--values) are compared inside the sandboxed child (values.in_child), a batch of variable
pairs per child, both files open in it; progress is reported after each batch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from varctl.model import ModelInfo, Variable
from varctl.values import ValueReader, batches, blocks, in_child, is_numeric

Progress = Callable[[int], None]  # called with the number of file bytes just read

_BLOCK = 1 << 20  # elements per float64 working copy (8 MiB)


def _no_progress(_n: int) -> None:
    pass


_GENERIC = re.compile(r"vars/\d+")


@dataclass(frozen=True)
class ValueDiff:
    elements: int
    differing: int
    # Over element pairs that are both finite; None when there are none. A plain float: +inf when the
    # difference is beyond float64 (1e308 against -1e308); the renderer encodes it for strict JSON.
    max_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"elements": self.elements, "differing": self.differing, "max_abs_diff": self.max_abs_diff}


@dataclass(frozen=True)
class DiffEntry:
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
    entries: list[DiffEntry] = field(default_factory=list)

    @property
    def changes(self) -> list[DiffEntry]:
        return [c for c in self.entries if c.kind != "same"]

    @property
    def identical(self) -> bool:
        return not self.changes

    def __repr__(self) -> str:  # the default would print every variable of both models
        counts = ", ".join(f"{n} {k}" for k, n in self.counts().items())
        return f"<DiffResult {self.a.source!r} -> {self.b.source!r}: {counts}>"

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
    """Element-wise comparison of two same-shaped variables, both read block by block in lockstep.

    The blocks follow the coarser of the two chunk grids, so its chunks are inflated once each.
    NaN against NaN counts as equal; a finite value against NaN or Inf counts as differing.
    """
    differing = 0
    worst: float | None = None
    grid_a, grid_b = ra.grid(va), rb.grid(vb)
    grid = grid_a if math.prod(grid_a or (1,)) >= math.prod(grid_b or (1,)) else grid_b
    for index in blocks(va.shape, max(ra.stored_itemsize(va), rb.stored_itemsize(vb)), grid):
        xa = ra.read_at(va, index).reshape(-1)
        xb = rb.read_at(vb, index).reshape(-1)
        for start in range(0, xa.size, _BLOCK):  # float64 working copies, a block at a time
            n, m = _compare(xa[start : start + _BLOCK], xb[start : start + _BLOCK], atol)
            differing += n
            if m is not None:
                worst = m if worst is None else max(worst, m)
        progress(xa.size * (va.itemsize + vb.itemsize))
    return ValueDiff(elements=va.params, differing=differing, max_abs_diff=worst)


def _compare(xa: np.ndarray, xb: np.ndarray, atol: float) -> tuple[int, float | None]:
    """(differing elements, largest |A-B| over pairs both finite, or None) of two flat blocks."""
    with np.errstate(all="ignore"):
        a64 = np.asarray(xa, dtype=np.float64)
        b64 = np.asarray(xb, dtype=np.float64)
        both = np.isfinite(a64) & np.isfinite(b64)
        delta = np.abs(a64 - b64)  # +inf when the difference is beyond float64
        same = np.where(both, delta <= atol, (a64 == b64) | (np.isnan(a64) & np.isnan(b64)))
        worst = float(delta[both].max()) if both.any() else None
    return int(same.size - np.count_nonzero(same)), worst


def _compare_batch(
    a: ModelInfo, b: ModelInfo, pairs: list[tuple[Variable, Variable]], atol: float
) -> list[ValueDiff]:
    """Runs in the sandbox child: both files open, each pair compared."""
    with ValueReader(a) as ra, ValueReader(b) as rb:
        return [compare_values(ra, rb, x, y, atol) for x, y in pairs]


def _pair_bytes(p: tuple[Variable, Variable]) -> int:
    return p[0].nbytes + p[1].nbytes


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
    value_diffs: dict[int, ValueDiff] = {}
    if values:
        ValueReader.require(a)
        ValueReader.require(b)
        comparable = [(x, y) for x, y, _ in pairs if x.shape == y.shape and is_numeric(x) and is_numeric(y)]
        label = f"the values of '{a.source}' and '{b.source}'"
        for batch in batches(comparable, _pair_bytes):
            nbytes = sum(_pair_bytes(p) for p in batch)
            found = in_child(_compare_batch, a, b, batch, atol, label=label, nbytes=nbytes)
            value_diffs.update((id(x), vd) for (x, _), vd in zip(batch, found, strict=True))
            progress(nbytes)
    for v in a.variables:
        if id(v) in removed_ids:
            result.entries.append(DiffEntry(v.path, "removed", v, None))
            continue
        x, y, how = pair_of[id(v)]
        fields = [f for f in ("shape", "dtype", "trainable") if getattr(x, f) != getattr(y, f)]
        vd = value_diffs.get(id(x))
        if vd is not None and vd.differing:
            fields.append("values")
        result.entries.append(
            DiffEntry(x.path, "changed" if fields else "same", x, y, tuple(fields), vd, how)
        )
    result.entries.extend(DiffEntry(v.path, "added", None, v) for v in added)
    return result


def diff_bytes(a: ModelInfo, b: ModelInfo) -> int:
    """Bytes `diff --values` reads (for a progress bar)."""
    paths = {v.path: v for v in b.variables}
    return sum(v.nbytes + paths[v.path].nbytes for v in a.variables if v.path in paths)

