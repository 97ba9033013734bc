"""hdf5meta's memos of objects alike (headers, heaps, small groups' links): a hit gives what a full
parse gives, and never hides a bad address; every memo is bounded."""

from __future__ import annotations

import struct

import h5py
import numpy as np
import pytest

from tests.test_hdf5meta import SAMPLES, assert_same_tree, meta_tree, walk_everything
from varctl.formats import _manifest
from varctl.formats import hdf5meta as hm
from varctl.formats._layout import NOT_MODEL_STATE
from varctl.formats.hdf5meta import Malformed

N = 6  # objects alike: the first is parsed in full, the others are memo hits


def _twins(path) -> None:
    """Datasets alike, groups alike with a string attribute (a Keras `vars` group: two header
    blocks) and two members each (a small group: one leaf, one symbol table node)."""
    with h5py.File(path, "w") as h5:
        for i in range(N):
            h5.create_dataset(f"d{i}", data=np.arange(4, dtype="<f4") + i)
            group = h5.create_group(f"g{i}")
            group.attrs["name"] = f"layer_{i}"  # variable-length, a value of its own per group
            group.create_dataset("a", data=np.zeros(2, "<f4"))
            group.create_dataset("b", data=np.ones(2, "<f4"))


def _no_memo(monkeypatch) -> None:
    monkeypatch.setattr(hm, "_HEADER_MEMO_ENTRIES", 0)
    monkeypatch.setattr(hm, "_MEMO_ENTRIES", 0)


@pytest.fixture
def twins(tmp_path):
    path = tmp_path / "twins.h5"
    _twins(path)
    return path


def test_hits_give_what_a_full_parse_gives(twins, monkeypatch):
    assert assert_same_tree(twins) == 4 * N
    with hm.open(twins) as f:
        tree = meta_tree(f.root)
        d0, d3 = f.root["d0"], f.root["d3"]
        assert d3._hdr is d0._hdr  # a hit: one header for datasets alike
        g0, g3 = f.root["g0"], f.root["g3"]
        assert g3._hdr.attrs["name"].type is g0._hdr.attrs["name"].type  # a hit, its value moved
        assert [f.root[f"g{i}"].attrs["name"] for i in range(N)] == [f"layer_{i}" for i in range(N)]
        assert len(f._heap_memo) == 2  # the root's heap, and one for the N groups alike
        assert sum(len(names.links) for names in f._heap_memo.values()) == 1
    _no_memo(monkeypatch)
    with hm.open(twins) as f:
        assert meta_tree(f.root) == tree
        assert f.root["d3"]._hdr is not f.root["d0"]._hdr


def _address_field(path) -> tuple[bytes, int]:
    """The file's bytes and where the data address of dataset d3 (a memo hit) lies."""
    with hm.open(path) as f:
        d0, d3 = f.root["d0"], f.root["d3"]
        assert d3._hdr is d0._hdr and d0._hdr.varying is not None  # d3 came from the memo
        return path.read_bytes(), d3.addr + (d0._hdr.varying - d0.addr)


def test_a_hit_checks_the_data_address(twins, monkeypatch):
    data, at = _address_field(twins)
    with h5py.File(twins, "r") as h5:
        assert struct.unpack_from("<Q", data, at)[0] == h5["d3"].id.get_offset()
    for address in (len(data), len(data) - 8, 2**62):
        bad = bytearray(data)
        bad[at : at + 8] = struct.pack("<Q", address)
        with pytest.raises(Malformed, match="outside the file"):
            walk_everything(bytes(bad))
    # not allocated (undefined address): not the template's state, so parsed in full
    bad = bytearray(data)
    bad[at : at + 8] = struct.pack("<Q", 2**64 - 1)
    with hm.open(bytes(bad)) as f:
        hit = meta_tree(f.root)
        assert not f.root["d3"].storage_allocated and f.root["d2"].storage_allocated
    _no_memo(monkeypatch)
    with hm.open(bytes(bad)) as f:
        assert meta_tree(f.root) == hit


def _continuation(data: bytes, header: int) -> int:
    """Where the address of the continuation message that is a header's first block lies."""
    mtype, msize = struct.unpack_from("<HH", data, header + 16)
    assert (mtype, msize) == (0x10, 16)  # the shape the memo takes for two blocks
    return header + 24


def test_a_hit_checks_the_continuation_block(twins):
    data = twins.read_bytes()
    with hm.open(data) as f:
        g3 = f.root["g3"].addr
    at = _continuation(data, g3)
    for address in (len(data), len(data) - 4, g3 + 16, g3):  # past the end, overlapping, a loop
        bad = bytearray(data)
        bad[at : at + 8] = struct.pack("<Q", address)
        with pytest.raises(Malformed):
            walk_everything(bytes(bad))


