"""Model folders, keras-hub preset folders, sharded weights and keras-hub `.lora.h5` files.

Each is read in small steps — get the config dict, get the weights as one HDF5 handle, interpret —
so the reading can be adapted to the format protocol. Several HDF5 files (shards; a preset's
backbone and task weights) are merged into one in-memory HDF5 file holding their groups, `name`
attributes and each dataset's shape and dtype, never its bytes: the Tree walker then reads it
like a `.keras` archive's `model.weights.h5`. Nothing here imports TensorFlow or Keras.

| input                                   | recognised by                                        |
|-----------------------------------------|------------------------------------------------------|
| model folder (`save(dir, zipped=False)`)| config.json + model.weights.h5 / model.weights.json  |
| keras-hub preset (`save_to_preset`)     | the same + metadata.json naming keras_hub_version     |
| sharded weights (`*.weights.json`)      | a JSON index with `weight_map` naming `.h5` shards    |
| keras-hub LoRA (`save_lora_weights`)    | HDF5 with `lora` attributes (rank, target names)      |
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import h5py

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import _h5safe
from varctl.model import ModelFormat, ModelInfo

CONFIG = "config.json"
METADATA = "metadata.json"
TASK = "task.json"
WEIGHTS_H5 = "model.weights.h5"
WEIGHTS_INDEX = "model.weights.json"
TASK_WEIGHTS = "task.weights.h5"
TOKENIZER = "tokenizer.json"
PREPROCESSOR = "preprocessor.json"
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_SHARDS = 100_000
_COUNTER = itertools.count()


# -- small readers -------------------------------------------------------------------------------


def read_json(path: str) -> Any:
    """A JSON file, size-checked (configs, metadata, shard indexes)."""
    from varctl.formats.keras_zip import parse_json

    name = os.path.basename(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except FileNotFoundError:
        raise UnreadableModel(f"'{name}' is missing") from None
    except OSError as e:
        raise UnreadableModel(f"cannot read '{name}': {e.strerror or e}") from None
    if len(data) > MAX_JSON_BYTES:
        raise UnsafeFile(f"'{name}' is larger than {MAX_JSON_BYTES:,} bytes (refused)")
    return parse_json(data, name)


def is_weights_index(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("weight_map"), dict)


def shards_of(index_path: str, doc: Any | None = None) -> list[str]:
    """The shard files a `*.weights.json` index names, in order; refuses a missing one by name."""
    doc = read_json(index_path) if doc is None else doc
    if not is_weights_index(doc):
        raise UnreadableModel(
            f"'{os.path.basename(index_path)}' is not a sharded weights index (no weight_map)"
        )
    folder = os.path.dirname(index_path) or "."
    names: list[str] = []
    for key, value in doc["weight_map"].items():
        files = value if isinstance(value, list) else [value]
        for f in files:
            if not isinstance(f, str) or not f or os.path.basename(f) != f or f in (".", ".."):
                raise UnsafeFile(f"the index puts '{key}' in {f!r}: not a file name next to it (refused)")
            if f not in names:
                names.append(f)
            if len(names) > MAX_SHARDS:
                raise UnsafeFile(f"the index names more than {MAX_SHARDS:,} shards (refused)")
    for f in names:
        if not os.path.isfile(os.path.join(folder, f)):
            raise UnreadableModel(f"shard '{f}' named by '{os.path.basename(index_path)}' is missing")
    return [os.path.join(folder, f) for f in names]


def _open_h5(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"'{os.path.basename(path)}' is not a readable HDF5 file ({e})") from e


# -- merged view -----------------------------------------------------------------------------------


class _Copier:
    def __init__(self, out: h5py.File) -> None:
        self.out = out
        self.budget = _h5safe.Budget()

    def copy(self, src: h5py.Group, dst: h5py.Group, where: str, depth: int = 0) -> None:
        if depth > _h5safe.MAX_DEPTH:
            raise UnsafeFile("HDF5 groups nested too deeply (refused)")
        name = _h5safe.str_attr(src, "name")
        if name is not None and "name" not in dst.attrs:
            dst.attrs["name"] = name
        for member in _h5safe.member_names(src, self.budget):
            obj = _h5safe.get_member(src, member)
            if isinstance(obj, h5py.Group):
                sub = dst[member] if member in dst else dst.create_group(member)
                if not isinstance(sub, h5py.Group):
                    raise UnreadableModel(
                        f"'{where}': '{member}' is a group in one file and a dataset in another"
                    )
                self.copy(obj, sub, where, depth + 1)
            elif isinstance(obj, h5py.Dataset):
                if member in dst:
                    raise UnsafeFile(
                        f"'{where}' holds '{obj.name}' that another file also holds (refused: ambiguous)"
                    )
                shape, _dtype, _ = _h5safe.dataset_meta(obj)
                # Shape and type only: HDF5 allocates a dataset's space when it is first written.
                ds = dst.create_dataset(member, shape=shape, dtype=obj.dtype)
                marked = _h5safe.str_attr(obj, "dtype")
                if marked is not None:
                    ds.attrs["dtype"] = marked


@contextmanager
def merged(sources: list[tuple[str, str]]) -> Iterator[h5py.File]:
    """One in-memory HDF5 file holding every (file, prefix) source's groups and dataset shapes."""
    out = h5py.File(
        f"varctl-merged-{os.getpid()}-{next(_COUNTER)}.h5", "w", driver="core", backing_store=False
    )
    try:
        copier = _Copier(out)
        for path, prefix in sources:
            with _open_h5(path) as h5:
                dst = out.require_group(prefix) if prefix else out
                copier.copy(h5, dst, os.path.basename(path))
        yield out
    finally:
        out.close()


