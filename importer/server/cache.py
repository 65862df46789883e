"""An on-disk cache of rebuilt archives, keyed by sha256, with a size cap: a popular wheel is rebuilt once.

Layout: ``<dir>/<sha256[:2]>/<sha256>``. A file enters only through :meth:`FileCache.admit`,
after the bytes written to a temporary file in the same directory matched the sha256 they are
filed under (an atomic rename, so a reader never sees a partial entry). A hit refreshes the
entry's mtime; when the total passes ``max_bytes`` the least recently used entries go first
(an entry being admitted never evicts itself). ``max_bytes = 0`` disables the cache.

One lock per sha256 (:meth:`building`) lets concurrent requests for the same missing file wait
for one rebuild and then read the cached result, instead of rebuilding it once each.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final

#: Default cap: a few hundred typical wheels, or the largest CUDA wheels a couple of times over.
DEFAULT_CACHE_BYTES: Final = 2 * 1024**3
_HEX: Final = frozenset("0123456789abcdef")


class FileCache:
    """See the module docstring."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._building: dict[str, threading.Lock] = {}
        self._sizes: dict[str, int] = {}
        if self.enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            for sub in self.dir.iterdir():
                if sub.is_dir() and len(sub.name) == 2:
                    for entry in sub.iterdir():
                        if entry.name.startswith("."):
                            entry.unlink(missing_ok=True)  # a temporary file of a process that died
                        elif len(entry.name) == 64 and set(entry.name) <= _HEX:
                            self._sizes[entry.name] = entry.stat().st_size

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or not set(sha256) <= _HEX:
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.dir / sha256[:2] / sha256

    def get(self, sha256: str) -> Path | None:
        """The cached file, its mtime refreshed; None on a miss."""
        if not self.enabled:
            return None
        path = self.path(sha256)
        try:
            os.utime(path)
        except FileNotFoundError:
            with self._lock:
                self._sizes.pop(sha256, None)
            return None
        return path

    @contextmanager
    def building(self, sha256: str) -> Iterator[None]:
        """Held while one request rebuilds ``sha256``; others wait here, then find it cached."""
        with self._lock:
            lock = self._building.setdefault(sha256, threading.Lock())
        with lock:
            yield

    def temporary(self, sha256: str) -> IO[bytes]:
        """A temporary file beside where ``sha256`` will live (admit it, or close and delete it)."""
        target = self.path(sha256)
        target.parent.mkdir(parents=True, exist_ok=True)
        return tempfile.NamedTemporaryFile(prefix=f".{sha256[:16]}.", dir=target.parent, delete=False)

    def admit(self, sha256: str, temp: IO[bytes]) -> Path:
        """Move a verified temporary file into place and evict down to the cap."""
        temp.flush()
        size = os.fstat(temp.fileno()).st_size
        target = self.path(sha256)
        os.replace(temp.name, target)
        temp.close()
        with self._lock:
            self._sizes[sha256] = size
        self._evict(keep=sha256)
        return target

    def discard(self, temp: IO[bytes]) -> None:
        temp.close()
        try:
            os.unlink(temp.name)
        except FileNotFoundError:
            pass

    def _evict(self, keep: str) -> None:
        with self._lock:
            total = sum(self._sizes.values())
            if total <= self.max_bytes:
                return
            aged = []
            for sha, size in self._sizes.items():
                if sha == keep:
                    continue
                try:
                    aged.append((self.path(sha).stat().st_mtime, sha, size))
                except FileNotFoundError:
                    aged.append((0.0, sha, size))
            for _, sha, size in sorted(aged):
                if total <= self.max_bytes:
                    break
                self.path(sha).unlink(missing_ok=True)
                del self._sizes[sha]
                total -= size
