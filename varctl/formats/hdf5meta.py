"""A stdlib-only reader of HDF5 metadata (groups, datasets, attributes) for the subset Keras files use.

The subset is what h5py writes with its default settings (libver 'earliest'): superblock v0/v1,
version-1 object headers with continuation blocks, old-style groups (symbol table: v1 B-tree plus
local heap), compact attributes, simple/scalar/null dataspaces, and IEEE float, integer, fixed or
variable-length string and opaque types (Keras stores bfloat16 as a 2-byte opaque type with the
attribute dtype="bfloat16"). Anything else raises `OutsideSubset`; bytes that break the format raise
`Malformed`. Both mean "fall back to h5py": this module never guesses, and it never reads tensor data.

It reads in place from an mmap (or any bytes-like object), optionally through a window at an offset:
a `.keras` archive stores `model.weights.h5` uncompressed, so the member is read where it lies.
Every address and size is checked against the window, every walk is capped and cycle-checked.
"""

from __future__ import annotations

import bisect
import builtins
import functools
import mmap as _mmap
import operator
import os
import re
import struct
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = [
    "Budget",
    "Dataset",
    "Empty",
    "File",
    "Group",
    "HDF5MetaError",
    "Malformed",
    "OutsideSubset",
    "open",
]

_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# Object headers parsed per file: a real model has thousands, a crafted file cannot make us parse more.
MAX_OBJECTS = 2_000_000
MAX_DEPTH = 200  # group nesting (and B-tree levels are far fewer)
MAX_CONTINUATIONS = 10_000  # continuation blocks of one object header
MAX_BTREE_NODES = 4_000_000  # B-tree nodes per file (each is visited once: they are never shared)
MAX_HEAP_BYTES = 64 * 1024 * 1024  # one local heap (names only: a few KB in real files)
MAX_ATTR_BYTES = 64 * 1024 * 1024  # one attribute value, decoded
MAX_ATTR_ITEMS = 10_000_000

# Header message types. Those the subset needs are parsed; the harmless ones are skipped; every
# other type (known or not) means the file uses a feature outside the subset.
_NIL, _DATASPACE, _DATATYPE, _FILL_OLD, _FILL = 0x0, 0x1, 0x3, 0x4, 0x5
_LAYOUT, _FILTERS, _ATTRIBUTE, _COMMENT, _MTIME_OLD = 0x8, 0xB, 0xC, 0xD, 0xE
_CONTINUATION, _SYMBOL_TABLE, _MTIME = 0x10, 0x11, 0x12
_SKIPPED = frozenset({_NIL, _FILL_OLD, _FILL, _COMMENT, _MTIME_OLD, _MTIME})
_PARSED = frozenset({_DATASPACE, _DATATYPE, _LAYOUT, _FILTERS, _SYMBOL_TABLE})
_REFUSED = {
    0x2: "link info message (new-style group)",
    0x6: "link message (new-style group)",
    0x7: "external data storage",
    0x9: "bogus message",
    0xA: "group info message (new-style group)",
    0xF: "shared message table",
    0x13: "B-tree 'K' values message",
    0x14: "driver info message",
    0x15: "attribute info message (dense or ordered attributes)",
    0x16: "object reference count message",
    0x17: "file space info message",
}

_UNLIMITED = -1  # H5S_UNLIMITED in a maximum shape
_INT = {1: "B", 2: "H", 4: "I", 8: "Q"}
_SINT = {1: "b", 2: "h", 4: "i", 8: "q"}
# IEEE binary16/32/64: (sign bit, exponent location, exponent size, mantissa size, bias).
_IEEE = {2: (15, 10, 5, 10, 15), 4: (31, 23, 8, 23, 127), 8: (63, 52, 11, 52, 1023)}
_FLOAT = {2: "e", 4: "f", 8: "d"}


# The header memo's view of a header (File._header_hit): the key of its patterns, its bytes, where
# its second block is (or -1) and that block's size.
_Probe = tuple[bytes, bytes, int, int]


class HDF5MetaError(Exception):
    """This reader cannot give a trustworthy answer for the file: fall back to h5py."""


class OutsideSubset(HDF5MetaError):
    """The file uses an HDF5 feature this reader does not implement (it may well be valid)."""


class Malformed(HDF5MetaError):
    """The bytes contradict the HDF5 format (truncated, out of bounds, cyclic, absurd sizes)."""


class Empty:
    """The value of an attribute with a null dataspace (h5py's `h5py.Empty`)."""

    __slots__ = ("dtype",)

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Empty) and other.dtype == self.dtype

    def __hash__(self) -> int:
        return hash(("Empty", self.dtype))

    def __repr__(self) -> str:
        return f"Empty(dtype={self.dtype!r})"


class _Type:
    """A parsed datatype message: numpy-style dtype string plus how to decode one element."""

    __slots__ = ("code", "dtype", "size", "vlen_str")

    def __init__(self, dtype: str, size: int, code: str | None, vlen_str: bool = False) -> None:
        self.dtype = dtype  # numpy dtype.str, e.g. '<f4', '|S5', '|O', '|V2'
        self.size = size  # bytes per element in the file
        self.code = code  # struct format of one number ('<f'), 'S' fixed string, 'O' vlen, None opaque
        self.vlen_str = vlen_str


class _Space:
    __slots__ = ("count", "kind", "maxshape", "shape")

    def __init__(
        self, kind: str, shape: tuple[int, ...] | None, maxshape: tuple[int, ...] | None = None
    ) -> None:
        self.kind = kind  # 'scalar' | 'simple' | 'null'
        self.shape = shape  # () for scalar, None for null
        self.maxshape = maxshape  # None when the message has none (then it is `shape`)
        count = 0 if shape is None else 1
        for d in shape or ():
            count *= d
        self.count = count  # number of elements


class _Attr:
    __slots__ = ("data", "space", "type")

    def __init__(self, type_: _Type, space: _Space, data: int) -> None:
        self.type = type_
        self.space = space
        self.data = data  # window address of the raw value


class _Header:
    """One object header: what kind of object, its attributes, and (datasets) its storage metadata."""

    __slots__ = (
        "attrs", "chunks", "filters", "layout", "meta", "space", "storage_allocated", "storage_size", "symtab",
        "type", "varying",
    )  # fmt: skip

    def __init__(self) -> None:
        self.attrs: dict[str, _Attr] = {}
        self.symtab: tuple[int, int] | None = None  # (v1 B-tree address, local heap address)
        self.space: _Space | None = None
        self.type: _Type | None = None
        self.layout: str | None = None
        self.chunks: tuple[int, ...] | None = None
        self.filters: tuple[int, ...] = ()
        self.storage_allocated = False
        self.storage_size = 0
        # Window address of the one field that differs between headers of objects alike (a dataset's
        # data or chunk index address, a group's symbol table message): see File._header_memo.
        self.varying: int | None = None
        self.meta: tuple[tuple[int, ...], str, int] | None = None  # h5safe.dataset_meta, once

    def with_symtab(self, symtab: tuple[int, int]) -> _Header:
        """A copy of this group header for another group (its attributes are shared: never mutated)."""
        hdr = _Header()
        hdr.attrs = self.attrs
        hdr.symtab = symtab
        return hdr


def _check_storage(hdr: _Header, space: _Space, type_: _Type) -> None:
    """The checks HDF5 makes when it opens a dataset: the layout must fit the dataspace and type."""
    if hdr.layout == "chunked":
        if hdr.chunks is None or space.shape is None or len(hdr.chunks) != len(space.shape):
            raise Malformed("chunk rank differs from the dataspace rank")
        if hdr.storage_size != type_.size:
            raise Malformed("chunk element size differs from the datatype size")
        if space.maxshape is not None:
            for c, m in zip(hdr.chunks, space.maxshape, strict=True):
                if m != _UNLIMITED and c > m:
                    raise Malformed("chunk larger than the dataset's maximum shape")
    elif hdr.storage_size != space.count * type_.size:
        raise Malformed(f"{hdr.layout} storage size differs from the dataspace size")


class Budget:
    """Counts objects a caller's walk touches (the adapter's counterpart of `_h5safe.Budget`)."""

    def __init__(self, limit: int = MAX_OBJECTS) -> None:
        self.left = limit

    def spend(self, n: int = 1) -> None:
        self.left -= n
        if self.left < 0:
            raise Malformed("too many HDF5 objects (refusing to walk further)")


def _pad8(n: int) -> int:
    return (n + 7) & ~7


def _nopad(n: int) -> int:
    return n


