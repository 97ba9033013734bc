"""Value reads (stats, check --finite, diff --values) on crafted files: each hostile class of input gets
a documented exit code and one error line, never a traceback, exit 70 or a signal, within the memory and
time bounds of docs/values.md. Each file starts as a real Keras-written sample; only the dataset under
test is replaced, with h5py (and zlib for the bombs).

varctl runs in a subprocess (its own small parent, like a user's shell would start it); its peak RSS,
sandbox children included, comes from os.wait4.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLES

KERNEL = "layers/dense/vars/0"  # dense/kernel in seed_dense.keras, (10, 64) float32
H5_KERNEL = "model_weights/dense/seed_dense/dense/kernel"  # the same in seed_dense.h5
RSS_BOUND_MB = 600  # docs/values.md: default peak RSS of a value read
TIME_BOUND_S = 20  # docs/values.md: default time for a small file
ENV = {k: v for k, v in os.environ.items() if not k.startswith("VARCTL_")}
ENV.update({"NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT)})


# varctl is started from this small Python, not from pytest: Linux counts the RSS high-water mark of
# the process that calls exec (with vfork, pytest's own) into the new program's ru_maxrss.
_LAUNCH = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "varctl", *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
with open(os.environ["RSS_OUT"], "w") as f:
    f.write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def varctl(*args: object, env: dict[str, str] | None = None) -> tuple[int, str, str, float, float]:
    """(exit code, stdout, stderr, peak RSS in MB of varctl and its children, seconds)."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        rss_out = Path(tmp) / "rss"
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCH, *map(str, args)],
            capture_output=True,
            env={**ENV, **(env or {}), "RSS_OUT": str(rss_out)},
            timeout=120,
        )
        rss_kb = int(rss_out.read_text())
    # Escaping what a file's names hold on stdout is the writer's job, tested with it: bytes kept here.
    out, err = (b.decode("utf-8", "backslashreplace") for b in (proc.stdout, proc.stderr))
    return proc.returncode, out, err, rss_kb / 1024, time.monotonic() - start


def cli(*args: object):
    """varctl in-process (pytest's own process forks the sandbox children)."""
    from typer.testing import CliRunner

    from varctl.cli import app

    return CliRunner().invoke(app, [str(a) for a in args], env={"NO_COLOR": "1", "COLUMNS": "120"})


def craft_keras(dst: Path, make, member: str = KERNEL, base: Path = SAMPLES / "seed_dense.keras") -> Path:
    """A copy of a Keras-written .keras whose dataset `member` is replaced by `make(group, name)`."""
    with zipfile.ZipFile(base) as z:
        parts = {i.filename: z.read(i) for i in z.infolist()}
    buf = io.BytesIO(parts["model.weights.h5"])
    with h5py.File(buf, "r+") as f:
        folder, name = member.rsplit("/", 1)
        del f[folder][name]
        make(f[folder], name)
    parts["model.weights.h5"] = buf.getvalue()
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for k, v in parts.items():
            z.writestr(k, v)
    return dst


def craft_h5(dst: Path, make, member: str = H5_KERNEL) -> Path:
    """A copy of the Keras-written legacy seed_dense.h5 with dataset `member` replaced."""
    shutil.copy(SAMPLES / "seed_dense.h5", dst)
    with h5py.File(dst, "r+") as f:
        folder, name = member.rsplit("/", 1)
        del f[folder][name]
        make(f[folder], name)
    return dst


