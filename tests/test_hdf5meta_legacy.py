"""hdf5meta's fast paths for the legacy .h5 weights scan: `h5safe.layer_weights` (a layer's group,
its `weight_names` and its weights in one call), `File._leaf_links` (a small group's B-tree leaf
and symbol table node read in one go) and `File._one_link` (a one-member group's checks unrolled)
give what the general calls give, and refuse what they refuse, with the same error, on real files
and on mutated ones."""

from __future__ import annotations

import functools
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.test_hdf5meta import SAMPLES, meta_tree
from varctl.errors import UnreadableModel
from varctl.formats import _layout, legacy_h5
from varctl.formats import hdf5meta as hm
from varctl.formats._layout import WEIGHT_NAMES

ROOT = Path(__file__).resolve().parents[1]
LEGACY = sorted(SAMPLES.glob("*.h5")) + sorted((ROOT / "tests/legacy_files").glob("*/*.h5"))


def _general_one_link(self, names, lo_at, hi_at, entries):
    """File._one_link through the general loop (`_symbols`)."""
    return hm.File._snod_links(self, names, (lo_at, None, hi_at), entries)


def _scan(source, fast: bool):
    """legacy_h5._scan through hdf5meta, with its fast paths or without (the general calls), as
    plain values, or the error it raises as (type, message)."""
    with pytest.MonkeyPatch.context() as mp:
        if not fast:
            mp.setattr(hm.h5safe, "layer_weights", functools.partial(_layout.layer_weights, hm.h5safe))
            mp.setattr(hm.File, "_leaf_links", lambda self, names, btree: None)
            mp.setattr(hm.File, "_one_link", _general_one_link)
        try:
            with hm.open(source) as f:
                weights = hm.h5safe.get_group(f, "model_weights")
                if weights is None:
                    return "no model_weights"
                scanned = legacy_h5._scan(weights, hm.h5safe)
        except (hm.HDF5MetaError, UnreadableModel) as e:
            return type(e).__name__, str(e)
    return [(lname, [(w, ds.__getstate__()) for w, ds in found]) for lname, found in scanned]


@pytest.mark.parametrize("path", LEGACY, ids=lambda p: str(p.relative_to(ROOT)))
def test_scan_is_the_general_calls(path):
    got = _scan(path, fast=True)
    assert isinstance(got, list) and got  # read, not refused
    assert got == _scan(path, fast=False)


def test_leaf_links_are_the_general_links():
    """Every group of every committed .h5 file: the same tree with the fused small-group read."""
    for path in sorted(SAMPLES.glob("*.h5")):
        with hm.open(path) as f:
            want = meta_tree(f.root)
            assert f._nodes_seen  # (the groups were read)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(hm.File, "_leaf_links", lambda self, names, btree: None)
            mp.setattr(hm.File, "_one_link", _general_one_link)
            with hm.open(path) as f:
                assert meta_tree(f.root) == want


@pytest.fixture
def odd(tmp_path):
    """A legacy weights group with each way a layer's weights can be missing or refused."""
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as h5:
        weights = h5.create_group("model_weights")
        weights.create_dataset("not_a_group", data=np.zeros(2, "f4"))
        weights.create_dataset(
            "odd_filter", data=np.zeros(4, "f4"), compression=32001, allow_unknown_filter=True
        )
        layer = weights.create_group("dense")
        layer.attrs[WEIGHT_NAMES] = [b"dense/kernel", b"dense/bias"]
        layer.create_dataset("dense/kernel", data=np.zeros((3, 4), "f4"))
        layer.create_dataset("dense/bias", data=np.zeros(4, "f4"))
        layer.create_dataset(
            "dense/odd", data=np.zeros(4, "f4"), compression=32001, allow_unknown_filter=True
        )
        layer.create_dataset("dense/packed", data=np.zeros(64, "f4"), compression="gzip", chunks=(8,))
        layer.create_dataset("flat", data=np.zeros(4, "f4"))
        weights.create_group("empty")  # no weight_names at all: no weights
    return path


NAMES = [["dense/kernel", "dense/bias"], ["flat"], ["dense/absent", "dense/kernel"], ["dense"],
         ["dense/kernel/x"], ["flat/x"], ["dense//bias"], ["/dense/bias"], [""], ["dense/"],
         ["dense/odd"], ["dense/odd/x"], ["absent/kernel"], ["dense/kernel", "dense/kernel"],
         ["dense/packed", "flat", "dense/bias"]]  # fmt: skip


