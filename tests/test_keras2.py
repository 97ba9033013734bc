"""Keras 2 files (written IN the tests by tf-keras, random init) are first-class: full `.h5`
models, Keras 2 `.keras` archives and weights files list exactly as tf-keras loads them -- names,
shapes, dtypes, effective trainable state (in `model.trainable_weights`) and `model.weights`
order -- and the same model in `.h5` and `.keras` gives the same listing (`diff` finds nothing).

tf-keras is the oracle for Keras 2 files, as Keras 3 is for Keras 3 files (tests/test_oracle.py).
"""

from __future__ import annotations

import os
import warnings

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
tf_keras = pytest.importorskip("tf_keras")

from typer.testing import CliRunner  # noqa: E402

from varctl.cli import app  # noqa: E402
from varctl.formats import open_model  # noqa: E402

K, L = tf_keras, tf_keras.layers


def dense():
    i = K.Input((4,))
    return K.Model(i, L.Dense(2, name="out")(L.Dense(3, name="hidden")(i)), name="dense_model")


def batchnorm():
    i = K.Input((4,))
    x = L.BatchNormalization(name="bn1")(L.Dense(3, name="d")(i))
    bn2 = L.BatchNormalization(name="bn2", center=False)
    x = bn2(x)
    bn2.trainable = False
    return K.Model(i, L.Dense(1, name="head")(x))


def _mobilenet():
    return K.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, include_top=False, weights=None)


def transfer():
    """The transfer-learning guide: a frozen base called with training=False, a new head."""
    base = _mobilenet()
    base.trainable = False
    i = K.Input((32, 32, 3))
    x = L.GlobalAveragePooling2D()(base(i, training=False))
    return K.Model(i, L.Dense(1, name="head")(x))


def finetuned():
    """The guide's fine-tuning step: the base unfrozen above layer 100 (a mixed nested model)."""
    base = _mobilenet()
    base.trainable = True
    for layer in base.layers[:100]:
        layer.trainable = False
    i = K.Input((32, 32, 3))
    x = L.GlobalAveragePooling2D()(base(i, training=False))
    return K.Model(i, L.Dense(1, name="head")(x))


def recurrent():
    i = K.Input((5, 3))
    x = L.LSTM(4, return_sequences=True, name="lstm")(i)
    x = L.GRU(4, return_sequences=True, name="gru")(x)
    x = L.Bidirectional(L.LSTM(2, return_sequences=True, name="bl"), name="bi_lstm")(x)
    x = L.Bidirectional(L.GRU(2, name="bg"), name="bi_gru")(x)
    return K.Model(i, x)


def _attention(frozen):
    q = K.Input((4, 6))
    mha = L.MultiHeadAttention(2, 3, name="mha")
    x = L.Dense(2, name="head")(mha(q, q))
    model = K.Model(q, x)
    mha.trainable = not frozen
    return model


def attention():
    return _attention(False)


def attention_frozen():
    """tf-keras trains 2 variables (the head): a frozen layer's sublayers do not train in Keras 2."""
    return _attention(True)


def bidirectional_frozen():
    i = K.Input((5, 3))
    bi = L.Bidirectional(L.LSTM(2, return_sequences=True, name="r"), name="bi")
    x = bi(i)
    bi.trainable = False
    bi.forward_layer.trainable = True  # gated by `bi` in Keras 2
    return K.Model(i, L.Dense(1, name="head")(x))


def nested():
    """A layer unfrozen inside a frozen submodel."""
    inner_i = K.Input((4,))
    h = L.Dense(3, name="d2")(L.BatchNormalization(name="bn")(L.Dense(3, name="d1")(inner_i)))
    inner = K.Model(inner_i, h, name="base")
    inner.trainable = False
    inner.get_layer("d2").trainable = True
    i = K.Input((4,))
    return K.Model(i, L.Dense(1, name="head")(inner(i)), name="top")


