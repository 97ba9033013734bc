"""Every h5py access goes through here: hard links only, no external or virtual storage, bounded walks.

Modelled on Keras's `safe_get_h5_*`: the HDF5 library follows soft and external links and reads
external storage when asked (a plain `f[name]` does), so each member is checked before it is touched.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import _layout

if TYPE_CHECKING:
    import h5py

# A real model has thousands of objects, not millions: past this a walk is refused, not slow.
MAX_OBJECTS = 2_000_000
MAX_ATTR_BYTES = 64 * 1024 * 1024
MAX_ATTR_ITEMS = 10_000_000
MAX_DEPTH = 200  # group nesting; a deeply nested real model is a few dozen levels
# Filters HDF5 and h5py implement themselves. Any other id would make HDF5 look for a plugin
# (a shared library) when values are read: refused, and plugin loading is switched off in lib().
_BUILTIN_FILTERS: frozenset[int] = frozenset()
_LIB: Any = None


def lib() -> Any:
    """h5py, imported on first use (`varctl list` of a Keras file never needs it), with HDF5's
    plugin search path emptied first. Every h5py.File varctl opens goes through here."""
    global _LIB, _BUILTIN_FILTERS
    if _LIB is None:
        import h5py

        z = h5py.h5z
        _BUILTIN_FILTERS = frozenset(
            {z.FILTER_DEFLATE, z.FILTER_SHUFFLE, z.FILTER_FLETCHER32, z.FILTER_SZIP, z.FILTER_NBIT,
             z.FILTER_SCALEOFFSET, z.FILTER_LZF}
        )  # fmt: skip
        _no_plugins(h5py)
        _LIB = h5py
    return _LIB


def _no_plugins(h5py: Any) -> None:
    """Empty HDF5's plugin search path (HDF5_PLUGIN_PATH included): no filter library is ever loaded."""
    try:
        while h5py.h5pl.size():
            h5py.h5pl.remove(0)
    except Exception:
        pass


def is_group(obj: object) -> bool:
    return isinstance(obj, lib().Group)


def is_dataset(obj: object) -> bool:
    return isinstance(obj, lib().Dataset)


class Budget:
    """Counts the HDF5 objects one read touches, so a crafted file cannot make a walk endless."""

    def __init__(self, limit: int = MAX_OBJECTS) -> None:
        self.left = limit

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise UnsafeFile("too many HDF5 objects (refusing to walk further)")


def _link_kind(group: h5py.Group, name: str) -> str:
    # One H5Lget_info instead of `group.get(name, getlink=True)` (an exists check, then the
    # same call): a walk does this for every member it touches.
    try:
        typecode = group.id.links.get_info(_encode(name)).type
    except Exception as e:  # missing, or corrupt: h5py raises many types on corrupt files
        try:
            present = _encode(name) in group
        except Exception as e2:
            raise UnreadableModel(f"corrupt HDF5 member '{name}': {e2}") from e2
        if not present:
            return "missing"
        raise UnreadableModel(f"corrupt HDF5 member '{name}': {e}") from e
    return _kind(typecode, name)


def _kind(typecode: int, name: str) -> str:
    h5l = lib().h5l
    if typecode == h5l.TYPE_HARD:
        return "hard"
    if typecode == h5l.TYPE_EXTERNAL:
        raise UnsafeFile(f"HDF5 member '{name}' is an external link to another file (refused)")
    if typecode == h5l.TYPE_SOFT:
        raise UnsafeFile(f"HDF5 member '{name}' is a soft link (refused)")
    # h5py's get(getlink=True) raised TypeError here, reported as corrupt: kept as it was.
    raise UnreadableModel(f"corrupt HDF5 member '{name}': Unknown link type")


def _get(group: h5py.Group, name: str) -> Any:
    if _link_kind(group, name) == "missing":
        return None
    try:
        return group[_encode(name)]
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 member '{name}': {e}") from e


