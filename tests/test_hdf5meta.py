"""hdf5meta against h5py: the same tree on every Keras-written file, refusal outside the subset, fuzz."""

from __future__ import annotations

import io
import mmap
import signal
import struct
import subprocess
import sys
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from varctl.formats import hdf5meta as hm
from varctl.formats.hdf5meta import HDF5MetaError, Malformed, OutsideSubset

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_models"
COMMITTED = sorted(
    [*SAMPLES.glob("*.h5"), *SAMPLES.glob("*.keras"), *(ROOT / "tests" / "legacy_files").glob("*/*.keras")]
)
_LAYOUTS = {h5py.h5d.COMPACT: "compact", h5py.h5d.CONTIGUOUS: "contiguous", h5py.h5d.CHUNKED: "chunked",
            h5py.h5d.VIRTUAL: "virtual"}  # fmt: skip


# -- the two trees --------------------------------------------------------------------------------


def _norm(value):
    """An h5py attribute value as hdf5meta gives it: str for strings, lists for arrays."""
    if isinstance(value, h5py.Empty):
        return hm.Empty(value.dtype.str)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, list):
        return [_norm(v) for v in value]
    return value


def h5py_tree(group: h5py.Group, out: dict | None = None) -> dict:
    out = {} if out is None else out
    for name in group:  # h5py's own order: by name
        obj = group[name]
        attrs = {k: _norm(obj.attrs[k]) for k in obj.attrs}
        if isinstance(obj, h5py.Group):
            out[obj.name] = ("group", attrs)
            h5py_tree(obj, out)
        elif isinstance(obj, h5py.Datatype):
            out[obj.name] = ("datatype", attrs)
        else:
            plist = obj.id.get_create_plist()
            filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
            layout = _LAYOUTS[plist.get_layout()]
            allocated = _h5py_allocated(obj, layout)
            out[obj.name] = (
                "dataset",
                attrs,
                obj.shape,
                obj.dtype.str,
                layout,
                obj.chunks,
                filters,
                allocated,
            )
    return out


def _h5py_allocated(obj: h5py.Dataset, layout: str) -> bool | None:
    """Whether h5py says the dataset has storage (compact: always, so not compared)."""
    if layout == "contiguous":
        return obj.id.get_offset() is not None
    if layout == "chunked":
        return obj.id.get_space_status() != h5py.h5d.SPACE_STATUS_NOT_ALLOCATED
    return None


def meta_tree(group: hm.Group, out: dict | None = None) -> dict:
    out = {} if out is None else out
    for _, obj in group.items():
        attrs = dict(obj.attrs)
        if isinstance(obj, hm.Group):
            out[obj.name] = ("group", attrs)
            meta_tree(obj, out)
        else:
            allocated = obj.storage_allocated if obj.layout in ("contiguous", "chunked") else None
            out[obj.name] = (
                "dataset", attrs, obj.shape, obj.dtype, obj.layout, obj.chunks, obj.filters, allocated,
            )  # fmt: skip
    return out