def top_frozen():
    """A frozen top Functional with one layer unfrozen again: tf-keras drops the model's flag."""
    i = K.Input((3,))
    m = K.Model(i, L.Dense(1, name="c")(L.Dense(2, name="a")(i)), name="fun")
    m.trainable = False
    m.get_layer("c").trainable = True
    return m


def top_sequential_frozen():
    m = K.Sequential(
        [K.Input((3,)), L.Dense(2, name="a"), L.BatchNormalization(name="bn"), L.Dense(1, name="b")],
        name="seq",
    )
    m.trainable = False
    return m


ZOO2 = {
    f.__name__: f
    for f in (
        dense,
        batchnorm,
        transfer,
        finetuned,
        recurrent,
        attention,
        attention_frozen,
        bidirectional_frozen,
        nested,
        top_frozen,
        top_sequential_frozen,
    )
}


def _leaf(v) -> str:
    return v.name.split("/")[-1].split(":")[0]


def tf_keras_rows(model):
    """[(path, shape, dtype, trainable)] of a tf-keras model in `model.weights` order; the path is
    the enclosing layer names (tracked sublayers) then the variable's own name."""
    names: dict[int, str] = {}

    def walk(layer, prefix):
        for v in layer._trainable_weights + layer._non_trainable_weights:
            names.setdefault(id(v), prefix + _leaf(v))
        for sub in layer._flatten_layers(include_self=False, recursive=False):
            walk(sub, prefix + sub.name + "/")

    walk(model, "")
    trainable = {id(v) for v in model.trainable_weights}
    return [
        (names[id(v)], tuple(int(d) for d in v.shape), v.dtype.name, id(v) in trainable)
        for v in model.weights
    ]


