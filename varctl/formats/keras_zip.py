"""Reader for Keras 3 `.keras` archives: config.json + model.weights.h5 read in place, metadata only.

The weights HDF5 is a ZIP_STORED member, so it is opened through a read-only window on the outer
file at the member's data offset: nothing is extracted, and no weight bytes are read.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import h5py

from varctl.errors import UnreadableModel, UnsafeFile, UnsupportedFormat
from varctl.formats import _h5safe, hub
from varctl.formats.catalog import CONTAINER_CLASSES
from varctl.formats.tree import Node, Tree, to_snake_case
from varctl.model import ModelInfo

_CONFIG_FILENAME = "config.json"
_METADATA_FILENAME = "metadata.json"
_VARS_FILENAME_H5 = "model.weights.h5"
_VARS_FILENAME_NPZ = "model.weights.npz"
_SHARDED_INDEX = "model.weights.json"

MAX_JSON_BYTES = 64 * 1024 * 1024  # a config of a 10,000-layer model is a few MB
MAX_MEMBERS = 100_000
MAX_COMPRESSED_WEIGHTS = 4 * 1024**3
# Top-level groups that hold training state, not model variables.
_NOT_MODEL_STATE = {"optimizer", "metrics", "_compile_metrics", "_loss_tracker", "loss"}


def read_json_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Any:
    """Parse a JSON member with its size checked before and during the read (zip bombs lie)."""
    if info.file_size > MAX_JSON_BYTES:
        raise UnsafeFile(f"'{info.filename}' declares {info.file_size:,} bytes (limit {MAX_JSON_BYTES:,})")
    try:
        with zf.open(info) as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise UnreadableModel(f"cannot read '{info.filename}' from the archive: {e}") from e
    except NotImplementedError as e:
        raise UnsupportedFormat(f"'{info.filename}' uses an unsupported compression: {e}") from e
    if len(data) > MAX_JSON_BYTES:
        raise UnsafeFile(f"'{info.filename}' inflates past {MAX_JSON_BYTES:,} bytes (refused)")
    return parse_json(data, info.filename)


def parse_json(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableModel(f"'{what}' is not UTF-8 text") from e
    try:
        return json.loads(text)
    except RecursionError as e:
        raise UnsafeFile(f"'{what}' is nested too deeply (refused)") from e
    except ValueError as e:
        raise UnreadableModel(f"'{what}' is not valid JSON: {e}") from e


class _Window(io.RawIOBase):
    """A read-only, seekable view of bytes [start, start + size) of an open file."""

    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        self._f, self._start, self._size, self._pos = f, start, size, 0
        try:
            self._fd: int | None = f.fileno() if hasattr(os, "preadv") else None
        except (AttributeError, OSError, io.UnsupportedOperation):
            self._fd = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        n = max(0, min(len(buffer), self._size - self._pos))
        if n == 0:
            return 0
        # HDF5 reads its metadata here in many small pieces: each goes straight into HDF5's own
        # buffer at an absolute offset (no seek, no intermediate bytes object).
        view = memoryview(buffer).cast("B")[:n]
        if self._fd is not None:
            got = os.preadv(self._fd, [view], self._start + self._pos)
        else:
            self._f.seek(self._start + self._pos)
            got = self._f.readinto(view) or 0  # type: ignore[attr-defined]
        self._pos += got
        return got


def _data_offset(f: IO[bytes], info: zipfile.ZipInfo, file_size: int) -> int:
    f.seek(info.header_offset)
    header = f.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise UnreadableModel(f"corrupt zip: bad local header for '{info.filename}'")
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    name = info.orig_filename
    # Built-in UTF-8 for ASCII names: another codec would be imported in the middle of a read.
    raw = name.encode() if name.isascii() else name.encode("utf-8" if info.flag_bits & 0x800 else "cp437")
    if f.read(name_len) != raw:
        raise UnsafeFile(f"corrupt zip: the local header of '{info.filename}' names another member")
    start = info.header_offset + 30 + name_len + extra_len
    if start + info.compress_size > file_size:
        raise UnreadableModel(f"truncated archive: '{info.filename}' runs past the end of the file")
    return start


@contextmanager
def open_weights(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[h5py.File]:
    """Open the weights HDF5 member in place (stored) or as a stream (compressed, slower)."""
    with open(path, "rb") as raw:
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise UnsafeFile(
                    f"'{info.filename}' is stored uncompressed but declares {info.file_size:,} bytes "
                    f"for {info.compress_size:,} stored (refused: lying sizes)"
                )
            size = os.fstat(raw.fileno()).st_size
            fileobj: Any = _Window(raw, _data_offset(raw, info, size), info.file_size)
        else:
            # A seekable stream; Keras itself never compresses this member. A deflated member can
            # claim any size: past this it is refused rather than inflated.
            if info.file_size > MAX_COMPRESSED_WEIGHTS:
                raise UnsafeFile(
                    f"'{info.filename}' is compressed and declares {info.file_size:,} bytes "
                    f"(limit {MAX_COMPRESSED_WEIGHTS:,})",
                    hint="re-save the model with Keras, which stores this member uncompressed",
                )
            fileobj = zf.open(info)
        try:
            h5 = h5py.File(fileobj, "r", locking=False)
        except Exception as e:
            raise UnreadableModel(f"'{info.filename}' is not a readable HDF5 file: {e}") from e
        try:
            yield h5
        finally:
            h5.close()  # before the window and outer file, or h5py may crash at exit


def check_members(zf: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise UnsafeFile(f"archive has {len(infos):,} members (limit {MAX_MEMBERS:,})")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        if info.filename in members:
            raise UnsafeFile(f"archive holds '{info.filename}' twice (refused: ambiguous)")
        members[info.filename] = info
    return members


@contextmanager
def open_archive(path: str) -> Iterator[tuple[zipfile.ZipFile, dict[str, zipfile.ZipInfo]]]:
    """The archive and its checked members; refuses anything that is not a Keras archive."""
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise UnreadableModel(f"not a valid zip archive ({e})") from e
    except NotImplementedError as e:
        raise UnsupportedFormat(f"zip archive uses an unsupported feature ({e})") from e
    with zf:
        members = check_members(zf)
        if _CONFIG_FILENAME not in members:
            raise UnreadableModel("not a Keras archive: no config.json inside the zip")
        yield zf, members


def read_config(path: str) -> Any:
    """config.json of a `.keras` archive, parsed."""
    with open_archive(path) as (zf, members):
        return read_json_member(zf, members[_CONFIG_FILENAME])


def read(path: str, source: str, config: Any = None) -> ModelInfo:
    """Read a `.keras` archive.

    Args:
        path: the file to open.
        source: the path as the user gave it (shown in reports).
        config: an edited config to interpret instead of the archive's own (editors predict
            the result of a change with it).
    """
    with open_archive(path) as (zf, members):
        if config is None:
            config = read_json_member(zf, members[_CONFIG_FILENAME])
        keras_version = None
        if _METADATA_FILENAME in members:
            meta = read_json_member(zf, members[_METADATA_FILENAME])
            if isinstance(meta, dict) and meta.get("keras_version") is not None:
                keras_version = str(meta["keras_version"])
        tree = Tree(config)
        slots = None
        if _VARS_FILENAME_H5 in members:
            with open_weights(path, zf, members[_VARS_FILENAME_H5]) as h5:
                hub_models = hub.expand(tree, config, h5)  # keras-hub: layers from the file
                _Walker(tree).walk_root(h5)
                hub.reorder(tree, hub_models)
                if any(not n.known and n.variables for n in tree.root.walk()):
                    slots = _optimizer_meta(h5)
        elif _SHARDED_INDEX in members or _VARS_FILENAME_NPZ in members:
            raise UnsupportedFormat(
                "sharded (model.weights.json) and .npz weight stores are not supported yet",
                hint="re-save the model with model.save('model.keras') and no max_shard_size",
            )
        else:
            raise UnreadableModel("not a Keras archive: no model.weights.h5 inside the zip")
        info = tree.finish(source=source, fmt="keras", keras_version=keras_version)
        if slots is not None and isinstance(config, dict):
            from varctl import optimizer

            entry = (config.get("compile_config") or {}).get("optimizer")
            info = optimizer.infer_unknown(info, optimizer.layout_for(entry), slots) or info
        return info


_UNREAD = object()


def _name_key(attr: str) -> str:
    """Keras visits private attributes last (saving_lib._name_key)."""
    return f"~{attr}" if attr.startswith("_") else attr


class _Walker:
    """Walks model.weights.h5 in Keras's save order and attaches variables to tree nodes."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.budget = _h5safe.Budget()

    def walk_root(self, h5: h5py.File) -> None:
        self.walk(self.tree.root, h5, "")

    def walk(self, node: Node, group: h5py.Group, prefix: str, vars_group: Any = _UNREAD) -> None:
        if vars_group is _UNREAD:  # callers that opened it already pass it on: one open per group
            vars_group = _h5safe.get_group(group, "vars")
        if vars_group is not None:
            self._own_variables(node, vars_group, f"{prefix}vars")
        names = _h5safe.member_names(group, self.budget)
        if node.list_children or (node.class_name in CONTAINER_CLASSES and node.spec is None and node.known):
            layers_group = _h5safe.get_group(group, "layers")
            self._container(node, layers_group, f"{prefix}layers/")
            names = [n for n in names if n != "layers"]
        skip = {"vars"} | (_NOT_MODEL_STATE if node.parent is None else set())
        for attr in sorted((n for n in names if n not in skip), key=_name_key):
            sub = _h5safe.get_group(group, attr)
            if sub is None:
                continue
            child = node.attr_children.get(attr)
            if child is None:
                self._unexpected(node, attr, sub, f"{prefix}{attr}/")
            else:
                self.walk(child, sub, f"{prefix}{attr}/", self._rename_from_file(child, sub))
        for attr, child in node.attr_children.items():
            if attr.split("/")[0] not in names and child.spec is not None and child.spec.variables:
                self.tree.warnings.append(
                    f"layer `{child.path}` has no variables in the weights file (expected "
                    f"{', '.join(v.name for v in child.spec.variables)})"
                )

    def _container(self, node: Node, layers_group: h5py.Group | None, prefix: str) -> None:
        used: dict[str, int] = {}
        seen: set[str] = set()
        for child in node.list_children:
            base = to_snake_case(child.class_name)
            if base in used:
                used[base] += 1
                group_name = f"{base}_{used[base]}"
            else:
                used[base] = 0
                group_name = base
            seen.add(group_name)
            sub = _h5safe.get_group(layers_group, group_name) if layers_group is not None else None
            if sub is None:
                if child.spec is None or child.spec.variables or child.spec.children:
                    if (
                        child.known
                        and child.spec is not None
                        and not child.spec.variables
                        and not child.spec.children
                    ):
                        continue
                    self.tree.warnings.append(
                        f"layer `{child.path}` ({child.class_name}) has no group in the weights file"
                    )
                continue
            self.walk(child, sub, prefix + group_name + "/", self._check_name(child, sub))
        if layers_group is not None:
            extra = [n for n in _h5safe.member_names(layers_group, self.budget) if n not in seen]
            for name in sorted(extra, key=_h5safe.natural_key):
                sub = _h5safe.get_group(layers_group, name)
                if sub is not None:
                    self._unexpected(node, f"layers/{name}", sub, prefix + name + "/")

    def _check_name(self, node: Node, group: h5py.Group) -> h5py.Group | None:
        """Warn when the saved layer name differs; returns the `vars` group (None if absent)."""
        vars_group = _h5safe.get_group(group, "vars")
        saved = _h5safe.str_attr(vars_group, "name") if vars_group is not None else None
        if saved is not None and saved != node.name:
            self.tree.warnings.append(
                f"weights group for layer `{node.path}` is named `{saved}` in the file: the config "
                "and the weights may not belong together"
            )
        return vars_group

    def _rename_from_file(self, node: Node, group: h5py.Group) -> h5py.Group | None:
        # Sublayers without a config entry are named at save time; the file records the name.
        vars_group = _h5safe.get_group(group, "vars")
        saved = _h5safe.str_attr(vars_group, "name") if vars_group is not None else None
        if saved and node.pointer is None:
            node.name = saved
        return vars_group

    def _own_variables(self, node: Node, vars_group: h5py.Group, prefix: str) -> None:
        keys = _h5safe.member_names(vars_group, self.budget)
        if not all(k.isdigit() for k in keys):
            odd = next(k for k in keys if not k.isdigit())
            raise UnreadableModel(f"unexpected member '{prefix}/{odd}' in the weights file")
        keys.sort(key=int)
        datasets = []
        for k in keys:
            ds = _h5safe.get_dataset(vars_group, k)
            if ds is None:
                continue
            datasets.append((k, *_h5safe.dataset_meta(ds)))
        specs = list(node.spec.variables) if node.spec is not None else None
        if specs is not None and len(specs) != len(datasets):
            if datasets:
                self.tree.warnings.append(
                    f"layer `{node.path or node.name}` ({node.class_name}) has {len(datasets)} "
                    f"variables in the file where varctl expects {len(specs)} "
                    f"({', '.join(s.name for s in specs) or 'none'}): listed with generic names"
                )
            specs = None
            node.known = False
        for i, (k, shape, dtype, itemsize) in enumerate(datasets):
            spec = specs[i] if specs is not None else None
            name = spec.name if spec is not None else f"vars/{k}"
            self.tree.add_variable(node, name, shape, dtype, itemsize, f"{prefix}/{k}", spec)

    def _unexpected(self, node: Node, attr: str, group: h5py.Group, prefix: str) -> None:
        """Groups the config and catalog do not describe: list their variables generically."""
        if (known := node.attr_children.get(attr)) is not None:  # e.g. a keras-hub list attribute
            self.walk(known, group, prefix, self._rename_from_file(known, group))
            return
        if prefix.count("/") > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        if _h5safe.get_group(group, "vars") is not None:
            vars_group = _h5safe.get_group(group, "vars")
            name = (_h5safe.str_attr(vars_group, "name") if vars_group is not None else None) or attr
            child = self.tree.add_generic_child(node, attr, name)
            if node.known and not self._empty(group):
                self.tree.warnings.append(
                    f"layer `{child.path}` found in the weights file is not described by "
                    f"the config of `{node.path or node.name}`: listed with generic names"
                )
            self.walk(child, group, prefix)
        else:  # a list of layers held in an attribute: `attr/<snake_name>/...`
            for name in sorted(_h5safe.member_names(group, self.budget), key=_h5safe.natural_key):
                sub = _h5safe.get_group(group, name)
                if sub is not None:
                    self._unexpected(node, f"{attr}/{name}", sub, prefix + name + "/")

    def _empty(self, group: h5py.Group, depth: int = 0) -> bool:
        """No dataset below `group` (walked link by link, each checked: never h5py's visititems)."""
        if depth > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        for name in _h5safe.member_names(group, self.budget):
            obj = _h5safe.get_member(group, name)
            if isinstance(obj, h5py.Dataset):
                return False
            if isinstance(obj, h5py.Group) and not self._empty(obj, depth + 1):
                return False
        return True


def _optimizer_meta(h5: h5py.File) -> list[tuple[tuple[int, ...], str]] | None:
    opt = _h5safe.get_group(h5, "optimizer")
    group = _h5safe.get_group(opt, "vars") if opt is not None else None
    if group is None:
        return None
    keys = _h5safe.member_names(group, _h5safe.Budget())
    if not all(k.isdigit() for k in keys) or sorted(map(int, keys)) != list(range(len(keys))):
        return None
    out = []
    for k in range(len(keys)):
        ds = _h5safe.get_dataset(group, str(k))
        if ds is None:
            return None
        shape, dtype, _ = _h5safe.dataset_meta(ds)
        out.append((shape, dtype))
    return out


def optimizer_slots(path: str) -> list[tuple[tuple[int, ...], str]] | None:
    """(shape, dtype) of each saved `optimizer/vars/<i>` in index order (metadata only), or None."""
    with zipfile.ZipFile(path) as zf:
        members = check_members(zf)
        if _VARS_FILENAME_H5 not in members:
            return None
        with open_weights(path, zf, members[_VARS_FILENAME_H5]) as h5:
            return _optimizer_meta(h5)
