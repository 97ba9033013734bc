"""Keras 3 `.keras` archives: config.json + model.weights.h5, read in place (metadata only) and
rewritten surgically.

The format protocol (formats/__init__.py dispatches to it):
- `read(path, source, fileobj=None, for_edit=False) -> Parsed`: one pass over the file (in the
  sandbox): the config, the weights metadata as a manifest, the optimizer slots.
- `interpret(config, manifest, source) -> ModelInfo`: pure; re-run by the editor on an edited config.
- `open_values(path)`: the weights HDF5, opened for value reads.
- `write(parsed, plan, tmp)`: a new archive with the edited config.json; every other member is
  copied byte for byte (the weights are rewritten only to remap optimizer state).

The weights HDF5 is a ZIP_STORED member, so it is opened through a read-only window on the outer
file at the member's data offset: nothing is extracted, and no weight bytes are read.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import mmap
import os
import shutil
import struct
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from varctl import safe_write
from varctl.errors import UnreadableModel, UnsafeFile, UnsupportedFormat
from varctl.formats import _h5safe, _manifest, hdf5meta
from varctl.formats._layout import (
    CONFIG_MEMBER,
    METADATA_MEMBER,
    NOT_MODEL_STATE,
    SHARDED_INDEX_MEMBER,
    WEIGHTS_MEMBER,
    WEIGHTS_NPZ_MEMBER,
    name_key,
    parse_json,
)
from varctl.formats._sandbox import in_child
from varctl.formats.catalog import CONTAINER_CLASSES, holds_hub_entry
from varctl.formats.parsed import Parsed
from varctl.formats.tree import Node, Tree, to_snake_case
from varctl.model import ModelInfo

if TYPE_CHECKING:
    import h5py

    from varctl.formats.rewrite import Rewrite

MAX_JSON_BYTES = 64 * 1024 * 1024  # a config of a 10,000-layer model is a few MB
MAX_MEMBERS = 100_000
MAX_COMPRESSED_WEIGHTS = 4 * 1024**3
Slots = list[tuple[tuple[int, ...], str]]


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
def open_weights(
    raw: IO[bytes], zf: zipfile.ZipFile, info: zipfile.ZipInfo, h5s: Any = _h5safe
) -> Iterator[Any]:
    """Open the weights HDF5 member in place (stored) or as a stream (compressed, slower).

    `h5s`: the backend (`_h5safe`: an h5py.File; `hdf5meta.h5safe`: an hdf5meta.File over a memory
    map of the archive, the member read where it lies; a compressed member is OutsideSubset)."""
    if info.compress_type == zipfile.ZIP_STORED:
        if info.file_size != info.compress_size:
            raise UnsafeFile(
                f"'{info.filename}' is stored uncompressed but declares {info.file_size:,} bytes "
                f"for {info.compress_size:,} stored (refused: lying sizes)"
            )
        size = os.fstat(raw.fileno()).st_size
        start = _data_offset(raw, info, size)
        if h5s is hdf5meta.h5safe:
            with _mapped(raw) as mm, hdf5meta.open(mm, start, info.file_size) as meta:
                yield meta
            return
        fileobj: Any = _Window(raw, start, info.file_size)
    else:
        if h5s is hdf5meta.h5safe:
            raise hdf5meta.OutsideSubset(f"'{info.filename}' is compressed inside the archive")
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
        h5 = _h5safe.lib().File(fileobj, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"'{info.filename}' is not a readable HDF5 file: {e}") from e
    try:
        yield h5
    finally:
        h5.close()  # before the window and outer file, or h5py may crash at exit


@contextmanager
def _mapped(raw: IO[bytes]) -> Iterator[mmap.mmap]:
    """A read-only memory map of the whole archive (OutsideSubset when it cannot be mapped)."""
    try:
        mm = mmap.mmap(raw.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as e:
        raise hdf5meta.OutsideSubset(f"cannot memory-map the archive ({e})") from e
    try:
        yield mm
    finally:
        mm.close()


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
def open_archive(
    path: str, fileobj: IO[bytes] | None = None
) -> Iterator[tuple[IO[bytes], zipfile.ZipFile, dict[str, zipfile.ZipInfo]]]:
    """The open file, the archive and its checked members; refuses anything not a Keras archive.

    `fileobj`: the file, already open (the dispatcher sniffed it): it is not opened again.
    """
    with contextlib.ExitStack() as stack:
        if fileobj is None:
            try:
                fileobj = stack.enter_context(open(path, "rb"))
            except OSError as e:
                raise UnreadableModel(e.strerror or str(e)) from e
        try:
            zf = zipfile.ZipFile(fileobj)
        except zipfile.BadZipFile as e:
            raise UnreadableModel(f"not a valid zip archive ({e})") from e
        except NotImplementedError as e:
            raise UnsupportedFormat(f"zip archive uses an unsupported feature ({e})") from e
        with zf:
            members = check_members(zf)
            if CONFIG_MEMBER not in members:
                raise UnreadableModel("not a Keras archive: no config.json inside the zip")
            yield fileobj, zf, members


def _weights_member(members: dict[str, zipfile.ZipInfo]) -> zipfile.ZipInfo:
    if WEIGHTS_MEMBER in members:
        return members[WEIGHTS_MEMBER]
    if SHARDED_INDEX_MEMBER in members or WEIGHTS_NPZ_MEMBER in members:
        raise UnsupportedFormat(
            "sharded (model.weights.json) and .npz weight stores are not supported yet",
            hint="re-save the model with model.save('model.keras') and no max_shard_size",
        )
    raise UnreadableModel("not a Keras archive: no model.weights.h5 inside the zip")


class Manifest:
    """The raw scan of an archive: what interpret() needs besides the config."""

    def __init__(
        self,
        weights: _manifest.Group,  # model.weights.h5 without its training-state groups
        keras_version: str | None,
        slots: Slots | None = None,  # (shape, dtype) of each `optimizer/vars/<i>`, when scanned
    ) -> None:
        self.weights = weights
        self.keras_version = keras_version
        self.slots = slots


def read(path: str, source: str, fileobj: IO[bytes] | None = None, for_edit: bool = False) -> Parsed:
    """Read a `.keras` archive once: config, metadata, and the weights' metadata.

    Args:
        path: the file to open.
        source: the path as the user gave it (shown in reports).
        fileobj: `path`, already open (not opened again).
        for_edit: also keep the config and the manifest (with the optimizer slots) for an editor.
    """
    with open_archive(path, fileobj) as (raw, zf, members):
        config = read_json_member(zf, members[CONFIG_MEMBER])
        keras_version = None
        if METADATA_MEMBER in members:
            meta = read_json_member(zf, members[METADATA_MEMBER])
            if isinstance(meta, dict) and meta.get("keras_version") is not None:
                keras_version = str(meta["keras_version"])
        weights = _weights_member(members)

        def scan(h5s: Any) -> tuple[Tree, Manifest]:  # the whole weights read, with one backend
            tree = Tree(config, keras_version)
            with open_weights(raw, zf, weights, h5s) as h5:
                scanned = _manifest.scan(h5s, h5, h5s.Budget(), NOT_MODEL_STATE)
                manifest = Manifest(scanned, keras_version)
                walk(tree, config, scanned)
                if for_edit or any(not n.known and n.variables for n in tree.root.walk()):
                    manifest.slots = _optimizer_meta(h5s, h5)
            return tree, manifest

        tree, manifest = _manifest.with_fallback(scan, WEIGHTS_MEMBER)
    info = _finish(tree, config, manifest, source)
    return Parsed(info, path, config, manifest) if for_edit else Parsed(info, path)


def interpret(config: Any, manifest: Manifest, source: str) -> ModelInfo:
    """The ModelInfo of `config` over the scanned weights (pure: the file is not read)."""
    tree = Tree(config, manifest.keras_version)
    walk(tree, config, manifest.weights)
    return _finish(tree, config, manifest, source)


def walk(tree: Tree, config: Any, weights: _manifest.Group) -> None:
    """Attach the scanned weights to `tree` (keras-hub models get their layers from them first)."""
    if not holds_hub_entry(config):  # most models: no keras-hub object, no formats/hub.py import
        _Walker(tree).walk(tree.root, weights, "")
        return
    from varctl.formats import hub

    hub_models = hub.expand(tree, config, weights)
    _Walker(tree).walk(tree.root, weights, "")
    hub.reorder(tree, hub_models)


def _finish(tree: Tree, config: Any, manifest: Manifest, source: str) -> ModelInfo:
    info = tree.finish(source=source, fmt="keras", keras_version=manifest.keras_version)
    if manifest.slots is not None and isinstance(config, dict) and any(not l.known for l in info.layers):
        entry = (config.get("compile_config") or {}).get("optimizer")
        from varctl.formats import slot_inference  # only for unknown layers with saved slots

        info = slot_inference.infer_unknown(info, slot_inference.layout_for(entry), manifest.slots) or info
    return info


_UNREAD = object()
_NUMBERED = [str(i) for i in range(64)]  # the keys of a `vars` group, as Keras names them
_VARS_ONLY = ["vars"]
_SKIP = frozenset({"vars"})  # not attributes: a layer's own variables
_SKIP_TOP = _SKIP | NOT_MODEL_STATE


class _Walker:
    """Walks the scanned model.weights.h5 in Keras's save order and attaches variables to nodes."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def walk(self, node: Node, group: _manifest.Group, prefix: str, vars_group: Any = _UNREAD) -> None:
        if vars_group is _UNREAD:  # callers that opened it already pass it on: one open per group
            vars_group = _manifest.get_group(group, "vars")
        if vars_group is not None:
            self._own_variables(node, vars_group, f"{prefix}vars")
        names = _manifest.member_names(group)
        if names == _VARS_ONLY and not node.list_children and not node.attr_children:
            return  # a plain layer (most are): nothing below it (4,000 layers: 26.2 -> 24.5 ms)
        if node.list_children or (node.class_name in CONTAINER_CLASSES and node.spec is None and node.known):
            layers_group = _manifest.get_group(group, "layers")
            self._container(node, layers_group, f"{prefix}layers/")
            names = [n for n in names if n != "layers"]
        skip = _SKIP_TOP if node.parent is None else _SKIP
        attrs = [n for n in names if n not in skip]  # mostly none: a layer group holds only `vars`
        for attr in sorted(attrs, key=name_key) if attrs else ():
            sub = _manifest.get_group(group, attr)
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

    def _container(self, node: Node, layers_group: _manifest.Group | None, prefix: str) -> None:
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
            sub = _manifest.get_group(layers_group, group_name) if layers_group is not None else None
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
            extra = [n for n in _manifest.member_names(layers_group) if n not in seen]
            for name in sorted(extra, key=_h5safe.natural_key):
                sub = _manifest.get_group(layers_group, name)
                if sub is not None:
                    self._unexpected(node, f"layers/{name}", sub, prefix + name + "/")

    def _check_name(self, node: Node, group: _manifest.Group) -> _manifest.Group | None:
        """Warn when the saved layer name differs; returns the `vars` group (None if absent)."""
        vars_group = _manifest.get_group(group, "vars")
        saved = vars_group.attr_name if vars_group is not None else None
        if saved is not None and saved != node.name:
            self.tree.warnings.append(
                f"weights group for layer `{node.path}` is named `{saved}` in the file: the config "
                "and the weights may not belong together"
            )
        return vars_group

    def _rename_from_file(self, node: Node, group: _manifest.Group) -> _manifest.Group | None:
        # Sublayers without a config entry are named at save time; the file records the name.
        vars_group = _manifest.get_group(group, "vars")
        saved = vars_group.attr_name if vars_group is not None else None
        if saved and node.pointer is None:
            node.name = saved
        return vars_group

    def _own_variables(self, node: Node, vars_group: _manifest.Group, prefix: str) -> None:
        keys = _manifest.member_names(vars_group)
        if keys != _NUMBERED[: len(keys)]:  # else `0, 1, ...` in order, as Keras writes them
            if not all(map(str.isdigit, keys)):
                self._custom_layout(node, vars_group, prefix, keys)
                return
            keys.sort(key=int)
        datasets = [(k, ds) for k in keys if (ds := _manifest.get_dataset(vars_group, k)) is not None]
        specs = node.spec.variables if node.spec is not None else None
        if specs is not None and len(specs) != len(datasets):
            if datasets:
                self.tree.warnings.append(
                    f"layer `{node.path or node.name}` ({node.class_name}) has {len(datasets)} "
                    f"variables in the file where varctl expects {len(specs)} "
                    f"({', '.join(s.name for s in specs) or 'none'}): listed with generic names"
                )
            specs = None
            node.known = False
        add = self.tree.add_variable
        for i, (k, ds) in enumerate(datasets):
            spec = specs[i] if specs is not None else None
            name = spec.name if spec is not None else f"vars/{k}"
            add(node, name, ds.shape, ds.dtype, ds.itemsize, f"{prefix}/{k}", spec)

    def _custom_layout(self, node: Node, vars_group: _manifest.Group, prefix: str, keys: list[str]) -> None:
        """A layer whose `save_own_variables` writes its own keys (`vars/variables`): Keras loads it
        with the layer's `load_own_variables`, so the stored keys are listed as names, as stored."""
        keys.sort(key=_h5safe.natural_key)
        node.known = False
        listed = []
        for k in keys:
            ds = _manifest.get_dataset(vars_group, k)
            if ds is None:
                continue
            listed.append(k)
            self.tree.add_variable(node, k, ds.shape, ds.dtype, ds.itemsize, f"{prefix}/{k}", None)
        shown = ", ".join(f"`{k}`" for k in listed[:5]) + (" ..." if len(listed) > 5 else "")
        self.tree.warnings.append(
            f"layer `{node.path or node.name}` ({node.class_name}) saves its variables its own way "
            f"(save_own_variables): listed as stored, under their keys ({shown or 'none'}); the file "
            "does not say which of the layer's variables they are, nor whether it has others. For "
            "every variable, load the model with Keras: varctl list --load --custom-objects layers.py MODEL"
        )

    def _unexpected(self, node: Node, attr: str, group: _manifest.Group, prefix: str) -> None:
        """Groups the config and catalog do not describe: list their variables generically."""
        if (known := node.attr_children.get(attr)) is not None:  # e.g. a keras-hub list attribute
            self.walk(known, group, prefix, self._rename_from_file(known, group))
            return
        if prefix.count("/") > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        if _manifest.get_group(group, "vars") is not None:
            vars_group = _manifest.get_group(group, "vars")
            name = (vars_group.attr_name if vars_group is not None else None) or attr
            child = self.tree.add_generic_child(node, attr, name)
            if node.known and not self._empty(group):
                self.tree.warnings.append(
                    f"layer `{child.path}` found in the weights file is not described by "
                    f"the config of `{node.path or node.name}`: listed with generic names"
                )
            self.walk(child, group, prefix)
        else:  # a list of layers held in an attribute: `attr/<snake_name>/...`
            for name in sorted(_manifest.member_names(group), key=_h5safe.natural_key):
                sub = _manifest.get_group(group, name)
                if sub is not None:
                    self._unexpected(node, f"{attr}/{name}", sub, prefix + name + "/")

    def _empty(self, group: _manifest.Group, depth: int = 0) -> bool:
        """No dataset below `group` (walked link by link, each checked: never h5py's visititems)."""
        if depth > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        for name in _manifest.member_names(group):
            obj = _manifest.get_member(group, name)
            if isinstance(obj, _manifest.Dataset):
                return False
            if isinstance(obj, _manifest.Group) and not self._empty(obj, depth + 1):
                return False
        return True


