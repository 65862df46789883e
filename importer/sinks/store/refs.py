"""Who references whom: the ``delta_refs`` index of the store's deltas, kept exact in what it must say.

A delta (:mod:`.deltas`) is read through its references, so the store must know, before it
deletes a block, which deltas reference it (they are rewritten without it first), and before it
makes a block a delta, whether some delta references that block (it would deepen past its
referrer). ``delta_refs`` holds a row per (reference, delta). What it must never do is miss a
pair; naming a pair that is not there only costs work, since every decision it feeds is checked
against the delta's own header, which names its references (by CID, or since schema 11 by a
CID's first bytes, :func:`~importer.sinks.delta.short_ref`, which the store resolves).

Two layouts, read from the table (:func:`~.schema.delta_refs_keyed`):

* schemas 4-10: both blocks by CID, 72 bytes of CIDs a row;
* schema 11 (:data:`~.schema.DELTA_REF_KEYS_SCHEMA`), a store's first delta makes it: both by
  :func:`~.schema.ref_key`, 6 bytes each. A key shared by chance makes a block look referenced
  (it is not made a delta) or a delta look like a dependent (its header says otherwise and it is
  left alone). The deltas behind a dependent's key are found by a scan of the delta rows
  (:meth:`StoreRefs._deltas_with_keys`), which only deletes need; and rows dropped by a key
  another live delta shares are written again from that delta's header.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from ...errors import BlockCorrupt
from .base import SQL_PARAMS, chunks
from .reading import DELTA_ENCODINGS, StoreReader
from .schema import DELTA_REF_KEYS_SCHEMA, delta_refs_keyed, raise_schema, ref_key


class StoreRefs(StoreReader):
    """``delta_refs`` of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def _refs_keyed(self) -> bool | None:
        """Whether ``delta_refs`` names blocks by key (schema 11) or CID; None: no table yet."""
        if self._keyed_refs is None and self._has_table("delta_refs"):
            self._keyed_refs = delta_refs_keyed(self._conn)
        return self._keyed_refs

    def _name(self, cid: bytes) -> bytes | int:
        """How ``delta_refs`` names ``cid`` (the table exists)."""
        return ref_key(cid) if self._keyed_refs else cid

    def _referenced(self, cid: bytes) -> bool:
        """Whether a delta may reference ``cid`` (a key shared by chance answers yes: never a miss)."""
        return self._refs_keyed() is not None and self._conn.execute(
            "SELECT 1 FROM delta_refs WHERE ref = ? LIMIT 1", (self._name(cid),)).fetchone() is not None

    def _referrers(self, refs: Sequence[bytes]) -> set[bytes]:
        """The deltas that may reference one of ``refs``: every one that does, and by a shared key
        (schema 11) rarely one that does not, which the caller tells by the delta's header."""
        if self._refs_keyed() is None:
            return set()
        found = self._select_in("SELECT DISTINCT cid FROM delta_refs WHERE ref IN ({})", map(self._name, refs))
        if not self._keyed_refs:
            return {bytes(c) for c in found}
        return {cid for cids in self._deltas_with_keys({int(k) for k in found}).values() for cid in cids}

    def _add_delta_refs(self, cid: bytes, refs: Sequence[bytes]) -> None:
        """Inside a write transaction, with every delta row written: record that the delta ``cid``
        references ``refs`` (CIDs). The store is raised to schema 11 first, whose delta headers
        name references short (:func:`~importer.sinks.delta.short_ref`), and a store without the
        table makes it keyed."""
        raise_schema(self._conn, DELTA_REF_KEYS_SCHEMA)
        if self._refs_keyed() is None:
            self._create_table("delta_refs")
            self._keyed_refs = True
        self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)",
                               [(self._name(ref), self._name(cid)) for ref in refs])

    def _drop_delta_refs(self, cids: Collection[bytes], *, doomed: Collection[bytes] = ()) -> None:
        """Inside a write transaction: forget what the deltas ``cids`` reference (they are being
        rewritten, and add their new references after) and everything about the blocks ``doomed``
        (they are being deleted). Rows that name a doomed block as a reference go only where a
        reference is its CID; with keys such a row may be another block's that shares the key,
        and stays (a reference's dependents are rewritten, and so dropped, before it goes)."""
        keyed = self._refs_keyed()
        gone = {*cids, *doomed}
        if keyed is None or not gone:
            return
        if not keyed:
            self._delete_in("cid", list(gone))
            self._delete_in("ref", list(doomed))
            return
        present = {int(k) for k in self._select_in("SELECT DISTINCT cid FROM delta_refs WHERE cid IN ({})",
                                                    {ref_key(cid) for cid in gone})}
        if not present:
            return
        self._delete_in("cid", sorted(present))
        # Another live delta with one of those keys lost its rows too: written again from its header.
        for sharing in self._deltas_with_keys(present).values():
            for other in sharing:
                if other in gone:
                    continue
                try:
                    header = self._delta_header(other)
                except BlockCorrupt:
                    continue  # damaged: `store verify` reports it, and nothing can say what it references
                if header is not None:
                    self._add_delta_refs(other, header.refs)

    def _delete_in(self, column: str, values: Sequence[bytes | int]) -> None:
        for part in chunks(values, SQL_PARAMS):
            self._conn.execute(f"DELETE FROM delta_refs WHERE {column} IN ({', '.join('?' * len(part))})", part)

    def _deltas_with_keys(self, keys: Collection[int]) -> dict[int, list[bytes]]:
        """The CIDs of the delta rows whose :func:`ref_key` is in ``keys``: a scan of the block rows
        (their leading columns only), which a delete makes at most twice a batch."""
        found: dict[int, list[bytes]] = {}
        if not keys:
            return found
        for (cid,) in self._conn.execute("SELECT cid FROM blocks WHERE encoding IN (?, ?)", DELTA_ENCODINGS):
            key = ref_key(bytes(cid))
            if key in keys:
                found.setdefault(key, []).append(bytes(cid))
        return found

    def _select_in(self, sql: str, values: Iterable[bytes | int]) -> list[bytes | int]:
        """The first column of ``sql`` (with one ``IN ({})``) over ``values``, in chunks of parameters."""
        out: list[bytes | int] = []
        for part in chunks(list(values), SQL_PARAMS):
            out.extend(row[0] for row in self._conn.execute(sql.format(", ".join("?" * len(part))), part))
        return out
