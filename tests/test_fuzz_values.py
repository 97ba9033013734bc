"""Fuzzing the value paths: `stats`, `check --finite` and `diff --values` on mutated weights never end
in a traceback or exit 70, never leak a warning to stderr, and `stats -f json` stays strict JSON.

Two strategies start from real Keras-written samples: flipped bytes in the legacy `.h5` (anywhere in
the file, so metadata and values both), and the kernel of `seed_dense.keras` replaced by a dataset
drawn from dtypes, shapes, chunkings, filters, markers and values (NaN, Inf, ±1e308 included) that a
crafted file can hold. About 150 examples in all (VARCTL_FUZZ_EXAMPLES scales it; VARCTL_FUZZ_SEED
randomizes the run, which is otherwise derandomized).
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import SAMPLES
from tests.conftest import fuzz_settings as conftest_fuzz_settings
from varctl.cli import app
from varctl.errors import VarctlError
from varctl.formats import open_model

ENV = {"NO_COLOR": "1", "COLUMNS": "120", "FORCE_COLOR": None, "TTY_COMPATIBLE": None}
H5_BYTES = (SAMPLES / "seed_dense.h5").read_bytes()
with zipfile.ZipFile(SAMPLES / "seed_dense.keras") as _z:
    KERAS_PARTS = {i.filename: _z.read(i) for i in _z.infolist()}
runner = CliRunner()


fuzz_settings = conftest_fuzz_settings(75)


def _strict(text: str):
    def refuse(token: str):
        raise AssertionError(f"{token} in JSON output")

    return json.loads(text, parse_constant=refuse)


def value_commands_hold(path: Path, other: Path) -> None:
    """The property, on one mutated file: every value command ends cleanly."""
    try:
        open_model(str(path))
    except VarctlError:
        return  # the metadata reader refuses it (tests/test_fuzz.py): the value paths are not reached
    for args in (
        ["stats", str(path), "-f", "json"],
        ["check", str(path), "--finite", "-f", "json"],
        ["diff", str(path), str(other), "--values"],
    ):
        result = runner.invoke(app, args, env=ENV, prog_name="varctl")
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert result.exit_code in (0, 1, 3), (args, result.output)
        assert "Traceback" not in result.output and "internal error" not in result.stderr, result.output
        assert all(line.startswith("varctl: ") for line in result.stderr.splitlines()), result.stderr
        if result.exit_code == 3:
            assert any(line.startswith("varctl: error: ") for line in result.stderr.splitlines())
        elif args[0] != "diff":
            _strict(result.stdout)


@pytest.mark.slow  # 75 mutated files, up to 8 sandboxed reads each
@fuzz_settings
@given(
    flips=st.lists(st.tuples(st.integers(0, len(H5_BYTES) - 1), st.integers(1, 255)), min_size=1, max_size=8)
)
def test_flipped_bytes_in_a_legacy_h5(tmp_path_factory, flips):
    data = bytearray(H5_BYTES)
    for offset, xor in flips:
        data[offset] ^= xor
    path = tmp_path_factory.mktemp("flip") / "m.h5"
    path.write_bytes(bytes(data))
    value_commands_hold(path, SAMPLES / "seed_dense.h5")


_DTYPES = ["f2", "f4", "f8", "i1", "i8", "u2", "bool", "S3", "V2"]
_SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, np.nan, np.inf, -np.inf, 65504.0, 3.4e38]


@st.composite
def datasets(draw):
    """(make(group, name), description) for one crafted kernel dataset."""
    dtype = draw(st.sampled_from(_DTYPES))
    shape = draw(st.sampled_from([(10, 64), (10, 64), (64, 10), (), (0, 64), (640,), (2, 5, 64)]))
    chunked = draw(st.booleans()) and shape != () and 0 not in shape
    chunks = tuple(draw(st.integers(1, max(1, s))) for s in shape) if chunked else None
    compression = draw(st.sampled_from([None, "gzip", "lzf"])) if chunked else None
    shuffle = chunked and draw(st.booleans())
    fletcher32 = chunked and draw(st.booleans())
    write = draw(st.sampled_from(["all", "all", "none", "part"]))
    pick = draw(st.lists(st.sampled_from(_SPECIAL), min_size=1, max_size=4))
    marker = draw(st.sampled_from([None, None, "bfloat16", b"bfloat16", b"\xff\xfe", np.array([1, 2]), 7]))
    size = int(np.prod(shape)) if shape else 1

    def make(group, name):
        kwargs = {}
        if chunked:
            kwargs.update(chunks=chunks, compression=compression, shuffle=shuffle, fletcher32=fletcher32)
        ds = group.create_dataset(name, shape=shape, dtype=dtype, **kwargs)
        if write != "none" and size:
            values = np.resize(np.array(pick, dtype="f8"), size).reshape(shape)
            with np.errstate(all="ignore"):
                if dtype in ("S3",):
                    data = values.astype(str).astype("S3")
                elif dtype == "V2":
                    data = values.astype("f2").view("V2")
                else:
                    data = values.astype(dtype)
            if write == "all" or not shape:
                ds[()] = data
            else:
                ds[(slice(0, 1),)] = data[:1]
        if marker is not None:
            ds.attrs["dtype"] = marker

    return make


@pytest.mark.slow  # 75 crafted files, 8 sandboxed reads each
@fuzz_settings
@given(make=datasets())
def test_crafted_kernel_in_a_keras_archive(tmp_path_factory, make):
    buf = io.BytesIO(KERAS_PARTS["model.weights.h5"])
    with h5py.File(buf, "r+") as f:
        del f["layers/dense/vars/0"]
        make(f["layers/dense/vars"], "0")
    path = tmp_path_factory.mktemp("crafted") / "m.keras"
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**KERAS_PARTS, "model.weights.h5": buf.getvalue()}.items():
            z.writestr(name, data)
    value_commands_hold(path, SAMPLES / "seed_dense.keras")
