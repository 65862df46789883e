"""The block store's foundation: its state, settings, transactions, free pages and lifetime.

:class:`StoreBase` is the bottom layer of :class:`~importer.sinks.store.BlockStore`, which is
built up one role per module, each a class on top of the previous one: reading
(:mod:`.reading`), compression settings and dictionaries (:mod:`.dictionaries`), writing
(:mod:`.writing`), keeping packs (:mod:`.repack`), deltas (:mod:`.deltas`), upkeep (deletes,
stats, verification: :mod:`.upkeep`). This layer holds what they all share: the connection
(:mod:`.schema`), the buffered blocks and the caches, one write transaction at a time, and the
file's free pages.

Free pages: a store created by this version has ``auto_vacuum = INCREMENTAL`` (it can only be set
before the first table), so the pages that deletes and delta rewrites free are given back to the
file system by :meth:`StoreBase.reclaim_free_pages` (SQLite moves the last pages into the holes
and truncates the file) instead of waiting for a full ``VACUUM``. Older stores keep
``auto_vacuum = NONE`` until :meth:`StoreBase.vacuum` rebuilds them with it.
"""

from __future__ import annotations

import os
import sqlite3
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Final, Self, TypeVar

import zstandard

from ...errors import StoreError
from ..atrest import SHIPPED_ID, BlockCodec, loaded_dictionary, shipped_dictionary
from ..lock import CollectorLock
from .records import PageStats
from .schema import (
    BUSY_TIMEOUT_MS,
    DEFAULT_COMPRESSION,
    MiB,
    blocks_have_rowid,
    connect,
    create_table,
    has_table,
)

#: Environment variable naming the store when ``--store`` is not given.
STORE_ENV: Final = "DPIP_STORE"
#: Buffered puts are committed once they reach this many bytes: large enough that the per-commit
#: cost (a WAL frame header per page, a lock round-trip) is amortised, small enough that a second
#: importer waiting on the write lock gets its turn within a second or so.
BATCH_BYTES: Final = 64 * MiB
#: Environment variable that overrides the store's compression setting for one process.
COMPRESSION_ENV: Final = "DPIP_STORE_COMPRESSION"
COMPRESSIONS: Final = ("none", "zstd")
#: Small blocks committed without a dictionary before the first one is trained. At ~4 KiB each
#: (the ten wheels' average) 1000 make ~4 MB of samples, enough for a ~40 KiB dictionary at
#: zstd's 100x. Importing 18 real wheels (the ten of :mod:`importer.sinks.atrest` plus requests,
#: urllib3, idna, packaging, attrs, click, jinja2, pygments: 2,304 blocks, 28.7 MB) trained one
#: of 44,100 bytes on the way and ended at ratio 3.336 against 3.309 with none (dictionary
#: included); 2000 would not have trained at all on those wheels (1,866 small blocks).
TRAIN_AFTER: Final = 1000
#: Host parameters per ``IN (...)`` list: SQLite before 3.32 allowed 999 in a statement, and one
#: statement below names each twice.
SQL_PARAMS: Final = 400
#: Rewrites that shrink rows in place (deltas, recompression) give the freed pages back once they
#: are this share of the file: below it, the next import reuses them for free; above it, moving
#: the file's last pages into them costs about as much I/O as the rewrite that freed them
#: (``python -m bench.perf_gc``), and issue 14 wants the file within 10% of its payload.
RECLAIM_FRACTION: Final = 0.10
#: ... except a freelist of at most this many bytes, which is given back whatever its share: in a
#: small store a few freed pages are more than 10% of its payload (a 3-release demo chain of
#: 0.5 MB kept 36,864 B free after an sdist's import, 7.3% of its payload, which put its file at
#: 1.14x), while giving 1 MiB back takes about 14 ms whatever the file's size (``python -m
#: bench.perf_gc --reclaim-mib 64``: 32 MiB of holes, every other 64 KiB block, in 0.46 s;
#: ``--reclaim-mib 2``: 1 MiB in 0.01 s).
RECLAIM_ALWAYS_BYTES: Final = 1 * MiB
#: ``PRAGMA auto_vacuum`` values.
AUTO_VACUUM_MODES: Final = {0: "none", 1: "full", 2: "incremental"}


