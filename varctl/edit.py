"""Freeze/unfreeze: plan a change of `trainable` flags, predict its effect, and apply it surgically.

plan_freeze() works on the architecture only and predicts the result by re-reading the same
weights with the edited config (the same code `varctl list` runs on the output file). apply()
writes a new file next to the target: every archive member other than config.json is copied byte
for byte, then the temp file is fsynced and renamed over the target.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from varctl.errors import OutputError, UnreadableModel, UsageError
from varctl.model import Cause, Layer, ModelInfo, Variable
from varctl.optimizer import Slot
from varctl.select import Selector, no_match_error

_COPY_CHUNK = 1 << 20
OPTIMIZER_STATE_MODES = ("remap", "drop", "keep")


@dataclass(frozen=True)
class Change:
    layer: str
    class_name: str
    before: bool | None  # the flag in the config (None: absent, which Keras reads as true)
    after: bool


@dataclass
class Plan:
    before: ModelInfo
    after: ModelInfo
    config: Any  # the edited architecture
    changes: list[Change]
    notes: list[str] = field(default_factory=list)  # things the user should know (stderr)
    drop_optimizer: bool = False
    optimizer: str = "unchanged"  # unchanged | remapped | dropped | kept-stale
    slots: list[Slot] | None = None  # the remapped optimizer state, when remapped

    @property
    def trainable_set_changed(self) -> bool:
        a = [v.path for v in self.before.variables if v.trainable]
        b = [v.path for v in self.after.variables if v.trainable]
        return a != b


def _entry(config: Any, pointer: tuple[str | int, ...]) -> dict:
    node = config
    for key in pointer:
        node = node[key]
    return node


def _set_flag(config: Any, layer: Layer, value: bool, changes: dict[str, Change]) -> None:
    if layer.pointer is None:
        return
    entry = _entry(config, layer.pointer)
    cfg = entry.get("config")
    if not isinstance(cfg, dict) or entry.get("class_name") == "InputLayer":
        return
    before = cfg.get("trainable")
    if before is not None:
        before = bool(before)
    if before is value or (before is None and value):
        return
    cfg["trainable"] = value
    first = changes.get(layer.path)
    changes[layer.path] = Change(layer.path, layer.class_name, first.before if first else before, value)


def _inside(layer: Layer, root: Layer) -> bool:
    return layer.path == root.path or layer.path.startswith(root.path + "/")


def choose_layers(
    info: ModelInfo,
    selector: Selector,
    *,
    first: int | None,
    upto: str | None,
    within: str | None,
    all_layers: bool,
    action: str,
) -> list[Layer]:
    """The layers a freeze/unfreeze names: patterns, --first/--upto (of --in), or --all."""
    if selector.patterns and (missing := selector.unmatched([info])):
        raise no_match_error(missing, [info])
    if all_layers:
        return [l for l in info.layers if l.parent is None]
    selected = selector.layers(info)
    if first is not None or upto is not None:
        selected += first_layers(info, first, upto, within)
    if not selected:
        raise UsageError(f"{action}: say what to change with --pattern, --first/--upto or --all")
    return selected


def first_layers(info: ModelInfo, count: int | None, upto: str | None, within: str | None) -> list[Layer]:
    """The Keras guide's `base_model.layers[:N]` (or up to a named layer), as Layers."""
    parent_path = None
    if within is not None:
        matches = [l for l in info.layers if l.path == within or l.name == within]
        if len(matches) != 1:
            raise UsageError(f"--in '{within}' names {'no' if not matches else 'more than one'} layer")
        parent_path = matches[0].path
    children = [l for l in info.layers if l.parent == parent_path and l.index is not None]
    children.sort(key=lambda l: l.index or 0)
    if upto is not None:
        names = [l.name for l in children]
        if upto not in names:
            where = f"'{within}'" if within else "the model"
            raise UsageError(f"--upto '{upto}' is not a layer of {where}")
        return children[: names.index(upto) + 1]
    if count is None or count < 0:
        raise UsageError("--first needs a count of 0 or more")
    return children[:count]


