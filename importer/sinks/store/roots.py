"""The store's roots: the archive index and the pins, the two tables ``store gc`` keeps blocks for.

:class:`StoreRoots` is a part of :class:`~importer.sinks.store.BlockStore` (a mixin: the methods
run on the store's connection and transactions), kept apart because it is about what names a
DAG, not how blocks are stored:

* ``archives``: one row per imported archive file (name, root, sha256, size, import time),
  written only after every block of the archive is committed. The mirror and the pip server
  read it; ``list``, ``delete`` and the name lookups of ``fetch``/``verify``/``inspect`` too.
* ``pins``: Kubo's recursive pins, name -> root. A name holds one root (pinning another root
  under it moves it: the mirror keeps its published index under one name this way); ``pin add
  CID`` names the pin after the CID.

Writing either takes the collector lock shared first (:mod:`importer.sinks.lock`), as a block
write does: a root recorded while ``store gc`` runs waits for it, so the collection never marks
without a root that is about to name blocks it would sweep.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from ...dag.cid import format_cid
from ...errors import StoreError
from ..lock import CollectorLock


@dataclass(frozen=True, slots=True)
class ArchiveRecord:
    """One row of the mirror's index: an archive file name and where its DAG is."""

    name: str
    root: bytes
    sha256: bytes
    size: int
    imported_at: float


@dataclass(frozen=True, slots=True)
class Pin:
    """One recursive pin: ``store gc`` keeps every block ``root`` reaches."""

    name: str
    root: bytes
    pinned_at: float


class _Store(Protocol):
    """What :class:`StoreRoots` uses of the store it is part of."""

    _conn: sqlite3.Connection
    _lock: CollectorLock

    def _transaction(self, what: str) -> AbstractContextManager[None]: ...

    def _fail(self, reason: str) -> StoreError: ...

    def _has_table(self, name: str) -> bool: ...

    def _create_table(self, name: str) -> None: ...

    def flush(self) -> None: ...


def hold_writer_lock(store: _Store) -> None:
    """Take the collector lock shared before a first write (module docstring of :mod:`~importer.sinks.lock`)."""
    try:
        store._lock.share()
    except OSError as e:
        raise store._fail(f"cannot lock {store._lock.path.name}: {e.strerror or e}") from None


class StoreRoots:
    """The archive index and the pins of a :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def record_archive(self: _Store, record: ArchiveRecord) -> None:
        """Add an archive to the index, after committing every buffered block."""
        hold_writer_lock(self)
        self.flush()
        with self._transaction(f"record archive {record.name}"):
            self._conn.execute("INSERT OR REPLACE INTO archives VALUES (?, ?, ?, ?, ?)",
                               (record.name, record.root, record.sha256, record.size, record.imported_at))

    def iter_archives(self: _Store) -> Iterator[ArchiveRecord]:
        """The index, oldest import first."""
        yield from _archives(self)

    def find_archives(self: _Store, *, name: str | None = None, root: bytes | None = None,
                      sha256_prefix: bytes | str | None = None) -> list[ArchiveRecord]:
        """Index rows with this file name, root, or sha256 (bytes, or a hex prefix), oldest import first."""
        if name is not None:
            return _archives(self, "WHERE name = ?", (name,))
        if root is not None:
            return _archives(self, "WHERE root = ?", (root,))
        if isinstance(sha256_prefix, bytes):
            return _archives(self, "WHERE sha256 = ?", (sha256_prefix,))
        if sha256_prefix is not None:
            # hex(sha256) is upper case; a prefix match on it uses no index, but the index is small.
            return _archives(self, "WHERE hex(sha256) LIKE ?", (sha256_prefix.upper() + "%",))
        return _archives(self)

    def delete_archives(self: _Store, records: Iterable[ArchiveRecord]) -> int:
        """Remove rows from the index (their blocks stay until ``store gc``); how many were there."""
        keys = [(r.name, r.root) for r in records]
        with self._transaction("delete archives from the index"):
            removed = sum(self._conn.execute("DELETE FROM archives WHERE name = ? AND root = ?", key).rowcount
                          for key in keys)
        return removed

    def pin(self: _Store, root: bytes, name: str | None = None) -> Pin:
        """Pin ``root`` under ``name`` (default: the CID's text); a name already taken moves to ``root``."""
        hold_writer_lock(self)
        self.flush()
        made = Pin(format_cid(root) if name is None else name, root, time.time())
        with self._transaction(f"pin {made.name}"):
            self._create_table("pins")
            self._conn.execute("INSERT OR REPLACE INTO pins VALUES (?, ?, ?)", (made.name, made.root, made.pinned_at))
        return made

    def unpin(self: _Store, *, name: str | None = None, root: bytes | None = None) -> list[Pin]:
        """Remove the pin called ``name``, or every pin of ``root``; the pins removed."""
        pins = [p for p in _pins(self) if (name is not None and p.name == name) or (root is not None and p.root == root)]
        if not pins:
            return pins
        with self._transaction("unpin"):
            self._conn.executemany("DELETE FROM pins WHERE name = ?", [(p.name,) for p in pins])
        return pins

    def iter_pins(self: _Store) -> Iterator[Pin]:
        """Every pin, by name."""
        yield from _pins(self)

    def collector_lock(self: _Store) -> CollectorLock:
        """The collector lock of this store (``store gc`` takes it exclusive through this)."""
        return self._lock


def _archives(store: _Store, where: str = "", params: Sequence[object] = ()) -> list[ArchiveRecord]:
    try:
        rows = store._conn.execute(
            f"SELECT name, root, sha256, size, imported_at FROM archives {where} ORDER BY rowid", params).fetchall()
    except sqlite3.Error as e:
        raise store._fail(f"cannot read the archive index: {e}") from None
    return [ArchiveRecord(row[0], bytes(row[1]), bytes(row[2]), int(row[3]), float(row[4])) for row in rows]


def _pins(store: _Store) -> list[Pin]:
    try:
        if not store._has_table("pins"):
            return []
        rows = store._conn.execute("SELECT name, root, pinned_at FROM pins ORDER BY name").fetchall()
    except sqlite3.Error as e:
        raise store._fail(f"cannot read the pins: {e}") from None
    return [Pin(str(name), bytes(root), float(pinned_at)) for name, root, pinned_at in rows]
