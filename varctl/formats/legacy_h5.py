"""Legacy Keras `.h5` models (`model.save("m.h5")`): `model_config` + `model_weights`.

Each top-level layer's group lists its datasets in the `weight_names` attribute, in the order
`trainable_weights + non_trainable_weights` at save time; names are stored, so no catalog guessing
is needed for them. Nested models are flattened into their top-level layer's group.

The format protocol (as keras_zip): `read -> Parsed` (one pass, in the sandbox), `interpret`
(pure), `open_values`, `write` (model_config rewritten, `weight_names` reordered for the new
flags, since Keras loads .h5 weights by position) and `weight_order` (the reorder, or a refusal:
planning runs it, so a dry run refuses what the real run refuses).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from varctl import safe_write
from varctl.errors import UnreadableModel, UsageError
from varctl.formats import _h5safe, _manifest
from varctl.formats._layout import (
    HDF5_OBJECT_HEADER_LIMIT,
    KERAS_VERSION,
    LAYER_NAMES,
    MODEL_CONFIG,
    MODEL_WEIGHTS,
    OPTIMIZER_WEIGHTS,
    TRAINING_CONFIG,
    WEIGHT_NAMES,
    parse_json,
    parse_json_text,
)
from varctl.formats._manifest import Dataset
from varctl.formats._sandbox import in_child
from varctl.formats.parsed import Parsed
from varctl.formats.tree import Node, Tree
from varctl.model import Cause, Layer, ModelInfo, Variable

if TYPE_CHECKING:
    import h5py

    from varctl.formats.rewrite import Rewrite

MAX_CONFIG_BYTES = 64 * 1024 * 1024


class Manifest:
    """The raw scan of a legacy .h5 file: what interpret() needs besides the config."""

    def __init__(
        self,
        groups: list[tuple[str, list[tuple[str, Dataset]]]],  # (layer name, [(weight name, dataset)])
        keras_version: str | None,
        training_config: str | None,  # the raw attribute: present when the model was saved compiled
        slot_names: list[str] | None = None,  # `optimizer_weights` weight_names (for custom layers)
    ) -> None:
        self.groups = groups
        self.keras_version = keras_version
        self.training_config = training_config
        self.slot_names = slot_names


def _read_config(h5: Any, h5s: Any = _h5safe) -> Any:
    text = h5s.str_attr(h5, MODEL_CONFIG)
    if text is None:
        raise UnreadableModel(
            "HDF5 file without 'model_config': not a saved Keras model",
            hint="a weights-only file (model.save_weights) needs the model's architecture",
        )
    if len(text) > MAX_CONFIG_BYTES:
        raise UnreadableModel("'model_config' is too large")
    if not text.isascii():  # Keras writes it with ensure_ascii: this check is all most files need
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:  # h5py hands undecodable bytes over as lone surrogates
            raise UnreadableModel("'model_config' is not UTF-8 text") from e
    return parse_json_text(text, MODEL_CONFIG)


def read(path: str, source: str, for_edit: bool = False) -> Parsed:
    """Read a legacy `.h5` model once (args as keras_zip.read); hdf5meta first, h5py as the fallback."""
    config, tree, manifest = _manifest.with_fallback(lambda h5s: _read(h5s, path), "the .h5 file")
    info = _finish(tree, manifest, source)
    return Parsed(info, path, config, manifest) if for_edit else Parsed(info, path)


def _read(h5s: Any, path: str) -> tuple[Any, Tree, Manifest]:
    """The whole metadata read with one backend (`hdf5meta.h5safe` or `_h5safe`)."""
    with _manifest.open_hdf5(h5s, path) as h5:
        config = _read_config(h5, h5s)
        weights = h5s.get_group(h5, MODEL_WEIGHTS)
        if weights is None:
            raise UnreadableModel("legacy .h5 model without 'model_weights' group")
        manifest = Manifest(
            _scan(weights, h5s), h5s.str_attr(h5, KERAS_VERSION), h5s.str_attr(h5, TRAINING_CONFIG)
        )
        tree = Tree(config, manifest.keras_version)
        _attach(tree, manifest)
        if any(not n.known for n in tree.root.walk()) and manifest.training_config is not None:
            group = h5s.get_group(h5, OPTIMIZER_WEIGHTS)
            manifest.slot_names = h5s.list_attr(group, WEIGHT_NAMES) if group is not None else None
    return config, tree, manifest


def interpret(config: Any, manifest: Manifest, source: str) -> ModelInfo:
    """The ModelInfo of `config` over the scanned weights (pure: the file is not read)."""
    tree = Tree(config, manifest.keras_version)
    _attach(tree, manifest)
    return _finish(tree, manifest, source)


def _finish(tree: Tree, manifest: Manifest, source: str) -> ModelInfo:
    info = tree.finish(source=source, fmt="h5", keras_version=manifest.keras_version)
    if any(not l.known for l in info.layers):
        info = _infer_from_optimizer(manifest, info) or info
    return info


def _scan(weights: Any, h5s: Any = _h5safe) -> list[tuple[str, list[tuple[str, Dataset]]]]:
    budget = h5s.Budget()
    layer_names = h5s.list_attr(weights, LAYER_NAMES)
    if layer_names is None:
        raise UnreadableModel("legacy .h5 'model_weights' has no 'layer_names' attribute")
    budget.spend(len(layer_names))
    out = []
    for lname in layer_names:
        got = h5s.layer_weights(weights, lname, WEIGHT_NAMES, budget)
        if got is None:
            raise UnreadableModel(f"legacy .h5 has no weights group for layer '{lname}'")
        names, found = got
        if len(found) < len(names):
            raise UnreadableModel(f"legacy .h5 lists weight '{names[len(found)]}' but has no such dataset")
        out.append((lname, [(wname, Dataset(*fields)) for wname, fields in found]))
    return out


def _infer_from_optimizer(manifest: Manifest, info: ModelInfo) -> ModelInfo | None:
    """Custom layers' non-trainable variables, from the names of the saved optimizer slots.

    Legacy files name each slot after its variable (`adam/<variable_path>_momentum`, with `/`
    as `_`), so a variable without a slot was not trainable when the model was saved.
    """
    names, training = manifest.slot_names, manifest.training_config
    if names is None or training is None:
        return None
    try:
        entry = parse_json(training.encode("utf-8"), TRAINING_CONFIG).get("optimizer_config")
    except (UnreadableModel, AttributeError, UnicodeEncodeError):
        return None
    slots = {n.split("/", 1)[1] for n in names if "/" in n}

    def key(v: Variable) -> str:
        # the weight name Keras wrote, relative to the top-level layer's group
        return v.storage.split("/", 3)[3].replace("/", "_")

    from varctl.formats import slot_inference  # only for unknown layers with saved slots

    return slot_inference.infer_unknown_by_name(info, slot_inference.layout_for(entry), slots, key)


def _owner(tree: Tree, top: Node, layer_path: str, names: dict[str, list[Node]]) -> Node:
    """The layer that owns a variable (`layer_path`: its path without the variable's name),
    falling back to a unique name below `top`.

    `names`: the layers below `top` by name, filled on the first fallback (one walk per top-level
    layer, not one per variable).
    """
    node = tree.find(layer_path)
    if node is not None:
        return node
    # Keras writes `variable.path`, which does not always spell the nesting (`d1/kernel` inside
    # `base/block/d1`), or a name scope: match the innermost layer name below the top-level layer.
    if not names:
        for n in top.walk():
            names.setdefault(n.name, []).append(n)
    matches = names.get(layer_path.rsplit("/", 1)[-1], [])
    return matches[0] if len(matches) == 1 else top


def _sublayer(tree: Tree, owner: Node, layer_path: str) -> Node:
    """A custom layer's weight path names the sublayers the config does not describe
    (`holder/dense_7/kernel`): they become generic children of the custom layer, as in `.keras`."""
    if owner.known or not owner.path or not layer_path.startswith(owner.path + "/"):
        return owner
    for part in layer_path[len(owner.path) + 1 :].split("/"):
        owner = owner.attr_children.get(part) or tree.add_generic_child(owner, part, part)
    return owner


def _attach(tree: Tree, manifest: Manifest) -> None:
    tops = {n.name: n for n in tree.root.list_children}
    add = tree.add_variable
    for lname, weights in manifest.groups:
        top = tops.get(lname)
        if top is None:
            top = tree.add_generic_child(tree.root, lname, lname)
        names: dict[str, list[Node]] = {}
        for wname, ds in weights:
            clean = wname.split(":")[0]  # Keras 2 files append `:0`
            path = clean if clean == lname or clean.startswith(lname + "/") else f"{lname}/{clean}"
            layer_path, _, vname = path.rpartition("/")
            owner = _owner(tree, top, layer_path, names)
            if path == clean and not owner.known:  # the weight's own path, not one varctl prefixed
                owner = _sublayer(tree, owner, layer_path)
            add(owner, vname, ds.shape, ds.dtype, ds.itemsize, ds.name, owner.var_spec(vname))


def _open(path: str) -> h5py.File:
    try:
        return _h5safe.lib().File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"not a readable HDF5 file ({e})") from e


# -- what an editor needs to know about this format ------------------------------------------------

REMAPS_OPTIMIZER = False  # slots are named per variable, and Keras 2 and 3 keep them differently
# What Keras (2 and 3) logs when it loads a .h5 model saved without a training configuration.
UNCOMPILED_OUTPUT = (
    "Keras logs 'No training configuration found in the save file, so the model was *not* "
    "compiled. Compile it manually.' when it loads this .h5 file: call model.compile(...) before fit"
)
WARNS_WHEN_UNCOMPILED = True


def compiled(parsed: Parsed) -> bool:
    """Was the model saved compiled (a `training_config`, and so optimizer state)?"""
    return isinstance(parsed.manifest, Manifest) and parsed.manifest.training_config is not None


def optimizer_entry(config: Any) -> Any:
    """None: the optimizer of a .h5 model is in `training_config`, which is never remapped."""
    return None


def saved_slots(parsed: Parsed) -> None:
    return None


def check_rewrite(parsed: Parsed, after: ModelInfo) -> None:
    """Refusals write() would make: the positional weight reorder (UsageError when unsafe)."""
    weight_order(parsed.info, after, parsed.manifest)


@contextmanager
def open_values(path: str) -> Iterator[h5py.Group]:
    """The file's root group, open for value reads (variables' `storage` is a path from it)."""
    with _open(path) as h5:
        yield h5


# -- writing ---------------------------------------------------------------------------------------


def _own_trainable(layers: dict[str, Layer], v: Variable) -> bool:
    """The variable's own flag after loading (before any top-model gating)."""
    layer = layers.get(v.layer)
    natural = v.cause is not Cause.NATURE
    return natural and (layer.flag if layer is not None else True)