def plan_freeze(
    info: ModelInfo,
    selected: list[Layer],
    *,
    trainable: bool,
    whole_model: bool = False,
    keep_batchnorm_frozen: bool = False,
    optimizer_state: str = "remap",
    path: str,
) -> Plan:
    """Plan freezing (trainable=False) or unfreezing (trainable=True) the selected layers.

    Args:
        info: the model as read from `path`.
        selected: layers chosen by the user (patterns, --first/--upto); descendants follow.
        trainable: the state to give them.
        whole_model: also set the top model's own flag (freeze/unfreeze everything).
        keep_batchnorm_frozen: when unfreezing, leave BatchNormalization layers frozen.
        optimizer_state: what to do with optimizer state that no longer matches the trainable
            set: "remap" (default; falls back to "drop" when not certain), "drop" or "keep".
        path: the model file (re-read to predict the result).

    Returns:
        A Plan; raises UsageError when the change cannot be saved in the file.
    """
    from varctl.formats import _sandbox, open_model
    from varctl.formats.keras_zip import read_config as keras_config
    from varctl.formats.legacy_h5 import read_config_file as h5_config

    # Every read of the input's HDF5 runs in the sandbox, like open_model's.
    reader = keras_config if info.format == "keras" else h5_config
    if info.format in ("folder", "preset"):  # model folders and keras-hub presets
        from varctl.formats.hub_files import editable_config as reader
    config = copy.deepcopy(_sandbox.call(reader, path, label=f"'{path}'"))
    changes: dict[str, Change] = {}
    by_path = {l.path: l for l in info.layers}
    notes: list[str] = []
    for root in selected:
        for layer in info.layers:
            if not _inside(layer, root):
                continue
            if trainable and keep_batchnorm_frozen and layer.class_name == "BatchNormalization":
                continue
            _set_flag(config, layer, trainable, changes)
        if trainable:  # enclosing containers must be trainable too; their other children keep theirs
            parent = root.parent
            while parent is not None:
                _set_flag(config, by_path[parent], True, changes)
                parent = by_path[parent].parent
    if whole_model or (trainable and selected):
        top = config.get("config") if isinstance(config, dict) else None
        if isinstance(top, dict) and (whole_model or top.get("trainable") is False):
            before = top.get("trainable")
            if before is not trainable and not (before is None and trainable):
                top["trainable"] = trainable
                changes[""] = Change(f"{info.name} (model)", info.class_name, before, trainable)
    after = open_model(path, config=config)
    after = ModelInfo(**{**after.__dict__, "source": info.source})
    _check_result(info, after, selected, trainable, keep_batchnorm_frozen)
    order = {l.path: i for i, l in enumerate(info.layers)}
    ordered = sorted(changes.items(), key=lambda kv: order.get(kv[0], -1))
    plan = Plan(info, after, config, [c for _, c in ordered], notes)
    if trainable:
        bns = [c.layer for c in plan.changes if c.class_name == "BatchNormalization" and c.after]
        if bns:
            notes.append(
                f"this unfreezes {len(bns)} BatchNormalization layer(s): the Keras transfer-learning "
                "guide keeps them frozen (in inference mode) while fine-tuning, or their moving "
                "statistics drift; pass --keep-batchnorm-frozen to keep them frozen"
            )
    has_optimizer = isinstance(config, dict) and (
        config.get("compile_config") is not None
        if info.format in ("keras", "folder", "preset")
        else _h5_compiled(path)
    )
    if plan.trainable_set_changed and has_optimizer:
        _plan_optimizer(plan, optimizer_state, path)
    return plan


def _plan_optimizer(plan: Plan, mode: str, path: str) -> None:
    """Decide what happens to optimizer state saved for the old trainable set."""
    from varctl import optimizer
    from varctl.formats import _sandbox
    from varctl.formats.keras_zip import optimizer_slots

    if mode == "keep":
        plan.optimizer = "kept-stale"
        plan.notes.append(
            "kept stale optimizer state: Keras will warn 'Skipping variable loading for optimizer' "
            "and start the optimizer afresh"
        )
        return
    why = None
    if mode == "remap":
        if plan.before.format != "keras":
            why = "remapping is done for .keras files only"
        else:
            entry = (plan.config.get("compile_config") or {}).get("optimizer")
            layout = optimizer.layout_for(entry)
            old = optimizer.trainable_order(plan.before)
            new = optimizer.trainable_order(plan.after)
            saved = _sandbox.call(optimizer_slots, path, label=f"'{path}'")
            if layout is None:
                name = entry.get("class_name") if isinstance(entry, dict) else entry
                why = f"the slot layout of optimizer {name!r} is not known to varctl"
            elif old is None or new is None:
                why = "the order of the model's trainable variables is not certain"
            elif saved is None:
                why = "the file has no readable optimizer state"
            else:
                plan.slots = optimizer.remap(saved, layout, old, new)
                if plan.slots is None:
                    why = "the saved optimizer state does not match the model's trainable variables"
        if why is None:
            plan.optimizer = "remapped"
            fresh = sum(1 for s in plan.slots or [] if s.source is None)
            plan.notes.append(
                "the trainable set changed: remapped the optimizer state (still-trainable variables "
                f"keep their slots; {fresh} fresh slot(s) for newly trainable ones)"
            )
            return
    plan.drop_optimizer = True
    plan.optimizer = "dropped"
    if plan.before.format in ("keras", "folder", "preset"):
        plan.config.pop("compile_config", None)
    plan.notes.append(
        "the trainable set changed, so the saved optimizer state no longer matches it: dropped it "
        "with the compile settings (the file loads cleanly, uncompiled: call model.compile(...) "
        f"before fit){f' — could not remap: {why}' if why else ''}"
    )


