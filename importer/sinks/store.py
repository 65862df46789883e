"""The embedded block store: one SQLite database in WAL mode, the default sink and source.

Why SQLite rather than a flatfs-style directory: an import writes many small blocks (dag-pb
nodes of a few hundred bytes, the small files of a wheel), which in a flatfs would be millions of
tiny files, each costing an inode and a 4 KiB page; SQLite packs them into one file. Its
transactions give the atomicity the store promises for free: a block row is either committed
whole or absent, and a process killed mid-transaction leaves only an uncommitted tail in the
write-ahead log, which the next opener discards.

Settings and why:

* ``journal_mode=WAL``: readers (``cat``, ``get``) run beside a writer, and a commit appends to
  the log instead of rewriting pages in place.
* ``synchronous=NORMAL``: in WAL mode a commit is not fsync'd; the log is synced at checkpoints.
  A *process* crash loses nothing that was committed; a *power loss* may drop the last few
  committed transactions but never corrupts the database (SQLite's documented WAL guarantee).
  Blocks are content-addressed, so a lost tail is re-imported by running the import again.
* ``busy_timeout``: a second writer waits for the first one's transaction instead of failing;
  puts are buffered and committed in batches of :data:`BATCH_BYTES`, so two importers
  interleave batch by batch. Writes use ``BEGIN IMMEDIATE`` so that a reader never has to be
  upgraded to a writer mid-transaction (the one case where SQLite fails without waiting).
* Blocks live in a rowid table (not ``WITHOUT ROWID``): SQLite advises rowid tables for rows
  larger than about 1/20 of a page, and leaf blocks are 256 KiB.

Every block read is hashed and compared with its CID (:func:`importer.dag.cid.block_matches`);
a mismatch raises :class:`BlockCorrupt`.

Compression at rest (:mod:`importer.sinks.atrest`): each row has an ``encoding`` column (0 = the
block as is, 1 = a zstd frame, 2 = a zstd frame made with one of the store's trained dictionaries,
kept in the ``dictionaries`` table). The CID is always that of the uncompressed block, and every
read decompresses and then hashes: a payload that does not decompress is as corrupt as one that
hashes wrong. Blocks that do not shrink by at least 3% stay raw. Whether new blocks are compressed
is the store's ``meta.compression`` setting (``zstd`` or ``none``; default :data:`DEFAULT_COMPRESSION`),
overridden for one process by ``$DPIP_STORE_COMPRESSION`` or the ``compression`` argument;
reading never depends on it.

Dictionaries: once :data:`TRAIN_AFTER` small blocks (< 16 KiB) have been committed without a
dictionary, the committing process trains one on the newest small blocks (zstd's trainer, about
a second) and adds it in its own short transaction; later small blocks use the newest
dictionary. The next one is trained after 4x as many more small blocks, so their count grows
with the logarithm of the store. Dictionaries are never deleted, so a row's dictionary is always
there to read it. Two processes may both decide to train: the insert re-checks the trigger
under the write lock and assigns the ID there (``max(id) + 1``), so the slower one drops its
dictionary instead of adding a duplicate, and IDs stay unique.

Forward compatibility: a reader that meets an encoding it does not know refuses that block with
a clear error, and a store whose ``meta.schema_version`` is newer than :data:`SCHEMA_VERSION` is
refused at open, so an old binary never misreads a newer store. Stores of schema 1 to 3 are
migrated at open by adding the new tables.

Attempts (``attempts`` table): rows of the compressor search's memo of process-starting attempts
(:mod:`importer.compress.memo`), opaque here. :meth:`BlockStore.record_attempts` rewrites a row
to make it the newest and keeps only the newest ``keep`` rows; :meth:`BlockStore.load_attempts`
reads the newest. Being a cache, the table was added to schema 4 without a version bump: schema-4
code that predates it never reads it, and every opener creates it if missing.

Deltas (encoding 3, :mod:`importer.sinks.delta`): :meth:`BlockStore.delta_encode` rewrites a
committed block as a zstd frame made against other committed blocks (the leaves of the same file
in the previous release, chosen by :mod:`importer.archive.delta`). Three rules keep every block
readable: a delta's depth is one more than its deepest reference's and at most
:data:`~importer.sinks.delta.MAX_DEPTH`, and every read checks that a reference is shallower than
its referrer, so references can never form a cycle; a block that a delta references is never
itself made a delta (that could deepen it past its referrer); and the ``delta_refs`` table lists
who references whom, so :meth:`BlockStore.delete` first rewrites a deleted block's dependents
without it.
Decoded references are kept in a small cache (:data:`REFERENCE_CACHE_BYTES`), because the
leaves of one file reference overlapping leaves of the old one.

Roots (``archives`` and ``pins`` tables, :mod:`importer.sinks.roots`): the archive index (file
name -> root, sha256, size, import time) and the pins (name -> root, as Kubo's recursive pins)
are what ``store gc`` (:mod:`importer.sinks.gc`) keeps: every block they reach stays, every
other block goes. A writer holds the collector lock (:mod:`importer.sinks.lock`) shared from its first
write until it closes, so a collection never sweeps the blocks of an import that has not
recorded its root yet.

Free pages: a store created by this version has ``auto_vacuum = INCREMENTAL`` (it can only be set
before the first table), so the pages that :meth:`BlockStore.delete_many` and delta rewrites free
are given back to the file system by :meth:`BlockStore.reclaim_free_pages` (SQLite moves the
last pages into the holes and truncates the file) instead of waiting for a full ``VACUUM``.
Older stores keep ``auto_vacuum = NONE`` until :meth:`BlockStore.vacuum` rebuilds them with it.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ..dag.cid import IDENTITY, block_matches, format_cid, split_cid
from ..errors import BlockCorrupt, BlockNotFound, StoreError
from .atrest import (
    ENCODING_DELTA,
    ENCODING_NAMES,
    SMALL_BLOCK,
    BlockCodec,
    Dictionary,
    UndecodablePayload,
    UnknownEncoding,
    train_dictionary,
    with_dict_id,
)
from .delta import MAX_DEPTH, MAX_REFS, decode_payload, encode_payload, read_header, with_depth
from .lock import CollectorLock
from .roots import ArchiveRecord, Pin, StoreRoots, hold_writer_lock

# The public names; the index's records are defined with it (importer.sinks.roots) and re-exported.
__all__ = [
    "AUTO_VACUUM_MODES", "BATCH_BYTES", "BUSY_TIMEOUT_MS", "COMPRESSIONS", "COMPRESSION_ENV", "DB_NAME",
    "DEFAULT_COMPRESSION", "DELETE_ROWS", "DELTA_ROWS", "RECLAIM_FRACTION", "RECOMPRESS_ROWS",
    "REFERENCE_CACHE_BYTES", "SAMPLE_BLOCKS", "SAMPLE_BYTES", "SCHEMA_VERSION", "SQL_PARAMS", "STORE_ENV",
    "TRAIN_AFTER", "TRAIN_GROWTH", "ArchiveRecord", "BlockRow", "BlockStore", "DeleteReport", "EncodingStats",
    "PageStats", "Pin", "StoreStats", "default_store_path",
]

MiB: Final = 1024 * 1024

#: Version of the table layout below, kept in ``meta``; bump it with every migration.
#: 1: blocks. 2: adds ``archives``, the mirror's index (file name -> root CID, sha256, size).
#: 3: adds ``dictionaries`` (zstd dictionaries for encoding 2). 4: adds ``delta_refs`` (encoding 3),
#: and later ``attempts`` (a cache that older schema-4 code ignores, so the version stays 4).
#: 5: adds ``pins`` (roots that ``store gc`` keeps besides the archive index): schema-4 code would
#: collect pinned blocks, so an older binary must refuse the store.
SCHEMA_VERSION: Final = 5
#: File name of the database inside the store directory.
DB_NAME: Final = "blocks.sqlite3"
#: Environment variable naming the store when ``--store`` is not given.
STORE_ENV: Final = "DPIP_STORE"
#: Buffered puts are committed once they reach this many bytes: large enough that the per-commit
#: cost (a WAL frame header per page, a lock round-trip) is amortised, small enough that a second
#: importer waiting on the write lock gets its turn within a second or so.
BATCH_BYTES: Final = 64 * MiB
#: How long a writer waits for another process's transaction before giving up (milliseconds).
#: One batch of 64 MiB commits in well under a second, so a minute means "something is stuck".
BUSY_TIMEOUT_MS: Final = 60_000

#: Environment variable that overrides the store's compression setting for one process.
COMPRESSION_ENV: Final = "DPIP_STORE_COMPRESSION"
COMPRESSIONS: Final = ("none", "zstd")
#: Compression of a store that has no setting yet. ``python -m bench.perf_store --wheels ...``
#: (figures in :mod:`importer.sinks.atrest`): on ten real wheels zstd stores the blocks in 31%
#: of the space (22.2 MB -> 6.8 MB at rest, database files 23.3 MB -> 7.9 MB) for 2-7% of the
#: import's time, and verified reads of them went from 219 to 155 MB/s, still 20x an import.
#: On incompressible 256 KiB leaves the 16 KiB probe decides "raw" at ~14 GB/s, so their store
#: writes stay at the raw store's ~185 MB/s (185.0 against 186.8 in the same run).
DEFAULT_COMPRESSION: Final = "zstd"
#: Small blocks committed without a dictionary before the first one is trained. At ~4 KiB each
#: (the ten wheels' average) 1000 make ~4 MB of samples, enough for a ~40 KiB dictionary at
#: zstd's 100x. Importing 18 real wheels (the ten of :mod:`importer.sinks.atrest` plus requests,
#: urllib3, idna, packaging, attrs, click, jinja2, pygments: 2,304 blocks, 28.7 MB) trained one
#: of 44,100 bytes on the way and ended at ratio 3.336 against 3.309 with none (dictionary
#: included); 2000 would not have trained at all on those wheels (1,866 small blocks).
TRAIN_AFTER: Final = 1000
#: Each later dictionary waits for this many times the previous wait.
TRAIN_GROWTH: Final = 4
#: Training samples: the newest small blocks, up to this many of them and this many bytes
#: (8 MiB = 128x the largest dictionary; the trainer takes about a second on it here).
SAMPLE_BLOCKS: Final = 4000
SAMPLE_BYTES: Final = 8 * MiB
_SMALL_COUNTER: Final = "small_blocks_since_dictionary"
#: Rows read, re-encoded and rewritten per transaction by :meth:`BlockStore.recompress`: at most
#: 1000 x 256 KiB = 256 MiB held at once, and another writer waits for one chunk at most.
RECOMPRESS_ROWS: Final = 1000
#: Decoded reference blocks kept for the next deltas to read: 64 MiB holds the ~5 leaves of
#: 256 KiB that a delta references at each of :data:`~importer.sinks.delta.MAX_DEPTH` levels
#: (16 x 5 x 256 KiB = 20 MiB) three times over, so reading a file leaf after leaf decodes each
#: old leaf once, not once per new leaf that references it.
REFERENCE_CACHE_BYTES: Final = 64 * MiB
#: Delta candidates encoded per transaction by :meth:`BlockStore.delta_encode` (as for recompress).
DELTA_ROWS: Final = 1000
#: Blocks removed per transaction by :meth:`BlockStore.delete_many`. A removal only rewrites
#: b-tree and freelist pages (``python -m bench.perf_gc``: see its figures), so the batch is
#: bounded by how long another writer may wait for the lock, not by memory.
DELETE_ROWS: Final = 5000
#: Host parameters per ``IN (...)`` list: SQLite before 3.32 allowed 999 in a statement, and one
#: statement below names each twice.
SQL_PARAMS: Final = 400
#: Rewrites that shrink rows in place (deltas, recompression) give the freed pages back once they
#: are this share of the file: below it, the next import reuses them for free; above it, moving
#: the file's last pages into them costs about as much I/O as the rewrite that freed them
#: (``python -m bench.perf_gc``), and issue 14 wants the file within 10% of its payload.
RECLAIM_FRACTION: Final = 0.10
#: ``PRAGMA auto_vacuum`` values.
AUTO_VACUUM_MODES: Final = {0: "none", 1: "full", 2: "incremental"}

_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # cid: binary CID; size: logical (decoded) length; encoding: how ``data`` is stored.
    ("CREATE TABLE IF NOT EXISTS blocks ("
     " cid BLOB NOT NULL PRIMARY KEY,"
     " encoding INTEGER NOT NULL DEFAULT 0,"
     " size INTEGER NOT NULL,"
     " data BLOB NOT NULL)"),
    # One row per imported archive, written only after all its blocks are committed, so an
    # entry never names a missing block. The mirror publisher and the pip proxy read this.
    ("CREATE TABLE IF NOT EXISTS archives ("
     " name TEXT NOT NULL,"
     " root BLOB NOT NULL,"
     " sha256 BLOB NOT NULL,"
     " size INTEGER NOT NULL,"
     " imported_at REAL NOT NULL,"
     " PRIMARY KEY (name, root))"),
    # id: the zstd dictionary ID, also written in the dictionary's header and in the header of
    # every frame made with it; samples: how many blocks it was trained on.
    ("CREATE TABLE IF NOT EXISTS dictionaries ("
     " id INTEGER PRIMARY KEY,"
     " data BLOB NOT NULL,"
     " trained_at REAL NOT NULL,"
     " samples INTEGER NOT NULL)"),
    # One row per (reference, delta row): which rows must be rewritten before ``ref`` is deleted.
    ("CREATE TABLE IF NOT EXISTS delta_refs ("
     " ref BLOB NOT NULL,"
     " cid BLOB NOT NULL,"
     " PRIMARY KEY (ref, cid))"),
    # Recursive pins: every block ``root`` reaches is kept by ``store gc``. A name holds one root
    # (pinning another root under it replaces it); ``pin add CID`` names the pin after the CID.
    ("CREATE TABLE IF NOT EXISTS pins ("
     " name TEXT NOT NULL PRIMARY KEY,"
     " root BLOB NOT NULL,"
     " pinned_at REAL NOT NULL)"),
    # The compressor search's memo of GNU gzip attempts (importer.compress.memo): opaque key and
    # checksummed value; a rowid table, so the newest rows have the highest rowids.
    ("CREATE TABLE IF NOT EXISTS attempts ("
     " key BLOB NOT NULL PRIMARY KEY,"
     " value BLOB NOT NULL)"),
)


@dataclass(frozen=True, slots=True)
class EncodingStats:
    """Blocks of one encoding: how many, their logical bytes and their stored payload bytes."""

    name: str
    blocks: int
    logical_bytes: int
    stored_bytes: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals of a store: blocks, logical bytes, payload bytes, the database files' size, and more.

    ``stored_bytes`` sums the payloads as stored; :attr:`at_rest_bytes` adds the dictionaries,
    which is what the blocks cost on disk (before SQLite's page overhead, in ``disk_bytes``).
    """

    blocks: int
    logical_bytes: int
    stored_bytes: int
    disk_bytes: int
    encodings: tuple[EncodingStats, ...] = ()
    dictionaries: int = 0
    dictionary_bytes: int = 0
    compression: str = DEFAULT_COMPRESSION

    @property
    def at_rest_bytes(self) -> int:
        return self.stored_bytes + self.dictionary_bytes

    @property
    def ratio(self) -> float:
        """Logical bytes per byte at rest (1.0 for an empty store)."""
        return self.logical_bytes / self.at_rest_bytes if self.at_rest_bytes else 1.0


