"""TensorFlow SavedModel directories and checkpoints, built here once per session, list correctly.

A SavedModel from `model.export` records the model's trainable_variables (the effective state);
one from `tf.saved_model.save` only each variable's own flag. Checkpoints record no flag at all.
Both are read-only for varctl.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from varctl.cli import app
from varctl.errors import EXIT_UNREADABLE, EXIT_USAGE, UnsupportedFormat
from varctl.formats import LoadOptions, open_model, require_editable

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
runner = CliRunner()


def varctl(*args: str):
    result = runner.invoke(app, list(args), env=ENV, prog_name="varctl")
    assert "Traceback" not in result.output
    return result


def _frozen_base_model():
    """A frozen nested base (Dense + BatchNormalization) under a trainable head, trained one step."""
    L = keras.layers
    base = keras.Sequential(
        [keras.Input((4,)), L.Dense(3, name="d1"), L.BatchNormalization(name="bn")], name="base"
    )
    base.trainable = False
    i = keras.Input((4,))
    model = keras.Model(i, L.Dense(1, name="head")(base(i)), name="top")
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.ones((4, 4), "float32"), np.ones((4, 1), "float32"), verbose=0)
    return model


@pytest.fixture(scope="session")
def tf_inputs(tmp_path_factory):
    """SavedModels and checkpoints of the seed article's examples and a frozen-base Keras model."""
    out = tmp_path_factory.mktemp("tf_inputs")
    keras.utils.set_random_seed(0)
    model = _frozen_base_model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.export(str(out / "exported"), verbose=False)
        tf.saved_model.save(model, str(out / "tf_saved"))
        # The seed article's second example: bare tf.Variables, one of them non-trainable.
        module = tf.Module()
        module.W = tf.Variable(np.random.randn(5, 3), name="custom_weights", trainable=True, dtype=tf.float32)
        module.b = tf.Variable(np.zeros(3), name="custom_bias", trainable=False, dtype=tf.float32)
        tf.saved_model.save(module, str(out / "module_saved"))
        seed_prefix = tf.train.Checkpoint(W=module.W, b=module.b).save(str(out / "seed_ckpt" / "ckpt"))
        keras_prefix = tf.train.Checkpoint(model=model, optimizer=model.optimizer).save(
            str(out / "keras_ckpt" / "ckpt")
        )
    return SimpleNamespace(dir=out, model=model, seed_prefix=seed_prefix, keras_prefix=keras_prefix)


def rows(info):
    return [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables]


def expected(model):
    trainable = {id(v) for v in model.trainable_variables}
    return [(v.path, tuple(v.shape), v.dtype, id(v) in trainable) for v in model.variables]


# -- SavedModel ---------------------------------------------------------------------------------


def test_exported_savedmodel_lists_the_effective_trainable_state(tf_inputs):
    info = open_model(str(tf_inputs.dir / "exported"))
    assert info.format == "savedmodel"
    assert rows(info) == expected(tf_inputs.model)
    reasons = {v.path: v.reason for v in info.variables}
    assert reasons["base/d1/kernel"] == "frozen by a layer"
    assert reasons["base/bn/moving_mean"] == "never trainable: created non-trainable"
    assert info.warnings == ()
    assert [l.path for l in info.layers] == ["base", "base/d1", "base/bn", "head"]


def test_tf_saved_model_save_lists_each_variables_own_flag_and_says_so(tf_inputs):
    info = open_model(str(tf_inputs.dir / "tf_saved"))
    own_flag = [
        (p, s, d, not p.endswith(("moving_mean", "moving_variance")))
        for p, s, d, _ in expected(tf_inputs.model)
    ]
    assert rows(info) == own_flag  # the frozen base's kernels keep their own flag: true
    assert any("layer.trainable = False` is not recorded" in w for w in info.warnings)
    assert any("held only by the optimizer" in w for w in info.warnings)  # the compiled model's Adam


def test_savedmodel_of_bare_tf_variables(tf_inputs):
    info = open_model(str(tf_inputs.dir / "module_saved"))
    assert rows(info) == [
        ("custom_weights", (5, 3), "float32", True),
        ("custom_bias", (3,), "float32", False),
    ]


