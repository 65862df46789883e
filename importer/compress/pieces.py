"""Byte inputs read in bounded pieces, replayable once per attempt, and re-cut the way a writer fed them.

``find_params`` compresses the same member once per candidate, so its inputs must be readable
again from the start: bytes-like objects, seekable binary files (rewound to where they stood when
first seen) or zero-argument callables that return a fresh iterable of pieces.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO, cast

from ..errors import ImporterError

#: Bytes read per piece: large enough that per-call overhead is negligible, small enough for many
#: members in flight (64 KiB = 2 ** 16).
PIECE_SIZE = 1 << 16

#: Largest input fed in one call ("whole") or one line: writers that feed whole buffers do so for
#: small generated files (METADATA, RECORD); 4 MiB keeps a worker's memory bounded.
WHOLE_FEED_LIMIT = 4 << 20

#: Largest member replayed as CPython's ``ZipFile.writestr`` feeds it (one call with all of it): the
#: writer held the member in memory too (auditwheel reads each file whole); 64 MiB (2 ** 26) covers
#: the largest extension modules of the top-100 wheels (pillow's bundled libraries: under 8 MB).
WRITESTR_FEED_LIMIT = 64 << 20

ByteInput = bytes | bytearray | memoryview | BinaryIO | Callable[[], Iterable[bytes]]


class FeedTooLarge(ImporterError, ValueError):
    """Input that a whole-buffer or line feed would hold in memory beyond :data:`WHOLE_FEED_LIMIT`."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a single compress call would take more than {size} bytes")
        self.size = size


class PieceReader:
    """``read(n)`` over an iterator of pieces: returns exactly ``n`` bytes except at the end."""

    __slots__ = ("_buf", "_pieces", "_pos")

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._buf = memoryview(b"")
        self._pos = 0

    def read(self, n: int) -> bytes:
        if self._pos + n <= len(self._buf):
            out = bytes(self._buf[self._pos : self._pos + n])
            self._pos += n
            return out
        parts = [self._buf[self._pos :]]
        have = len(parts[0])
        while have < n:
            piece = next(self._pieces, None)
            if piece is None:
                break
            if len(piece) > n - have:
                view = memoryview(piece)
                parts.append(view[: n - have])
                self._buf, self._pos = view, n - have
                return b"".join(parts)
            parts.append(memoryview(piece))
            have += len(piece)
        self._buf, self._pos = memoryview(b""), 0
        return b"".join(parts)


class Replayable:
    """A byte input that can be read from its start again, once per compression attempt."""

    __slots__ = ("_data", "_factory", "_file", "_start")

    def __init__(self, source: ByteInput) -> None:
        self._data: memoryview | None = None
        self._file: BinaryIO | None = None
        self._factory: Callable[[], Iterable[bytes]] | None = None
        self._start = 0
        if isinstance(source, (bytes, bytearray, memoryview)):
            self._data = memoryview(source).cast("B")
        elif isinstance(source, io.IOBase) or hasattr(source, "read"):
            file = cast(BinaryIO, source)
            if not file.seekable():
                raise TypeError("an unseekable stream can be read only once: pass bytes, a seekable file "
                                "or a callable returning an iterable of pieces")
            self._file = file
            self._start = file.tell()
        elif callable(source):
            self._factory = source
        else:
            raise TypeError(f"cannot read bytes from {type(source).__name__}: pass bytes, a seekable file or a "
                            "callable returning an iterable of pieces (each attempt reads the input again)")

    def pieces(self, size: int = PIECE_SIZE) -> Iterator[bytes]:
        """Yield the input from its start in pieces of at most ``size`` bytes (the factory's own pieces)."""
        if self._data is not None:
            data = self._data
            for pos in range(0, len(data), size):
                yield bytes(data[pos : pos + size])
        elif self._file is not None:
            self._file.seek(self._start)
            while piece := self._file.read(size):
                yield piece
        else:
            assert self._factory is not None
            for piece in self._factory():
                if piece:
                    yield bytes(piece)

    def reader(self) -> PieceReader:
        """A fresh :class:`PieceReader` positioned at the start."""
        return PieceReader(self.pieces())


def iter_fixed(pieces: Iterable[bytes], size: int) -> Iterator[bytes]:
    """Re-cut ``pieces`` into pieces of exactly ``size`` bytes (the last may be shorter), as a copy loop does."""
    reader = PieceReader(pieces)
    while piece := reader.read(size):
        yield piece