def check_index(index_path: str, doc: Any, files: list[str]) -> None:
    """Every group the index maps must be in each shard it names (a foreign shard is refused)."""
    folder = os.path.dirname(index_path) or "."
    with ExitStack() as stack:
        opened: dict[str, h5py.File] = {}
        for key, value in doc["weight_map"].items():
            for f in value if isinstance(value, list) else [value]:
                if f not in opened:
                    opened[f] = stack.enter_context(_open_h5(os.path.join(folder, f)))
                group: Any = opened[f]
                for part in str(key).strip("/").split("/"):
                    group = _h5safe.get_group(group, part) if isinstance(group, h5py.Group) else None
                    if group is None:
                        raise UnreadableModel(
                            f"shard '{f}' does not hold '{key}' as its index says: it belongs to "
                            "another model or another save"
                        )
    del files


@contextmanager
def weights_of(
    folder: str, index: str = WEIGHTS_INDEX, single: str = WEIGHTS_H5, prefix: str = ""
) -> Iterator[list[tuple[str, str]]]:
    """The (file, prefix) sources of a folder's weights: one `.h5`, or an index and its shards."""
    h5 = os.path.join(folder, single)
    idx = os.path.join(folder, index)
    if os.path.isfile(h5):
        yield [(h5, prefix)]
    elif os.path.isfile(idx):
        doc = read_json(idx)
        files = shards_of(idx, doc)
        check_index(idx, doc, files)
        yield [(f, prefix) for f in files]
    else:
        raise UnreadableModel(f"no {single} (nor {index}) in the folder")


# -- interpreting ----------------------------------------------------------------------------------


def interpret(
    config: Any,
    h5: h5py.File,
    *,
    source: str,
    fmt: str,
    keras_version: str | None,
    details: tuple[str, ...] = (),
) -> ModelInfo:
    """A config plus a weights HDF5 handle, read like a `.keras` archive's."""
    from varctl.formats import hub
    from varctl.formats.keras_zip import _Walker
    from varctl.formats.tree import Tree

    tree = Tree(config)
    hub_models = hub.expand(tree, config, h5)
    _Walker(tree).walk_root(h5)
    hub.reorder(tree, hub_models)
    info = tree.finish(source=source, fmt=fmt, keras_version=keras_version)
    if details:
        info = ModelInfo(**{**info.__dict__, "details": details})
    return info


def _version(meta: Any, key: str = "keras_version") -> str | None:
    return str(meta[key]) if isinstance(meta, dict) and meta.get(key) is not None else None


# -- model folders (`model.save(dir, zipped=False)`) ------------------------------------------------


def is_model_folder(path: str) -> bool:
    return os.path.isfile(os.path.join(path, CONFIG)) and (
        os.path.isfile(os.path.join(path, WEIGHTS_H5)) or os.path.isfile(os.path.join(path, WEIGHTS_INDEX))
    )


def is_preset(path: str) -> bool:
    if not is_model_folder(path) or not os.path.isfile(os.path.join(path, METADATA)):
        return False
    meta = read_json(os.path.join(path, METADATA))
    return isinstance(meta, dict) and "keras_hub_version" in meta


def read_folder(path: str, source: str, config: Any = None) -> ModelInfo:
    """An unzipped `.keras`: config.json, metadata.json and model.weights.h5 (or shards)."""
    if config is None:
        config = read_json(os.path.join(path, CONFIG))
    meta = read_json(os.path.join(path, METADATA)) if os.path.isfile(os.path.join(path, METADATA)) else None
    with weights_of(path) as sources, merged(sources) as h5:
        return interpret(config, h5, source=source, fmt="folder", keras_version=_version(meta))