def weight_order(before: ModelInfo, after: ModelInfo, manifest: Manifest | None) -> dict[str, list[str]]:
    """New `weight_names` per top-level layer group, for the flags of `after`.

    Legacy loading is positional against `layer.trainable_weights + layer.non_trainable_weights`,
    so a change of flags must reorder the names (or Keras silently swaps weights). That list is
    the layer's weight order (`layer.weights`: own variables, then tracked sublayers) partitioned
    by the flags; a frozen layer's is not partitioned at all. The weight order comes from the
    layer tree (or, for a frozen or single layer, from the file itself), and the file must be
    exactly what Keras wrote for the old flags; anything else is refused (UsageError) rather
    than guessed.
    """
    before_layers = {l.path: l for l in before.layers}
    after_layers = {l.path: l for l in after.layers}
    after_by_storage = {v.storage: v for v in after.variables}
    from varctl.formats import slot_inference

    order = slot_inference.model_order(before)
    position = {v.storage: i for i, v in enumerate(order)} if order is not None else None
    groups: dict[str, list[Variable]] = {}
    # listings are in model.weights order; the check below needs each group in the file's order
    in_file_order = {
        ds.name: i for _, found in (manifest.groups if manifest else []) for i, (_, ds) in enumerate(found)
    }
    for v in sorted(before.variables, key=lambda v: in_file_order.get(v.storage, -1)):
        groups.setdefault(v.storage.split("/")[2], []).append(v)  # /model_weights/<layer>/...

    def partition(vs: list[Variable], flag: Callable[[Variable], bool]) -> list[Variable]:
        return [v for v in vs if flag(v)] + [v for v in vs if not flag(v)]

    def old_flag(v: Variable) -> bool:
        return _own_trainable(before_layers, v)

    def new_flag(v: Variable) -> bool:
        return _own_trainable(after_layers, after_by_storage[v.storage])

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
        prefix = f"/{MODEL_WEIGHTS}/{top}/"
        orders[top] = [v.storage[len(prefix) :] for v in ordered]
    return orders


