"""The readers on hdf5meta, h5py as the fallback (issue 16): same listing either way, fallback on files
outside the subset, no h5py/numpy import for `list` and `check`, fuzz of the new path.

VARCTL_HDF5=strict makes a refusal of the stdlib reader an error (so a listing under it proves hdf5meta
read the file); VARCTL_HDF5=h5py forces the h5py path (the oracle for the differential).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import h5py
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import ROOT, SAMPLES
from tests.test_hdf5meta import built_dir  # noqa: F401 - the session fixture, reused
from varctl.errors import UnreadableModel, VarctlError
from varctl.formats import read_model

COMMITTED = sorted(
    [*SAMPLES.glob("*.h5"), *SAMPLES.glob("*.keras"), *(ROOT / "tests" / "legacy_files").glob("*/*.keras")]
)


def _plain(obj: object) -> object:
    """`obj` as nested plain data: what pickling it keeps, whichever objects it shares (hdf5meta
    hands out one shape tuple per distinct dataspace, h5py a new one per dataset)."""
    if obj is None or isinstance(obj, (str, bytes, int, float)):
        return obj
    if isinstance(obj, dict):
        return ("dict", [(k, _plain(v)) for k, v in obj.items()])  # in order
    if isinstance(obj, (list, tuple)):
        return (type(obj).__name__, [_plain(v) for v in obj])
    return (type(obj).__qualname__, _plain(obj.__getstate__()))


def _read(path: Path, mode: str) -> tuple[dict, object]:
    """(listing, manifest as plain data, through a pickle) of `path` read with VARCTL_HDF5=mode."""
    old = os.environ.get("VARCTL_HDF5")
    os.environ["VARCTL_HDF5"] = mode
    try:
        parsed = read_model(str(path), for_edit=True)
    finally:
        if old is None:
            del os.environ["VARCTL_HDF5"]
        else:
            os.environ["VARCTL_HDF5"] = old
    return parsed.info.to_dict(), _plain(pickle.loads(pickle.dumps(parsed.manifest)))


def assert_same_listing(path: Path) -> dict:
    """hdf5meta reads `path` (strict: no fallback) exactly as h5py does: listing and manifest."""
    fast = _read(path, "strict")
    slow = _read(path, "h5py")
    assert fast[0] == slow[0], path
    assert fast[1] == slow[1], path
    assert _read(path, "auto") == fast
    return fast[0]


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: str(p.relative_to(ROOT)))
def test_committed_files_list_the_same(path):
    assert assert_same_listing(path)["variables"]


def test_zoo_files_list_the_same(zoo_dir):
    files = sorted(p for p in zoo_dir.iterdir() if p.suffix in (".keras", ".h5"))
    assert len(files) > 10
    for path in files:
        assert_same_listing(path)


def test_built_files_list_the_same(built_dir):  # noqa: F811 - the imported fixture
    """Optimizer state, bfloat16, split `layer_names`, quantized, weights-only, shards, tf-keras."""
    files = sorted(p for p in built_dir.iterdir() if p.suffix in (".h5", ".keras"))
    assert len(files) == 10
    for path in files:
        assert assert_same_listing(path)["variables"], path


# -- outside the subset: fallback ------------------------------------------------------------------


def _copy_attrs(src, dst) -> None:
    for key in src.attrs:
        dst.attrs[key] = src.attrs[key]


def _copy(src: h5py.Group, dst: h5py.Group, track_order: bool) -> None:
    _copy_attrs(src, dst)
    for name in src:
        obj = src[name]
        if isinstance(obj, h5py.Group):
            _copy(obj, dst.create_group(name, track_order=track_order), track_order)
        else:
            _copy_attrs(obj, dst.create_dataset(name, data=obj[()]))


def rewrite_h5(data: bytes, track_order: bool = False, **file_kw) -> bytes:
    """The same HDF5 content, rewritten by h5py with settings outside hdf5meta's subset."""
    out = io.BytesIO()
    with (
        h5py.File(io.BytesIO(data), "r") as src,
        h5py.File(out, "w", track_order=track_order, **file_kw) as dst,
    ):
        _copy(src, dst, track_order)
    return out.getvalue()


def rewrite_keras(path: Path, out: Path, **kw) -> None:
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename == "model.weights.h5":
                data = rewrite_h5(data, **kw)
            zout.writestr(info.filename, data)