# -- keras-hub presets (`save_to_preset`) ---------------------------------------------------------


def preset_config(path: str) -> Any:
    """The task's config when the preset holds a task (task.json), else the backbone's."""
    task = os.path.join(path, TASK)
    return read_json(task if os.path.isfile(task) else os.path.join(path, CONFIG))


def _class_of(path: str) -> str | None:
    if not os.path.isfile(path):
        return None
    doc = read_json(path)
    return str(doc["class_name"]) if isinstance(doc, dict) and doc.get("class_name") else None


def read_preset(path: str, source: str, config: Any = None) -> ModelInfo:
    from varctl.formats.catalog_hub import is_backbone_entry
    from varctl.formats.tree import to_snake_case

    if config is None:
        config = preset_config(path)
    meta = read_json(os.path.join(path, METADATA))
    has_task = os.path.isfile(os.path.join(path, TASK))
    details = [f"keras-hub {_version(meta, 'keras_hub_version') or '?'} preset"]
    for label, fname in (("tokenizer", TOKENIZER), ("preprocessor", PREPROCESSOR)):
        cls = _class_of(os.path.join(path, fname))
        if cls:
            details.append(f"{label} {cls}")
    backbone_prefix = ""
    if has_task:
        entry = config.get("config", {}).get("backbone") if isinstance(config, dict) else None
        if not isinstance(entry, dict) or not is_backbone_entry(entry):
            raise UnreadableModel("task.json holds no keras-hub backbone config")
        backbone_prefix = f"layers/{to_snake_case(str(entry['class_name']))}"
    with weights_of(path, prefix=backbone_prefix) as sources:
        task_weights = os.path.join(path, TASK_WEIGHTS)
        if has_task and os.path.isfile(task_weights):
            sources = [(task_weights, ""), *sources]
        with merged(sources) as h5:
            info = interpret(
                config, h5, source=source, fmt="preset", keras_version=_version(meta), details=tuple(details)
            )
    return _check_count(info, meta, backbone_prefix)


def _check_count(info: ModelInfo, meta: Any, backbone_prefix: str) -> ModelInfo:
    declared = meta.get("parameter_count") if isinstance(meta, dict) else None
    if not isinstance(declared, int) or isinstance(declared, bool):
        return info
    if backbone_prefix:
        backbone = next(
            (l for l in info.layers if l.class_name.endswith("Backbone") and l.parent is None), None
        )
        inside = [
            v for v in info.variables if backbone is not None and v.path.startswith(backbone.path + "/")
        ]
        counted = sum(v.params for v in inside)
    else:
        counted = sum(v.params for v in info.variables)
    if counted == declared:
        return info
    warning = (
        f"metadata.json declares parameter_count {declared:,} for the backbone, but its weights hold "
        f"{counted:,}: the preset's files may not belong together"
    )
    return ModelInfo(**{**info.__dict__, "warnings": (*info.warnings, warning)})


# -- weights-only files and sharded weights -------------------------------------------------------


def weights_listing(h5: h5py.File, source: str, fmt: str) -> ModelInfo:
    """A Keras 3 weights-only layout: real layer names from each `vars` group's `name` attribute,
    classes from the group names, variable names where the class decides them; trainable unknown."""
    from varctl.formats import hub
    from varctl.formats.keras_zip import _Walker
    from varctl.formats.tree import Tree
    from varctl.formats.weights_h5 import UNKNOWN_DETAIL
    from varctl.model import Cause, Variable

    vars_group = _h5safe.get_group(h5, "vars")
    name = (_h5safe.str_attr(vars_group, "name") if vars_group is not None else None) or "weights"
    tree = Tree({"module": "keras", "class_name": "weights", "config": {"name": name}})
    hub_models = hub.expand_weights_only(tree, h5)
    _Walker(tree).walk_root(h5)
    hub.reorder(tree, hub_models)
    info = tree.finish(source=source, fmt=fmt, keras_version=None)
    variables = tuple(
        v
        if v.cause is Cause.NATURE
        else Variable(**{**v.__dict__, "cause": Cause.UNKNOWN, "detail": UNKNOWN_DETAIL})
        for v in info.variables
    )
    note = (
        "weights-only file: it records no trainable flags, nor the order of the model's layers "
        "(listed in the file's group order); variable names (kernel, bias, ...) are not stored "
        "either and are given where the layer class (from the group names) decides them; list the "
        "saved model (.keras) for the rest"
    )
    warnings = tuple(w for w in info.warnings if "is not known to varctl" not in w)
    return ModelInfo(**{**info.__dict__, "variables": variables, "warnings": (note, *warnings)})


