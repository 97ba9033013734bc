"""Reader for legacy Keras `.h5` models (`model.save("m.h5")`): `model_config` + `model_weights`.

Each top-level layer's group lists its datasets in the `weight_names` attribute, in the order
`trainable_weights + non_trainable_weights` at save time; names are stored, so no catalog guessing
is needed for them. Nested models are flattened into their top-level layer's group.
"""

from __future__ import annotations

import h5py

from varctl.errors import UnreadableModel
from varctl.formats import _h5safe
from varctl.formats.keras_zip import parse_json
from varctl.formats.tree import Node, Tree
from varctl.model import ModelInfo, Variable

MAX_CONFIG_BYTES = 64 * 1024 * 1024


def read_config(h5: h5py.File) -> dict:
    text = _h5safe.str_attr(h5, "model_config")
    if text is None:
        raise UnreadableModel(
            "HDF5 file without 'model_config': not a saved Keras model",
            hint="a weights-only file (model.save_weights) needs the model's architecture",
        )
    if len(text) > MAX_CONFIG_BYTES:
        raise UnreadableModel("'model_config' is too large")
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as e:  # h5py hands undecodable bytes over as lone surrogates
        raise UnreadableModel("'model_config' is not UTF-8 text") from e
    return parse_json(data, "model_config")


def read(path: str, source: str, config: dict | None = None) -> ModelInfo:
    """Read a legacy `.h5` model (args as keras_zip.read)."""
    with _open(path) as h5:
        keras_version = _h5safe.str_attr(h5, "keras_version")
        tree = Tree(read_config(h5) if config is None else config, keras_version)
        weights = _h5safe.get_group(h5, "model_weights")
        if weights is None:
            raise UnreadableModel("legacy .h5 model without 'model_weights' group")
        _attach(tree, weights)
        info = tree.finish(source=source, fmt="h5", keras_version=keras_version)
        if any(not l.known for l in info.layers):
            info = _infer_from_optimizer(h5, info) or info
        return info


def _infer_from_optimizer(h5: h5py.File, info: ModelInfo) -> ModelInfo | None:
    """Custom layers' non-trainable variables, from the names of the saved optimizer slots.

    Legacy files name each slot after its variable (`adam/<variable_path>_momentum`, with `/`
    as `_`), so a variable without a slot was not trainable when the model was saved.
    """
    from varctl import optimizer

    group = _h5safe.get_group(h5, "optimizer_weights")
    training = _h5safe.str_attr(h5, "training_config")
    if group is None or training is None:
        return None
    names = _h5safe.list_attr(group, "weight_names") or []
    try:
        entry = parse_json(training.encode("utf-8"), "training_config").get("optimizer_config")
    except (UnreadableModel, AttributeError, UnicodeEncodeError):
        return None
    slots = {n.split("/", 1)[1] for n in names if "/" in n}

    def key(v: Variable) -> str:
        # the weight name Keras wrote, relative to the top-level layer's group
        return v.storage.split("/", 3)[3].replace("/", "_")

    return optimizer.infer_unknown_by_name(info, optimizer.layout_for(entry), slots, key)


def _owner(tree: Tree, top: Node, path: str) -> Node:
    """The layer that owns a variable path, falling back to a unique name below `top`."""
    layer_path = path.rsplit("/", 1)[0] if "/" in path else ""
    node = tree.find(layer_path)
    if node is not None:
        return node
    # Keras writes `variable.path`, which does not always spell the nesting (`d1/kernel` inside
    # `base/block/d1`): match the innermost layer name below the top-level layer instead.
    inner = layer_path.rsplit("/", 1)[-1]
    matches = [n for n in top.walk() if n.name == inner]
    return matches[0] if len(matches) == 1 else top


def _attach(tree: Tree, weights: h5py.Group) -> None:
    budget = _h5safe.Budget()
    layer_names = _h5safe.list_attr(weights, "layer_names")
    if layer_names is None:
        raise UnreadableModel("legacy .h5 'model_weights' has no 'layer_names' attribute")
    tops = {n.name: n for n in tree.root.list_children}
    budget.spend(len(layer_names))
    for lname in layer_names:
        group = _h5safe.get_group(weights, lname)
        if group is None:
            raise UnreadableModel(f"legacy .h5 has no weights group for layer '{lname}'")
        top = tops.get(lname)
        if top is None:
            top = tree.add_generic_child(tree.root, lname, lname)
        names = _h5safe.list_attr(group, "weight_names") or []
        budget.spend(len(names))
        for wname in names:
            ds: h5py.Group | h5py.Dataset | None = group
            for part in wname.split("/"):
                if not isinstance(ds, h5py.Group):
                    ds = None
                    break
                ds = _h5safe.get_member(ds, part)
            if not isinstance(ds, h5py.Dataset):
                raise UnreadableModel(f"legacy .h5 lists weight '{wname}' but has no such dataset")
            clean = wname.split(":")[0]  # Keras 2 files append `:0`
            path = clean if clean == lname or clean.startswith(lname + "/") else f"{lname}/{clean}"
            owner = _owner(tree, top, path)
            vname = clean.rsplit("/", 1)[-1]
            shape, dtype, itemsize = _h5safe.dataset_meta(ds)
            tree.add_variable(owner, vname, shape, dtype, itemsize, ds.name, owner.var_spec(vname))


def _open(path: str) -> h5py.File:
    try:
        return h5py.File(path, "r", locking=False)
    except Exception as e:
        raise UnreadableModel(f"not a readable HDF5 file ({e})") from e


def read_config_file(path: str) -> dict:
    """The `model_config` architecture of a legacy `.h5` file, parsed."""
    with _open(path) as h5:
        return read_config(h5)


def has_training_config(path: str) -> bool:
    """Was the model saved compiled (optimizer state and `training_config` present)?"""
    with _open(path) as h5:
        return _h5safe.str_attr(h5, "training_config") is not None
