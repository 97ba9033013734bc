"""Custom layers and subclassed models (issue 17): exact where the file decides, unknown where not.

The models come from tests/custom_layers.py, saved by Keras 3.15 as `.keras` and `.h5`; Keras
loading each file is the oracle. Static `list` may say "unknown" (counted apart), never a
trainable flag Keras contradicts after loading.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections import Counter
from pathlib import Path

import pytest

keras = pytest.importorskip("keras")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import custom_layers as C  # noqa: E402  (registers the classes Keras loads the files with)
import numpy as np  # noqa: E402

from tests import keras_oracle  # noqa: E402
from varctl.formats import open_model  # noqa: E402
from varctl.model import Cause  # noqa: E402

CUSTOM = str(Path(C.__file__))
# name -> formats Keras writes and reads back (bf16.h5: Keras writes it but cannot read it back)
LOADABLE = {
    "custom_plain": ("keras", "h5"),
    "custom_frozen": ("keras", "h5"),
    "custom_save": ("keras", "h5"),
    "subclassed": ("keras",),  # a subclassed model's legacy .h5 is not loadable by name
    "bf16": ("keras",),
}


def _functional(frozen: tuple[str, ...]) -> keras.Model:
    inp = keras.Input((4,))
    custom = [
        C.Scale(name="scale"),
        C.InitWeights(name="initw"),
        C.Holder(name="holder"),
        C.BuildSub(name="buildsub"),
    ]
    x = custom[0](inp)
    x = keras.layers.Dense(4, name="mid")(x)
    x = custom[2](custom[1](x))
    x = custom[3](keras.layers.Dense(4, name="after")(x))
    model = keras.Model(inp, x, name="fn")
    for layer in custom:
        if layer.name in frozen:
            layer.trainable = False
    return model


def _models() -> dict[str, keras.Model]:
    inp = keras.Input((4,))
    save = keras.Model(inp, keras.layers.Dense(2, name="out")(C.CustomSave(name="custom_dense")(inp)))
    outer = C.Outer(name="outer")
    outer(np.zeros((1, 4), "float32"))
    inp = keras.Input((4,))
    bf16 = keras.Model(inp, keras.layers.Dense(3, dtype="bfloat16", name="half")(inp))
    inp = keras.Input((4,))
    trained = keras.Model(inp, keras.layers.Dense(1, name="head")(C.Scale(name="scale")(inp)))
    trained.compile(optimizer="adam", loss="mse")
    trained.fit(np.ones((4, 4), "float32"), np.ones((4, 1), "float32"), epochs=1, verbose=0)
    return {
        "custom_plain": _functional(()),
        "custom_frozen": _functional(("scale", "initw", "holder", "buildsub")),
        "custom_save": save,
        "subclassed": outer,
        "bf16": bf16,
        "trained": trained,
    }


@pytest.fixture(scope="session")
def custom_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("custom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, model in _models().items():
            model.save(out / f"{name}.keras")
            model.save(out / f"{name}.h5")
    return out


CASES = [(n, f) for n, fmts in LOADABLE.items() for f in fmts]


def _keras_rows(path: Path):
    """Keras's view, keyed like varctl's `storage` for `.keras` (group/vars/key), else in order."""
    model = keras_oracle.load(str(path))
    trainable = {id(v) for v in model.trainable_variables}
    if path.suffix == ".keras":
        return {
            f"{group}/vars/{key}": (tuple(int(d) for d in v.shape), str(v.dtype), id(v) in trainable, v)
            for group, key, v in keras_oracle.save_order(model)
        }, model
    return keras_oracle.rows(model), model


@pytest.mark.parametrize(("name", "fmt"), CASES, ids=[f"{n}.{f}" for n, f in CASES])
def test_static_never_contradicts_keras(custom_dir, name, fmt):
    path = custom_dir / f"{name}.{fmt}"
    info = open_model(str(path))
    expected, model = _keras_rows(path)
    unknown = 0
    if fmt == "keras":
        # every stored value is listed, with its shape and dtype; a stated flag is Keras's
        assert len(info.variables) == len(expected)
        for v in info.variables:
            shape, dtype, trained, _ = expected[v.storage]
            assert (v.shape, v.dtype) == (shape, dtype), v.path
            assert v.trainable in (None, trained), (v.path, v.cause, v.detail)
            unknown += v.trainable is None
    else:
        assert [(v.shape, v.dtype) for v in info.variables] == [(r[1], r[2]) for r in expected]
        for v, (kpath, _, _, trained) in zip(info.variables, expected, strict=True):
            assert v.trainable in (None, trained), (v.path, v.cause, v.detail)
            unknown += v.trainable is None
            layer = next(l for l in info.layers if l.path == v.layer) if v.layer else None
            if layer is not None and layer.pointer is not None:  # the config names it: so must we
                assert v.path == kpath
    totals = info.totals()
    assert totals.get("unknown", 0) == sum(v.params for v in info.variables if v.trainable is None)
    assert totals["trainable"] + totals["non_trainable"] == totals["params"]  # list/2 meaning kept
    for w in info.warnings:
        assert "`?`" not in w and "(?)" not in w
    assert all(l.class_name != "?" for l in info.layers)


def test_frozen_custom_layers_known_where_keras_decides(custom_dir):
    """A frozen custom layer's own variables are frozen by Keras (LAYER: known, even
    add_weight(trainable=True) ones); its sublayers without config entry are rebuilt by its code,
    so their state is unknown in Keras 3 (trainable here, but only the code says so)."""
    for fmt in ("keras", "h5"):
        info = open_model(str(custom_dir / f"custom_frozen.{fmt}"))
        by_layer: dict[str, set] = {}
        for v in info.variables:
            by_layer.setdefault(v.layer.split("/")[0], set()).add(v.cause)
        assert by_layer["scale"] == by_layer["initw"] == {Cause.LAYER}
        assert by_layer["holder"] == {Cause.UNKNOWN}  # sublayers, one of them frozen by code
        assert by_layer["buildsub"] == {Cause.LAYER, Cause.UNKNOWN}  # own gain / the Dense of build()
        assert by_layer["mid"] == {Cause.TRAINABLE}


def test_unknown_is_counted_and_explained(custom_dir, cli):
    path = custom_dir / "custom_plain.keras"
    data = json.loads(cli("list", "-f", "json", path).stdout)
    rows = [r for r in data["variables"] if r["trainable"] is None]
    assert rows and all(r["cause"] == "unknown" and r["reason"].startswith("unknown: probably") for r in rows)
    assert data["totals"]["unknown"] == sum(r["params"] for r in rows)
    table = cli("list", path)
    assert f"Unknown: {data['totals']['unknown']:,} params" in table.stdout
    assert "unknown" in table.stdout
    # one warning per cause: per unknown class, one for the sublayers the file stores no class for
    warns = [w for w in data["warnings"] if "is not known to varctl" in w or "sublayers held" in w]
    assert len(warns) == 4, warns
    for w in warns:
        assert "`scale`" in w or "`initw`" in w or "`buildsub`" in w or "`holder/" in w
        assert "--load --custom-objects" in w and "optimizer state" in w
    sub = next(w for w in warns if "sublayers held" in w)
    assert "not their class" in sub and "vars/0" in sub


def test_known_models_have_no_unknown_line(custom_dir, cli):
    out = cli("list", custom_dir / "bf16.keras").stdout
    assert "Unknown:" not in out


def test_check_on_unknown_cannot_assert(custom_dir, cli):
    path = custom_dir / "custom_plain.keras"
    res = cli("check", "--trainable", "scale", "-f", "json", path, code=1)
    outcome = json.loads(res.stdout)
    text = json.dumps(outcome)
    assert "trainable state unknown for 2 variables" in text and "--load" in text
    cli("check", "--frozen", "scale", path, code=1)
    # known variables still pass
    cli("check", "--trainable", "mid", path)
    # a frozen custom layer is known frozen
    cli("check", "--frozen", "scale", custom_dir / "custom_frozen.keras")


def test_custom_save_keys_listed_not_refused(custom_dir, cli):
    data = json.loads(cli("list", "-f", "json", custom_dir / "custom_save.keras").stdout)
    row = next(r for r in data["variables"] if r["layer"] == "custom_dense")
    assert row["name"] == "variables" and row["shape"] == [4, 4] and row["trainable"] is None
    assert any("save_own_variables" in w and "`custom_dense`" in w for w in data["warnings"])


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_load_lists_every_weight_and_flags_unsaved(custom_dir, cli, fmt):
    path = custom_dir / f"custom_save.{fmt}"
    data = json.loads(cli("list", "--load", "--custom-objects", CUSTOM, "-f", "json", path).stdout)
    model = keras_oracle.load(str(path))
    assert [r["path"] for r in data["variables"]] == [r[0] for r in keras_oracle.rows(model)]
    flagged = [w for w in data["warnings"] if "not written" in w]
    if fmt == "keras":
        assert (
            len(flagged) == 1 and "`custom_dense/bias`" in flagged[0] and "`custom_dense/extra`" in flagged[0]
        )
        assert "`custom_dense/kernel`" not in flagged[0]
    else:  # legacy .h5 writes every weight
        assert not flagged


def test_subclassed_frozen_dense_not_stated_trainable(custom_dir):
    info = open_model(str(custom_dir / "subclassed.keras"))
    assert all(v.trainable is None for v in info.variables)
    assert {l.class_name for l in info.layers} == {"(not stored)"}


def test_bfloat16_in_every_format(custom_dir):
    for fmt in ("keras", "h5"):
        info = open_model(str(custom_dir / f"bf16.{fmt}"))
        assert {v.dtype for v in info.variables} == {"bfloat16"}, fmt
        assert all(v.itemsize == 2 for v in info.variables)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_optimizer_state_settles_unknown(custom_dir, fmt):
    """A compiled, trained model's optimizer slots settle `add_weight(trainable=False)` either way."""
    path = custom_dir / f"trained.{fmt}"
    info = open_model(str(path))
    model = keras_oracle.load(str(path), compile=False)
    assert [v.trainable for v in info.variables] == [r[3] for r in keras_oracle.rows(model)]
    assert "unknown" not in {v.cause.value for v in info.variables}
    assert not any("is unknown" in w for w in info.warnings)