def _set_name_list(group: h5py.Group, key: str, names: list[str]) -> None:
    """Write a list-of-names attribute the way keras.legacy save_attributes_to_hdf5_group does."""
    import numpy as np

    for old in [k for k in group.attrs if k == key or (k.startswith(key) and k[len(key) :].isdigit())]:
        del group.attrs[old]
    data = np.array([n.encode("utf-8") for n in names])
    chunks = 1
    parts = np.array_split(data, chunks)
    while any(p.nbytes > HDF5_OBJECT_HEADER_LIMIT for p in parts) and chunks < len(names):
        chunks += 1
        parts = np.array_split(data, chunks)
    if chunks == 1:
        group.attrs[key] = data
    else:
        for i, part in enumerate(parts):
            group.attrs[f"{key}{i}"] = part


def write(parsed: Parsed, rewrite: Rewrite, tmp: str) -> None:
    """Write the edited model to `tmp`: a copy of the file, then its attributes rewritten in place
    (in a forked child: a crash of the HDF5 library, e.g. on a full disk, is one clean error)."""
    orders = weight_order(parsed.info, rewrite.after, parsed.manifest)
    safe_write.copy_file(parsed.target, tmp)
    in_child(_rewrite, tmp, json.dumps(rewrite.config), orders, rewrite.drop_optimizer, what="the HDF5 copy")


def _rewrite(path: str, config_text: str, orders: dict[str, list[str]], drop_optimizer: bool) -> None:
    with _h5safe.lib().File(path, "r+", locking=False) as h5:
        h5.attrs[MODEL_CONFIG] = config_text
        weights = _h5safe.get_group(h5, MODEL_WEIGHTS)
        for top, names in orders.items():
            group = _h5safe.get_group(weights, top) if weights is not None else None
            if group is None:
                raise UnreadableModel(f"legacy .h5 has no weights group for layer '{top}'")
            _set_name_list(group, WEIGHT_NAMES, names)
        if drop_optimizer:
            if TRAINING_CONFIG in h5.attrs:
                del h5.attrs[TRAINING_CONFIG]
            if _h5safe.get_group(h5, OPTIMIZER_WEIGHTS) is not None:
                del h5[OPTIMIZER_WEIGHTS]
