"""Inputs are recognised by their bytes, not their names; what varctl does not read is named.

Every unsupported input exits 3 with one error line saying what the file looks like, plus a hint.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from varctl.cli import app
from varctl.errors import EXIT_UNREADABLE
from varctl.formats import open_model

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
runner = CliRunner()


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def onnx(tmp: Path) -> Path:
    # ModelProto: ir_version=8, producer_name="pytorch", producer_version="2.3.0", then a graph.
    data = b"\x08\x08\x12\x07pytorch\x1a\x052.3.0:" + bytes(64)
    (tmp / "model.bin").write_bytes(data)  # no telling extension: the bytes say it
    return tmp / "model.bin"


def torch_zip(tmp: Path) -> Path:
    return _zip(tmp / "model.pt", {"archive/data.pkl": b"\x80\x02}q\x00.", "archive/version": b"3\n"})


def torch_legacy(tmp: Path) -> Path:
    (tmp / "old.pth").write_bytes(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19." + bytes(32))
    return tmp / "old.pth"


def plain_pickle(tmp: Path) -> Path:
    (tmp / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    return tmp / "model.pkl"


def safetensors(tmp: Path) -> Path:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (tmp / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(8))
    return tmp / "model.safetensors"


def gguf(tmp: Path) -> Path:
    (tmp / "model.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    return tmp / "model.gguf"


def npy(tmp: Path) -> Path:
    np.save(tmp / "w.npy", np.zeros(3))
    return tmp / "w.npy"


def npz(tmp: Path) -> Path:
    np.savez(tmp / "w.npz", a=np.zeros(3), b=np.ones(2))
    return tmp / "w.npz"


def keras_json(tmp: Path) -> Path:
    (tmp / "arch.json").write_text(json.dumps({"class_name": "Sequential", "config": {"layers": []}}))
    return tmp / "arch.json"


def tfjs(tmp: Path) -> Path:
    (tmp / "model.json").write_text(json.dumps({"modelTopology": {}, "weightsManifest": []}))
    return tmp / "model.json"


def plain_json(tmp: Path) -> Path:
    (tmp / "x.keras").write_text('{"hello": "world"}')
    return tmp / "x.keras"


def tflite(tmp: Path) -> Path:
    (tmp / "model.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return tmp / "model.tflite"


def gzipped(tmp: Path) -> Path:
    (tmp / "model.keras.gz").write_bytes(gzip.compress((SAMPLES / "seed_dense.keras").read_bytes()))
    return tmp / "model.keras.gz"


def tar(tmp: Path) -> Path:
    with tarfile.open(tmp / "models.tar", "w") as tf:
        tf.add(SAMPLES / "seed_dense.keras", arcname="seed_dense.keras")
    return tmp / "models.tar"


def zipped_savedmodel(tmp: Path) -> Path:
    return _zip(tmp / "export.zip", {"export/saved_model.pb": b"\x08\x01", "export/variables/": b""})


def other_hdf5(tmp: Path) -> Path:
    with h5py.File(tmp / "data.h5", "w") as f:
        f.create_dataset("images", data=np.zeros((2, 2)))
    return tmp / "data.h5"


def orphan_checkpoint_state(tmp: Path) -> Path:
    (tmp / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\nall_model_checkpoint_paths: "ckpt-9"\n')
    return tmp / "checkpoint"


CASES = [
    (onnx, "looks like an ONNX model"),
    (torch_zip, "looks like a PyTorch checkpoint"),
    (torch_legacy, "looks like a legacy PyTorch file"),
    (plain_pickle, "looks like a Python pickle"),
    (safetensors, "looks like a SafeTensors file"),
    (gguf, "looks like a GGUF model"),
    (npy, "looks like a NumPy .npy array"),
    (npz, "looks like a NumPy .npz archive"),
    (keras_json, "looks like a Keras architecture (model.to_json()): it holds no variables"),
    (tfjs, "looks like a TensorFlow.js model"),
    (plain_json, "looks like a JSON file"),
    (tflite, "looks like a TensorFlow Lite model"),
    (gzipped, "a gzip-compressed file: decompress it first"),
    (tar, "a tar archive: extract it first"),
    (zipped_savedmodel, "a zipped TensorFlow SavedModel"),
    (other_hdf5, "not a saved Keras model, nor a Keras weights file"),
    (orphan_checkpoint_state, "a TensorFlow `checkpoint` state file whose checkpoint is missing"),
]


@pytest.mark.parametrize(("build", "phrase"), CASES, ids=[b.__name__ for b, _ in CASES])
def test_unsupported_input_is_named_and_exits_3(tmp_path, build, phrase):
    path = str(build(tmp_path))
    result = runner.invoke(app, ["list", path, "-f", "json"], env=ENV)
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0].startswith(f"varctl: error: cannot open '{path}': ")
    assert phrase in lines[0], lines[0]
    assert len(lines) == 2 and lines[1].startswith("varctl: hint: "), lines


def test_the_hint_says_what_varctl_reads(tmp_path):
    result = runner.invoke(app, ["list", str(gguf(tmp_path))], env=ENV)
    assert result.stderr.splitlines()[1] == (
        "varctl: hint: varctl reads Keras .keras archives and model folders, keras-hub presets, legacy "
        "Keras .h5 models, weights-only .weights.h5 files (sharded too), keras-hub .lora.h5 files, "
        "Orbax checkpoint folders, TensorFlow SavedModel directories and TensorFlow checkpoints"
    )


@pytest.mark.parametrize(
    ("sample", "renamed"), [("seed_dense.keras", "model.bin"), ("seed_dense.h5", "model.keras")]
)
def test_supported_files_are_recognised_whatever_their_name(tmp_path, sample, renamed):
    shutil.copy(SAMPLES / sample, tmp_path / renamed)
    got = open_model(str(tmp_path / renamed))
    want = open_model(str(SAMPLES / sample))
    assert got.format == want.format and got.variables == want.variables


def test_a_weights_file_is_recognised_by_its_layout_not_its_name(tmp_path):
    with h5py.File(tmp_path / "weights.h5", "w") as f:
        f.create_group("vars")
        f.create_dataset("layers/dense/vars/0", data=np.zeros((4, 2), "float32"))
        f["layers/dense/vars"].attrs["name"] = "dense"
        f.create_dataset("layers/dense/vars/1", data=np.zeros(2, "float16"))
    info = open_model(str(tmp_path / "weights.h5"))
    assert info.format == "weights"
    assert [(v.path, v.shape, v.dtype, v.trainable) for v in info.variables] == [
        ("dense/kernel", (4, 2), "float32", None),  # real names: the layer's, its class's
        ("dense/bias", (2,), "float16", None),
    ]


def test_static_inputs_and_refusals_never_import_tensorflow(tmp_path):
    """Sniffing (checkpoint magic, SavedModel directories, ...) must stay off TensorFlow's path."""
    weights = tmp_path / "w.weights.h5"
    with h5py.File(weights, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros((4, 2), "float32"))
    inputs = [
        str(SAMPLES / "seed_dense.keras"),
        str(SAMPLES / "seed_dense.h5"),
        str(weights),
        str(gguf(tmp_path)),
        str(tmp_path / "missing_prefix"),
    ]
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from varctl.cli import app\n"
        f"for path in {inputs!r}:\n"
        "    CliRunner().invoke(app, ['list', path, '-f', 'json'])\n"
        "bad = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
