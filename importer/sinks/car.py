"""CARv1 files: writing them as ``ipfs dag export`` does, and reading them back strictly.

Layout (ipld/go-car ``car.go`` and ``util/util.go``; CARv1 spec)::

    varint(len(header)) header                     header = DAG-CBOR {"roots": [CID...], "version": 1}
    varint(len(cid) + len(block)) cid block        one section per block, CIDv0 as its bare multihash
    ...

The header's map keys are in DAG-CBOR canonical order (shorter key first: ``roots``, then
``version``) and each root is CBOR tag 42 over a byte string holding ``00`` + the binary CID.
One CIDv0 root gives a 56-byte header: ``38 a2 65 "roots" 81 d8 2a 58 23 00 12 20 <32 bytes>
67 "version" 01``.

:func:`export_car` writes the blocks of a DAG in Kubo's order: depth-first pre-order from the
root, children in the order their links are stored, each block once (go-car's
``TraverseLinksOnlyOnce``). Identity-hash CIDs are written as blocks too, as the blockstore
hands them to the traversal (not checked against Kubo: no vector has one).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, Final, Self

from ..dag.cbor import Link, decode_dag_cbor
from ..dag.cid import CODEC_NAMES, DAG_CBOR, DAG_PB, RAW, block_matches, cid_codec, format_cid
from ..dag.dagpb import decode_node
from ..dag.varint import VarintError, decode_uvarint, encode_uvarint
from ..errors import ImporterError, InvalidBlock, InvalidCar, InvalidCid
from .base import BlockSource

MiB: Final = 1024 * 1024
#: go-car ``util.MaxAllowedSectionSize``: a larger section (or header) is refused before it is
#: read, so a corrupt length cannot make the reader allocate gigabytes.
MAX_SECTION: Final = 32 * MiB
#: A varint below 2**64 needs at most 10 bytes (7 payload bits per byte, 10 * 7 = 70 >= 64).
_MAX_VARINT_BYTES: Final = 10
#: The CARv2 pragma: a CARv1-style header ``{"version": 2}`` (``0a`` = its length, 10 bytes).
CARV2_PRAGMA: Final = bytes.fromhex("0aa16776657273696f6e02")
#: CARv2 fixed header after the pragma: 16 bytes of characteristics, then data offset, data
#: size and index offset as little-endian uint64 (3 * 8 = 24): 40 bytes.
_CARV2_HEADER_LEN: Final = 40


# -- header encoding ---------------------------------------------------------------------------

def _cbor_head(major: int, n: int) -> bytes:
    """A CBOR item head: major type in the top 3 bits, then the shortest argument encoding."""
    if n < 24:
        return bytes([major << 5 | n])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes([major << 5 | info]) + n.to_bytes(width, "big")
    raise ValueError(f"CBOR argument {n} exceeds 64 bits")


def encode_car_header(roots: Sequence[bytes]) -> bytes:
    """The CARv1 header, its varint length prefix included.

    >>> encode_car_header([]).hex()
    '11a265726f6f7473806776657273696f6e01'
    """
    parts = [b"\xa2", _cbor_head(3, 5), b"roots", _cbor_head(4, len(roots))]
    for root in roots:
        # tag 42 (d8 2a), then a byte string of the multibase-identity prefix 00 + the CID
        parts += [b"\xd8\x2a", _cbor_head(2, len(root) + 1), b"\x00", root]
    parts += [_cbor_head(3, 7), b"version", b"\x01"]
    body = b"".join(parts)
    return encode_uvarint(len(body)) + body


def encode_section(cid: bytes, block: bytes) -> bytes:
    """One CAR section: ``varint(len(cid) + len(block))``, the CID, the block."""
    return encode_uvarint(len(cid) + len(block)) + cid + block


class CarWriter:
    """Writes a CARv1 to a binary stream: the header at once, then a section per new CID.

    Also a :class:`BlockSink`; blocks are written in ``put`` order, so to get Kubo's order
    put them into a store first and use :func:`export_car`.
    """

    stores_blocks = True

    def __init__(self, stream: BinaryIO, roots: Sequence[bytes]) -> None:
        self.stream = stream
        self.blocks = 0
        self.seen: set[bytes] = set()
        header = encode_car_header(roots)
        stream.write(header)
        self.bytes_written = len(header)

    def put(self, cid: bytes, block: bytes) -> None:
        if cid in self.seen:
            return
        self.seen.add(cid)
        section = encode_section(cid, block)
        self.stream.write(section)
        self.blocks += 1
        self.bytes_written += len(section)

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)


# -- DAG traversal -----------------------------------------------------------------------------

def iter_links(cid: bytes, block: bytes) -> list[bytes]:
    """The CIDs ``block`` links to, in stored order (dag-pb links; dag-cbor tag 42; raw none)."""
    codec = cid_codec(cid)
    if codec == RAW:
        return []
    if codec == DAG_PB:
        try:
            return [link.cid for link in decode_node(block).links]
        except InvalidBlock as e:  # name the CID only now: formatting one costs ~100 us
            raise InvalidBlock(format_cid(cid), e.reason, e.offset) from None
    if codec == DAG_CBOR:
        value = decode_dag_cbor(block, format_cid(cid))
        found: list[bytes] = []
        stack: list[object] = [value]
        while stack:  # depth-first, in encounter order: push children reversed
            item = stack.pop()
            if isinstance(item, Link):
                found.append(bytes(item))
            elif isinstance(item, dict):
                stack.extend(reversed(list(item.values())))
            elif isinstance(item, list):
                stack.extend(reversed(item))
        return found
    name = CODEC_NAMES.get(codec, f"0x{codec:x}")
    raise InvalidBlock(format_cid(cid), f"cannot follow the links of codec {name}")


def iter_dag(source: BlockSource, root: bytes, seen: set[bytes] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """Every block under ``root`` once, depth-first pre-order, links in stored order.

    Blocks whose CID is already in ``seen`` are skipped with their whole sub-DAG (pass one set
    to several calls to export several roots without repeats). A stack of link iterators
    replaces recursion, so memory grows with the DAG's depth and the set of CIDs seen, never
    with a file's size.
    """
    seen = set() if seen is None else seen
    if root in seen:
        return
    block = source.get(root)
    seen.add(root)
    yield root, block
    stack: list[Iterator[bytes]] = [iter(iter_links(root, block))]
    while stack:
        child = next(stack[-1], None)
        if child is None:
            stack.pop()
            continue
        if child in seen:
            continue
        seen.add(child)
        block = source.get(child)
        yield child, block
        stack.append(iter(iter_links(child, block)))


@dataclass(frozen=True, slots=True)
class CarSummary:
    """What :func:`export_car` wrote."""

    blocks: int
    bytes: int


def export_car(source: BlockSource, roots: bytes | Sequence[bytes],
               path: str | os.PathLike[str], *, force: bool = True) -> CarSummary:
    """Write the DAG under ``roots`` (one CID or several) to ``path`` as ``ipfs dag export`` would.

    With several roots the header lists them all and their DAGs follow one after the other,
    blocks shared between them written once, at their first occurrence.

    The CAR is written to a part file beside ``path`` (:class:`PartFile`: the usual permissions)
    and moved into place only when complete, so an error (a missing or corrupt block) or a
    signal leaves no partial CAR behind; an existing file is replaced only with ``force``.
    """
    from .partfile import PartFile

    root_list = [roots] if isinstance(roots, bytes) else list(roots)
    with PartFile(path, force=force) as part:
        writer = CarWriter(part.stream, root_list)
        seen: set[bytes] = set()
        for root in root_list:
            writer.put_many(iter_dag(source, root, seen))
        part.commit()
    return CarSummary(writer.blocks, writer.bytes_written)


# -- reading -----------------------------------------------------------------------------------

class _Input:
    """A binary stream with the offset of the next byte, for error messages."""

    def __init__(self, stream: BinaryIO, path: str, limit: int | None = None) -> None:
        self.stream = stream
        self.path = path
        self.offset = 0
        self.limit = limit  # CARv2: the payload ends before the index

    def fail(self, reason: str, offset: int | None = None) -> InvalidCar:
        return InvalidCar(self.path, reason, self.offset if offset is None else offset)

    def read(self, n: int, what: str) -> bytes:
        data = self.stream.read(n)
        if len(data) != n:
            raise self.fail(f"{what} truncated: {n} bytes expected, {len(data)} present")
        self.offset += n
        return data

    def at_end(self) -> bool:
        if self.limit is not None and self.offset >= self.limit:
            return True
        peek = getattr(self.stream, "peek", None)
        if peek is not None:
            return not peek(1)
        data = self.stream.read(1)
        if not data:
            return True
        self.stream.seek(-1, os.SEEK_CUR)
        return False

    def varint(self, what: str) -> int:
        start = self.offset
        raw = bytearray()
        while True:
            byte = self.stream.read(1)
            if not byte:
                raise self.fail(f"{what} length truncated", start)
            raw += byte
            self.offset += 1
            if byte[0] < 0x80:
                break
            if len(raw) >= _MAX_VARINT_BYTES:
                raise self.fail(f"{what} length is not a valid varint", start)
        try:
            return decode_uvarint(bytes(raw))[0]
        except VarintError as e:
            raise self.fail(f"{what} length: {e.reason}", start) from None


def _cid_length(section: bytes) -> int:
    """Length of the CID at the start of a section (CIDv0: 34; CIDv1: prefix + digest)."""
    if len(section) >= 2 and section[0] == 0x12 and section[1] == 0x20:
        return 34  # sha2-256 multihash: code 0x12, length 0x20, 32-byte digest
    version, pos = decode_uvarint(section, 0)
    if version != 1:
        raise ValueError(f"CID version {version}")
    _, pos = decode_uvarint(section, pos)  # codec
    _, pos = decode_uvarint(section, pos)  # multihash code
    length, pos = decode_uvarint(section, pos)
    if pos + length > len(section):
        raise ValueError("CID digest runs past the section")
    return pos + length


def _decode_header(body: bytes, src: _Input, start: int) -> tuple[int, tuple[bytes, ...]]:
    try:
        value = decode_dag_cbor(body, "CAR header")
    except InvalidBlock as e:
        raise src.fail(f"header is not DAG-CBOR: {e.reason}", start + (e.offset or 0)) from None
    if not isinstance(value, dict):
        raise src.fail("header is not a map", start)
    version = value.get("version")
    if version == 2 and set(value) == {"version"} and not isinstance(version, bool):
        return 2, ()
    if version != 1 or isinstance(version, bool):
        raise src.fail(f"unsupported CAR version {version!r}", start)
    if set(value) != {"roots", "version"}:
        raise src.fail(f"header keys {sorted(value)} are not exactly ['roots', 'version']", start)
    roots = value["roots"]
    if not isinstance(roots, list):
        raise src.fail("header roots is not a list", start)
    cids: list[bytes] = []
    for root in roots:
        if not isinstance(root, Link):
            raise src.fail(f"header root {root!r:.80} is not a CID", start)
        cids.append(bytes(root))
    return 1, tuple(cids)


class CarReader:
    """Reads a CAR (v1, or the v1 payload of a v2), validating every byte.

    ``roots`` is available once constructed; iterating yields ``(cid, block)`` with each block
    checked against its CID. Any defect raises :class:`InvalidCar` naming the byte offset.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_section: int = MAX_SECTION) -> None:
        self.path = str(path)
        self.max_section = max_section
        self._owns_file = True
        try:
            self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by close())
        except OSError as e:
            raise InvalidCar(self.path, e.strerror or str(e), 0) from None
        try:
            self._src = _Input(self._file, self.path)
            self.version, self.roots = self._read_header()
        except BaseException:
            self._file.close()
            raise

    @classmethod
    def from_stream(cls, stream: BinaryIO, name: str, *, max_section: int = MAX_SECTION) -> CarReader:
        """Read a CAR from an open stream (a network answer); ``name`` stands for the path in errors.

        The stream must offer ``peek`` (wrap a raw one in :class:`io.BufferedReader`) and stays the
        caller's to close. ``max_section`` lowers the largest section (and header) accepted.
        """
        reader = cls.__new__(cls)
        reader.path = name
        reader.max_section = max_section
        reader._owns_file = False
        reader._file = stream
        reader._src = _Input(stream, name)
        reader.version, reader.roots = reader._read_header()
        return reader

    def _read_header(self) -> tuple[int, tuple[bytes, ...]]:
        src = self._src
        length = src.varint("header")
        if length == 0 or length > self.max_section:
            raise src.fail(f"header length {length} is outside 1..{self.max_section}", 0)
        start = src.offset
        version, roots = _decode_header(src.read(length, "header"), src, start)
        if version == 1:
            return 1, roots
        # CARv2: characteristics (16), data offset, data size, index offset (each LE uint64).
        fixed = src.read(_CARV2_HEADER_LEN, "CARv2 header")
        data_offset = int.from_bytes(fixed[16:24], "little")
        data_size = int.from_bytes(fixed[24:32], "little")
        if data_offset < src.offset:
            raise src.fail(f"CARv2 data offset {data_offset} points into its header", len(CARV2_PRAGMA))
        file_size = os.fstat(self._file.fileno()).st_size
        if data_offset > file_size or data_size > file_size - data_offset:
            raise src.fail(f"CARv2 payload at {data_offset}+{data_size} lies past the end of the "
                           f"{file_size}-byte file", len(CARV2_PRAGMA))
        self._file.seek(data_offset)  # skip the padding without reading it
        src.offset = data_offset
        inner_length = src.varint("inner header")
        if inner_length == 0 or inner_length > MAX_SECTION:
            raise src.fail(f"inner header length {inner_length} is outside 1..{MAX_SECTION}")
        start = src.offset
        inner_version, roots = _decode_header(src.read(inner_length, "inner header"), src, start)
        if inner_version != 1:
            raise src.fail("CARv2 payload is not a CARv1", start)
        src.limit = data_offset + data_size
        return 2, roots

    def __iter__(self) -> Iterator[tuple[bytes, bytes]]:
        src = self._src
        while not src.at_end():
            start = src.offset
            length = src.varint("section")
            if length == 0:
                raise src.fail("empty section", start)
            if length > self.max_section:
                raise src.fail(f"section of {length} bytes exceeds the {self.max_section}-byte limit", start)
            if src.limit is not None and src.offset + length > src.limit:
                raise src.fail("section runs past the CARv2 data size", start)
            section = src.read(length, "section")
            try:
                cid_len = _cid_length(section)
            except ValueError as e:
                raise src.fail(f"section does not start with a CID: {e}", start) from None
            cid, block = section[:cid_len], section[cid_len:]
            try:
                ok = block_matches(cid, block)
            except (InvalidCid, ImporterError) as e:
                raise src.fail(f"cannot verify block: {e}", start) from None
            if not ok:
                raise src.fail(f"block {format_cid(cid)} does not match its CID", start)
            yield cid, block

    def close(self) -> None:
        if self._owns_file:
            self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def read_car(path: str | os.PathLike[str]) -> Iterator[tuple[bytes, bytes]]:
    """Every ``(cid, block)`` of the CAR at ``path``, verified; see :class:`CarReader`."""
    with CarReader(path) as reader:
        yield from reader
