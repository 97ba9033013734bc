"""Build sample_models/seed_broken_layer.keras: the seed article's third example, as written there.

Run from the repository root, with the project venv:

    python sample_models/build_broken.py

`MyCustomLayer` (varctl_samples_broken.py) keeps its variables in raw `tf.Variable` attributes,
which Keras 3 neither trains nor saves: the archive holds only the Dense layer's kernel and bias.
The build checks exactly that, so the sample keeps showing the pitfall.
"""

import os

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # must be set before importing tensorflow

import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.dont_write_bytecode = True  # don't leave __pycache__/ in sample_models/
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from varctl_samples_broken import MyCustomLayer  # noqa: E402

OUT = HERE / "seed_broken_layer.keras"


def main():
    tf.keras.utils.set_random_seed(0)
    # The article's model, with an Input so that it is built before saving.
    model = tf.keras.Sequential(
        [tf.keras.Input((16,)), MyCustomLayer(units=16), tf.keras.layers.Dense(1)],
        name="seed_broken_layer",
    )
    print("model.trainable_variables:", [v.path for v in model.trainable_variables])
    model.compile(optimizer="adam", loss="mse")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16)).astype("float32")
    y = rng.standard_normal((8, 1)).astype("float32")
    model.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    OUT.unlink(missing_ok=True)
    model.save(OUT)

    loaded = tf.keras.models.load_model(OUT)
    assert [v.path for v in loaded.weights] == ["dense/kernel", "dense/bias"], loaded.weights
    w_before = model.layers[0].w.numpy()
    assert not np.array_equal(w_before, loaded.layers[0].w.numpy())  # `w` was not saved
    with zipfile.ZipFile(OUT) as zf:
        assert zf.getinfo("model.weights.h5").compress_type == zipfile.ZIP_STORED
    print(
        f"{OUT.name}: {OUT.stat().st_size / 1024:.1f} KiB, saved variables: "
        f"{[v.path for v in loaded.weights]} (MyCustomLayer's w and b are lost)"
    )


if __name__ == "__main__":
    main()