class File:
    """An HDF5 file (or a window on a bigger file) read in place. Use as a context manager."""

    def __init__(
        self, buffer: Any, offset: int = 0, length: int | None = None, *, _owned: Any = None
    ) -> None:
        self._buf = buffer
        self._owned = _owned  # (file object, mmap) this File opened and must close
        total = len(buffer)
        if offset < 0 or offset > total:
            raise Malformed("window offset outside the buffer")
        if length is None:
            length = total - offset
        if length < 0 or offset + length > total:
            raise Malformed("window extends past the end of the buffer")
        self._base = offset
        self._len = length
        self._headers: dict[int, _Header] = {}
        self._heaps: dict[int, _HeapNames] = {}
        self._heap_memo: dict[tuple[int, bytes], _HeapNames] = {}  # by content: see _local_heap
        self._links_memo_left = _MEMO_ENTRIES  # entries in the heaps' `links` (see _small_group)
        self._gheaps: dict[int, dict[int, tuple[int, int]]] = {}
        self._groups: dict[tuple[int, int], list[tuple[bytes, int]]] = {}
        # Parsed datatype and dataspace messages by their bytes: see _memo.
        self._types: dict[bytes, tuple[_Type, int]] = {}
        self._spaces: dict[bytes, _Space] = {}
        # Whole headers by their bytes less a few fields, per (messages, size, continuation size):
        # [(where the key's bytes are, where the address field is, {key: (header, moved values)})].
        self._header_memo: dict[bytes, list[tuple[list[tuple[int, int]], int, dict[bytes, Any]]]] = {}
        self._header_memo_left = _HEADER_MEMO_ENTRIES
        self._nodes_left = MAX_BTREE_NODES
        self._nodes_seen: set[int] = set()
        self._group_paths: dict[int, str] = {}
        # Members looked up by name, per group address (Group._lookup); forgotten by close().
        self._kids: dict[int, dict[str, Group | Dataset]] = {}
        self._retired: tuple[dict[Any, Any], ...] = ()  # the caches close() set aside
        self._superblock()
        self.root = Group(self, self._root_addr, "/", ())

    # -- low-level reads, all bounds-checked against the window ------------------------------------

    def _check(self, addr: int, n: int) -> int:
        if addr < 0 or n < 0 or addr + n > self._len:
            raise Malformed(f"address {addr:#x}+{n} outside the file ({self._len} bytes)")
        return self._base + addr

    def _unpack(self, fmt: struct.Struct, addr: int) -> tuple[Any, ...]:
        return fmt.unpack_from(self._buf, self._check(addr, fmt.size))

    def _bytes(self, addr: int, n: int) -> bytes:
        at = self._check(addr, n)
        return bytes(self._buf[at : at + n])

    def _u8(self, addr: int) -> int:
        return self._buf[self._check(addr, 1)]  # type: ignore[no-any-return]

    def _addr_at(self, addr: int) -> int:
        return self._unpack(self._O, addr)[0]  # type: ignore[no-any-return]

    # -- superblock ------------------------------------------------------------------------------

    def _superblock(self) -> None:
        if self._len < 8 or self._bytes(0, 8) != _SIGNATURE:
            for at in (512, 1024, 2048, 4096):
                if at + 8 <= self._len and self._bytes(at, 8) == _SIGNATURE:
                    raise OutsideSubset("file has a user block (superblock not at offset 0)")
            raise Malformed("no HDF5 signature at offset 0")
        version = self._u8(8)
        if version in (2, 3):
            raise OutsideSubset(f"superblock version {version} (libver 'v108' or later)")
        if version not in (0, 1):
            raise Malformed(f"unknown superblock version {version}")
        free_v, root_v, _, shared_v, osz, lsz = struct.unpack_from("<BBBBBB", self._bytes(9, 6))
        if free_v != 0 or root_v != 0 or shared_v != 0:
            raise OutsideSubset("unexpected free-space/symbol-table/shared-header versions in superblock")
        if osz not in (2, 4, 8) or lsz not in (2, 4, 8):
            raise OutsideSubset(f"offset/length sizes {osz}/{lsz}")
        self._osz, self._lsz = osz, lsz
        self._undef = (1 << (8 * osz)) - 1
        O, L = _INT[osz], _INT[lsz]  # struct codes of an address (offset) and of a length
        self._O = struct.Struct("<" + O)
        self._L = struct.Struct("<" + L)
        self._addr_len = struct.Struct("<" + O + L)  # continuation block, contiguous data
        self._cont_head = _HH.pack(_CONTINUATION, self._addr_len.size)  # a continuation's type, size
        self._symtab = struct.Struct("<" + O + O)  # symbol table: B-tree, local heap
        self._vlen = struct.Struct("<I" + O + "I")  # vlen string: length, global heap collection, index
        self._heap_head = struct.Struct("<4sB3x" + L + L + O)  # local heap: size, free list, data
        self._free_block = struct.Struct("<" + L + L)  # local heap free block: next, size
        self._gheap_object = struct.Struct("<H6x" + L)  # global heap object: index, (refs), size
        leaf_k, internal_k, flags = struct.unpack_from("<HHI", self._bytes(16, 8))
        if leaf_k == 0 or internal_k == 0:
            raise Malformed("zero B-tree K in superblock")
        self._leaf_k, self._internal_k = leaf_k, internal_k
        at = 24 if version == 0 else 28
        base, _free, eof, driver = struct.unpack_from("<" + _INT[osz] * 4, self._bytes(at, 4 * osz))
        if base != 0:
            raise OutsideSubset("superblock base address is not 0")
        if _free != self._undef:  # HDF5 reads this field as a superblock extension address
            raise Malformed("superblock free-space / extension address is defined")
        if driver != self._undef:
            raise OutsideSubset("file has a driver information block (family/multi driver)")
        if eof > self._len:
            raise Malformed(f"file truncated: end of file address {eof} > {self._len} bytes")
        entry = at + 4 * osz
        self._root_addr = self._addr_at(entry + osz)
        # Entry layout: name offset, header address, cache type (4), reserved (4), scratch (16).
        self._entry = struct.Struct("<" + _INT[osz] * 2 + "II16x")
        # A group B-tree node's head, sibling addresses, and one key, child and key (_leaf_links).
        self._leaf_root = struct.Struct(f"<4sBBH{2 * osz}x" + L + O + L)
        self._check(entry, self._entry.size)

    # -- object headers ---------------------------------------------------------------------------

    def _header(self, addr: int) -> _Header:
        hdr = self._headers.get(addr)
        if hdr is not None:
            return hdr
        if len(self._headers) >= MAX_OBJECTS:
            raise Malformed("too many HDF5 objects (refusing to parse further)")
        hdr = self._parse_header(addr)
        self._headers[addr] = hdr
        return hdr

    def _parse_header(self, addr: int) -> _Header:
        if addr == self._undef:
            raise Malformed("undefined object header address")
        if addr + 16 > self._len:  # _check, inline (addresses are unsigned): once per object
            raise Malformed(f"address {addr:#x}+16 outside the file ({self._len} bytes)")
        at = self._base + addr  # version 1 prefix: 12 bytes, padded to 16
        version, _, nmsgs, _refs, size = _V1_PREFIX.unpack_from(self._buf, at)
        if version != 1:
            if self._buf[at : at + 4] == b"OHDR":
                raise OutsideSubset("version 2 object header")
            raise Malformed(f"object header version {version} at {addr:#x}")
        if nmsgs == 1 and size == 8 + self._symtab.size:
            plain = self._plain_group(addr, at)
            if plain is not None:
                return plain
        # (a lone message, a plain group's symbol table, parses faster than the memo finds it)
        probe = None
        if nmsgs > 1:
            found, probe = self._header_hit(addr, at, size)
            if found is not None:
                return found
        hdr = _Header()
        seen_types: set[int] = set()
        blocks = self._messages(hdr, seen_types, addr, nmsgs, size)
        if hdr.symtab is not None:
            if seen_types - {_SYMBOL_TABLE}:
                raise Malformed("object is both a group and a dataset")
        elif hdr.layout is not None:
            if hdr.space is None or hdr.type is None:
                raise Malformed("dataset without dataspace or datatype")
            _check_storage(hdr, hdr.space, hdr.type)
        elif hdr.type is not None and not (seen_types - {_DATATYPE}):
            raise OutsideSubset("committed (named) datatype")
        else:
            raise OutsideSubset("object is neither an old-style group nor a dataset")
        if probe is not None and blocks == (1 if probe[2] < 0 else 2):
            self._header_remember(addr, hdr, *probe)
        return hdr

    def _plain_group(self, addr: int, at: int) -> _Header | None:
        """The header of a group without attributes as h5py writes it (one block, its one message
        the symbol table), checked as _messages checks it; None for any other header of that size.
        Half the groups of a Keras file (layers_4000: 4,000 per file) are such: 1.4 -> 0.8 us each."""
        if addr + 16 + 8 + self._symtab.size > self._len:
            return None  # (_messages refuses it)
        mtype, msize, mflags = _MSG.unpack_from(self._buf, at + 16)
        if mtype != _SYMBOL_TABLE or msize != self._symtab.size or mflags & 0x02:
            return None
        hdr = _Header()
        hdr.symtab = self._symtab.unpack_from(self._buf, at + 24)
        hdr.varying = addr + 24
        return hdr

    # A memo of whole object headers. In a Keras file, the datasets of one shape and dtype have the
    # same header bytes but for their data address, and the groups the same but for their symbol
    # table message (and the values of their attributes: a `vars` group's `name`, a legacy layer's
    # `weight_names`): one header of each kind is parsed, the others are found in the memo, keyed
    # on the header's bytes without those fields ("holes", where the first full parse found them).
    # On a hit each hole is read and checked as the full parse checks it (a dataset's address
    # against the file, a continuation block against the file and the first block), so a hit never
    # hides a bad address; what the parse does not read (attribute values) it does not read either.
    # Only headers of one block, or of a first block that is one continuation message (as h5py
    # writes a group with attributes) and a second block; up to _HEADER_MEMO_BYTES, and
    # _HEADER_MEMO_ENTRIES of them in all, a few patterns (hole sets) per header size.
    # layers_4000.keras: 16,000 headers, 5 parsed in full; with _plain_group, all headers 70 -> 35 ms
    # (NASNetMobile.keras 11.4 -> 6.4 ms).

    def _header_hit(self, addr: int, at: int, size: int) -> tuple[_Header | None, _Probe | None]:
        """(the memoized header that the header at `addr` matches, its holes read and checked for
        `addr`; None on a miss), and on a miss what _header_remember needs (None: not memoizable).

        The memo knows a header by its bytes: its prefix and first block, then, when that block is
        one continuation message, the block it leads to. The header's first 20 bytes (prefix, first
        message's type and size: a kernel's header and a bias's differ there) and, for two blocks,
        the second one's size and first message choose the patterns (hole sets) to try."""
        if size > _HEADER_MEMO_BYTES or addr + 16 + size > self._len:
            return None, None
        buf, cont = self._buf, self._addr_len
        raw = buf[at : at + 16 + size]
        if type(raw) is not bytes:  # (an mmap's slice is bytes already: not copied twice)
            raw = bytes(raw)
        block, length = -1, 0
        shape = raw[:20]
        if size == 8 + cont.size and raw[16:20] == self._cont_head:
            block, length = cont.unpack_from(raw, 24)
            overlaps = block < addr + 16 + size and block + length > addr  # (a loop, if it is the block)
            if length > _HEADER_MEMO_BYTES or block + length > self._len or overlaps:
                return None, None  # out of bounds or overlapping: the full parse refuses it
            raw += buf[self._base + block : self._base + block + length]  # (bytes + any buffer: bytes)
            shape += raw[24 + self._osz : 24 + cont.size] + raw[16 + size : 20 + size]
        probe = (shape, raw, block, length)
        for segments, var_at, memo in self._header_memo.get(shape, ()):
            if len(segments) == 2:  # one hole (a dataset's address): the common case, sliced inline
                (i, j), (k, m) = segments
                found = memo.get(raw[i:j] + raw[k:m])
            else:
                found = memo.get(b"".join([raw[i:j] for i, j in segments]))
            if found is None:
                continue
            template, moved = found
            if template.symtab is not None:  # the symbol table message: B-tree and heap, read later
                hdr = template.with_symtab(self._symtab.unpack_from(raw, var_at))
                if moved:  # values where this header has them (same sizes: in the key)
                    first = len(raw) - length
                    attrs = hdr.attrs = dict(template.attrs)
                    for name, type_, space, off in moved:
                        attrs[name] = _Attr(type_, space, addr + off if off < first else block + off - first)
                return hdr, None
            (address,) = self._O.unpack_from(raw, var_at)  # the data (or chunk index) address
            if (address != self._undef) != template.storage_allocated:
                return None, probe  # allocated in one, not the other: parsed in full
            if template.layout == "contiguous" and template.storage_allocated:
                n = template.storage_size  # _check, inline, as _layout does
                if address + n > self._len:
                    raise Malformed(f"address {address:#x}+{n} outside the file ({self._len} bytes)")
            return template, None  # shared: nothing else in a dataset's header depends on where it is
        return None, probe

    def _header_remember(
        self, addr: int, hdr: _Header, shape: bytes, raw: bytes, block: int, length: int
    ) -> None:
        """Memoize `hdr`, just parsed in full from `raw` (see _header_hit) at `addr`."""
        if self._header_memo_left <= 0 or hdr.varying is None:
            return
        first = len(raw) - length

        def at(window: int) -> int:  # a window address inside the header -> its offset in `raw`
            return window - addr if addr <= window < addr + first else window - block + first

        var_at = at(hdr.varying)
        holes = [(var_at, self._symtab.size if hdr.symtab is not None else self._osz)]
        if block >= 0:
            holes.append((24, self._osz))  # the continuation message's address field
        moved: tuple[tuple[str, _Type, _Space, int], ...] = ()
        if hdr.symtab is not None:  # a dataset's attributes stay in the key (its meta is shared)
            moved = tuple((n, a.type, a.space, at(a.data)) for n, a in hdr.attrs.items() if a.space.count)
            holes.extend((off, space.count * type_.size) for _, type_, space, off in moved)
        holes.sort()
        segments, prev = [], 0
        for off, width in holes:
            if off < prev:
                return  # overlapping fields (a crafted header): not memoized
            if off > prev:
                segments.append((prev, off))
            prev = off + width
        if prev < len(raw):
            segments.append((prev, len(raw)))
        patterns = self._header_memo.setdefault(shape, [])
        memo = next(
            (m for p_segments, p_var_at, m in patterns if (p_segments, p_var_at) == (segments, var_at)), None
        )
        if memo is None:
            if len(patterns) >= _HEADER_MEMO_PATTERNS:
                return
            memo = {}
            patterns.append((segments, var_at, memo))
        key = b"".join([raw[i:j] for i, j in segments])
        if key not in memo:
            memo[key] = (hdr, moved)
            self._header_memo_left -= 1

    def _messages(self, hdr: _Header, seen_types: set[int], addr: int, nmsgs: int, size: int) -> int:  # noqa: C901 - one branch per HDF5 message type
        """Parse the messages of the v1 object header at `addr` into `hdr`, continuation blocks followed;
        the number of blocks.

        One pass: each message is parsed where it is found (no list of messages to walk again; 56,000
        messages in layers_4000). Each block is bounds-checked once, and each message is checked to
        lie inside its block: the message parsers read inside a message without further checks."""
        buf, base, cont = self._buf, self._base, self._addr_len
        blocks = [(addr + 16, size)]
        seen = {addr + 16}
        found = 0
        unshared = False  # a message too big for _memo's keys
        i = 0
        while i < len(blocks):
            start, length = blocks[i]
            i += 1
            if start + length > self._len:  # _check, inline: once per block
                raise Malformed(f"header block {start:#x}+{length} outside the file ({self._len} bytes)")
            p, end = start, start + length
            while p + 8 <= end:
                mtype, msize, mflags = _MSG.unpack_from(buf, base + p)
                data = p + 8
                p = data + msize
                if p > end:
                    raise Malformed(f"header message overruns its block at {data - 8:#x}")
                found += 1
                if found > nmsgs:
                    raise Malformed(f"object header at {addr:#x}: more messages than the {nmsgs} it declares")
                if mflags & 0x02 and mtype != _CONTINUATION:
                    raise OutsideSubset("shared object header message")
                if mtype in _PARSED:  # at most one of each
                    if mtype in seen_types:
                        raise Malformed(f"duplicate header message type {mtype:#x}")
                    seen_types.add(mtype)
                    if msize > _MEMO_KEY_BYTES:
                        unshared = True
                    if mtype == _DATASPACE:
                        hdr.space = self._memo(self._spaces, self._dataspace, data, msize)
                    elif mtype == _DATATYPE:
                        hdr.type = self._memo(self._types, self._datatype, data, msize)[0]
                    elif mtype == _LAYOUT:
                        self._layout(hdr, data, msize)
                    elif mtype == _FILTERS:
                        hdr.filters = self._filters(data, msize)
                    else:
                        if msize < self._symtab.size:
                            raise Malformed("symbol table message too short")
                        hdr.symtab = self._symtab.unpack_from(buf, base + data)
                        hdr.varying = data
                elif mtype == _CONTINUATION:
                    if msize < cont.size:
                        raise Malformed("continuation message too short")
                    c_addr, c_len = cont.unpack_from(buf, base + data)
                    if c_addr in seen or len(blocks) > MAX_CONTINUATIONS:
                        raise Malformed("object header continuation loop")
                    seen.add(c_addr)
                    blocks.append((c_addr, c_len))
                elif mtype == _ATTRIBUTE:
                    name, attr = self._attribute(data, msize)
                    if name in hdr.attrs:
                        raise Malformed(f"duplicate attribute '{name}'")
                    hdr.attrs[name] = attr
                elif mtype in _SKIPPED:
                    if mtype != _NIL:
                        self._check_skipped(mtype, data, msize)
                else:
                    raise OutsideSubset(_REFUSED.get(mtype, f"unknown header message type {mtype:#x}"))
        if found != nmsgs:
            raise Malformed(f"object header at {addr:#x}: {found} messages, header says {nmsgs}")
        if unshared:  # the header memo shares no more than _memo would: not memoized
            hdr.varying = None
        return len(blocks)

    # -- messages ---------------------------------------------------------------------------------
    #
    # A parser gets (data, size): a message (or an attribute's field) that lies in a checked header
    # block. It reads only inside it, each read after checking `size`, straight from the buffer.

    def _memo(self, cache: dict[bytes, Any], parse: Any, data: int, size: int) -> Any:
        """`parse(data, size)`, memoized by the message's bytes (the result depends on nothing else).

        Keras files repeat the same few datatypes and dataspaces thousands of times (layers_4000:
        24,000 of them, 5 distinct): a dict hit (0.3 us) instead of a parse (1-2 us). Only small
        messages, and a bounded number of them: a crafted file cannot grow a cache past 1 MB of keys."""
        if size > _MEMO_KEY_BYTES:
            return parse(data, size)
        at = self._base + data
        key = self._buf[at : at + size]
        if type(key) is not bytes:  # (an mmap's slice is bytes already)
            key = bytes(key)
        found = cache.get(key)
        if found is None:
            found = parse(data, size)
            if len(cache) < _MEMO_ENTRIES:
                cache[key] = found
        return found

    def _check_skipped(self, mtype: int, data: int, msize: int) -> None:
        """Messages whose content we do not need, checked as far as HDF5 checks them on open."""
        buf, at = self._buf, self._base + data
        if mtype == _FILL:
            version = buf[at] if msize else 0
            if version in (1, 2):
                defined = buf[at + 3] if msize >= 4 else 0
                if version == 1 or defined:
                    if msize < 8:
                        raise Malformed("fill value message too short")
                    (size,) = _U32.unpack_from(buf, at + 4)
                    if 8 + size > msize:
                        raise Malformed("fill value overruns its message")
            elif version == 3:
                flags = buf[at + 1] if msize >= 2 else 0
                if flags & 0x20:
                    if msize < 6:
                        raise Malformed("fill value message too short")
                    (size,) = _U32.unpack_from(buf, at + 2)
                    if 6 + size > msize:
                        raise Malformed("fill value overruns its message")
            else:
                raise Malformed(f"fill value message version {version}")
        elif mtype == _FILL_OLD:
            (size,) = _U32.unpack_from(buf, at) if msize >= 4 else (msize,)
            if 4 + size > msize:
                raise Malformed("old fill value overruns its message")
        elif mtype == _MTIME and (msize < 8 or buf[at] != 1):
            raise Malformed("bad modification time message")

    def _dataspace(self, data: int, msize: int) -> _Space:
        if msize < 4:
            raise Malformed("dataspace message too short")
        buf, at, lsz = self._buf, self._base + data, self._lsz
        version, rank, flags, byte3 = _DS.unpack_from(buf, at)
        if version == 1:
            kind = "scalar" if rank == 0 else "simple"
            dims_at = 8
        elif version == 2:
            kind = {0: "scalar", 1: "simple", 2: "null"}.get(byte3, "")
            if not kind:
                raise Malformed("unknown dataspace type")
            dims_at = 4
        else:
            raise Malformed(f"dataspace version {version}")
        if flags & ~0x01:
            raise OutsideSubset("dataspace permutation index")
        if rank > 32:
            raise Malformed(f"dataspace rank {rank}")
        if dims_at + rank * lsz * (2 if flags & 1 else 1) > msize:
            raise Malformed("dataspace message too short")
        if kind == "null":
            return _Space("null", None)
        if kind == "scalar":
            if rank != 0:
                raise Malformed("scalar dataspace with dimensions")
            return _Space("scalar", ())
        if rank == 0:
            raise Malformed("simple dataspace of rank 0")
        fmt = "<" + _INT[lsz] * rank
        dims = struct.unpack_from(fmt, buf, at + dims_at)
        maxdims = None
        if flags & 1:
            unlimited = (1 << (8 * lsz)) - 1
            maxdims = tuple(
                _UNLIMITED if m == unlimited else m
                for m in struct.unpack_from(fmt, buf, at + dims_at + rank * lsz)
            )
            if any(m != _UNLIMITED and m < d for d, m in zip(dims, maxdims, strict=True)):
                raise Malformed("dataspace dimension larger than its maximum")
        space = _Space("simple", dims, maxdims)
        if space.count >= 1 << 62:
            raise Malformed("dataspace with an absurd number of elements")
        return space

    def _datatype(self, data: int, avail: int, nested: bool = False) -> tuple[_Type, int]:  # noqa: C901 - one branch per datatype class
        """The datatype at `data` and the bytes its message takes (`avail` bytes may be read)."""
        if avail < 8:
            raise Malformed("datatype message too short")
        buf, at = self._buf, self._base + data
        cv, b0, b1, b2, size = _DT.unpack_from(buf, at)
        cls, version = cv & 0x0F, cv >> 4
        bits = b0 | (b1 << 8) | (b2 << 16)
        if version not in (1, 2, 3):
            raise Malformed(f"datatype version {version}")
        if cls == 0:  # fixed-point
            if avail < 12:
                raise Malformed("integer datatype message too short")
            offset, precision = _HH.unpack_from(buf, at + 8)
            if size not in _INT or offset != 0 or precision != 8 * size or bits & ~0x0F or bits & 0x06:
                raise OutsideSubset("integer type with unusual size, padding or precision")
            order = ">" if bits & 1 else "<"
            signed = bool(bits & 0x08)
            kind = "i" if signed else "u"
            dtype = ("|" if size == 1 else order) + f"{kind}{size}"
            return _Type(dtype, size, order + (_SINT if signed else _INT)[size]), 12
        if cls == 1:  # floating point
            if avail < 20:
                raise Malformed("float datatype message too short")
            offset, precision, e_loc, e_size, m_loc, m_size, bias = _FLOAT_PROPS.unpack_from(buf, at + 8)
            if bits & 0x40:
                raise OutsideSubset("VAX floating point")
            if bits & 0xFF0080:
                raise Malformed("reserved bits set in a float datatype")
            ieee = _IEEE.get(size)
            sign = (bits >> 8) & 0xFF
            norm = (bits >> 4) & 0x03
            if (
                ieee is None
                or (sign, e_loc, e_size, m_size, bias) != ieee
                or offset != 0
                or precision != 8 * size
                or m_loc != 0
                or norm != 2
                or bits & 0x0E
            ):
                raise OutsideSubset("floating-point type that is not IEEE binary16/32/64")
            order = ">" if bits & 1 else "<"
            return _Type(f"{order}f{size}", size, order + _FLOAT[size]), 20
        if cls == 3:  # fixed-length string
            if bits & ~0xFF or (bits & 0x0F) > 2 or (bits >> 4) > 1 or size == 0:
                raise OutsideSubset("string type with unusual padding or character set")
            return _Type(f"|S{size}", size, "S"), 8
        if cls == 5:  # opaque
            tag_len = bits & 0xFF
            if bits & ~0xFF:
                raise Malformed("opaque type with reserved bits")
            used = 8 + _pad8(tag_len)
            if used > avail:
                raise Malformed("opaque datatype message too short")
            if tag_len and bytes(buf[at + 8 : at + 8 + tag_len]).rstrip(b"\0"):
                raise OutsideSubset("opaque type with a tag")
            if size == 0:
                raise Malformed("opaque type of size 0")
            return _Type(f"|V{size}", size, None), used
        if cls == 9:  # variable-length
            vtype, pad, charset = bits & 0x0F, (bits >> 4) & 0x0F, (bits >> 8) & 0x0F
            if vtype != 1:
                raise OutsideSubset("variable-length sequence type")
            if pad > 2 or charset > 1 or bits & ~0xFFF:
                raise OutsideSubset("variable-length string with unusual padding or character set")
            if size != 4 + self._osz + 4:
                raise Malformed("variable-length string of unexpected size")
            if nested:  # a string of strings: never in the subset (and no deep recursion)
                raise OutsideSubset("nested variable-length type")
            base, used = self._datatype(data + 8, avail - 8, nested=True)
            if base.code not in ("<B", ">B", "<b", ">b", "S"):
                raise OutsideSubset("variable-length string over an unusual base type")
            return _Type("|O", size, "O", vlen_str=True), 8 + used
        names = {2: "time", 4: "bitfield", 6: "compound", 7: "reference", 8: "enum", 10: "array"}
        if cls in names:
            raise OutsideSubset(f"{names[cls]} datatype")
        raise Malformed(f"unknown datatype class {cls}")

    def _layout(self, hdr: _Header, data: int, msize: int) -> None:
        if msize < 4:
            raise Malformed("layout message too short")
        buf, at = self._buf, self._base + data
        version, cls = buf[at], buf[at + 1]
        if version != 3:
            raise OutsideSubset(f"data layout message version {version}")
        osz = self._osz
        if cls == 0:  # compact: data lives in the header
            (size,) = _U16.unpack_from(buf, at + 2)
            if 4 + size > msize:
                raise Malformed("compact layout data overruns its message")
            hdr.layout = "compact"
            hdr.storage_allocated = True
            hdr.storage_size = size
        elif cls == 1:
            if 2 + self._addr_len.size > msize:
                raise Malformed("contiguous layout message too short")
            address, size = self._addr_len.unpack_from(buf, at + 2)
            hdr.layout = "contiguous"
            hdr.varying = data + 2
            hdr.storage_size = size
            hdr.storage_allocated = address != self._undef
            if hdr.storage_allocated:
                self._check(address, size)
        elif cls == 2:
            rank = buf[at + 2]
            if rank < 2 or 3 + osz + 4 * rank > msize:
                raise Malformed("chunked layout message too short")
            (address,) = self._O.unpack_from(buf, at + 3)
            dims = struct.unpack_from(f"<{rank}I", buf, at + 3 + osz)
            if 0 in dims:
                raise Malformed("chunk dimension 0")
            hdr.layout = "chunked"
            hdr.varying = data + 3
            hdr.chunks = tuple(dims[:-1])
            hdr.storage_size = dims[-1]  # the element size, checked against the datatype
            hdr.storage_allocated = address != self._undef  # the chunk index exists
        elif cls == 3:
            raise OutsideSubset("virtual dataset layout")
        else:
            raise Malformed(f"unknown layout class {cls}")

    def _filters(self, data: int, msize: int) -> tuple[int, ...]:
        if msize < 2:
            raise Malformed("filter pipeline message too short")
        version, count = struct.unpack_from("<BB", self._bytes(data, 2))
        if count > 32:
            raise Malformed(f"{count} filters in a pipeline")
        ids = []
        end = data + msize
        if version == 1:
            p = data + 8
            for _ in range(count):
                if p + 8 > end:
                    raise Malformed("filter pipeline message too short")
                fid, name_len, _flags, nvalues = struct.unpack_from("<HHHH", self._bytes(p, 8))
                p += 8 + _pad8(name_len) + 4 * nvalues + (4 if nvalues % 2 else 0)
                ids.append(fid)
        elif version == 2:
            p = data + 2
            for _ in range(count):
                if p + 2 > end:
                    raise Malformed("filter pipeline message too short")
                (fid,) = struct.unpack_from("<H", self._bytes(p, 2))
                if fid >= 256:
                    name_len, _flags, nvalues = struct.unpack_from("<HHH", self._bytes(p + 2, 6))
                    p += 8 + name_len + 4 * nvalues
                else:
                    _flags, nvalues = struct.unpack_from("<HH", self._bytes(p + 2, 4))
                    p += 6 + 4 * nvalues
                ids.append(fid)
        else:
            raise Malformed(f"filter pipeline version {version}")
        if p > end:
            raise Malformed("filter pipeline message too short")
        return tuple(ids)

    def _attribute(self, data: int, msize: int) -> tuple[str, _Attr]:
        if msize < 8:
            raise Malformed("attribute message too short")
        buf, base = self._buf, self._base
        version, flags, name_size, type_size, space_size = _ATTR.unpack_from(buf, base + data)
        if version == 1:
            pad, p = _pad8, data + 8
        elif version in (2, 3):
            if flags:
                raise OutsideSubset("attribute with a shared datatype or dataspace")
            pad = _nopad
            p = data + 8
            if version == 3:
                if msize < 9:
                    raise Malformed("attribute message too short")
                if buf[base + p] > 1:
                    raise OutsideSubset("attribute name character set")
                p += 1
        else:
            raise Malformed(f"attribute message version {version}")
        if version == 1 and flags:
            raise Malformed("reserved byte set in attribute message")
        end = data + msize
        type_at = p + pad(name_size)
        space_at = type_at + pad(type_size)
        value_at = space_at + pad(space_size)
        if name_size == 0 or value_at > end:
            raise Malformed("attribute message sizes exceed the message")
        raw_name = bytes(buf[base + p : base + p + name_size])
        if raw_name[-1:] != b"\0" or b"\0" in raw_name[:-1]:
            raise Malformed("attribute name not NUL-terminated")
        try:
            name = raw_name[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise OutsideSubset("attribute name is not UTF-8") from None
        type_, used = self._memo(self._types, self._datatype, type_at, type_size)
        if used > type_size:
            raise Malformed("attribute datatype overruns its field")
        space = self._memo(self._spaces, self._dataspace, space_at, space_size)
        count = space.count
        if count > MAX_ATTR_ITEMS or count * type_.size > MAX_ATTR_BYTES:
            raise OutsideSubset(f"attribute '{name}' is too large for this reader")
        if value_at + count * type_.size > end:
            raise Malformed(f"attribute '{name}' value overruns its message")
        return name, _Attr(type_, space, value_at)

    # -- attribute values ---------------------------------------------------------------------------

    def _value(self, attr: _Attr) -> Any:
        t, space = attr.type, attr.space
        if space.shape is None:
            return Empty(t.dtype)
        count = space.count
        if t.code is None:
            raise OutsideSubset("opaque attribute value")
        if t.code == "O":
            items: list[Any] = self._vlen_strs(attr.data, count)
        elif t.code == "S":
            raw = self._bytes(attr.data, count * t.size)
            items = [_text(raw[i : i + t.size].rstrip(b"\0")) for i in range(0, len(raw), t.size)]
        else:
            fmt = t.code[0] + str(count) + t.code[1:]
            at = self._check(attr.data, count * t.size)
            items = list(struct.unpack_from(fmt, self._buf, at))
        if space.kind == "scalar":
            return items[0]
        return _nest(items, space.shape)

    def _vlen_strs(self, addr: int, count: int) -> list[str]:
        """The `count` variable-length strings stored one after another at `addr`.

        One bounds check and one unpack for the whole array, the heap collection looked up once
        per run of strings in it: a `weight_names` list is read for every layer of a legacy .h5
        (layers_4000: 4,003 name lists read in 11 ms, 19 ms with one call per string)."""
        vlen = self._vlen
        at = self._check(addr, count * vlen.size)
        buf, base, undef = self._buf, self._base, self._undef
        out = []
        coll_at, objects = -1, {}
        for length, coll, index in vlen.iter_unpack(buf[at : at + count * vlen.size]):
            if length == 0 and coll in (0, undef):
                out.append("")
                continue
            if coll != coll_at:  # (a collection read already: no call)
                coll_at, objects = coll, self._gheaps.get(coll) or self._global_heap(coll)
            found = objects.get(index)
            if found is None:
                raise Malformed(f"global heap object {index} missing")
            obj_at, size = found
            if length != size:  # HDF5 refuses the read too ("global heap object size does not match")
                raise Malformed("variable-length string length differs from its heap object")
            obj_at += base  # inside its collection, checked when the collection was read
            try:  # (str() decodes the buffer's slice as it is: no copy to bytes first)
                text = str(buf[obj_at : obj_at + length], "utf-8")
            except UnicodeDecodeError:
                raise OutsideSubset("string attribute is not UTF-8") from None
            if "\0" in text:  # (UTF-8 has a NUL byte only as the NUL character)
                raise OutsideSubset("NUL inside a variable-length string")
            out.append(text)
        return out

    def _global_heap(self, addr: int) -> dict[int, tuple[int, int]]:
        objects = self._gheaps.get(addr)
        if objects is not None:
            return objects
        head = self._bytes(addr, 8)
        if head[:4] != b"GCOL" or head[4] != 1:
            raise Malformed("bad global heap collection")
        size = self._unpack(self._L, addr + 8)[0]
        if size < 8 + self._lsz:
            raise Malformed("global heap collection too small")
        self._check(addr, size)
        end = addr + size
        p = addr + 8 + self._lsz
        objects = {}
        obj_head = 8 + self._lsz
        # The collection lies in the window (checked above), and so does each object's header
        # (loop condition): read them straight from the buffer (an object per string: 12,000 in
        # layers_4000.h5).
        buf, base, unpack = self._buf, self._base, self._gheap_object.unpack_from
        while p + obj_head <= end:
            index, osize = unpack(buf, base + p)
            if index == 0:  # free space: the rest of the collection
                break
            if p + obj_head + osize > end:
                raise Malformed("global heap object overruns its collection")
            if index in objects:
                raise Malformed("duplicate global heap object index")
            objects[index] = (p + obj_head, osize)
            p += obj_head + ((osize + 7) & ~7)  # _pad8, inline: once per string
        self._gheaps[addr] = objects
        return objects

    # -- groups -------------------------------------------------------------------------------------

    def _local_heap(self, addr: int) -> _HeapNames:
        """The names in the local heap at `addr`, by offset (found when first asked for)."""
        names = self._heaps.get(addr)
        if names is not None:
            return names
        buf, head, limit = self._buf, self._heap_head, self._len
        if addr + head.size > limit:  # (_check, inline: addresses and sizes are unsigned)
            raise Malformed(f"address {addr:#x}+{head.size} outside the file ({limit} bytes)")
        signature, version, size, free, data_addr = head.unpack_from(buf, self._base + addr)
        if signature != b"HEAP" or version != 0:
            raise Malformed("bad local heap")
        if size > MAX_HEAP_BYTES:
            raise OutsideSubset("local heap too large for this reader")
        if data_addr + size > limit:
            raise Malformed(f"address {data_addr:#x}+{size} outside the file ({limit} bytes)")
        at = self._base + data_addr
        heap = buf[at : at + size]
        if type(heap) is not bytes:  # (an mmap's slice is bytes already)
            heap = bytes(heap)
        # Groups alike have heaps alike (every `vars` group of a Keras file holds "0", "1", ...):
        # a heap's free list is walked, and each of its names found, once per distinct content.
        # layers_4000.keras: 8,000 heaps, 5 distinct: all heaps read in 10.5 -> 7.8 ms, and the
        # links memo (_small_group) keyed on them. (A legacy .h5 layer's heap is its own: 4,000
        # of layers_4000.h5's 8,000 heaps pay the memo for nothing, 10.3 -> 12.9 ms in all, paid
        # back by its 4,000 sublayers' links.) Small heaps only, a bounded number of them.
        key = (free, heap)
        names = self._heap_memo.get(key) if size <= _HEAP_MEMO_BYTES else None
        if names is None:
            self._free_list(heap, free)
            names = _HeapNames(heap)
            if size <= _HEAP_MEMO_BYTES and len(self._heap_memo) < _MEMO_ENTRIES:
                self._heap_memo[key] = names
        else:
            names.shared = True
        self._heaps[addr] = names
        return names

    def _free_list(self, heap: bytes, offset: int) -> None:
        """Walk a local heap's free list as HDF5 does when it loads the heap (and fails on)."""
        block = self._free_block
        seen: set[int] = set()
        while offset != 1:  # H5HL_FREE_NULL
            if offset in seen or offset + block.size > len(heap):
                raise Malformed("bad local heap free list")
            seen.add(offset)
            nxt, size = block.unpack_from(heap, offset)
            if size == 0 or offset + size > len(heap):
                raise Malformed("bad local heap free block")
            offset = nxt

    def _links(self, hdr: _Header) -> list[tuple[bytes, int]]:
        """(name, object header address) of every member of an old-style group, sorted by name."""
        symtab = hdr.symtab
        assert symtab is not None
        found = self._groups.get(symtab)
        if found is not None:
            return found
        btree, heap_addr = symtab
        names = self._local_heap(heap_addr)
        found = self._leaf_links(names, btree)
        if found is None:
            level, fields = self._btree_node(btree, None)
            if level == 0 and len(fields) == 3:  # the root is a leaf over one symbol table node
                found = self._small_group(names, fields)
            else:
                found = self._btree_links(names, level, fields)
        self._groups[symtab] = found
        return found

    def _leaf_links(self, names: _HeapNames, btree: int) -> list[tuple[bytes, int]] | None:
        """`_small_group` of a group whose B-tree root `btree` is a leaf with one child (almost
        every group of a Keras file), both nodes read here with `_btree_node`'s and
        `_symbol_node`'s checks, in their order; None, having changed nothing, for any other
        root and for a root `_btree_node` refuses (the general path then reads and refuses it).

        The nodes' reads inline, the root's in one unpack: a legacy .h5 reads a group per path
        component; links of all the groups of NASNetMobile.h5 (1,874) 12.1 -> 10.8 ms, of
        layers_4000.h5 (8,002) 53 -> 48 ms (9.2 and 45 ms with _one_link)."""
        visited, buf, base = self._nodes_seen, self._buf, self._base
        root = self._leaf_root
        if btree in visited or btree + root.size > self._len:
            return None
        signature, node_type, level, used, lo_at, snod, hi_at = root.unpack_from(buf, base + btree)
        if signature != b"TREE" or node_type != 0 or level != 0 or used != 1:
            return None
        visited.add(btree)
        self._nodes_left -= 1
        if self._nodes_left < 0:
            raise Malformed("too many B-tree nodes")
        # _symbol_node's read and checks, inline
        limit = self._len
        if snod in visited:
            raise Malformed("symbol table node visited twice (or shared by two groups)")
        visited.add(snod)
        if snod + _NODE.size > limit:
            raise Malformed(f"symbol table node {snod:#x} outside the file ({limit} bytes)")
        signature, version, _, count = _NODE.unpack_from(buf, base + snod)
        if signature != b"SNOD" or version != 1:
            raise Malformed("bad symbol table node")
        if count > 2 * self._leaf_k:
            raise Malformed("symbol table node too large")
        entries = self._entry if count == 1 else _snod_struct(self._osz, count)
        if snod + 8 + entries.size > limit:
            raise Malformed(f"symbol table node {snod:#x} outside the file ({limit} bytes)")
        if count == 1:
            return self._one_link(names, lo_at, hi_at, entries.unpack_from(buf, base + snod + 8))
        return self._snod_links(names, (lo_at, snod, hi_at), entries.unpack_from(buf, base + snod + 8))

    def _btree_links(self, names: _HeapNames, level: int, fields: tuple[int, ...]) -> list[tuple[bytes, int]]:
        """The links below a group's B-tree root (its `level` and `fields`, read already)."""
        found: list[tuple[bytes, int]] = []
        # (node, expected level, lowest and highest name its keys allow): HDF5 finds a member by
        # name through these keys, so keys that disagree with the names make h5py fail; so do we.
        stack: list[tuple[int, int, bytes, bytes]] = []
        lo: bytes | None = None
        hi: bytes | None = None
        while True:
            children = fields[1::2]
            keys = list(map(names.__getitem__, fields[0::2]))
            if (lo is not None and keys[0] < lo) or (hi is not None and keys[-1] > hi):
                raise Malformed("group B-tree keys outside their parent's range")
            if not all(map(operator.le, keys, keys[1:])):
                raise Malformed("group B-tree keys out of order")
            if level > 0:
                stack.extend(
                    (children[i], level - 1, keys[i], keys[i + 1]) for i in reversed(range(len(children)))
                )
            else:
                for i, snod in enumerate(children):
                    self._symbols(self._symbol_node(snod), names, keys[i], keys[i + 1], found)
            if not stack:
                return found
            node, expect_level, lo, hi = stack.pop()
            level, fields = self._btree_node(node, expect_level)

    def _btree_node(self, node: int, expect_level: int | None) -> tuple[int, tuple[int, ...]]:
        """The level of group B-tree node `node` and its keys and children (key 0, child 0, key 1,
        ..., child n-1, key n: heap offsets and node addresses), read with one unpack."""
        # Nodes are file-wide: a node belongs to one group, so no crafted file can make us walk
        # the same nodes again for each group that claims them.
        visited = self._nodes_seen
        if node in visited:
            raise Malformed("group B-tree cycle (or a node shared by two groups)")
        visited.add(node)
        self._nodes_left -= 1
        if self._nodes_left < 0:
            raise Malformed("too many B-tree nodes")
        # (bounds checked inline, as _check does: addresses are unsigned; ~10 reads per group)
        buf, base, limit = self._buf, self._base, self._len
        if node + _NODE.size > limit:
            raise Malformed(f"B-tree node {node:#x} outside the file ({limit} bytes)")
        signature, node_type, level, used = _NODE.unpack_from(buf, base + node)
        if signature != b"TREE" or node_type != 0:
            raise Malformed("bad group B-tree node")
        if expect_level is not None and level != expect_level:
            raise Malformed("group B-tree levels inconsistent")
        if level > MAX_DEPTH or used > 2 * self._internal_k or (used == 0 and expect_level is not None):
            raise Malformed("group B-tree node with a bad number of entries")
        pairs = _node_struct(self._lsz, self._osz, used)
        first = node + 8 + 2 * self._osz  # after the sibling addresses
        if first + pairs.size > limit:
            raise Malformed(f"B-tree node {node:#x} outside the file ({limit} bytes)")
        return level, pairs.unpack_from(buf, base + first)

    def _symbol_node(self, snod: int) -> tuple[int, ...]:
        """The entries of symbol table node `snod`, read with one unpack: (name offset, header
        address, cache type, reserved) for each."""
        visited = self._nodes_seen
        if snod in visited:
            raise Malformed("symbol table node visited twice (or shared by two groups)")
        visited.add(snod)
        buf, base, limit = self._buf, self._base, self._len
        if snod + _NODE.size > limit:  # (_check, inline)
            raise Malformed(f"symbol table node {snod:#x} outside the file ({limit} bytes)")
        signature, version, _, count = _NODE.unpack_from(buf, base + snod)
        if signature != b"SNOD" or version != 1:
            raise Malformed("bad symbol table node")
        if count > 2 * self._leaf_k:
            raise Malformed("symbol table node too large")
        entries = _snod_struct(self._osz, count)
        if snod + 8 + entries.size > limit:
            raise Malformed(f"symbol table node {snod:#x} outside the file ({limit} bytes)")
        return entries.unpack_from(buf, base + snod + 8)

    def _symbols(
        self,
        entries: tuple[int, ...],
        names: _HeapNames,
        lo: bytes,
        hi: bytes,
        found: list[tuple[bytes, int]],
    ) -> None:
        """Append the (name, address) links of a symbol table node's `entries` (names in (lo, hi],
        after those in `found`) to `found`."""
        last = found[-1][0] if found else None
        for name_off, obj, cache_type in zip(entries[0::4], entries[1::4], entries[2::4], strict=True):
            if cache_type >= 2:
                if cache_type == 2:
                    raise OutsideSubset("soft link")
                raise Malformed(f"symbol table entry cache type {cache_type}")
            name = names[name_off]
            if not lo < name <= hi:
                raise Malformed("link name outside its B-tree node's key range")
            if last is not None and last >= name:
                raise Malformed("link names out of order (or repeated) in group")
            if not name or b"/" in name:
                raise Malformed("link name empty or with a '/'")
            found.append((name, obj))
            last = name
        if not entries or last != hi:
            raise Malformed("symbol table node's last name differs from its B-tree key")

    def _small_group(self, names: _HeapNames, fields: tuple[int, ...]) -> list[tuple[bytes, int]]:
        """The links of a group whose B-tree is one leaf over one symbol table node (up to 2K
        members: almost every group of a Keras file): the `_links` loop, its name checks memoized.

        Groups alike have the same heap (`names`, shared by content), the same key offsets and the
        same entries but for their addresses: the names and their checks (key order, name ranges,
        order, cache types) depend on nothing else, so they are made once per such key and the
        addresses zipped in. Both nodes are still read and checked for each group (bounds,
        signatures, visited). With the heaps shared by content (_local_heap), links of every group of
        layers_4000.keras: 61 -> 42 ms (NASNetMobile.keras 10.4 -> 7.4 ms)."""
        entries = self._symbol_node(fields[1])
        if len(entries) == 4:
            return self._one_link(names, fields[0], fields[2], entries)
        return self._snod_links(names, fields, entries)

    def _snod_links(
        self, names: _HeapNames, fields: tuple[int, ...], entries: tuple[int, ...]
    ) -> list[tuple[bytes, int]]:
        """_small_group's links of the symbol table node `entries` (read), below the B-tree leaf
        `fields`."""
        key = None
        if names.shared:  # (a heap of one group: no other group can hit)
            key = (fields[0], fields[2], entries[0::4], entries[2::4])  # key offsets; names, types
            link_names = names.links.get(key)
            if link_names is not None:
                return list(zip(link_names, entries[1::4], strict=True))
        lo, hi = names[fields[0]], names[fields[2]]
        if lo > hi:
            raise Malformed("group B-tree keys out of order")
        found: list[tuple[bytes, int]] = []
        self._symbols(entries, names, lo, hi, found)
        if key is not None and self._links_memo_left > 0:
            self._links_memo_left -= 1
            names.links[key] = [name for name, _ in found]
        return found

    def _one_link(
        self, names: _HeapNames, lo_at: int, hi_at: int, entries: tuple[int, ...]
    ) -> list[tuple[bytes, int]]:
        """_small_group of a group with one member (its B-tree leaf's keys at `lo_at` and `hi_at`
        in the heap, its symbol table node's one entry `entries`), the checks (and their order)
        of `_symbols`, unrolled: no slices, no zip, a flat memo key. Most groups of a legacy .h5
        have one member (a weight's path is 4-5 groups deep: NASNetMobile.h5, 1,520 of 1,874
        groups): links of all its groups 10.8 -> 9.2 ms, of layers_4000.h5's 48 -> 45 ms."""
        name_off, obj, cache_type, _ = entries
        key = (lo_at, hi_at, name_off, cache_type)  # (ints: never a key of _snod_links's)
        if names.shared:
            link_names = names.links.get(key)
            if link_names is not None:
                return [(link_names[0], obj)]
        lo, hi = names[lo_at], names[hi_at]
        if lo > hi:
            raise Malformed("group B-tree keys out of order")
        if cache_type >= 2:
            if cache_type == 2:
                raise OutsideSubset("soft link")
            raise Malformed(f"symbol table entry cache type {cache_type}")
        name = names[name_off]
        if not lo < name <= hi:
            raise Malformed("link name outside its B-tree node's key range")
        if not name or b"/" in name:
            raise Malformed("link name empty or with a '/'")
        if name != hi:
            raise Malformed("symbol table node's last name differs from its B-tree key")
        if names.shared and self._links_memo_left > 0:
            self._links_memo_left -= 1
            names.links[key] = [name]
        return [(name, obj)]

    def _object(self, addr: int, path: str, ancestors: tuple[int, ...]) -> Group | Dataset:
        hdr = self._header(addr)
        if hdr.symtab is not None:
            return self._group(addr, path, ancestors, hdr)
        return Dataset(self, addr, path, hdr)

    def _group(self, addr: int, path: str, ancestors: tuple[int, ...], hdr: _Header) -> Group:
        """The group at `addr` (its header `hdr`) reached at `path` below `ancestors`, checked."""
        self._check_group(addr, path, ancestors)
        return Group(self, addr, path, ancestors, hdr)

    def _check_group(self, addr: int, path: str, ancestors: tuple[int, ...]) -> None:
        """The checks of a group at `addr` reached at `path` below `ancestors` (`_group`'s)."""
        if addr in ancestors:
            raise OutsideSubset("group contains a hard link to its own ancestor")
        if len(ancestors) >= MAX_DEPTH:
            raise OutsideSubset("groups nested too deeply")
        # One path per group: hard links that reach a group twice would let a small file
        # describe an exponential tree of paths (Keras never writes them; h5py handles them).
        first = self._group_paths.setdefault(addr, path)
        if first != path:
            raise OutsideSubset(f"group '{first}' is also linked as '{path}'")

    def _member(self, hdr: _Header, name: str) -> int | None:
        """The object header address of the member `name` of the group whose header is `hdr`, or
        None: `Group._address` without a Group (the links are sorted and unique: a bisection)."""
        links = self._links(hdr)
        key = name.encode("utf-8")
        if len(links) == 1:  # (most groups of a legacy .h5 path)
            return links[0][1] if links[0][0] == key else None
        i = bisect.bisect_left(links, (key,))
        return links[i][1] if i < len(links) and links[i][0] == key else None

    def _layer_weights(
        self, layer: tuple[_Header, str, tuple[int, ...]], paths: list[str]
    ) -> list[tuple[str, tuple[str, tuple[int, ...], str, int]]]:
        """(path, (dataset name, *h5safe.dataset_meta)) of the dataset each of `paths` names
        (`_layout.layer_weights`'s walk, part by part as `h5safe.get_member`) (a legacy layer's `weight_names`) below the group `layer` (its header,
        its members' path prefix and its ancestors and own address), up to the first path that
        names no dataset; same lookups, checks and refusals as that walk, in order.

        Without a Group object per group passed: the groups on the way are kept by path below
        the layer, as (header, prefix, ancestors), for the layer's other weights (a batch norm's
        four weights share one parent)."""
        found: list[tuple[str, tuple[str, tuple[int, ...], str, int]]] = []
        parents: dict[str, tuple[_Header, str, tuple[int, ...]]] = {}
        for path in paths:
            parent, slash, last = path.rpartition("/")
            node = layer
            if slash:
                node = parents.get(parent)  # type: ignore[assignment]
                if node is None:
                    node = self._walk_groups(layer, parent)  # type: ignore[assignment]
                    if node is None:
                        return found
                    parents[parent] = node
            if not last:
                raise OutsideSubset(f"member name {last!r} is not one path component")
            hdr, prefix, ancestors = node
            addr = self._member(hdr, last)
            if addr is None:
                return found
            child = self._header(addr)
            name = prefix + last
            if child.symtab is not None:  # a group: checked as get_member checks it, not a weight
                self._check_group(addr, name, ancestors)
                return found
            for code in child.filters:  # check_dataset
                if code not in _BUILTIN_FILTERS:
                    raise OutsideSubset(f"dataset '{name}' needs filter #{code}")
            found.append((path, (name, *(child.meta or self._dataset_meta(child, name)))))
        return found

    def _walk_groups(
        self, node: tuple[_Header, str, tuple[int, ...]], path: str
    ) -> tuple[_Header, str, tuple[int, ...]] | None:
        """The group at `path` below `node` as (header, prefix, ancestors), or None when a part
        names nothing or a dataset: the walk of a path's parents (get_member's checks)."""
        hdr, prefix, ancestors = node
        for part in path.split("/"):
            if not part:
                raise OutsideSubset(f"member name {part!r} is not one path component")
            addr = self._member(hdr, part)
            if addr is None:
                return None
            hdr = self._header(addr)
            name = prefix + part
            if hdr.symtab is None:
                for code in hdr.filters:  # check_dataset
                    if code not in _BUILTIN_FILTERS:
                        raise OutsideSubset(f"dataset '{name}' needs filter #{code}")
                return None
            self._check_group(addr, name, ancestors)
            prefix = name + "/"
            ancestors = (*ancestors, addr)
        return hdr, prefix, ancestors

    def _dataset_meta(self, hdr: _Header, path: str) -> tuple[tuple[int, ...], str, int]:
        """(shape, dtype name, item size) of the dataset `path` whose header is `hdr`, as
        `_h5safe.dataset_meta` gives them; kept on the header (shared by datasets alike)."""
        assert hdr.space is not None and hdr.type is not None
        shape = hdr.space.shape
        if shape is None:
            raise OutsideSubset(f"dataset '{path}' has a null dataspace")
        dtype_attr = hdr.attrs.get("dtype")
        if dtype_attr is not None and self._value(dtype_attr) == "bfloat16":
            hdr.meta = (shape, "bfloat16", 2)
        else:
            hdr.meta = (shape, *_dtype_meta(hdr.type.dtype))
        return hdr.meta

    # -- lifetime -----------------------------------------------------------------------------------

    def close(self) -> None:
        # The caches (every header, heap and group read: ~35,000 objects on a 4,000-layer model)
        # are set aside, not emptied: freeing them one object at a time took 4.9 ms of a list of
        # layers_4000.h5 (1.9 of NASNetMobile.h5, best of 9), for nothing in the sandbox's reader
        # process, which exits without freeing memory. They go with the File (in a cycle with its
        # root group: the garbage collector frees them). Empty ones take their place, so a Group
        # kept past close() reads the file again: Malformed.
        self._retired = (self._headers, self._heaps, self._heap_memo, self._gheaps, self._groups, self._kids)
        self._headers = {}
        self._heaps = {}
        self._heap_memo = {}
        self._gheaps = {}
        self._groups = {}
        self._kids = {}
        self._types, self._spaces, self._header_memo = {}, {}, {}  # (small: emptied)
        self._buf = b""
        self._len = 0  # a Group kept past close() raises Malformed, not a struct error
        owned, self._owned = self._owned, None
        if owned is not None:
            fh, mm = owned
            mm.close()
            fh.close()

    def __enter__(self) -> File:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Like h5py.File, a File is its root group for reading.
    name = "/"

    @property
    def attrs(self) -> Attributes:
        return self.root.attrs

    def keys(self) -> list[str]:
        return self.root.keys()

    def items(self) -> list[tuple[str, Group | Dataset]]:
        return self.root.items()

    def values(self) -> list[Group | Dataset]:
        return self.root.values()

    def get(self, path: str, default: Any = None) -> Any:
        return self.root.get(path, default)

    def __getitem__(self, path: str) -> Group | Dataset:
        return self.root[path]

    def __contains__(self, path: object) -> bool:
        return path in self.root

    def __iter__(self) -> Iterator[str]:
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def _lookup(self, name: str) -> Group | Dataset | None:
        return self.root._lookup(name)

    def _named_links(self) -> list[tuple[str, int]]:
        return self.root._named_links()

    def _child(self, name: str, addr: int) -> Group | Dataset:
        return self.root._child(name, addr)

    def walk(self) -> Iterator[tuple[str, Group | Dataset]]:
        """Every (path, object) below the root, depth-first in name order (hard links visited per path)."""
        stack: list[Group] = [self.root]
        while stack:
            group = stack.pop()
            members = list(group.items())
            for _, obj in members:
                yield obj.name, obj
            stack.extend(obj for _, obj in reversed(members) if isinstance(obj, Group))


_V1_PREFIX = struct.Struct("<BBHII")
_MSG = struct.Struct("<HHB3x")
_DT = struct.Struct("<BBBBI")
_DS = struct.Struct("<BBBB")  # dataspace: version, rank, flags, (v2) type
_FLOAT_PROPS = struct.Struct("<HHBBBBI")
_ATTR = struct.Struct("<BBHHH")
_NODE = struct.Struct("<4sBBH")  # B-tree node (type, level, entries) / symbol table node (version, -, count)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_HH = struct.Struct("<HH")
# _memo's bounds: messages up to 256 bytes (a rank-32 dataspace with maximums takes 520), 4,096 of them.
_MEMO_KEY_BYTES = 256
_MEMO_ENTRIES = 4096
# _header_hit's bounds: blocks up to 512 bytes (h5py gives a dataset 256, a `vars` group 24 + 96),
# 4,096 headers (4 MB of keys at most: two blocks each), 4 patterns (hole sets) per pattern key.
_HEADER_MEMO_BYTES = 512
_HEADER_MEMO_ENTRIES = 4096
_HEADER_MEMO_PATTERNS = 4
# _local_heap's bound: heaps up to 1 KB are shared by content (h5py gives a small group 88 bytes).
_HEAP_MEMO_BYTES = 1024


class _HeapNames(dict[int, bytes]):
    """The names of one local heap by offset, each found once (the B-tree keys and the symbol table
    entries name the same strings); shared by the groups whose heaps have the same bytes."""

    __slots__ = ("heap", "links", "shared")

    def __init__(self, heap: bytes) -> None:  # (empty: dict.__init__ has nothing to do)
        self.heap = heap
        self.links: dict[tuple[Any, ...], list[bytes]] = {}  # File._small_group's memo
        self.shared = False  # by another group (a legacy .h5's layer groups each have their own)

    def __missing__(self, offset: int) -> bytes:
        heap = self.heap
        end = heap.find(b"\0", offset)
        if offset >= len(heap) or end < 0:
            raise Malformed("name outside the local heap")
        name = self[offset] = heap[offset:end]
        return name


@functools.lru_cache(maxsize=64)  # a few node sizes per file
def _snod_struct(osz: int, count: int) -> struct.Struct:
    """`count` symbol table entries: name offset, header address, cache type, reserved, (scratch)."""
    return struct.Struct("<" + (_INT[osz] * 2 + "II16x") * count)


@functools.lru_cache(maxsize=64)
def _node_struct(lsz: int, osz: int, used: int) -> struct.Struct:
    """A group B-tree node's keys and children: key 0, child 0, ..., child used-1, key used."""
    return struct.Struct("<" + (_INT[lsz] + _INT[osz]) * used + _INT[lsz])


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise OutsideSubset("string attribute is not UTF-8") from None


def _nest(items: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """A flat C-order list shaped like numpy's `tolist()`."""
    for d in reversed(shape[1:]):
        items = [items[i : i + d] for i in range(0, len(items), d)] if d else []
    return items


class Attributes(Mapping[str, Any]):
    """An object's attributes: names known at once, each value decoded when asked for."""

    __slots__ = ("_attrs", "_file")

    def __init__(self, file: File, attrs: dict[str, _Attr]) -> None:
        self._file = file
        self._attrs = attrs

    def __getitem__(self, key: str) -> Any:
        return self._file._value(self._attrs[key])

    def __contains__(self, key: object) -> bool:
        return key in self._attrs

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._attrs, key=lambda k: k.encode("utf-8")))

    def __len__(self) -> int:
        return len(self._attrs)

    def shape(self, key: str) -> tuple[int, ...] | None:
        """The dataspace shape of attribute `key` (None for an empty attribute), without its value."""
        return self._attrs[key].space.shape

    def dtype(self, key: str) -> str:
        """The numpy-style dtype string of attribute `key`, without reading its value."""
        return self._attrs[key].type.dtype