def test_a_hit_reads_its_own_symbol_table(twins):
    data = twins.read_bytes()
    with hm.open(data) as f:
        g0, g3 = f.root["g0"], f.root["g3"]
        btree0, btree3 = g0._hdr.symtab[0], g3._hdr.symtab[0]
        heap3 = g3._hdr.symtab[1]
    assert btree0 != btree3
    at = data.index(struct.pack("<QQ", btree3, heap3))  # the twin's symbol table message
    for btree in (btree0, len(data), 0):  # another group's B-tree, past the end, the superblock
        bad = bytearray(data)
        bad[at : at + 8] = struct.pack("<Q", btree)
        with pytest.raises(Malformed):
            walk_everything(bytes(bad))


def test_a_small_group_hit_checks_its_nodes(twins):
    data = twins.read_bytes()
    with hm.open(data) as f:
        f.root["g0"].keys()
        g3 = f.root["g3"]
        btree = g3._hdr.symtab[0]
    snod = struct.unpack_from("<Q", data, btree + 24 + 8)[0]  # the leaf's one child
    assert data[snod : snod + 4] == b"SNOD"
    bad = bytearray(data)
    bad[snod : snod + 4] = b"SNOX"
    with pytest.raises(Malformed, match="symbol table node"):
        walk_everything(bytes(bad))
    bad = bytearray(data)  # the second entry named as the first: another key, checked in full
    first_name = struct.unpack_from("<Q", data, snod + 8)[0]
    bad[snod + 8 + 40 : snod + 8 + 48] = struct.pack("<Q", first_name)
    with pytest.raises(Malformed, match="order|range|differs"):
        walk_everything(bytes(bad))
    bad = bytearray(data)  # a member's header address: read (and checked) per group
    bad[snod + 8 + 8 : snod + 8 + 16] = struct.pack("<Q", len(data) + 64)
    with pytest.raises(Malformed):
        walk_everything(bytes(bad))


@pytest.mark.parametrize("entries", [0, 1, 3])
def test_memos_are_bounded(twins, monkeypatch, entries):
    monkeypatch.setattr(hm, "_HEADER_MEMO_ENTRIES", entries)
    monkeypatch.setattr(hm, "_MEMO_ENTRIES", entries)
    assert assert_same_tree(twins) == 4 * N
    with hm.open(twins) as f:
        meta_tree(f.root)
        assert hm._HEADER_MEMO_ENTRIES - f._header_memo_left <= entries
        assert sum(len(m) for patterns in f._header_memo.values() for _, _, m in patterns) <= entries
        assert len(f._heap_memo) <= entries and f._links_memo_left >= 0


def test_big_headers_are_not_memoized(tmp_path):
    """The header memo shares no more than the message memo: a header with a message past
    _MEMO_KEY_BYTES is parsed each time (and one past _HEADER_MEMO_BYTES too)."""
    path = tmp_path / "wide.h5"
    with h5py.File(path, "w") as h5:
        for i in range(3):
            h5.create_dataset(f"wide{i}", shape=(1,) * 20, maxshape=(None,) * 20, chunks=(1,) * 20)
    assert assert_same_tree(path) == 3
    with hm.open(path) as f:
        assert f.root["wide1"]._hdr is not f.root["wide2"]._hdr
        assert f._header_memo_left == hm._HEADER_MEMO_ENTRIES


def test_scan_matches_without_memos(monkeypatch):
    """_manifest.scan of the committed samples: the same with every memo off."""
    trees = []
    for memo in (True, False):
        if not memo:
            _no_memo(monkeypatch)
        out = []
        for path in sorted(SAMPLES.glob("*.h5")):
            with hm.open(path) as f:
                scanned = _manifest.scan(hm.h5safe, f, hm.h5safe.Budget(), NOT_MODEL_STATE)
                out.append(_flat(scanned))
        trees.append(out)
    assert trees[0] == trees[1] and trees[0]


def _flat(group: _manifest.Group) -> list:
    out: list = [(group.name, group.attr_name)]
    for name, member in group.members.items():
        if isinstance(member, _manifest.Group):
            out.append((name, _flat(member)))
        else:
            out.append((name, member.__getstate__()))
    return out


def test_plain_group_fast_path_checks_as_a_full_parse(twins):
    """A group header of one symbol table message is read directly: a shared message is still
    refused, and any other message of that size still goes through the full parse."""
    data = twins.read_bytes()
    with hm.open(data) as f:
        root = f.root.addr
        assert f._header(root).attrs == {} and struct.unpack_from("<HH", data, root + 16) == (0x11, 16)
    shared = bytearray(data)
    shared[root + 16 + 4] |= 0x02  # the message's flags: shared
    with pytest.raises(hm.OutsideSubset, match="shared"):
        walk_everything(bytes(shared))
    other = bytearray(data)
    other[root + 16 : root + 18] = struct.pack("<H", 0x0)  # a NIL message of that size
    with pytest.raises(hm.OutsideSubset, match="neither"):
        walk_everything(bytes(other))