def _encode(name: str | bytes) -> bytes:
    """A member name as HDF5 stores it: the inverse of _decode_name."""
    if isinstance(name, bytes):
        return name
    try:
        return name.encode("utf-8", errors="surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate no decoded name holds (from a config): not found
        return name.encode("utf-8", errors="surrogatepass")


def get_member(group: h5py.Group, name: str) -> h5py.Group | h5py.Dataset | None:
    """A group or (checked) dataset `name`, or None; refuses links."""
    obj = _get(group, name)
    if is_dataset(obj):
        check_dataset(obj)
    return obj


def get_group(group: h5py.Group, name: str) -> h5py.Group | None:
    """The subgroup `name` (one path component), or None; refuses links and non-groups."""
    obj = _get(group, name)
    if obj is None:
        return None
    if not is_group(obj):
        raise UnreadableModel(f"HDF5 member '{obj.name}' should be a group")
    return obj


def check_dataset(ds: h5py.Dataset) -> h5py.Dataset:
    """Refuse datasets whose bytes live outside this file."""
    lib()
    try:
        if ds.is_virtual:
            raise UnsafeFile(f"HDF5 dataset '{ds.name}' is a virtual dataset (refused)")
        plist = ds.id.get_create_plist()
        if plist.get_external_count() > 0:
            raise UnsafeFile(f"HDF5 dataset '{ds.name}' stores its data in an external file (refused)")
        for i in range(plist.get_nfilters()):
            code = plist.get_filter(i)[0]
            if code not in _BUILTIN_FILTERS:
                raise UnsafeFile(
                    f"HDF5 dataset '{ds.name}' needs filter plugin #{code} (refused: plugins are code)"
                )
    except UnsafeFile:
        raise
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 dataset '{ds.name}': {e}") from e
    return ds


def get_dataset(group: h5py.Group, name: str) -> h5py.Dataset | None:
    """The dataset `name`, or None; refuses links, external storage and virtual datasets."""
    obj = _get(group, name)
    if obj is None:
        return None
    if not is_dataset(obj):
        raise UnreadableModel(f"HDF5 member '{obj.name}' should be a dataset")
    return check_dataset(obj)


def member_names(group: h5py.Group, budget: Budget) -> list[str]:
    """Names in `group` (HDF5 lists them alphabetically), each checked to be a hard link."""
    # One H5Literate yields every name with its link type (same order as group.keys()), instead
    # of one lookup per member.
    found: list[tuple[bytes, int]] = []
    try:
        group.id.links.iterate(lambda n, info: found.append((n, info.type)), info=True)
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 group '{group.name}': {e}") from e
    names = [_decode_name(n) for n, _ in found]
    budget.spend(len(names) + 1)
    for n, (_, typecode) in zip(names, found, strict=True):
        _kind(typecode, n)
    return names


def _decode_name(name: bytes) -> str:
    """A name or string attribute as text, always a str: UTF-8, with bytes that are not UTF-8 kept as
    lone surrogates (surrogateescape, as os.fsdecode does; _encode gives the bytes back). Escaping
    them on output is the writers' job."""
    return name.decode("utf-8", errors="surrogateescape")


def subgroups(group: h5py.Group, budget: Budget) -> Iterator[tuple[str, h5py.Group]]:
    for n in member_names(group, budget):
        obj = _get(group, n)
        if is_group(obj):
            yield n, obj


def _attr(obj: h5py.HLObject, key: str) -> Any:
    """The raw value of attribute `key` (None when absent), its size checked before it is read."""
    try:
        if key not in obj.attrs:
            return None
        aid = obj.attrs.get_id(key)
        items = 1
        for d in aid.shape or ():
            items *= int(d)
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 attribute '{key}': {e}") from e
    try:
        stored = aid.get_storage_size()
    except Exception:
        stored = 0
    if items > MAX_ATTR_ITEMS or stored > MAX_ATTR_BYTES:
        raise UnsafeFile(f"HDF5 attribute '{key}' is too large ({items:,} items, {stored:,} bytes; refused)")
    try:
        return obj.attrs[key]
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 attribute '{key}': {e}") from e


def str_attr(obj: h5py.HLObject, key: str) -> str | None:
    """A string attribute, decoded; None when absent; refuses absurd sizes."""
    value = _attr(obj, key)
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if hasattr(value, "tolist") and not isinstance(value, str):
        value = value.tolist()
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return str(value)
    if len(value) > MAX_ATTR_BYTES:
        raise UnsafeFile(f"HDF5 attribute '{key}' is too large")
    return value


def layer_weights(
    weights: h5py.Group, lname: str, key: str, budget: Budget
) -> tuple[list[str], list[tuple[str, tuple[str, tuple[int, ...], str, int]]]] | None:
    """`_layout.layer_weights` with this backend (hdf5meta.h5safe has its own: the same walk,
    without an object per group)."""
    return _layout.layer_weights(sys.modules[__name__], weights, lname, key, budget)


def list_attr(obj: h5py.HLObject, key: str) -> list[str] | None:
    """A list-of-strings attribute (`layer_names`, `weight_names`), decoded.

    Keras splits one larger than HDF5's 64 KB header limit into `key0`, `key1`, ...
    (legacy_h5_format.save_attributes_to_hdf5_group); those are joined, as Keras's loader does.
    """
    value = _attr(obj, key)
    if value is None:
        parts: list[Any] = []
        while (part := _attr(obj, f"{key}{len(parts)}")) is not None:
            parts.append(part)
            if len(parts) > MAX_ATTR_ITEMS:
                raise UnsafeFile(f"HDF5 attribute '{key}' has too many parts (refused)")
        if not parts:
            return None
        return [item for part in parts for item in _strings(part)]
    return _strings(value)


def _strings(value: Any) -> list[str]:
    items = value.tolist() if hasattr(value, "tolist") else list(value)
    if not isinstance(items, list):
        items = [items]
    return [_decode_name(i) if isinstance(i, bytes) else str(i) for i in items]


def dataset_meta(ds: h5py.Dataset) -> tuple[tuple[int, ...], str, int]:
    """(shape, dtype name, item size) from metadata only; bfloat16 is an opaque 2-byte type + attr."""
    try:
        shape = tuple(int(d) for d in (ds.shape or ()))
        dt = ds.dtype
        marked = ds.attrs.get("dtype") if "dtype" in ds.attrs else None
    except Exception as e:
        raise UnreadableModel(f"corrupt HDF5 dataset '{ds.name}': {e}") from e
    if isinstance(marked, bytes):
        marked = marked.decode("utf-8", errors="replace")
    if isinstance(marked, str) and marked == "bfloat16":  # not an array, a number, ...: no marker
        return shape, "bfloat16", 2
    if dt.kind == "V" and dt.fields is None and dt.itemsize == 2 and dt.subdtype is None:
        # an opaque 2-byte type without the marker (legacy .h5 writes ml_dtypes' bfloat16 so):
        # the only 2-byte dtype Keras stores opaque
        return shape, "bfloat16", 2
    name = dt.name if dt.kind != "O" else "object"
    if dt.kind == "S":
        name = "string"
    return shape, name, dt.itemsize


_NUM = re.compile(r"(\d+)")


def natural_key(name: str) -> list[Any]:
    """`dense_2` before `dense_10`, `2` before `10` (HDF5 itself sorts them as strings)."""
    return [int(p) if p.isdigit() else p for p in _NUM.split(name)]
