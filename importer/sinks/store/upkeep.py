"""Upkeep of the store: deleting blocks, re-encoding them, counting them, verifying them.

:meth:`StoreUpkeep.delete_many` removes blocks thousands per transaction, first rewriting the
deltas that reference them (:mod:`.deltas`), and then rewrites the packs they left mostly dead
and gives the freed pages back (:mod:`.repack`, :mod:`.base`); ``store gc``
(:mod:`importer.sinks.gc`) decides what to remove. :meth:`StoreUpkeep.recompress` re-encodes
older rows as new ones are written now, :meth:`StoreUpkeep.stats` counts blocks and bytes (at
rest and on disk), and :meth:`StoreUpkeep.verify` re-reads every block.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final

from ...errors import BlockCorrupt, BlockNotFound, StoreError
from ..atrest import ENCODING_NAMES
from ..packs import ENCODING_PACKED
from .base import RECLAIM_FRACTION, SQL_PARAMS, chunks
from .deltas import StoreDeltas
from .reading import DELTA_ENCODINGS
from .records import BlockRow, DeleteReport, EncodingStats, StoreStats
from .schema import DB_NAME

#: Rows read, re-encoded and rewritten per transaction by :meth:`StoreUpkeep.recompress`: at most
#: 1000 x 256 KiB = 256 MiB held at once, and another writer waits for one chunk at most.
RECOMPRESS_ROWS: Final = 1000
#: Blocks removed per transaction by :meth:`StoreUpkeep.delete_many`. A removal only rewrites
#: b-tree and freelist pages (``python -m bench.perf_gc``: see its figures), so the batch is
#: bounded by how long another writer may wait for the lock, not by memory.
DELETE_ROWS: Final = 5000


class StoreUpkeep(StoreDeltas):
    """Deletes, re-encoding, statistics and verification of :class:`~importer.sinks.store.BlockStore`."""

    def delete(self, cid: bytes) -> bool:
        """Remove one block; True if it was there (see :meth:`delete_many`)."""
        if self._pending.pop(cid, None) is not None:
            self._staged.pop(cid, None)
            return True
        return self.delete_many([cid], reclaim=False).blocks > 0

    def delete_many(self, cids: Iterable[bytes], *, batch_rows: int = DELETE_ROWS,
                    reclaim: bool = True) -> DeleteReport:
        """Remove committed blocks, :data:`DELETE_ROWS` per transaction; what was removed.

        A delta that references a removed block and stays is first rewritten without it, in the
        same transaction (:meth:`_without_references`): against its other references and those
        of the removed block, if that is smaller than storing it plain (deleting the middle
        release of a chain then costs little), else plain. Pass deltas before the blocks they
        reference (``store gc`` does) so that no delta is rewritten only to be removed later.
        With ``reclaim``, the packs left more than half dead are rewritten (:meth:`compact_packs`)
        and the pages freed go back to the file system at the end (:meth:`reclaim_free_pages`).
        """
        self.flush()
        doomed = list(cids)
        everything = set(doomed)
        report = DeleteReport()
        for start in range(0, len(doomed), batch_rows):
            report += self._delete_batch(doomed[start:start + batch_rows], everything)
        if reclaim and report.blocks:
            self.compact_packs()  # the packs the removed blocks left more than half dead
            self.reclaim_free_pages()  # every free page, however few (compact_packs leaves a few)
        return report

    def _delete_batch(self, batch: Sequence[bytes], doomed: set[bytes]) -> DeleteReport:
        blocks = logical = payload = rewritten = 0
        with self._transaction("delete blocks"):
            dependents = self._referrers(batch)
            rewrites = []
            for dependent in sorted(dependents - doomed):
                try:
                    header = self._delta_header(dependent)
                    if header is None or doomed.isdisjoint(header.refs):
                        continue  # a reference's key shared by chance (schema 11): nothing to do
                    block, encoding, data, refs = self._without_references(dependent, header, doomed)
                except BlockCorrupt:
                    continue  # damaged already, and left for `store verify` to report
                rewrites.append((dependent, block, encoding, data, refs))
                rewritten += 1
            # The rows of the rewritten and of the doomed at once (schema 11: one scan for both).
            self._drop_delta_refs([r[0] for r in rewrites], doomed=batch)
            for dependent, _, _, _, refs in rewrites:
                if refs:
                    self._add_delta_refs(dependent, refs)
            if rewrites:
                self._rewrite_rows(rewrites)
            for chunk in chunks(batch, SQL_PARAMS):
                marks = ", ".join("?" * len(chunk))
                rows = self._conn.execute(f"SELECT {self._STORED_COLUMNS} FROM blocks WHERE cid IN ({marks})",
                                          chunk).fetchall()
                self._release_many(chunk)
                self._conn.execute(f"DELETE FROM blocks WHERE cid IN ({marks})", chunk)
                blocks += len(rows)
                logical += sum(int(row[1]) for row in rows)
                payload += sum(self._stored_of(int(e), int(n), int(length), loc) for e, n, length, loc in rows)
        for cid in (*batch, *dependents):  # the cache must not serve a removed or rewritten block
            self._forget_reference(cid)
        return DeleteReport(blocks, logical, payload, rewritten)

    def iter_rows(self, *, chunk_rows: int = DELETE_ROWS) -> Iterator[BlockRow]:
        """Every committed block's CID, encoding, logical size and payload size, read in chunks
        (:meth:`_row_chunks`: a caller may write between them)."""
        for rows in self._row_chunks(f"cid, {self._STORED_COLUMNS}", chunk_rows, "list blocks"):
            for cid, encoding, size, length, locator in rows:
                yield BlockRow(bytes(cid), int(encoding), int(size),
                               self._stored_of(int(encoding), int(size), int(length), locator))

    def payload_bytes(self, cids: Iterable[bytes]) -> int:
        """Bytes the committed blocks ``cids`` take at rest (their payloads, as stored now)."""
        total = 0
        try:
            for chunk in chunks(list(cids), SQL_PARAMS):
                total += sum(self._stored_of(int(e), int(n), int(length), loc) for e, n, length, loc in self._conn.execute(
                    f"SELECT {self._STORED_COLUMNS} FROM blocks WHERE cid IN ({', '.join('?' * len(chunk))})", chunk))
        except sqlite3.Error as e:
            raise self._fail(f"cannot read blocks: {e}") from None
        return total

    def recompress(self, *, chunk_rows: int = RECOMPRESS_ROWS) -> tuple[int, int]:
        """Re-encode committed blocks as new ones are written now; ``(rows rewritten, bytes saved)``.

        Raw blocks of an older store get compressed and small blocks move to the newest
        dictionary (one is trained first if the store has none). A row is rewritten only if
        its payload shrinks, and only after the block decoded and matched its CID (damaged rows
        are left for ``store verify``). Safe beside other writers: every encoding of a block is
        valid and dictionaries are never deleted, so whichever rewrite lands last is sound.
        Freed pages are reused by later writes; the file shrinks only with ``VACUUM``.
        """
        self.flush()
        if not self._codec.compress:
            return 0, 0
        if not self.dictionaries():
            self.train()
        self._refresh_dictionary()
        rewritten = saved = 0
        for rows in self._row_chunks("cid, encoding, data, size", chunk_rows, "read blocks"):
            updates = []
            for cid, encoding, data, size in rows:
                if int(encoding) in DELTA_ENCODINGS or int(encoding) == ENCODING_PACKED:
                    continue  # a delta or a packed block: alone in a row it would only be larger
                cid, data = bytes(cid), bytes(data)
                try:
                    block = self._decode(cid, int(encoding), data, int(size))
                    self._check(cid, block)
                except (BlockCorrupt, StoreError):
                    continue
                new_encoding, payload = self._encode(block)
                if len(payload) < len(data):
                    updates.append((new_encoding, payload, cid))
                    saved += len(data) - len(payload)
            if updates:
                with self._transaction("rewrite blocks"):
                    self._conn.executemany("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?", updates)
                rewritten += len(updates)
        if rewritten:
            self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)
        return rewritten, saved

    def verify(self, on_sound: Callable[[bytes, bytes], None] | None = None) -> Iterator[tuple[bytes, str | None]]:
        """Re-hash every committed block; yield ``(cid, None)`` if sound, else ``(cid, reason)``.

        Blocks come in the order they were stored, so a delta's references were read (and are
        in the reference cache) just before it: on 10 numpy wheels' store (1,542 deltas) that
        took the pass from 8.3 to 3.8 s against CID order. ``on_sound(cid, block)`` sees every
        sound block's bytes (``store verify`` reads their links from it, so no block is read twice).
        """
        for cid in self.cids_in_written_order():
            try:
                block = self.get(cid)
                if on_sound is not None:
                    on_sound(cid, block)
            except (BlockCorrupt, StoreError) as e:
                yield cid, e.reason if isinstance(e, StoreError) else str(e)
            except BlockNotFound:
                continue  # deleted by another process since the listing started
            else:
                yield cid, None

    def stats(self) -> StoreStats:
        """Block count, logical and stored bytes (per encoding too), dictionaries and the files' size."""
        try:
            rows = self._conn.execute(
                "SELECT encoding, count(*), sum(size), sum(length(data)) FROM blocks GROUP BY encoding ORDER BY encoding"
            ).fetchall()
            dictionaries, dictionary_bytes = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM dictionaries").fetchone() \
                if self._has_table("dictionaries") else (0, 0)
            packs, pack_bytes = self._conn.execute(
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM packs").fetchone()
            shares = self._packed_shares()
        except sqlite3.Error as e:
            raise self._fail(f"cannot compute stats: {e}") from None
        encodings = tuple(EncodingStats(ENCODING_NAMES.get(int(e), str(e)), int(n), int(logical),
                                        shares.get(int(e), int(stored)))
                          for e, n, logical, stored in rows)
        live = sum(shares.values())
        disk = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                disk += (self.path / (DB_NAME + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return StoreStats(sum(e.blocks for e in encodings), sum(e.logical_bytes for e in encodings),
                          sum(e.stored_bytes for e in encodings) - live + int(pack_bytes), disk, encodings,
                          int(dictionaries), int(dictionary_bytes), self.compression, int(packs), int(pack_bytes),
                          max(0, int(pack_bytes) - live))
