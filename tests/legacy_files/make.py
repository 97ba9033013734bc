"""Write small .keras files with whatever Keras 3 release is installed, for tests/test_legacy_files.py.

Run it in a throwaway environment that has that release (never the project venv), e.g.:

    python3 -m venv /tmp/k35 && /tmp/k35/bin/pip install keras==3.5.0 "numpy<2" h5py "jax[cpu]==0.4.30" scipy
    KERAS_BACKEND=jax /tmp/k35/bin/python tests/legacy_files/make.py

Releases before 3.4 also need `packaging`. With VARCTL_EXPECTATIONS=1 it also writes
`<name>.expected.json`: the rows that release reports after loading the file (model.weights order).
3.12.0 and 3.13.0 were written with `pip install --no-deps keras==3.1x.0` into a venv whose
`.pth` file points at the project venv's site-packages (TensorFlow 2.21 backend, no download). The files go to tests/legacy_files/<keras version>/;
the backend does not change the file layout. Every model is trained one step, so the files carry
optimizer state as real ones do.
"""

import json
import os
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers as L


def nested():
    """A frozen nested Sequential (one child unfrozen again) and a nested Functional in a Functional."""
    base = keras.Sequential(
        [keras.Input((4,)), L.Dense(3, name="d1"), L.BatchNormalization(name="bn"), L.Dense(3, name="d2")],
        name="base",
    )
    base.trainable = False
    base.get_layer("d2").trainable = True
    fi = keras.Input((3,))
    func = keras.Model(fi, L.Dense(2, name="fd")(L.Dense(3, name="fa")(fi)), name="func")
    i = keras.Input((4,))
    return keras.Model(i, L.Dense(1, name="head")(func(base(i))), name="top")


def attention():
    q = keras.Input((4, 6))
    x = L.MultiHeadAttention(2, 3, name="mha")(q, q)
    x = L.MultiHeadAttention(2, 3, use_bias=False)(x, x)
    return keras.Model(q, L.Dense(2)(x), name="attention")


def recurrent():
    i = keras.Input((5, 3))
    x = L.LSTM(4, return_sequences=True)(i)
    x = L.Bidirectional(L.GRU(2, return_sequences=True))(x)
    x = L.SimpleRNN(2)(x)
    return keras.Model(i, L.Dense(1)(x), name="recurrent")


def batchnorm():
    return keras.Sequential(
        [
            keras.Input((6, 6, 2)),
            L.Conv2D(3, 3),
            L.BatchNormalization(),
            L.Conv2D(3, 3, use_bias=False),
            L.BatchNormalization(center=False),
            L.Flatten(),
            L.Dense(2),
            L.Dense(2),
        ],
        name="batchnorm",
    )


def misc():
    """Sequential in Sequential, sublayers held in attributes, a frozen MultiHeadAttention."""
    inner = keras.Sequential([L.Dense(4, name="i1"), L.LayerNormalization(name="ln")], name="inner")
    i = keras.Input((5,), dtype="int32")
    x = L.Embedding(10, 4)(i)
    x = L.TimeDistributed(L.Dense(4))(x)
    x = inner(x)
    x = L.MultiHeadAttention(1, 2, name="frozen_mha", trainable=False)(x, x)
    x = L.Bidirectional(L.GRU(2, reset_after=False), backward_layer=L.GRU(2, go_backwards=True))(x)
    outer = keras.Sequential([keras.Input((5,)), keras.Sequential([L.Dense(2)], name="stacked")])
    return keras.Model(i, L.Concatenate()([x, outer(L.Dense(5)(x))]), name="misc")


MODELS = [nested, attention, recurrent, batchnorm, misc]


def expectations(model) -> list:
    """[path, shape, dtype, trainable] per variable of a model this release loaded, in
    `model.weights` order: what varctl must list (tests/test_legacy_files.py)."""
    names = {}

    def walk(layer, prefix):
        for v in layer._trainable_variables + layer._non_trainable_variables:
            names.setdefault(id(v), prefix + v.name)
        for sub in layer._layers:
            walk(sub, prefix + sub.name + "/")

    walk(model, "")
    trainable = {id(v) for v in model.trainable_variables}
    return [
        [names[id(v)], [int(d) for d in v.shape], str(v.dtype), id(v) in trainable] for v in model.weights
    ]


def main() -> None:
    out = Path(__file__).resolve().parent / keras.__version__
    out.mkdir(exist_ok=True)
    for build in MODELS:
        keras.utils.set_random_seed(0)
        model = build()
        model.compile(optimizer="adam", loss="mse")
        x = np.ones((2, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
        y = model.predict(x, verbose=0)
        model.fit(x, np.zeros_like(y), epochs=1, verbose=0)
        model.save(out / f"{build.__name__}.keras")
        print(out / f"{build.__name__}.keras", os.path.getsize(out / f"{build.__name__}.keras"))
        if os.environ.get("VARCTL_EXPECTATIONS"):  # written for 3.12 and later
            loaded = keras.saving.load_model(out / f"{build.__name__}.keras")
            rows = expectations(loaded)
            (out / f"{build.__name__}.expected.json").write_text(
                "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n"
            )
    print(f"keras {keras.__version__} ({keras.backend.backend()}) on Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
