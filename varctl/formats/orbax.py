"""Orbax checkpoint folders (`keras.callbacks.OrbaxCheckpoint`), read statically, stdlib only.

A checkpoint folder holds numbered step folders (`0/`, `1/`, ...), each committed one with a
`_CHECKPOINT_METADATA` JSON file, a `pytree/` item (the state tree: `_METADATA` JSON whose
`tree_metadata` keys are tuples like `('trainable_variables', 'dense', 'kernel')` with each
array's `write_shape`) and, unless saved with `save_weights_only=True`, a `model_config/` item
whose `_strings.json` holds the Keras config as a string.

What is read: the step (the latest by default, `--step N`), the names and the trainable /
non-trainable split from the state tree's metadata, the shapes from it, and the config (layer
order, flags, dtype policies). What is not: the arrays' dtypes are stored only inside the
tensorstore (OCDBT/zarr3) binary store, so a dtype comes from its layer's dtype policy in the
config (a warning says so); without a config, dtypes are unknown. Array data is never read.
The format protocol: `read(path, source, step=None) -> Parsed` (read-only).
"""

from __future__ import annotations

import ast
import os
from typing import Any

from varctl.errors import UnreadableModel, UnsafeFile, UsageError
from varctl.formats._layout import parse_json
from varctl.formats.parsed import Parsed
from varctl.model import Cause, ModelFormat, ModelInfo, Variable

# state-tree path below its group -> (in trainable_variables, shape from the array metadata)
Saved = dict[tuple[str, ...], tuple[bool, tuple[int, ...] | None]]

STEP_METADATA = "_CHECKPOINT_METADATA"
PYTREE_METADATA = os.path.join("pytree", "_METADATA")
CONFIG_STRINGS = os.path.join("model_config", "_strings.json")
MAX_JSON = 64 * 1024 * 1024
GROUPS = {"trainable_variables": True, "non_trainable_variables": False}
_ITEMSIZE = {"float16": 2, "bfloat16": 2, "float64": 8, "int8": 1, "uint8": 1, "int64": 8, "bool": 1}


def steps(path: str) -> list[int]:
    """The committed steps of a checkpoint folder (step folders holding _CHECKPOINT_METADATA)."""
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted(
        int(n)
        for n in names
        if n.isascii()
        and n.isdigit()
        and len(n) < 20
        and os.path.isfile(os.path.join(path, n, STEP_METADATA))
    )


def is_step_folder(path: str) -> bool:
    """One step folder (`ckpt/3`) given directly."""
    return os.path.isfile(os.path.join(path, STEP_METADATA)) and os.path.isfile(
        os.path.join(path, PYTREE_METADATA)
    )


def is_orbax_folder(path: str) -> bool:
    """A folder with at least one committed step folder holding a state tree, or one such step folder."""
    return is_step_folder(path) or any(
        os.path.isfile(os.path.join(path, str(s), PYTREE_METADATA)) for s in steps(path)
    )


def _json(path: str, what: str) -> Any:
    """A metadata file: a regular file (never a FIFO that would block), size-checked, UTF-8 JSON."""
    if not os.path.isfile(path):
        raise UnreadableModel(f"'{what}' is {'not a regular file' if os.path.lexists(path) else 'missing'}")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except OSError as e:
        raise UnreadableModel(f"cannot read '{what}': {e.strerror or e}") from None
    if len(data) > MAX_JSON:
        raise UnsafeFile(f"'{what}' is larger than {MAX_JSON:,} bytes (refused)")
    return parse_json(data, what)


def _pick(path: str, step: int | None) -> int:
    found = steps(path)
    if not found:
        raise UnreadableModel("no committed step folder (with _CHECKPOINT_METADATA) in the checkpoint folder")
    if step is None:
        return found[-1]
    if step not in found:
        raise UsageError(
            f"step {step} is not in '{path}'; its steps: {', '.join(map(str, found))}",
            hint="pick one with --step N (the latest is the default)",
        )
    return step


def _tree_entries(doc: Any, where: str) -> list[tuple[tuple[str, ...], tuple[int, ...] | None]]:
    """(keys, shape) of every array leaf of the state tree's metadata."""
    tree = doc.get("tree_metadata") if isinstance(doc, dict) else None
    if not isinstance(tree, dict):
        raise UnreadableModel(f"{where} has no `tree_metadata` object")
    out: list[tuple[tuple[str, ...], tuple[int, ...] | None]] = []
    for raw, entry in tree.items():
        keys = _keys(raw, entry)
        value = entry.get("value_metadata") if isinstance(entry, dict) else None
        if not keys or not isinstance(value, dict):
            raise UnreadableModel(f"{where}: a malformed tree entry")
        if value.get("skip_deserialize") and "write_shape" not in value:
            continue  # an empty dict (no non-trainable variables)
        shape = value.get("write_shape")
        if isinstance(shape, list) and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
        ):
            out.append((keys, tuple(shape)))
        else:
            out.append((keys, None))
    return out


