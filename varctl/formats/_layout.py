"""Keras's on-disk layout, named once: archive members, HDF5 group and attribute names, and the
walks every Keras HDF5 reader shares (the save-order key, a `weight_names` entry's dataset).

Only format modules import this; nothing outside `varctl/formats/` knows these names.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from varctl.errors import UnreadableModel, UnsafeFile

if TYPE_CHECKING:  # h5py is imported lazily: `varctl --help` never pays for it
    import h5py

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


def weight_dataset(group: h5py.Group, wname: str, h5s: Any = None) -> h5py.Dataset | None:
    """The dataset a `weight_names` entry names inside its layer's group (None if there is none).

    `h5s`: the backend whose objects `group` is (default `_h5safe`, h5py)."""
    if h5s is None:
        from varctl.formats import _h5safe as h5s
    walk = getattr(h5s, "dataset_at", None)  # the same walk in one call (hdf5meta.h5safe)
    if walk is not None:
        return walk(group, wname)  # type: ignore[no-any-return]

    ds: Any = group
    for part in wname.split("/"):
        ds = h5s.get_member(ds, part) if h5s.is_group(ds) else None
    return ds if h5s.is_dataset(ds) else None


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