def _optimizer_meta(h5s: Any, h5: Any) -> list[tuple[tuple[int, ...], str]] | None:
    opt = h5s.get_group(h5, "optimizer")
    group = h5s.get_group(opt, "vars") if opt is not None else None
    if group is None:
        return None
    keys = h5s.member_names(group, h5s.Budget())
    if not all(k.isdigit() for k in keys) or sorted(map(int, keys)) != list(range(len(keys))):
        return None
    out = []
    for k in range(len(keys)):
        ds = h5s.get_dataset(group, str(k))
        if ds is None:
            return None
        shape, dtype, _ = h5s.dataset_meta(ds)
        out.append((shape, dtype))
    return out


# -- values ----------------------------------------------------------------------------------------


@contextmanager
def open_values(path: str) -> Iterator[h5py.Group]:
    """The weights HDF5 of the archive at `path`, open for value reads (variables' `storage`)."""
    with open_archive(path) as (raw, zf, members):
        if WEIGHTS_MEMBER not in members:
            raise UnreadableModel(f"no {WEIGHTS_MEMBER} inside the archive")
        with open_weights(raw, zf, members[WEIGHTS_MEMBER]) as h5:
            yield h5


# -- writing ---------------------------------------------------------------------------------------


def write(parsed: Parsed, rewrite: Rewrite, tmp: str) -> None:
    """Write the edited archive to `tmp` (a temp file safe_write owns).

    config.json is replaced; every other member is copied byte for byte (local header and data),
    except model.weights.h5 when the optimizer state is remapped: that HDF5 rewrite runs in a
    forked child (a crash of the HDF5 library, e.g. on a full disk, is one clean error).
    """
    new_config = json.dumps(rewrite.config).encode("utf-8")  # Keras writes json.dumps() defaults too
    folder = os.path.dirname(tmp) or "."
    with (
        open(parsed.target, "rb") as fsrc,
        zipfile.ZipFile(fsrc) as zin,
        zipfile.ZipFile(tmp, "w", allowZip64=True) as zout,
    ):
        for info in zin.infolist():
            if info.filename == CONFIG_MEMBER:
                zout.writestr(copy.copy(info), new_config)
            elif info.filename == WEIGHTS_MEMBER and rewrite.slots is not None:
                weights = safe_write.temp_path(folder, ".h5")
                try:
                    with open(weights, "wb") as f, zin.open(info) as fin:
                        shutil.copyfileobj(fin, f, safe_write.COPY_CHUNK)
                    in_child(
                        _remap_slots, weights, rewrite.slots, what=f"the optimizer state ({WEIGHTS_MEMBER})"
                    )
                    _stream_copy(zin, zout, info, data=weights)
                finally:
                    safe_write.unlink(weights)
            elif not _raw_copy(fsrc, zout, info):
                _stream_copy(zin, zout, info)


