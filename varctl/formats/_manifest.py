"""An in-memory copy of a Keras 3 weights HDF5's metadata: groups, datasets' shape/dtype, the
`name` attribute of `vars` groups. Scanned once (in the sandbox) through a backend with the
_h5safe calls: `hdf5meta.h5safe` (stdlib, the default) or `_h5safe` (h5py, the fallback); readers
then walk it as often as they like without the file (an editor re-interprets an edited config on it).

The functions mirror the _h5safe calls the walkers make, errors included.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import hdf5meta

T = TypeVar("T")
# VARCTL_HDF5: unset/"auto" reads with hdf5meta and falls back to h5py; "h5py" forces the fallback;
# "strict" turns a refusal of hdf5meta into an error (tests: prove the fast path read the file).
ENV = "VARCTL_HDF5"


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


_NO_SKIP: frozenset[str] = frozenset()


def scan(h5s: Any, group: Any, budget: Any, skip: frozenset[str] = _NO_SKIP, depth: int = 0) -> Group:
    """The metadata below `group` (members in `skip` left out), every member checked by `h5s`
    (`hdf5meta.h5safe` or `_h5safe`, whose objects `group` is)."""
    if depth > h5s.MAX_DEPTH:
        raise UnsafeFile("HDF5 groups nested too deeply (refused)")
    where = _text(group.name)
    is_vars = where.rsplit("/", 1)[-1] == "vars"
    out = Group(where, h5s.str_attr(group, "name") if is_vars else None)
    members = out.members
    if h5s is hdf5meta.h5safe:
        # hdf5meta's own walk of the group: each dataset comes as its Dataset's fields (no backend
        # object, its meta shared by datasets alike). layers_4000.keras, headers and links already
        # parsed: 62 -> 51 ms.
        for name, obj in hdf5meta.h5safe.members_meta(group, budget, skip):
            if type(obj) is tuple:
                members[name] = Dataset(*obj)
            else:
                members[name] = scan(h5s, obj, budget, _NO_SKIP, depth + 1)
        return out
    is_dataset, is_group, dataset_meta = h5s.is_dataset, h5s.is_group, h5s.dataset_meta
    for name, obj in _members(h5s, group, budget, skip):
        if is_dataset(obj):
            members[name] = Dataset(_text(obj.name), *dataset_meta(obj))
        elif is_group(obj):
            members[name] = scan(h5s, obj, budget, _NO_SKIP, depth + 1)
    return out


def _members(h5s: Any, group: Any, budget: Any, skip: frozenset[str]) -> Iterator[tuple[str, Any]]:
    """(name, member) of `group` but those in `skip`: `member_names`, then `get_member` of each."""
    return (
        (name, h5s.get_member(group, name)) for name in h5s.member_names(group, budget) if name not in skip
    )


def _text(name: str | bytes) -> str:
    """h5py gives a path with bytes that are not UTF-8 as bytes: kept, as lone surrogates."""
    return name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name


def mode() -> str:
    value = os.environ.get(ENV, "").strip().lower()
    return value if value in ("h5py", "strict") else "auto"


def with_fallback(read: Callable[[Any], T], what: str) -> T:
    """`read(h5s)` with the stdlib reader (`hdf5meta.h5safe`); on any HDF5MetaError, the WHOLE read
    again with h5py (`_h5safe`): results are never mixed, and a bad file's error comes from h5py.

    Any other exception of the stdlib pass (a varctl error on a damaged file too) also means "redo it
    with h5py", so whatever the user is told about a bad file comes from the h5py pass.
    `read` opens the file itself, with the backend it is given (see open_hdf5).
    """
    if mode() != "h5py":
        try:
            return read(hdf5meta.h5safe)
        except MemoryError:
            raise
        except Exception as e:
            if mode() == "strict":
                raise UnreadableModel(f"{what}: the stdlib HDF5 reader failed ({e}; {ENV}=strict)") from None
    from varctl.formats import _h5safe

    return read(_h5safe)


@contextmanager
def open_hdf5(h5s: Any, path: str) -> Iterator[Any]:
    """The file at `path` opened by the backend `h5s` (as with_fallback hands it over)."""
    if h5s is hdf5meta.h5safe:
        with hdf5meta.open(path) as f:  # a File is its root group, as an h5py.File is
            yield f
        return
    h5py = h5s.lib()
    try:
        h5 = h5py.File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"not a readable HDF5 file ({e})") from e
    with h5:
        yield h5


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
