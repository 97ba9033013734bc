"""`varctl stats`: per-variable min, max, mean, std, fraction of zeros, NaN and Inf counts.

The statistics stream over bounded blocks (values.ValueReader, inside the sandboxed child) and are
sound over float64's whole range: the running mean and sum of squares are kept in units of a power
of two at least the largest magnitude seen, so nothing overflows (values near ±1e308 included) and
numpy never warns. Data in, data out: nothing here prints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from varctl.model import ModelInfo, Variable
from varctl.values import ValueReader, batches, in_child, is_numeric

Progress = Callable[[int], None]  # called with the number of file bytes just read

_BLOCK = 1 << 20  # elements per float64 working copy (8 MiB)


def _no_progress(_n: int) -> None:
    pass


@dataclass
class Accumulator:
    """Streaming min/max/mean/std over the finite values (Chan's parallel Welford, float64), plus
    counts of zeros, NaN and Inf over all values.

    `mean` and `m2` are held scaled by 2**-`exponent`, where 2**`exponent` bounds every finite
    magnitude seen: the scaled values lie in (-1, 1), so no sum or square can overflow, and scaling
    by a power of two is exact.
    """

    count: int = 0  # all elements
    finite: int = 0
    mean: float = 0.0  # scaled by 2**-exponent
    m2: float = 0.0  # sum of squared deviations, scaled by 2**(-2 * exponent)
    exponent: int = -1075  # below every float64 (the smallest subnormal is 2**-1074)
    min: float = math.inf
    max: float = -math.inf
    zeros: int = 0
    nan: int = 0
    inf: int = 0

    def add(self, chunk: np.ndarray) -> None:
        x = np.asarray(chunk).reshape(-1)
        if x.size == 0:
            return
        with np.errstate(all="ignore"):
            if x.dtype.kind == "b":
                x = x.astype(np.uint8)
            elif x.dtype.kind == "f" and x.dtype.itemsize > 8:  # long double: beyond float64 is Inf
                x = x.astype(np.float64)
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
        lo, hi = float(x.min()), float(x.max())
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)
        top = max(abs(lo), abs(hi))
        if top > 0:
            exponent = math.frexp(top)[1]  # top < 2**exponent
            if exponent > self.exponent:  # rescale what is held (exact: powers of two)
                shift = self.exponent - exponent
                self.mean = math.ldexp(self.mean, shift)
                self.m2 = math.ldexp(self.m2, 2 * shift)
                self.exponent = exponent
        xs = np.ldexp(x.astype(np.float64), -self.exponent)  # |xs| < 1
        n_b = xs.size
        mean_b = float(xs.mean())
        xs -= mean_b
        m2_b = float(np.dot(xs, xs))
        n_a = self.finite
        n = n_a + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * (n_a / n) * n_b
        self.finite = n

    def result(self) -> dict[str, Any]:
        have = self.finite > 0
        mean = std = None
        if have:
            # In [min, max] by construction; the clamp only undoes a last-bit rounding.
            mean = min(max(math.ldexp(self.mean, self.exponent), self.min), self.max)
            std = math.ldexp(math.sqrt(max(self.m2, 0.0) / self.finite), self.exponent)
        return {
            "min": self.min if have else None,
            "max": self.max if have else None,
            "mean": mean,
            "std": std,
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


def _empty() -> dict[str, Any]:
    return {k: None for k in Accumulator().result()}


def _stats_batch(info: ModelInfo, variables: list[Variable]) -> list[dict[str, Any]]:
    """Runs in the sandbox child: the statistics of each variable (all numeric)."""
    rows = []
    with ValueReader(info) as reader:
        for v in variables:
            acc = Accumulator()
            for chunk in reader.chunks(v):
                acc.add(chunk)
            rows.append(acc.result())
    return rows


def _nbytes(v: Variable) -> int:
    return v.nbytes


def stats(
    info: ModelInfo, variables: Sequence[Variable], progress: Progress = _no_progress
) -> list[VariableStats]:
    """Per-variable statistics, reading each variable once in bounded blocks, in the sandboxed child.

    Args:
        info: the model.
        variables: which of its variables (file order is kept).
        progress: called with the bytes read after each batch of variables.

    Returns:
        One VariableStats per variable. Non-numeric variables get None for every statistic.

    Raises:
        UnreadableModel (or UnsafeFile): a variable that cannot be read within values.Limits.
    """
    ValueReader.require(info)
    found: dict[int, dict[str, Any]] = {}
    numeric = [v for v in variables if is_numeric(v)]
    for batch in batches(numeric, _nbytes):
        nbytes = sum(v.nbytes for v in batch)
        rows = in_child(_stats_batch, info, batch, label=f"the values of '{info.source}'", nbytes=nbytes)
        found.update((id(v), row) for v, row in zip(batch, rows, strict=True))
        progress(nbytes)
    progress(sum(v.nbytes for v in variables if not is_numeric(v)))
    return [VariableStats(v, found.get(id(v)) or _empty()) for v in variables]