def _h5_compiled(path: str) -> bool:
    from varctl.formats import _sandbox
    from varctl.formats.legacy_h5 import has_training_config

    return _sandbox.call(has_training_config, path, label=f"'{path}'")


def _check_result(
    before: ModelInfo, after: ModelInfo, selected: list[Layer], trainable: bool, keep_bn: bool
) -> None:
    """Refuse a change Keras would not honour after loading the file (rather than pretend)."""
    roots = [l.path for l in selected]

    def in_selection(v: Variable) -> bool:
        return any(v.layer == r or v.layer.startswith(r + "/") for r in roots)

    if trainable:
        return  # never-trainable variables (moving statistics) stay frozen by nature
    stuck = [v for v in after.variables if in_selection(v) and v.trainable]
    if stuck:
        names = ", ".join(v.path for v in stuck[:4]) + (" ..." if len(stuck) > 4 else "")
        raise UsageError(
            f"cannot freeze {len(stuck)} variable(s) in the file: {names}",
            hint="Keras rebuilds these sublayers trainable when it loads the file (they have no "
            "config entry of their own); freeze them in Python after loading instead",
        )


# -- writing -------------------------------------------------------------------------------------


@contextmanager
def atomic_output(target: str, like: str, check: Callable[[str], None] | None = None) -> Iterator[str]:
    """Yield a temp path in the target's folder; on success fsync it and rename it over `target`.

    The original file (and `target`, if it exists) is untouched on any failure, and the temp file
    is removed. `check(temp_path)` runs on the finished temp file before the rename. `target` that is a symlink is resolved, so the link is kept and its file edited.
    """
    real = os.path.realpath(target)
    folder = os.path.dirname(real) or "."
    _remove_orphans(folder)
    try:
        # The temp name keeps the target's extension: Keras only loads `.keras` files by name.
        ext = os.path.splitext(real)[1]
        fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=f".tmp{ext}", dir=folder)
    except OSError as e:
        raise OutputError(f"cannot write in '{folder}': {e.strerror or e}") from e
    os.close(fd)
    try:
        yield tmp
        if check is not None:
            check(tmp)
        st = os.stat(like)
        os.chmod(tmp, st.st_mode & 0o7777)
        try:
            os.chown(tmp, st.st_uid, st.st_gid)
        except OSError:
            pass  # not permitted: keep our own ownership
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, real)
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as e:
        _unlink(tmp)
        raise OutputError(f"cannot write '{target}': {e.strerror or e}") from e
    except BaseException:
        _unlink(tmp)
        raise


_TEMP_PREFIX = ".varctl-"


