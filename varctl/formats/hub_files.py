"""What the folder, preset, sharded and LoRA formats share: JSON files, shard indexes, weights
manifests merged from several HDF5 files, weights-only listings, `--config`, and keras-hub for
`--load`.

Several HDF5 files (shards; a preset's backbone and task weights) are scanned once each into the
in-memory manifest of formats/_manifest.py (groups, `name` attributes, each dataset's shape and
dtype, never its bytes) and merged into one: the `.keras` walker then reads it like an archive's
`model.weights.h5`. Nothing here imports TensorFlow or Keras.

| input                                   | recognised by                                        | module   |
|-----------------------------------------|------------------------------------------------------|----------|
| model folder (`save(dir, zipped=False)`)| config.json + model.weights.h5 / model.weights.json  | folder   |
| keras-hub preset (`save_to_preset`)     | the same + metadata.json naming keras_hub_version    | folder   |
| sharded weights (`*.weights.json`)      | a JSON index with `weight_map` naming `.h5` shards   | sharded  |
| keras-hub LoRA (`save_lora_weights`)    | HDF5 whose root holds only `lora` (`lora/vars/rank`) | lora     |
"""

from __future__ import annotations

import os
from typing import Any

from varctl.errors import UnreadableModel, UnsafeFile
from varctl.formats import _h5safe, _manifest
from varctl.formats._layout import NOT_MODEL_STATE, parse_json
from varctl.model import ModelInfo

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


# -- small readers -------------------------------------------------------------------------------


def read_json(path: str) -> Any:
    """A JSON file, size-checked (configs, metadata, shard indexes)."""
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


def open_h5(path: str) -> Any:
    """An h5py file (through _h5safe.lib(): the HDF5 plugin path emptied first)."""
    try:
        return _h5safe.lib().File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"'{os.path.basename(path)}' is not a readable HDF5 file ({e})") from e


# -- manifests: one scan per file, merged ---------------------------------------------------------


def scan(path: str) -> _manifest.Group:
    """The weights metadata of one HDF5 file (training state left out, as in a `.keras`): read by
    the stdlib reader, or whole by h5py when that one refuses the file."""

    def read(h5s: Any) -> _manifest.Group:
        with _manifest.open_hdf5(h5s, path) as h5:
            return _manifest.scan(h5s, h5, h5s.Budget(), NOT_MODEL_STATE)

    return _manifest.with_fallback(read, f"'{os.path.basename(path)}'")


def _merge(dst: _manifest.Group, src: _manifest.Group, where: str, depth: int = 0) -> None:
    if depth > _h5safe.MAX_DEPTH:
        raise UnsafeFile("HDF5 groups nested too deeply (refused)")
    if dst.attr_name is None:
        dst.attr_name = src.attr_name
    for name, obj in src.members.items():
        have = dst.members.get(name)
        if have is None:
            dst.members[name] = obj
        elif isinstance(have, _manifest.Group) and isinstance(obj, _manifest.Group):
            _merge(have, obj, where, depth + 1)
        elif isinstance(have, _manifest.Dataset) and isinstance(obj, _manifest.Dataset):
            raise UnsafeFile(
                f"'{where}' holds '{obj.name}' that another file also holds (refused: ambiguous)"
            )
        else:
            raise UnreadableModel(f"'{where}': '{name}' is a group in one file and a dataset in another")


def merged(sources: list[tuple[str, str]]) -> _manifest.Group:
    """One manifest holding every (file, prefix) source's groups and dataset shapes."""
    root = _manifest.Group("/")
    for path, prefix in sources:
        _merge(_under(root, prefix, path), scan(path), os.path.basename(path))
    return root


def _under(root: _manifest.Group, prefix: str, path: str) -> _manifest.Group:
    """The group at `prefix` in `root`, made if absent."""
    dst = root
    for part in [p for p in prefix.split("/") if p]:
        sub = dst.members.setdefault(part, _manifest.Group(f"{dst.name.rstrip('/')}/{part}"))
        if not isinstance(sub, _manifest.Group):
            raise UnreadableModel(f"'{os.path.basename(path)}': '{part}' should be a group")
        dst = sub
    return dst


def check_index(index_path: str, doc: Any, scanned: dict[str, _manifest.Group]) -> None:
    """Every group the index maps must be in each shard it names (a foreign shard is refused).

    `scanned`: each shard's manifest, by file name."""
    for key, value in doc["weight_map"].items():
        for f in value if isinstance(value, list) else [value]:
            group: Any = scanned[f]
            for part in str(key).strip("/").split("/"):
                group = _manifest.get_group(group, part) if isinstance(group, _manifest.Group) else None
                if group is None:
                    raise UnreadableModel(
                        f"shard '{f}' does not hold '{key}' as its index says: it belongs to "
                        "another model or another save"
                    )
    del index_path


def sharded_manifest(index_path: str) -> _manifest.Group:
    """The merged manifest of an index's shards, each checked against the index."""
    doc = read_json(index_path)
    files = shards_of(index_path, doc)
    scanned = {os.path.basename(f): scan(f) for f in files}
    check_index(index_path, doc, scanned)
    root = _manifest.Group("/")
    for f in files:
        _merge(root, scanned[os.path.basename(f)], os.path.basename(f))
    return root


