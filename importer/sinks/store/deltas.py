"""Deltas in the store: blocks stored as zstd frames made against other blocks, and kept readable.

:meth:`StoreDeltas.delta_encode` stores a block as a delta (:mod:`importer.sinks.delta`: encoding
3 in a row of its own, 5 in a pack) against other committed blocks (the leaves of the same file
in the previous release, chosen by :mod:`importer.archive.delta`). Three rules keep every block
readable: a delta's depth is one more than its deepest reference's and at most
:data:`~importer.sinks.delta.MAX_DEPTH`, and every read checks that a reference is shallower than
its referrer, so references can never form a cycle; a block that a delta references is never
itself made a delta (that could deepen it past its referrer); and the ``delta_refs`` table lists
who references whom, so a delete first rewrites a deleted block's dependents without it
(:meth:`StoreDeltas._without_references`). Since schema 11 a reference is listed by a key of its
CID (:func:`~importer.sinks.store.schema.ref_key`): a key shared by chance makes a block look
referenced (it is not made a delta) or a delta look dependent (its header says it is not, and it
is left alone), never the other way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Container, Iterable, Sequence
from typing import Final

from ...errors import BlockCorrupt, StoreError
from ..atrest import ENCODING_DELTA, UndecodablePayload
from ..delta import MAX_DEPTH, MAX_REFS, DeltaHeader, encode_payload, read_header, with_depth
from .base import RECLAIM_FRACTION
from .reading import DELTA_ENCODINGS
from .repack import StorePacks

#: Delta candidates encoded per transaction by :meth:`StoreDeltas.delta_encode`: at most
#: 1000 x 256 KiB = 256 MiB held at once, and another writer waits for one chunk at most.
DELTA_ROWS: Final = 1000


class StoreDeltas(StorePacks):
    """Deltas of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def delta_encode(self, candidates: Iterable[tuple[bytes, Sequence[bytes]]], *,
                     chunk_rows: int = DELTA_ROWS, only_buffered: Container[bytes] = ()) -> tuple[int, int]:
        """Store blocks as deltas against others; ``(rows rewritten, bytes saved)``.

        ``candidates`` are ``(cid, reference CIDs)`` pairs (:func:`importer.archive.delta.plan_deltas`).
        A block is rewritten only if it is committed and not already a delta, no delta references
        it, every reference is committed and shallower than :data:`~importer.sinks.delta.MAX_DEPTH`,
        the block and its references decode and match their CIDs, and the delta is smaller than
        the payload it replaces. Nothing happens in a store that does not compress.

        A candidate still buffered (the archive just imported, before :meth:`flush`) is decided
        before its first write: the delta is what the write stores (:meth:`_stage`), so no row
        is written plainly and then rewritten smaller, which would leave its pages free. The
        others (blocks committed by an earlier batch) are rewritten in place, and the packs
        they leave half dead are compacted (:meth:`compact_packs`); those in ``only_buffered``
        are left as they are.
        """
        if not self._codec.compress:
            self.flush()
            return 0, 0
        committed: list[tuple[bytes, Sequence[bytes]]] = []
        for cid, refs in candidates:
            if (cid not in self._pending or not self._stage(cid, refs)) and cid not in only_buffered:
                committed.append((cid, refs))
        self._staged_done = (0, 0)
        self.flush()
        rewritten, saved = self._staged_done
        batch: list[tuple[bytes, Sequence[bytes]]] = []
        for candidate in committed:
            batch.append(candidate)
            if len(batch) >= chunk_rows:
                done = self._delta_batch(batch)
                rewritten, saved, batch = rewritten + done[0], saved + done[1], []
        done = self._delta_batch(batch)
        if committed:
            self.compact_packs()
        if done[0] or rewritten:
            self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)
        return rewritten + done[0], saved + done[1]

    def _stage(self, cid: bytes, refs: Sequence[bytes]) -> bool:
        """Decide whether the buffered block ``cid`` is written as a delta; False if it is committed
        already (an earlier batch or another process wrote it: :meth:`delta_encode` rewrites it).

        A reference may be buffered too (a sibling in the same archive,
        :func:`importer.archive.delta.plan_deltas`), even one staged as a delta itself: its depth
        is then the staged one, and it is written before the delta (:meth:`_insert_packs`). A
        block that a staged delta references is not made a delta after it, so no delta's depth
        is ever below its references'."""
        if not refs or len(refs) > MAX_REFS or cid in refs or cid in self._staged_refs:
            return True
        try:
            if self._conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone() is not None:
                return False
            depth = max(self._staged_depth(ref) for ref in refs)
            if depth + 1 > MAX_DEPTH:
                return True
            # A reference neither buffered nor in the store raises UndecodablePayload here.
            ref_blocks = [self._pending[ref] if ref in self._pending else self._reference(ref, MAX_DEPTH + 1)
                          for ref in refs]
        except (BlockCorrupt, StoreError, UndecodablePayload):
            return True  # damaged references are left for `store verify` to report
        except sqlite3.Error as e:
            raise self._fail(f"cannot read blocks: {e}") from None
        block = self._pending[cid]
        # What the block would take in a pack: its own frame at the packs' level (a block that
        # would share a frame takes a little less there).
        plain = len(self._codec.encode(block, self._large_compressor())[1])
        payload = encode_payload(block, refs, ref_blocks, depth + 1)
        if len(payload) < plain:
            self._staged[cid] = (payload, tuple(refs), plain)
            self._staged_refs.update(refs)
        return True

    def _staged_depth(self, ref: bytes) -> int:
        """The delta depth of ``ref``: as staged if it is, else as committed (0 for a plain block,
        committed or buffered)."""
        staged = self._staged.get(ref)
        return read_header(staged[0]).depth if staged is not None else self._depth_of([ref])

    def _delta_batch(self, batch: Sequence[tuple[bytes, Sequence[bytes]]]) -> tuple[int, int]:
        updates: list[tuple[bytes, bytes, tuple[bytes, ...], bytes, int, bytes]] = []
        for cid, refs in batch:
            made = self._delta_of(cid, refs)
            if made is not None:
                updates.append((cid, *made))
        if not updates:
            return 0, 0
        rewritten = saved = 0
        with self._transaction("store deltas"):
            rewrites = []
            depths: dict[bytes, int] = {}  # of the deltas made in this batch (written at its end)
            for cid, payload, refs, old_data, old_length, block in updates:
                # Re-checked under the write lock: another process may have deleted a
                # reference, made the block a delta or referenced it since it was read.
                referenced = self._referenced(cid)
                present = self._conn.execute(
                    f"SELECT count(*) FROM blocks WHERE cid IN ({', '.join('?' * len(refs))})", tuple(refs)).fetchone()
                if referenced or int(present[0]) != len(set(refs)):
                    continue
                # Depths as committed now, or as made earlier in this batch.
                try:
                    depth = 1 + max([self._depth_of([ref for ref in refs if ref not in depths]),
                                     *(depths[ref] for ref in refs if ref in depths)])
                except UndecodablePayload:
                    continue  # a reference damaged meanwhile: `store verify` reports it
                if depth > MAX_DEPTH:
                    continue
                if depth != read_header(payload).depth:
                    payload = with_depth(payload, depth)
                # Only if the row is as it was read (not rewritten by another process since).
                if self._conn.execute("SELECT 1 FROM blocks WHERE cid = ? AND data = ?",
                                      (cid, old_data)).fetchone() is None:
                    continue
                self._add_delta_refs(cid, refs)
                rewrites.append((cid, block, ENCODING_DELTA, payload, refs))
                depths[cid] = depth
                rewritten += 1
                saved += old_length - len(payload)
            if rewrites:
                self._rewrite_rows(rewrites)
        return rewritten, saved

    def _delta_of(self, cid: bytes, refs: Sequence[bytes]) -> tuple[bytes, tuple[bytes, ...], bytes, int, bytes] | None:
        """``(payload, refs, the row's data now, the payload length it replaces, the block)`` if a delta
        of ``cid`` pays."""
        if not refs or len(refs) > MAX_REFS or cid in refs:
            return None
        try:
            row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
            if row is None or int(row[0]) in DELTA_ENCODINGS:
                return None
            if self._referenced(cid):
                return None  # a delta's depth must stay above its references': never deepen one
            depth = self._depth_of(refs)
            if depth + 1 > MAX_DEPTH:
                return None
            data = bytes(row[1])
            block = self._decode(cid, int(row[0]), data, int(row[2]))
            self._check(cid, block)
            # A missing reference raises UndecodablePayload here, like a damaged one.
            ref_blocks = [self._reference(ref, MAX_DEPTH + 1) for ref in refs]
        except (BlockCorrupt, StoreError, UndecodablePayload):
            return None  # damaged rows are left for `store verify` to report
        except sqlite3.Error as e:
            raise self._fail(f"cannot read blocks: {e}") from None
        payload = encode_payload(block, refs, ref_blocks, depth + 1)
        replaced = self._payload_length(int(row[0]), data, int(row[2]))
        return (payload, tuple(refs), data, replaced, block) if len(payload) < replaced else None

    def _without_references(self, cid: bytes, header: DeltaHeader,
                            doomed: set[bytes]) -> tuple[bytes, int, bytes, tuple[bytes, ...]]:
        """``(block, encoding, payload, references)`` for the committed delta ``cid`` (its ``header``,
        references resolved, :meth:`_delta_header`) that use no block of ``doomed``.

        A delta whose references include doomed blocks is re-made against its other references
        plus the references of those doomed blocks that are deltas themselves (the release
        before the one removed), at most :data:`~importer.sinks.delta.MAX_REFS`; its depth can
        only drop, since those are shallower than what they replace, so no delta that references
        this one becomes unreadable. Kept only if smaller than the plain encoding.
        """
        block = self.get(cid)  # decoded while its references are all still there
        plain_encoding, plain = self._codec.encode(block)
        spliced: list[bytes] = []
        for ref in header.refs:
            if ref not in doomed:
                spliced.append(ref)
                continue
            ref_header = self._delta_header(ref)
            if ref_header is not None:
                spliced.extend(r for r in ref_header.refs if r not in doomed)
        refs = tuple(dict.fromkeys(spliced))[:MAX_REFS]
        if refs:
            try:
                depth = 1 + self._depth_of(refs)
                if depth <= MAX_DEPTH:
                    delta = encode_payload(block, refs, [self._reference(r, MAX_DEPTH + 1) for r in refs], depth)
                    if len(delta) < len(plain):
                        return block, ENCODING_DELTA, delta, refs
            except UndecodablePayload:
                pass  # a reference damaged or gone: plain it is
        return block, plain_encoding, plain, ()
