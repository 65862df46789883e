"""Unwrap the gzip, bzip2 or xz container around a tar: stream boundaries exactly, content streamed.

A :class:`ContainerReader` is a forward-only readable of the decompressed content (the tar
stream) that, while it is read, records the container's own structure as a list of runs:

* gzip (RFC 1952): per member a :class:`~.base.Skeleton` header (flags, MTIME, XFL, OS,
  FEXTRA, FNAME, FCOMMENT, FHCRC), a :class:`CompressedStream` for the raw deflate data (its
  exact end found by zlib's ``eof``/``unused_data``) and a Skeleton trailer (CRC-32, ISIZE);
  members may be concatenated; bytes after the last member that do not start another member
  are trailing garbage, kept as a :class:`~.base.Gap` (read back from the file, not held).
* bzip2 and xz: each stream (header and footer included) is one CompressedStream, since
  recompressing reproduces the whole stream; concatenated streams are followed, anything else
  after the last one is a trailing Gap; xz stream padding between streams is skeleton.

Decompression output is charged to the import's :class:`~.base.WorkBudget` (``--max-total-size``,
``--max-ratio``): a bomb stops with an error after at most that many bytes of work, in pieces of
at most PIECE_SIZE. Trailing bytes are bounded by ``Limits.max_trailing_size``.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final, Literal

from ..errors import InvalidArchive, LimitExceeded
from .base import (
    BZIP2_MAGIC,
    DEFAULT_LIMITS,
    GZIP_MAGIC,
    PIECE_SIZE,
    XZ_MAGIC,
    Gap,
    KiB,
    Limits,
    Readable,
    Skeleton,
    WorkBudget,
    detect_format,
)

CompressionMethod = Literal["deflate", "bzip2", "xz"]

#: gzip header flag bits (RFC 1952 §2.3.1); bits 5-7 are reserved and must be zero.
FTEXT: Final = 0x01
FHCRC: Final = 0x02
FEXTRA: Final = 0x04
FNAME: Final = 0x08
FCOMMENT: Final = 0x10
FRESERVED: Final = 0xE0
#: ID1 ID2 CM FLG MTIME(4) XFL OS = 10 bytes; the trailer is CRC32(4) ISIZE(4) = 8 bytes.
GZIP_FIXED: Final = struct.Struct("<3sBIBB")
GZIP_TRAILER: Final = struct.Struct("<II")
#: FNAME/FCOMMENT are NUL-terminated with no length; a header longer than this is hostile.
MAX_GZIP_FIELD: Final = 64 * KiB
READ_SIZE: Final = 64 * KiB
#: Longest xz stream padding we look through for a following stream (real padding is 0-3 words).
MAX_XZ_PADDING: Final = 64 * KiB


@dataclass(frozen=True, slots=True)
class GzipHeader:
    """The fields of one gzip member header (the bytes themselves are the skeleton run)."""

    flags: int
    mtime: int
    xfl: int
    os: int
    extra: bytes | None
    name: bytes | None
    comment: bytes | None


@dataclass(frozen=True, slots=True)
class CompressedStream:
    """One compressed stream: ``length`` bytes at ``offset`` in the file that decompress to ``size``
    bytes at ``content_offset`` of the content; ``crc`` is gzip's trailer CRC-32."""

    index: int
    method: CompressionMethod
    offset: int
    length: int
    content_offset: int
    size: int
    crc: int | None = None
    gzip: GzipHeader | None = None


class _Input:
    """The compressed file read forwards, with push-back of bytes a decompressor did not use."""

    def __init__(self, f: Readable, archive: str) -> None:
        self._file = f
        self._pushed = b""
        self._pushed_at = 0  # read index into _pushed, so byte-wise reads do not re-copy it
        self.archive = archive
        self.position = 0

    def read(self, size: int) -> bytes:
        if self._pushed_at < len(self._pushed):
            data = self._pushed[self._pushed_at : self._pushed_at + size]
            self._pushed_at += len(data)
        else:
            data = self._file.read(size)
        self.position += len(data)
        return data

    def unread(self, data: bytes) -> None:
        if data:
            self._pushed = data + self._pushed[self._pushed_at :]
            self._pushed_at = 0
            self.position -= len(data)

    def peek(self, size: int) -> bytes:
        data = self.read(size)
        while len(data) < size:
            more = self.read(size - len(data))
            if not more:
                break
            data += more
        self.unread(data)
        return data

    def read_exact(self, size: int, what: str) -> bytes:
        data = self.peek(size)
        if len(data) < size:
            raise InvalidArchive(self.archive, f"archive is truncated in {what}", None, self.position + len(data))
        return self.read(size)


