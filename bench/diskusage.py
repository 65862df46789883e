"""Where a block store's file goes: payload bytes against SQLite's pages, table by table.

``store stats`` says what the blocks weigh (payloads plus dictionaries); the file on disk is
larger by what SQLite adds around them. This module reads the database's own accounting (the
``dbstat`` virtual table, compiled into the SQLite that CPython ships) and splits the file into:

* ``payload``: the bytes of the block payloads, dictionaries and packs (what ``store stats`` counts);
* ``free pages``: pages on the freelist (left by rows rewritten smaller or deleted; reused by later
  writes, returned to the file system only by ``VACUUM`` or ``incremental_vacuum``);
* ``unused in pages``: space inside pages in use that holds nothing (half-empty leaf pages:
  a row that does not fit in what is left of a page starts the next one);
* ``index and rows``: the CID index, the row headers, the CIDs and sizes beside each payload,
  ``delta_refs`` and the other small tables;
* ``write-ahead log``: the ``-wal`` and ``-shm`` files beside the database.

    python -m bench.diskusage STORE_DIR...
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path

from importer.sinks.store import DB_NAME, BlockStore


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """A store's file split by what holds each byte (the module docstring)."""

    file_bytes: int
    wal_bytes: int
    payload_bytes: int
    free_bytes: int
    unused_bytes: int
    structure_bytes: int

    @property
    def disk_bytes(self) -> int:
        return self.file_bytes + self.wal_bytes


def disk_usage(store_dir: Path) -> DiskUsage:
    """The split of ``store_dir``'s database (read-only; the store is opened to checkpoint its log)."""
    with BlockStore(store_dir, create=False) as store:
        stats = store.stats()
    db = store_dir / DB_NAME
    file_bytes = db.stat().st_size
    wal = sum(p.stat().st_size for p in (store_dir / (DB_NAME + "-wal"), store_dir / (DB_NAME + "-shm"))
              if p.exists())
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        (page_size,) = conn.execute("PRAGMA page_size").fetchone()
        (free_pages,) = conn.execute("PRAGMA freelist_count").fetchone()
        (unused,) = conn.execute("SELECT coalesce(sum(unused), 0) FROM dbstat").fetchone()
    finally:
        conn.close()
    free = int(free_pages) * int(page_size)
    payload = stats.at_rest_bytes
    structure = file_bytes - payload - free - int(unused)
    return DiskUsage(file_bytes, wal, payload, free, int(unused), structure)


def format_usage(name: str, usage: DiskUsage) -> str:
    """One line: the file, then each part as bytes and share of the payload."""
    parts = [("free pages", usage.free_bytes), ("unused in pages", usage.unused_bytes),
             ("index and rows", usage.structure_bytes), ("write-ahead log", usage.wal_bytes)]
    payload = max(1, usage.payload_bytes)
    shares = ", ".join(f"{what} {n:,d} ({n / payload:+.1%})" for what, n in parts)
    return (f"{name}: file {usage.disk_bytes:,d} B = {usage.disk_bytes / payload:.3f}x the payload "
            f"{usage.payload_bytes:,d} B; {shares}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diskusage", description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path, metavar="STORE_DIR")
    args = parser.parse_args(argv)
    for store_dir in args.stores:
        print(format_usage(str(store_dir), disk_usage(store_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
