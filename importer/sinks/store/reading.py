"""Reading the store: a block by CID, decoded from whatever encoding it is stored in and checked.

Every block read is hashed and compared with its CID (:func:`importer.dag.cid.block_matches`);
a mismatch raises :class:`~importer.errors.BlockCorrupt`, as does a payload that does not decode.
A row's ``encoding`` says where its bytes are (:mod:`importer.sinks.atrest`: 0-2 the payload in
the row, as is or a zstd frame; 3 a delta, :mod:`importer.sinks.delta`; 4 and 5 a locator into a
pack, :mod:`importer.sinks.packs`), and a reader that meets an encoding it does not know refuses
that block with a clear error instead of guessing.

Two caches keep a sequence of reads from decoding the same bytes twice: the frames of packs
(:data:`FRAME_CACHE_BYTES`: a fetch reads a frame's small blocks one after the other) and the
references of deltas (:data:`REFERENCE_CACHE_BYTES`: the leaves of one file reference
overlapping leaves of the old one). A delta read as a reference must be shallower than its
referrer, which makes a cycle of references (only a damaged store could have one) an error, not
a hang.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, Final

from ...dag.cid import IDENTITY, block_matches, format_cid, split_cid
from ...errors import BlockCorrupt, BlockNotFound
from .. import x86
from ..atrest import ENCODING_DELTA, ENCODING_NAMES, UndecodablePayload, UnknownEncoding
from ..delta import MAX_DEPTH, DeltaHeader, decode_payload, read_header, short_ref
from ..packs import ENCODING_PACKED, ENCODING_PACKED_DELTA, MAX_FRAME, Locator, parse_locator
from .base import StoreBase
from .schema import MiB

#: Decoded reference blocks kept for the next deltas to read: 64 MiB holds the ~5 leaves of
#: 256 KiB that a delta references at each of :data:`~importer.sinks.delta.MAX_DEPTH` levels
#: (16 x 5 x 256 KiB = 20 MiB) three times over, so reading a file leaf after leaf decodes each
#: old leaf once, not once per new leaf that references it.
REFERENCE_CACHE_BYTES: Final = 64 * MiB
#: Decoded pack frames kept for the next reads: a fetch reads a frame's small blocks one after the
#: other, so it decodes each frame once. Twice the largest frame (32 MiB; 256 frames of the default
#: 128 KiB) keeps the frame a read just decoded and the one before it, whatever ``store optimize
#: --frame-size`` made: with the 8 MiB of before, a cold frame of 8 MiB or more was evicted as soon
#: as it was decoded, and decoded again for every block of it.
FRAME_CACHE_BYTES: Final = 2 * MAX_FRAME
#: Encodings whose payload is a delta (:mod:`importer.sinks.delta`): in a row, or in a pack.
DELTA_ENCODINGS: Final = (ENCODING_DELTA, ENCODING_PACKED_DELTA)
#: Encodings whose row holds a locator into a pack.
PACKED_ENCODINGS: Final = (ENCODING_PACKED, ENCODING_PACKED_DELTA)


def _after_prefix(prefix: bytes) -> bytes:
    """A byte string above every CID that starts with ``prefix`` and below every other one above
    it: the last byte below 0xFF raised and the rest cut (a CID is far shorter than 256 bytes)."""
    head = prefix.rstrip(b"\xff")
    return head[:-1] + bytes([head[-1] + 1]) if head else prefix + b"\xff" * 256


class StoreReader(StoreBase):
    """The read path of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def get(self, cid: bytes) -> bytes:
        """The block named ``cid``, checked against it; BlockNotFound or BlockCorrupt otherwise."""
        block = self._pending.get(cid)
        if block is None:
            # One read transaction for the row and the pack it points to: another process may
            # rewrite a pack (compact_packs) between two separate reads.
            own = not self._conn.in_transaction
            try:
                if own:
                    self._conn.execute("BEGIN")
                try:
                    row = self._conn.execute(
                        "SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
                    if row is not None:
                        block = self._decode(cid, int(row[0]), bytes(row[1]), int(row[2]))
                finally:
                    if own:
                        self._conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._fail(f"cannot read a block: {e}") from None
            if block is None:
                _, _, code, digest = split_cid(cid)
                if code == IDENTITY:  # an inlined block: the CID carries the bytes themselves
                    return digest
                raise BlockNotFound(format_cid(cid), str(self.path))
        self._check(cid, block)
        return block

    def has(self, cid: bytes) -> bool:
        if cid in self._pending:
            return True
        try:
            row = self._conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the index: {e}") from None
        return row is not None

    def _decode(self, cid: bytes, encoding: int, data: bytes, size: int, below: int = MAX_DEPTH + 1) -> bytes:
        """Inverse of :meth:`_encode` (and of deltas); an encoding from a newer version is refused, not guessed.

        ``below``: a delta read as a reference must be shallower than its referrer, which is
        what makes a cycle of references (only a damaged store could have one) an error, not a hang.
        """
        try:
            if encoding == ENCODING_PACKED:
                return self._unpack(parse_locator(data, size), size)
            if encoding in DELTA_ENCODINGS:
                payload = self._segment(parse_locator(data, size)) if encoding == ENCODING_PACKED_DELTA else data
                depth = read_header(payload).depth
                if depth >= below:
                    raise UndecodablePayload(f"delta of depth {depth} referenced by one of depth {below}")
                return decode_payload(payload, size, lambda ref: self._reference(ref, depth))
            return self._codec.decode(encoding, data, size)
        except UnknownEncoding:
            raise self._fail(f"block {format_cid(cid)} is stored with encoding {encoding}, "
                             "which this version cannot read: upgrade dpip-importer") from None
        except UndecodablePayload as e:
            name = ENCODING_NAMES.get(encoding, str(encoding))
            raise BlockCorrupt(format_cid(cid), str(self.path), f"nothing: its {name} payload is damaged: {e}") from None
        except sqlite3.Error as e:
            raise self._fail(f"cannot read a dictionary or a reference: {e}") from None

    def _segment(self, locator: Locator) -> bytes:
        """The bytes of one segment of a pack (reads only the pages that hold it)."""
        end = locator.offset + locator.length
        try:
            blob = self._conn.blobopen("packs", "data", locator.pack, readonly=True)
        except sqlite3.OperationalError:
            raise UndecodablePayload(f"its pack {locator.pack} is not in the store") from None
        with blob:
            if end > len(blob):
                raise UndecodablePayload(f"its pack {locator.pack} holds {len(blob)} bytes, the row reads to {end}")
            blob.seek(locator.offset)
            return blob.read(locator.length)

    def _unpack(self, locator: Locator, size: int) -> bytes:
        """A block of :data:`~importer.sinks.packs.ENCODING_PACKED`: its raw segment, or its slice of a
        frame; a locator flagged :data:`~importer.sinks.packs.LOCATOR_X86` or
        :data:`~importer.sinks.packs.LOCATOR_X86_2` holds the block filtered in that form."""
        stored = self._stored_bytes(locator, size)
        return x86.decode(stored, locator.x86_form) if locator.x86_form else stored

    def _stored_bytes(self, locator: Locator, size: int) -> bytes:
        if not locator.frame_size:
            block = self._segment(locator)
            if len(block) != size:
                raise UndecodablePayload(f"pack segment holds {len(block)} bytes, the row says {size}")
            return block
        key = (locator.pack, locator.offset, locator.length)
        frame = self._frames.get(key)
        if frame is None:
            frame = self._codec.decode_frame(self._segment(locator), locator.frame_size)
            self._frames[key] = frame
            self._frames_bytes += len(frame)
            while self._frames_bytes > FRAME_CACHE_BYTES:
                _, evicted = self._frames.popitem(last=False)
                self._frames_bytes -= len(evicted)
        else:
            self._frames.move_to_end(key)
        return frame[locator.inner:locator.inner + size]

    def _check(self, cid: bytes, block: bytes) -> None:
        if not block_matches(cid, block):
            import hashlib

            actual = hashlib.sha256(block).hexdigest()
            raise BlockCorrupt(format_cid(cid), str(self.path), f"sha2-256 {actual}")

    def _reference(self, ref: bytes, below: int) -> bytes:
        """The decoded, checked block ``ref`` (a CID or a delta header's short name of one,
        :func:`~importer.sinks.delta.short_ref`) for a delta of depth ``below`` (cached)."""
        block = self._references.get(ref)
        if block is not None:
            self._references.move_to_end(ref)
            return block
        cid = self._resolve(ref)
        if cid is None:
            raise UndecodablePayload(f"its reference {format_cid(ref)} is not in the store")
        row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None:
            raise UndecodablePayload(f"its reference {format_cid(ref)} is not in the store")
        try:
            block = self._decode(cid, int(row[0]), bytes(row[1]), int(row[2]), below)
            self._check(cid, block)
        except BlockCorrupt as e:
            raise UndecodablePayload(f"its reference {format_cid(cid)} is damaged ({e.actual})") from None
        self._references[ref] = block
        self._references_bytes += len(block)
        while self._references_bytes > REFERENCE_CACHE_BYTES:
            _, evicted = self._references.popitem(last=False)
            self._references_bytes -= len(evicted)
        return block

    def _forget_reference(self, cid: bytes) -> None:
        for name in {cid, short_ref(cid)}:
            block = self._references.pop(name, None)
            if block is not None:
                self._references_bytes -= len(block)

    def _resolve(self, ref: bytes) -> bytes | None:
        """The CID of the committed block a delta header names ``ref``: the block whose CID is
        ``ref`` or starts with it (:func:`~importer.sinks.delta.short_ref`), found by a range of
        the CID index; None if there is none. Two would be two blocks with the same first 8
        digest bytes (about 2**64 hashes to make): the delta is then called damaged, not guessed."""
        found = self._conn.execute("SELECT cid FROM blocks WHERE cid >= ? AND cid < ? LIMIT 2",
                                   (ref, _after_prefix(ref))).fetchall()
        if len(found) > 1:
            raise UndecodablePayload(f"its reference {format_cid(ref)} names {format_cid(bytes(found[0][0]))} "
                                     f"and {format_cid(bytes(found[1][0]))}")
        return bytes(found[0][0]) if found else None

    def _resolved(self, header: DeltaHeader) -> DeltaHeader:
        """``header`` with each reference a CID; one no block answers to stays as it is (missing)."""
        return replace(header, refs=tuple(self._resolve(ref) or ref for ref in header.refs))

    def _depth_of(self, refs: Sequence[bytes]) -> int:
        """The deepest delta depth among committed rows ``refs`` (0 when none is a delta)."""
        depth = 0
        for ref in refs:
            row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ? AND encoding IN (?, ?)",
                                     (ref, *DELTA_ENCODINGS)).fetchone()
            if row is not None:
                payload = bytes(row[1])
                if int(row[0]) == ENCODING_PACKED_DELTA:
                    payload = self._segment(parse_locator(payload, int(row[2])))
                depth = max(depth, read_header(payload).depth)
        return depth

    def _delta_header(self, cid: bytes) -> DeltaHeader | None:
        """The delta header of the committed block ``cid`` (in a row or in a pack); None if it is no delta."""
        row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None or int(row[0]) not in DELTA_ENCODINGS:
            return None
        try:
            payload = bytes(row[1])
            if int(row[0]) == ENCODING_PACKED_DELTA:
                payload = self._segment(parse_locator(payload, int(row[2])))
            return self._resolved(read_header(payload))
        except UndecodablePayload:
            raise BlockCorrupt(format_cid(cid), str(self.path), "nothing: its delta header is damaged") from None

    #: SQL for a row's payload length and, for a packed row only, its locator (so that a query
    #: over many rows never loads a large payload just to measure it).
    _STORED_COLUMNS: Final = f"encoding, size, length(data), CASE WHEN encoding IN {PACKED_ENCODINGS} THEN data END"

    @classmethod
    def _stored_of(cls, encoding: int, size: int, length: int, locator: bytes | None) -> int:
        """A row's bytes at rest from :data:`_STORED_COLUMNS`."""
        return length if locator is None else cls._payload_length(encoding, bytes(locator), size)

    @staticmethod
    def _payload_length(encoding: int, data: bytes, size: int) -> int:
        """What a row's block takes at rest: its payload, or its segment (its share of a shared frame)."""
        if encoding not in PACKED_ENCODINGS:
            return len(data)
        try:
            locator = parse_locator(data, size)
        except UndecodablePayload:
            return len(data)
        return locator.length * size // locator.frame_size if locator.frame_size else locator.length

    def _row_chunks(self, columns: str, chunk_rows: int, what: str) -> Iterator[list[Any]]:
        """``columns`` of every committed block row, ``chunk_rows`` at a time, one short read each
        (so a caller may write between chunks), paged by rowid, or by CID in a store without
        rowids (:mod:`.schema`). ``what`` names the read in the error: "cannot {what}: ..."."""
        key = "rowid" if self._blocks_rowid else "cid"
        last: int | bytes = 0 if self._blocks_rowid else b""
        while True:
            try:
                rows = self._conn.execute(
                    f"SELECT {key}, {columns} FROM blocks WHERE {key} > ? ORDER BY {key} LIMIT ?",
                    (last, chunk_rows)).fetchall()
            except sqlite3.Error as e:
                raise self._fail(f"cannot {what}: {e}") from None
            if not rows:
                return
            last = rows[-1][0]
            yield [row[1:] for row in rows]

    def cids_in_written_order(self) -> list[bytes]:
        """Every committed CID in the order the blocks were written (a snapshot): rowid order in a
        store made before schema 8; else packed blocks by (pack, offset, place in the frame), after
        the blocks in rows of their own (in CID order: their order is not recorded)."""
        try:
            if self._blocks_rowid:
                return [bytes(cid) for (cid,) in self._conn.execute("SELECT cid FROM blocks ORDER BY rowid")]
            rows = self._conn.execute(
                f"SELECT cid, encoding, CASE WHEN encoding IN {PACKED_ENCODINGS} THEN data END, size FROM blocks").fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot list blocks: {e}") from None
        rows.sort(key=lambda row: self._written_at(int(row[1]), row[2], int(row[3])))
        return [bytes(row[0]) for row in rows]

    @staticmethod
    def _written_at(encoding: int, data: bytes | None, size: int) -> tuple[int, int, int]:
        """Where a row's block sits in the order of writing, without a rowid: its pack, offset and
        place inside its frame (packs are numbered as they are written, never reusing a number; a
        frame holds its blocks in the order they were added); ``(0, 0, 0)`` for a row of its own
        (or an unparsable locator: ``store verify`` reports it)."""
        if data is None or encoding not in PACKED_ENCODINGS:
            return 0, 0, 0
        try:
            locator = parse_locator(bytes(data), size)
        except UndecodablePayload:
            return 0, 0, 0
        return locator.pack, locator.offset, locator.inner

    def iter_cids(self) -> Iterator[bytes]:
        """Every committed CID, in CID byte order (a snapshot: later commits are not seen)."""
        try:
            for (cid,) in self._conn.execute("SELECT cid FROM blocks ORDER BY cid"):
                yield bytes(cid)
        except sqlite3.Error as e:
            raise self._fail(f"cannot list blocks: {e}") from None

    def iter_payloads(self) -> Iterator[tuple[bytes, str, int]]:
        """``(cid, encoding name, bytes at rest)`` of every committed block: its payload, or for a
        packed block its segment (its share of a shared frame), as :meth:`stats` counts them."""
        try:
            for cid, encoding, data, size in self._conn.execute("SELECT cid, encoding, data, size FROM blocks"):
                name = ENCODING_NAMES.get(int(encoding), str(encoding))
                yield bytes(cid), name, self._payload_length(int(encoding), bytes(data), int(size))
        except sqlite3.Error as e:
            raise self._fail(f"cannot list blocks: {e}") from None

    def iter_deltas(self) -> Iterator[tuple[bytes, int, tuple[bytes, ...]]]:
        """``(cid, depth, reference CIDs)`` of every block stored as a delta, in a row or in a pack."""
        try:
            rows = self._conn.execute("SELECT cid, encoding, data, size FROM blocks WHERE encoding IN (?, ?)",
                                      DELTA_ENCODINGS).fetchall()
            for cid, encoding, data, size in rows:
                payload = bytes(data)
                if int(encoding) == ENCODING_PACKED_DELTA:
                    payload = self._segment(parse_locator(payload, int(size)))
                header = self._resolved(read_header(payload))
                yield bytes(cid), header.depth, header.refs
        except UndecodablePayload as e:
            raise self._fail(f"a delta does not parse: {e}") from None
        except sqlite3.Error as e:
            raise self._fail(f"cannot list deltas: {e}") from None