def iter_lines(pieces: Iterable[bytes], limit: int = WHOLE_FEED_LIMIT) -> Iterator[bytes]:
    """Re-cut ``pieces`` into lines ending in b"\\n" (the last may lack it), as a line-by-line writer does."""
    pending = bytearray()
    for piece in pieces:
        pending += piece
        start = 0
        while (end := pending.find(b"\n", start)) >= 0:
            yield bytes(pending[start : end + 1])
            start = end + 1
        del pending[:start]
        if len(pending) > limit:
            raise FeedTooLarge(limit)
    if pending:
        yield bytes(pending)


#: The separators Rust's ``write!(w, "{},sha256={},{}\n", ...)`` writes between its arguments;
#: each argument and each separator reaches the compressor as its own ``write_all``.
_RECORD_FIELDS = re.compile(rb"(,sha256=|,|\n)")


def iter_record_fields(pieces: Iterable[bytes], limit: int = WHOLE_FEED_LIMIT) -> Iterator[bytes]:
    """Re-cut RECORD content into the pieces maturin's formatted writes hand over, line by line.

    ``a.py,sha256=XYZ,12\n`` → ``a.py``, ``,sha256=``, ``XYZ``, ``,``, ``12``, ``\n`` (empty pieces
    are never written). Verified against the RECORDs of maturin 1.15/1.16 wheels.
    """
    for line in iter_lines(pieces, limit):
        for part in _RECORD_FIELDS.split(line):
            if part:
                yield part


def iter_whole(pieces: Iterable[bytes], limit: int = WHOLE_FEED_LIMIT) -> Iterator[bytes]:
    """Join ``pieces`` into one, as a writer handing the whole buffer to one call does; bounded by ``limit``."""
    whole = bytearray()
    for piece in pieces:
        whole += piece
        if len(whole) > limit:
            raise FeedTooLarge(limit)
    yield bytes(whole)


#: A tar block: headers and the padding after each member's data are whole blocks (POSIX ustar).
TAR_BLOCK = 512
#: Bytes per ``io::copy`` call copying member data in the Rust ``tar`` crate (std's 8 KiB buffer).
TAR_COPY = 8 << 10
#: The Rust ``tar`` crate's ``Builder::finish`` writes two zero blocks in one call: 1,024 bytes.
TAR_END = 2 * TAR_BLOCK


def _tar_size(header: bytes) -> int | None:
    """Data size of a tar header block, or None when the block is not a valid header (bad checksum)."""
    # Checksum (ustar): the sum of all header bytes with the 8-byte checksum field read as spaces.
    try:
        stored = int(header[148:156].rstrip(b"\0 ").decode("ascii") or "-1", 8)
    except ValueError:
        return None
    if stored != sum(header[:148]) + 8 * 0x20 + sum(header[156:]):
        return None
    field = header[124:136]
    if field[0] & 0x80:  # GNU base-256: the remaining 11 bytes, big-endian
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.rstrip(b"\0 ").decode("ascii") or "0", 8)
    except ValueError:
        return None


def iter_tar_writes(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a tar stream into the writes the Rust ``tar`` crate makes (maturin sdists).

    ``Builder::append``: the 512-byte header in one write, the data through ``io::copy`` in 8 KiB
    pieces, the zero padding to the next block in one write; long names and PAX records are
    members of their own written the same way; ``finish`` writes the 1,024-byte end in one call.
    From the first block that is neither a valid header nor all zeros (not a tar stream), the rest
    goes in 8 KiB pieces. Verified on cryptography 47-50 and pydantic-core 2.50 sdists.
    """
    reader = PieceReader(pieces)
    while header := reader.read(TAR_BLOCK):
        if len(header) == TAR_BLOCK and not any(header):
            yield header + reader.read(TAR_END - TAR_BLOCK)
            while rest := reader.read(TAR_END):
                yield rest
            return
        size = _tar_size(header) if len(header) == TAR_BLOCK else None
        yield header
        if size is None:
            while rest := reader.read(TAR_COPY):
                yield rest
            return
        for _ in range(size // TAR_COPY):
            yield reader.read(TAR_COPY)
        if tail := size % TAR_COPY:
            yield reader.read(tail)
        if pad := -size % TAR_BLOCK:
            yield reader.read(pad)