class Group:
    """An old-style HDF5 group. Members come back sorted by name (as h5py lists them)."""

    __slots__ = ("_ancestors", "_file", "_hdr", "_index", "_prefix", "addr", "name")

    def __init__(
        self, file: File, addr: int, name: str, ancestors: tuple[int, ...], hdr: _Header | None = None
    ) -> None:
        self._file = file
        self.addr = addr
        self.name = name
        self._ancestors = ancestors + (addr,)
        self._prefix = "/" if name == "/" else name.rstrip("/") + "/"  # of its members' paths
        # parsed now (unless the caller just did): a broken group fails where it is opened
        self._hdr = file._header(addr) if hdr is None else hdr
        # Lookups by name (see _lookup): the links as a dict (found at the first lookup: a scan
        # makes none).
        self._index: dict[bytes, int] | None = None

    @property
    def attrs(self) -> Attributes:
        return Attributes(self._file, self._hdr.attrs)

    def _links(self) -> list[tuple[bytes, int]]:
        return self._file._links(self._hdr)

    def keys(self) -> list[str]:
        return [n for n, _ in self._named_links()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._links())

    def _child(self, name: str, addr: int) -> Group | Dataset:
        return self._file._object(addr, self._prefix + name, self._ancestors)

    def _named_links(self) -> list[tuple[str, int]]:
        """(name, object header address) of every member, sorted by name."""
        try:
            return [(n.decode("utf-8"), a) for n, a in self._file._links(self._hdr)]  # (self._links())
        except UnicodeDecodeError:
            raise OutsideSubset("member name is not UTF-8") from None

    def items(self) -> list[tuple[str, Group | Dataset]]:
        """(name, Group | Dataset) for every member, sorted by name."""
        return [(n, self._child(n, a)) for n, a in self._named_links()]

    def values(self) -> list[Group | Dataset]:
        return [obj for _, obj in self.items()]

    def _lookup(self, name: str) -> Group | Dataset | None:
        """The member `name`, made (and checked) once per group: a legacy .h5 walks each weight's
        path from its layer's group (`layer/sub/kernel:0`), so the same subgroups are looked up again
        and again (NASNetMobile: 6,221 lookups of 3,382 objects)."""
        kids = self._file._kids.get(self.addr)  # (the File's: close() forgets them)
        if kids is None:
            kids = self._file._kids[self.addr] = {}
        kid = kids.get(name)
        if kid is not None:
            return kid
        addr = self._address(name)
        if addr is None:
            return None
        kid = kids[name] = self._file._object(addr, self._prefix + name, self._ancestors)  # _child
        return kid

    def _address(self, name: str) -> int | None:
        """The object header address of the member `name`, or None."""
        index = self._index
        if index is None:  # the links are sorted and unique (checked when read): one entry each
            index = self._index = dict(self._file._links(self._hdr))  # (self._links())
        return index.get(name.encode("utf-8"))

    def get(self, path: str, default: Any = None) -> Any:
        """The member at a '/'-separated path relative to this group (absolute from the root), or `default`."""
        node: Group | Dataset | None = self._file.root if path.startswith("/") else self
        for part in path.split("/"):
            if part in ("", "."):
                continue
            if not isinstance(node, Group):
                return default
            node = node._lookup(part)
            if node is None:
                return default
        return node

    def __getitem__(self, path: str) -> Group | Dataset:
        obj = self.get(path)
        if obj is None:
            raise KeyError(path)
        return obj  # type: ignore[no-any-return]

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.get(path) is not None

    def __repr__(self) -> str:
        return f"<hdf5meta.Group {self.name!r} ({len(self)} members)>"


