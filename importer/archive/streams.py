"""Adapters between piece iterators and file objects, so chunkers can read member contents."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator


class PieceReader(io.RawIOBase):
    """A read-only, forward-only file over an iterator of byte pieces."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        super().__init__()
        self._it: Iterator[bytes] = iter(pieces)
        self._buf = b""
        self._pos = 0
        self.total = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        while self._pos >= len(self._buf):
            nxt = next(self._it, None)
            if nxt is None:
                return 0
            self._buf, self._pos = nxt, 0
        n = min(len(view), len(self._buf) - self._pos)
        view[:n] = self._buf[self._pos:self._pos + n]
        self._pos += n
        self.total += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            return self.readall()
        out = bytearray()
        while len(out) < size:
            if self._pos >= len(self._buf):
                nxt = next(self._it, None)
                if nxt is None:
                    break
                self._buf, self._pos = nxt, 0
                continue
            take = min(size - len(out), len(self._buf) - self._pos)
            if self._pos == 0 and take == len(self._buf) and not out:
                # Whole piece requested: hand it over without a copy.
                self._pos = take
                self.total += take
                if take == size:
                    return self._buf
                out += self._buf
                continue
            out += self._buf[self._pos:self._pos + take]
            self._pos += take
            self.total += take
        return bytes(out)
