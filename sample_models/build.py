"""Build the varctl sample models.

Run from the repository root:

    python sample_models/build.py

Every model is built from random init (no downloads), trained for exactly one
step so that its optimizer state exists, then written next to this script as
``<name>.keras`` and, when Keras can write it and read it back, the legacy
``<name>.h5``.  Weights are deterministic (``keras.utils.set_random_seed(0)``
before each model); files are not byte-identical between runs because Keras
stores a timestamp in the archive metadata.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # must be set before importing keras

import hashlib
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # don't leave __pycache__/ in sample_models/
sys.path.insert(0, str(HERE))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402
from varctl_samples import ExplicitVariables, MyCustomLayer  # noqa: E402

SEED = 0
BATCH = 8  # samples in the fake data set; batch_size == BATCH -> one step


# --------------------------------------------------------------------------
# Model definitions: each returns (compiled model, x, y)
# --------------------------------------------------------------------------


def _rng():
    return np.random.default_rng(SEED)


def seed_dense():
    model = keras.Sequential(
        [
            keras.Input((10,)),
            layers.Dense(64, activation="relu"),
            layers.Dense(1),
        ],
        name="seed_dense",
    )
    model.compile(optimizer="adam", loss="mse")
    rng = _rng()
    x = rng.standard_normal((BATCH, 10)).astype("float32")
    y = rng.standard_normal((BATCH, 1)).astype("float32")
    return model, x, y


def seed_explicit():
    inputs = keras.Input((5,))
    outputs = ExplicitVariables(units=3, name="explicit_variables")(inputs)
    model = keras.Model(inputs, outputs, name="seed_explicit")
    model.compile(optimizer="adam", loss="mse")
    rng = _rng()
    x = rng.standard_normal((BATCH, 5)).astype("float32")
    y = rng.standard_normal((BATCH, 3)).astype("float32")
    return model, x, y


def seed_custom_layer():
    model = keras.Sequential(
        [
            keras.Input((16,)),
            MyCustomLayer(units=16, name="my_custom_layer"),
            layers.Dense(1),
        ],
        name="seed_custom_layer",
    )
    model.compile(optimizer="adam", loss="mse")
    rng = _rng()
    x = rng.standard_normal((BATCH, 16)).astype("float32")
    y = rng.standard_normal((BATCH, 1)).astype("float32")
    return model, x, y


def transfer_learning():
    base = keras.applications.MobileNetV2(
        input_shape=(96, 96, 3), include_top=False, weights=None, alpha=0.35
    )
    base.trainable = False
    inputs = keras.Input((96, 96, 3))
    x = base(inputs, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(1)(x)
    model = keras.Model(inputs, outputs, name="transfer_learning")
    model.compile(
        optimizer=keras.optimizers.Adam(),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = _rng()
    xd = rng.uniform(-1.0, 1.0, (BATCH, 96, 96, 3)).astype("float32")
    yd = rng.integers(0, 2, (BATCH, 1)).astype("float32")
    return model, xd, yd


def batchnorm():
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            layers.Conv2D(8, 3),
            layers.BatchNormalization(),
            layers.ReLU(),
            layers.Conv2D(8, 3, use_bias=False),
            layers.BatchNormalization(center=False),
            layers.GlobalAveragePooling2D(),
            layers.Dense(2),
        ],
        name="batchnorm",
    )
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    rng = _rng()
    x = rng.standard_normal((BATCH, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 2, (BATCH,)).astype("int32")
    return model, x, y


MODELS = [seed_dense, seed_explicit, seed_custom_layer, transfer_learning, batchnorm]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def weights_digest(model):
    """Short sha256 over all model variables (names are ignored)."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()[:16]


def same_weights(a, b):
    if len(a.weights) != len(b.weights):
        return False
    return len(a.weights) == len(b.weights) and all(
        np.array_equal(keras.ops.convert_to_numpy(x), keras.ops.convert_to_numpy(y))
        for x, y in zip(a.weights, b.weights, strict=True)
    )


def _fmt_warnings(caught):
    """One entry per distinct warning, with a repeat count."""
    counts = {}
    for w in caught:
        key = f"{w.category.__name__}: {str(w.message).splitlines()[0]}"
        counts[key] = counts.get(key, 0) + 1
    return "; ".join(f"{k} (x{n})" if n > 1 else k for k, n in counts.items())


def save_keras(model, path):
    model.save(path)
    # The archive must load back cleanly: any warning is an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.saving.load_model(path)
    if not same_weights(model, loaded):
        raise RuntimeError(f"{path.name}: reloaded weights differ from the model")
    return loaded


def save_h5(model, path):
    """Try the legacy HDF5 format; keep the file only if it loads back."""
    problem = None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model.save(path)
        # Keras also logs (absl, not `warnings`) that HDF5 is a legacy format.
        # With TF 2.21 + NumPy 2, the legacy writer's np.array(tf_variable)
        # raises a harmless DeprecationWarning per variable ("__array__
        # implementation doesn't accept a copy keyword"); it is summarised here.
        if caught:
            print(f"  note: warnings while saving {path.name}: {_fmt_warnings(caught)}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = keras.saving.load_model(path, compile=False)
        if caught:
            print(f"  note: warnings while loading {path.name}: {_fmt_warnings(caught)}")
        if not same_weights(model, loaded):
            problem = "reloaded weights differ from the model"
    except Exception as exc:  # Keras refused to write, or the file won't load
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        if path.exists():
            path.unlink()
        print(f"  {path.name}: NOT kept (legacy HDF5 save/load failed: {problem})")
        return False
    return True


def _size(path):
    n = path.stat().st_size
    return f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.2f} MiB"


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def main():
    t0 = time.perf_counter()
    for build in MODELS:
        name = build.__name__
        print(f"{name}:")
        keras.utils.set_random_seed(SEED)  # each model is independently seeded
        model, x, y = build()
        model.fit(x, y, epochs=1, batch_size=len(x), shuffle=False, verbose=0)
        assert int(model.optimizer.iterations.numpy()) == 1

        keras_path = HERE / f"{name}.keras"
        h5_path = HERE / f"{name}.h5"
        for p in (keras_path, h5_path):  # never leave stale files behind
            if p.exists():
                p.unlink()

        save_keras(model, keras_path)
        print(
            f"  {keras_path.name}: {_size(keras_path)}  "
            f"weights={len(model.weights)} trainable={len(model.trainable_weights)} "
            f"digest={weights_digest(model)}"
        )
        if save_h5(model, h5_path):
            print(f"  {h5_path.name}: {_size(h5_path)}")
        keras.backend.clear_session()
    print(f"done in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