class Dataset:
    """A dataset's metadata: shape, dtype, storage layout, filters, attributes. Never its values."""

    __slots__ = ("_file", "_hdr", "addr", "name")

    def __init__(self, file: File, addr: int, name: str, hdr: _Header) -> None:
        self._file = file
        self._hdr = hdr
        self.addr = addr
        self.name = name

    @property
    def shape(self) -> tuple[int, ...] | None:
        """Dimensions; () for a scalar, None for a null dataspace (h5py's Empty)."""
        assert self._hdr.space is not None
        return self._hdr.space.shape

    @property
    def ndim(self) -> int:
        return len(self.shape or ())

    @property
    def size(self) -> int:
        assert self._hdr.space is not None
        return self._hdr.space.count

    @property
    def dtype(self) -> str:
        """numpy's `dtype.str`: '<f4', '<f2', '<i8', '|u1', '|V2' (opaque, e.g. bfloat16), '|S5', '|O'."""
        assert self._hdr.type is not None
        return self._hdr.type.dtype

    @property
    def itemsize(self) -> int:
        assert self._hdr.type is not None
        return self._hdr.type.size

    @property
    def layout(self) -> str:
        assert self._hdr.layout is not None
        return self._hdr.layout

    @property
    def chunks(self) -> tuple[int, ...] | None:
        return self._hdr.chunks

    @property
    def filters(self) -> tuple[int, ...]:
        return self._hdr.filters

    @property
    def storage_allocated(self) -> bool:
        """Whether the data has an address: compact, always; contiguous, its data; chunked, its chunk
        index (written at the first chunk write). A resize that drops every chunk keeps the index:
        True here, where h5py's `get_space_status()` says not allocated."""
        return self._hdr.storage_allocated

    @property
    def attrs(self) -> Attributes:
        return Attributes(self._file, self._hdr.attrs)

    def __repr__(self) -> str:
        return f"<hdf5meta.Dataset {self.name!r} shape {self.shape} dtype {self.dtype}>"


