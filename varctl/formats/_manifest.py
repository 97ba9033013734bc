"""An in-memory copy of a Keras 3 weights HDF5's metadata: groups, datasets' shape/dtype, the
`name` attribute of `vars` groups. Scanned once through _h5safe (in the sandbox); readers then
walk it as often as they like without the file (an editor re-interprets an edited config on it).

The functions mirror the _h5safe calls the walkers make, errors included.
"""

from __future__ import annotations

import h5py

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import _h5safe


class Dataset:
    __slots__ = ("dtype", "itemsize", "name", "shape")

    def __init__(self, name: str, shape: tuple[int, ...], dtype: str, itemsize: int) -> None:
        self.name, self.shape, self.dtype, self.itemsize = name, shape, dtype, itemsize

    def __getstate__(self) -> tuple:
        return (self.name, self.shape, self.dtype, self.itemsize)

    def __setstate__(self, state: tuple) -> None:
        self.name, self.shape, self.dtype, self.itemsize = state


class Group:
    __slots__ = ("attr_name", "members", "name")

    def __init__(self, name: str, attr_name: str | None = None) -> None:
        self.name = name  # HDF5 path
        self.attr_name = attr_name  # the `name` attribute (read on `vars` groups only)
        self.members: dict[str, Group | Dataset] = {}  # in HDF5's link order

    def __getstate__(self) -> tuple:
        return (self.name, self.attr_name, self.members)

    def __setstate__(self, state: tuple) -> None:
        self.name, self.attr_name, self.members = state


def scan(
    group: h5py.Group, budget: _h5safe.Budget, skip: frozenset[str] = frozenset(), depth: int = 0
) -> Group:
    """The metadata below `group` (members in `skip` left out), every member checked by _h5safe."""
    if depth > _h5safe.MAX_DEPTH:
        raise UnsafeFile("HDF5 groups nested too deeply (refused)")
    where = _text(group.name)
    is_vars = where.rsplit("/", 1)[-1] == "vars"
    out = Group(where, _h5safe.str_attr(group, "name") if is_vars else None)
    for name in _h5safe.member_names(group, budget):
        if name in skip:
            continue
        obj = _h5safe.get_member(group, name)
        if isinstance(obj, h5py.Dataset):
            out.members[name] = Dataset(_text(obj.name), *_h5safe.dataset_meta(obj))
        elif isinstance(obj, h5py.Group):
            out.members[name] = scan(obj, budget, frozenset(), depth + 1)
    return out


def _text(name: str | bytes) -> str:
    """h5py gives a path with bytes that are not UTF-8 as bytes: kept, as lone surrogates."""
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def member_names(group: Group) -> list[str]:
    return list(group.members)


def get_member(group: Group, name: str) -> Group | Dataset | None:
    return group.members.get(name)


def get_group(group: Group, name: str) -> Group | None:
    obj = group.members.get(name)
    if obj is not None and not isinstance(obj, Group):
        raise UnreadableModel(f"HDF5 member '{obj.name}' should be a group")
    return obj


def get_dataset(group: Group, name: str) -> Dataset | None:
    obj = group.members.get(name)
    if obj is not None and not isinstance(obj, Dataset):
        raise UnreadableModel(f"HDF5 member '{obj.name}' should be a dataset")
    return obj