def test_savedmodel_can_be_given_as_its_saved_model_pb(tf_inputs):
    pb = tf_inputs.dir / "exported" / "saved_model.pb"
    assert rows(open_model(str(pb))) == rows(open_model(str(tf_inputs.dir / "exported")))


def test_savedmodel_through_the_cli(tf_inputs):
    path = str(tf_inputs.dir / "exported")
    result = varctl("list", path, "-f", "json", "--trainable")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["format"], doc["keras_version"]) == ("savedmodel", None)
    assert [v["path"] for v in doc["variables"]] == ["head/kernel", "head/bias"]
    by_layer = varctl("list", path, "--by-layer", "-p", "base")
    assert by_layer.exit_code == 0, by_layer.output
    assert "base" in by_layer.stdout and "head" not in by_layer.stdout


# -- checkpoints --------------------------------------------------------------------------------


def test_checkpoint_of_bare_tf_variables(tf_inputs):
    info = open_model(tf_inputs.seed_prefix)
    assert info.format == "checkpoint"
    assert sorted(rows(info)) == [
        ("custom_bias", (3,), "float32", None),
        ("custom_weights", (5, 3), "float32", None),
    ]
    assert all(v.reason == "unknown: a TF checkpoint records no trainable flags" for v in info.variables)
    assert any("records no trainable flags" in w for w in info.warnings)


def test_checkpoint_of_a_keras_model_lists_model_variables_only(tf_inputs):
    info = open_model(tf_inputs.keras_prefix)
    want = [(p, s, d, None) for p, s, d, _ in expected(tf_inputs.model)]
    assert rows(info) == want  # in the model's order, named by variable.path; no optimizer slots
    assert any("held only by the optimizer" in w for w in info.warnings)


@pytest.mark.parametrize("form", ["prefix", "index", "data", "directory", "state_file"])
def test_every_form_of_a_checkpoint_lists_the_same(tf_inputs, form):
    prefix = tf_inputs.keras_prefix
    path = {
        "prefix": prefix,
        "index": prefix + ".index",
        "data": prefix + ".data-00000-of-00001",
        "directory": os.path.dirname(prefix),
        "state_file": os.path.join(os.path.dirname(prefix), "checkpoint"),
    }[form]
    assert rows(open_model(path)) == rows(open_model(prefix))


def test_checkpoint_json_has_null_trainable_and_the_table_says_unknown(tf_inputs):
    result = varctl("list", tf_inputs.seed_prefix, "-f", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {v["trainable"] for v in doc["variables"]} == {None}
    assert doc["totals"]["trainable"] == 0
    table = varctl("list", tf_inputs.seed_prefix)
    assert table.exit_code == 0, table.output
    assert "unknown: a TF checkpoint records no trainable flags" in table.stdout


def test_a_checkpoint_index_without_its_data_is_unreadable(tf_inputs, tmp_path):
    shutil.copy(tf_inputs.seed_prefix + ".index", tmp_path / "lonely.index")
    result = varctl("list", str(tmp_path / "lonely.index"))
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stderr.startswith(f"varctl: error: cannot open '{tmp_path / 'lonely.index'}': ")
    assert len(result.stderr.splitlines()) <= 2


# -- read-only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["exported", "seed_ckpt"])
def test_savedmodels_and_checkpoints_are_read_only(tf_inputs, which):
    info = open_model(str(tf_inputs.dir / which))
    with pytest.raises(UnsupportedFormat) as e:
        require_editable(info)
    assert e.value.exit_code == EXIT_UNREADABLE
    assert "can list but not edit" in e.value.message
    assert "model.save('model.keras')" in (e.value.hint or "")


def test_load_does_not_apply_to_a_savedmodel(tf_inputs):
    path = str(tf_inputs.dir / "exported")
    with pytest.raises(Exception) as e:
        open_model(path, load=LoadOptions())
    assert e.value.exit_code == EXIT_USAGE
    result = varctl("list", path, "--load")
    assert result.exit_code == EXIT_USAGE, result.output
    assert "is a TensorFlow SavedModel" in result.stderr