def _keys(raw: str, entry: Any) -> tuple[str, ...] | None:
    meta = entry.get("key_metadata") if isinstance(entry, dict) else None
    if isinstance(meta, list) and all(isinstance(m, dict) and isinstance(m.get("key"), str) for m in meta):
        return tuple(m["key"] for m in meta)
    try:
        keys = ast.literal_eval(raw) if len(raw) < 4096 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    return tuple(keys) if isinstance(keys, tuple) and all(isinstance(k, str) for k in keys) else None


def _config(step_dir: str) -> dict[str, Any] | None:
    path = os.path.join(step_dir, CONFIG_STRINGS)
    if not os.path.lexists(path):
        return None
    doc = _json(path, "model_config/_strings.json")
    text = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(text, str):
        raise UnreadableModel("model_config/_strings.json holds no `config` string")
    config = parse_json(
        text.encode("utf-8", "surrogatepass"), "the model config in model_config/_strings.json"
    )
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise UnreadableModel("the model config in model_config/_strings.json is not a Keras config")
    return config


def _policy_dtype(cfg: dict[str, Any], inherited: str | None) -> str | None:
    dtype = cfg.get("dtype")
    if isinstance(dtype, dict):
        dtype = (dtype.get("config") or {}).get("name") if isinstance(dtype.get("config"), dict) else None
    if not isinstance(dtype, str):
        return inherited
    return "float32" if dtype.startswith("mixed_") else dtype  # mixed policies keep float32 variables


def read(path: str, source: str, step: int | None = None) -> Parsed:
    step_dir, listed = _step_dir(path, step)
    entries = _tree_entries(
        _json(os.path.join(step_dir, PYTREE_METADATA), "pytree/_METADATA"), "pytree/_METADATA"
    )
    saved: Saved = {}
    optimizer = 0
    for keys, shape in entries:
        if keys[0] in GROUPS and len(keys) > 1:
            saved[keys[1:]] = (GROUPS[keys[0]], shape)
        optimizer += keys[0] == "optimizer_variables"
    config = _config(step_dir)
    info = _with_config(config, saved, source) if config is not None else _without_config(saved, path, source)
    bad = ["/".join(keys) for keys, (_, shape) in saved.items() if shape is None]
    details = [
        f"Orbax checkpoint step {os.path.basename(os.path.normpath(step_dir))} (steps: {', '.join(listed)})"
    ]
    if optimizer:
        details.append(f"optimizer state: {optimizer} variables")
    warnings = [*info.warnings, *(f"{p}: no shape in the array metadata (listed as ())" for p in bad)]
    return Parsed(
        ModelInfo(**{**info.__dict__, "warnings": tuple(warnings), "details": tuple(details)}), path
    )


def _step_dir(path: str, step: int | None) -> tuple[str, list[str]]:
    if is_step_folder(path) and not steps(path):  # `ckpt/3` itself
        if step is not None:
            raise UsageError(
                "--step picks a step of a checkpoint folder; this is one step folder already",
                hint="give the checkpoint folder (its parent) with --step, or this folder alone",
            )
        return path, [os.path.basename(os.path.normpath(path))]
    chosen = _pick(path, step)
    return os.path.join(path, str(chosen)), [str(s) for s in steps(path)]


