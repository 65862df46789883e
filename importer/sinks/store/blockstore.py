"""The embedded block store, assembled: :class:`BlockStore` and the attempts memo it keeps.

Attempts (``attempts`` table): rows of the compressor search's memo of process-starting attempts
(:mod:`importer.compress.memo`), opaque here. :meth:`BlockStore.record_attempts` rewrites a row
to make it the newest and keeps only the newest ``keep`` rows; :meth:`BlockStore.load_attempts`
reads the newest. Being a cache, the table was added to schema 4 without a version bump: schema-4
code that predates it never reads it. Since schema 8 a new store makes it on the first record
(:data:`~importer.sinks.store.schema.LAZY_TABLES`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .pushed import PushedRoots
from .roots import StoreRoots
from .upkeep import StoreUpkeep


class BlockStore(StoreUpkeep, StoreRoots, PushedRoots):
    """A durable block store in one SQLite file; a :class:`BlockSink` and a :class:`BlockSource`.

    Puts are buffered in memory and committed in one transaction per
    :data:`~importer.sinks.store.base.BATCH_BYTES`, at :meth:`flush` and at :meth:`close`.
    Leaving a ``with`` block by an exception drops the uncommitted batch (what is committed
    stays: every committed block is whole and valid). The first write takes the collector lock
    shared (:mod:`importer.sinks.lock`) and :meth:`close` drops it: a process that keeps a store
    open between imports holds up ``store gc`` meanwhile. Its layers, one role each, are listed
    in :mod:`importer.sinks.store.base`; the roots (:mod:`.roots`) and the pushed roots
    (:mod:`.pushed`) are parts of it too.
    """

    def load_attempts(self, limit: int) -> list[tuple[bytes, bytes]]:
        """The newest ``limit`` rows of the attempts memo as (key, value), newest first."""
        try:
            if not self._has_table("attempts"):
                return []
            rows = self._conn.execute("SELECT key, value FROM attempts ORDER BY rowid DESC LIMIT ?",
                                      (limit,)).fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the attempts memo: {e}") from None
        return [(bytes(key), bytes(value)) for key, value in rows]

    def record_attempts(self, rows: Iterable[tuple[bytes, bytes]], keep: int) -> None:
        """Write memo rows as the newest (replacing a row of the same key), then delete all but the
        newest ``keep`` rows, in one transaction."""
        with self._transaction("record the attempts memo"):
            self._create_table("attempts")
            self._conn.executemany("INSERT OR REPLACE INTO attempts (key, value) VALUES (?, ?)", rows)
            self._conn.execute("DELETE FROM attempts WHERE rowid IN "
                               "(SELECT rowid FROM attempts ORDER BY rowid DESC LIMIT -1 OFFSET ?)", (keep,))