def open(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview | _mmap.mmap,
    offset: int = 0,
    length: int | None = None,
) -> File:
    """Open HDF5 metadata in place.

    Args:
        source: a path (memory-mapped read-only and closed with the File), or a bytes-like
            object / mmap the caller keeps open for as long as the File is used.
        offset: where the HDF5 file starts inside `source` (a `.keras` member's data offset).
        length: its size (default: to the end of `source`).

    Returns:
        A `File`; its `.root` is the root `Group`.

    Raises:
        OutsideSubset: the file uses HDF5 features this reader does not implement.
        Malformed: the bytes are not a consistent HDF5 file.
        OSError: the path cannot be opened.
    """
    if isinstance(source, (str, os.PathLike)):
        # not a `with`: the handle lives as long as the File (its mmap) and is closed with it
        fh = builtins.open(source, "rb")  # noqa: SIM115
        try:
            size = os.fstat(fh.fileno()).st_size
            if size == 0:
                raise Malformed("empty file")
            mm = _mmap.mmap(fh.fileno(), 0, access=_mmap.ACCESS_READ)
        except BaseException:
            fh.close()
            raise
        try:
            return File(mm, offset, length, _owned=(fh, mm))
        except BaseException:
            mm.close()
            fh.close()
            raise
    if isinstance(source, memoryview) and (source.ndim != 1 or source.itemsize != 1):
        source = source.cast("B")
    return File(source, offset, length)