@dataclass(frozen=True, slots=True)
class PageStats:
    """The database file as SQLite sees it: pages in use and free, and how free pages go back.

    ``auto_vacuum`` is ``"incremental"`` for stores created since schema 5 (free pages are
    returned after deletes), ``"none"`` for older ones until ``store vacuum`` converts them.
    """

    page_size: int
    pages: int
    free_pages: int
    auto_vacuum: str

    @property
    def file_bytes(self) -> int:
        """Size of the database as of its last commit (the WAL included, whether checkpointed or not)."""
        return self.pages * self.page_size

    @property
    def free_bytes(self) -> int:
        return self.free_pages * self.page_size


@dataclass(frozen=True, slots=True)
class BlockRow:
    """What the store keeps about one block besides its bytes."""

    cid: bytes
    encoding: int
    size: int
    stored: int


@dataclass(frozen=True, slots=True)
class DeleteReport:
    """What :meth:`BlockStore.delete_many` removed: blocks, their logical and payload bytes, and the
    deltas it rewrote plain because a block they referenced went."""

    blocks: int = 0
    logical_bytes: int = 0
    payload_bytes: int = 0
    rewritten: int = 0

    def __add__(self, other: DeleteReport) -> DeleteReport:
        return DeleteReport(self.blocks + other.blocks, self.logical_bytes + other.logical_bytes,
                            self.payload_bytes + other.payload_bytes, self.rewritten + other.rewritten)


