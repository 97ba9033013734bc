"""varctl's static view of a file equals what Keras reports after loading the same file: names,
shapes, dtypes, effective trainable state, and `model.weights` order (row i of the listing is
`model.get_weights()[i]`) in every format."""

from __future__ import annotations

import pytest

from tests.conftest import SAMPLES
from tests.zoo import ZOO

keras_oracle = pytest.importorskip("tests.keras_oracle")

from varctl.formats import open_model  # noqa: E402


def _rows(info, *, generic_ok=False):
    return [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]


@pytest.mark.parametrize("name", sorted(ZOO))
def test_keras_archive_matches_keras(zoo_dir, name):
    info = open_model(str(zoo_dir / f"{name}.keras"))
    assert _rows(info) == keras_oracle.expected(str(zoo_dir / f"{name}.keras"))


@pytest.mark.parametrize("name", sorted(ZOO))
def test_legacy_h5_matches_keras(zoo_dir, name):
    path = zoo_dir / f"{name}.h5"
    if not path.exists():
        pytest.skip("Keras cannot round-trip this model through legacy .h5")
    info = open_model(str(path))
    assert _rows(info) == keras_oracle.expected(str(path))  # order checked, not sorted away


SAMPLE_NAMES = ["seed_dense", "seed_explicit", "seed_custom_layer", "transfer_learning", "batchnorm"]


def _without_generic_names(rows):
    # A custom layer's variables are listed as `layer/vars/N` by the static reader: compare the
    # layer part, shape, dtype and trainable state only.
    out = []
    for path, shape, dtype, trainable in rows:
        layer = path.split("/vars/")[0] if "/vars/" in path else path.rsplit("/", 1)[0]
        out.append((layer, shape, dtype, trainable))
    return out


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_keras_matches_keras(samples_on_path, name):
    path = str(SAMPLES / f"{name}.keras")
    got, want = _rows(open_model(path)), keras_oracle.expected(path, compile=True)
    if name.startswith("seed_") and name != "seed_dense":
        got, want = _without_generic_names(got), _without_generic_names(want)
    assert got == want


def test_custom_nontrainable_without_optimizer_state_is_unknown(samples_on_path, tmp_path):
    """Without a trained optimizer nothing records add_weight(trainable=False): varctl says the
    state is unknown (issue 17) instead of stating add_weight's default as a fact."""
    import keras

    model = keras_oracle.load(str(SAMPLES / "seed_explicit.keras"), compile=False)
    path = tmp_path / "uncompiled.keras"
    model.save(path)
    info = open_model(str(path))
    assert [v.trainable for v in info.variables] == [None, None]
    assert [v.reason for v in info.variables] == ["unknown: probably trainable: add_weight's default"] * 2
    assert any("trainable state of 2 variables is unknown" in w for w in info.warnings)
    assert [v.trainable for v in model.weights] == [True, False]  # what Keras really has
    del keras


def test_optimizer_inference_names_the_variable(samples_on_path):
    info = open_model(str(SAMPLES / "seed_explicit.keras"))
    assert [v.trainable for v in info.variables] == [True, False]
    assert "inferred from the saved optimizer state" in (info.variables[1].reason or "")
    assert any("explicit_variables/vars/1" in w for w in info.warnings)


@pytest.mark.parametrize("name", SAMPLE_NAMES)
def test_sample_legacy_h5_matches_keras(samples_on_path, name):
    """Legacy files store variable names, so custom layers compare name for name too."""
    path = str(SAMPLES / f"{name}.h5")
    assert _rows(open_model(path)) == keras_oracle.expected(path)


def test_json_index_and_cause_follow_model_weights(zoo_dir):
    """`index` is the position in model.weights, kept by a selection; `cause` names the reason."""
    info = open_model(str(zoo_dir / "attention.keras"))
    doc = info.to_dict()
    assert doc["schema"] == "varctl.list/2"
    assert [v["index"] for v in doc["variables"]] == list(range(len(info.variables)))
    chosen = [v for v in info.variables if v.layer.startswith("mha_gated")]
    sub = info.to_dict(chosen)["variables"]
    want = [(i, v.path) for i, v in enumerate(info.variables) if v.layer.startswith("mha_gated")]
    assert [(v["index"], v["path"]) for v in sub] == want
    # MultiHeadAttention: query, key, gate, value, attention_output (Keras saves key first)
    assert [v["layer"] for v in sub][::2] == [
        f"mha_gated/{n}" for n in ("query", "key", "gate", "value", "attention_output")
    ]
    frozen = open_model(str(zoo_dir / "frozen_quirks.keras")).to_dict()["variables"]
    causes = {(v["path"], v["cause"]) for v in frozen}
    assert ("bn/moving_mean", "nature") in causes and ("bn/gamma", "layer") in causes
    assert ("mha/query/kernel", "trainable") in causes  # Keras 3 rebuilds MHA's sublayers trainable


@pytest.mark.parametrize("name", sorted(ZOO))
def test_same_model_in_h5_and_keras_lists_the_same(zoo_dir, name):
    """One order for every format: the .keras and .h5 of one model list identically, and `diff`
    reports no change between them."""
    import json

    from typer.testing import CliRunner

    from varctl.cli import app

    a, b = zoo_dir / f"{name}.h5", zoo_dir / f"{name}.keras"
    if not a.exists():
        pytest.skip("Keras cannot round-trip this model through legacy .h5")
    assert _rows(open_model(str(a))) == _rows(open_model(str(b)))
    result = CliRunner().invoke(app, ["diff", str(a), str(b), "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["identical"], doc["changes"][:3]
