"""Variable values, read in bounded chunks: the only module that reads weight bytes (stats, check, diff).

Every value computation runs in a sandboxed child (`in_child`: forked, with a memory and a time limit,
see `Limits`), and every dataset is checked before a byte of it is read (`ValueReader.dataset`):
chunks too large to inflate, compressed sizes no codec can reach, storage never written, more chunks
than a real model has. Reads follow the dataset's own chunk grid, so each stored chunk is inflated
once; memory does not grow with a variable's size. docs/values.md has the bounds and how to change them.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

import h5py
import numpy as np

from varctl.errors import UnreadableModel, UnsafeFile, UnsupportedFormat, VarctlError
from varctl.formats import _h5safe, _sandbox
from varctl.model import ModelFormat, ModelInfo, Variable

CHUNK_BYTES = 16 * 1024 * 1024

Index = tuple[Any, ...]
T = TypeVar("T")

# The most a codec can shrink data (inflated bytes per stored byte). zlib's deflate tops out near
# 1032:1; LZF writes at least 3 bytes per 264 (~88:1). A chunk beyond its filters' product is a bomb.
_MAX_RATIO = {h5py.h5z.FILTER_DEFLATE: 1100, h5py.h5z.FILTER_LZF: 100}
_OTHER_CODEC_RATIO = 1100  # szip, nbit, scaleoffset: held to deflate's bound
_NO_SHRINK = frozenset({h5py.h5z.FILTER_SHUFFLE, h5py.h5z.FILTER_FLETCHER32})


@dataclass(frozen=True)
class Limits:
    """Bounds on value reads; each has an environment variable (docs/values.md)."""

    timeout_s: float = 20.0  # VARCTL_VALUES_TIMEOUT: seconds for one child, plus the per-GiB allowance
    seconds_per_gib: float = 30.0  # VARCTL_VALUES_SECONDS_PER_GIB: more time per GiB of values read
    memory_mb: int = 448  # VARCTL_VALUES_MEMORY_MB: address space a child may add to varctl's own
    max_chunk_mb: int = 64  # VARCTL_VALUES_MAX_CHUNK_MB: largest inflated HDF5 chunk read
    max_chunks: int = 1_000_000  # VARCTL_VALUES_MAX_CHUNKS: most chunks in one dataset

    @classmethod
    def from_env(cls) -> Limits:
        def number(name: str, default: float) -> float:
            try:
                value = float(os.environ.get(name, "") or default)
            except ValueError:
                return default
            return value if value > 0 and math.isfinite(value) else default

        d = cls()
        return cls(
            timeout_s=number("VARCTL_VALUES_TIMEOUT", d.timeout_s),
            seconds_per_gib=number("VARCTL_VALUES_SECONDS_PER_GIB", d.seconds_per_gib),
            memory_mb=int(number("VARCTL_VALUES_MEMORY_MB", d.memory_mb)),
            max_chunk_mb=int(number("VARCTL_VALUES_MAX_CHUNK_MB", d.max_chunk_mb)),
            max_chunks=int(number("VARCTL_VALUES_MAX_CHUNKS", d.max_chunks)),
        )

    def timeout_for(self, nbytes: int) -> float:
        return self.timeout_s + self.seconds_per_gib * nbytes / 2**30


BATCH_BYTES = 256 * 1024 * 1024  # values one child reads before the parent reports progress
_TUNE = "bounds for value reads: VARCTL_VALUES_TIMEOUT, VARCTL_VALUES_MEMORY_MB (docs/values.md)"


def in_child(fn: Callable[..., T], *args: Any, label: str, nbytes: int) -> T:
    """`fn(*args)` in the sandbox child, with the value-read limits (time scaled by `nbytes`)."""
    limits = Limits.from_env()
    return _sandbox.call(
        fn, *args, label=label, timeout_s=limits.timeout_for(nbytes), memory_mb=limits.memory_mb, tune=_TUNE
    )


def batches(items: Sequence[T], size: Callable[[T], int], max_bytes: int | None = None) -> Iterator[list[T]]:
    """`items` in order, grouped so that each group's `size` adds up to about `max_bytes` (one child each)."""
    budget = max_bytes or BATCH_BYTES
    group: list[T] = []
    total = 0
    for item in items:
        if group and total + size(item) > budget:
            yield group
            group, total = [], 0
        group.append(item)
        total += size(item)
    if group:
        yield group


def slices(shape: tuple[int, ...], itemsize: int, max_bytes: int | None = None) -> Iterator[Index]:
    """Index tuples that cover an array of `shape` in order, each at most `max_bytes` (or one element).

    The split axis is the first one whose trailing block fits: along it, as many entries as fit are
    taken at once; every axis before it is stepped one entry at a time.
    """
    return blocks(shape, itemsize, None, max_bytes)


