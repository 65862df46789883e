"""The store's collector lock: every writer holds it shared, ``store gc`` holds it alone.

An import commits its blocks batch by batch and records its archive (or pin) only at the end,
so for a while a second process sees committed blocks that no root reaches yet. ``store gc``
must not take those for garbage. The rule is a lock file beside the database, ``gc.lock``:

* a writer (the first ``put``, ``record_archive`` or ``pin`` of a :class:`~importer.sinks.store.BlockStore`)
  takes it *shared* and keeps it until the store is closed, so any number of importers run at
  once, and a collection waits until each of them has recorded its root and closed;
* ``store gc`` takes it *exclusive* for its mark and its sweep, so a writer that starts meanwhile
  waits at its first write, before it can depend on a block the sweep may remove.

``flock(2)`` locks belong to the open file and the kernel drops them when the process dies, so
an import killed with SIGKILL never leaves a stale lock behind: its committed blocks simply
become garbage that the next collection removes. (Locks are per open file description: one
process holding a writer's store open cannot collect through a second handle; gc raises
:class:`LockBusy` after its ``wait`` instead of deadlocking.)
"""

from __future__ import annotations

import errno
import fcntl
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

#: File name of the lock inside the store directory.
LOCK_NAME: Final = "gc.lock"
#: How often a waiting collector retries (seconds): a writer's close is noticed within this.
POLL_SECONDS: Final = 0.05


class LockBusy(Exception):
    """The lock could not be taken within the time allowed."""


class CollectorLock:
    """One open handle on ``DIR/gc.lock``; :meth:`share` for writers, :meth:`exclusive` for gc."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK_NAME
        self._fd: int | None = None
        self.mode: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        return self._fd

    def _try(self, mode: int) -> bool:
        try:
            fcntl.flock(self._open(), mode | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self.mode = mode
        return True

    def share(self) -> None:
        """Take the lock shared (a writer); blocks while a collection runs, saying so once on stderr."""
        if self.mode is not None:
            return
        if self._try(fcntl.LOCK_SH):
            return
        sys.stderr.write(f"dpip-import: waiting for `store gc` in another process to finish ({self.path.parent})\n")
        fcntl.flock(self._open(), fcntl.LOCK_SH)
        self.mode = fcntl.LOCK_SH

    def exclusive(self, wait: float | None = None, on_wait: Callable[[], None] | None = None) -> None:
        """Take the lock alone (gc); wait up to ``wait`` seconds (None: as long as it takes), else LockBusy.

        ``on_wait``: a callable run once when the lock is not free at the first try.
        """
        if self.mode == fcntl.LOCK_EX:
            return
        if self.mode is not None:
            raise LockBusy("this process itself writes to the store")
        deadline = None if wait is None else time.monotonic() + wait
        told = False
        while not self._try(fcntl.LOCK_EX):
            if deadline is not None and time.monotonic() >= deadline:
                raise LockBusy(f"another process writes to the store (it holds {self.path})")
            if not told and on_wait is not None:
                on_wait()
                told = True
            time.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Drop the lock and close the handle (also what the kernel does when the process dies)."""
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor releases the flock
        self._fd = None
        self.mode = None
