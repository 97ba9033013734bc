"""Build the quantized and LoRA sample models (see docs/quantization.md).

Run from the repository root:

    python sample_models/build_quant.py

- ``quant_int8.keras``: Embedding -> Dense -> LayerNormalization -> Dense, quantized to int8 with
  ``model.quantize("int8")`` and saved uncompiled. Keras creates the int8 kernels, embeddings and
  their scales non-trainable: only the biases and the LayerNormalization train.
- ``lora.keras``: the same float model with ``enable_lora(4)`` on both Dense layers, compiled and
  trained one step (so it carries Adam state), then saved. Keras merges the adapters into the
  kernels on save; loading re-creates them as zeros and freezes the kernels.

Random init, no downloads; weights are deterministic (``keras.utils.set_random_seed(0)``).
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # before importing keras

import sys
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True

import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402


def _float_model(name):
    inp = keras.Input((12,), dtype="int32", name="tokens")
    x = layers.Embedding(100, 16, name="embed")(inp)
    x = layers.Dense(32, activation="relu", name="fc1")(x)
    x = layers.LayerNormalization(name="norm")(x)
    x = layers.Dense(4, name="head")(x)
    return keras.Model(inp, x, name=name)


def quant_int8():
    keras.utils.set_random_seed(0)
    model = _float_model("quant_int8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "InputLayer does not have a `quantize` method"
        model.quantize("int8")
    return model


def lora():
    keras.utils.set_random_seed(0)
    model = _float_model("lora")
    model.get_layer("fc1").enable_lora(4)
    model.get_layer("head").enable_lora(4)
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 100, size=(8, 12)).astype("int32")
    y = rng.standard_normal((8, 12, 4)).astype("float32")
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    return model


def main():
    for build in (quant_int8, lora):
        model = build()
        path = HERE / f"{build.__name__}.keras"
        model.save(path)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the sample must load cleanly
            loaded = keras.saving.load_model(path)
        trainable = sum(int(np.prod(v.shape)) for v in loaded.trainable_variables)
        print(f"wrote {path.name}: {len(loaded.weights)} variables, {trainable:,} trainable params")


if __name__ == "__main__":
    main()