class ContainerReader:
    """The decompressed content of a gzip/bzip2/xz file, read forwards; ``segments`` fills in as it goes."""

    def __init__(self, f: Readable, archive: str, limits: Limits = DEFAULT_LIMITS,
                 budget: WorkBudget | None = None) -> None:
        self.archive = archive
        self._input = _Input(f, archive)
        self._limits = limits
        self._budget = budget if budget is not None else limits.budget(None)
        head = self._input.peek(6)
        kind = detect_format(head)
        if kind not in ("gzip", "bzip2", "xz"):
            raise InvalidArchive(archive, "not a gzip, bzip2 or xz file", None, 0)
        self.format: Literal["gzip", "bzip2", "xz"] = kind
        self.segments: list[Skeleton | Gap | CompressedStream] = []
        self.content_size = 0
        self._pieces = self._iter_gzip() if kind == "gzip" else self._iter_streams(kind)
        self._buffer = b""
        self._offset = 0
        self._done = False

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes of content (all of the rest if ``size`` < 0); ``b""`` at the end."""
        # Pieces are up to PIECE_SIZE and tar reads 512 bytes at a time: slice by an index into
        # the current piece instead of re-copying the remainder on every read.
        available = len(self._buffer) - self._offset
        if 0 <= size <= available:
            data = self._buffer[self._offset : self._offset + size]
            self._offset += size
            return data
        parts = [self._buffer[self._offset :]]
        self._buffer, self._offset = b"", 0
        while not self._done and (size < 0 or available < size):
            piece = next(self._pieces, None)
            if piece is None:
                self._done = True
            elif size < 0 or available + len(piece) <= size:
                parts.append(piece)
                available += len(piece)
            else:
                take = size - available
                parts.append(piece[:take])
                self._buffer, self._offset = piece, take
                available = size
        return b"".join(parts)

    def peek(self, size: int) -> bytes:
        """The next ``size`` bytes of content without consuming them."""
        data = self.read(size)
        self._buffer = data + self._buffer[self._offset :]
        self._offset = 0
        return data

    def finish(self) -> tuple[Skeleton | Gap | CompressedStream, ...]:
        """Read (and check) the container to its end; return every run not yet taken, in file order."""
        while self.read(PIECE_SIZE):
            pass
        return tuple(self.segments)

    def take_segments(self) -> list[Skeleton | Gap | CompressedStream]:
        """The runs completed since the last call, in file order; they are then forgotten here, so a
        container of 100,000 streams is not remembered whole."""
        taken, self.segments = self.segments, []
        return taken

    # --- gzip ---------------------------------------------------------------------------------

    def _iter_gzip(self) -> Iterator[bytes]:
        index = 0
        while True:
            at = self._input.position
            if index and self._input.peek(2) != GZIP_MAGIC[:2]:
                self._record_trailing()
                return
            raw, header = self._read_gzip_header()
            self.segments.append(Skeleton(at, raw))
            start, content_at = self._input.position, self.content_size
            crc = 0
            for piece in self._decompress("deflate", index):
                crc = zlib.crc32(piece, crc)
                yield piece
            length = self._input.position - start
            size = self.content_size - content_at
            trailer_at = self._input.position
            trailer = self._input.read_exact(GZIP_TRAILER.size, "the gzip trailer")
            stored_crc, isize = GZIP_TRAILER.unpack(trailer)
            if stored_crc != crc:
                raise InvalidArchive(self.archive, f"gzip CRC-32 {crc:08x} does not match the trailer's "
                                     f"{stored_crc:08x}", None, trailer_at)
            if isize != size & 0xFFFFFFFF:  # ISIZE is the size modulo 2**32
                raise InvalidArchive(self.archive, f"gzip size {size} does not match the trailer's {isize}",
                                     None, trailer_at + 4)
            self.segments.append(CompressedStream(index, "deflate", start, length, content_at, size, crc, header))
            self.segments.append(Skeleton(trailer_at, trailer))
            index += 1
            if not self._input.peek(1):
                return

    def _read_gzip_header(self) -> tuple[bytes, GzipHeader]:
        at = self._input.position
        raw = bytearray(self._input.read_exact(GZIP_FIXED.size, "a gzip header"))
        magic, flags, mtime, xfl, os_byte = GZIP_FIXED.unpack(raw)
        if magic != GZIP_MAGIC:
            raise InvalidArchive(self.archive, "not a gzip member header (bad magic or method)", None, at)
        if flags & FRESERVED:
            raise InvalidArchive(self.archive, f"gzip header has reserved flag bits set ({flags:#04x})", None, at)
        extra = name = comment = None
        if flags & FEXTRA:
            length_bytes = self._input.read_exact(2, "the gzip FEXTRA length")
            extra = self._input.read_exact(int.from_bytes(length_bytes, "little"), "the gzip FEXTRA field")
            raw += length_bytes + extra
        if flags & FNAME:
            name = self._read_zero_terminated("FNAME")
            raw += name + b"\x00"
        if flags & FCOMMENT:
            comment = self._read_zero_terminated("FCOMMENT")
            raw += comment + b"\x00"
        if flags & FHCRC:
            stored = int.from_bytes(self._input.read_exact(2, "the gzip header CRC"), "little")
            if stored != zlib.crc32(raw) & 0xFFFF:  # CRC16 = low 16 bits of the header's CRC-32
                raise InvalidArchive(self.archive, "gzip header CRC does not match", None, at)
            raw += stored.to_bytes(2, "little")
        return bytes(raw), GzipHeader(flags, mtime, xfl, os_byte, extra, name, comment)

    def _read_zero_terminated(self, what: str) -> bytes:
        at = self._input.position
        data = bytearray()
        while True:
            byte = self._input.read(1)
            if not byte:
                raise InvalidArchive(self.archive, f"archive is truncated in the gzip {what}", None,
                                     self._input.position)
            if byte == b"\x00":
                return bytes(data)
            data += byte
            if len(data) > MAX_GZIP_FIELD:
                raise InvalidArchive(self.archive, f"gzip {what} longer than {MAX_GZIP_FIELD} bytes", None, at)

    # --- bzip2 / xz ---------------------------------------------------------------------------

    def _iter_streams(self, kind: Literal["bzip2", "xz"]) -> Iterator[bytes]:
        magic = BZIP2_MAGIC if kind == "bzip2" else XZ_MAGIC
        index = 0
        while True:
            if index and kind == "xz":
                self._record_xz_padding()
            if index and self._input.peek(len(magic)) != magic:
                self._record_trailing()
                return
            start, content_at = self._input.position, self.content_size
            yield from self._decompress(kind, index)
            length = self._input.position - start
            self.segments.append(
                CompressedStream(index, kind, start, length, content_at, self.content_size - content_at)
            )
            index += 1
            if not self._input.peek(1):
                return

    # --- shared -------------------------------------------------------------------------------

    def _decompress(self, method: CompressionMethod, index: int) -> Iterator[bytes]:
        """Decompress one stream from the input, leaving the input just after its last byte."""
        start = self._input.position
        decoder = _Decoder(method)
        while not decoder.eof:
            data = b""
            if decoder.needs_input:
                data = self._input.read(READ_SIZE)
                if not data:
                    raise InvalidArchive(self.archive, f"archive is truncated inside {method} stream {index}",
                                         None, self._input.position)
            try:
                out = decoder.decompress(data, PIECE_SIZE)
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as error:
                raise InvalidArchive(self.archive, f"corrupt {method} data ({error})", None,
                                     max(start, self._input.position - len(data))) from None
            self.content_size += len(out)
            if out:
                self._budget.charge(len(out), self.archive, None, self._input.position)
                yield out
        self._input.unread(decoder.unused_data)

    def _record_xz_padding(self) -> None:
        """xz Stream Padding (xz spec 2.2): NUL bytes, a multiple of four, before the next stream.
        Kept as skeleton only when a stream follows; otherwise it is part of the trailing Gap."""
        ahead = self._input.peek(MAX_XZ_PADDING + len(XZ_MAGIC))
        zeros = len(ahead) - len(ahead.lstrip(b"\x00"))
        if zeros and zeros % 4 == 0 and ahead[zeros:].startswith(XZ_MAGIC):
            at = self._input.position
            self.segments.append(Skeleton(at, self._input.read_exact(zeros, "xz stream padding")))

    def _record_trailing(self) -> None:
        """Bytes after the last stream that start no new one (zero padding, garbage) are a Gap:
        counted here, not held; more than ``max_trailing_size`` of them are refused."""
        at = self._input.position
        limit = self._limits.max_trailing_size
        while self._input.read(min(PIECE_SIZE, at + limit + 1 - self._input.position)):
            if self._input.position > at + limit:
                flag = f"--max-trailing-size {limit}"
                raise LimitExceeded(self.archive, f"more than {limit} bytes after the last {self.format} stream, "
                                    f"past {flag}", None, at, limit=flag)
        self.segments.append(Gap(at, self._input.position - at))


class _Decoder:
    """zlib, bz2 and lzma decompressors behind one interface: output capped per call, exact end."""

    def __init__(self, method: CompressionMethod) -> None:
        self._zlib: zlib._Decompress | None = None
        self._other: bz2.BZ2Decompressor | lzma.LZMADecompressor | None = None
        self._pending = b""
        self._zlib_stalled = True
        if method == "deflate":
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate, no zlib wrapper
        elif method == "bzip2":
            self._other = bz2.BZ2Decompressor()
        else:
            self._other = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)

    @property
    def eof(self) -> bool:
        return self._zlib.eof if self._zlib is not None else self._require_other().eof

    @property
    def needs_input(self) -> bool:
        if self._zlib is not None:
            # zlib may hold output after consuming all input: ask again with no input until dry.
            return not self._pending and self._zlib_stalled
        return self._require_other().needs_input

    @property
    def unused_data(self) -> bytes:
        return self._zlib.unused_data if self._zlib is not None else self._require_other().unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._zlib is None:
            return self._require_other().decompress(data, max_length)
        out = self._zlib.decompress(self._pending + data, max_length)
        self._pending = self._zlib.unconsumed_tail
        self._zlib_stalled = not out or len(out) < max_length
        return out

    def _require_other(self) -> bz2.BZ2Decompressor | lzma.LZMADecompressor:
        assert self._other is not None
        return self._other