def _load(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return K.models.load_model(path, compile=False)


@pytest.fixture(scope="session")
def k2_dir(tmp_path_factory):
    """Every Keras 2 model saved by tf-keras as .h5, .keras, legacy weights (_w.h5) and
    .weights.h5, with what tf-keras reports after loading each model file."""
    out = tmp_path_factory.mktemp("keras2")
    expected = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, build in ZOO2.items():
            K.utils.set_random_seed(0)
            model = build()
            for ext in ("h5", "keras"):
                model.save(out / f"{name}.{ext}")
                expected[name, ext] = tf_keras_rows(_load(str(out / f"{name}.{ext}")))
            model.save_weights(out / f"{name}_w.h5")
            model.save_weights(out / f"{name}.weights.h5")
            expected[name, "model"] = tf_keras_rows(model)
    return out, expected


def _rows(info):
    return [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]


@pytest.mark.parametrize("ext", ["h5", "keras"])
@pytest.mark.parametrize("name", sorted(ZOO2))
def test_keras2_model_lists_as_tf_keras_loads_it(k2_dir, name, ext):
    folder, expected = k2_dir
    info = open_model(str(folder / f"{name}.{ext}"))
    assert info.keras_version.startswith("2.")
    assert _rows(info) == expected[name, ext]  # order included: row i is get_weights()[i]
    assert not any("outside Keras" in w or "not known" in w or "generic" in w for w in info.warnings)
    assert not any("rebuilds its sublayers" in w for w in info.warnings)  # a Keras 3 rule only


@pytest.mark.parametrize("name", sorted(ZOO2))
def test_same_keras2_model_in_h5_and_keras_lists_the_same(k2_dir, name):
    folder, _ = k2_dir
    a, b = folder / f"{name}.h5", folder / f"{name}.keras"
    assert _rows(open_model(str(a))) == _rows(open_model(str(b)))
    result = CliRunner().invoke(app, ["diff", str(a), str(b), "-f", "json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["identical"] and doc["summary"]["added"] == doc["summary"]["removed"] == 0


def test_keras2_facts_the_issue_names(k2_dir):
    folder, _ = k2_dir
    mobile = open_model(str(folder / "transfer.keras"))
    depthwise = [v for v in mobile.variables if v.layer.endswith("_depthwise")]
    assert len(depthwise) == 17 and all(v.name == "depthwise_kernel" for v in depthwise)
    frozen = open_model(str(folder / "attention_frozen.h5"))
    assert [v.path for v in frozen.variables if v.trainable] == ["head/kernel", "head/bias"]
    assert [v.layer for v in frozen.variables][:8:2] == [
        "mha/query",
        "mha/key",
        "mha/value",
        "mha/attention_output",
    ]
    assert {v.cause.value for v in frozen.variables if not v.trainable} == {"layer"}
    result = CliRunner().invoke(app, ["check", str(folder / "transfer.keras"), "--only-keras-layers"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(ZOO2))
def test_keras2_legacy_weights_file_has_the_models_variables(k2_dir, name):
    """A legacy weights file (`save_weights("m.h5")`) records names but no architecture and no
    flags: the variables are the model's, trainable unknown. Its order is the file's own
    (weight_names, trainable first per top-level layer): without the architecture the model's
    order cannot be rebuilt, so only the set is compared."""
    folder, expected = k2_dir
    info = open_model(str(folder / f"{name}_w.h5"))
    assert info.format.value == "weights"
    want = [(p, s, d) for p, s, d, _t in expected[name, "model"]]
    got = [(v.path, v.shape, v.dtype) for v in info.variables]
    assert sorted(got) == sorted(want)
    assert all(v.trainable is None for v in info.variables)


@pytest.mark.parametrize("name", sorted(ZOO2))
def test_keras2_weights_h5_has_the_models_shapes(k2_dir, name):
    """`save_weights("m.weights.h5")` in tf-keras writes the archive layout (`layers/.../vars/N`):
    no names, no flags; every variable of the model is there, with its shape and dtype."""
    folder, expected = k2_dir
    info = open_model(str(folder / f"{name}.weights.h5"))
    got = sorted((v.shape, v.dtype) for v in info.variables)
    assert got == sorted((s, d) for _p, s, d, _t in expected[name, "model"])


@pytest.mark.parametrize("ext", ["h5", "keras"])
def test_freezing_keras2_attention_loads_frozen_in_tf_keras(k2_dir, tmp_path, ext):
    """Keras 2 keeps a frozen MultiHeadAttention frozen (Keras 3 would rebuild its sublayers
    trainable), so the freeze is allowed, and tf-keras loads it with only the head trainable and
    the same weights."""
    folder, _ = k2_dir
    out = tmp_path / f"frozen.{ext}"
    result = CliRunner().invoke(
        app, ["freeze", str(folder / f"attention.{ext}"), "-p", "mha", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    before, after = _load(str(folder / f"attention.{ext}")), _load(str(out))
    assert [_leaf(v) for v in after.trainable_weights] == ["kernel", "bias"]
    assert [v.name.split("/")[0] for v in after.trainable_weights] == ["head", "head"]
    assert all((a == b).all() for a, b in zip(before.get_weights(), after.get_weights(), strict=True))
    assert _rows(open_model(str(out))) == tf_keras_rows(after)


def test_freezing_a_compiled_keras2_archive_drops_its_optimizer_state_with_the_true_reason(tmp_path):
    """tf-keras saves `iteration` and the slots with no `learning_rate`: varctl does not remap that
    layout, says so (not "does not match"), and tf-keras loads the output compiled-free and frozen."""
    import json

    import numpy as np

    K.utils.set_random_seed(0)
    model = dense()
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 4)), np.zeros((4, 2)), epochs=1, verbose=0)
    src, out = tmp_path / "m.keras", tmp_path / "out.keras"
    model.save(src)
    result = CliRunner().invoke(app, ["freeze", str(src), "-p", "hidden", "-o", str(out), "-f", "json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["optimizer_state"] == "dropped"
    assert any("written by Keras 2 (tf-keras)" in n for n in plan["notes"]), plan["notes"]
    assert not any("does not match" in n for n in plan["notes"])
    loaded = _load(str(out))
    assert [w.name for w in loaded.trainable_weights] == [w.name for w in loaded.get_layer("out").weights]
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        assert np.array_equal(a, b)