def read_weights(path: str, source: str) -> ModelInfo:
    """A Keras 3 weights-only file (`save_weights("x.weights.h5")`)."""
    with _open_h5(path) as h5:
        return weights_listing(h5, source, "weights")


def read_sharded(index_path: str, source: str) -> ModelInfo:
    """A sharded weights-only save (`*.weights.json` + shards): one listing over every shard."""
    doc = read_json(index_path)
    files = shards_of(index_path, doc)
    check_index(index_path, doc, files)
    with merged([(f, "") for f in files]) as h5:
        return weights_listing(h5, source, "sharded")


# -- keras-hub LoRA adapters (`backbone.save_lora_weights("x.lora.h5")`) ---------------------------


def is_lora(path: str) -> bool:
    """HDF5 whose root holds only `lora`, with `lora/vars/rank` (keras-hub's layout)."""
    with _open_h5(path) as h5:
        budget = _h5safe.Budget()
        if _h5safe.member_names(h5, budget) != ["lora"]:
            return False
        lora = _h5safe.get_group(h5, "lora")
        own = _h5safe.get_group(lora, "vars") if lora is not None else None
        return own is not None and _h5safe.get_dataset(own, "rank") is not None


def read_lora(path: str, source: str) -> ModelInfo:
    """The rank and, per target layer (its index among the backbone's layers with weights, as
    keras-hub records it), the adapter pair lora_kernel_a / lora_kernel_b."""
    from varctl.model import Cause, Layer, Variable

    with _open_h5(path) as h5:
        budget = _h5safe.Budget()
        lora = _h5safe.get_group(h5, "lora")
        own = _h5safe.get_group(lora, "vars") if lora is not None else None
        rank_ds = _h5safe.get_dataset(own, "rank") if own is not None else None
        if lora is None or rank_ds is None:
            raise UnreadableModel("not a keras-hub LoRA file: no lora/vars/rank")
        rank: int | None = None
        if rank_ds.shape == () and rank_ds.dtype.kind in "iu":
            rank = int(rank_ds[()])
        layers, variables = [], []
        targets = [n for n in _h5safe.member_names(lora, budget) if n != "vars"]
        for target in sorted(targets, key=_h5safe.natural_key):
            group = _h5safe.get_group(lora, target)
            vars_group = _h5safe.get_group(group, "vars") if group is not None else None
            if vars_group is None:
                raise UnreadableModel(f"LoRA target '{target}' has no vars group")
            layer = f"target_{target}"
            layers.append(Layer(layer, layer, "LoRA adapter", True, None, False, 0, None, known=True))
            for name in ("lora_kernel_a", "lora_kernel_b"):
                ds = _h5safe.get_dataset(vars_group, name)
                if ds is None:
                    raise UnreadableModel(f"LoRA target '{target}' has no {name}")
                shape, dtype, itemsize = _h5safe.dataset_meta(ds)
                variables.append(
                    Variable(
                        path=f"{layer}/{name}",
                        layer=layer,
                        name=name,
                        shape=shape,
                        dtype=dtype,
                        cause=Cause.TRAINABLE,
                        detail=None,
                        storage=f"lora/{target}/vars/{name}",
                        itemsize=itemsize,
                    )
                )
    note = (
        f"keras-hub LoRA adapters, rank {rank if rank is not None else '?'}, for {len(layers)} target "
        "layer(s) named by their index among the backbone's layers with weights (keras-hub records "
        "no names): backbone.load_lora_weights(...) enables LoRA and trains these adapters"
    )
    return ModelInfo(
        source=source,
        format=ModelFormat.LORA,
        keras_version=None,
        name=os.path.basename(source.rstrip("/")),
        class_name="LoRA",
        trainable=True,
        layers=tuple(layers),
        variables=tuple(variables),
        warnings=(note,),
        details=(f"LoRA rank {rank if rank is not None else '?'}",),
    )


# -- --load: keras-hub classes need keras_hub imported ---------------------------------------------


def require_keras_hub(path: str, kind: str) -> None:
    """Import keras_hub (a trusted package, never code from the file) when the model's config names
    keras-hub classes, so Keras finds them; one clear error when it is not installed."""
    import importlib
    import importlib.util

    if kind != "keras":
        return
    from varctl.formats.keras_zip import read_config

    config = read_config(path)
    text_classes = _hub_classes(config)
    if not text_classes:
        return
    if importlib.util.find_spec("keras_hub") is None:
        raise UnreadableModel(
            f"the model uses keras-hub classes ({', '.join(sorted(text_classes)[:3])}): install "
            "keras-hub to load it with --load (pip install keras-hub), or list it without --load"
        )
    importlib.import_module("keras_hub")