def zeros_deflated(nbytes: int) -> bytes:
    """A zlib stream that inflates to `nbytes` zeros (a multiple of 16 MiB), built without compressing
    them all: after a full flush deflate starts afresh, so one flushed 16 MiB segment repeats."""
    block = 1 << 24
    assert nbytes % block == 0
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)
    last = zlib.compressobj(9, zlib.DEFLATED, -15)
    tail = last.compress(bytes(block)) + last.flush()
    adler = ((nbytes % 65521) << 16) | 1  # adler32 of n zero bytes
    return b"\x78\xda" + segment * (nbytes // block - 1) + tail + adler.to_bytes(4, "big")


def one_chunk_of_zeros(chunk_bytes: int, compression: str = "gzip"):
    """make(): a (10, 64) float32 kernel kept in one deflated chunk of `chunk_bytes` once inflated."""

    def make(group, name):
        side = int((chunk_bytes // 4) ** 0.5)
        ds = group.create_dataset(
            name,
            shape=(10, 64),
            maxshape=(None, None),
            chunks=(side, side),
            dtype="f4",
            compression=compression,
        )
        ds.id.write_direct_chunk((0, 0), zeros_deflated(side * side * 4))

    return make


def assert_clean(code, err, rss, seconds, expected_code, fragment):
    assert code == expected_code, err
    assert "Traceback" not in err and "internal error" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("varctl: error:")]
    if expected_code == 3:
        assert len(lines) == 1 and fragment in lines[0], err
    assert rss < RSS_BOUND_MB, f"peak RSS {rss:.0f} MB"
    assert seconds < TIME_BOUND_S, f"{seconds:.1f} s"


def test_the_zero_bomb_is_a_real_deflate_stream():
    """The construction the bombs use inflates to exactly the zeros it claims (checked on 48 MiB)."""
    data = zeros_deflated(3 << 24)
    assert len(data) < 200_000
    d = zlib.decompressobj()
    total = 0
    while data:
        out = d.decompress(data, 1 << 24)
        assert not out.strip(b"\0")
        total += len(out)
        data = d.unconsumed_tail
    assert d.eof and total == 3 << 24


def test_a_large_deflated_chunk_within_the_bounds_is_read(tmp_path):
    """Positive control for the bombs: the same construction, 16 MiB, is read and is all zeros."""
    path = craft_keras(tmp_path / "zeros.keras", one_chunk_of_zeros(1 << 24))
    code, out, err, rss, seconds = varctl("stats", path, "-p", "dense", "-f", "json")
    assert_clean(code, err, rss, seconds, 0, "")
    row = json.loads(out)["variables"][0]
    assert row["path"] == "dense/kernel" and row["zero_fraction"] == 1.0 and row["max"] == 0.0


@pytest.fixture(scope="module")
def bomb(tmp_path_factory):
    """A 40-param... a 640-param kernel in one gzip chunk that inflates to 1 GiB (a 1 MB file)."""
    path = craft_keras(tmp_path_factory.mktemp("bomb") / "bomb.keras", one_chunk_of_zeros(1 << 30))
    assert path.stat().st_size < 2_000_000
    return path


CASES = {
    # name: (make, exit code, words in the error line)
    "never_written_1x1_chunks": (
        lambda g, n: g.create_dataset(n, shape=(16384, 16384), chunks=(1, 1), dtype="f4"),
        3,
        "HDF5 chunks (limit 1,000,000",
    ),
    "rank32_tiny_chunks": (
        lambda g, n: g.create_dataset(n, shape=(2,) * 32, chunks=(1,) * 32, dtype="f4"),
        3,
        "4,294,967,296 HDF5 chunks",
    ),
    "no_storage_4tib_chunked": (
        lambda g, n: g.create_dataset(n, shape=(2**20, 2**20), chunks=(4096, 4096), dtype="f4"),
        3,
        "was never written",
    ),
    "no_storage_4tib_contiguous": (
        lambda g, n: g.create_dataset(n, shape=(2**20, 2**20), dtype="f4"),
        3,
        "was never written",
    ),
    "partly_written": (
        lambda g, n: g.create_dataset(n, shape=(10, 64), chunks=(5, 64), dtype="f4").__setitem__(
            (slice(0, 5),), np.ones((5, 64), "f4")
        ),
        3,
        "only partly written (1 of 2 HDF5 chunks",
    ),
    "lzf_1gib_chunk": (
        lambda g, n: g.create_dataset(
            n, shape=(10, 64), maxshape=(None, None), chunks=(2**14, 2**14), dtype="f4", compression="lzf"
        ),
        3,
        "chunks of 1.0 GiB each",
    ),
    "ratio_beyond_deflate": (
        lambda g, n: g.create_dataset(
            n, shape=(10, 64), maxshape=(None, None), chunks=(2048, 2048), dtype="f4", compression="gzip"
        ).id.write_direct_chunk((0, 0), zlib.compress(bytes(100))),
        3,
        "a decompression bomb",
    ),
    "null_dataspace": (lambda g, n: g.create_dataset(n, data=h5py.Empty("f4")), 3, "null dataspace"),
    "bfloat16_marker_on_strings": (
        lambda g, n: g.create_dataset(n, data=np.full((10, 64), b"ab")).attrs.__setitem__(
            "dtype", "bfloat16"
        ),
        3,
        "marked bfloat16 but stores string values",
    ),
}


@pytest.mark.parametrize("fmt", ["keras", "h5"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_dataset_is_refused_cleanly_by_every_value_command(tmp_path, case, fmt):
    """stats in its own process (peak RSS and time measured); list, check --finite and diff --values
    in-process (their sandbox children are bounded the same way)."""
    make, expected, fragment = CASES[case]
    crafted = craft_keras if fmt == "keras" else craft_h5
    path = crafted(tmp_path / f"{case}.{fmt}", make)
    code, _out, err, rss, seconds = varctl("stats", path)
    assert_clean(code, err, rss, seconds, expected, fragment)
    assert "dense/kernel" in err
    assert cli("list", path).exit_code == 0  # metadata alone is fine: the values are the trouble
    for args in (("check", path, "--finite"), ("diff", path, path, "--values")):
        result = cli(*args)
        assert_clean(result.exit_code, result.stderr, 0, 0, expected, fragment)


def test_gzip_bomb_is_refused_before_reading(bomb):
    for args in (("stats", bomb), ("check", bomb, "--finite"), ("diff", bomb, bomb, "--values")):
        code, _out, err, rss, seconds = varctl(*args)
        assert_clean(code, err, rss, seconds, 3, "chunks of 1.0 GiB each once inflated (limit 64 MiB")
        assert seconds < 5 and rss < 200


def test_gzip_bomb_let_through_the_chunk_bound_hits_the_memory_limit(bomb):
    """With the chunk bound lifted, HDF5 tries to inflate the 1 GiB chunk inside the child: the address
    space limit stops it. Exit 3, one line, peak RSS under the bound."""
    code, _out, err, rss, seconds = varctl("stats", bomb, env={"VARCTL_VALUES_MAX_CHUNK_MB": "4096"})
    assert_clean(code, err, rss, seconds, 3, "dense/kernel")


def test_time_limit_stops_a_slow_read(tmp_path):
    """A read longer than VARCTL_VALUES_TIMEOUT is stopped: exit 3, the setting named in the hint."""
    path = craft_keras(tmp_path / "zeros.keras", one_chunk_of_zeros(1 << 26))
    env = {"VARCTL_VALUES_TIMEOUT": "0.001", "VARCTL_VALUES_SECONDS_PER_GIB": "0.001"}
    code, _out, err, rss, seconds = varctl("stats", path, env=env)
    assert_clean(code, err, rss, seconds, 3, "took longer than")
    assert "VARCTL_VALUES_TIMEOUT" in err


@pytest.mark.parametrize(
    ("case", "make", "want"),
    [
        # Keras casts a bfloat16-marked dataset's numbers on load (np.array(v, dtype=bfloat16)): the
        # stored numbers are reported, never their bytes reread as bfloat16.
        ("int8", lambda g, n: g.create_dataset(n, data=np.full((10, 64), 3, "i1")), 3.0),
        ("float64", lambda g, n: g.create_dataset(n, data=np.full((10, 64), 1.5, "f8")), 1.5),
    ],
)
def test_bfloat16_marker_on_other_numbers_gives_the_stored_numbers(tmp_path, case, make, want):
    def marked(g, n):
        make(g, n)
        g[n].attrs["dtype"] = "bfloat16"

    path = craft_keras(tmp_path / f"{case}.keras", marked)
    code, out, err, *_ = varctl("stats", path, "-p", "dense", "-f", "json")
    assert code == 0, err
    row = json.loads(out)["variables"][0]
    assert (row["min"], row["max"], row["mean"], row["std"]) == (want, want, want, 0.0)
    code, out, err, *_ = varctl("diff", path, path, "--values", "-f", "json")
    assert code == 0, err
    assert varctl("check", path, "--finite")[0] == 0


def test_array_valued_dtype_attribute_is_no_marker(tmp_path):
    def make(g, n):
        g.create_dataset(n, data=np.ones((10, 64), "f4")).attrs["dtype"] = np.array([1, 2])

    path = craft_keras(tmp_path / "arr.keras", make)
    code, out, err, *_ = varctl("list", path, "-f", "json")
    assert code == 0, err
    assert json.loads(out)["variables"][0]["dtype"] == "float32"
    code, out, err, *_ = varctl("stats", path, "-p", "dense", "-f", "json")
    assert code == 0 and json.loads(out)["variables"][0]["mean"] == 1.0, err


def _surrogate_named(tmp_path: Path, fmt: str) -> Path:
    """The layer `dense_1` renamed to a name holding a lone surrogate, in the config and, for the legacy
    .h5, in the HDF5 names too (as the byte that is not UTF-8 the surrogate stands for)."""
    name_bytes = "\udc80".encode("utf-8", "surrogateescape")  # b"\x80", as os.fsencode spells it
    if fmt == "keras":
        with zipfile.ZipFile(SAMPLES / "seed_dense.keras") as z:
            parts = {i.filename: z.read(i) for i in z.infolist()}
        # Keras 3 names the weight groups after the class (layers/dense_1), not the layer.
        parts["config.json"] = parts["config.json"].replace(b'"dense_1"', b'"\\udc80"')
        path = tmp_path / "surrogate.keras"
        with zipfile.ZipFile(path, "w") as z:
            for k, v in parts.items():
                z.writestr(k, v)
        return path
    path = tmp_path / "surrogate.h5"
    shutil.copy(SAMPLES / "seed_dense.h5", path)
    with h5py.File(path, "r+") as f:
        f.attrs["model_config"] = f.attrs["model_config"].replace('"dense_1"', '"\\udc80"')
        weights = f["model_weights"]
        weights.attrs["layer_names"] = np.array([b"dense", name_bytes])
        weights.move("dense_1", name_bytes)
        group = weights[name_bytes]
        group.attrs["weight_names"] = np.array(
            [b"seed_dense/" + name_bytes + b"/" + w for w in (b"kernel", b"bias")]
        )
        group["seed_dense"].move("dense_1", name_bytes)
    return path


def test_weights_file_with_names_that_are_not_utf8_reads_and_compares(tmp_path):
    """A weights-only file whose layer groups are named by bytes that are not UTF-8: read, each name a
    str with lone surrogates (surrogateescape), values found through them."""
    from varctl import checks, diffs, valuestats
    from varctl.formats import open_model

    path = tmp_path / "m.weights.h5"
    with zipfile.ZipFile(SAMPLES / "seed_dense.keras") as z:
        path.write_bytes(z.read("model.weights.h5"))
    with h5py.File(path, "r+") as f:
        f["layers"].move("dense", b"\xff\xfe")
        f["layers"].move("dense_1", b"\x80")
    info = open_model(str(path))
    assert info.format == "weights"
    assert sorted(v.path for v in info.variables) == sorted(
        f"layers/{n}/vars/{i}" for n in ("\udcff\udcfe", "\udc80") for i in (0, 1)
    )
    original = open_model(str(SAMPLES / "seed_dense.keras"))
    means = sorted(r.values["mean"] for r in valuestats.stats(info, info.variables))
    assert means == sorted(r.values["mean"] for r in valuestats.stats(original, original.variables))
    assert checks.check(info, checks.Assertions(finite=True)).ok
    assert diffs.diff(info, info, values=True).identical


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_layer_name_with_a_lone_surrogate_reads_and_compares(tmp_path, fmt):
    """The readers and the value commands' cores take the name as it is (escaping it on output is the
    writer's job); the values are those of the original layer."""
    from varctl import checks, diffs, valuestats
    from varctl.formats import open_model

    path = _surrogate_named(tmp_path, fmt)
    info = open_model(str(path))
    original = open_model(str(SAMPLES / f"seed_dense.{fmt}"))
    assert [v.shape for v in info.variables] == [v.shape for v in original.variables]
    assert [v.path for v in info.variables][2:] == ["\udc80/kernel", "\udc80/bias"]
    rows = valuestats.stats(info, info.variables)
    want = valuestats.stats(original, original.variables)
    assert [r.values for r in rows] == [r.values for r in want]
    assert checks.check(info, checks.Assertions(finite=True)).ok
    assert diffs.diff(info, info, values=True).identical
    result = diffs.diff(info, original, values=True)
    assert all(e.values is None or e.values.differing == 0 for e in result.entries)
