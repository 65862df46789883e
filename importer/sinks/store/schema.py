"""The store's SQLite file: how it is opened, its tables, and the migrations of older stores.

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
  puts are buffered and committed in batches (:data:`~importer.sinks.store.base.BATCH_BYTES`),
  so two importers interleave batch by batch. Writes use ``BEGIN IMMEDIATE`` so that a reader
  never has to be upgraded to a writer mid-transaction (the one case where SQLite fails without
  waiting).
* ``auto_vacuum=INCREMENTAL`` for a new store (it can only be set before the first table): the
  pages that deletes and rewrites free go back to the file system
  (:meth:`~importer.sinks.store.base.StoreBase.reclaim_free_pages`).
* Blocks live in a ``WITHOUT ROWID`` table keyed by CID in a store made since schema 8 by a
  process that writes packs (the default): a block row there is a locator into a pack
  (:mod:`importer.sinks.packs`) of a few bytes, and a rowid table kept its CID twice, in the row
  and in the index that finds it (requests' store: 11,119 B of rows and 8,356 B of index for 216
  blocks). A store made to hold whole blocks in rows (``compression=none``, ``packs=False``)
  keeps a rowid table: there a row of 700 bytes keeps 232 in its leaf and puts the rest on an
  overflow page of its own, where a rowid table keeps rows up to a page in the leaf (SQLite
  advises rowid tables for rows larger than about 1/20 of a page). Rows of their own in a
  ``WITHOUT ROWID`` store (an empty block, a delta whose reference went away meanwhile, a
  process told ``--compression none``) are read and written the same, only less densely. The
  order blocks were written in, which a rowid gave, is their locators' (pack, offset) order
  (:meth:`~importer.sinks.store.reading.StoreReader.cids_in_written_order`). Older stores keep
  their rowid table, read in rowid order. The tables of small rows keyed by their primary key
  and never read in rowid order (``meta``, ``delta_refs``, ``pins``) are ``WITHOUT ROWID`` too:
  ``delta_refs`` (then two CIDs a row, a row per reference of every delta) took about half of
  the "index and rows" of unseen7's stores (``python -m bench.diskusage``); since schema 11 it
  names both blocks by a 6-byte key (:func:`ref_key`).
* Pages of :data:`PAGE_SIZE` (2 KiB) in a new store, and the tables most stores never write
  made on first use (:data:`LAZY_TABLES`): what a store of one small project's chain takes
  beside its payload is mostly pages that are each a table's or a pack's, partly empty.

Forward compatibility: a store whose ``meta.schema_version`` is newer than
:data:`NEWEST_SCHEMA` is refused at open, so an old binary never misreads a newer store (and a
reader that meets an encoding it does not know refuses that block). Older stores are migrated at
open: every migration so far only adds tables; a store with a rowid ``blocks`` stays at
:data:`ROWID_SCHEMA_VERSION`, which older code opens.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from ...errors import StoreError

MiB: Final = 1024 * 1024

#: Version of the table layout below, kept in ``meta``; bump it with every migration.
#: 1: blocks. 2: adds ``archives``, the mirror's index (file name -> root CID, sha256, size).
#: 3: adds ``dictionaries`` (zstd dictionaries for encoding 2). 4: adds ``delta_refs`` (encoding 3),
#: and later ``attempts`` (a cache that older schema-4 code ignores, so the version stays 4).
#: 5: adds ``pins`` (roots that ``store gc`` keeps besides the archive index): schema-4 code would
#: collect pinned blocks, so an older binary must refuse the store.
#: 6: adds ``pushed`` (which roots each IPFS node holds, recorded by ``push``; importer.sinks.store.pushed).
#: 7: adds ``packs`` and ``pack_usage`` (encodings 4 and 5, :mod:`importer.sinks.packs`), which
#: schema-6 code could not read: it refuses the store at open.
#: 8: a new store's ``blocks`` may be a ``WITHOUT ROWID`` table, which schema-7 code reads in rowid
#: order and so must refuse, and its tables in :data:`LAZY_TABLES` are made on first use. A store
#: made before keeps its rowid ``blocks`` and stays at 7 (:data:`ROWID_SCHEMA_VERSION`): nothing
#: in it changes, so schema-7 code still opens it (and makes any table it lacks).
SCHEMA_VERSION: Final = 8
#: The newest version of a store whose ``blocks`` is a rowid table.
ROWID_SCHEMA_VERSION: Final = 7
#: 9: the tables of 7 or 8, but cold packs may hold frames larger than code before 9 reads
#: (:data:`~importer.sinks.packs.LEGACY_MAX_FRAME`, 4 MiB; ``store optimize --frame-size``
#: above 2 MiB). Only such a store is raised to 9 (:func:`raise_schema`), so older code
#: keeps reading every other store and refuses this one at open instead of calling its frames
#: damaged; whether its ``blocks`` has a rowid is read from the table, as in 7 and 8.
LARGE_FRAMES_SCHEMA: Final = 9
#: 10: the tables of 7, 8 or 9, but blocks may be stored x86-filtered (:mod:`importer.sinks.x86`):
#: deltas made over filtered bytes (:data:`~importer.sinks.delta.X86_FILTERED`, a flag beside the
#: depth in a delta's header, which code before 10 takes for a depth over 16) and packed blocks
#: whose locator has a sixth varint (:data:`~importer.sinks.packs.LOCATOR_X86`, "trailing bytes"
#: to code before 10): damaged blocks, to older code. Only a store that gets such a row is raised
#: to 10 (:func:`raise_schema`, in the transaction that writes it), so older code refuses it at
#: open; 10 reads every frame 9 does.
X86_DELTAS_SCHEMA: Final = 10
#: 11: fewer CIDs. ``delta_refs`` (a lazy table now, :data:`LAZY_TABLES`) names both blocks of
#: a row by :func:`ref_key` of their CIDs, and a delta's header names each reference by its CID
#: less 24 digest bytes (:func:`importer.sinks.delta.short_ref`). Code before 11 would look a
#: key's reference up by its CID and find no row, or a short reference and find no block: the
#: store is raised to 11 in the transaction that writes any delta, and older code refuses it at
#: open. A store that has the ``delta_refs`` of 4-10 keeps that table (its layout is read from
#: the table, :func:`delta_refs_keyed`), and its deltas written before keep their full CIDs.
DELTA_REF_KEYS_SCHEMA: Final = 11
#: 12: the tables of 7 to 11, but blocks may be stored in the x86 filter's form 2 (more
#: RIP-relative units, :data:`importer.sinks.x86.FORMS`): deltas flagged
#: :data:`~importer.sinks.delta.X86_FILTERED_2` and locators flagged
#: :data:`~importer.sinks.packs.LOCATOR_X86_2`, which code of schema 10 refuses as unknown flags
#: and older code as damaged blocks. Only a store that gets such a row is raised to 12
#: (:func:`raise_schema`, in the transaction that writes it), so older code refuses it at open;
#: 12 reads every row 10 does (form-1 rows stay as they are until ``store optimize`` remakes
#: them).
X86_FORM2_SCHEMA: Final = 12
#: 13: the tables of 7 to 12, but a row of ``dictionaries`` may hold its dictionary as one zstd
#: frame (:func:`importer.sinks.atrest.stored_dictionary`, about a third of its size), which
#: older code would take for a dictionary and so misread every frame made with it. A store is
#: raised to 13 in the transaction that writes the first such row (a new dictionary, or
#: ``store optimize`` compressing the ones it has), so older code refuses it at open; 13 reads
#: plain rows as before.
DICTIONARY_FRAMES_SCHEMA: Final = 13
#: The schema a store is raised to before its first row in each x86 form.
X86_FORM_SCHEMAS: Final = {1: X86_DELTAS_SCHEMA, 2: X86_FORM2_SCHEMA}
#: The newest schema this program reads; a store recording a newer one is refused at open.
NEWEST_SCHEMA: Final = DICTIONARY_FRAMES_SCHEMA
#: Page size of a new store (SQLite's default is 4 KiB; it can only be set before the first
#: table, and a store in WAL mode keeps it for good, ``VACUUM`` included). Every table and index
#: holds at least one page, and every pack's last page is partly empty, which in a store of one
#: small project's chain is most of what it takes beside its payload: requests' 10 archives
#: (169 KB of payload) took 278,528 B in 4 KiB pages, 1.65x (REPORT.md, "The store on disk").
#: On that store and pydantic's (964 KB), rebuilt table by table with the same rows in the same
#: order (blocks ``WITHOUT ROWID``, lazy tables)::
#:
#:     page size           512     1 KiB    2 KiB    4 KiB
#:     requests            1.206   1.230    1.285    1.406   x the payload
#:     pydantic            1.085   1.076    1.077    1.100
#:
#: 2 KiB takes what smaller pages gain on pydantic at half the pages per pack of 1 KiB (a read
#: walks a pack's overflow chain to its segment). On a big store it costs nothing measurable
#: (``python -m bench.perf_disk``, this layout against schema 7's, REPORT.md "The store on disk"):
#: numpy's 5 releases (186.6 MB) import at 1.05 of the speed, fetch at 0.97, a cold ``get`` at
#: 0.96, in a file 1.1% smaller.
PAGE_SIZE: Final = 2048
#: File name of the database inside the store directory.
DB_NAME: Final = "blocks.sqlite3"
#: How long a writer waits for another process's transaction before giving up (milliseconds).
#: One batch of 64 MiB commits in well under a second, so a minute means "something is stuck".
BUSY_TIMEOUT_MS: Final = 60_000
#: Pause between two tries to switch a new store to WAL while another process holds it
#: (:func:`_switch_to_wal`): its lock lasts a few milliseconds, the time to write the header.
_WAL_RETRY_S: Final = 0.005
#: The write-ahead log is truncated back to this after a checkpoint instead of staying at its peak.
JOURNAL_SIZE_LIMIT: Final = 64 * MiB
#: Compression of a store that has no setting yet. ``python -m bench.perf_store --wheels ...``
#: (figures in :mod:`importer.sinks.atrest`): on ten real wheels zstd stores the blocks in 31%
#: of the space (22.2 MB -> 6.8 MB at rest, database files 23.3 MB -> 7.9 MB) for 2-7% of the
#: import's time, and verified reads of them went from 219 to 155 MB/s, still 20x an import.
#: On incompressible 256 KiB leaves the 16 KiB probe decides "raw" at ~14 GB/s, so their store
#: writes stay at the raw store's ~185 MB/s (185.0 against 186.8 in the same run).
DEFAULT_COMPRESSION: Final = "zstd"

#: The tables every store has from its creation on.
_SCHEMA: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    # cid: binary CID; size: logical (decoded) length; encoding: how ``data`` is stored (in a
    # store writing packs, a locator of a few bytes). WITHOUT ROWID in a new store that writes
    # packs (:data:`BLOCKS_WITHOUT_ROWID`).
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

#: ``blocks`` of a new store that writes packs (schema 8): rows of a locator each, keyed by CID.
BLOCKS_WITHOUT_ROWID: Final = _SCHEMA[1] + " WITHOUT ROWID"

#: Tables a store created by schema 8 or later makes only when it first writes a row in them
#: (:func:`create_table`, inside that write's transaction); until then a reader finds none and
#: reads them as empty (:func:`has_table`). Most stores never write some of them (pins, pushed
#: roots, the attempts memo; a small store trains no dictionary), and each table costs a page
#: and its text in ``sqlite_schema`` (module docstring). Older stores keep theirs.
LAZY_TABLES: Final = {
    # id: the zstd dictionary ID, also written in the dictionary's header and in the header of
    # every frame made with it; samples: how many blocks it was trained on.
    "dictionaries": ("CREATE TABLE IF NOT EXISTS dictionaries ("
                     " id INTEGER PRIMARY KEY,"
                     " data BLOB NOT NULL,"
                     " trained_at REAL NOT NULL,"
                     " samples INTEGER NOT NULL)"),
    # Recursive pins: every block ``root`` reaches is kept by ``store gc``. A name holds one root
    # (pinning another root under it replaces it); ``pin add CID`` names the pin after the CID.
    "pins": ("CREATE TABLE IF NOT EXISTS pins ("
             " name TEXT NOT NULL PRIMARY KEY,"
             " root BLOB NOT NULL,"
             " pinned_at REAL NOT NULL) WITHOUT ROWID"),
    # The compressor search's memo of GNU gzip attempts (importer.compress.memo): opaque key and
    # checksummed value; a rowid table, so the newest rows have the highest rowids.
    "attempts": ("CREATE TABLE IF NOT EXISTS attempts ("
                 " key BLOB NOT NULL PRIMARY KEY,"
                 " value BLOB NOT NULL)"),
    # Roots pushed to IPFS nodes (importer.sinks.push): ``peer`` is the node's peer ID; a row is
    # written only after the node pinned the root, so it holds the root's whole DAG.
    "pushed": ("CREATE TABLE IF NOT EXISTS pushed ("
               " peer TEXT NOT NULL,"
               " root BLOB NOT NULL,"
               " pushed_at REAL NOT NULL,"
               " PRIMARY KEY (peer, root))"),
    # One row per (reference, delta row): which rows must be rewritten before the reference is
    # deleted (:mod:`importer.sinks.store.refs`), both named by :func:`ref_key`. Stores of schema
    # 4-10 have this table with both CIDs instead (``ref BLOB``), made at creation, and keep it.
    "delta_refs": ("CREATE TABLE IF NOT EXISTS delta_refs ("
                   " ref INTEGER NOT NULL,"
                   " cid INTEGER NOT NULL,"
                   " PRIMARY KEY (ref, cid)) WITHOUT ROWID"),
}

#: Bytes of a CID's BLAKE2b digest that make its :func:`ref_key`: 6, read as a signed integer,
#: which SQLite stores in 6 bytes (its serial types hold -2**47 .. 2**47-1 so). A row of
#: ``delta_refs`` named both blocks by CID, 72 of the 91 bytes it took in the pages of unseen7's
#: stores (6,581 rows, 600,064 B after ``store optimize --level 19 --frame-size 8MiB``). Keys
#: are found again by value on both sides, since a key is a function of the CID; what a key
#: cannot give back, the delta a dependent's key names, a delete finds by scanning the delta
#: rows (:mod:`importer.sinks.store.refs`). Two CIDs share a key with odds of about
#: n / 2**48 per lookup for n blocks (1e-8 for three million): such a match is only ever taken
#: as a *possible* pair, never as a missing one, so it costs a little work and never a block.
REF_KEY_BYTES: Final = 6


def ref_key(cid: bytes) -> int:
    """The key of a reference in ``delta_refs`` (:data:`REF_KEY_BYTES`)."""
    return int.from_bytes(hashlib.blake2b(cid, digest_size=REF_KEY_BYTES).digest(), "big", signed=True)


def delta_refs_keyed(conn: sqlite3.Connection) -> bool:
    """Whether the store's ``delta_refs`` names references by :func:`ref_key` (schema 11) rather
    than by CID (the table of schemas 4-10)."""
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'delta_refs'").fetchone()
    return row is not None and "REF INTEGER" in str(row[0]).upper()


def has_table(conn: sqlite3.Connection, name: str) -> bool:
    """Whether the store has the table ``name`` (one of :data:`LAZY_TABLES` may not exist yet)."""
    return conn.execute("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None


def create_table(conn: sqlite3.Connection, name: str) -> None:
    """Inside a write transaction: create the lazy table ``name`` if no process has yet. Two
    writers may both decide to: the write lock orders them, and the second finds it there."""
    conn.execute(LAZY_TABLES[name])


def blocks_have_rowid(conn: sqlite3.Connection) -> bool:
    """Whether the ``blocks`` table is a rowid table (a store created before schema 8), whose
    rowids are the order the rows were written in."""
    row = conn.execute("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'blocks'").fetchone()
    return row is None or "WITHOUT ROWID" not in str(row[0]).upper()


def connect(path: Path, create: bool, fail: Callable[[str], StoreError], *, packs: bool = True) -> sqlite3.Connection:
    """The store's database in ``path``, opened with the settings above and migrated; ``fail(reason)``
    makes the error to raise (``create=False``: a store that does not exist yet is one). ``packs``:
    whether the opener writes packs, which makes a new store's ``blocks`` a ``WITHOUT ROWID`` table."""
    db = path / DB_NAME
    if path.exists() and not path.is_dir():
        raise fail("exists and is not a directory")
    new = not db.exists()
    if new:
        if not create:
            raise fail("no block store here (nothing has been added to it yet)")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise fail(f"cannot create directory: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        # SQLite needs to create the -wal and -shm files next to the database, even to read.
        raise fail("directory is not writable")
    try:
        # isolation_level=None: no implicit transactions; the store issues BEGIN/COMMIT itself.
        conn = sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise fail(f"cannot open {db.name}: {e}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if new:  # only takes effect before the first table, and before WAL writes the header
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _switch_to_wal(conn, fail)
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        migrate(conn, fail, without_rowid=packs)
    except sqlite3.Error as e:
        conn.close()
        raise fail(f"{db.name}: {e}") from None
    except StoreError:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, fail: Callable[[str], StoreError]) -> None:
    """``journal_mode = WAL``, waiting out another process that creates the same store.

    Switching a new file to WAL takes an exclusive lock, and SQLite answers "database is locked"
    at once, without calling the busy handler, while another opener holds the file; two importers
    started together on a new store (``tests/test_store_atrest.py``, the two writers) met that
    about once in 50 starts. So the switch is retried until :data:`BUSY_TIMEOUT_MS`; once the
    file is in WAL mode the pragma takes no lock and returns at once.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(_WAL_RETRY_S)
    if str(mode).lower() != "wal":
        raise fail(f"cannot switch to WAL mode (journal_mode is {mode})")


def migrate(conn: sqlite3.Connection, fail: Callable[[str], StoreError], *, without_rowid: bool = True) -> None:
    """Create the tables a store lacks and record :data:`SCHEMA_VERSION`; refuse a newer store.
    ``without_rowid``: a new store's ``blocks`` is :data:`BLOCKS_WITHOUT_ROWID`."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        if without_rowid:
            conn.execute(BLOCKS_WITHOUT_ROWID)  # a no-op in a store that has ``blocks``
        for statement in _SCHEMA:
            conn.execute(statement)
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        version = ROWID_SCHEMA_VERSION if blocks_have_rowid(conn) else SCHEMA_VERSION
        if row is None:
            conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
            # A new store records the default it was created with, so changing the default
            # later does not silently change how an existing store writes.
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('compression', ?)", (DEFAULT_COMPRESSION,))
        elif int(row[0]) > NEWEST_SCHEMA:
            raise fail(f"schema version {row[0]} is newer than this program's {NEWEST_SCHEMA}: upgrade dpip-importer")
        elif int(row[0]) < version:
            # Every migration so far only adds tables (CREATE IF NOT EXISTS above; the lazy ones
            # when first used). A store from before compression keeps no setting and so takes
            # the default.
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def raise_schema(conn: sqlite3.Connection, version: int) -> None:
    """Inside a write transaction: record ``version`` (:data:`LARGE_FRAMES_SCHEMA`,
    :data:`X86_DELTAS_SCHEMA`, :data:`DELTA_REF_KEYS_SCHEMA`, :data:`X86_FORM2_SCHEMA`,
    :data:`DICTIONARY_FRAMES_SCHEMA`) before the first
    row that code before it cannot read is written
    (a store already there, or newer, is left as it is)."""
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version' AND CAST(value AS INTEGER) < ?",
                 (str(version), version))
