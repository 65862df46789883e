"""Compression settings and dictionaries: how new blocks are compressed, and the store's trained zstd dictionaries.

Compression at rest (:mod:`importer.sinks.atrest`): each row has an ``encoding`` column (0 = the
block as is, 1 = a zstd frame, 2 = a zstd frame made with one of the store's trained dictionaries,
kept in the ``dictionaries`` table). The CID is always that of the uncompressed block, and every
read decompresses and then hashes: a payload that does not decompress is as corrupt as one that
hashes wrong. Blocks that do not shrink by at least 3% stay raw. Whether new blocks are compressed
is the store's ``meta.compression`` setting (``zstd`` or ``none``; default
:data:`~importer.sinks.store.schema.DEFAULT_COMPRESSION`), overridden for one process by
``$DPIP_STORE_COMPRESSION`` or the ``compression`` argument; reading never depends on it.

Dictionaries: once :data:`~importer.sinks.store.base.TRAIN_AFTER` small blocks (< 16 KiB) have
been committed without a dictionary, the committing process trains one on the newest small
blocks (zstd's trainer, about a second) and adds it in its own short transaction; later small
blocks use the newest dictionary. The next one is trained after 4x as many more small blocks, so
their count grows with the logarithm of the store. Dictionaries are never deleted, so a row's
dictionary is always there to read it. Since schema 13 a dictionary is stored as one zstd frame
of itself (:func:`~importer.sinks.atrest.stored_dictionary`, about a third of its size;
:data:`~importer.sinks.store.schema.DICTIONARY_FRAMES_SCHEMA`), and ``store optimize`` stores
older ones so (:meth:`StoreDictionaries.compress_dictionaries`). Two processes may both decide
to train: the insert re-checks the trigger under the write lock and assigns the ID there
(``max(id) + 1``), so the slower one drops its dictionary instead of adding a duplicate, and IDs
stay unique. Until a
store writing packs has trained one, it uses the dictionary the package ships
(:data:`~importer.sinks.atrest.SHIPPED_DICTIONARY`).
"""

from __future__ import annotations

import heapq
import sqlite3
import time
from typing import Final

from ...errors import BlockCorrupt, StoreError
from ..atrest import (
    SHIPPED_ID,
    SMALL_BLOCK,
    Dictionary,
    UndecodablePayload,
    is_stored_frame,
    loaded_dictionary,
    shipped_dictionary,
    stored_dictionary,
    train_dictionary,
    with_dict_id,
)
from .base import COMPRESSIONS
from .refs import StoreRefs
from .schema import DICTIONARY_FRAMES_SCHEMA, MiB, raise_schema

#: Each later dictionary waits for this many times the previous wait.
TRAIN_GROWTH: Final = 4
#: Training samples: the newest small blocks, up to this many of them and this many bytes
#: (8 MiB = 128x the largest dictionary; the trainer takes about a second on it here).
SAMPLE_BLOCKS: Final = 4000
SAMPLE_BYTES: Final = 8 * MiB
#: The ``meta`` key counting small blocks committed since the newest dictionary.
SMALL_COUNTER: Final = "small_blocks_since_dictionary"


