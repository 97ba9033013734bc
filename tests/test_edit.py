"""freeze/unfreeze: the file varctl writes gives exactly what Keras gets from the same change in
Python, loads without any warning, and keeps every weight byte."""

from __future__ import annotations

import shutil
import warnings
import zipfile

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from varctl.cli import app

keras_oracle = pytest.importorskip("tests.keras_oracle")
import keras  # noqa: E402

ENV = {"NO_COLOR": "1", "COLUMNS": "120"}


def run(*args):
    return CliRunner().invoke(app, list(args), env=ENV)


def trainable_paths(model):
    names = keras_oracle.hierarchical_paths(model)
    return sorted(names[id(v)] for v in model.trainable_variables)


def load_strict(path, compile=True):
    """Load with every warning an error: stale optimizer state would fail here."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return keras.saving.load_model(path, compile=compile)


def python_change(path, change):
    """The same change made the Keras way: load, flip flags in Python, report trainable paths."""
    model = keras_oracle.load(str(path), compile=False)
    change(model)
    return trainable_paths(model)


def weights_member(path):
    with zipfile.ZipFile(path) as zf:
        return zf.read("model.weights.h5"), zf.read("metadata.json")


def model_datasets(path):
    """Every non-optimizer dataset of a .keras file's weights: name -> (dtype, raw bytes)."""
    import io

    import h5py

    out = {}
    with zipfile.ZipFile(path) as zf:
        h5 = h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith("optimizer"):
                out[name] = (str(obj.dtype), obj[()].tobytes(), dict(obj.attrs))

        h5.visititems(visit)
    return out


def _set(layers, value):
    for layer in layers:
        layer.trainable = value


CASES = {
    # name: (sample, cli args, the same change in Python)
    "unfreeze_top_blocks": (
        "transfer_learning",
        ["unfreeze", "-p", "block_16*"],
        lambda m: _set([l for l in m.layers[1].layers if l.name.startswith("block_16")], True),
    ),
    "freeze_head": (
        "seed_dense",
        ["freeze", "-p", "dense_1"],
        lambda m: _set([m.get_layer("dense_1")], False),
    ),
    "freeze_all": ("batchnorm", ["freeze", "--all"], lambda m: _set([m], False)),
    "freeze_first_n": (
        "batchnorm",
        ["freeze", "--first", "3"],
        lambda m: _set(m.layers[:3], False),
    ),
    "unfreeze_first_100_of_base": (
        "transfer_learning",
        ["unfreeze", "--in", "mobilenetv2_0.35_96", "--first", "100"],
        lambda m: _set(m.layers[1].layers[:100], True),
    ),
    "unfreeze_upto_keep_bn": (
        "transfer_learning",
        ["unfreeze", "--in", "mobilenetv2_0.35_96", "--upto", "block_2_add", "--keep-batchnorm-frozen"],
        lambda m: _set(
            [
                l
                for l in m.layers[1].layers[: [x.name for x in m.layers[1].layers].index("block_2_add") + 1]
                if not isinstance(l, keras.layers.BatchNormalization)
            ],
            True,
        ),
    ),
}


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_edit_matches_keras(samples_on_path, tmp_path, case, fmt):
    sample, args, change = CASES[case]
    src = SAMPLES / f"{sample}.{fmt}"
    out = tmp_path / f"out.{fmt}"
    result = run(*args[:1], str(src), *args[1:], "-o", str(out))
    assert result.exit_code == 0, result.output
    want = python_change(src, change)
    got_model = load_strict(str(out), compile=(fmt == "keras"))
    assert trainable_paths(got_model) == want
    # what varctl lists for the output is what Keras trains
    listed = sorted(
        v.path
        for v in __import__("varctl.formats", fromlist=["open_model"]).open_model(str(out)).variables
        if v.trainable
    )
    assert listed == want
    if fmt == "keras":
        assert model_datasets(out) == model_datasets(src)
        assert len(model_datasets(src)) > 0


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_freeze_whole_nested_model(zoo_dir, tmp_path, fmt):
    out = tmp_path / f"n.{fmt}"
    result = run("freeze", str(zoo_dir / f"nested.{fmt}"), "-p", "base", "-o", str(out))
    assert result.exit_code == 0, result.output
    want = python_change(
        zoo_dir / f"nested.{fmt}", lambda m: setattr(m.get_layer("base"), "trainable", False)
    )
    assert trainable_paths(load_strict(str(out), compile=False)) == want
    assert not any(p.startswith("base/") for p in want)


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_unfreeze_inside_frozen_nested_functional(zoo_dir, tmp_path, fmt):
    out = tmp_path / f"n.{fmt}"
    result = run("unfreeze", str(zoo_dir / f"nested.{fmt}"), "-p", "deep", "-o", str(out))
    assert result.exit_code == 0, result.output
    model = load_strict(str(out), compile=False)
    got = trainable_paths(model)
    inner = model.get_layer("func").get_layer("inner")
    want = python_change(
        zoo_dir / f"nested.{fmt}",
        lambda m: setattr(m.get_layer("func").get_layer("inner").get_layer("deep"), "trainable", True),
    )
    assert got == want and "func/inner/deep/kernel" in got
    # weights are where they were: the edited file holds the same values as the original
    original = keras_oracle.load(str(zoo_dir / f"nested.{fmt}"), compile=False)
    for a, b in zip(original.get_layer("func").get_layer("inner").weights, inner.weights, strict=True):
        assert (a.numpy() == b.numpy()).all()