VARIANTS = {
    "libver_latest": {"libver": "latest"},
    "track_order": {"track_order": True},
    "user_block": {"userblock_size": 512},
}


# Keras never writes a user block, and a .keras member cannot have one either (the archive's is the zip).
CASES = [(s, v) for s in ("transfer_learning.keras", "transfer_learning.h5", "seed_custom_layer.h5")
         for v in sorted(VARIANTS) if not (s.endswith(".keras") and v == "user_block")]  # fmt: skip


@pytest.mark.parametrize(("sample", "variant"), CASES)
def test_outside_subset_falls_back(tmp_path, sample, variant):
    original = SAMPLES / sample
    path = tmp_path / sample
    if sample.endswith(".keras"):
        rewrite_keras(original, path, **VARIANTS[variant])
    else:
        path.write_bytes(rewrite_h5(original.read_bytes(), **VARIANTS[variant]))
    os.environ.pop("VARCTL_HDF5", None)
    with pytest.raises(UnreadableModel, match="stdlib HDF5 reader"):
        _read(path, "strict")  # hdf5meta refuses it: what follows is h5py's listing
    expected, _ = _read(original, "strict")
    for mode in ("auto", "h5py"):
        got, _ = _read(path, mode)
        assert {**got, "model": None} == {**expected, "model": None}


def test_compressed_member_falls_back(tmp_path):
    """A deflated model.weights.h5 (Keras never writes one) cannot be read in place: h5py reads it."""
    original = SAMPLES / "seed_dense.keras"
    path = tmp_path / "deflated.keras"
    with zipfile.ZipFile(original) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info))
    with pytest.raises(UnreadableModel, match="compressed"):
        _read(path, "strict")
    assert {**_read(path, "auto")[0], "model": None} == {**_read(original, "auto")[0], "model": None}


# -- imports ---------------------------------------------------------------------------------------

_PROBE = """
import atexit, sys
atexit.register(lambda: sys.stderr.write("MODULES %s\\n" % sorted(
    m for m in ("h5py", "numpy") if m in sys.modules)))
sys.argv = ["varctl", *sys.argv[1:]]
from varctl.__main__ import main
main()
"""


@pytest.mark.parametrize("sandbox", ["forked", "in-process"])
@pytest.mark.parametrize(
    "args",
    [
        ["list", "transfer_learning.keras"],
        ["list", "-f", "json", "transfer_learning.h5"],
        ["check", "--frozen", "*", "--max-trainable-params", "10", "--no-lambda", "transfer_learning.keras"],
        ["check", "--trainable", "dense*", "--min-trainable-params", "1", "seed_explicit.h5"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-1:]),
)
def test_list_and_check_import_neither_h5py_nor_numpy(args, sandbox):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("VARCTL_HDF5", None)
    env["VARCTL_NO_SANDBOX"] = "1" if sandbox == "in-process" else "0"  # in-process: the reader's own imports
    argv = [*args[:-1], str(SAMPLES / args[-1])]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env)
    assert proc.returncode in (0, 1), proc.stderr
    assert proc.stdout.strip()
    assert "MODULES []" in proc.stderr.splitlines()[-1], proc.stderr