class StoreDictionaries(StoreRefs):
    """Compression settings and dictionaries of :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def set_compression(self, compression: str) -> None:
        """Record how new blocks of this store are written (``zstd`` or ``none``), for every process."""
        if compression not in COMPRESSIONS:
            raise self._fail(f"unknown compression {compression!r} (choose from {', '.join(COMPRESSIONS)})")
        self.flush()
        try:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES ('compression', ?)", (compression,))
        except sqlite3.Error as e:
            raise self._fail(f"cannot write settings: {e}") from None
        self.compression = compression
        self._codec.compress = compression == "zstd"

    def _refresh_dictionary(self) -> None:
        """Compress small blocks with the newest dictionary, whichever process trained it; a store
        writing packs that has trained none uses the one the package ships
        (:data:`~importer.sinks.atrest.SHIPPED_DICTIONARY`)."""
        if not self._codec.compress:
            return
        row = None
        if self._has_table("dictionaries"):
            row = self._conn.execute("SELECT id, data FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
        if row is not None and int(row[0]) != self._codec.dictionary_id:
            self._codec.use_dictionary(int(row[0]), self._loaded(int(row[0]), bytes(row[1])))
        elif row is None and self.packs and self._codec.dictionary_id != SHIPPED_ID:
            shipped = shipped_dictionary()
            if shipped is not None:
                self._codec.use_dictionary(SHIPPED_ID, shipped)

    def _due_for_training(self) -> bool:
        """Have :attr:`train_after` x 4^(dictionaries) small blocks come in since the newest one?"""
        try:
            count = self._dictionary_count()
            since = int(self._meta(SMALL_COUNTER) or 0)
        except sqlite3.Error as e:
            raise self._fail(f"cannot read settings: {e}") from None
        return bool(since >= self.train_after * TRAIN_GROWTH ** int(count))

    def _dictionary_count(self) -> int:
        """How many dictionaries the store has trained."""
        if not self._has_table("dictionaries"):
            return 0
        return int(self._conn.execute("SELECT count(*) FROM dictionaries").fetchone()[0])

    def _count_small(self, added: int) -> None:
        """Inside a write transaction: ``added`` more small blocks towards the next dictionary."""
        if added > 0:
            self._conn.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = CAST(value AS INTEGER) + excluded.value", (SMALL_COUNTER, added))

    def dictionaries(self) -> list[Dictionary]:
        """Every dictionary of the store, oldest first."""
        if not self._has_table("dictionaries"):
            return []
        try:
            rows = self._conn.execute("SELECT id, data, trained_at, samples FROM dictionaries ORDER BY id").fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read dictionaries: {e}") from None
        return [Dictionary(int(r[0]), self._loaded(int(r[0]), bytes(r[1])), float(r[2]), int(r[3])) for r in rows]

    def _loaded(self, dict_id: int, row: bytes) -> bytes:
        """The dictionary a row holds (plain, or a frame of it since schema 13); a damaged one is a StoreError."""
        try:
            return loaded_dictionary(row)
        except UndecodablePayload as e:
            raise self._fail(f"dictionary {dict_id} is damaged: {e}") from None

    def compress_dictionaries(self) -> int:
        """Store each dictionary kept plain (before schema 13) as a frame of itself; the bytes saved.
        Each row is checked to give its dictionary back before it replaces the plain one."""
        if not self._has_table("dictionaries"):
            return 0
        try:
            rows = self._conn.execute("SELECT id, data FROM dictionaries").fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read dictionaries: {e}") from None
        saved = 0
        for dict_id, data in rows:
            plain = bytes(data)
            if is_stored_frame(plain):
                continue
            try:
                stored = stored_dictionary(loaded_dictionary(plain))  # a damaged row stays as it is
                if stored == plain or loaded_dictionary(stored) != plain:
                    continue
            except UndecodablePayload:
                continue
            with self._transaction("compress a dictionary"):
                raise_schema(self._conn, DICTIONARY_FRAMES_SCHEMA)
                if self._conn.execute("UPDATE dictionaries SET data = ? WHERE id = ? AND data = ?",
                                      (stored, int(dict_id), plain)).rowcount == 1:
                    saved += len(plain) - len(stored)
        return saved

    def _samples(self) -> list[bytes]:
        """The newest small blocks, decoded and checked, up to :data:`SAMPLE_BLOCKS` / :data:`SAMPLE_BYTES`."""
        samples: list[bytes] = []
        total = 0
        if self._blocks_rowid:
            rows = self._conn.execute(
                "SELECT cid, encoding, data, size FROM blocks WHERE size > 0 AND size < ? ORDER BY rowid DESC LIMIT ?",
                (SMALL_BLOCK, SAMPLE_BLOCKS)).fetchall()
        else:  # newest by where they were written (the rows are small: locators)
            rows = heapq.nlargest(SAMPLE_BLOCKS, self._conn.execute(
                "SELECT cid, encoding, data, size FROM blocks WHERE size > 0 AND size < ?", (SMALL_BLOCK,)),
                key=lambda row: self._written_at(int(row[1]), row[2], int(row[3])))
        for cid, encoding, data, size in rows:
            try:
                block = self._decode(bytes(cid), int(encoding), bytes(data), int(size))
                self._check(bytes(cid), block)
            except (BlockCorrupt, StoreError):
                continue  # a damaged block is no sample; `store verify` reports it
            samples.append(block)
            total += len(block)
            if total >= SAMPLE_BYTES:
                break
        return samples

    def train(self, *, auto: bool = False) -> Dictionary | None:
        """Train a dictionary on the newest small blocks and add it; None if there is too little to learn from.

        With ``auto``, the dictionary is added only if no other process added one since the
        trigger fired (checked under the write lock), and a failed training restarts the count.
        """
        self._write_pending()
        try:
            samples = self._samples()
        except sqlite3.Error as e:
            raise self._fail(f"cannot add a dictionary: {e}") from None
        # The ID is settled under the write lock below; the trained bytes are re-stamped then.
        data = train_dictionary(samples, 1)
        made: Dictionary | None = None
        with self._transaction("add a dictionary"):
            if auto and not self._due_for_training():
                self._conn.execute("ROLLBACK")  # another process trained meanwhile
                return None
            self._create_table("dictionaries")
            (last,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM dictionaries").fetchone()
            if data is not None:
                made = Dictionary(int(last) + 1, with_dict_id(data, int(last) + 1), time.time(), len(samples))
                stored = stored_dictionary(made.data)
                if is_stored_frame(stored):
                    raise_schema(self._conn, DICTIONARY_FRAMES_SCHEMA)
                self._conn.execute("INSERT INTO dictionaries VALUES (?, ?, ?, ?)",
                                   (made.id, stored, made.trained_at, made.samples))
            if made is not None or auto:
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '0')", (SMALL_COUNTER,))
        if made is not None:
            self._codec.use_dictionary(made.id, made.data)
        return made