def _remove_orphans(folder: str) -> None:
    """Delete temp files left by varctl processes that died mid-write (kill -9, power loss).

    Temp names carry the writer's pid; a file whose process is gone is an orphan. A live
    process's file is never touched.
    """
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(_TEMP_PREFIX):
            continue
        pid_text = name[len(_TEMP_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            _unlink(os.path.join(folder, name))
        except PermissionError:
            pass  # alive, another user's


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _copy_range(fsrc: Any, fdst: Any, start: int, length: int) -> None:
    """Copy bytes [start, start + length) of `fsrc` to where `fdst` stands, and move `fdst` past them."""
    done = _kernel_copy(fsrc, fdst, start, length)
    fsrc.seek(start + done)
    left = length - done
    while left > 0:
        chunk = fsrc.read(min(_COPY_CHUNK, left))
        if not chunk:
            raise OutputError("the input file changed or shrank while it was being copied")
        fdst.write(chunk)
        left -= len(chunk)


def _kernel_copy(fsrc: Any, fdst: Any, start: int, length: int) -> int:
    """As much of the range as os.copy_file_range copies (0 where it is missing or refuses).

    The kernel moves the bytes without a trip through Python (and shares extents on filesystems
    that can): the weights member is nearly all of a model file.
    """
    copy_file_range = getattr(os, "copy_file_range", None)
    if copy_file_range is None or length <= 0:
        return 0
    try:
        src_fd, dst_fd = fsrc.fileno(), fdst.fileno()
    except (AttributeError, OSError, ValueError):
        return 0
    fdst.flush()
    at = fdst.tell()
    done = 0
    try:
        while done < length:
            n = copy_file_range(src_fd, dst_fd, min(length - done, 1 << 30), start + done, at + done)
            if n == 0:  # end of the input: the caller's read loop reports the shrunken file
                break
            done += n
    except OSError:
        pass  # EXDEV, ENOSYS, EINVAL on some filesystems: the read/write loop does the rest
    fdst.seek(at + done)
    return done


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
    _copy_range(fsrc, fp, info.header_offset, 30 + name_len + extra_len + info.compress_size)
    # zipfile writes the central directory from filelist when the archive is closed.
    zout.filelist.append(out_info)
    zout.NameToInfo[out_info.filename] = out_info
    zout.start_dir = fp.tell()
    return True


def _stream_copy(
    zin: zipfile.ZipFile, zout: zipfile.ZipFile, info: zipfile.ZipInfo, data: Any = None
) -> None:
    out_info = copy.copy(info)
    big = info.file_size > 0x7FFFFFFF
    with zin.open(info) if data is None else open(data, "rb") as fin:
        if data is not None:
            out_info.file_size = os.fstat(fin.fileno()).st_size
            big = out_info.file_size > 0x7FFFFFFF
        with zout.open(out_info, "w", force_zip64=big) as fout:
            shutil.copyfileobj(fin, fout, _COPY_CHUNK)


def _remap_weights(path: str, slots: list[Slot]) -> None:
    """Rewrite `optimizer/vars` of a weights HDF5 copy: copy kept slots, create fresh ones."""
    import h5py
    import numpy as np

    with h5py.File(path, "r+", locking=False) as h5:
        opt = h5["optimizer"]
        attrs = dict(opt["vars"].attrs)
        opt.move("vars", "_varctl_old_vars")
        old = opt["_varctl_old_vars"]
        new = opt.create_group("vars")
        for key, value in attrs.items():
            new.attrs[key] = value
        for i, slot in enumerate(slots):
            if slot.source is not None:
                opt.copy(old[str(slot.source)], new, name=str(i))  # HDF5-level copy, not via numpy
            else:
                new.create_dataset(str(i), data=np.full(slot.shape, slot.fill, dtype=slot.dtype))
        del opt["_varctl_old_vars"]


def _write_keras(src: str, tmp: str, plan: Plan) -> None:
    new_config = json.dumps(plan.config).encode("utf-8")  # Keras writes json.dumps() defaults too
    folder = os.path.dirname(tmp)
    with (
        open(src, "rb") as fsrc,
        zipfile.ZipFile(src) as zin,
        zipfile.ZipFile(tmp, "w", allowZip64=True) as zout,
    ):
        for info in zin.infolist():
            if info.filename == "config.json":
                zout.writestr(copy.copy(info), new_config)
            elif info.filename == "model.weights.h5" and plan.slots is not None:
                fd, weights = tempfile.mkstemp(
                    prefix=f"{_TEMP_PREFIX}{os.getpid()}-", suffix=".h5", dir=folder
                )
                try:
                    with os.fdopen(fd, "wb") as f, zin.open(info) as fin:
                        shutil.copyfileobj(fin, f, _COPY_CHUNK)
                    _remap_weights(weights, plan.slots)
                    _stream_copy(zin, zout, info, data=weights)
                finally:
                    _unlink(weights)
            elif not _raw_copy(fsrc, zout, info):
                _stream_copy(zin, zout, info)


def _own_trainable(info: ModelInfo, layers: dict[str, Layer], v: Variable) -> bool:
    """The variable's own flag after loading (before any top-model gating)."""
    layer = layers.get(v.layer)
    natural = v.cause is not Cause.NATURE
    return natural and (layer.flag if layer is not None else True)


def h5_weight_order(plan: Plan) -> dict[str, list[str]]:
    """New `weight_names` per top-level layer group of a legacy .h5 file.

    Legacy loading is positional against `layer.trainable_weights + layer.non_trainable_weights`,
    so a change of flags must reorder the names (or Keras silently swaps weights). That list is
    the layer's weight order (`layer.weights`: own variables, then tracked sublayers) partitioned
    by the flags; a frozen layer's is not partitioned at all. The weight order comes from the
    layer tree (or, for a frozen or single layer, from the file itself), and the file must be
    exactly what Keras wrote for the old flags; anything else is refused rather than guessed.
    """
    from varctl.optimizer import model_order

    before_layers = {l.path: l for l in plan.before.layers}
    after_layers = {l.path: l for l in plan.after.layers}
    after_by_storage = {v.storage: v for v in plan.after.variables}
    order = model_order(plan.before)
    position = {v.storage: i for i, v in enumerate(order)} if order is not None else None
    groups: dict[str, list[Variable]] = {}
    for v in plan.before.variables:
        groups.setdefault(v.storage.split("/")[2], []).append(v)  # /model_weights/<layer>/...

    def partition(vs: list[Variable], flag: Callable[[Variable], bool]) -> list[Variable]:
        return [v for v in vs if flag(v)] + [v for v in vs if not flag(v)]

    def old_flag(v: Variable) -> bool:
        return _own_trainable(plan.before, before_layers, v)

    def new_flag(v: Variable) -> bool:
        return _own_trainable(plan.after, after_layers, after_by_storage[v.storage])

    orders: dict[str, list[str]] = {}
    for top, in_file in groups.items():
        top_before, top_after = before_layers.get(top), after_layers.get(top)
        old_gated = top_before is not None and top_before.config_flag is False
        new_gated = top_after is not None and not top_after.flag
        if position is not None:
            weights = sorted(in_file, key=lambda v: position[v.storage])
        elif old_gated or len({v.layer for v in in_file}) == 1:
            weights = in_file  # not partitioned when saved: the file order is the weight order
        else:
            weights = []
        expected = weights if old_gated else partition(weights, old_flag)
        if [v.storage for v in expected] != [v.storage for v in in_file]:
            raise UsageError(
                f"cannot reorder the weights of layer '{top}' in this legacy .h5 file safely",
                hint="Keras loads .h5 weights by position; convert the model to .keras "
                "(keras.saving.load_model('m.h5').save('m.keras')) and edit that",
            )
        ordered = weights if new_gated else partition(weights, new_flag)
        prefix = f"/model_weights/{top}/"
        orders[top] = [v.storage[len(prefix) :] for v in ordered]
    return orders


# Keras's legacy writer splits a name list bigger than this into `name0`, `name1`, ... attributes
# (HDF5's object header holds at most 64 KB); its loader reads `name` first, then the parts.
_HDF5_OBJECT_HEADER_LIMIT = 64512


def _set_name_list(group: Any, key: str, names: list[str]) -> None:
    """Write a list-of-names attribute the way keras.legacy save_attributes_to_hdf5_group does."""
    import numpy as np

    for old in [k for k in group.attrs if k == key or (k.startswith(key) and k[len(key) :].isdigit())]:
        del group.attrs[old]
    data = np.array([n.encode("utf-8") for n in names])
    chunks = 1
    parts = np.array_split(data, chunks)
    while any(p.nbytes > _HDF5_OBJECT_HEADER_LIMIT for p in parts) and chunks < len(names):
        chunks += 1
        parts = np.array_split(data, chunks)
    if chunks == 1:
        group.attrs[key] = data
    else:
        for i, part in enumerate(parts):
            group.attrs[f"{key}{i}"] = part


def _write_h5(src: str, tmp: str, plan: Plan) -> None:
    import h5py

    config, drop_optimizer = plan.config, plan.drop_optimizer
    orders = h5_weight_order(plan)

    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, _COPY_CHUNK)
    try:
        with h5py.File(tmp, "r+", locking=False) as h5:
            h5.attrs["model_config"] = json.dumps(config)
            for top, names in orders.items():
                _set_name_list(h5["model_weights"][top], "weight_names", names)
            if drop_optimizer:
                if "training_config" in h5.attrs:
                    del h5.attrs["training_config"]
                if "optimizer_weights" in h5:
                    del h5["optimizer_weights"]
    except (OSError, ValueError, RuntimeError) as e:
        raise OutputError(f"cannot rewrite the HDF5 copy: {e}") from e


class Guard:
    """Held while a model is read, planned and rewritten: an exclusive lock on the input file and
    the stat snapshot that proves nobody else changed it meanwhile."""

    def __init__(self, path: str, fd: int) -> None:
        self.path, self.fd = path, fd
        self.snapshot = _identity(os.fstat(fd))

    def check_unchanged(self) -> None:
        try:
            now = _identity(os.stat(self.path))
        except OSError as e:
            raise OutputError(f"'{self.path}' disappeared during the run; nothing written") from e
        if now != self.snapshot:
            raise OutputError(f"'{self.path}' was changed by someone else during the run; nothing written")


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@contextmanager
def locked(path: str) -> Iterator[Guard]:
    """Lock `path` for editing (flock, non-blocking): a second varctl editing it gets an error."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO must not hang us
    except OSError as e:
        reason = "no such file" if isinstance(e, FileNotFoundError) else (e.strerror or str(e)).lower()
        raise UnreadableModel(f"cannot open '{path}': {reason}") from e
    try:
        for _ in range(3):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise OutputError(
                    f"'{path}' is being edited by another varctl process", hint="try again when it is done"
                ) from None
            # The other process may have renamed a new file over the path while we waited for the
            # lock on the old one: lock what the path names now.
            if _identity(os.fstat(fd))[:2] == _identity(os.stat(path))[:2]:
                break
            os.close(fd)
            fd = os.open(path, os.O_RDONLY)
        yield Guard(path, fd)
    finally:
        os.close(fd)


def apply(plan: Plan, src: str, dst: str, *, check: Callable[[str], None] | None = None) -> None:
    """Write the planned model to `dst` (may equal `src`) atomically.

    Args:
        plan: from plan_freeze().
        src: the model file the plan was made from.
        dst: where to write; the rename over it happens only once the new file is complete.
        check: called with the finished temp file before the rename (e.g. `verify`); raising
            leaves `dst` untouched.
    """
    if plan.before.format in ("folder", "preset"):
        from varctl.formats.hub_files import write_folder

        write_folder(src, dst, plan.config, check=check)
        return
    with atomic_output(dst, like=src, check=check) as tmp:
        if plan.before.format == "keras":
            _write_keras(src, tmp, plan)
        else:
            _write_h5(src, tmp, plan)


def verify(plan: Plan, path: str, shown_as: str | None = None) -> str:
    """Load the written file with Keras and check it trains exactly the predicted variables.

    Returns a one-line confirmation; raises VerificationFailed otherwise. Imports Keras (and its
    backend) lazily: only `--verify` pays for it.
    """
    import warnings

    if plan.before.format == "preset":
        raise UsageError(
            "--verify loads .keras files and model folders with keras.saving.load_model; a keras-hub "
            "preset loads with from_preset: edit without --verify and check it with `varctl list`"
        )
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import keras
    except ImportError as e:
        raise UsageError(
            "--verify needs Keras with a backend", hint="pip install 'varctl[tensorflow]'"
        ) from e
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model = keras.saving.load_model(path)
        except Exception as e:  # noqa: BLE001 - any load failure is a failed verification
            raise VerificationFailed(f"Keras cannot load '{shown_as or path}': {e}") from e
    problems = [str(w.message).splitlines()[0] for w in caught if issubclass(w.category, UserWarning)]
    names: dict[int, str] = {}

    def walk(layer: Any, prefix: str) -> None:
        for v in layer._trainable_variables + layer._non_trainable_variables:
            names.setdefault(id(v), prefix + v.name)
        for sub in layer._layers:
            walk(sub, prefix + sub.name + "/")

    walk(model, "")
    got = sorted(names.get(id(v), v.path) for v in model.trainable_variables)
    want = sorted(v.path for v in plan.after.variables if v.trainable)
    if got != want:
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        problems.append(f"Keras trains {extra[:3]} not predicted, and not {missing[:3]}")
    if problems:
        raise VerificationFailed(
            f"verification of '{shown_as or path}' failed, nothing written: {'; '.join(problems)}",
            hint="--optimizer-state remap (the default) or drop avoids the optimizer warning",
        )
    return f"verified with Keras {keras.__version__}: {len(got)} trainable variables, no warnings"


class VerificationFailed(OutputError):
    """Keras disagrees with the written file (exit 4: the output is not what was asked)."""
