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

With ``--roles``, the bytes at rest are also split by which archive first brought each block
(the first sdist, the first wheel, later releases) and by what the block is (a leaf of a file, a
file's root node, a directory node, the recipe and its pages, the skeleton, the archive root).

    python -m bench.diskusage [--roles] STORE_DIR...
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import dag_cbor
from multiformats import CID

from importer.archive.recipe import read_recipe, read_root
from importer.dag.cid import RAW, cid_codec
from importer.dag.reader import Kind, file_leaves, iter_directory, stat
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


#: What a block of an archive's DAG is, for :func:`bytes_by_role`.
ROLES: Final = ("leaf", "file node", "directory", "recipe", "skeleton", "root")


def _dag_roles(store: BlockStore, root: bytes) -> Iterator[tuple[bytes, str]]:
    """``(cid, role)`` of every block of the archive ``root``'s DAG (a block may come twice)."""
    archive = read_root(store, root)
    yield root, "root"
    yield archive.recipe, "recipe"
    recipe = dag_cbor.decode(store.get(archive.recipe))
    if isinstance(recipe, dict) and isinstance(recipe.get("pages"), list):
        yield from ((bytes(page), "recipe") for page in recipe["pages"] if isinstance(page, CID))  # type: ignore[union-attr]
    parsed = read_recipe(store, archive.recipe)
    yield parsed.skeleton, "skeleton"
    trees = [archive.tree]
    files = list(parsed.extra)
    while trees:
        tree = trees.pop()
        yield tree, "directory"
        for entry in iter_directory(store, tree):
            if cid_codec(entry.cid) != RAW and stat(store, entry.cid).kind is Kind.DIRECTORY:
                trees.append(entry.cid)
            else:
                files.append(entry.cid)
    for file in files:
        leaves = file_leaves(store, file)[1]
        if len(leaves) != 1 or leaves[0].cid != file:
            yield file, "file node"
        yield from ((leaf.cid, "leaf") for leaf in leaves)


def bytes_by_archive(store_dir: Path) -> dict[str, dict[str, tuple[int, int]]]:
    """Archive name (in import order) -> role -> (blocks, bytes at rest): each block counted once,
    for the first archive (in import order) whose DAG has it."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    with BlockStore(store_dir, create=False) as store:
        payloads = {cid: stored for cid, _, stored in store.iter_payloads()}
        seen: set[bytes] = set()
        for record in store.iter_archives():
            roles = out.setdefault(record.name, {})
            for cid, role in _dag_roles(store, record.root):
                if cid in seen or cid not in payloads:
                    continue
                seen.add(cid)
                n, stored = roles.get(role, (0, 0))
                roles[role] = (n + 1, stored + payloads[cid])
    return out


def bytes_by_role(store_dir: Path) -> dict[tuple[str, str], tuple[int, int]]:
    """Bytes at rest by (which archive: ``first sdist``, ``first wheel``, ``later``; role), and how
    many blocks (:func:`bytes_by_archive`, the archives after the first of their kind summed)."""
    out: dict[tuple[str, str], tuple[int, int]] = {}
    kinds: set[str] = set()
    for name, roles in bytes_by_archive(store_dir).items():
        kind = "wheel" if name.endswith(".whl") else "sdist"
        which = "later" if kind in kinds else f"first {kind}"
        kinds.add(kind)
        for role, (n, stored) in roles.items():
            n0, stored0 = out.get((which, role), (0, 0))
            out[(which, role)] = (n0 + n, stored0 + stored)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.diskusage", description=__doc__.split("\n\n")[0])
    parser.add_argument("stores", nargs="+", type=Path, metavar="STORE_DIR")
    parser.add_argument("--roles", action="store_true",
                        help="also split the bytes at rest by archive (first sdist, first wheel, later) and role")
    args = parser.parse_args(argv)
    for store_dir in args.stores:
        print(format_usage(str(store_dir), disk_usage(store_dir)))
        if args.roles:
            parts = bytes_by_role(store_dir)
            total = sum(stored for _, stored in parts.values()) or 1
            for (which, role), (n, stored) in sorted(parts.items(), key=lambda item: -item[1][1]):
                print(f"  {which:<11} {role:<10} {n:>7,d} blocks {stored:>13,d} B ({stored / total:6.1%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