@pytest.mark.parametrize("names", NAMES, ids=lambda n: "|".join(n))
@pytest.mark.parametrize("layer", ["dense", "empty", "absent", "not_a_group", "odd_filter", "a/b", ""])
def test_layer_weights_is_get_group_list_attr_get_member(odd, layer, names):
    def outcome(call):
        try:
            with hm.open(odd) as f:
                return call(hm.h5safe.get_group(f, "model_weights"))
        except hm.HDF5MetaError as e:
            return type(e).__name__, str(e)

    def general(weights):  # the walk h5py's backend makes, on hdf5meta's objects
        with pytest.MonkeyPatch.context() as mp:  # the names to look for, in place of the file's
            mp.setattr(hm.h5safe, "list_attr", lambda obj, key: names if key in obj._hdr.attrs else None)
            return _layout.layer_weights(hm.h5safe, weights, layer, WEIGHT_NAMES, hm.h5safe.Budget())

    def fast(weights):
        with pytest.MonkeyPatch.context() as mp:  # the names to look for, in place of the file's
            mp.setattr(hm, "_list_attr", lambda file, attrs, key: names if key in attrs else None)
            return hm.h5safe.layer_weights(weights, layer, WEIGHT_NAMES, hm.h5safe.Budget())

    assert outcome(fast) == outcome(general)


def _regions(data: bytes) -> list[tuple[int, int]]:
    """(address, size) of the parts of every group's B-tree leaf, symbol table node and local heap
    that a read looks at, in a legacy .h5 file."""
    with hm.open(data) as f:
        legacy_h5._scan(hm.h5safe.get_group(f, "model_weights"), hm.h5safe)
        nodes, heaps = sorted(f._nodes_seen), sorted(f._heaps)
        osz, lsz = f._osz, f._lsz
    out = []
    for node in nodes:
        signature, _, _, used = struct.unpack_from("<4sBBH", data, node)
        if signature == b"TREE":
            out.append((node, 8 + 2 * osz + used * (lsz + osz) + lsz))
        else:
            out.append((node, 8 + used * (2 * osz + 24)))
    for heap in heaps[:4]:  # (heaps alike: a few are enough)
        size, _, data_addr = struct.unpack_from("<QQQ", data, heap + 8)
        out.extend([(heap, 8 + 2 * lsz + osz), (data_addr, size)])
    return out


def test_mutated_groups_are_refused_as_the_general_path_refuses_them():
    """Each byte of the nodes and heaps of a legacy file's groups mutated (a name offset, an
    address, a signature, a count, a name): the fast paths give the general path's answer, and
    every mutation the general path refuses is refused."""
    data = (SAMPLES / "batchnorm.h5").read_bytes()
    assert isinstance(_scan(data, fast=True), list)
    refused = 0
    regions = _regions(data)
    assert len(regions) > 10
    for start, size in regions:
        for at in range(start, start + size):
            for value in (data[at] ^ 0x01, 0xFF):
                bad = bytearray(data)
                bad[at] = value
                want = _scan(bytes(bad), fast=False)
                assert _scan(bytes(bad), fast=True) == want, (at, value)
                refused += isinstance(want, tuple)
    assert refused > 100


def test_mutated_addresses_are_refused():
    """A symbol table node's entry (its member's header) or a leaf's child (its symbol table node)
    pointing elsewhere: refused as the general path refuses it."""
    data = (SAMPLES / "batchnorm.h5").read_bytes()
    with hm.open(data) as f:
        legacy_h5._scan(hm.h5safe.get_group(f, "model_weights"), hm.h5safe)
        nodes = sorted(f._nodes_seen)
    snods = [n for n in nodes if data[n : n + 4] == b"SNOD"]
    trees = [n for n in nodes if data[n : n + 4] == b"TREE"]
    for tree in trees:  # the leaf's last key names a heap string past its one member's name
        bad = bytearray(data)
        (key,) = struct.unpack_from("<Q", data, tree + 40)
        bad[tree + 40 : tree + 48] = struct.pack("<Q", key + 1)
        want = _scan(bytes(bad), fast=False)
        assert _scan(bytes(bad), fast=True) == want
        assert isinstance(want, tuple)
    targets = [0, 40, len(data), len(data) - 8, 2**64 - 1, *snods[:2], *trees[:2]]
    for tree in trees:
        for target in targets:
            bad = bytearray(data)
            bad[tree + 32 : tree + 40] = struct.pack("<Q", target)  # the leaf's child
            want = _scan(bytes(bad), fast=False)
            assert _scan(bytes(bad), fast=True) == want
            assert target == struct.unpack_from("<Q", data, tree + 32)[0] or isinstance(want, tuple)
    for snod in snods:
        for target in targets:
            bad = bytearray(data)
            bad[snod + 16 : snod + 24] = struct.pack("<Q", target)  # the first entry's header
            want = _scan(bytes(bad), fast=False)
            assert _scan(bytes(bad), fast=True) == want