def member_window(path: Path, member: str = "model.weights.h5") -> tuple[int, int]:
    """(data offset, size) of a stored zip member: where the reader reads it in place."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    assert info.compress_type == zipfile.ZIP_STORED
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    name_len, extra_len = struct.unpack_from("<HH", local, 26)
    return info.header_offset + 30 + name_len + extra_len, info.file_size


def assert_same_tree(path: Path) -> int:
    """Both readers agree on every object of `path` (a .keras is read in place in the archive)."""
    if path.suffix == ".keras":
        offset, size = member_window(path)
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            with h5py.File(io.BytesIO(mm[offset : offset + size]), "r") as h5:
                expected = h5py_tree(h5)
            with hm.open(mm, offset, size) as f:
                got = meta_tree(f.root)
                root_attrs = dict(f.root.attrs)
            with h5py.File(io.BytesIO(mm[offset : offset + size]), "r") as h5:
                assert root_attrs == {k: _norm(h5.attrs[k]) for k in h5.attrs}
    else:
        with h5py.File(path, "r") as h5:
            expected = h5py_tree(h5)
            expected_root = {k: _norm(h5.attrs[k]) for k in h5.attrs}
        with hm.open(path) as f:
            got = meta_tree(f.root)
            assert dict(f.root.attrs) == expected_root
    assert list(got) == list(expected), path  # same paths, same (name) order
    for key, want in expected.items():
        assert got[key] == want, (path, key)
    return len(expected)


# -- committed files: run without building anything -------------------------------------------------


@pytest.mark.parametrize("path", COMMITTED, ids=[str(p.relative_to(ROOT)) for p in COMMITTED])
def test_committed_files_match_h5py(path):
    assert assert_same_tree(path) > 0


# -- files Keras 3 and tf-keras write -----------------------------------------------------------------


@pytest.fixture(scope="session")
def built_dir(tmp_path_factory):
    """Files the zoo does not cover: long layer names, optimizer state, bfloat16, tf-keras."""
    keras = pytest.importorskip("keras")
    from keras import layers as L

    out = tmp_path_factory.mktemp("hdf5meta")
    keras.utils.set_random_seed(0)
    # layer_names > 64 KB: Keras splits the attribute into layer_names0, layer_names1, ...
    long = keras.Sequential(
        [keras.Input((2,)), *[L.Dense(1, name=f"{'d' * 1000}_{k}") for k in range(70)]], name="long"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        long.save(out / "long_names.h5")
    long.save_weights(out / "long_names.weights.h5")

    model = keras.Sequential(
        [keras.Input((4, 3)), L.Conv1D(2, 2), L.LSTM(3), L.BatchNormalization(), L.Dense(2, dtype="bfloat16")]
    )
    model.compile(optimizer="adam", loss="mse")
    model.fit(np.zeros((4, 4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    model.save(out / "compiled.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(out / "compiled.h5")
    model.save_weights(out / "compiled.weights.h5")

    quantized = keras.Sequential([keras.Input((8,)), L.Dense(16), L.Dense(4)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantized.quantize("int8")
    quantized.save(out / "quantized.keras")
    sharded = keras.Sequential([keras.Input((64,)), L.Dense(256), L.Dense(256)])
    sharded.save_weights(out / "sharded.weights.json", max_shard_size=0.0003)  # GB: two shards

    import tf_keras

    old = tf_keras.Sequential(
        [tf_keras.Input((3,)), tf_keras.layers.Dense(2), tf_keras.layers.BatchNormalization()]
    )
    old.compile(optimizer="adam", loss="mse")
    old.fit(np.zeros((4, 3)), np.zeros((4, 2)), epochs=1, verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        old.save(out / "tf_keras.h5")
    old.save_weights(out / "tf_keras.weights.h5")
    return out


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".h5", ".keras"))


def test_keras_built_files_match_h5py(built_dir):
    files = _files(built_dir)
    assert len(files) == 10
    assert len([p for p in files if p.name.startswith("sharded_")]) == 2
    for path in files:
        assert assert_same_tree(path) > 0
    with hm.open(built_dir / "long_names.h5") as f:
        weights = f.root["model_weights"]
        assert {"layer_names0", "layer_names1"} <= set(weights.attrs)
        assert len(hm.h5safe.list_attr(weights, "layer_names")) == 70
    with hm.open(built_dir / "compiled.weights.h5") as f:
        assert "optimizer" in f.root


def test_keras_hub_backbone_matches_h5py(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=20,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    backbone.save(tmp_path / "bert.keras")
    assert assert_same_tree(tmp_path / "bert.keras") > 50


def test_zoo_files_match_h5py(zoo_dir):
    files = _files(zoo_dir)
    assert len(files) >= 11
    for path in files:
        assert assert_same_tree(path) > 0


def test_mobilenet_matches_h5py(tmp_path):
    keras = pytest.importorskip("keras")
    model = keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3))
    model.save(tmp_path / "mobilenet.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(tmp_path / "mobilenet.h5")
    assert assert_same_tree(tmp_path / "mobilenet.keras") > 500
    assert assert_same_tree(tmp_path / "mobilenet.h5") > 500


# -- the h5safe-shaped adapter gives what _h5safe gives --------------------------------------------


def _adapter_views(h5safe, group, budget, out, prefix=""):
    names = h5safe.member_names(group, budget)
    out[prefix] = (names, h5safe.str_attr(group, "name"), h5safe.list_attr(group, "layer_names"),
                   h5safe.list_attr(group, "weight_names"), h5safe.str_attr(group, "model_config"))  # fmt: skip
    for n in names:
        obj = h5safe.get_member(group, n)
        if isinstance(obj, (h5py.Group, hm.Group)):
            assert h5safe.get_group(group, n) is not None
            _adapter_views(h5safe, obj, budget, out, f"{prefix}/{n}")
        else:
            out[f"{prefix}/{n}"] = h5safe.dataset_meta(h5safe.get_dataset(group, n))
    return out


def assert_adapter_agrees(path: Path) -> None:
    """hdf5meta.h5safe gives what _h5safe gives on h5py, call for call."""
    from varctl.formats import _h5safe

    if path.suffix == ".keras":
        offset, size = member_window(path)
        data = path.read_bytes()
        with h5py.File(io.BytesIO(data[offset : offset + size]), "r") as h5:
            want = _adapter_views(_h5safe, h5, _h5safe.Budget(), {})
        with hm.open(data, offset, size) as f:
            got = _adapter_views(hm.h5safe, f.root, hm.Budget(), {})
    else:
        with h5py.File(path, "r") as h5:
            want = _adapter_views(_h5safe, h5, _h5safe.Budget(), {})
        with hm.open(path) as f:  # the File itself, as readers pass h5py.File objects
            got = _adapter_views(hm.h5safe, f, hm.Budget(), {})
    assert got == want, path


@pytest.mark.parametrize("name", ["transfer_learning.keras", "transfer_learning.h5", "batchnorm.h5"])
def test_adapter_matches_h5safe(name):
    assert_adapter_agrees(SAMPLES / name)


def test_adapter_matches_h5safe_on_zoo(zoo_dir):
    for path in _files(zoo_dir):  # float16, bfloat16, float64, int64 variables among them
        assert_adapter_agrees(path)


def test_adapter_refuses_wrong_kinds():
    with hm.open(SAMPLES / "seed_dense.h5") as f:
        assert hm.h5safe.get_group(f.root, "absent") is None
        with pytest.raises(Malformed):
            hm.h5safe.get_dataset(f.root, "model_weights")
        with pytest.raises(Malformed):
            hm.h5safe.member_names(f.root, hm.Budget(limit=1))


def _members_both_ways(group, skip):
    """`h5safe.members_meta` (one pass over the links) and `member_names` + `get_member` +
    `dataset_meta` (one lookup per name), side by side: (name, path, kind, meta) of each member
    below `group`, and the budget each spent."""
    fast_budget, slow_budget = hm.Budget(), hm.Budget()
    fast = [
        (n, o[0], "Dataset", o[1:]) if isinstance(o, tuple) else (n, o.name, "Group", None)
        for n, o in hm.h5safe.members_meta(group, fast_budget, skip)
    ]
    slow = [
        (n, o.name, type(o).__name__, hm.h5safe.dataset_meta(o) if isinstance(o, hm.Dataset) else None)
        for n, o in ((n, hm.h5safe.get_member(group, n)) for n in hm.h5safe.member_names(group, slow_budget))
        if n not in skip
    ]
    return (fast, fast_budget.left), (slow, slow_budget.left)


@pytest.mark.parametrize("name", ["transfer_learning.keras", "transfer_learning.h5", "seed_custom_layer.h5"])
def test_members_meta_is_member_names_then_get_member_and_dataset_meta(name):
    path = SAMPLES / name
    offset, size = member_window(path) if path.suffix == ".keras" else (0, None)
    with hm.open(path.read_bytes(), offset, size) as f:
        groups = [f, *(obj for _, obj in f.walk() if isinstance(obj, hm.Group))]
        for group in groups:
            names = group.keys()
            for skip in (frozenset(), frozenset(names[:1]), frozenset({"optimizer", "absent"})):
                fast, slow = _members_both_ways(group, skip)
                assert fast == slow and len(fast[0]) == len(set(names) - skip)
        with pytest.raises(Malformed):  # the budget is spent before any member is opened
            hm.h5safe.members_meta(f, hm.Budget(limit=1))


def test_message_memo_is_bounded(tmp_path, monkeypatch):
    """Datatypes and dataspaces are parsed once per distinct message: at most _MEMO_ENTRIES of them,
    each of at most _MEMO_KEY_BYTES; past that they are parsed every time, with the same result."""
    path = tmp_path / "shapes.h5"
    with h5py.File(path, "w") as h5:
        for i in range(1, 12):
            h5.create_dataset(f"d{i:02}", shape=(i, 2), dtype="<f4" if i % 2 else "<i2")
            h5.create_dataset(f"wide{i:02}", shape=(1,) * 20, maxshape=(None,) * 20, chunks=(1,) * 20)
    assert assert_same_tree(path) == 22  # memoized: one _Space per distinct dataspace message
    with hm.open(path) as f:
        spaces = {id(f.root[f"d{i:02}"]._hdr.space) for i in range(1, 12)}
        assert len(spaces) == len(f._spaces) == 11  # the wide dataspace (328 bytes) is not kept
        assert f.root["wide01"]._hdr.space is not f.root["wide02"]._hdr.space
        assert len(f._types) == 2 and f.root["d03"].shape == (3, 2) and f.root["d04"].dtype == "<i2"
    monkeypatch.setattr(hm, "_MEMO_ENTRIES", 3)
    assert assert_same_tree(path) == 22
    with hm.open(path) as f:
        assert [obj.shape for _, obj in f.walk()][:4] == [(1, 2), (2, 2), (3, 2), (4, 2)]
        assert len(f._spaces) == 3


# -- API details ------------------------------------------------------------------------------------


def test_paths_windows_and_buffers(tmp_path):
    path = SAMPLES / "seed_dense.keras"
    offset, size = member_window(path)
    data = path.read_bytes()
    with hm.open(data, offset, size) as f:
        want = meta_tree(f.root)
        ds = f.root.get("layers/dense/vars/0")
        assert isinstance(ds, hm.Dataset) and ds.dtype == "<f4" and ds.layout == "contiguous"
        assert ds.storage_allocated and ds.chunks is None and ds.filters == ()
        assert f.root.get("/layers/dense/vars/0").name == ds.name == "/layers/dense/vars/0"
        assert f.root["layers"].get("dense/vars").attrs["name"] == "dense"
        assert f.root.get("layers/absent") is None and f.root.get("layers/dense/vars/0/x") is None
        assert "layers/dense" in f.root and "nope" not in f.root
        with pytest.raises(KeyError):
            f.root["nope"]
    for source in (bytearray(data), memoryview(data)):
        with hm.open(source, offset, size) as f:
            assert meta_tree(f.root) == want
    copy = tmp_path / "w.h5"
    copy.write_bytes(data[offset : offset + size])
    with hm.open(copy) as f:
        assert meta_tree(f.root) == want
        layers = f.root["layers"]
    with pytest.raises(Malformed):  # used after close: a clean error, not a crash
        layers.items()
    with pytest.raises(Malformed):  # the window is the file: its end is checked, not the buffer's
        hm.open(data, offset, size - 100)
    with pytest.raises(Malformed):
        hm.open(data, offset, len(data))
    with pytest.raises(Malformed):
        hm.open(b"")
    with pytest.raises(Malformed):
        hm.open(b"not an hdf5 file at all")


def test_chunked_filtered_and_odd_types_match_h5py(tmp_path):
    """Inside the subset, though Keras rarely writes them: h5py and hdf5meta must still agree."""
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("gz", data=np.arange(100, dtype="<i2").reshape(10, 10), chunks=(5, 5), compression="gzip",
                          shuffle=True, fletcher32=True)  # fmt: skip
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.COMPACT)
        space = h5py.h5s.create_simple((3,))
        h5py.h5d.create(h5.id, b"compact", h5py.h5t.STD_U32BE, space, dcpl=dcpl)
        h5.create_dataset("empty", shape=(0, 3), dtype="<f8")
        h5.create_dataset("unallocated", shape=(4,), dtype=">f4")
        h5.create_dataset("scalar", data=np.int8(3))
        h5.create_dataset("null", data=h5py.Empty("<f4"))
        h5.create_dataset("vstr", data=["a", "bc"], dtype=h5py.string_dtype())
        h5.create_dataset("fstr", data=np.array([b"ab", b"c"]))
        g = h5.create_group("g/h/i")
        g.attrs["ints"] = np.arange(6, dtype="<i8").reshape(2, 3)
        g.attrs["uint"] = np.uint64(2**64 - 1)
        g.attrs["half"] = np.float16(1.5)
        g.attrs["be"] = np.array([1.25, -2.0], dtype=">f8")
        g.attrs["vstrs"] = ["x", "ÿ€", ""]
        g.attrs["fstrs"] = np.array([b"one", b"three"])
        g.attrs["text"] = "plain"
        g.attrs["ütf"] = "name in UTF-8"
        g.attrs["empty"] = h5py.Empty("<i4")
        g.attrs["scalar_fixed"] = np.bytes_(b"fixed")
    assert assert_same_tree(path) == 11
    many = tmp_path / "many_attrs.h5"
    with h5py.File(many, "w") as h5:  # v1 headers hold them all, spread over continuation blocks
        group = h5.create_group("g")
        for i in range(60):
            group.attrs[f"attribute_{i}"] = np.arange(i * 40, dtype="<f8")
            h5.create_dataset(f"d{i}", shape=(i,), dtype="<i4").attrs[f"a{i}"] = "x" * i
    assert assert_same_tree(many) == 61
    wide = tmp_path / "wide.h5"
    with h5py.File(wide, "w") as h5:  # > 2K symbol-table nodes: a B-tree with internal levels
        group = h5.create_group("wide")
        for i in range(700):
            group.create_group(f"m{i * 7919 % 700}")
    assert assert_same_tree(wide) == 701
    with hm.open(wide) as f:
        assert f.root["wide"].get("m699") is not None and "m700" not in f.root["wide"]
    with hm.open(path) as f:
        gz = f.root["gz"]
        assert (gz.layout, gz.chunks, gz.filters) == ("chunked", (5, 5), (2, 1, 3))
        assert f.root["compact"].layout == "compact" and f.root["compact"].dtype == ">u4"
        assert not f.root["unallocated"].storage_allocated
        assert f.root["null"].shape is None and f.root["scalar"].shape == ()
        assert f.root["vstr"].dtype == "|O" and f.root["fstr"].dtype == "|S2"
        assert f.root["g/h/i"].attrs.shape("ints") == (2, 3)


def test_chunked_storage_allocated_matches_h5py(tmp_path):
    """A chunked dataset has storage once a chunk is written (its chunk index address is defined)."""
    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("unwritten", shape=(10, 10), chunks=(5, 5), dtype="<f4")
        h5.create_dataset("written", data=np.ones((10, 10), "<f4"), chunks=(5, 5))
        h5.create_dataset("partly", shape=(10, 10), chunks=(5, 5), dtype="<f4")[0, 0] = 1
        h5.create_dataset("gz", data=np.ones(8, "<f4"), chunks=(4,), compression="gzip")
        h5.create_dataset("gz_unwritten", shape=(8,), chunks=(4,), dtype="<f4", compression="gzip")
        h5.create_dataset("contiguous", data=np.ones(3, "<f4"))
        h5.create_dataset("contiguous_unwritten", shape=(3,), dtype="<f4")
        h5.create_dataset("resizable", data=np.ones((4, 2), "<f4"), chunks=(2, 2), maxshape=(None, 2))
        h5.create_dataset("resizable_empty", shape=(0, 2), chunks=(2, 2), maxshape=(None, 2), dtype="<f4")
    assert assert_same_tree(path) == 9  # compares storage_allocated with h5py's space status
    with hm.open(path) as f:
        got = {name: f.root[name].storage_allocated for name in f.root}
        assert f.root["resizable"].shape == (4, 2)
    assert got == {"unwritten": False, "written": True, "partly": True, "gz": True, "gz_unwritten": False,
                   "contiguous": True, "contiguous_unwritten": False, "resizable": True,
                   "resizable_empty": False}  # fmt: skip
    shrunk = tmp_path / "shrunk.h5"
    with h5py.File(shrunk, "w") as h5:  # every chunk dropped by a resize: the chunk index stays
        h5.create_dataset("d", data=np.ones((4, 2), "<f4"), chunks=(2, 2), maxshape=(None, 2)).resize((0, 2))
        assert h5["d"].id.get_space_status() == h5py.h5d.SPACE_STATUS_NOT_ALLOCATED
    with hm.open(shrunk) as f:
        assert f.root["d"].storage_allocated and f.root["d"].shape == (0, 2)


# -- refusal: every feature outside the subset ------------------------------------------------------


def walk_everything(source) -> None:
    with hm.open(source) as f:
        for _, obj in f.walk():
            dict(obj.attrs)
        dict(f.root.attrs)


def _outside_files(folder: Path) -> dict[str, Path]:
    files = {}

    def make(name, build, **kw):
        path = folder / f"{name}.h5"
        with h5py.File(path, "w", **kw) as h5:
            h5.create_group("layers").create_dataset("w", data=np.ones(3, "<f4"))
            build(h5)
        files[name] = path

    make("libver_latest", lambda h5: None, libver="latest")
    make("libver_v110", lambda h5: None, libver=("v110", "v110"))
    make("track_order", lambda h5: h5.create_group("ordered", track_order=True))
    make("track_order_file", lambda h5: None, track_order=True)
    make("soft_link", lambda h5: h5.__setitem__("soft", h5py.SoftLink("/layers/w")))
    make("external_link", lambda h5: h5.__setitem__("ext", h5py.ExternalLink("other.h5", "/x")))
    make("compound", lambda h5: h5.create_dataset("c", data=np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])))
    make("enum", lambda h5: h5.create_dataset("e", data=np.zeros(2, h5py.enum_dtype({"A": 0, "B": 1}, "i1"))))
    make("bool", lambda h5: h5.create_dataset("b", data=np.zeros(2, bool)))
    make("array_type", lambda h5: h5.create_dataset("a", shape=(2,), dtype=np.dtype(("<f4", (3,)))))
    make("reference", lambda h5: h5.create_dataset("r", shape=(1,), dtype=h5py.ref_dtype))
    make("vlen_ints", lambda h5: h5.create_dataset("v", shape=(2,), dtype=h5py.vlen_dtype(np.int32)))
    make("long_double", lambda h5: h5.create_dataset("ld", shape=(2,), dtype=np.longdouble))
    make("complex", lambda h5: h5.create_dataset("cx", shape=(2,), dtype="<c8"))

    def dense_attrs(h5):
        group = h5.create_group("dense", track_order=True)  # needs a v2 header: dense past 8
        for i in range(40):
            group.attrs[f"attribute_{i}"] = i

    make("dense_attributes", dense_attrs)
    # HDF5 stores an attribute > 64 KB only densely, in a newer file format (h5py's default refuses it).
    make("big_attribute", lambda h5: h5["layers"].attrs.__setitem__("big", np.zeros(20_000, "<f8")),
         libver=("v108", "latest"))  # fmt: skip

    def named_type(h5):
        h5["named"] = np.dtype("<f4")

    make("committed_type", named_type)
    make(
        "committed_type_used",
        lambda h5: (named_type(h5), h5.create_dataset("d", shape=(2,), dtype=h5["named"])),
    )
    make("external_storage", lambda h5: h5.create_dataset("x", shape=(4,), dtype="<f4",
                                                          external=[(str(folder / "raw.bin"), 0, 16)]))  # fmt: skip
    make("opaque_tag", lambda h5: h5.create_dataset("o", data=np.zeros(2, dtype=h5py.opaque_dtype("V4"))))
    make("user_block", lambda h5: None, userblock_size=512)

    def virtual(h5):
        layout = h5py.VirtualLayout(shape=(3,), dtype="<f4")
        layout[:] = h5py.VirtualSource(h5["layers/w"])
        h5.create_virtual_dataset("v", layout)

    make("virtual", virtual)
    return files


@pytest.fixture(scope="module")
def outside_files(tmp_path_factory):
    return _outside_files(tmp_path_factory.mktemp("outside"))


OUTSIDE = [
    "libver_latest", "libver_v110", "track_order", "track_order_file", "soft_link", "external_link",
    "compound", "enum", "bool", "array_type", "reference", "vlen_ints", "long_double", "complex",
    "dense_attributes", "big_attribute", "committed_type", "committed_type_used", "external_storage",
    "opaque_tag", "user_block", "virtual",
]  # fmt: skip


@pytest.mark.parametrize("name", OUTSIDE)
def test_outside_subset_is_refused(outside_files, name):
    path = outside_files[name]
    with h5py.File(path, "r") as h5:  # h5py reads it: the fallback works
        if name != "external_link":  # (its target is missing; varctl's fallback refuses it anyway)
            h5py_tree(h5)
    with pytest.raises(OutsideSubset):
        walk_everything(path)


def test_outside_files_are_all_listed(outside_files):
    assert sorted(outside_files) == sorted(OUTSIDE)


# -- hostile bytes ------------------------------------------------------------------------------------


def _seed_weights() -> bytes:
    path = SAMPLES / "seed_dense.keras"
    offset, size = member_window(path)
    return path.read_bytes()[offset : offset + size]


def test_hard_link_cycle_and_truncation_are_refused(tmp_path):
    path = tmp_path / "cycle.h5"
    with h5py.File(path, "w") as h5:
        h5.create_group("a/b")
        h5["a/b/up"] = h5["a"]  # a legal hard link to an ancestor: an endless tree
    with pytest.raises(OutsideSubset):
        walk_everything(path)
    diamond = tmp_path / "diamond.h5"
    with h5py.File(diamond, "w") as h5:  # 2**40 paths through 40 groups, if walked naively
        below = h5.create_group("g39")
        for level in range(38, -1, -1):
            group = h5.create_group(f"g{level}")
            group["left"] = below
            group["right"] = below
            below = group
    with pytest.raises(OutsideSubset, match="also linked"):
        walk_everything(diamond)
    with hm.open(diamond) as f:  # reaching each group by one path still works
        assert f.root.get("g0/left/left/right") is not None
    data = _seed_weights()
    for end in (0, 7, 8, 100, 200, len(data) // 2, len(data) - 1):
        with pytest.raises(HDF5MetaError):
            walk_everything(data[:end])


def _messages(data: bytes, header: int) -> list[tuple[int, int]]:
    """(type, data offset) of the messages in the first block of a v1 object header."""
    size = struct.unpack_from("<I", data, header + 8)[0]
    out, p = [], header + 16
    while p + 8 <= header + 16 + size:
        mtype, msize = struct.unpack_from("<HH", data, p)
        out.append((mtype, p + 8))
        p += 8 + msize
    return out


def test_crafted_cycles_end_quickly(tmp_path):
    path = tmp_path / "crafted.h5"
    with h5py.File(path, "w") as h5:
        group = h5.create_group("g")
        for i in range(40):  # enough attributes to need a continuation block
            group.attrs[f"attribute_{i}"] = np.arange(50, dtype="<f8")
        wide = h5.create_group("wide")
        for i in range(400):  # enough members for a B-tree with an internal level
            wide.create_group(f"m{i}")
    data = bytearray(path.read_bytes())
    with hm.open(bytes(data)) as f:
        g_addr, wide_addr = f.root["g"].addr, f.root["wide"].addr
        btree = f._header(wide_addr).symtab[0]
    # 1. The continuation block points back at itself.
    (cont,) = [at for mtype, at in _messages(data, g_addr) if mtype == 0x10]
    block = struct.unpack_from("<Q", data, cont)[0]
    looped = bytearray(data)
    looped[cont : cont + 8] = struct.pack("<Q", g_addr + 16)
    with pytest.raises(Malformed, match="continuation loop"):
        walk_everything(bytes(looped))
    assert block != g_addr + 16
    # 2. A B-tree child points back at the root node (level mismatch or cycle, never a hang).
    assert data[btree + 5] == 1  # an internal node
    looped = bytearray(data)
    looped[btree + 24 + 8 : btree + 24 + 16] = struct.pack("<Q", btree)
    with pytest.raises(Malformed, match="B-tree (cycle|levels)"):
        walk_everything(bytes(looped))
    # 3. An absurd dimension in an attribute's dataspace.
    with hm.open(bytes(data)) as f:
        assert f.root["g"].attrs.shape("attribute_0") == (50,)
    dims = struct.pack("<Q", 50)
    bomb = bytearray(data)
    at = bomb.index(dims, g_addr)
    bomb[at : at + 8] = struct.pack("<Q", 2**62)
    with pytest.raises(HDF5MetaError):
        walk_everything(bytes(bomb))


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def _fuzz_once(original: bytes, mutated: bytes) -> None:
    """hdf5meta on mutated bytes: an HDF5MetaError, or the tree h5py reads (or the original's)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, 2.0)
    tracemalloc.start()
    try:
        try:
            with hm.open(mutated) as f:
                got = meta_tree(f.root)
                got["/"] = dict(f.root.attrs)
        except HDF5MetaError:
            return
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert peak < 32 * 1024 * 1024
    try:
        with h5py.File(io.BytesIO(mutated), "r") as h5:
            want = h5py_tree(h5)
            want["/"] = {k: _norm(h5.attrs[k]) for k in h5.attrs}
    except Exception:
        with h5py.File(io.BytesIO(original), "r") as h5:
            want = h5py_tree(h5)
            want["/"] = {k: _norm(h5.attrs[k]) for k in h5.attrs}
    assert got == want


def test_fuzz_mutated_weights():
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    original = _seed_weights()
    n = len(original)  # ~27 KB, two thirds of it metadata (h5py interleaves headers and data)
    flip = st.tuples(st.just("flip"), st.integers(0, n - 1), st.integers(1, 255))
    word = st.tuples(st.just("word"), st.integers(0, n - 8), st.sampled_from(
        [0, 1, 0xFF, 0xFFFF, 2**31, 2**63, 2**64 - 1, n, n - 1, n + 8, 40, 96]))  # fmt: skip
    cut = st.tuples(st.just("cut"), st.integers(0, n - 1), st.just(0))
    splice = st.tuples(st.just("splice"), st.integers(0, n - 1), st.integers(0, n - 64))
    edit = st.one_of(flip, flip, word, word, splice, cut)  # a cut mostly ends at the superblock check

    @settings(max_examples=200, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.lists(edit, min_size=1, max_size=4))
    def run(edits):
        data = bytearray(original)
        for kind, at, arg in edits:
            if kind == "flip" and at < len(data):
                data[at] ^= arg
            elif kind == "word" and at + 8 <= len(data):
                data[at : at + 8] = struct.pack("<Q", arg)
            elif kind == "cut":
                del data[at:]
            elif kind == "splice" and at < len(data) and arg + 64 <= len(data):
                data[at : at + 64] = data[arg : arg + 64]
                del data[len(original) :]
        _fuzz_once(original, bytes(data))

    assert hypothesis
    run()


def test_import_is_stdlib_only():
    code = (
        "import sys, importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('hdf5meta', {str(ROOT / 'varctl/formats/hdf5meta.py')!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'h5py', 'tensorflow', 'keras'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