# -- h5py-shaped adapter: the calls _h5safe.py offers, on this module's objects ------------------------
#
# Readers written against `_h5safe` can take this namespace instead (same names, same signatures,
# same return shapes). Every refusal here is an HDF5MetaError (fall back to h5py, which then gives
# the user-facing UnreadableModel/UnsafeFile message), never a varctl error of its own.


# The adapter's class attributes below shadow these names.
_Group = Group
_Dataset = Dataset
_Budget = Budget


class h5safe:
    """Drop-in for the `_h5safe` functions, over hdf5meta objects instead of h5py ones."""

    MAX_DEPTH = MAX_DEPTH
    MAX_ATTR_BYTES = MAX_ATTR_BYTES
    Budget = Budget
    Group = Group
    Dataset = Dataset

    @staticmethod
    def is_group(obj: object) -> bool:
        return isinstance(obj, _Group)

    @staticmethod
    def is_dataset(obj: object) -> bool:
        return isinstance(obj, _Dataset)

    @staticmethod
    def get_member(group: _Group | File, name: str) -> _Group | _Dataset | None:
        """A group or (checked) dataset `name` (one path component), or None."""
        if not name or "/" in name:
            raise OutsideSubset(f"member name {name!r} is not one path component")
        obj = group._lookup(name)
        if isinstance(obj, _Dataset) and obj.filters:
            h5safe.check_dataset(obj)
        return obj

    @staticmethod
    def layer_weights(
        weights: _Group, lname: str, key: str, budget: _Budget
    ) -> tuple[list[str], list[tuple[str, tuple[str, tuple[int, ...], str, int]]]] | None:
        """`_layout.layer_weights` (a legacy .h5 layer's weights: its group, its `key` names and
        the dataset each names, each part looked up as `get_member` does) with the checks and
        refusals of those calls, in their order, without a Group or Dataset object on the way
        (see File._layer_weights). _scan of NASNetMobile.h5 (771 layers, 1,126 weights,
        1,874 groups) 32 -> 28 ms, of layers_4000.h5 147 -> 133 ms (before _leaf_links)."""
        if not lname or "/" in lname:  # get_member
            raise OutsideSubset(f"member name {lname!r} is not one path component")
        file = weights._file
        addr = weights._address(lname)
        if addr is None:
            return None
        hdr = file._header(addr)
        path = weights._prefix + lname
        if hdr.symtab is None:  # get_member's check_dataset, then get_group's refusal
            for code in hdr.filters:
                if code not in _BUILTIN_FILTERS:
                    raise OutsideSubset(f"dataset '{path}' needs filter #{code}")
            raise Malformed(f"HDF5 member '{path}' should be a group")
        ancestors = weights._ancestors
        file._check_group(addr, path, ancestors)
        names = _list_attr(file, hdr.attrs, key) or []
        budget.spend(len(names))
        return names, file._layer_weights((hdr, path + "/", (*ancestors, addr)), names)

    @staticmethod
    def get_group(group: _Group | File, name: str) -> _Group | None:
        obj = h5safe.get_member(group, name)
        if obj is not None and not isinstance(obj, _Group):
            raise Malformed(f"HDF5 member '{obj.name}' should be a group")
        return obj

    @staticmethod
    def check_dataset(ds: _Dataset) -> _Dataset:
        # Virtual layouts and external storage never reach here (OutsideSubset when parsed). A
        # filter HDF5 does not implement itself is left to h5py, whose _h5safe refuses it.
        for code in ds.filters:
            if code not in _BUILTIN_FILTERS:
                raise OutsideSubset(f"dataset '{ds.name}' needs filter #{code}")
        return ds

    @staticmethod
    def get_dataset(group: _Group | File, name: str) -> _Dataset | None:
        obj = h5safe.get_member(group, name)
        if obj is not None and not isinstance(obj, _Dataset):
            raise Malformed(f"HDF5 member '{obj.name}' should be a dataset")
        return obj

    @staticmethod
    def member_names(group: _Group | File, budget: _Budget) -> list[str]:
        names = group.keys()
        budget.spend(len(names) + 1)
        return names

    @staticmethod
    def members_meta(
        group: _Group | File, budget: _Budget, skip: frozenset[str] = frozenset()
    ) -> list[tuple[str, _Group | tuple[str, tuple[int, ...], str, int]]]:
        """(name, member) for each name `member_names` gives but those in `skip`: a group as
        `get_member` gives it, a dataset as the (path, shape, dtype name, item size) that
        `dataset_meta` gives of it, without a lookup by name per member or a Dataset object:
        what `_manifest.scan` keeps of a member.

        Same checks, budget and refusals as `member_names`, `get_member` and `dataset_meta`
        (tests/test_hdf5meta.py compares them). The fast path of a whole
        file scan: no Dataset object per dataset, and a header's meta worked out once, shared by the
        datasets whose header it is (see File._header_hit). layers_4000.keras: 8,000 datasets,
        _manifest.scan with every header and group parsed already: 62 -> 51 ms."""
        if isinstance(group, File):
            group = group.root
        links = group._named_links()
        budget.spend(len(links) + 1)
        file, prefix, ancestors = group._file, group._prefix, group._ancestors
        header = file._header
        out: list[tuple[str, _Group | tuple[str, tuple[int, ...], str, int]]] = []
        for name, addr in links:
            if name in skip:
                continue
            hdr = header(addr)
            path = prefix + name
            if hdr.symtab is not None:
                out.append((name, file._group(addr, path, ancestors, hdr)))
                continue
            for code in hdr.filters:  # check_dataset
                if code not in _BUILTIN_FILTERS:
                    raise OutsideSubset(f"dataset '{path}' needs filter #{code}")
            meta = hdr.meta or file._dataset_meta(hdr, path)
            out.append((name, (path, *meta)))
        return out

    @staticmethod
    def subgroups(group: _Group | File, budget: _Budget) -> Iterator[tuple[str, _Group]]:
        budget.spend(len(group) + 1)
        for n, obj in group.items():
            if isinstance(obj, _Group):
                yield n, obj

    @staticmethod
    def str_attr(obj: _Group | _Dataset | File, key: str) -> str | None:
        """A string attribute; None when absent. Non-string values come back as str(), as in _h5safe."""
        file, attrs = _attrs(obj)
        attr = attrs.get(key)
        if attr is None:
            return None
        if attr.type.vlen_str and attr.space.shape == ():  # what Keras writes: read straight
            return file._vlen_strs(attr.data, 1)[0]
        value = file._value(attr)
        if isinstance(value, list):
            raise OutsideSubset(f"attribute '{key}' is an array, not a string")
        if isinstance(value, Empty):
            raise OutsideSubset(f"attribute '{key}' is empty")
        return value if isinstance(value, str) else str(value)

    @staticmethod
    def list_attr(obj: _Group | _Dataset | File, key: str) -> list[str] | None:
        """A list-of-strings attribute, joined from Keras's `key0`, `key1`, ... parts when split."""
        return _list_attr(*_attrs(obj), key)

    @staticmethod
    def dataset_meta(ds: _Dataset) -> tuple[tuple[int, ...], str, int]:
        """(shape, dtype name, item size) as `_h5safe.dataset_meta` gives them."""
        return ds._hdr.meta or ds._file._dataset_meta(ds._hdr, ds.name)

    @staticmethod
    def natural_key(name: str) -> list[Any]:
        return [int(p) if p.isdigit() else p for p in _NUM.split(name)]


