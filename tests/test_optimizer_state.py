"""Optimizer state after freeze/unfreeze: for each Keras optimizer, the output loads without the
'Skipping variable loading for optimizer' warning, still-trainable variables keep their slots,
newly trainable ones start fresh, and a resumed fit works."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from varctl.cli import app

keras_oracle = pytest.importorskip("tests.keras_oracle")
pytestmark = pytest.mark.slow  # the fixture trains 14 models (~17 s, eagerly)
import keras  # noqa: E402
from keras import layers as L  # noqa: E402

OPTIMIZERS = {
    "sgd": lambda: keras.optimizers.SGD(),
    "sgd_momentum": lambda: keras.optimizers.SGD(momentum=0.9, nesterov=True),
    "adam": lambda: keras.optimizers.Adam(),
    "adam_amsgrad": lambda: keras.optimizers.Adam(amsgrad=True),
    "adamw": lambda: keras.optimizers.AdamW(),
    "rmsprop": lambda: keras.optimizers.RMSprop(),
    "rmsprop_centered_momentum": lambda: keras.optimizers.RMSprop(momentum=0.5, centered=True),
    "adagrad": lambda: keras.optimizers.Adagrad(),
    "nadam": lambda: keras.optimizers.Nadam(),
    "adamax": lambda: keras.optimizers.Adamax(),
    "adadelta": lambda: keras.optimizers.Adadelta(),
    "lion": lambda: keras.optimizers.Lion(),
    "ftrl": lambda: keras.optimizers.Ftrl(),
    "adam_accumulating": lambda: keras.optimizers.Adam(gradient_accumulation_steps=2),
}
FRESH = {"accumulator": 0.1}  # Adagrad/Ftrl start their accumulators at 0.1; everything else at 0


def _model():
    base = keras.Sequential(
        [keras.Input((4,)), L.Dense(5, name="b1"), L.BatchNormalization(name="bn"), L.Dense(5, name="b2")],
        name="base",
    )
    base.get_layer("b1").trainable = False
    i = keras.Input((4,))
    x = L.Dense(3, name="mid")(base(i))
    return keras.Model(i, L.Dense(1, name="head")(x), name="m")


def _slots(model):
    """{(hierarchical variable path, slot name): value} plus the optimizer's scalars."""
    names = keras_oracle.hierarchical_paths(model)
    by_key = {v.path.replace("/", "_"): names[id(v)] for v in model.variables}
    out = {}
    extras = 0
    for ov in model.optimizer.variables:
        if ov.name in ("iteration", "learning_rate"):
            out[ov.name] = np.array(ov)
            continue
        for key, path in by_key.items():
            if ov.name.startswith(key + "_"):
                out[(path, ov.name[len(key) + 1 :])] = np.array(ov)
                break
        else:  # optimizer-wide state (Nadam's u_product), auto-named differently on each load
            out[("extra", extras)] = np.array(ov)
            extras += 1
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("opt")
    rng = np.random.default_rng(0)
    x, y = rng.random((8, 4)).astype("float32"), rng.random((8, 1)).astype("float32")
    paths = {}
    for name, make in OPTIMIZERS.items():
        keras.utils.set_random_seed(0)
        model = _model()
        model.compile(optimizer=make(), loss="mse", run_eagerly=True)  # no tf.function tracing: 4x faster
        model.fit(x, y, batch_size=4, epochs=1, verbose=0)
        paths[name] = out / f"{name}.keras"
        model.save(paths[name])
    return paths


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_remap_keeps_slots_and_loads_cleanly(trained, tmp_path, name):
    src = trained[name]
    mid = tmp_path / "mid.keras"
    out = tmp_path / "out.keras"
    env = {"NO_COLOR": "1"}
    r1 = CliRunner().invoke(app, ["unfreeze", str(src), "-p", "b1", "-o", str(mid)], env=env)
    assert r1.exit_code == 0, r1.output
    r2 = CliRunner().invoke(app, ["freeze", str(mid), "-p", "mid", "-o", str(out)], env=env)
    assert r2.exit_code == 0, r2.output
    assert "remapped" in r1.stderr and "remapped" in r2.stderr

    original = keras_oracle.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        edited = keras.saving.load_model(str(out))
    before, after = _slots(original), _slots(edited)
    trainable = keras_oracle.hierarchical_paths(edited)
    now = sorted(trainable[id(v)] for v in edited.trainable_variables)
    assert "base/b1/kernel" in now and "mid/kernel" not in now
    for key, value in after.items():
        if key in before:
            np.testing.assert_array_equal(value, before[key], err_msg=str(key))
        else:
            assert key[0].startswith("base/b1/"), key  # only b1's slots are new
            np.testing.assert_array_equal(
                value, np.full_like(value, FRESH.get(key[1], 0.0)), err_msg=str(key)
            )
    assert not any(k[0].startswith("mid/") for k in after if isinstance(k, tuple))
    edited.fit(np.ones((4, 4)), np.ones((4, 1)), epochs=1, verbose=0)  # a resumed fit works