def merge_into(root: _manifest.Group, manifest: _manifest.Group, prefix: str, path: str) -> None:
    """Put `manifest` (of the file `path`) into `root` at `prefix`."""
    _merge(_under(root, prefix, path), manifest, os.path.basename(path))


def folder_weights(folder: str, index: str = WEIGHTS_INDEX, single: str = WEIGHTS_H5) -> list[str]:
    """A folder's weights: one `.h5`, or (its index first) the shards its index names."""
    h5 = os.path.join(folder, single)
    idx = os.path.join(folder, index)
    if os.path.isfile(h5):
        return [h5]
    if os.path.isfile(idx):
        return [idx]
    raise UnreadableModel(f"no {single} (nor {index}) in the folder")


def weights_manifest(path: str, sharded: bool | None = None) -> _manifest.Group:
    """The manifest of a weights file (`.h5`) or of a sharded index (`.json`) and its shards."""
    if path.endswith(".json") if sharded is None else sharded:
        return sharded_manifest(path)
    return merged([(path, "")])


# -- weights-only files ---------------------------------------------------------------------------

WEIGHTS_NOTE = (
    "weights-only file: it records no trainable flags, nor the order of the model's layers "
    "(listed in the file's group order); variable names (kernel, bias, ...) are not stored "
    "either and are given where the layer class (from the group names) decides them; list the "
    "saved model (.keras) for the rest"
)


def weights_listing(weights: _manifest.Group, source: str, fmt: str) -> ModelInfo:
    """A Keras 3 weights-only layout: real layer names from each `vars` group's `name` attribute,
    classes from the group names, variable names where the class decides them; trainable unknown."""
    from varctl.formats import hub
    from varctl.formats.keras_zip import _Walker
    from varctl.formats.tree import Tree
    from varctl.formats.weights_h5 import UNKNOWN_DETAIL
    from varctl.model import Cause, Variable

    vars_group = _manifest.get_group(weights, "vars")
    name = (vars_group.attr_name if vars_group is not None else None) or "weights"
    tree = Tree({"module": "keras", "class_name": "weights", "config": {"name": name}})
    hub_models = hub.expand_weights_only(tree, weights)
    _Walker(tree).walk(tree.root, weights, "")
    hub.reorder(tree, hub_models)
    info = tree.finish(source=source, fmt=fmt, keras_version=None)
    variables = tuple(
        v
        if v.cause is Cause.NATURE
        else Variable(**{**v.__dict__, "cause": Cause.UNKNOWN, "detail": UNKNOWN_DETAIL})
        for v in info.variables
    )
    warnings = tuple(w for w in info.warnings if "is not known to varctl" not in w)
    return ModelInfo(**{**info.__dict__, "variables": variables, "warnings": (WEIGHTS_NOTE, *warnings)})


def read_weights_with_config(path: str, source: str, config: Any, *, fmt: str) -> ModelInfo:
    """A weights-only file (or sharded index) named and flagged by the model's config: the same
    listing as the full model."""
    from varctl.formats import keras_zip
    from varctl.formats.tree import Tree

    weights = weights_manifest(path, sharded=fmt == "sharded")
    tree = Tree(config)
    keras_zip.walk(tree, config, weights)
    info = tree.finish(source=source, fmt=fmt, keras_version=None)
    note = "weights-only file read with the model's config: names and trainable flags come from the config"
    return ModelInfo(**{**info.__dict__, "warnings": (note, *info.warnings)})


# -- --config: the architecture of a weights-only file --------------------------------------------


def keras_config(path: str) -> Any:
    """config.json of a `.keras` archive."""
    from varctl.formats._layout import CONFIG_MEMBER
    from varctl.formats.keras_zip import open_archive, read_json_member

    with open_archive(path) as (_raw, zf, members):
        return read_json_member(zf, members[CONFIG_MEMBER])


def preset_config(path: str) -> Any:
    """The task's config when the preset holds a task (task.json), else the backbone's."""
    return read_json(config_path(path))


def config_path(path: str) -> str:
    """The config file of a folder an edit changes: a preset's task.json when it has one."""
    task = os.path.join(path, TASK)
    return task if os.path.isfile(task) else os.path.join(path, CONFIG)


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
    doc = keras_config(path) if head.startswith(b"PK") else read_json(path)
    if not isinstance(doc, dict) or "class_name" not in doc:
        raise UnreadableModel(f"'{os.path.basename(path)}' holds no Keras model config (no class_name)")
    return doc


# -- --load: keras-hub classes need keras_hub imported ---------------------------------------------


def require_keras_hub(path: str, kind: str) -> None:
    """Import keras_hub (a trusted package, never code from the file) when the model's config names
    keras-hub classes, so Keras finds them; one clear error when it is not installed."""
    import importlib
    import importlib.util

    if kind != "keras":
        return
    classes = _hub_classes(keras_config(path))
    if not classes:
        return
    if importlib.util.find_spec("keras_hub") is None:
        raise UnreadableModel(
            f"the model uses keras-hub classes ({', '.join(sorted(classes)[:3])}): install "
            "keras-hub to load it with --load (pip install keras-hub), or list it without --load"
        )
    importlib.import_module("keras_hub")


def _hub_classes(config: Any) -> set[str]:
    from varctl.formats.catalog import is_hub_entry

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
