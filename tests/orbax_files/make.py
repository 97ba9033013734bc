"""Write small Orbax checkpoint folders with `keras.callbacks.OrbaxCheckpoint`, for tests/test_orbax.py.

Run it in a throwaway environment (never the project venv: JAX is not a project dependency):

    python3 -m venv /tmp/orbaxenv && /tmp/orbaxenv/bin/pip install "keras==3.15.*" jax orbax-checkpoint
    KERAS_BACKEND=jax /tmp/orbaxenv/bin/python tests/orbax_files/make.py

Each model is compiled with Adam and trained two epochs (one batch each), saving every epoch, so
the folder holds steps 0 and 1 with optimizer state. Next to each checkpoint folder goes
`<name>.expected.json`: what that Keras reports after `keras.saving.load_model(folder)` (the latest
step): the rows in `model.weights` order, and the state tree's split into trainable /
non-trainable / optimizer variables, plus the Keras and Orbax versions. `weights_only` is saved
with `save_weights_only=True` (no model config; Keras cannot load_model it): its expected file
holds the writer's own state tree split only. `custom` holds a layer class varctl does not know.
"""

import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
from keras import layers as L

HERE = Path(__file__).resolve().parent


def dense():
    i = keras.Input((3,))
    return keras.Model(i, L.Dense(2, name="head")(L.Dense(4, name="hidden")(i)), name="dense_model")


def frozen_bn():
    """A frozen Dense, a BatchNormalization (non-trainable moving stats) and a trainable head."""
    m = keras.Sequential(
        [keras.Input((3,)), L.Dense(4, name="base"), L.BatchNormalization(name="bn"), L.Dense(1, name="out")],
        name="frozen_bn",
    )
    m.get_layer("base").trainable = False
    return m


def nested():
    """A frozen nested Sequential (BatchNormalization inside) in a Functional, a mixed-precision head."""
    base = keras.Sequential(
        [keras.Input((3,)), L.Dense(4, name="d1"), L.BatchNormalization(name="bn")], name="base"
    )
    base.trainable = False
    i = keras.Input((3,))
    h = L.Dense(2, name="head", dtype="mixed_bfloat16")(base(i))
    return keras.Model(i, L.Activation("linear", dtype="float32")(h), name="top")


def hierarchical_paths(model):
    """id(variable) -> `outer/inner/name` (as tests/keras_oracle.py: varctl's path, not v.path)."""
    out = {}

    def walk(layer, prefix):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            out.setdefault(id(v), prefix + v.name)
        for sub in layer._layers:
            walk(sub, prefix + sub.name + "/")

    walk(model, "")
    return out


@keras.saving.register_keras_serializable(package="varctl_test")
class Scale(L.Layer):
    """A class varctl does not know: weights created `w`, `b` (not sorted), and a counter."""

    def build(self, shape):
        self.w = self.add_weight(shape=(shape[-1],), name="w")
        self.b = self.add_weight(shape=(shape[-1],), name="b", initializer="zeros")
        self.count = self.add_weight(shape=(), name="count", trainable=False, initializer="zeros")

    def call(self, x):
        return x * self.w + self.b


def custom():
    i = keras.Input((3,))
    return keras.Model(i, L.Dense(1, name="out")(Scale(name="scale")(i)), name="custom")


def rows(model):
    """The restored model's variables in `model.weights` order."""
    trainable = {id(v) for v in model.trainable_variables}
    names = hierarchical_paths(model)
    return [
        {"path": names[id(v)], "shape": list(v.shape), "dtype": v.dtype, "trainable": id(v) in trainable}
        for v in model.weights
    ]


def split(model):
    tree = model.get_state_tree()

    def leaves(node, prefix=""):
        if isinstance(node, dict):
            out = []
            for k, v in node.items():
                out += leaves(v, f"{prefix}/{k}" if prefix else k)
            return out
        return [prefix]

    return {k: leaves(v) for k, v in tree.items()}


def make(name, build, weights_only=False):
    folder = HERE / name
    shutil.rmtree(folder, ignore_errors=True)
    model = build()
    model.compile(optimizer="adam", loss="mse")
    out = model.outputs[0].shape[-1]
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    y = np.zeros((4, out), "float32")
    cb = keras.callbacks.OrbaxCheckpoint(
        str(folder),
        save_freq="epoch",
        save_on_background=False,
        max_to_keep=3,
        save_weights_only=weights_only,
    )
    model.fit(x, y, epochs=2, batch_size=4, verbose=0, callbacks=[cb])
    cb.wait_until_finished()
    from importlib.metadata import version

    expected = {
        "keras": keras.__version__,
        "orbax": version("orbax-checkpoint"),
        "steps": sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()),
    }
    if weights_only:  # load_model refuses it (no config): the writer's own state tree instead
        expected["state_tree"] = split(model)
    else:
        loaded = keras.saving.load_model(str(folder))
        expected["rows"] = rows(loaded)
        expected["state_tree"] = split(loaded)
        expected["optimizer_variables"] = [v.path for v in loaded.optimizer.variables]
    (HERE / f"{name}.expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(name, "->", folder)


if __name__ == "__main__":
    assert keras.backend.backend() == "jax", "run with KERAS_BACKEND=jax"
    os.chdir(HERE)
    make("dense", dense)
    make("frozen_bn", frozen_bn)
    make("nested", nested)
    make("weights_only", frozen_bn, weights_only=True)
    make("custom", custom)
