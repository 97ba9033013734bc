"""Variable values, read in bounded chunks: the only module that reads weight bytes (stats, check, diff).

Memory does not grow with a variable's size: each read covers at most CHUNK_BYTES of the file,
sliced along the first axis (and further axes only when a single row is larger than that).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import h5py
import numpy as np

from varctl.errors import UnreadableModel
from varctl.formats import _h5safe
from varctl.model import ModelInfo, Variable

CHUNK_BYTES = 16 * 1024 * 1024

Index = tuple[Any, ...]


def slices(shape: tuple[int, ...], itemsize: int, max_bytes: int | None = None) -> Iterator[Index]:
    """Index tuples that cover an array of `shape` in order, each at most `max_bytes` (or one element).

    The split axis is the first one whose trailing block fits: along it, as many entries as fit are
    taken at once; every axis before it is stepped one entry at a time.
    """
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    budget = max(1, (max_bytes or CHUNK_BYTES) // max(1, itemsize))  # elements per chunk
    axis = 0
    while axis < len(shape) - 1 and math.prod(shape[axis + 1 :]) > budget:
        axis += 1
    step = max(1, budget // math.prod(shape[axis + 1 :]))
    for outer in np.ndindex(*shape[:axis]):
        for start in range(0, shape[axis], step):
            yield (*outer, slice(start, min(start + step, shape[axis])))


def is_numeric(variable: Variable) -> bool:
    """Can its values be summarised as numbers (floats, ints, bools, bfloat16)?"""
    if variable.dtype == "bfloat16":
        return True
    try:
        return np.dtype(variable.dtype).kind in "biuf"
    except TypeError:
        return False


def bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    """bfloat16 is the top half of a float32: widen the 2-byte words and shift them into place."""
    bits = np.ascontiguousarray(raw).view(np.uint16).astype(np.uint32) << 16
    return bits.view(np.float32)


class ValueReader:
    """Reads the values of one model's variables; the weights file is opened once, on entry.

    Use as a context manager: `with ValueReader(info) as r: for chunk in r.chunks(v): ...`.
    """

    def __init__(self, info: ModelInfo) -> None:
        self.info = info
        self._stack = ExitStack()
        self._h5: h5py.Group | None = None

    def __enter__(self) -> ValueReader:
        try:
            self._h5 = self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._h5 = None
        self._stack.close()  # h5py file first, then the window and the outer file (LIFO)

    def _open(self) -> h5py.Group:
        from varctl.formats import open_values  # the format module knows where the values live

        return self._stack.enter_context(open_values(self.info))

    def dataset(self, variable: Variable) -> h5py.Dataset:
        """The variable's dataset, reached one hard link at a time and checked like the readers do."""
        if self._h5 is None:
            raise RuntimeError("ValueReader used outside its `with` block")
        parts = [p for p in variable.storage.split("/") if p]
        group: h5py.Group | None = self._h5
        for part in parts[:-1]:
            group = _h5safe.get_group(group, part) if group is not None else None
        ds = _h5safe.get_dataset(group, parts[-1]) if group is not None and parts else None
        if ds is None:
            raise UnreadableModel(
                f"{self.info.source}: no dataset '{variable.storage}' for `{variable.path}`"
            )
        shape, _dtype, _size = _h5safe.dataset_meta(ds)
        if shape != variable.shape:
            raise UnreadableModel(
                f"{self.info.source}: `{variable.path}` has shape {shape} in the file, not "
                f"{variable.shape}: the file changed while varctl was reading it"
            )
        return ds

    def read(self, ds: h5py.Dataset, variable: Variable, index: Index) -> np.ndarray:
        """One slice of the variable's values; bfloat16 comes back as float32."""
        try:
            raw = ds[index]
        except Exception as e:  # h5py raises many types on corrupt or truncated data
            raise UnreadableModel(f"{self.info.source}: cannot read `{variable.path}`: {e}") from e
        raw = np.asarray(raw)
        if variable.dtype == "bfloat16":
            return bfloat16_to_float32(raw)
        return raw

    def chunks(
        self, variable: Variable, itemsize: int | None = None, max_bytes: int | None = None
    ) -> Iterator[np.ndarray]:
        """The variable's values in order, in chunks of at most `max_bytes` of file data.

        Args:
            variable: a variable of this reader's model.
            itemsize: plan chunks for this item size instead of the variable's own (two readers
                given the same value step through two same-shaped variables in lockstep).
            max_bytes: chunk budget (default CHUNK_BYTES).
        """
        ds = self.dataset(variable)
        for index in slices(variable.shape, itemsize or variable.itemsize, max_bytes):
            yield self.read(ds, variable, index)
