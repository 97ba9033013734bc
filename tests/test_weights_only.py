"""Weights-only files (`model.save_weights`): HDF5 paths, shapes and dtypes, names need the model."""

from __future__ import annotations

import json
import warnings

import h5py
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from varctl.cli import app
from varctl.errors import EXIT_UNREADABLE, UnsupportedFormat
from varctl.formats import open_model, require_editable

keras = pytest.importorskip("keras")

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
runner = CliRunner()
NAMES = ["nested", "attention", "recurrent", "same_class_many", "dtypes"]


@pytest.fixture(scope="session")
def weights_dir(zoo_dir, samples_on_path, tmp_path_factory):
    """`<name>.weights.h5` (Keras 3 layout) and `<name>.legacy.h5` (Keras 2's layout, written with
    Keras's own legacy writer) for some zoo models and the compiled transfer-learning sample."""
    from keras.src.legacy.saving import legacy_h5_format

    out = tmp_path_factory.mktemp("weights")
    sources = {name: zoo_dir / f"{name}.keras" for name in NAMES}
    sources["transfer_learning"] = SAMPLES / "transfer_learning.keras"
    for name, path in sources.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.saving.load_model(path)  # compiled when saved so: optimizer state included
        model.save_weights(out / f"{name}.weights.h5")
        with h5py.File(out / f"{name}.legacy.h5", "w") as f:
            legacy_h5_format.save_weights_to_hdf5_group(f, model)
    return out


@pytest.mark.parametrize("name", [*NAMES, "transfer_learning"])
def test_weights_file_lists_the_same_datasets_as_the_model(weights_dir, zoo_dir, name):
    source = zoo_dir / f"{name}.keras" if name in NAMES else SAMPLES / f"{name}.keras"
    model = open_model(str(source))
    info = open_model(str(weights_dir / f"{name}.weights.h5"))
    assert info.format == "weights"
    # Same HDF5 datasets (the static .keras reader records where each variable is stored).
    want = {v.storage: (v.shape, v.dtype) for v in model.variables}
    assert {v.storage: (v.shape, v.dtype) for v in info.variables} == want
    # Real layer names from the file; variable names where the layer class decides them.
    paths = {v.storage: v.path for v in model.variables}
    named = [v for v in info.variables if not v.name.startswith("vars/")]
    assert named and all(v.path == paths[v.storage] for v in named)
    # Unknown, except what the class decides (BatchNormalization's moving statistics: never).
    assert {v.trainable for v in info.variables if not v.name.startswith("moving_")} == {None}
    assert {v.trainable for v in info.variables if v.name.startswith("moving_")} <= {False}
    assert not any(v.path.startswith("optimizer") for v in info.variables)
    assert len(info.warnings) == 1
    assert "variable names (kernel, bias, ...) are not stored" in info.warnings[0]
    assert {v.layer for v in info.variables} <= {l.path for l in info.layers}


def test_weights_file_groups_are_in_natural_order(weights_dir):
    info = open_model(str(weights_dir / "same_class_many.weights.h5"))
    groups = [v.storage.rsplit("/vars/", 1)[0] for v in info.variables][::2]
    assert groups == ["layers/dense"] + [f"layers/dense_{i}" for i in range(1, 11)]


@pytest.mark.parametrize("name", ["nested", "recurrent", "transfer_learning"])
def test_legacy_weights_file_lists_real_names(weights_dir, zoo_dir, name):
    source = zoo_dir / f"{name}.keras" if name in NAMES else SAMPLES / f"{name}.keras"
    model = open_model(str(source))
    info = open_model(str(weights_dir / f"{name}.legacy.h5"))
    assert info.format == "weights"

    # Names as Keras recorded them, under their top-level layer (nesting below it is not recorded:
    # `func/deep/kernel` for the model's `func/inner/deep/kernel`).
    def key(v):
        return (v.path.split("/", 1)[0], v.name, v.shape, v.dtype)

    assert sorted(map(key, info.variables)) == sorted(map(key, model.variables))
    assert {v.trainable for v in info.variables} == {None}
    assert info.keras_version == keras.__version__


def test_weights_file_through_the_cli(weights_dir):
    path = str(weights_dir / "nested.weights.h5")
    result = runner.invoke(app, ["list", path, "-f", "json"], env=ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["format"] == "weights" and doc["keras_version"] is None
    assert doc["variables"][0] == {
        "index": 0,
        "path": "head/kernel",  # the file's `layers/dense/vars/0`, named as the model names it
        "layer": "head",
        "name": "kernel",
        "shape": [2, 1],
        "dtype": "float32",
        "params": 2,
        "trainable": None,
        "cause": "unknown",
        "reason": "unknown: a weights-only file records no trainable flags",
    }
    assert result.stderr.startswith(f"varctl: warning: {path}: weights-only file")
    tree = runner.invoke(app, ["list", path, "--by-layer", "-p", "base"], env=ENV)
    assert tree.exit_code == 0, tree.output  # patterns match the layer names the file records
    assert "Sequential" in tree.stdout and "└ bn" in tree.stdout


def test_weights_files_are_read_only(weights_dir):
    with pytest.raises(UnsupportedFormat) as e:
        require_editable(open_model(str(weights_dir / "nested.weights.h5")))
    assert e.value.exit_code == EXIT_UNREADABLE
    assert "model.load_weights" in (e.value.hint or "")
