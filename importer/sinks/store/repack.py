"""Keeping the packs: each pack's live bytes, deleting the empty ones, rewriting the mostly dead ones.

``pack_usage`` counts, for each pack (:mod:`importer.sinks.packs`), the logical bytes placed in
it and those of the blocks whose rows still point to it. Deleting or rewriting a packed block
lowers its pack's count (:meth:`StorePacks._release`), a pack nothing points to is deleted in the
same transaction, and :meth:`StorePacks.compact_packs` rewrites the packs whose live blocks are
less than half of what was placed in them (and, with a zstd level, every pack made at a lower
one: ``store optimize --level 19``). The counters live in their own table because updating a
column of a pack's row would make SQLite rewrite its megabyte and free the old pages.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Final

from ...errors import BlockCorrupt, StoreError
from ..atrest import UndecodablePayload
from ..delta import encode_payload, read_header
from ..packs import COLD_FRAME_BYTES, ENCODING_PACKED_DELTA, LEGACY_MAX_FRAME, parse_locator
from .base import BATCH_BYTES, RECLAIM_FRACTION, SQL_PARAMS, chunks
from .reading import DELTA_ENCODINGS, PACKED_ENCODINGS
from .schema import LARGE_FRAMES_SCHEMA, raise_schema
from .writing import StoreWriter

#: A block row as compact_packs reads it: (cid, encoding, data, size).
_Row = tuple[bytes, int, bytes, int]
#: Decoded bytes of blocks moved per transaction by :meth:`StorePacks.compact_packs`: the
#: import's batch (:data:`~importer.sinks.store.base.BATCH_BYTES`), so a move holds the write lock
#: about as long as an import's commit, and cold frames of 1 MiB fill across many small packs.
MOVE_BYTES: Final = BATCH_BYTES


class StorePacks(StoreWriter):
    """Pack accounting and compaction of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def _release(self, cid: bytes) -> None:
        """Inside a write transaction, before row ``cid`` is deleted or rewritten: its pack (if
        packed) no longer holds it; a pack left holding nothing is deleted."""
        row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None or int(row[0]) not in PACKED_ENCODINGS:
            return
        try:
            pack = parse_locator(bytes(row[1]), int(row[2])).pack
        except UndecodablePayload:
            return  # a damaged locator names no pack to account to; `store verify` reports the block
        self._conn.execute("UPDATE pack_usage SET live = live - ? WHERE pack = ?", (int(row[2]), pack))
        self._delete_empty_packs()

    def _release_many(self, cids: Sequence[bytes]) -> None:
        """:meth:`_release` for many rows at once (at most :data:`SQL_PARAMS`)."""
        freed: dict[int, int] = {}
        for encoding, data, size in self._conn.execute(
                f"SELECT encoding, data, size FROM blocks WHERE encoding IN {PACKED_ENCODINGS}"
                f" AND cid IN ({', '.join('?' * len(cids))})", tuple(cids)):
            try:
                pack = parse_locator(bytes(data), int(size)).pack
            except UndecodablePayload:
                continue
            freed[pack] = freed.get(pack, 0) + int(size)
        self._conn.executemany("UPDATE pack_usage SET live = live - ? WHERE pack = ?",
                               [(n, pack) for pack, n in freed.items()])
        if freed:
            self._delete_empty_packs()

    def _delete_empty_packs(self) -> int:
        """Inside a write transaction: delete the packs no row points to any more; how many."""
        gone = [pack for (pack,) in self._conn.execute("SELECT pack FROM pack_usage WHERE live <= 0")]
        self._conn.executemany("DELETE FROM packs WHERE id = ?", [(pack,) for pack in gone])
        self._conn.executemany("DELETE FROM pack_usage WHERE pack = ?", [(pack,) for pack in gone])
        return len(gone)

    def compact_packs(self, *, below: float = 0.5, level: int = 0,
                      frame_bytes: int = COLD_FRAME_BYTES) -> tuple[int, int]:
        """Rewrite the packs whose live blocks are less than ``below`` of what was placed in them;
        ``(packs rewritten, bytes freed)``. Their live blocks are decoded, checked and laid out
        into new packs (delta payloads as they were), :data:`MOVE_BYTES` at a time, and the rows
        moved and the old packs deleted in one transaction. A pack with a damaged block is left
        for ``store verify``.

        With ``level`` (``store optimize --level 19``), every pack made at a lower level is
        rewritten too, and the blocks still in rows of their own (rewrites and older stores write
        those) are moved into packs, as *cold* packs: frames at that zstd level holding every block
        but deltas, in frames of ``frame_bytes`` (``store optimize --frame-size``; a pack already at
        ``level`` is left as it is, whatever its frames), and each delta made again at that level
        against the same references. Blocks written once and read rarely cost less; a random read
        of one decodes a larger frame. Frames that readers before schema 9 would refuse raise the
        store to schema 9 first (:func:`~importer.sinks.store.schema.raise_schema`).
        """
        self.flush()
        if not self._codec.compress:
            return 0, 0
        try:
            wanted = {int(pack): int(length) for pack, length in self._conn.execute(
                "SELECT id, length(data) FROM packs JOIN pack_usage ON pack = id"
                " WHERE live < logical * ? OR level < ? ORDER BY id", (below, level))}
            rows: dict[int, list[_Row]] = {pack: [] for pack in wanted}
            if wanted:
                for cid, encoding, data, size in self._conn.execute(
                        "SELECT cid, encoding, data, size FROM blocks WHERE encoding IN (?, ?)", PACKED_ENCODINGS):
                    try:
                        locator = parse_locator(bytes(data), int(size))
                    except UndecodablePayload:
                        continue
                    if locator.pack in rows:
                        rows[locator.pack].append((bytes(cid), int(encoding), bytes(data), int(size)))
                for group in rows.values():
                    # In the order they were written (a WITHOUT ROWID ``blocks`` is scanned in CID
                    # order): frames made of neighbours compress better than of strangers, 4.3%
                    # on grpcio's cold packs (REPORT.md, "Cold frames").
                    group.sort(key=lambda row: self._written_at(row[1], row[2], row[3]))
            loose = [] if not level else [
                (bytes(cid), int(size)) for cid, size in self._conn.execute(
                    "SELECT cid, size FROM blocks WHERE size > 0 AND encoding NOT IN (?, ?)", PACKED_ENCODINGS)]
        except sqlite3.Error as e:
            raise self._fail(f"cannot list packs: {e}") from None
        if level and (wanted or loose) and 2 * frame_bytes - 1 > LEGACY_MAX_FRAME:
            with self._transaction("record the schema of large frames"):
                raise_schema(self._conn, LARGE_FRAMES_SCHEMA)
        rewritten = freed = 0
        batch: dict[int, list[_Row]] = {}
        batch_loose: list[bytes] = []
        batch_bytes = 0

        def move() -> None:
            nonlocal rewritten, freed, batch, batch_loose, batch_bytes
            if batch or batch_loose:
                moved, before, after = self._move_packs(batch, self._loose_rows(batch_loose), level, frame_bytes)
                rewritten += len(moved)
                freed += sum(wanted[pack] for pack in moved) + before - after
            batch, batch_loose, batch_bytes = {}, [], 0

        for pack in wanted:
            batch[pack] = rows[pack]
            batch_bytes += sum(row[3] for row in rows[pack])
            if batch_bytes >= MOVE_BYTES:
                move()
        for cid, size in loose:
            batch_loose.append(cid)
            batch_bytes += size
            if batch_bytes >= MOVE_BYTES:
                move()
        move()
        if rewritten or loose:
            self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)  # the old packs' pages
        return rewritten, freed

    def _loose_rows(self, cids: Sequence[bytes]) -> list[_Row]:
        """The rows of ``cids`` (blocks in rows of their own), as they are now."""
        found: list[_Row] = []
        for chunk in chunks(cids, SQL_PARAMS):
            found += [(bytes(cid), int(encoding), bytes(data), int(size)) for cid, encoding, data, size in
                      self._conn.execute("SELECT cid, encoding, data, size FROM blocks"
                                         f" WHERE cid IN ({', '.join('?' * len(chunk))})", tuple(chunk))]
        return found

    def _rewrite_rows(self, rewrites: Sequence[tuple[bytes, bytes, int, bytes, tuple[bytes, ...]]]) -> None:
        """Inside a write transaction: give committed rows new contents, ``(cid, block, encoding,
        payload, references)`` each; their old packs are released (:meth:`_release`) here, so that
        until then the rows still read as they were (a rewrite may be made against another).

        In a store that writes packs, the new contents go into a pack (deltas as their payload,
        the others grouped into frames as an import writes them) and each row becomes its locator:
        a row rewritten in place, smaller, would leave half-empty pages (``python -m
        bench.realstore_churn``: rows rewritten by ``store gc`` took the unused part of starlette's
        pages from 3.0% to 5.4% of its payload). Otherwise each row is updated in place.
        """
        for chunk in chunks([cid for cid, *_ in rewrites], SQL_PARAMS):
            self._release_many(chunk)
        if not (self._codec.compress and self.packs):
            self._record_x86(payload for _, _, encoding, payload, _ in rewrites if encoding in DELTA_ENCODINGS)
            self._conn.executemany("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?",
                                   [(encoding, payload, cid) for cid, _, encoding, payload, _ in rewrites])
            return
        blocks = {cid: block for cid, block, _, _, _ in rewrites}
        deltas = {cid: (payload, refs, len(payload)) for cid, _, encoding, payload, refs in rewrites
                  if encoding in DELTA_ENCODINGS}
        empty, packs = self._lay_out(blocks, deltas)
        self._conn.executemany("DELETE FROM blocks WHERE cid = ?", [(cid,) for cid in blocks])
        self._insert_packs(empty, packs, blocks, deltas, new=False)

    def reconcile_packs(self) -> int:
        """Recount every pack's live bytes from the rows that point to it and delete the packs no
        row points to; the packs deleted. For a sweep that deletes rows in bulk (``store gc``)
        rather than through :meth:`delete`, which keeps the counts as it goes."""
        self.flush()
        with self._transaction("recount packs"):
            live: dict[int, int] = {}
            for encoding, data, size in self._conn.execute(
                    "SELECT encoding, data, size FROM blocks WHERE encoding IN (?, ?)", PACKED_ENCODINGS):
                try:
                    pack = parse_locator(bytes(data), int(size)).pack
                except UndecodablePayload:
                    continue
                live[pack] = live.get(pack, 0) + int(size)
            packs = [int(pack) for (pack,) in self._conn.execute("SELECT pack FROM pack_usage")]
            self._conn.executemany("UPDATE pack_usage SET live = ? WHERE pack = ?",
                                   [(live.get(pack, 0), pack) for pack in packs])
            gone = self._delete_empty_packs()
        return gone

    def _move_packs(self, packs: dict[int, list[_Row]], loose: Sequence[_Row],
                    level: int, frame_bytes: int = COLD_FRAME_BYTES) -> tuple[list[int], int, int]:
        """Move the live rows of ``packs`` and the ``loose`` rows into new packs (``level``: cold ones
        in frames of ``frame_bytes``, :meth:`compact_packs`) and delete the old packs; ``(packs deleted, bytes of the loose rows,
        bytes of the new packs)``. A pack with a block that does not decode stays as it is, and
        so does a loose row that does not."""
        blocks: dict[bytes, bytes] = {}
        deltas: dict[bytes, tuple[bytes, tuple[bytes, ...], int]] = {}
        moved: list[int] = []
        rows: list[_Row] = []
        loose_bytes = 0
        try:
            for pack, group in [*packs.items(), *((0, [row]) for row in loose)]:
                try:
                    decoded = [self._decode_for_move(row, level) for row in group]
                except (BlockCorrupt, StoreError, UndecodablePayload):
                    continue
                for row, (block, delta) in zip(group, decoded, strict=True):
                    blocks[row[0]] = block
                    if delta is not None:
                        deltas[row[0]] = delta
                rows += group
                if pack:
                    moved.append(pack)
                else:
                    loose_bytes += len(group[0][2])
        except sqlite3.Error as e:
            raise self._fail(f"cannot read a pack: {e}") from None
        empty, new_packs = self._lay_out(blocks, deltas, level, frame_bytes)
        with self._transaction("compact packs"):
            for cid, _, data, _ in rows:
                if self._conn.execute("DELETE FROM blocks WHERE cid = ? AND data = ?", (cid, data)).rowcount != 1:
                    blocks.pop(cid)  # rewritten or deleted by another process meanwhile: not moved
            self._conn.executemany("DELETE FROM packs WHERE id = ?", [(pack,) for pack in moved])
            self._conn.executemany("DELETE FROM pack_usage WHERE pack = ?", [(pack,) for pack in moved])
            self._insert_packs(empty, new_packs, blocks, deltas, new=False, level=level)
        return moved, loose_bytes, sum(len(data) for data, _ in new_packs)

    def _decode_for_move(self, row: _Row, level: int) -> tuple[bytes, tuple[bytes, tuple[bytes, ...], int] | None]:
        """A row's block, checked, and if it is a delta its payload (made again at ``level`` if given)."""
        cid, encoding, data, size = row
        block = self._decode(cid, encoding, data, size)
        self._check(cid, block)
        if encoding not in DELTA_ENCODINGS:
            return block, None
        payload = self._segment(parse_locator(data, size)) if encoding == ENCODING_PACKED_DELTA else data
        header = self._resolved(read_header(payload))
        if level:
            refs = [self._reference(ref, header.depth) for ref in header.refs]
            # A delta that was smaller filtered when it was made stays filtered (one level-19
            # compression instead of two), in the newest form (a form-1 delta becomes form 2: it
            # is compressed again anyway); a plain one, maybe from before the filter, tries both.
            payload = encode_payload(block, header.refs, refs, header.depth, level, filtered=bool(header.x86_form))
        return block, (payload, header.refs, len(payload))

    def _packed_shares(self) -> dict[int, int]:
        """Bytes of the packs' segments that live rows use, by encoding: a packed row's payload is
        its segment, and blocks sharing a frame share it by size (a whole live frame counts whole)."""
        segments: dict[tuple[int, int, int, int], list[int]] = {}
        for encoding, data, size in self._conn.execute(
                "SELECT encoding, data, size FROM blocks WHERE encoding IN (?, ?)", PACKED_ENCODINGS):
            try:
                locator = parse_locator(bytes(data), int(size))
            except UndecodablePayload:
                continue
            key = (locator.pack, locator.offset, locator.length, locator.frame_size)
            segments.setdefault(key, [int(encoding), 0])[1] += int(size)
        shares: dict[int, int] = {}
        for (_, _, length, frame_size), (encoding, live) in segments.items():
            share = length * live // frame_size if frame_size and live < frame_size else length
            shares[encoding] = shares.get(encoding, 0) + share
        return shares