def test_value_commands_still_import_h5py():
    """The probe can fail: --finite reads values, so h5py and numpy are imported."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VARCTL_NO_SANDBOX": "1"}
    argv = ["check", "--finite", str(SAMPLES / "seed_dense.keras")]
    proc = subprocess.run([sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "MODULES ['h5py', 'numpy']" in proc.stderr


def test_forced_fallback_lists_the_same_through_the_cli():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    outs = {}
    for mode in ("strict", "h5py"):
        env["VARCTL_HDF5"] = mode
        argv = ["list", "-f", "json", str(SAMPLES / "transfer_learning.keras")]
        proc = subprocess.run(
            [sys.executable, "-m", "varctl", *argv], capture_output=True, text=True, env=env
        )
        assert proc.returncode == 0, proc.stderr
        outs[mode] = json.loads(proc.stdout)
    assert outs["strict"] == outs["h5py"]


# -- fuzz: mutated HDF5 bytes on the new path ------------------------------------------------------

KERAS = SAMPLES / "seed_dense.keras"
H5 = SAMPLES / "seed_dense.h5"
FOUND: dict[str, int] = {}  # outcomes (strict/h5py), shown with -s
FUZZ_ENV = {"VARCTL_READ_TIMEOUT": "20", "VARCTL_READ_MEMORY_MB": "1024"}


@st.composite
def mutations(draw, base: bytes) -> bytes:
    data = bytearray(base)
    for _ in range(draw(st.integers(1, 8))):
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["byte", "zero", "ff", "truncate"]))
        if kind == "byte":
            data[at] = draw(st.integers(0, 255))
        elif kind == "zero":
            data[at : at + 8] = bytes(len(data[at : at + 8]))
        elif kind == "ff":
            data[at : at + 8] = b"\xff" * len(data[at : at + 8])
        elif at > 64:
            del data[at:]
    return bytes(data)


def _weights_member(path: Path) -> bytes:
    with zipfile.ZipFile(path) as zf:
        return zf.read("model.weights.h5")


def _with_member(path: Path, member: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, member if info.filename == "model.weights.h5" else zin.read(info))
    return out.getvalue()


def _outcome(path: Path, mode: str):
    start = time.monotonic()
    try:
        result = ("ok", _read(path, mode)[0])
    except VarctlError as e:  # a clean error; anything else (a bug) fails the test
        result = ("error", type(e).__name__)
    assert time.monotonic() - start < 20
    return result


def _property(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    for key, value in FUZZ_ENV.items():
        os.environ[key] = value
    auto = _outcome(path, "auto")
    slow = _outcome(path, "h5py")
    fast = _outcome(path, "strict")
    if fast[0] == "ok":
        assert auto == fast
        if slow[0] == "ok":
            assert fast == slow  # never a different listing
        else:  # metadata hdf5meta never parses (data, free space) broke h5py: listed all the same
            FOUND["hdf5meta only"] = FOUND.get("hdf5meta only", 0) + 1
    else:
        assert auto == slow  # the fallback decides every file hdf5meta does not read
    FOUND[f"{fast[0]}/{slow[0]}"] = FOUND.get(f"{fast[0]}/{slow[0]}", 0) + 1


FUZZ = settings(max_examples=30, deadline=None, database=None, derandomize=True,
                suppress_health_check=list(HealthCheck))  # fmt: skip


@pytest.mark.slow
@FUZZ
@given(data=mutations(_weights_member(KERAS)))
def test_fuzz_keras_weights_member(tmp_path_factory, data):
    _property(tmp_path_factory.mktemp("fz") / "m.keras", _with_member(KERAS, data))


@pytest.mark.slow
@FUZZ
@given(data=mutations(H5.read_bytes()))
def test_fuzz_legacy_h5(tmp_path_factory, data):
    _property(tmp_path_factory.mktemp("fz") / "m.h5", data)


@pytest.fixture(scope="module", autouse=True)
def _report_fuzz():
    yield
    if FOUND:
        print(f"\nhdf5meta fuzz outcomes (strict/h5py): {FOUND}")


@pytest.fixture(autouse=True)
def _clean_env():
    saved = {k: os.environ.get(k) for k in ("VARCTL_HDF5", *FUZZ_ENV)}
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


_PLUGINS = """
import sys
from varctl.formats import _h5safe
assert "h5py" not in sys.modules
import h5py
before = h5py.h5pl.size()
_h5safe.lib()
print(before, h5py.h5pl.size())
"""


def test_h5py_is_imported_with_plugin_loading_off(tmp_path):
    """h5py is lazy now: the first use (fallback, values, --load via import_keras) still empties
    HDF5's plugin search path before any file is opened."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HDF5_PLUGIN_PATH": f"{tmp_path}/a:{tmp_path}/b"}
    proc = subprocess.run([sys.executable, "-c", _PLUGINS], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    before, after = map(int, proc.stdout.split())
    assert before >= 2 and after == 0


def test_weights_only_outside_subset_falls_back(tmp_path):
    import numpy as np

    path = tmp_path / "latest.weights.h5"
    with h5py.File(path, "w", libver="latest") as h5:
        vars_ = h5.create_group("layers").create_group("dense").create_group("vars")
        vars_.create_dataset("0", data=np.ones((2, 3), "<f4"))
        vars_.create_dataset("1", data=np.ones(3, "<f4"))
    with pytest.raises(UnreadableModel, match="superblock version"):
        _read(path, "strict")
    listing, _ = _read(path, "auto")
    assert listing == _read(path, "h5py")[0]
    assert [(v["path"], v["shape"]) for v in listing["variables"]] == [
        ("dense/kernel", [2, 3]),  # the group's name; variable names from the class it names
        ("dense/bias", [3]),
    ]
