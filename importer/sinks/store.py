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
refused at open, so an old binary never misreads a newer store. Stores of schema 1 to 5 are
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

Packs (schema 7, encodings 4 and 5, :mod:`importer.sinks.packs`): a compressing store writes new
blocks as segments of ``packs`` rows of about 1 MiB (blocks under 256 KiB grouped into zstd -9
frames, with the store's dictionary or the one the package ships), so SQLite's pages hold
payload and not slack; a block row keeps a locator. :meth:`delta_encode` decides the deltas of
blocks still buffered before their first write, so none is written plainly and rewritten
smaller. ``pack_usage`` counts each pack's live bytes: :meth:`delete` and rewrites lower it, a
pack nothing points to is deleted, and :meth:`compact_packs` rewrites the ones left mostly dead
(and, with a level, recompresses them). The one-row-per-block layout (encodings 0-3) is still
read, and written by rewrites, by ``packs=False`` and by stores that do not compress.
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

import zstandard

from ..dag.cid import IDENTITY, block_matches, format_cid, split_cid
from ..errors import BlockCorrupt, BlockNotFound, StoreError
from .atrest import (
    ENCODING_DELTA,
    ENCODING_IDENTITY,
    ENCODING_NAMES,
    SHIPPED_ID,
    SMALL_BLOCK,
    BlockCodec,
    Dictionary,
    UndecodablePayload,
    UnknownEncoding,
    shipped_dictionary,
    train_dictionary,
    with_dict_id,
)
from .delta import MAX_DEPTH, MAX_REFS, DeltaHeader, decode_payload, encode_payload, read_header, with_depth
from .lock import CollectorLock
from .packs import (
    ENCODING_PACKED,
    ENCODING_PACKED_DELTA,
    FRAME_LEVEL,
    GROUP_BELOW,
    Locator,
    PackBuilder,
    Placed,
    parse_locator,
)
from .pushed import PushedRoot, PushedRoots
from .roots import ArchiveRecord, Pin, StoreRoots, hold_writer_lock

# The public names; the index's records are defined with it (importer.sinks.roots) and re-exported.
__all__ = [
    "AUTO_VACUUM_MODES",
    "BATCH_BYTES",
    "BUSY_TIMEOUT_MS",
    "COMPRESSIONS",
    "COMPRESSION_ENV",
    "DB_NAME",
    "DEFAULT_COMPRESSION",
    "DELETE_ROWS",
    "DELTA_ENCODINGS",
    "DELTA_ROWS",
    "FRAME_CACHE_BYTES",
    "PACKED_ENCODINGS",
    "RECLAIM_FRACTION",
    "RECOMPRESS_ROWS",
    "REFERENCE_CACHE_BYTES",
    "SAMPLE_BLOCKS",
    "SAMPLE_BYTES",
    "SCHEMA_VERSION",
    "SQL_PARAMS",
    "STORE_ENV",
    "TRAIN_AFTER",
    "TRAIN_GROWTH",
    "ArchiveRecord",
    "BlockRow",
    "BlockStore",
    "DeleteReport",
    "EncodingStats",
    "PageStats",
    "Pin",
    "PushedRoot",
    "StoreStats",
    "default_store_path",
]

MiB: Final = 1024 * 1024

#: Version of the table layout below, kept in ``meta``; bump it with every migration.
#: 1: blocks. 2: adds ``archives``, the mirror's index (file name -> root CID, sha256, size).
#: 3: adds ``dictionaries`` (zstd dictionaries for encoding 2). 4: adds ``delta_refs`` (encoding 3),
#: and later ``attempts`` (a cache that older schema-4 code ignores, so the version stays 4).
#: 5: adds ``pins`` (roots that ``store gc`` keeps besides the archive index): schema-4 code would
#: collect pinned blocks, so an older binary must refuse the store.
#: 6: adds ``pushed`` (which roots each IPFS node holds, recorded by ``push``; importer.sinks.pushed).
#: 7: adds ``packs`` and ``pack_usage`` (encodings 4 and 5, :mod:`importer.sinks.packs`), which
#: schema-6 code could not read: it refuses the store at open.
SCHEMA_VERSION: Final = 7
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
_INSERT: Final = "INSERT OR IGNORE INTO blocks (cid, encoding, data, size) VALUES (?, ?, ?, ?)"
#: CIDs looked up per query when sorting out the buffered blocks the store already has (SQLite's
#: default limit on bound parameters was 999 before 3.32).
_LOOKUP_ROWS: Final = 900
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
#: Decoded pack frames kept for the next reads: a fetch reads a frame's small blocks one after the
#: other, so it decodes each frame once; 8 MiB holds 64 frames of 128 KiB.
FRAME_CACHE_BYTES: Final = 8 * MiB
#: Encodings whose payload is a delta (:mod:`importer.sinks.delta`): in a row, or in a pack.
DELTA_ENCODINGS: Final = (ENCODING_DELTA, ENCODING_PACKED_DELTA)
#: Encodings whose row holds a locator into a pack.
PACKED_ENCODINGS: Final = (ENCODING_PACKED, ENCODING_PACKED_DELTA)

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
    # Roots pushed to IPFS nodes (importer.sinks.push): ``peer`` is the node's peer ID; a row is
    # written only after the node pinned the root, so it holds the root's whole DAG.
    ("CREATE TABLE IF NOT EXISTS pushed ("
     " peer TEXT NOT NULL,"
     " root BLOB NOT NULL,"
     " pushed_at REAL NOT NULL,"
     " PRIMARY KEY (peer, root))"),
    # Packs (importer.sinks.packs): segments of many blocks in one row, never updated (SQLite
    # rewrites a whole row, megabyte of blob and all, to change one column of it).
    # AUTOINCREMENT: a deleted pack's ID is never reused, so a frame another process cached
    # under (pack, offset) can never name other bytes.
    ("CREATE TABLE IF NOT EXISTS packs ("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " data BLOB NOT NULL)"),
    # What each pack holds. logical: bytes of the blocks placed in it; live: bytes of those whose
    # rows still point to it (deletes and rewrites lower it; a pack at 0 is deleted, one under
    # half is rewritten by compact_packs); level: the zstd level its frames were made at, beyond
    # the default (0), by compact_packs.
    ("CREATE TABLE IF NOT EXISTS pack_usage ("
     " pack INTEGER PRIMARY KEY,"
     " logical INTEGER NOT NULL,"
     " live INTEGER NOT NULL,"
     " level INTEGER NOT NULL DEFAULT 0)"),
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

    ``stored_bytes`` sums the payloads as stored (rows' payloads and whole packs, dead parts
    included: ``dead_bytes`` of the packs belong to no block any more); :attr:`at_rest_bytes`
    adds the dictionaries, which is what the blocks cost before SQLite's pages; ``disk_bytes``
    is the database files' size. A packed encoding's ``stored_bytes`` counts its segments, a
    block sharing a frame with others for its share of the frame by size.
    """

    blocks: int
    logical_bytes: int
    stored_bytes: int
    disk_bytes: int
    encodings: tuple[EncodingStats, ...] = ()
    dictionaries: int = 0
    dictionary_bytes: int = 0
    compression: str = DEFAULT_COMPRESSION
    packs: int = 0
    pack_bytes: int = 0
    dead_bytes: int = 0

    @property
    def at_rest_bytes(self) -> int:
        return self.stored_bytes + self.dictionary_bytes

    @property
    def ratio(self) -> float:
        """Logical bytes per byte at rest (1.0 for an empty store)."""
        return self.logical_bytes / self.at_rest_bytes if self.at_rest_bytes else 1.0

    @property
    def disk_ratio(self) -> float:
        """The files on disk per byte at rest: what SQLite's pages add (1.0 for an empty store)."""
        return self.disk_bytes / self.at_rest_bytes if self.at_rest_bytes else 1.0


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


class BlockStore(StoreRoots, PushedRoots):
    """A durable block store in one SQLite file; a :class:`BlockSink` and a :class:`BlockSource`.

    Puts are buffered in memory and committed in one transaction per :data:`BATCH_BYTES`, at
    :meth:`flush` and at :meth:`close`. Leaving a ``with`` block by an exception drops the
    uncommitted batch (what is committed stays: every committed block is whole and valid).
    The first write takes the collector lock shared (:mod:`importer.sinks.lock`) and :meth:`close`
    drops it: a process that keeps a store open between imports holds up ``store gc`` meanwhile.
    """

    stores_blocks = True
    #: Whether a compressing store writes new blocks into packs when ``packs`` is not given.
    default_packs = True

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 batch_bytes: int = BATCH_BYTES, compression: str | None = None,
                 train_after: int = TRAIN_AFTER, packs: bool | None = None) -> None:
        self.path = Path(path)
        #: Whether a compressing store writes new blocks into packs (the default) or one row each
        #: (the layout of schema 4, still read, and still written by rewrites and deletes).
        self.packs = self.default_packs if packs is None else packs
        self.batch_bytes = batch_bytes
        self.train_after = train_after
        self._pending: dict[bytes, bytes] = {}
        self._pending_bytes = 0
        self._references: OrderedDict[bytes, bytes] = OrderedDict()
        self._references_bytes = 0
        self._frames: OrderedDict[tuple[int, int, int], bytes] = OrderedDict()
        self._frames_bytes = 0
        #: Deltas decided before their block's first write: CID -> (payload, references, plain length).
        self._staged: dict[bytes, tuple[bytes, tuple[bytes, ...], int]] = {}
        self._staged_done = (0, 0)
        self._frame_compressor: tuple[int, int, zstandard.ZstdCompressor] | None = None
        self._large: dict[int, zstandard.ZstdCompressor] = {}
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
                 level: int = 0) -> tuple[list[tuple[bytes, int, bytes, int]], list[tuple[bytes, list[Placed]]]]:
        """``blocks`` as packs (:class:`~importer.sinks.packs.PackBuilder`), ``deltas`` as their payloads;
        empty blocks apart, as rows of their own (they take no pack space). ``level``: a zstd
        level for every frame instead of the defaults (:meth:`compact_packs`)."""
        builder = PackBuilder(self._frame_compressor_now(level))
        large = self._large_compressor(level)
        packs: list[tuple[bytes, list[Placed]]] = []
        empty: list[tuple[bytes, int, bytes, int]] = []
        for cid, block in blocks.items():
            staged = deltas.get(cid)
            if not block:
                empty.append((cid, ENCODING_IDENTITY, b"", 0))
            elif staged is not None:
                builder.add_delta(cid, len(block), staged[0], staged[1])
            elif len(block) < GROUP_BELOW:
                builder.add_grouped(cid, block)
            else:
                encoding, payload = self._codec.encode(block, large)
                builder.add_frame(cid, len(block), payload, encoding != ENCODING_IDENTITY)
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
        self._conn.executemany(_INSERT, empty)
        for data, placed in packs:
            pack = self._conn.execute("INSERT INTO packs (data) VALUES (?)", (data,)).lastrowid
            assert pack is not None
            live = 0
            for p in placed:
                if p.cid not in blocks:
                    continue
                if p.encoding == ENCODING_PACKED_DELTA and not self._still_sound(
                        p.refs, read_header(data[p.offset:p.offset + p.length]).depth):
                    # A reference deleted or deepened by another process since the delta was
                    # made: the block is written on its own instead.
                    cursor = self._conn.execute(_INSERT, (p.cid, *self._encode(blocks[p.cid]), p.size))
                    self._conn.execute("DELETE FROM delta_refs WHERE cid = ?", (p.cid,))
                    added_small += cursor.rowcount if p.size < SMALL_BLOCK else 0
                    continue
                if self._conn.execute(_INSERT, (p.cid, p.encoding, p.locator(pack), p.size)).rowcount != 1:
                    continue  # stored already (by an earlier batch or another process)
                live += p.size
                if p.encoding == ENCODING_PACKED_DELTA:
                    self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)",
                                           [(ref, p.cid) for ref in p.refs])
                    written += 1
                    saved += deltas[p.cid][2] - p.length
                elif p.size < SMALL_BLOCK:
                    added_small += 1
            if live:
                self._conn.execute("INSERT INTO pack_usage VALUES (?, ?, ?, ?)",
                                   (pack, sum(p.size for p in placed), live, level))
            else:
                self._conn.execute("DELETE FROM packs WHERE id = ?", (pack,))
        if new:
            self._count_small(added_small)
        return written, saved

    def _count_small(self, added: int) -> None:
        """Inside a write transaction: ``added`` more small blocks towards the next dictionary."""
        if added > 0:
            self._conn.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = CAST(value AS INTEGER) + excluded.value", (_SMALL_COUNTER, added))

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

    def _frame_compressor_now(self, level: int = 0) -> zstandard.ZstdCompressor:
        """The compressor of grouped frames: :data:`~importer.sinks.packs.FRAME_LEVEL` (or ``level``),
        with the newest dictionary."""
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
        if dict_id == SHIPPED_ID:
            return shipped_dictionary()
        row = self._conn.execute("SELECT data FROM dictionaries WHERE id = ?", (dict_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def _refresh_dictionary(self) -> None:
        """Compress small blocks with the newest dictionary, whichever process trained it; a store
        writing packs that has trained none uses the one the package ships
        (:data:`~importer.sinks.atrest.SHIPPED_DICTIONARY`)."""
        if not self._codec.compress:
            return
        row = self._conn.execute("SELECT id, data FROM dictionaries ORDER BY id DESC LIMIT 1").fetchone()
        if row is not None and int(row[0]) != self._codec.dictionary_id:
            self._codec.use_dictionary(int(row[0]), bytes(row[1]))
        elif row is None and self.packs and self._codec.dictionary_id != SHIPPED_ID:
            shipped = shipped_dictionary()
            if shipped is not None:
                self._codec.use_dictionary(SHIPPED_ID, shipped)

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

    # -- deltas --------------------------------------------------------------------------------

    def delta_encode(self, candidates: Iterable[tuple[bytes, Sequence[bytes]]], *,
                     chunk_rows: int = DELTA_ROWS) -> tuple[int, int]:
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
        they leave half dead are compacted (:meth:`compact_packs`).
        """
        if not self._codec.compress:
            self.flush()
            return 0, 0
        committed: list[tuple[bytes, Sequence[bytes]]] = []
        for cid, refs in candidates:
            if cid not in self._pending or not self._stage(cid, refs):
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
        already (an earlier batch or another process wrote it: :meth:`delta_encode` rewrites it)."""
        if not refs or len(refs) > MAX_REFS or cid in refs:
            return True
        try:
            if self._conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone() is not None:
                return False
            depth = self._depth_of(refs)
            if depth + 1 > MAX_DEPTH:
                return True
            # A reference that is only buffered raises UndecodablePayload here (not in the store).
            ref_blocks = [self._reference(ref, MAX_DEPTH + 1) for ref in refs]
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
        return True

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

    def _delta_batch(self, batch: Sequence[tuple[bytes, Sequence[bytes]]]) -> tuple[int, int]:
        updates: list[tuple[bytes, bytes, Sequence[bytes], bytes, int]] = []
        for cid, refs in batch:
            made = self._delta_of(cid, refs)
            if made is not None:
                updates.append((cid, *made))
        if not updates:
            return 0, 0
        rewritten = saved = 0
        with self._transaction("store deltas"):
            for cid, payload, refs, old_data, old_length in updates:
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
                # Only if the row is as it was read (not rewritten by another process since).
                if self._conn.execute("SELECT 1 FROM blocks WHERE cid = ? AND data = ?",
                                      (cid, old_data)).fetchone() is None:
                    continue
                self._release(cid)
                self._conn.execute("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?",
                                   (ENCODING_DELTA, payload, cid))
                self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)", [(ref, cid) for ref in refs])
                rewritten += 1
                saved += old_length - len(payload)
        return rewritten, saved

    def _delta_of(self, cid: bytes, refs: Sequence[bytes]) -> tuple[bytes, Sequence[bytes], bytes, int] | None:
        """``(payload, refs, the row's data now, the payload length it replaces)`` if a delta of ``cid`` pays."""
        if not refs or len(refs) > MAX_REFS or cid in refs:
            return None
        try:
            row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
            if row is None or int(row[0]) in DELTA_ENCODINGS:
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
        replaced = self._payload_length(int(row[0]), data, int(row[2]))
        return (payload, tuple(refs), data, replaced) if len(payload) < replaced else None

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
        """A block of :data:`~importer.sinks.packs.ENCODING_PACKED`: its raw segment, or its slice of a frame."""
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

    def has(self, cid: bytes) -> bool:
        if cid in self._pending:
            return True
        try:
            row = self._conn.execute("SELECT 1 FROM blocks WHERE cid = ?", (cid,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read the index: {e}") from None
        return row is not None

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
                header = read_header(payload)
                yield bytes(cid), header.depth, header.refs
        except UndecodablePayload as e:
            raise self._fail(f"a delta does not parse: {e}") from None
        except sqlite3.Error as e:
            raise self._fail(f"cannot list deltas: {e}") from None

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

    # -- deleting blocks and giving free pages back --------------------------------------------

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
                self._release(dependent)
                self._conn.execute("UPDATE blocks SET encoding = ?, data = ? WHERE cid = ?", (encoding, data, dependent))
                self._conn.execute("DELETE FROM delta_refs WHERE cid = ?", (dependent,))
                self._conn.executemany("INSERT OR IGNORE INTO delta_refs VALUES (?, ?)", [(r, dependent) for r in refs])
                rewritten += 1
            for chunk in _chunks(batch, SQL_PARAMS):
                marks = ", ".join("?" * len(chunk))
                self._conn.execute(f"DELETE FROM delta_refs WHERE cid IN ({marks}) OR ref IN ({marks})",
                                   (*chunk, *chunk))
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
        header = self._delta_header(cid)
        if header is None:
            return plain_encoding, plain, ()
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
                        return ENCODING_DELTA, delta, refs
            except UndecodablePayload:
                pass  # a reference damaged or gone: plain it is
        return plain_encoding, plain, ()

    def _delta_header(self, cid: bytes) -> DeltaHeader | None:
        """The delta header of the committed block ``cid`` (in a row or in a pack); None if it is no delta."""
        row = self._conn.execute("SELECT encoding, data, size FROM blocks WHERE cid = ?", (cid,)).fetchone()
        if row is None or int(row[0]) not in DELTA_ENCODINGS:
            return None
        try:
            payload = bytes(row[1])
            if int(row[0]) == ENCODING_PACKED_DELTA:
                payload = self._segment(parse_locator(payload, int(row[2])))
            return read_header(payload)
        except UndecodablePayload:
            raise BlockCorrupt(format_cid(cid), str(self.path), "nothing: its delta header is damaged") from None

    def iter_rows(self, *, chunk_rows: int = DELETE_ROWS) -> Iterator[BlockRow]:
        """Every committed block's CID, encoding, logical size and payload size, in the order stored.

        Read in chunks of rowids, one short read each, so a caller may write between them.
        """
        last = 0
        while True:
            try:
                rows = self._conn.execute(
                    f"SELECT rowid, cid, {self._STORED_COLUMNS} FROM blocks WHERE rowid > ? ORDER BY rowid LIMIT ?",
                    (last, chunk_rows)).fetchall()
            except sqlite3.Error as e:
                raise self._fail(f"cannot list blocks: {e}") from None
            if not rows:
                return
            last = int(rows[-1][0])
            for _, cid, encoding, size, length, locator in rows:
                yield BlockRow(bytes(cid), int(encoding), int(size),
                               self._stored_of(int(encoding), int(size), int(length), locator))

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
                total += sum(self._stored_of(int(e), int(n), int(length), loc) for e, n, length, loc in self._conn.execute(
                    f"SELECT {self._STORED_COLUMNS} FROM blocks WHERE cid IN ({', '.join('?' * len(chunk))})", chunk))
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