def blocks(
    shape: tuple[int, ...], itemsize: int, chunks: tuple[int, ...] | None, max_bytes: int | None = None
) -> Iterator[Index]:
    """Index tuples that cover an array of `shape` once each, aligned to its HDF5 `chunks` grid.

    Without chunks (contiguous storage), the blocks come in element order, each at most `max_bytes`
    (or one element). With chunks, every block is a whole number of chunks (clipped at the edges), so
    each stored chunk is inflated exactly once; a block is at most `max_bytes` or one chunk, whichever
    is larger. Along the split axis (the first whose chunk-aligned block fits) as many chunk rows as
    fit are taken at once; every axis before it is stepped one chunk at a time.
    """
    if not shape:
        yield ()
        return
    if 0 in shape:
        return
    grid = tuple(min(c, s) for c, s in zip(chunks, shape, strict=True)) if chunks else (1,) * len(shape)
    budget = max(1, (max_bytes or CHUNK_BYTES) // max(1, itemsize), math.prod(grid))  # elements

    def block(axis: int) -> int:  # elements in a block one grid step wide along `axis`
        return math.prod(grid[:axis]) * grid[axis] * math.prod(shape[axis + 1 :])

    axis = 0
    while axis < len(shape) - 1 and block(axis) > budget:
        axis += 1
    step = grid[axis] * max(1, budget // block(axis))
    starts = [range(0, shape[i], grid[i]) for i in range(axis)]
    for outer in _product(starts):
        head = tuple(
            (slice(o, min(o + grid[i], shape[i])) if grid[i] > 1 else o) for i, o in enumerate(outer)
        )
        for start in range(0, shape[axis], step):
            yield (*head, slice(start, min(start + step, shape[axis])))


def _product(ranges: list[range]) -> Iterator[tuple[int, ...]]:
    if not ranges:
        yield ()
        return
    for first in ranges[0]:
        for rest in _product(ranges[1:]):
            yield (first, *rest)


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
    Run it inside `in_child`: the checks in `dataset` bound what one read costs, the child's limits
    bound what the HDF5 library itself may do.
    """

    def __init__(self, info: ModelInfo, limits: Limits | None = None) -> None:
        self.info = info
        self.limits = limits or Limits.from_env()
        self._stack = ExitStack()
        self._h5: h5py.Group | None = None
        self._checked: dict[str, h5py.Dataset] = {}

    def __enter__(self) -> ValueReader:
        try:
            self._h5 = self._open()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._h5 = None
        self._checked.clear()
        self._stack.close()  # h5py file first, then the window and the outer file (LIFO)

    @staticmethod
    def require(info: ModelInfo) -> None:
        """Refuse, before any child is started, a model whose format has no value reader."""
        if info.format not in (ModelFormat.KERAS, ModelFormat.H5, ModelFormat.WEIGHTS):
            raise UnsupportedFormat(
                f"{info.source}: varctl cannot read the values of a '{info.format}' model yet",
                hint="values (stats, check --finite, diff --values) are read from .keras and .h5 files",
            )

    def _open(self) -> h5py.Group:
        from varctl.formats import open_values  # the format module knows where the values live

        return self._stack.enter_context(open_values(self.info))

    def dataset(self, variable: Variable) -> h5py.Dataset:
        """The variable's dataset, reached one hard link at a time, checked like the readers do and
        then for what reading it would cost (`_guard`): refused before any value is read."""
        if self._h5 is None:
            raise RuntimeError("ValueReader used outside its `with` block")
        if (ds := self._checked.get(variable.storage)) is not None:
            return ds
        storage: Any = variable.storage  # bytes: h5py's name for a path that is not UTF-8, used as is
        parts: list[Any] = [p for p in storage.split(b"/" if isinstance(storage, bytes) else "/") if p]
        group: h5py.Group | None = self._h5
        for part in parts[:-1]:
            group = _h5safe.get_group(group, part) if group is not None else None
        ds = _h5safe.get_dataset(group, parts[-1]) if group is not None and parts else None
        if ds is None:
            raise UnreadableModel(
                f"{self.info.source}: no dataset '{variable.storage}' for `{variable.path}`"
            )
        where = f"{self.info.source}: `{variable.path}`"
        try:
            null = ds.shape is None
        except Exception as e:
            raise UnreadableModel(f"{where}: corrupt HDF5 dataset ({e})") from e
        if null:
            raise UnreadableModel(f"{where} holds no data at all (an HDF5 null dataspace)")
        shape, _dtype, _size = _h5safe.dataset_meta(ds)
        if shape != variable.shape:
            raise UnreadableModel(
                f"{self.info.source}: `{variable.path}` has shape {shape} in the file, not "
                f"{variable.shape}: the file changed while varctl was reading it"
            )
        try:
            _guard(ds, variable, self.limits, where)
        except (VarctlError, MemoryError):
            raise
        except Exception as e:
            raise UnreadableModel(f"{where}: corrupt HDF5 dataset ({e})") from e
        self._checked[variable.storage] = ds
        return ds

    def grid(self, variable: Variable) -> tuple[int, ...] | None:
        """The dataset's chunk shape (None: contiguous or compact storage)."""
        chunks = self.dataset(variable).chunks
        return tuple(int(c) for c in chunks) if chunks else None

    def plan(
        self, variable: Variable, itemsize: int | None = None, max_bytes: int | None = None
    ) -> list[Index]:
        """The blocks `chunks` reads, aligned to the dataset's chunk grid."""
        size = max(itemsize or 0, self.stored_itemsize(variable))
        return list(blocks(variable.shape, size, self.grid(variable), max_bytes))

    def stored_itemsize(self, variable: Variable) -> int:
        """Bytes per value as stored (a bfloat16 marker on float64 data: 8, not 2)."""
        return max(variable.itemsize, int(self.dataset(variable).dtype.itemsize))

    def read(self, ds: h5py.Dataset, variable: Variable, index: Index) -> np.ndarray:
        """One block of the variable's values; bfloat16 comes back as float32."""
        try:
            raw = np.asarray(ds[index])
        except MemoryError:
            raise
        except Exception as e:  # h5py raises many types on corrupt or truncated data
            raise UnreadableModel(f"{self.info.source}: cannot read `{variable.path}`: {e}") from e
        if variable.dtype == "bfloat16" and raw.dtype.itemsize == 2 and raw.dtype.kind in "Vu":
            return bfloat16_to_float32(raw)
        return raw  # bfloat16-marked ints and floats: the stored numbers (Keras casts them on load)

    def read_at(self, variable: Variable, index: Index) -> np.ndarray:
        return self.read(self.dataset(variable), variable, index)

    def chunks(
        self, variable: Variable, itemsize: int | None = None, max_bytes: int | None = None
    ) -> Iterator[np.ndarray]:
        """The variable's values, one block at a time (whole HDF5 chunks, at most `max_bytes` or one chunk).

        Args:
            variable: a variable of this reader's model.
            itemsize: plan blocks for this item size instead of the variable's own.
            max_bytes: block budget (default CHUNK_BYTES).
        """
        ds = self.dataset(variable)
        for index in self.plan(variable, itemsize, max_bytes):
            yield self.read(ds, variable, index)


def _guard(ds: h5py.Dataset, variable: Variable, limits: Limits, where: str) -> None:
    """Refuse, before reading, a dataset whose values cannot be read within `limits`."""
    dt = ds.dtype
    if variable.dtype == "bfloat16":
        if not (dt.kind in "biuf" or (dt.kind == "V" and dt.itemsize == 2)):
            raise UnreadableModel(f"{where} is marked bfloat16 but stores {_kind_name(dt)} values")
    elif is_numeric(variable) and dt.kind not in "biuf":
        raise UnreadableModel(f"{where} is {variable.dtype} but stores {_kind_name(dt)} values")
    if variable.params == 0 or not is_numeric(variable):
        return
    nbytes = variable.params * dt.itemsize
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    stored = ds.id.get_storage_size()
    never = f"{where} was never written: the file holds no values for it (refused: not reading fill values)"
    if layout == h5py.h5d.CHUNKED:
        chunk = tuple(int(c) for c in ds.chunks)
        chunk_bytes = math.prod(chunk) * dt.itemsize
        if chunk_bytes > limits.max_chunk_mb * 2**20:
            raise UnsafeFile(
                f"{where} is stored in HDF5 chunks of {_size(chunk_bytes)} each once inflated "
                f"(limit {limits.max_chunk_mb:,} MiB; refused)",
                hint="raise VARCTL_VALUES_MAX_CHUNK_MB if the file is trusted (docs/values.md)",
            )
        expected = math.prod(-(-s // c) for s, c in zip(variable.shape, chunk, strict=True))
        if expected > limits.max_chunks:
            raise UnsafeFile(
                f"{where} is split into {expected:,} HDF5 chunks (limit {limits.max_chunks:,}; refused)",
                hint="raise VARCTL_VALUES_MAX_CHUNKS if the file is trusted (docs/values.md)",
            )
        written = ds.id.get_num_chunks()
        if written == 0 or stored == 0:
            raise UnreadableModel(never)
        if written < expected:
            raise UnreadableModel(
                f"{where} was only partly written ({written:,} of {expected:,} HDF5 chunks; "
                "refused: not reading fill values)"
            )
        ratio = _max_ratio(dcpl)
        if ratio is not None and written * chunk_bytes > ratio * stored:
            raise UnsafeFile(
                f"{where} inflates {_size(stored)} stored into {_size(written * chunk_bytes)}, "
                f"beyond what its compression can reach ({ratio:,}:1; refused: a decompression bomb)"
            )
    elif layout == h5py.h5d.CONTIGUOUS:
        if stored == 0 or ds.id.get_offset() is None:
            raise UnreadableModel(never)
        if stored < nbytes:
            raise UnreadableModel(f"{where} stores {stored:,} bytes for {nbytes:,} declared (corrupt)")


def _max_ratio(dcpl: Any) -> int | None:
    """How far the filter pipeline can inflate a chunk (None: no filter that compresses)."""
    ratio = None
    for i in range(dcpl.get_nfilters()):
        code = dcpl.get_filter(i)[0]
        if code in _NO_SHRINK:
            continue
        ratio = (ratio or 1) * _MAX_RATIO.get(code, _OTHER_CODEC_RATIO)
    return ratio


def _kind_name(dt: np.dtype[Any]) -> str:
    return {"S": "string", "U": "string", "O": "object", "V": "opaque", "c": "complex"}.get(dt.kind, dt.name)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,} bytes"
