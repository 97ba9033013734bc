"""Keras's on-disk layout, named once: archive members, HDF5 group and attribute names, and the
walks every Keras HDF5 reader shares (the save-order key, a legacy layer's weights).

Only format modules import this; nothing outside `varctl/formats/` knows these names.
"""

from __future__ import annotations

import json
from typing import Any

from varctl.errors import UnreadableModel, UnsafeFile

# .keras archive members (keras.src.saving.saving_lib)
CONFIG_MEMBER = "config.json"
METADATA_MEMBER = "metadata.json"
WEIGHTS_MEMBER = "model.weights.h5"
WEIGHTS_NPZ_MEMBER = "model.weights.npz"
SHARDED_INDEX_MEMBER = "model.weights.json"

# Keras 3 weights HDF5 (model.weights.h5 and .weights.h5 files)
VARS = "vars"
LAYERS = "layers"
OPTIMIZER = "optimizer"
# Top-level groups that hold training state, not model variables.
NOT_MODEL_STATE = frozenset({"optimizer", "metrics", "_compile_metrics", "_loss_tracker", "loss"})

# Legacy .h5 models and weights files (keras.src.legacy.saving.legacy_h5_format)
MODEL_CONFIG = "model_config"
MODEL_WEIGHTS = "model_weights"
TRAINING_CONFIG = "training_config"
OPTIMIZER_WEIGHTS = "optimizer_weights"
KERAS_VERSION = "keras_version"
LAYER_NAMES = "layer_names"
WEIGHT_NAMES = "weight_names"
# Keras's legacy writer splits a name list bigger than this into `name0`, `name1`, ... attributes
# (HDF5's object header holds at most 64 KB); its loader reads `name` first, then the parts.
HDF5_OBJECT_HEADER_LIMIT = 64512


def name_key(attr: str) -> str:
    """Keras visits private attributes last (saving_lib._name_key)."""
    return f"~{attr}" if attr.startswith("_") else attr


def layer_weights(
    h5s: Any, weights: Any, lname: str, key: str, budget: Any
) -> tuple[list[str], list[tuple[str, tuple[str, tuple[int, ...], str, int]]]] | None:
    """A legacy .h5 layer's weights, through the backend `h5s` (whose objects `weights` is):
    None when `weights` has no group `lname`; else the names its `key` attribute lists
    (`weight_names`, spent on `budget`) and, for each name up to the first that names no
    dataset, (name, (dataset path, *dataset_meta)), each part of a name looked up as
    `get_member` does. legacy_h5 and weights_h5 read each layer with `h5s.layer_weights`:
    this walk for h5py (_h5safe), the same in one call for hdf5meta.h5safe."""
    group = h5s.get_group(weights, lname)
    if group is None:
        return None
    names = h5s.list_attr(group, key) or []
    budget.spend(len(names))
    found = []
    for name in names:
        obj: Any = group
        for part in name.split("/"):
            obj = h5s.get_member(obj, part) if h5s.is_group(obj) else None
        if not h5s.is_dataset(obj):
            break
        found.append((name, (obj.name, *h5s.dataset_meta(obj))))
    return names, found


def parse_json(data: bytes, what: str) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnreadableModel(f"'{what}' is not UTF-8 text") from e
    return parse_json_text(text, what)


def parse_json_text(text: str, what: str) -> Any:
    """parse_json of text already decoded (a legacy .h5 config attribute: not encoded and decoded
    again, 3 ms of a 4,000-layer config)."""
    try:
        return json.loads(text)
    except RecursionError as e:
        raise UnsafeFile(f"'{what}' is nested too deeply (refused)") from e
    except ValueError as e:
        raise UnreadableModel(f"'{what}' is not valid JSON: {e}") from e