def test_freeze_plan_does_not_claim_unknown(custom_dir, cli, tmp_path):
    out = tmp_path / "o.keras"
    res = cli("freeze", "-p", "mid", "-o", out, custom_dir / "custom_plain.keras")
    text = res.stdout + res.stderr
    assert "unknown:" in text and "params" in text
    assert os.path.exists(out)


# -- Keras 2 (tf-keras) files: a frozen layer gates everything it holds ---------------------------


def _tf_keras_models():
    tfk = pytest.importorskip("tf_keras")

    @tfk.utils.register_keras_serializable("varctl_custom2")
    class Holder2(tfk.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.proj = tfk.layers.Dense(3)

        def build(self, input_shape):
            self.gain = self.add_weight(name="gain", shape=(3,))
            self.stat = self.add_weight(name="stat", shape=(3,), trainable=False)

        def call(self, x):
            return self.proj(x) * self.gain + self.stat

    out = {}
    for frozen in (False, True):
        inp = tfk.Input((4,))
        layer = Holder2(name="holder")
        model = tfk.Model(inp, tfk.layers.Dense(2, name="head")(layer(inp)))
        layer.trainable = not frozen
        out["k2_frozen" if frozen else "k2_plain"] = model
    return tfk, out


@pytest.mark.parametrize("ext", ["h5", "keras"])
def test_keras2_custom_layers_never_contradict_tf_keras(tmp_path_factory, ext):
    from tests.test_keras2 import tf_keras_rows

    tfk, models = _tf_keras_models()
    folder = tmp_path_factory.mktemp("custom2")
    for name, model in models.items():
        path = folder / f"{name}.{ext}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(path)
            loaded = tfk.models.load_model(path, compile=False)
        expected = tf_keras_rows(loaded)
        info = open_model(str(path))
        # a custom layer's variables are ordered and (in .keras) named after their unknown state:
        # compared as multisets of (shape, dtype, trainable); a stated flag must be Keras's
        want = Counter((r[1], r[2], r[3]) for r in expected)
        got = Counter((v.shape, v.dtype, v.trainable) for v in info.variables if v.trainable is not None)
        assert not got - want, (name, got - want)
        assert sorted((v.shape, v.dtype) for v in info.variables) == sorted((r[1], r[2]) for r in expected)
        if name == "k2_frozen":  # Keras 2 gates the sublayer by its frozen parent: known
            assert all(v.trainable is not None for v in info.variables)
