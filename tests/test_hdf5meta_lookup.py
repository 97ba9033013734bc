"""hdf5meta lookups by name: the per-group member cache, `h5safe.layer_weights` against h5py's
(`_h5safe.layer_weights`), and the batched variable-length string reads."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from varctl.formats import _h5safe
from varctl.formats import hdf5meta as hm
from varctl.formats.hdf5meta import Malformed, OutsideSubset


@pytest.fixture
def legacy(tmp_path: Path) -> Path:
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as h5:
        layer = h5.create_group("model_weights/dense")
        layer.attrs["weight_names"] = [b"dense/kernel:0", b"dense/bias:0"]
        layer.attrs["vlen_names"] = np.array(["a", "", "b\u00e9", "c"], dtype=h5py.string_dtype())
        layer.attrs["vlen_grid"] = np.array([["a", "b"], ["c", "d"]], dtype=h5py.string_dtype())
        layer.attrs["one"] = np.array("x", dtype=h5py.string_dtype())
        layer.create_dataset("dense/kernel:0", data=np.zeros((3, 4), "f4"))
        layer.create_dataset("dense/bias:0", data=np.zeros(4, "f4"))
        layer.create_dataset("dense/packed", data=np.zeros(64, "f4"), compression="gzip", chunks=(8,))
    return path


PATHS = ["dense/kernel:0", "dense/bias:0", "dense/packed", "dense", "absent", "dense/absent",
         "dense/kernel:0/x", "dense/kernel:0/", "kernel:0", "dense/kernel:0//"]  # fmt: skip


@pytest.mark.parametrize("path", PATHS)
def test_layer_weights_find_what_h5py_finds(legacy: Path, path: str, monkeypatch) -> None:
    """A `weight_names` entry names a dataset for hdf5meta exactly when it does for h5py; the
    entries read in place of the file's, on both backends."""
    names = ["dense/kernel:0", path, "dense/bias:0"]
    monkeypatch.setattr(hm, "_list_attr", lambda file, attrs, key: names)
    monkeypatch.setattr(_h5safe, "list_attr", lambda obj, key: names)
    with hm.open(legacy) as f, h5py.File(legacy, "r") as h5:
        got = hm.h5safe.layer_weights(f["model_weights"], "dense", "weight_names", hm.h5safe.Budget())
        want = _h5safe.layer_weights(h5["model_weights"], "dense", "weight_names", _h5safe.Budget())
    assert got == want
    assert got is not None and len(got[1]) == (
        3 if path in ("dense/kernel:0", "dense/bias:0", "dense/packed") else 1
    )


def test_lookups_are_made_once_and_forgotten_on_close(legacy: Path) -> None:
    with hm.open(legacy) as f:
        layer = f["model_weights/dense"]
        assert f["model_weights/dense"] is layer
        kernel = layer["dense/kernel:0"]
        assert hm.h5safe.get_member(layer, "dense") is layer["dense"]
        assert layer["dense"]["kernel:0"] is kernel
        assert kernel.name == "/model_weights/dense/dense/kernel:0"
        # a group reached again by items() shares the lookups
        again = dict(f["model_weights"].items())["dense"]
        assert again is not layer and again["dense/kernel:0"] is kernel
    with pytest.raises(Malformed):  # used after close: the file is read again, a clean error
        layer["dense/kernel:0"]


def test_vlen_string_arrays(legacy: Path) -> None:
    with hm.open(legacy) as f, h5py.File(legacy, "r") as h5:
        attrs, want = f["model_weights/dense"].attrs, h5["model_weights/dense"].attrs
        assert attrs["vlen_names"] == [s.decode() if isinstance(s, bytes) else s for s in want["vlen_names"]]
        assert attrs["vlen_names"] == ["a", "", "b\u00e9", "c"]
        assert attrs["vlen_grid"] == [["a", "b"], ["c", "d"]]
        assert attrs["one"] == "x"
        assert attrs["weight_names"] == ["dense/kernel:0", "dense/bias:0"]
        group = f["model_weights/dense"]
        assert hm.h5safe.list_attr(group, "vlen_names") == ["a", "", "b\u00e9", "c"]
        with pytest.raises(OutsideSubset, match="not a flat list"):
            hm.h5safe.list_attr(group, "vlen_grid")
