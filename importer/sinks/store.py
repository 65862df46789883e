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

Forward compatibility: each row has an ``encoding`` column (0 = stored as is). Compression at
rest (zstd, or zstd with a trained dictionary for small blocks) will add encodings 1 and 2 and a
table of dictionaries; a store written now keeps reading because every existing row says 0. A
reader that meets an encoding it does not know refuses that block with a clear error, and a store
whose ``meta.schema_version`` is newer than :data:`SCHEMA_VERSION` is refused at open, so an old
binary never misreads a newer store. Room is left for the mirror's index (archive name -> root
CID, sha256, size) as a later table, added by a schema migration that bumps the version.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from ..dag.cid import IDENTITY, block_matches, format_cid, split_cid
from ..errors import BlockCorrupt, BlockNotFound, StoreError

MiB: Final = 1024 * 1024

#: Version of the table layout below, kept in ``meta``; bump it with every migration.
#: 1: blocks. 2: adds ``archives``, the mirror's index (file name -> root CID, sha256, size).
SCHEMA_VERSION: Final = 2
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

#: ``blocks.encoding`` values. Only IDENTITY is written today.
ENCODING_IDENTITY: Final = 0
ENCODING_NAMES: Final = {ENCODING_IDENTITY: "identity"}

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
)


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Totals of a store: block count, logical bytes, bytes as stored, bytes on disk."""

    blocks: int
    logical_bytes: int
    stored_bytes: int
    disk_bytes: int


def default_store_path(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """The store directory: ``--store``, else ``$DPIP_STORE``, else the user data directory."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get(STORE_ENV)
    if env:
        return Path(env)
    from platformdirs import user_data_dir

    return Path(user_data_dir("dpip-importer")) / "store"


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One row of the mirror's index: an archive file name and where its DAG is."""

    name: str
    root: bytes
    sha256: bytes
    size: int
    imported_at: float