def _with_config(config: dict[str, Any], saved: Saved, source: str) -> ModelInfo:
    """The layer tree of the stored config (names, order, flags as Keras loads them), shapes from the
    state tree; a variable of a layer class varctl does not know takes the checkpoint's split."""
    from varctl.formats.tree import Tree

    tree = Tree(config)
    top = tree.root.name
    # a Sequential's state tree is saved under the model's own name, a Functional's is not
    by_path = {"/".join(k[1:] if len(k) > 2 and k[0] == top else k): k for k in saved}
    in_layer: dict[str, list[str]] = {}  # layer path -> its variables' names in the state tree
    for p in by_path:
        layer, _, name = p.rpartition("/")
        in_layer.setdefault(layer, []).append(name)
    used: set[tuple[str, ...]] = set()
    dtypes: dict[int, str | None] = {}
    for node in tree.root.walk():
        parent_dtype = dtypes.get(id(node.parent)) if node.parent is not None else None
        dtype = dtypes[id(node)] = _policy_dtype(node.config, parent_dtype)
        names = [v.name for v in node.spec.variables] if node.spec is not None else []
        prefix = f"{node.path}/" if node.path else ""
        names += sorted(in_layer.get(node.path, ())) if node.path else []
        for name in dict.fromkeys(names):
            keys = by_path.get(prefix + name)
            if keys is None or keys in used:
                continue
            used.add(keys)
            shape = saved[keys][1] or ()
            dt = dtype or "unknown"
            tree.add_variable(
                node, name, shape, dt, _ITEMSIZE.get(dt, 4), _storage(saved, keys), node.var_spec(name)
            )
    stray = [keys for keys in saved if keys not in used]
    for keys in stray:  # under no layer of the config: listed at its state-tree path
        tree.add_variable(
            tree.root, "/".join(keys), saved[keys][1] or (), "unknown", 4, _storage(saved, keys), None
        )
    if stray:
        tree.warnings.append(
            f"{len(stray)} variables of the checkpoint sit under no layer of its model config (first: "
            f"{'/'.join(stray[0])}): listed at their state-tree paths, dtype unknown, trainable state "
            "from the checkpoint's split"
        )
    info = tree.finish(source=source, fmt=ModelFormat.ORBAX.value, keras_version=None)
    storage_split = {_storage(saved, k): saved[k][0] for k in saved}
    variables, warnings = [], []
    unknown = [
        layer
        for layer in info.layers
        if not layer.known and any(v.layer == layer.path for v in info.variables)
    ]
    for v in info.variables:
        when_saved = storage_split.get(v.storage)
        if v.cause is Cause.UNKNOWN and when_saved is not None:
            # a class varctl does not know, in a trainable layer (a frozen one, or model, decides
            # before UNKNOWN): saved non-trainable means created so (add_weight(trainable=False))
            cause, detail = (
                (Cause.TRAINABLE, None) if when_saved else (Cause.NATURE, "non-trainable when saved")
            )
            v = Variable(**{**v.__dict__, "cause": cause, "detail": detail})
        elif v.trainable is not None and when_saved is not None and v.trainable != when_saved:
            warnings.append(
                f"{v.path}: {'trainable' if when_saved else 'non-trainable'} when saved, "
                f"{'trainable' if v.trainable else 'frozen'} once Keras loads the config"
            )
        variables.append(v)
    note = (
        "dtypes are those Keras creates the variables with on load (each layer's dtype policy in the "
        "model config); the stored arrays' dtypes sit in Orbax's compressed tensorstore, which varctl does not read"
    )
    kept = [w for w in info.warnings if "is not known to varctl" not in w]  # settled by the split
    kept += [
        f"layer class `{layer.class_name}` is not known to varctl (`{layer.path}`): its variables' trainable "
        "state is the checkpoint's split, their order within the layer the state tree's (sorted), which "
        "may differ from model.weights"
        for layer in unknown
    ]
    return ModelInfo(**{**info.__dict__, "variables": tuple(variables), "warnings": (note, *kept, *warnings)})


def _storage(saved: Saved, keys: tuple[str, ...]) -> str:
    group = "trainable_variables" if saved[keys][0] else "non_trainable_variables"
    return "/".join(("pytree", group, *keys))


def _without_config(saved: Saved, path: str, source: str) -> ModelInfo:
    """save_weights_only=True: the state tree's names and split, nothing more."""
    variables = []
    for keys, (trainable, shape) in saved.items():
        layer = "/".join(keys[:-1])
        variables.append(
            Variable(
                "/".join(keys),
                layer,
                keys[-1],
                shape or (),
                "unknown",
                Cause.TRAINABLE if trainable else Cause.UNKNOWN,
                None if trainable else "non-trainable when saved; no model config says why",
                storage=_storage(saved, keys),
            )
        )
    return ModelInfo(
        source=source,
        format=ModelFormat.ORBAX,
        keras_version=None,
        name=os.path.basename(os.path.normpath(path)),
        class_name="Model",
        trainable=True,
        layers=(),
        variables=tuple(variables),
        warnings=(
            "no model config in this checkpoint (save_weights_only=True): names come from the state "
            "tree, in its sorted order, not model.weights order; dtypes are unknown",
        ),
    )