def test_freeze_that_keras_cannot_keep_is_refused(zoo_dir, tmp_path):
    out = tmp_path / "q.keras"
    result = run("freeze", str(zoo_dir / "attention.keras"), "-p", "multi_head_attention", "-o", str(out))
    assert result.exit_code == 2
    assert "cannot freeze" in result.stderr
    assert not out.exists()


def test_compiled_output_loads_and_resumes_fit(samples_on_path, tmp_path):
    import numpy as np

    out = tmp_path / "f.keras"
    assert run("freeze", str(SAMPLES / "seed_dense.keras"), "-p", "dense", "-o", str(out)).exit_code == 0
    model = load_strict(str(out))
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 10)), np.zeros((4, 1)), epochs=1, verbose=0)


def test_keep_optimizer_state_leaves_keras_warning(samples_on_path, tmp_path):
    out = tmp_path / "k.keras"
    result = run(
        "freeze",
        str(SAMPLES / "seed_dense.keras"),
        "-p",
        "dense",
        "-o",
        str(out),
        "--optimizer-state",
        "keep",
    )
    assert result.exit_code == 0, result.output
    with pytest.warns(UserWarning, match="Skipping variable loading for optimizer"):
        keras.saving.load_model(str(out))


def test_drop_keeps_weights_member_byte_identical(samples_on_path, tmp_path):
    src = SAMPLES / "transfer_learning.keras"
    out = tmp_path / "d.keras"
    result = run("unfreeze", str(src), "-p", "block_16*", "-o", str(out), "--optimizer-state", "drop")
    assert result.exit_code == 0, result.output
    assert weights_member(out) == weights_member(src)
    model = load_strict(str(out))
    assert not getattr(model, "compiled", False)


def test_noop_freeze_keeps_optimizer_state(samples_on_path, tmp_path):
    out = tmp_path / "same.keras"
    result = run("freeze", str(SAMPLES / "transfer_learning.keras"), "-p", "Conv1", "-o", str(out))
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(out) as a, zipfile.ZipFile(SAMPLES / "transfer_learning.keras") as b:
        assert a.read("config.json") == b.read("config.json")
    load_strict(str(out))


def test_dry_run_writes_nothing(tmp_path):
    src = tmp_path / "m.keras"
    shutil.copy(SAMPLES / "seed_dense.keras", src)
    before = src.read_bytes()
    result = run("freeze", str(src), "-p", "dense", "--dry-run", "-f", "json")
    assert result.exit_code == 0, result.output
    assert src.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]
    assert '"dry_run": true' in result.stdout


def test_output_required(tmp_path):
    result = run("freeze", str(SAMPLES / "seed_dense.keras"), "-p", "dense")
    assert result.exit_code == 2
    assert "--in-place" in result.stderr


def test_variable_pattern_is_refused():
    result = run("freeze", str(SAMPLES / "seed_dense.keras"), "-p", "dense/kernel", "--dry-run")
    assert result.exit_code == 2
    assert "per layer" in result.stderr


def test_no_match_suggests(tmp_path):
    result = run("freeze", str(SAMPLES / "seed_dense.keras"), "-p", "dens_1", "--dry-run")
    assert result.exit_code == 2
    assert "did you mean" in result.stderr


def test_in_place_keeps_mode_and_symlink(tmp_path):
    real = tmp_path / "real.keras"
    shutil.copy(SAMPLES / "seed_dense.keras", real)
    real.chmod(0o640)
    link = tmp_path / "link.keras"
    link.symlink_to(real)
    result = run("freeze", str(link), "-p", "dense", "--in-place")
    assert result.exit_code == 0, result.output
    assert link.is_symlink()
    assert (real.stat().st_mode & 0o777) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.keras", "real.keras"]
    assert "dense/kernel" not in trainable_paths(load_strict(str(real)))


def test_unwritable_target_folder_is_exit_4(tmp_path):
    result = run(
        "freeze",
        str(SAMPLES / "seed_dense.keras"),
        "-p",
        "dense",
        "-o",
        str(tmp_path / "missing" / "x.keras"),
    )
    assert result.exit_code == 4
    assert "cannot write" in result.stderr


def test_verify_confirms_with_keras(samples_on_path, tmp_path):
    out = tmp_path / "v.keras"
    result = run(
        "unfreeze", str(SAMPLES / "transfer_learning.keras"), "-p", "block_16*", "-o", str(out), "--verify"
    )
    assert result.exit_code == 0, result.output
    assert "verified with Keras" in result.stderr


def test_verify_failure_writes_nothing(samples_on_path, tmp_path):
    out = tmp_path / "v.keras"
    args = ["unfreeze", str(SAMPLES / "transfer_learning.keras"), "-p", "block_16*", "-o", str(out)]
    result = run(*args, "--verify", "--optimizer-state", "keep")
    assert result.exit_code == 4, result.output
    assert "Skipping variable loading for optimizer" in result.stderr
    assert list(tmp_path.iterdir()) == []
