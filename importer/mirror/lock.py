"""One sync at a time per store: an ``fcntl`` lock on ``<store>/mirror.lock``.

``flock`` locks belong to the open file: the kernel releases them when the holder exits,
however it exits (SIGKILL included), so a crashed sync never leaves a stale lock behind. The
holder writes its pid into the file for the refusal message; the pid is informative only (the
lock, not the file's content, decides).
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from .errors import MirrorBusy

LOCK_NAME: Final = "mirror.lock"


class SyncLock:
    """Held from :meth:`acquire` (or ``with``) to :meth:`release`; MirrorBusy if another process holds it."""

    def __init__(self, store_dir: str | os.PathLike[str]) -> None:
        self.store_dir = Path(store_dir)
        self.path = self.store_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise MirrorBusy(str(self.store_dir), f"pid {holder}" if holder.isdigit() else "lock held") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()
