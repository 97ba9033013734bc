"""Keras as the oracle: what Keras itself says about a model file, in varctl's vocabulary.

`expected(path)` loads the file with Keras and returns, for every variable, the hierarchical path
(enclosing layer names from the top model down, then the variable name), shape, dtype and whether it
is in `model.trainable_variables` -- in `model.weights` order (row i is `model.get_weights()[i]`),
the order varctl lists in. `expected_save_order` gives Keras's save order instead, recorded by
running Keras's own `saving_lib._save_state` against a store that only records what it is given.
"""

from __future__ import annotations

import os
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from keras.src.saving import saving_lib


class _Entry(dict):
    def __init__(self, path, log):
        super().__init__()
        self.path, self.log = path, log

    def __setitem__(self, key, value):
        self.log.append((self.path, key, value))


class _RecordingStore(saving_lib.H5IOStore):
    """Keras's save walk calls make()/[]= on this; nothing is written."""

    def __init__(self):
        self.log = []
        self.mode = "w"

    def __bool__(self):
        return True

    def make(self, path, metadata=None):
        return _Entry(path, self.log)


def save_order(model):
    """[(h5 group path, index, variable)] in the order Keras writes model.weights.h5."""
    store = _RecordingStore()
    saving_lib._save_state(
        model, weights_store=store, assets_store=None, inner_path="", visited_saveables=set()
    )
    return [(p, k, v) for p, k, v in store.log if not p.startswith("optimizer") and hasattr(v, "path")]


def hierarchical_paths(model):
    """id(variable) -> `outer/inner/name`, following each layer's tracked sublayers."""
    out = {}

    def walk(layer, prefix):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            out.setdefault(id(v), prefix + v.name)
        for sub in layer._layers:
            walk(sub, prefix + sub.name + "/")

    walk(model, "")
    return out


def load(path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return keras.saving.load_model(path, **kwargs)


def rows(model):
    """[(path, shape, dtype, trainable)] of a loaded model, in `model.weights` order."""
    trainable = {id(v) for v in model.trainable_variables}
    names = hierarchical_paths(model)
    return [
        (names[id(v)], tuple(int(d) for d in v.shape), str(v.dtype), id(v) in trainable)
        for v in model.weights
    ]


def expected(path, *, compile=False):
    """[(path, shape, dtype, trainable)] as Keras reports after loading `path` (any format Keras
    loads), in `model.weights` order: row i is `model.get_weights()[i]`."""
    return rows(load(path, compile=compile))


def expected_save_order(path, *, compile=False):
    """The same rows in the order Keras writes model.weights.h5 (what `.keras` stores)."""
    model = load(path, compile=compile)
    trainable = {id(v) for v in model.trainable_variables}
    names = hierarchical_paths(model)
    return [
        (names[id(v)], tuple(int(d) for d in v.shape), str(v.dtype), id(v) in trainable)
        for _group, _key, v in save_order(model)
    ]


# legacy .h5 files are loaded by the same call: one order for every format
expected_legacy = expected