def _remap_slots(path: str, slots: Any) -> None:
    """Rewrite `optimizer/vars` of a weights HDF5 copy: keep (move) old slots, create fresh ones.

    Kept slots are moved (HDF5 links, no data copied): each old entry is used at most once.
    """
    import numpy as np

    with _h5safe.lib().File(path, "r+", locking=False) as h5:
        opt = _h5safe.get_group(h5, "optimizer")
        old = _h5safe.get_group(opt, "vars") if opt is not None else None
        if opt is None or old is None:
            raise UnreadableModel("the weights have no optimizer state to remap")
        attrs = {k: old.attrs[k] for k in old.attrs}
        opt.move("vars", "_varctl_old_vars")
        new = opt.create_group("vars")
        for key, value in attrs.items():
            new.attrs[key] = value
        for i, slot in enumerate(slots):
            if slot.source is not None:
                if _h5safe.get_dataset(old, str(slot.source)) is None:
                    raise UnreadableModel(f"optimizer slot {slot.source} is missing")
                opt.move(f"_varctl_old_vars/{slot.source}", f"vars/{i}")
            else:
                new.create_dataset(str(i), data=np.full(slot.shape, slot.fill, dtype=slot.dtype))
        del opt["_varctl_old_vars"]


def _raw_copy(fsrc: Any, zout: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Copy a member's local header and data byte for byte. False if it must be re-encoded."""
    if info.flag_bits & 0x08:  # sizes in a trailing data descriptor: let zipfile re-encode it
        return False
    fsrc.seek(info.header_offset)
    header = fsrc.read(30)
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        return False
    name_len, extra_len = struct.unpack("<HH", header[26:30])
    out_info = copy.copy(info)
    fp = zout.fp
    assert fp is not None
    out_info.header_offset = fp.tell()
    safe_write.copy_range(fsrc, fp, info.header_offset, 30 + name_len + extra_len + info.compress_size)
    # zipfile writes the central directory from filelist when the archive is closed.
    zout.filelist.append(out_info)
    zout.NameToInfo[out_info.filename] = out_info
    zout.start_dir = fp.tell()
    return True


def _stream_copy(
    zin: zipfile.ZipFile, zout: zipfile.ZipFile, info: zipfile.ZipInfo, data: str | None = None
) -> None:
    out_info = copy.copy(info)
    big = info.file_size > 0x7FFFFFFF
    with zin.open(info) if data is None else open(data, "rb") as fin:
        if data is not None:
            out_info.file_size = os.fstat(fin.fileno()).st_size
            big = out_info.file_size > 0x7FFFFFFF
        with zout.open(out_info, "w", force_zip64=big) as fout:
            shutil.copyfileobj(fin, fout, safe_write.COPY_CHUNK)


# -- what an editor needs to know about this format ------------------------------------------------

REMAPS_OPTIMIZER = True  # `optimizer/vars/<i>` is positional: slots can be moved to a new trainable set
# What Keras does with an output saved without compile settings (it says nothing for .keras).
UNCOMPILED_OUTPUT = "Keras loads the output uncompiled: call model.compile(...) before fit"
WARNS_WHEN_UNCOMPILED = False


def compiled(parsed: Parsed) -> bool:
    """Was the model saved compiled (compile_config, and so optimizer state)?"""
    return isinstance(parsed.config, dict) and parsed.config.get("compile_config") is not None


def optimizer_entry(config: Any) -> Any:
    """The serialized optimizer in a config (None when not compiled)."""
    return (config.get("compile_config") or {}).get("optimizer") if isinstance(config, dict) else None


def saved_slots(parsed: Parsed) -> Slots | None:
    """(shape, dtype) of each saved `optimizer/vars/<i>`, scanned by read(for_edit=True)."""
    return parsed.manifest.slots if isinstance(parsed.manifest, Manifest) else None


def check_rewrite(parsed: Parsed, after: ModelInfo) -> None:
    """Refusals write() would make: none (config.json is rewritten whole, weights by name)."""