def _chunks(items: Sequence[bytes], size: int) -> Iterator[Sequence[bytes]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def default_store_path(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """The store directory: ``--store``, else ``$DPIP_STORE``, else the user data directory."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("dpip-importer")) / "store"


class BlockStore(StoreRoots):
    """A durable block store in one SQLite file; a :class:`BlockSink` and a :class:`BlockSource`.

    Puts are buffered in memory and committed in one transaction per :data:`BATCH_BYTES`, at
    :meth:`flush` and at :meth:`close`. Leaving a ``with`` block by an exception drops the
    uncommitted batch (what is committed stays: every committed block is whole and valid).
    The first write takes the collector lock shared (:mod:`importer.sinks.lock`) and :meth:`close`
    drops it: a process that keeps a store open between imports holds up ``store gc`` meanwhile.
    """

    stores_blocks = True

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 batch_bytes: int = BATCH_BYTES, compression: str | None = None,
                 train_after: int = TRAIN_AFTER) -> None:
        self.path = Path(path)
        self.batch_bytes = batch_bytes
        self.train_after = train_after
        self._pending: dict[bytes, bytes] = {}
        self._pending_bytes = 0
        self._references: OrderedDict[bytes, bytes] = OrderedDict()
        self._references_bytes = 0
        self._lock = CollectorLock(self.path)
        if compression is None:
            compression = os.environ.get(COMPRESSION_ENV) or None
        if compression is not None and compression not in COMPRESSIONS:
            raise self._fail(f"unknown compression {compression!r} (choose from {', '.join(COMPRESSIONS)})")
        self._conn = self._connect(create)
        try:
            self.compression = compression or self._meta("compression") or DEFAULT_COMPRESSION
        except BaseException:
            self._conn.close()
            raise
        self._codec = BlockCodec(compress=self.compression == "zstd", load_dictionary=self._load_dictionary)

    # -- opening -------------------------------------------------------------------------------

    def _fail(self, reason: str) -> StoreError:
        return StoreError(str(self.path), reason)

    def _connect(self, create: bool) -> sqlite3.Connection:
        db = self.path / DB_NAME
        if self.path.exists() and not self.path.is_dir():
            raise self._fail("exists and is not a directory")
        new = not db.exists()
        if new:
            if not create:
                raise self._fail("no block store here (nothing has been added to it yet)")
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise self._fail(f"cannot create directory: {e.strerror or e}") from None
        if not os.access(self.path, os.W_OK | os.X_OK):
            # SQLite needs to create the -wal and -shm files next to the database, even to read.
            raise self._fail("directory is not writable")
        try:
            # isolation_level=None: no implicit transactions; this class issues BEGIN/COMMIT.
            conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        except sqlite3.Error as e:
            raise self._fail(f"cannot open {db.name}: {e}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if new:  # only takes effect before the first table, and before WAL writes the header
                conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise self._fail(f"cannot switch to WAL mode (journal_mode is {mode})")
            conn.execute("PRAGMA synchronous = NORMAL")
            # Truncate the log back to 64 MiB after a checkpoint instead of leaving it at its peak.
            conn.execute(f"PRAGMA journal_size_limit = {64 * MiB}")
            self._migrate(conn)
        except sqlite3.Error as e:
            conn.close()
            raise self._fail(f"{db.name}: {e}") from None
        except StoreError:
            conn.close()
            raise
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                # A new store records the default it was created with, so changing the default
                # later does not silently change how an existing store writes.
                conn.execute("INSERT OR IGNORE INTO meta VALUES ('compression', ?)", (DEFAULT_COMPRESSION,))
            elif int(row[0]) > SCHEMA_VERSION:
                raise self._fail(f"schema version {row[0]} is newer than this program's "
                                 f"{SCHEMA_VERSION}: upgrade dpip-importer")
            elif int(row[0]) < SCHEMA_VERSION:
                # Every migration so far only adds tables (CREATE IF NOT EXISTS above). A store
                # from before compression keeps no setting and so takes the default.
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writing -------------------------------------------------------------------------------

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
        """Commit every buffered block in one transaction; False if there was none."""
        if not self._pending:
            return False
        try:
            self._refresh_dictionary()
            # Compress before taking the write lock, so another writer waits only for the insert.
            small = [(cid, *self._encode(block), len(block))
                     for cid, block in self._pending.items() if len(block) < SMALL_BLOCK]
            large = [(cid, *self._encode(block), len(block))
                     for cid, block in self._pending.items() if len(block) >= SMALL_BLOCK]
        except sqlite3.Error as e:
            raise self._fail(f"cannot write blocks: {e}") from None
        insert = "INSERT OR IGNORE INTO blocks (cid, encoding, data, size) VALUES (?, ?, ?, ?)"
        with self._transaction("write blocks"):
            added_small = self._conn.executemany(insert, small).rowcount if small else 0
            if large:
                self._conn.executemany(insert, large)
            if added_small > 0:
                self._conn.execute(
                    "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                    " SET value = CAST(value AS INTEGER) + excluded.value", (_SMALL_COUNTER, added_small))
        self._pending.clear()
        self._pending_bytes = 0
        return True

    def _encode(self, block: bytes) -> tuple[int, bytes]:
        """``(encoding, stored bytes)`` of a block."""
        return self._codec.encode(block)

    # -- compression settings and dictionaries ----------------------------------------------------

    def _meta(self, key: str) -> str | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read settings: {e}") from None
        return None if row is None else str(row[0])

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

    def _load_dictionary(self, dict_id: int) -> bytes | None:
        row = self._conn.execute("SELECT data FROM dictionaries WHERE id = ?", (dict_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def _refresh_dictionary(self) -> None:
        """Compress small blocks with the newest dictionary, whichever process trained it."""
        if not self._codec.compress:
            return
        row = self._conn.execute("SELECT id, data FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
        if row is not None and int(row[0]) != self._codec.dictionary_id:
            self._codec.use_dictionary(int(row[0]), bytes(row[1]))

    def _due_for_training(self) -> bool:
        """Have :attr:`train_after` x 4^(dictionaries) small blocks come in since the newest one?"""
        try:
            (count,) = self._conn.execute("SELECT count(*) FROM dictionaries").fetchone()
            since = int(self._meta(_SMALL_COUNTER) or 0)
        except sqlite3.Error as e:
            raise self._fail(f"cannot read settings: {e}") from None
        return bool(since >= self.train_after * TRAIN_GROWTH ** int(count))

    def dictionaries(self) -> list[Dictionary]:
        """Every dictionary of the store, oldest first."""
        try:
            rows = self._conn.execute("SELECT id, data, trained_at, samples FROM dictionaries ORDER BY id").fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read dictionaries: {e}") from None
        return [Dictionary(int(r[0]), bytes(r[1]), float(r[2]), int(r[3])) for r in rows]

    def _samples(self) -> list[bytes]:
        """The newest small blocks, decoded and checked, up to :data:`SAMPLE_BLOCKS` / :data:`SAMPLE_BYTES`."""
        samples: list[bytes] = []
        total = 0
        rows = self._conn.execute(
            "SELECT cid, encoding, data, size FROM blocks WHERE size > 0 AND size < ? ORDER BY rowid DESC LIMIT ?",
            (SMALL_BLOCK, SAMPLE_BLOCKS)).fetchall()
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
            (last,) = self._conn.execute("SELECT coalesce(max(id), 0) FROM dictionaries").fetchone()
            if data is not None:
                made = Dictionary(int(last) + 1, with_dict_id(data, int(last) + 1), time.time(), len(samples))
                self._conn.execute("INSERT INTO dictionaries VALUES (?, ?, ?, ?)",
                                   (made.id, made.data, made.trained_at, made.samples))
            if made is not None or auto:
                self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, '0')", (_SMALL_COUNTER,))
        if made is not None:
            self._codec.use_dictionary(made.id, made.data)
        return made

    @contextmanager
    def _transaction(self, what: str) -> Iterator[None]:
        """One write transaction: committed when the block ends (unless the block rolled it back
        itself), rolled back on any error; an SQLite error becomes a StoreError saying what
        could not be done."""
        try:
            self._begin()
            try:
                yield
                if self._conn.in_transaction:
                    self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._fail(f"cannot {what}: {e}") from None

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    # -- deltas --------------------------------------------------------------------------------

    def delta_encode(self, candidates: Iterable[tuple[bytes, Sequence[bytes]]], *,
                     chunk_rows: int = DELTA_ROWS) -> tuple[int, int]:
        """Store blocks as deltas against others; ``(rows rewritten, bytes saved)``.

        ``candidates`` are ``(cid, reference CIDs)`` pairs (:func:`importer.archive.delta.plan_deltas`).
        A block is rewritten only if it is committed and not already a delta, no delta references
        it, every reference is committed and shallower than :data:`~importer.sinks.delta.MAX_DEPTH`,
        the block and its references decode and match their CIDs, and the delta is smaller than
        the payload it replaces. Nothing happens in a store that does not compress.
        """
        self.flush()
        if not self._codec.compress:
            return 0, 0
        rewritten = saved = 0
        batch: list[tuple[bytes, Sequence[bytes]]] = []
        for candidate in candidates:
            batch.append(candidate)
            if len(batch) >= chunk_rows:
                done = self._delta_batch(batch)
                rewritten, saved, batch = rewritten + done[0], saved + done[1], []
        done = self._delta_batch(batch)
        if done[0] or rewritten:
            self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)
        return rewritten + done[0], saved + done[1]

    def _delta_batch(self, batch: Sequence[tuple[bytes, Sequence[bytes]]]) -> tuple[int, int]:
        updates: list[tuple[bytes, bytes, Sequence[bytes], int]] = []
        for cid, refs in batch:
            made = self._delta_of(cid, refs)
            if made is not None:
                updates.append((cid, *made))
        if not updates:
            return 0, 0
        rewritten = saved = 0
        with self._transaction("store deltas"):
            for cid, payload, refs, old_length in updates:
                # Re-checked under the write lock: another process may have deleted a
                # reference, made the block a delta or referenced it since it was read.
                referenced = self._conn.execute("SELECT 1 FROM delta_refs WHERE ref = ? LIMIT 1", (cid,)).fetchone()
                present = self._conn.execute(
                    f"SELECT count(*) FROM blocks WHERE cid IN ({', '.join('?' * len(refs))})", tuple(refs)).fetchone()
                if referenced is not None or int(present[0]) != len(set(refs)):
                    continue
                # Depths as committed now: a reference may have become a delta earlier in this batch.
                try:
                    depth = 1 + self._depth_of(refs)
                except UndecodablePayload:
                    continue  # a reference damaged meanwhile: `store verify` reports it
                if depth > MAX_DEPTH:
                    continue
                if depth != read_header(payload).depth:
                    payload = with_depth(payload, depth)
                cursor = self._conn.execute(
                    "UPDATE blocks SET encoding = ?, data = ? WHERE cid = ? AND encoding != ? AND length(data) = ?",
                    (ENCODING_DELTA, payload, cid, ENCODING_DELTA, old_length))
                if cursor.rowcount != 1:
                    continue
                self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)", [(ref, cid) for ref in refs])
                rewritten += 1
                saved += old_length - len(payload)
        return rewritten, saved

    def _delta_of(self, cid: bytes, refs: Sequence[bytes]) -> tuple[bytes, Sequence[bytes], int] | None:
        """``(payload, refs, length of the payload it replaces)`` if a delta of ``cid`` pays, else None."""
        if not refs or len(refs) > MAX_REFS or cid in refs:
            return None
        try:
            row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
            if row is None or int(row[0]) == ENCODING_DELTA:
                return None
            if self._conn.execute("SELECT 1 FROM delta_refs WHERE ref = ? LIMIT 1", (cid,)).fetchone() is not None:
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
        return (payload, tuple(refs), len(data)) if len(payload) < len(data) else None

    def _depth_of(self, refs: Sequence[bytes]) -> int:
        """The deepest delta depth among committed rows ``refs`` (0 when none is a delta)."""
        depth = 0
        for ref in refs:
            row = self._conn.execute("SELECT data FROM blocks WHERE cid = ? AND encoding = ?",
                                     (ref, ENCODING_DELTA)).fetchone()
            if row is not None:
                depth = max(depth, read_header(bytes(row[0])).depth)
        return depth

    def _reference(self, ref: bytes, below: int) -> bytes:
        """The decoded, checked block ``ref`` for a delta of depth ``below`` (cached)."""
        block = self._references.get(ref)
        if block is not None:
            self._references.move_to_end(ref)
            return block
        row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (ref,)).fetchone()
        if row is None:
            raise UndecodablePayload(f"its reference {format_cid(ref)} is not in the store")
        try:
            block = self._decode(ref, int(row[0]), bytes(row[1]), int(row[2]), below)
            self._check(ref, block)
        except BlockCorrupt as e:
            raise UndecodablePayload(f"its reference {format_cid(ref)} is damaged ({e.actual})") from None
        self._references[ref] = block
        self._references_bytes += len(block)
        while self._references_bytes > REFERENCE_CACHE_BYTES:
            _, evicted = self._references.popitem(last=False)
            self._references_bytes -= len(evicted)
        return block

    def _forget_reference(self, cid: bytes) -> None:
        block = self._references.pop(cid, None)
        if block is not None:
            self._references_bytes -= len(block)

    def load_attempts(self, limit: int) -> list[tuple[bytes, bytes]]:
        """The newest ``limit`` rows of the attempts memo as (key, value), newest first."""
        try:
            rows = self._conn.execute("SELECT key, value FROM attempts ORDER BY rowid DESC LIMIT ?",
                                      (limit,)).fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the attempts memo: {e}") from None
        return [(bytes(key), bytes(value)) for key, value in rows]

    def record_attempts(self, rows: Iterable[tuple[bytes, bytes]], keep: int) -> None:
        """Write memo rows as the newest (replacing a row of the same key), then delete all but the
        newest ``keep`` rows, in one transaction."""
        with self._transaction("record the attempts memo"):
            self._conn.executemany("INSERT OR REPLACE INTO attempts (key, value) VALUES (?, ?)", rows)
            self._conn.execute("DELETE FROM attempts WHERE rowid IN "
                               "(SELECT rowid FROM attempts ORDER BY rowid DESC LIMIT -1 OFFSET ?)", (keep,))

    # -- reading -------------------------------------------------------------------------------

    def get(self, cid: bytes) -> bytes:
        """The block named ``cid``, checked against it; BlockNotFound or BlockCorrupt otherwise."""
        block = self._pending.get(cid)
        if block is None:
            try:
                row = self._conn.execute(
                    "SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
            except sqlite3.Error as e:
                raise self._fail(f"cannot read a block: {e}") from None
            if row is None:
                _, _, code, digest = split_cid(cid)
                if code == IDENTITY:  # an inlined block: the CID carries the bytes themselves
                    return digest
                raise BlockNotFound(format_cid(cid), str(self.path))
            block = self._decode(cid, int(row[0]), bytes(row[1]), int(row[2]))
        self._check(cid, block)
        return block

    def _decode(self, cid: bytes, encoding: int, data: bytes, size: int, below: int = MAX_DEPTH + 1) -> bytes:
        """Inverse of :meth:`_encode` (and of deltas); an encoding from a newer version is refused, not guessed.

        ``below``: a delta read as a reference must be shallower than its referrer, which is
        what makes a cycle of references (only a damaged store could have one) an error, not a hang.
        """
        try:
            if encoding == ENCODING_DELTA:
                depth = read_header(data).depth
                if depth >= below:
                    raise UndecodablePayload(f"delta of depth {depth} referenced by one of depth {below}")
                return decode_payload(data, size, lambda ref: self._reference(ref, depth))
            return self._codec.decode(encoding, data, size)
        except UnknownEncoding:
            raise self._fail(f"block {format_cid(cid)} is stored with encoding {encoding}, "
                             "which this version cannot read: upgrade dpip-importer") from None
        except UndecodablePayload as e:
            name = ENCODING_NAMES.get(encoding, str(encoding))
            raise BlockCorrupt(format_cid(cid), str(self.path), f"nothing: its {name} payload is damaged: {e}") from None
        except sqlite3.Error as e:
            raise self._fail(f"cannot read a dictionary or a reference: {e}") from None

    def _check(self, cid: bytes, block: bytes) -> None:
        if not block_matches(cid, block):
            import hashlib

            actual = hashlib.sha256(block).hexdigest()
            raise BlockCorrupt(format_cid(cid), str(self.path), f"sha2-256 {actual}")

    def has(self, cid: bytes) -> bool:
        if cid in self._pending:
            return True
        try:
            row = self._conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the index: {e}") from None
        return row is not None

    def iter_cids(self) -> Iterator[bytes]:
        """Every committed CID, in CID byte order (a snapshot: later commits are not seen)."""
        try:
            for (cid,) in self._conn.execute("SELECT cid FROM blocks ORDER BY cid"):
                yield bytes(cid)
        except sqlite3.Error as e:
            raise self._fail(f"cannot list blocks: {e}") from None

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
        last = 0
        while True:
            try:
                rows = self._conn.execute(
                    "SELECT rowid, cid, encoding, data, size FROM blocks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, chunk_rows)).fetchall()
            except sqlite3.Error as e:
                raise self._fail(f"cannot read blocks: {e}") from None
            if not rows:
                if rewritten:
                    self.reclaim_free_pages(min_fraction=RECLAIM_FRACTION)
                return rewritten, saved
            last = int(rows[-1][0])
            updates = []
            for _, cid, encoding, data, size in rows:
                if int(encoding) == ENCODING_DELTA:
                    continue  # already stored against its references; plain would only be larger
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

    def vacuum(self) -> bool:
        """Rebuild the database file without its free pages (needs the store to itself and 2x space).

        A store from before schema 5 is converted to ``auto_vacuum = INCREMENTAL`` on the way
        (only a VACUUM can change it once tables exist); True if it was.
        """
        self.flush()
        converted = self.page_stats().auto_vacuum != "incremental"
        try:
            self._conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
            self._conn.execute("VACUUM")
            # In WAL mode VACUUM writes the new file through the log; fold it back now so the
            # space is returned at once rather than at the next automatic checkpoint.
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            raise self._fail(f"cannot vacuum: {e}") from None
        return converted

    def verify(self, on_sound: Callable[[bytes, bytes], None] | None = None) -> Iterator[tuple[bytes, str | None]]:
        """Re-hash every committed block; yield ``(cid, None)`` if sound, else ``(cid, reason)``.

        Blocks come in the order they were stored, so a delta's references were read (and are
        in the reference cache) just before it: on 10 numpy wheels' store (1,542 deltas) that
        took the pass from 8.3 to 3.8 s against CID order. ``on_sound(cid, block)`` sees every
        sound block's bytes (``store verify`` reads their links from it, so no block is read twice).
        """
        try:
            cids = [bytes(cid) for (cid,) in self._conn.execute("SELECT cid FROM blocks ORDER BY rowid")]
        except sqlite3.Error as e:
            raise self._fail(f"cannot list blocks: {e}") from None
        for cid in cids:
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
                "SELECT count(*), coalesce(sum(length(data)), 0) FROM dictionaries").fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot compute stats: {e}") from None
        encodings = tuple(EncodingStats(ENCODING_NAMES.get(int(e), str(e)), int(n), int(logical), int(stored))
                          for e, n, logical, stored in rows)
        disk = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                disk += (self.path / (DB_NAME + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return StoreStats(sum(e.blocks for e in encodings), sum(e.logical_bytes for e in encodings),
                          sum(e.stored_bytes for e in encodings), disk, encodings,
                          int(dictionaries), int(dictionary_bytes), self.compression)

    # -- deleting blocks and giving free pages back --------------------------------------------

    def delete(self, cid: bytes) -> bool:
        """Remove one block; True if it was there (see :meth:`delete_many`)."""
        if self._pending.pop(cid, None) is not None:
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
        With ``reclaim``, the pages freed go back to the file system at the end
        (:meth:`reclaim_free_pages`).
        """
        self.flush()
        doomed = list(cids)
        everything = set(doomed)
        report = DeleteReport()
        for start in range(0, len(doomed), batch_rows):
            report += self._delete_batch(doomed[start:start + batch_rows], everything)
        if reclaim and report.blocks:
            self.reclaim_free_pages()
        return report

    def _delete_batch(self, batch: Sequence[bytes], doomed: set[bytes]) -> DeleteReport:
        blocks = logical = payload = rewritten = 0
        with self._transaction("delete blocks"):
            dependents: set[bytes] = set()
            for chunk in _chunks(batch, SQL_PARAMS):
                marks = ", ".join("?" * len(chunk))
                dependents.update(bytes(c) for (c,) in self._conn.execute(
                    f"SELECT DISTINCT cid FROM delta_refs WHERE ref IN ({marks})", chunk))
            for dependent in sorted(dependents - doomed):
                try:
                    encoding, data, refs = self._without_references(dependent, doomed)
                except BlockCorrupt:
                    continue  # damaged already, and left for `store verify` to report
                self._conn.execute("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?", (encoding, data, dependent))
                self._conn.execute("DELETE FROM delta_refs WHERE cid = ?", (dependent,))
                self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)", [(r, dependent) for r in refs])
                rewritten += 1
            for chunk in _chunks(batch, SQL_PARAMS):
                marks = ", ".join("?" * len(chunk))
                self._conn.execute(f"DELETE FROM delta_refs WHERE cid IN ({marks}) OR ref IN ({marks})",
                                   (*chunk, *chunk))
                n, size, stored = self._conn.execute(
                    f"SELECT count(*), coalesce(sum(size), 0), coalesce(sum(length(data)), 0) FROM blocks"
                    f" WHERE cid IN ({marks})", chunk).fetchone()
                self._conn.execute(f"DELETE FROM blocks WHERE cid IN ({marks})", chunk)
                blocks, logical, payload = blocks + int(n), logical + int(size), payload + int(stored)
        for cid in (*batch, *dependents):  # the cache must not serve a removed or rewritten block
            self._forget_reference(cid)
        return DeleteReport(blocks, logical, payload, rewritten)

    def _without_references(self, cid: bytes, doomed: set[bytes]) -> tuple[int, bytes, tuple[bytes, ...]]:
        """``(encoding, payload, references)`` for the committed block ``cid`` that use no block of ``doomed``.

        A delta whose references include doomed blocks is re-made against its other references
        plus the references of those doomed blocks that are deltas themselves (the release
        before the one removed), at most :data:`~importer.sinks.delta.MAX_REFS`; its depth can
        only drop, since those are shallower than what they replace, so no delta that references
        this one becomes unreadable. Kept only if smaller than the plain encoding.
        """
        block = self.get(cid)  # decoded while its references are all still there
        plain_encoding, plain = self._codec.encode(block)
        row = self._conn.execute("SELECT encoding, data FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None or int(row[0]) != ENCODING_DELTA:
            return plain_encoding, plain, ()
        spliced: list[bytes] = []
        for ref in read_header(bytes(row[1])).refs:
            if ref not in doomed:
                spliced.append(ref)
                continue
            ref_row = self._conn.execute("SELECT encoding, data FROM blocks WHERE cid = ?", (ref,)).fetchone()
            if ref_row is not None and int(ref_row[0]) == ENCODING_DELTA:
                spliced.extend(r for r in read_header(bytes(ref_row[1])).refs if r not in doomed)
        refs = tuple(dict.fromkeys(spliced))[:MAX_REFS]
        if refs:
            try:
                depth = 1 + self._depth_of(refs)
                if depth <= MAX_DEPTH:
                    delta = encode_payload(block, refs, [self._reference(r, MAX_DEPTH + 1) for r in refs], depth)
                    if len(delta) < len(plain):
                        return ENCODING_DELTA, delta, refs
            except UndecodablePayload:
                pass  # a reference damaged or gone: plain it is
        return plain_encoding, plain, ()

    def iter_rows(self, *, chunk_rows: int = DELETE_ROWS) -> Iterator[BlockRow]:
        """Every committed block's CID, encoding, logical size and payload size, in the order stored.

        Read in chunks of rowids, one short read each, so a caller may write between them.
        """
        last = 0
        while True:
            try:
                rows = self._conn.execute(
                    "SELECT rowid, cid, encoding, size, length(data) FROM blocks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, chunk_rows)).fetchall()
            except sqlite3.Error as e:
                raise self._fail(f"cannot list blocks: {e}") from None
            if not rows:
                return
            last = int(rows[-1][0])
            for _, cid, encoding, size, stored in rows:
                yield BlockRow(bytes(cid), int(encoding), int(size), int(stored))

    def page_stats(self) -> PageStats:
        """Pages of the database file in use and free, and its auto_vacuum mode."""
        try:
            page_size, pages, free, mode = (
                int(self._conn.execute(f"PRAGMA {name}").fetchone()[0])
                for name in ("page_size", "page_count", "freelist_count", "auto_vacuum"))
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the page counts: {e}") from None
        return PageStats(page_size, pages, free, AUTO_VACUUM_MODES.get(mode, str(mode)))

    def reclaim_free_pages(self, *, min_fraction: float = 0.0) -> int:
        """Give the database's free pages back to the file system; the bytes the file shrank by.

        Only in a store with ``auto_vacuum = INCREMENTAL`` (others need :meth:`vacuum`), and only
        if the free pages are at least ``min_fraction`` of the file. SQLite moves the pages at the
        end of the file into the free ones and truncates it; a checkpoint then copies that into
        the file and empties the write-ahead log, which holds every page moved. It never waits:
        while a reader holds an older snapshot it does what it can, and the log is cut back to
        64 MiB at the next write instead.
        """
        before = self.page_stats()
        if before.auto_vacuum != "incremental" or not before.free_pages \
                or before.free_pages < min_fraction * before.pages:
            return 0
        try:
            # executescript steps the pragma to its end (execute() would free a single page).
            self._conn.executescript("PRAGMA incremental_vacuum;")
            self._conn.execute("PRAGMA busy_timeout = 0")  # a busy checkpoint returns, not waits
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            finally:
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except sqlite3.Error as e:
            raise self._fail(f"cannot reclaim free pages: {e}") from None
        return before.file_bytes - self.page_stats().file_bytes

    def payload_bytes(self, cids: Iterable[bytes]) -> int:
        """Bytes the committed blocks ``cids`` take at rest (their payloads, as stored now)."""
        total = 0
        try:
            for chunk in _chunks(list(cids), SQL_PARAMS):
                (found,) = self._conn.execute(
                    f"SELECT coalesce(sum(length(data)), 0) FROM blocks WHERE cid IN ({', '.join('?' * len(chunk))})",
                    chunk).fetchone()
                total += int(found)
        except sqlite3.Error as e:
            raise self._fail(f"cannot read blocks: {e}") from None
        return total

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit buffered blocks and close the database (and drop the collector lock)."""
        try:
            self.flush()
        finally:
            self._conn.close()
            self._lock.release()

    def abort(self) -> None:
        """Drop buffered blocks and close the database (committed blocks stay)."""
        self._pending.clear()
        self._pending_bytes = 0
        self._conn.close()
        self._lock.release()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