_NUM = re.compile(r"(\d+)")
# deflate, shuffle, fletcher32, szip, nbit, scaleoffset (HDF5's own) and LZF (h5py's): _h5safe's list.
_BUILTIN_FILTERS = frozenset({1, 2, 3, 4, 5, 6, 32000})


@functools.lru_cache(maxsize=256)  # a few dtypes per file, for thousands of datasets
def _dtype_meta(dt: str) -> tuple[str, int]:
    """(dtype name, item size) of a numpy dtype string, as `_h5safe.dataset_meta` names them."""
    kind, size = dt[1], int(dt[2:] or 0)
    if kind == "O":
        return "object", 8
    if kind == "S":
        return "string", size
    if kind == "V" and size == 2:  # opaque 2 bytes without the marker: as _h5safe (legacy .h5)
        return "bfloat16", 2
    if kind == "V":
        return f"void{8 * size}", size
    names = {"f": "float", "i": "int", "u": "uint"}
    return f"{names[kind]}{8 * size}", size


def _attrs(obj: Group | Dataset | File) -> tuple[File, dict[str, _Attr]]:
    """The file and the parsed attributes of `obj`: what `obj.attrs` wraps, without a wrapper per
    call (str_attr and list_attr run once per group of a scan: `vars` names, `weight_names`)."""
    if isinstance(obj, File):
        obj = obj.root
    return obj._file, obj._hdr.attrs


def _list_attr(file: File, attrs: dict[str, _Attr], key: str) -> list[str] | None:
    """h5safe.list_attr of the object whose parsed attributes are `attrs`."""
    attr = attrs.get(key)
    if attr is not None:
        shape = attr.space.shape
        if attr.type.vlen_str and shape is not None and len(shape) <= 1:
            # strings, flat: what _str_items would give, read straight (a legacy .h5 reads a
            # `weight_names` per layer: layers_4000.h5, list_attr 2.8 -> 2.1 us, 1.5 with
            # _vlen_strs decoding in place)
            return file._vlen_strs(attr.data, attr.space.count)
        return _str_items(file._value(attr), key)
    parts: list[str] = []
    n = 0
    while f"{key}{n}" in attrs:
        parts.extend(_str_items(file._value(attrs[f"{key}{n}"]), key))
        n += 1
    return parts if n else None


def _str_items(value: Any, key: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    # An attribute value is nested all the way (a list of lists) or not at all: its first item says.
    if (items and isinstance(items[0], list)) or isinstance(value, Empty):
        raise OutsideSubset(f"attribute '{key}' is not a flat list")
    return [i if isinstance(i, str) else str(i) for i in items]
