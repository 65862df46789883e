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

from ...errors import BlockCorrupt, StoreError
from ..atrest import UndecodablePayload
from ..delta import read_header
from ..packs import ENCODING_PACKED_DELTA, Locator, parse_locator
from .base import RECLAIM_FRACTION
from .reading import PACKED_ENCODINGS
from .writing import StoreWriter


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

    def compact_packs(self, *, below: float = 0.5, level: int = 0) -> tuple[int, int]:
        """Rewrite the packs whose live blocks are less than ``below`` of what was placed in them;
        ``(packs rewritten, bytes freed)``. Each pack's live blocks are decoded, checked and laid
        out into new packs (delta payloads as they were), and the rows moved and the old pack
        deleted in one transaction. A pack with a damaged block is left for ``store verify``.

        With ``level``, every pack made at a lower level is rewritten too, its frames compressed
        at that zstd level (``store optimize --level 19``: blocks written once and read rarely
        cost less, and read as fast, since zstd decodes at the same speed whatever the level).
        """
        self.flush()
        if not self._codec.compress:
            return 0, 0
        try:
            wanted = {int(pack): int(length) for pack, length in self._conn.execute(
                "SELECT id, length(data) FROM packs JOIN pack_usage ON pack = id"
                " WHERE live < logical * ? OR level < ?", (below, level))}
            rows: dict[int, list[tuple[bytes, int, bytes, int, Locator]]] = {pack: [] for pack in wanted}
            if wanted:
                for cid, encoding, data, size in self._conn.execute(
                        "SELECT cid, encoding, data, size FROM blocks WHERE encoding IN (?, ?)", PACKED_ENCODINGS):
                    try:
                        locator = parse_locator(bytes(data), int(size))
                    except UndecodablePayload:
                        continue
                    if locator.pack in rows:
                        rows[locator.pack].append((bytes(cid), int(encoding), bytes(data), int(size), locator))
        except sqlite3.Error as e:
            raise self._fail(f"cannot list packs: {e}") from None
        rewritten = freed = 0
        for pack, length in wanted.items():
            written = self._move_pack(pack, rows[pack], level)
            if written is not None:
                rewritten += 1
                freed += length - written
        if rewritten:
            self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)  # the old packs' pages
        return rewritten, freed

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

    def _move_pack(self, pack: int, rows: Sequence[tuple[bytes, int, bytes, int, Locator]], level: int) -> int | None:
        """Move ``rows`` (the live blocks of ``pack``) into new packs and delete it; the new packs' bytes."""
        blocks: dict[bytes, bytes] = {}
        deltas: dict[bytes, tuple[bytes, tuple[bytes, ...], int]] = {}
        try:
            for cid, encoding, data, size, locator in rows:
                block = self._decode(cid, encoding, data, size)
                self._check(cid, block)
                blocks[cid] = block
                if encoding == ENCODING_PACKED_DELTA:
                    payload = self._segment(locator)
                    deltas[cid] = (payload, read_header(payload).refs, len(payload))
        except (BlockCorrupt, StoreError, UndecodablePayload):
            return None
        except sqlite3.Error as e:
            raise self._fail(f"cannot read a pack: {e}") from None
        empty, packs = self._lay_out(blocks, deltas, level)
        with self._transaction("compact a pack"):
            for cid, _, data, _, _ in rows:
                if self._conn.execute("DELETE FROM blocks WHERE cid = ? AND data = ?", (cid, data)).rowcount != 1:
                    blocks.pop(cid)  # rewritten or deleted by another process meanwhile: not moved
            self._conn.execute("DELETE FROM packs WHERE id = ?", (pack,))
            self._conn.execute("DELETE FROM pack_usage WHERE pack = ?", (pack,))
            self._insert_packs(empty, packs, blocks, deltas, new=False, level=level)
        return sum(len(data) for data, _ in packs)

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
