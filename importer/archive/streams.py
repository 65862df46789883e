"""Adapters between piece iterators and file objects, so chunkers can read member contents; an
archive's bytes read back, and decompressed again, in bounded pieces."""

from __future__ import annotations

import bz2
import io
import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from typing import Final

#: Largest piece read back or decompressed at once: one compressed megabyte of a bomb may stand for
#: a gigabyte, so output is capped per call, never per input piece.
PIECE: Final = 1024 * 1024
#: ``read_at(length, offset)``: an archive's bytes at an offset, from any thread (pread or a slice).
ReadAt = Callable[[int, int], bytes]


def pread_pieces(read_at: ReadAt, offset: int, length: int) -> Iterator[bytes]:
    """The archive's bytes ``[offset, offset + length)`` in pieces of at most PIECE."""
    end = offset + length
    while offset < end:
        piece = read_at(min(PIECE, end - offset), offset)
        if not piece:
            raise EOFError(f"archive shrank while importing (at byte {offset})")
        offset += len(piece)
        yield piece


def bounded_decompress(method: str, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Decompress raw ``deflate``, ``bzip2`` or ``xz`` pieces, never more than PIECE bytes per call."""
    if method == "deflate":
        inflater = zlib.decompressobj(-15)
        for piece in pieces:
            data = piece
            while not inflater.eof:
                out = inflater.decompress(data, PIECE)
                data = inflater.unconsumed_tail
                if out:
                    yield out
                if not data and len(out) < PIECE:  # a full piece may leave output inside zlib: ask again
                    break
        return
    engine: bz2.BZ2Decompressor | lzma.LZMADecompressor = \
        bz2.BZ2Decompressor() if method == "bzip2" else lzma.LZMADecompressor()
    for piece in pieces:
        data = piece
        while not engine.eof:
            out = engine.decompress(data, PIECE)
            data = b""
            if out:
                yield out
            if engine.needs_input:
                break


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
