"""Stores as older versions of the importer made them, for the migration tests.

A test that wants a store of schema N makes what schema 7 code made at creation (4 KiB pages,
``auto_vacuum = INCREMENTAL``, WAL, every table from the start, ``blocks`` a rowid table) and
then takes away what schema N did not have yet (``drop``) and writes N as its version. The
statements below are the ones schema 7 code ran (``importer/sinks/store/schema.py`` at
``c13b73b``), kept here as a fixture of what is on users' disks.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from importer.sinks.store import DB_NAME

SCHEMA_7: Final = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    ("CREATE TABLE blocks (cid BLOB NOT NULL PRIMARY KEY, encoding INTEGER NOT NULL DEFAULT 0,"
    " size INTEGER NOT NULL, data BLOB NOT NULL)"),
    ("CREATE TABLE archives (name TEXT NOT NULL, root BLOB NOT NULL, sha256 BLOB NOT NULL,"
    " size INTEGER NOT NULL, imported_at REAL NOT NULL, PRIMARY KEY (name, root))"),
    ("CREATE TABLE dictionaries (id INTEGER PRIMARY KEY, data BLOB NOT NULL, trained_at REAL NOT NULL,"
    " samples INTEGER NOT NULL)"),
    "CREATE TABLE delta_refs (ref BLOB NOT NULL, cid BLOB NOT NULL, PRIMARY KEY (ref, cid)) WITHOUT ROWID",
    "CREATE TABLE pins (name TEXT NOT NULL PRIMARY KEY, root BLOB NOT NULL, pinned_at REAL NOT NULL) WITHOUT ROWID",
    "CREATE TABLE attempts (key BLOB NOT NULL PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE pushed (peer TEXT NOT NULL, root BLOB NOT NULL, pushed_at REAL NOT NULL, PRIMARY KEY (peer, root))",
    "CREATE TABLE packs (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB NOT NULL)",
    ("CREATE TABLE pack_usage (pack INTEGER PRIMARY KEY, logical INTEGER NOT NULL, live INTEGER NOT NULL,"
    " level INTEGER NOT NULL DEFAULT 0)"),
)


def make_old_store(path: Path, version: int = 7, drop: Iterable[str] = ()) -> None:
    """An empty store at ``path`` as schema 7 code created it, less the tables ``drop``, at ``version``."""
    path.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path / DB_NAME, isolation_level=None)
    try:
        conn.execute("PRAGMA page_size = 4096")
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in SCHEMA_7:
            conn.execute(statement)
        for table in drop:
            conn.execute(f"DROP TABLE {table}")
        conn.executemany("INSERT INTO meta VALUES (?, ?)", [("schema_version", str(version)), ("compression", "zstd")])
    finally:
        conn.close()
