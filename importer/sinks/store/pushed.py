"""Which roots each IPFS node holds, as ``push`` recorded them: the store's ``pushed`` table.

:class:`PushedRoots` is a part of :class:`~importer.sinks.store.BlockStore` (a mixin, as
:mod:`importer.sinks.store.roots` is: the methods run on the store's connection and transactions).
A row ``(peer, root, pushed_at)`` says that the node with that peer ID pinned ``root``
recursively, so it holds the root's whole DAG; :mod:`importer.sinks.push` writes a row only after
the node's ``pin/add`` succeeded and subtracts the DAGs of recorded roots from the next push to
the same node. The rows name no block of this store: ``store gc`` ignores them, and a record whose
blocks were collected here still says what the node holds.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from ...errors import StoreError


@dataclass(frozen=True, slots=True)
class PushedRoot:
    """A root an IPFS node (named by its peer ID) holds pinned, as ``push`` recorded it."""

    peer: str
    root: bytes
    pushed_at: float


class _Store(Protocol):
    """What :class:`PushedRoots` uses of the store it is part of."""

    _conn: sqlite3.Connection

    def _transaction(self, what: str) -> AbstractContextManager[None]: ...

    def _fail(self, reason: str) -> StoreError: ...

    def _has_table(self, name: str) -> bool: ...

    def _create_table(self, name: str) -> None: ...


class PushedRoots:
    """The ``pushed`` table of a :class:`~importer.sinks.store.BlockStore` (module docstring)."""

    def record_pushed(self: _Store, peer: str, roots: Iterable[bytes], pushed_at: float) -> None:
        """Record that the node ``peer`` holds ``roots`` pinned (a root pushed again gets the new time)."""
        with self._transaction("record pushed roots"):
            self._create_table("pushed")
            self._conn.executemany("INSERT OR REPLACE INTO pushed VALUES (?, ?, ?)",
                                   [(peer, root, pushed_at) for root in roots])

    def pushed_roots(self: _Store, peer: str) -> list[PushedRoot]:
        """The roots recorded for ``peer``, newest push first."""
        try:
            if not self._has_table("pushed"):
                return []
            rows = self._conn.execute("SELECT root, pushed_at FROM pushed WHERE peer = ? "
                                      "ORDER BY pushed_at DESC, rowid DESC", (peer,)).fetchall()
        except sqlite3.Error as e:
            raise self._fail(f"cannot read pushed roots: {e}") from None
        return [PushedRoot(peer, bytes(root), float(at)) for root, at in rows]

    def forget_pushed(self: _Store, peer: str, roots: Iterable[bytes]) -> None:
        """Drop the records of ``roots`` for ``peer`` (the node no longer holds them)."""
        if not self._has_table("pushed"):
            return
        with self._transaction("forget pushed roots"):
            self._conn.executemany("DELETE FROM pushed WHERE peer = ? AND root = ?", [(peer, r) for r in roots])