def _hub_classes(config: Any) -> set[str]:
    from varctl.formats.catalog_hub import is_hub_entry

    found: set[str] = set()
    stack = [config]
    while stack and len(found) < 100:
        obj = stack.pop()
        if isinstance(obj, dict):
            if is_hub_entry(obj):
                found.add(str(obj.get("class_name")))
            stack.extend(obj.values())
        elif isinstance(obj, list):
            stack.extend(obj)
    return found


# -- edits of model folders and presets -----------------------------------------------------------


def editable_config(path: str) -> Any:
    """The config an edit of a folder changes: a preset's task.json when it has one, else config.json."""
    return read_json(_config_path(path))


def _config_path(path: str) -> str:
    task = os.path.join(path, TASK)
    return task if os.path.isfile(task) else os.path.join(path, CONFIG)


def write_folder(src: str, dst: str, config: Any, *, check: Any = None) -> None:
    """Write the edited config of folder `src` to `dst` (a new folder, or `src` itself).

    Only one file changes (config.json, or a preset's task.json), so an in-place edit is one atomic
    rename: Keras never sees a half-edited folder. A new folder is assembled next to `dst` under a
    temp name and renamed into place once complete; an existing `dst` is never overwritten.
    """
    import json
    import shutil
    import tempfile

    from varctl.errors import OutputError

    text = json.dumps(config, indent=4).encode("utf-8")
    name = os.path.basename(_config_path(src))
    same = os.path.realpath(dst) == os.path.realpath(src)
    parent = os.path.dirname(os.path.realpath(dst)) or "."
    if same:
        fd, tmp = tempfile.mkstemp(prefix=".varctl-", suffix=".json", dir=parent)
        view = None
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            if check is not None:
                # What the folder will be, for the check (--verify loads it): hard links to the
                # unchanged files plus the new config, outside the input (its guard still holds).
                view = tempfile.mkdtemp(prefix=".varctl-", dir=parent)
                shutil.copytree(src, view, dirs_exist_ok=True, symlinks=True, copy_function=_link_or_copy)
                os.unlink(os.path.join(view, name))
                shutil.copyfile(tmp, os.path.join(view, name))
                check(view)
            os.replace(tmp, os.path.join(src, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        finally:
            if view is not None:
                shutil.rmtree(view, ignore_errors=True)
        return
    if os.path.lexists(dst):
        raise OutputError(f"'{dst}' exists: a model folder is written as a new folder (remove it first)")
    tmpdir = tempfile.mkdtemp(prefix=".varctl-", dir=parent)
    try:
        shutil.copytree(src, tmpdir, dirs_exist_ok=True, symlinks=True)
        with open(os.path.join(tmpdir, name), "wb") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if check is not None:
            check(tmpdir)
        os.rename(tmpdir, dst)
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise


# -- weights-only files read with the model's config ---------------------------------------------


def config_from(path: str) -> Any:
    """The architecture in `path`: a config.json or `model.to_json()` file, a `.keras` archive, a
    model folder or a keras-hub preset (its task when it has one)."""
    if os.path.isdir(path):
        return preset_config(path)
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise UnreadableModel(f"cannot read it: {e.strerror or e}") from None
    if head.startswith(b"PK"):
        from varctl.formats.keras_zip import read_config

        doc = read_config(path)
    else:
        doc = read_json(path)
    if not isinstance(doc, dict) or "class_name" not in doc:
        raise UnreadableModel(f"'{os.path.basename(path)}' holds no Keras model config (no class_name)")
    return doc


def read_weights_with_config(path: str, source: str, config: Any, *, sharded: bool) -> ModelInfo:
    """A weights-only file (or sharded index) named and flagged by the model's config: the same
    listing as the full model."""
    if sharded:
        doc = read_json(path)
        files = shards_of(path, doc)
        check_index(path, doc, files)
        sources = [(f, "") for f in files]
    else:
        sources = [(path, "")]
    with merged(sources) as h5:
        info = interpret(
            config, h5, source=source, fmt="sharded" if sharded else "weights", keras_version=None
        )
    note = "weights-only file read with the model's config: names and trainable flags come from the config"
    return ModelInfo(**{**info.__dict__, "warnings": (note, *info.warnings)})


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        import shutil

        shutil.copy2(src, dst)