class BlockStore:
    """A durable block store in one SQLite file; a :class:`BlockSink` and a :class:`BlockSource`.

    Puts are buffered in memory and committed in one transaction per :data:`BATCH_BYTES`, at
    :meth:`flush` and at :meth:`close`. Leaving a ``with`` block by an exception drops the
    uncommitted batch (what is committed stays: every committed block is whole and valid).
    """

    stores_blocks = True

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True,
                 batch_bytes: int = BATCH_BYTES) -> None:
        self.path = Path(path)
        self.batch_bytes = batch_bytes
        self._pending: dict[bytes, bytes] = {}
        self._pending_bytes = 0
        self._conn = self._connect(create)

    # -- opening -------------------------------------------------------------------------------

    def _fail(self, reason: str) -> StoreError:
        return StoreError(str(self.path), reason)

    def _connect(self, create: bool) -> sqlite3.Connection:
        db = self.path / DB_NAME
        if self.path.exists() and not self.path.is_dir():
            raise self._fail("exists and is not a directory")
        if not db.exists():
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
            elif int(row[0]) > SCHEMA_VERSION:
                raise self._fail(f"schema version {row[0]} is newer than this program's "
                                 f"{SCHEMA_VERSION}: upgrade dpip-importer")
            elif int(row[0]) < SCHEMA_VERSION:
                # Every migration so far only adds tables (CREATE IF NOT EXISTS above).
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
        self._pending[cid] = block
        self._pending_bytes += len(block)
        if self._pending_bytes >= self.batch_bytes:
            self.flush()

    def put_many(self, blocks: Iterable[tuple[bytes, bytes]]) -> None:
        for cid, block in blocks:
            self.put(cid, block)

    def flush(self) -> None:
        """Commit every buffered block in one transaction."""
        if not self._pending:
            return
        rows = [(cid, *self._encode(block), len(block)) for cid, block in self._pending.items()]
        try:
            self._begin()
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO blocks (cid, encoding, data, size) VALUES (?, ?, ?, ?)", rows)
                self._commit()
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise self._fail(f"cannot write blocks: {e}") from None
        self._pending.clear()
        self._pending_bytes = 0

    def _encode(self, block: bytes) -> tuple[int, bytes]:
        """``(encoding, stored bytes)`` of a block: the one place compression at rest will go."""
        return ENCODING_IDENTITY, block

    def _begin(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._conn.execute("COMMIT")

    def delete(self, cid: bytes) -> bool:
        """Remove one block; True if it was there."""
        if self._pending.pop(cid, None) is not None:
            return True
        try:
            cursor = self._conn.execute("DELETE FROM blocks WHERE cid = ?", (cid,))
        except sqlite3.Error as e:
            raise self._fail(f"cannot delete a block: {e}") from None
        return cursor.rowcount > 0

    def record_archive(self, record: ArchiveRecord) -> None:
        """Add an archive to the index, after committing every buffered block."""
        self.flush()
        try:
            self._begin()
            self._conn.execute("INSERT OR REPLACE INTO archives VALUES (?, ?, ?, ?, ?)",
                               (record.name, record.root, record.sha256, record.size, record.imported_at))
            self._commit()
        except sqlite3.Error as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise self._fail(f"cannot record archive {record.name}: {e}") from None

    def iter_archives(self) -> Iterator[ArchiveRecord]:
        """The index, oldest import first."""
        for row in self._conn.execute("SELECT name, root, sha256, size, imported_at FROM archives ORDER BY rowid"):
            yield ArchiveRecord(row[0], bytes(row[1]), bytes(row[2]), int(row[3]), float(row[4]))

    # -- reading -------------------------------------------------------------------------------

    def get(self, cid: bytes) -> bytes:
        """The block named ``cid``, checked against it; BlockNotFound or BlockCorrupt otherwise."""
        block = self._pending.get(cid)
        if block is None:
            try:
                row = self._conn.execute(
                    "SELECT encoding, data FROM blocks WHERE cid = ?", (cid,)).fetchone()
            except sqlite3.Error as e:
                raise self._fail(f"cannot read a block: {e}") from None
            if row is None:
                _, _, code, digest = split_cid(cid)
                if code == IDENTITY:  # an inlined block: the CID carries the bytes themselves
                    return digest
                raise BlockNotFound(format_cid(cid), str(self.path))
            block = self._decode(cid, int(row[0]), bytes(row[1]))
        self._check(cid, block)
        return block

    def _decode(self, cid: bytes, encoding: int, data: bytes) -> bytes:
        """Inverse of :meth:`_encode`; an encoding from a newer version is refused, not guessed."""
        if encoding == ENCODING_IDENTITY:
            return data
        raise self._fail(f"block {format_cid(cid)} is stored with encoding {encoding}, "
                         "which this version cannot read: upgrade dpip-importer")

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

    def verify(self) -> Iterator[tuple[bytes, str | None]]:
        """Re-hash every committed block; yield ``(cid, None)`` if sound, else ``(cid, reason)``."""
        for cid in self.iter_cids():
            try:
                self.get(cid)
            except (BlockCorrupt, StoreError) as e:
                yield cid, e.reason if isinstance(e, StoreError) else str(e)
            except BlockNotFound:
                continue  # deleted by another process since the listing started
            else:
                yield cid, None

    def stats(self) -> StoreStats:
        """Block count, logical bytes, stored bytes and the size of the files on disk."""
        try:
            count, logical, stored = self._conn.execute(
                "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(length(data)), 0) FROM blocks"
            ).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot compute stats: {e}") from None
        disk = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                disk += (self.path / (DB_NAME + suffix)).stat().st_size
            except FileNotFoundError:
                pass
        return StoreStats(int(count), int(logical), int(stored), disk)

    # -- lifetime ------------------------------------------------------------------------------

    def close(self) -> None:
        """Commit buffered blocks and close the database."""
        try:
            self.flush()
        finally:
            self._conn.close()

    def abort(self) -> None:
        """Drop buffered blocks and close the database (committed blocks stay)."""
        self._pending.clear()
        self._pending_bytes = 0
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
