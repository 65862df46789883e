"""What a store's rows would take in other file layouts: page size, ``blocks`` with or without a rowid,
the rarely used tables made up front or on first use.

Copies every row of a store into fresh SQLite files, one per layout, in the order an import wrote
them (the packs and their usage, then the block rows in their written order, then ``delta_refs``
and the archive index), with the settings a store has (WAL, ``auto_vacuum = INCREMENTAL``), and
prints each file's size against the store's payload (``store stats``' bytes at rest). This is how
:data:`importer.sinks.store.schema.PAGE_SIZE` was chosen.

    python -m bench.store_layouts STORE_DIR...
"""

from __future__ import annotations

import argparse
import itertools
import sqlite3
import sys
import tempfile
from pathlib import Path
from typing import Final

from importer.sinks.store import DB_NAME, BlockStore
from importer.sinks.store.schema import _SCHEMA, BLOCKS_WITHOUT_ROWID, LAZY_TABLES

#: Page sizes tried: SQLite's default and the smaller ones a small store might want.
PAGE_SIZES: Final = (512, 1024, 2048, 4096)
#: The tables copied row for row (the lazy ones are empty in the stores this is for, or copied too).
_COPIED: Final = ("meta", "packs", "pack_usage", "blocks", "delta_refs", "archives", *LAZY_TABLES)


def _layout(source: Path, written: list[bytes], target: Path, page_size: int, without_rowid: bool,
            lazy: bool) -> int:
    """``source``'s rows (its blocks in ``written`` order) written into a new file ``target`` of
    that layout; its size in bytes."""
    src = sqlite3.connect(f"file:{source / DB_NAME}?mode=ro", uri=True)
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        dst.execute(f"PRAGMA page_size = {page_size}")
        dst.execute("PRAGMA auto_vacuum = INCREMENTAL")
        dst.execute("PRAGMA journal_mode = WAL")
        if without_rowid:
            dst.execute(BLOCKS_WITHOUT_ROWID)
        for statement in _SCHEMA:
            dst.execute(statement)
        tables = {str(n) for (n,) in src.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
        for name, statement in LAZY_TABLES.items():
            if not lazy or (name in tables and src.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone()):
                dst.execute(statement)
        order = {cid: i for i, cid in enumerate(written)}
        for table in _COPIED:
            if table not in tables or not dst.execute(
                    "SELECT 1 FROM sqlite_schema WHERE name = ?", (table,)).fetchone():
                continue
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            if table == "blocks":
                rows.sort(key=lambda row: order[bytes(row[0])])
            if rows:
                dst.execute("BEGIN")
                dst.executemany(f"INSERT OR REPLACE INTO {table} VALUES ({', '.join('?' * len(rows[0]))})", rows)
                dst.execute("COMMIT")
        dst.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        src.close()
        dst.close()
    return target.stat().st_size


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_layouts", description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path, metavar="STORE_DIR")
    args = parser.parse_args(argv)
    for store_dir in args.stores:
        with BlockStore(store_dir, create=False) as store:
            payload = store.stats().at_rest_bytes
            written = store.cids_in_written_order()
        print(f"{store_dir}: payload {payload:,d} B; file / payload by layout")
        with tempfile.TemporaryDirectory(prefix="store-layouts-") as tmp:
            for without_rowid, lazy, page_size in itertools.product((False, True), (False, True), PAGE_SIZES):
                size = _layout(store_dir, written, Path(tmp) / f"{page_size}-{without_rowid}-{lazy}.sqlite3",
                               page_size, without_rowid, lazy)
                print(f"  pages {page_size:>5,d} B, blocks {'without rowid' if without_rowid else 'rowid        '},"
                      f" {'lazy tables' if lazy else 'all tables '}: {size:>12,d} B  {size / payload:.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