_T = TypeVar("_T")


def chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    """``items`` in slices of at most ``size`` (one ``IN (...)`` list each)."""
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


class StoreBase:
    """What every layer of the store shares (module docstring); not a store on its own."""

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
        #: The references of those deltas: blocks that are not made deltas after them.
        self._staged_refs: set[bytes] = set()
        self._staged_done = (0, 0)
        self._frame_compressor: tuple[int, int, zstandard.ZstdCompressor] | None = None
        self._large: dict[int, zstandard.ZstdCompressor] = {}
        self._lock = CollectorLock(self.path)
        if compression is None:
            compression = os.environ.get(COMPRESSION_ENV) or None
        if compression is not None and compression not in COMPRESSIONS:
            raise self._fail(f"unknown compression {compression!r} (choose from {', '.join(COMPRESSIONS)})")
        # A new store's blocks are keyed by CID without a rowid if this process writes packs
        # (rows of a locator each); rows of whole blocks would spill into overflow pages.
        self._conn = connect(self.path, create, self._fail,
                             packs=self.packs and (compression or DEFAULT_COMPRESSION) == "zstd")
        #: Lazy tables (:data:`~importer.sinks.store.schema.LAZY_TABLES`) seen to exist: a table is
        #: never dropped, so only their absence is asked again.
        self._tables: set[str] = set()
        #: Whether ``delta_refs`` names blocks by key (schema 11) or CID, once it exists (:mod:`.refs`).
        self._keyed_refs: bool | None = None
        try:
            #: Whether ``blocks`` is a rowid table (a store made before schema 8), read in rowid order.
            self._blocks_rowid = blocks_have_rowid(self._conn)
            self.compression = compression or self._meta("compression") or DEFAULT_COMPRESSION
        except BaseException:
            self._conn.close()
            raise
        self._codec = BlockCodec(compress=self.compression == "zstd", load_dictionary=self._load_dictionary)

    def _fail(self, reason: str) -> StoreError:
        return StoreError(str(self.path), reason)

    def _meta(self, key: str) -> str | None:
        try:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read settings: {e}") from None
        return None if row is None else str(row[0])

    def _has_table(self, name: str) -> bool:
        """Whether the lazy table ``name`` exists yet (a reader takes a missing one as empty)."""
        if name not in self._tables and has_table(self._conn, name):
            self._tables.add(name)
        return name in self._tables

    def _create_table(self, name: str) -> None:
        """Inside a write transaction: make the lazy table ``name`` if no process has yet."""
        if name not in self._tables:
            create_table(self._conn, name)

    def _load_dictionary(self, dict_id: int) -> bytes | None:
        if dict_id == SHIPPED_ID:
            return shipped_dictionary()
        if not self._has_table("dictionaries"):
            return None
        row = self._conn.execute("SELECT data FROM dictionaries WHERE id = ?", (dict_id,)).fetchone()
        return None if row is None else loaded_dictionary(bytes(row[0]))  # damaged: UndecodablePayload

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

    def flush(self) -> None:
        """Commit every buffered block (the write path: :class:`~importer.sinks.store.writing.StoreWriter`)."""
        raise NotImplementedError

    def _write_pending(self) -> bool:
        """Commit every buffered block; False if there was none (:class:`~importer.sinks.store.writing.StoreWriter`)."""
        raise NotImplementedError

    # -- free pages ------------------------------------------------------------------------------

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
        if the free pages are at least ``min_fraction`` of the file or at most
        :data:`RECLAIM_ALWAYS_BYTES`. SQLite moves the pages at the
        end of the file into the free ones and truncates it; a checkpoint then copies that into
        the file and empties the write-ahead log, which holds every page moved. It never waits:
        while a reader holds an older snapshot it does what it can, and the log is cut back to
        64 MiB at the next write instead.
        """
        before = self.page_stats()
        if before.auto_vacuum != "incremental" or not before.free_pages \
                or (before.free_pages < min_fraction * before.pages and before.free_bytes > RECLAIM_ALWAYS_BYTES):
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
