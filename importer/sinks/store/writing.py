"""Writing the store: blocks buffered, then committed in batches, as packs or as rows of their own.

Puts are buffered in memory and committed in one transaction per
:data:`~importer.sinks.store.base.BATCH_BYTES`, at :meth:`~StoreWriter.flush` and at
:meth:`~importer.sinks.store.base.StoreBase.close`.

Packs (schema 7, encodings 4 and 5, :mod:`importer.sinks.packs`): a compressing store writes new
blocks as segments of ``packs`` rows of about 1 MiB (blocks under 256 KiB grouped into zstd -9
frames, with the store's dictionary or the one the package ships), so SQLite's pages hold
payload and not slack; a block row keeps a locator. The layout is made (and compressed) before
the write lock is taken, so another writer waits only for the inserts. Deltas decided before a
block's first write (:meth:`~importer.sinks.store.deltas.StoreDeltas.delta_encode`) are written
as their delta payload, so none is written plainly and rewritten smaller; a staged delta whose
reference another process deleted or deepened meanwhile is written plain instead. The
one-row-per-block layout (encodings 0-3) is still read, and written by rewrites, by
``packs=False`` and by stores that do not compress.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Final

import zstandard

from .. import x86
from ..atrest import ENCODING_IDENTITY, SMALL_BLOCK, UndecodablePayload
from ..delta import read_header
from ..packs import (
    COLD_FRAME_BYTES,
    COLD_PLAIN_FROM,
    ENCODING_PACKED_DELTA,
    FRAME_BYTES,
    FRAME_LEVEL,
    GROUP_BELOW,
    LEGACY_MAX_FRAME,
    LOCATOR_OF_X86_FORM,
    X86_FORM_OF_LOCATOR,
    PackBuilder,
    Placed,
)
from .dictionaries import StoreDictionaries
from .roots import hold_writer_lock
from .schema import X86_FORM_SCHEMAS, raise_schema

_INSERT: Final = "INSERT OR IGNORE INTO blocks (cid, encoding, data, size) VALUES (?, ?, ?, ?)"
#: CIDs looked up per query when sorting out the buffered blocks the store already has (SQLite's
#: default limit on bound parameters was 999 before 3.32).
_LOOKUP_ROWS: Final = 900


class StoreWriter(StoreDictionaries):
    """The write path of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def put(self, cid: bytes, block: bytes) -> None:
        """Buffer one block; a CID already stored or buffered is a no-op."""
        if cid in self._pending:
            return
        if self._lock.mode is None:
            hold_writer_lock(self)
        self._pending[cid] = block
        self._pending_bytes += len(block)
        if self._pending_bytes >= self.batch_bytes:
            self.flush()

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)

    def flush(self) -> None:
        """Commit every buffered block in one transaction; then train a dictionary if one is due."""
        if self._write_pending() and self._codec.compress and self._due_for_training():
            self.train(auto=True)

    def _write_pending(self) -> bool:
        """Commit every buffered block in one transaction; False if there was none.

        A compressing store writes packs (:mod:`importer.sinks.packs`): small blocks grouped into
        frames, large ones and staged deltas (:meth:`delta_encode`) a segment each; a store
        that does not compress writes one row per block as it is.
        """
        if not self._pending:
            return False
        try:
            self._refresh_dictionary()
        except sqlite3.Error as e:
            raise self._fail(f"cannot write blocks: {e}") from None
        try:
            if self._codec.compress and self.packs:
                self._write_packs()
            else:
                self._write_rows()
        finally:
            self._staged.clear()
            self._staged_refs.clear()
        self._pending.clear()
        self._pending_bytes = 0
        return True

    def _write_rows(self) -> None:
        small = [(cid, *self._encode(block), len(block)) for cid, block in self._pending.items()
                 if len(block) < SMALL_BLOCK]
        large = [(cid, *self._encode(block), len(block)) for cid, block in self._pending.items()
                 if len(block) >= SMALL_BLOCK]
        with self._transaction("write blocks"):
            added_small = self._conn.executemany(_INSERT, small).rowcount if small else 0
            if large:
                self._conn.executemany(_INSERT, large)
            self._count_small(added_small)

    def _write_packs(self) -> None:
        # Lay the packs out (compressing) before taking the write lock, so another writer waits
        # only for the inserts; blocks the store has already stay out of them (a block committed
        # by another process in between is skipped at insert and its segment left dead).
        fresh = dict(self._pending)
        cids = list(fresh)
        for start in range(0, len(cids), _LOOKUP_ROWS):
            chunk = cids[start:start + _LOOKUP_ROWS]
            try:
                for (cid,) in self._conn.execute(
                        f"SELECT cid FROM blocks WHERE cid IN ({', '.join('?' * len(chunk))})", chunk):
                    del fresh[bytes(cid)]
            except sqlite3.Error as e:
                raise self._fail(f"cannot read the index: {e}") from None
        empty, packs = self._lay_out(fresh, self._staged)
        with self._transaction("write blocks"):
            deltas, saved = self._insert_packs(empty, packs, self._pending, self._staged)
        self._staged_done = (self._staged_done[0] + deltas, self._staged_done[1] + saved)

    def _lay_out(self, blocks: dict[bytes, bytes], deltas: dict[bytes, tuple[bytes, tuple[bytes, ...], int]],
                 level: int = 0, frame_bytes: int = COLD_FRAME_BYTES,
                 ) -> tuple[list[tuple[bytes, int, bytes, int]], list[tuple[bytes, list[Placed]]]]:
        """``blocks`` as packs (:class:`~importer.sinks.packs.PackBuilder`), ``deltas`` as their payloads;
        empty blocks apart, as rows of their own (they take no pack space). ``level``: cold packs
        (:meth:`compact_packs`), every frame at that zstd level and every block smaller than
        ``frame_bytes`` but deltas grouped into frames of ``frame_bytes`` (so under twice that)."""
        builder = PackBuilder(self._frame_compressor_now(level, frame_bytes), frame_bytes if level else FRAME_BYTES)
        group_below = frame_bytes if level else GROUP_BELOW
        large = self._large_compressor(level)
        packs: list[tuple[bytes, list[Placed]]] = []
        empty: list[tuple[bytes, int, bytes, int]] = []
        for cid, block in blocks.items():
            staged = deltas.get(cid)
            if not block:
                empty.append((cid, ENCODING_IDENTITY, b"", 0))
            elif staged is not None:
                builder.add_delta(cid, len(block), staged[0], staged[1])
            elif len(block) >= group_below and len(block) > LEGACY_MAX_FRAME:
                # As one frame, a frame that readers before schema 9 (or, past MAX_FRAME, any
                # reader) refuse as a damaged locator; a block this large comes only from a CAR, whose
                # sections may reach 32 MiB: it is its segment, raw.
                builder.add_frame(cid, len(block), block, False)
            else:
                flags = LOCATOR_OF_X86_FORM[x86.FORM] if x86.looks_like_code(block) else 0
                stored = x86.encode(block, x86.FORM) if flags else block
                if len(block) < group_below:
                    builder.add_grouped(cid, stored, flags)
                else:
                    encoding, payload = self._codec.encode(stored, large)
                    builder.add_frame(cid, len(block), payload, encoding != ENCODING_IDENTITY, flags)
            if builder.full:
                packs.append(builder.take())
        if not builder.empty:
            packs.append(builder.take())
        return empty, packs

    def _insert_packs(self, empty: Sequence[tuple[bytes, int, bytes, int]], packs: Sequence[tuple[bytes, list[Placed]]],
                      blocks: dict[bytes, bytes], deltas: dict[bytes, tuple[bytes, tuple[bytes, ...], int]],
                      *, new: bool = True, level: int = 0) -> tuple[int, int]:
        """Inside a write transaction: insert the packs and their blocks' rows (a CID already stored
        is skipped); ``(deltas written, bytes they saved)``. ``new``: the blocks count towards the
        next dictionary (not when they are only moved)."""
        added_small = written = saved = 0
        self._record_x86((data[p.offset:p.offset + p.length] for data, placed in packs for p in placed
                          if p.encoding == ENCODING_PACKED_DELTA),
                         locator_forms=(X86_FORM_OF_LOCATOR.get(p.flags, 0) for _, placed in packs for p in placed))
        self._conn.executemany(_INSERT, empty)
        ids: list[int] = []
        for data, _ in packs:
            pack = self._conn.execute("INSERT INTO packs (data) VALUES (?)", (data,)).lastrowid
            assert pack is not None
            ids.append(pack)
        live = [0] * len(packs)
        # Plain blocks first, then the deltas in the order they were decided (``deltas``): a
        # delta may reference a block of this same write, or a delta decided before it
        # (:meth:`~importer.sinks.store.deltas.StoreDeltas._stage`), which must then be there.
        placed_deltas: dict[bytes, tuple[int, Placed]] = {}
        for index, (_, placed) in enumerate(packs):
            for p in placed:
                if p.cid not in blocks:
                    continue
                if p.encoding == ENCODING_PACKED_DELTA:
                    placed_deltas[p.cid] = (index, p)
                elif self._conn.execute(_INSERT, (p.cid, p.encoding, p.locator(ids[index]), p.size)).rowcount == 1:
                    live[index] += p.size
                    added_small += 1 if p.size < SMALL_BLOCK else 0
        for cid in [cid for cid in deltas if cid in placed_deltas]:
            index, p = placed_deltas[cid]
            data = packs[index][0]
            # (A move keeps the delta's references and depth: a reference deleted meanwhile
            # would have rewritten the row first, and the move skips a rewritten row.)
            if new and not self._still_sound(p.refs, read_header(data[p.offset:p.offset + p.length]).depth):
                # A reference deleted or deepened by another process since the delta was
                # made: the block is written on its own instead.
                cursor = self._conn.execute(_INSERT, (p.cid, *self._encode(blocks[p.cid]), p.size))
                self._drop_delta_refs([p.cid])
                added_small += cursor.rowcount if p.size < SMALL_BLOCK else 0
                continue
            if self._conn.execute(_INSERT, (p.cid, p.encoding, p.locator(ids[index]), p.size)).rowcount != 1:
                continue  # stored already (by an earlier batch or another process)
            live[index] += p.size
            self._add_delta_refs(p.cid, p.refs)
            written += 1
            saved += deltas[p.cid][2] - p.length
        for index, (_, placed) in enumerate(packs):
            if live[index]:
                self._conn.execute("INSERT INTO pack_usage VALUES (?, ?, ?, ?)",
                                   (ids[index], sum(p.size for p in placed), live[index], level))
            else:
                self._conn.execute("DELETE FROM packs WHERE id = ?", (ids[index],))
        if new:
            self._count_small(added_small)
        return written, saved

    def _record_x86(self, deltas: Iterable[bytes], *, locator_forms: Iterable[int] = ()) -> None:
        """Inside a write transaction: record the schema of the newest x86 form (schema 10 for form
        1, 12 for form 2: :data:`~importer.sinks.store.schema.X86_FORM_SCHEMAS`) among the rows
        about to be written, which older code cannot read: the forms of their locators'
        flags (``locator_forms``, 0 for none) and of the delta payloads ``deltas``."""
        form = max((*locator_forms, *(read_header(payload).x86_form for payload in deltas)), default=0)
        if form:
            raise_schema(self._conn, X86_FORM_SCHEMAS[form])

    def _still_sound(self, refs: Sequence[bytes], depth: int) -> bool:
        """Under the write lock: every reference is committed and the delta's depth is still theirs + 1."""
        present = self._conn.execute(
            f"SELECT count(*) FROM blocks WHERE cid IN ({', '.join('?' * len(refs))})", tuple(refs)).fetchone()
        if int(present[0]) != len(set(refs)):
            return False
        try:
            return depth == 1 + self._depth_of(refs)
        except UndecodablePayload:
            return False

    def _large_compressor(self, level: int = 0) -> zstandard.ZstdCompressor:
        """The compressor of a block that is a frame of its own in a pack (no dictionary)."""
        level = level or FRAME_LEVEL
        compressor = self._large.get(level)
        if compressor is None:
            compressor = self._large[level] = zstandard.ZstdCompressor(level=level, write_checksum=False)
        return compressor

    def _frame_compressor_now(self, level: int = 0, frame_bytes: int = COLD_FRAME_BYTES) -> zstandard.ZstdCompressor:
        """The compressor of grouped frames: :data:`~importer.sinks.packs.FRAME_LEVEL` (or ``level``),
        with the newest dictionary; cold frames (``level``) of ``frame_bytes`` from
        :data:`~importer.sinks.packs.COLD_PLAIN_FROM` up without one."""
        if level and frame_bytes >= COLD_PLAIN_FROM:
            return self._large_compressor(level)
        dict_id = self._codec.dictionary_id
        level = level or FRAME_LEVEL
        if self._frame_compressor is None or self._frame_compressor[:2] != (dict_id, level):
            data = self._load_dictionary(dict_id) if dict_id else None
            if data is None:
                compressor = zstandard.ZstdCompressor(level=level, write_checksum=False)
            else:
                d = zstandard.ZstdCompressionDict(data, dict_type=zstandard.DICT_TYPE_FULLDICT)
                d.precompute_compress(level=level)
                compressor = zstandard.ZstdCompressor(dict_data=d, write_checksum=False)
            self._frame_compressor = (dict_id, level, compressor)
        return self._frame_compressor[2]

    def _encode(self, block: bytes) -> tuple[int, bytes]:
        """``(encoding, stored bytes)`` of a block."""
        return self._codec.encode(block)
