"""The records every archive reader produces: members, skeleton bytes, limits, and format sniffing.

An archive is split into two interleaved kinds of byte runs that, concatenated in offset order,
give the archive back bit for bit::

    | Skeleton | Member data | Skeleton | Member data | ... | Skeleton |
      header     (raw bytes)   padding,    ...                 central directory, end blocks,
                               next header                      trailing bytes

Skeleton runs carry their bytes (they go into the recipe), or, when they may be huge, are a
:class:`Gap` (offset and length) to read back from the file; member runs are only an offset and
a length into the container stream (they become UnixFS leaves). A reader never hashes and never
writes: it yields these records and the member contents, and the importer decides where they go.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

from ..errors import InvalidArchive, LimitExceeded

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

#: Size of the pieces member contents are yielded in: big enough to amortise Python overhead,
#: small enough that a dozen of them in flight stay far below the 300 MB peak-memory target.
PIECE_SIZE: Final = 1 * MiB

MemberKind = Literal["file", "dir", "symlink", "hardlink", "other"]
ArchiveFormat = Literal["zip", "tar", "gzip", "bzip2", "xz"]

#: Zip compression methods this importer stores as uncompressed leaves (APPNOTE 4.4.5).
METHOD_STORED: Final = 0
METHOD_DEFLATED: Final = 8


#: ``--max-ratio`` default: content bytes an archive may inflate to per byte of its own size. The
#: 98 real wheels measured (2.5 KB to 555 MB: torch, nvidia, scipy, transformers...; README
#: "Import limits") reach 7.2 (5.7 above 1 MB), and the most compressible project of the top100
#: benchmark's table reaches 8.2 over all its files (REPORT.md, "Where structural import loses");
#: deflate's own maximum is 1032 (a 258-byte match coded in about 2 bits). 100 leaves real packages an order of magnitude of room and refuses a deflate
#: bomb that is not at least 10 times less dense than the densest one.
DEFAULT_MAX_RATIO: Final = 100
#: Content any archive may inflate to whatever its size (the ratio applies above it): a 50 KB
#: sdist with a 20 MB zero-filled test image is legitimate, and 64 MiB inflates in a fraction of a
#: second, so a tiny bomb costs no more than that.
RATIO_FLOOR: Final = 64 * MiB
#: ``--max-trailing-size`` default: bytes allowed after an archive's end (after a tar's first end
#: block, the last gzip/bzip2/xz stream, a zip's end record and comment). Kept byte for byte in the
#: skeleton; tarfile and GNU tar pad to 10 KiB records (9,728 bytes after the first end block),
#: so 1 MiB is 100 times what real archives carry, and a bound on what a spool may hold.
DEFAULT_MAX_TRAILING: Final = 1 * MiB
#: ``--max-members`` default. Each member costs ~2 KiB until the recipe is written (its record,
#: tree entry, content CID, report line): 100,000 tiny members peak at 275 MiB (zip) and 207 MiB
#: (tar.gz), within the 300 MB target, and the largest real wheel measured has 15,586 (lm_eval
#: 0.4.13; README "Import limits").
DEFAULT_MAX_MEMBERS: Final = 100_000


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps that stop zip bombs, tar bombs and trailing garbage early, each with a one-line error.

    ``max_member_size`` bounds one member's content, ``max_total_size`` the bytes decompressed in
    one import (every member, every container stream, every nesting level), ``max_ratio`` the
    same bytes per byte of the archive (above :data:`RATIO_FLOOR`), ``max_members`` the member
    count, ``max_trailing_size`` the bytes after the archive's end.
    """

    max_member_size: int = 4 * GiB
    max_total_size: int = 16 * GiB
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: int = DEFAULT_MAX_RATIO
    max_trailing_size: int = DEFAULT_MAX_TRAILING

    def budget(self, archive_size: int | None) -> WorkBudget:
        """The decompression budget of one import of an ``archive_size``-byte file (None: unknown,
        only ``max_total_size`` applies): min(max_total_size, max(max_ratio x size, RATIO_FLOOR))."""
        if archive_size is not None:
            by_ratio = max(self.max_ratio * archive_size, RATIO_FLOOR)
            if by_ratio < self.max_total_size:
                floor = ", the floor for small archives" if by_ratio == RATIO_FLOOR else ""
                return WorkBudget(by_ratio, f"--max-ratio {self.max_ratio}",
                                  f" ({by_ratio} bytes for this {archive_size}-byte file{floor})")
        return WorkBudget(self.max_total_size, f"--max-total-size {self.max_total_size}")


class WorkBudget:
    """Bytes the decompressors of one import may still produce, shared by every nesting level.

    Every decompressor (zip member inflation, gzip/bzip2/xz containers) charges its output as it
    goes, so a bomb stops after at most ``limit`` bytes of work in total, whatever its shape;
    ``flag`` names the limit in the error, ``detail`` how it was derived. Thread-safe: nested
    archives import on worker threads.
    """

    def __init__(self, limit: int, flag: str, detail: str = "") -> None:
        self.limit = limit
        self.flag = flag
        self.detail = detail
        self.spent = 0
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        return self.limit - self.spent

    def charge(self, amount: int, archive: str, member: str | None, offset: int | None) -> None:
        """Count ``amount`` bytes produced; raise LimitExceeded once the total passes the limit."""
        with self._lock:
            self.spent += amount
            over = self.spent > self.limit
        if over:
            raise LimitExceeded(archive, f"inflates past {self.flag}{self.detail}", member, offset, limit=self.flag)

    def check_declared(self, amount: int, archive: str, member: str | None, offset: int | None) -> None:
        """Refuse up front what headers declare beyond the remaining budget (no work is done)."""
        if amount > self.remaining:
            left = "" if self.spent == 0 else f", {self.remaining} bytes left"
            raise LimitExceeded(archive, f"members declare {amount} bytes, past {self.flag}{self.detail}{left}",
                                member, offset, limit=self.flag)


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class Member:
    """One archive member: its name, kind, metadata and where its data lies in the container stream.

    ``data_offset``/``data_length`` locate the member's stored bytes (compressed for a deflated zip
    member) in the stream the reader parsed: the file for zip, the decompressed tar stream for
    tar. ``size`` is the content length after decompression. ``verbatim`` members (encrypted or
    unknown-method zip members, GNU sparse tar members) have no usable content: their stored bytes
    are kept as they are, and ``verbatim_reason`` says why.
    """

    index: int
    raw_name: bytes
    name: str | None
    kind: MemberKind
    size: int
    mode: int | None
    mtime: int | None
    link_target: bytes | None
    data_offset: int
    data_length: int
    method: int = METHOD_STORED
    crc: int | None = None
    verbatim_reason: str | None = None

    @property
    def verbatim(self) -> bool:
        return self.verbatim_reason is not None

    @property
    def label(self) -> str:
        """The name as errors show it: decoded if possible, else the escaped raw bytes."""
        return self.name if self.name is not None else self.raw_name.decode("utf-8", "backslashreplace")


@dataclass(frozen=True, slots=True)
class Skeleton:
    """Bytes of the archive that are not member data, at ``offset`` in the parsed stream."""

    offset: int
    data: bytes

    @property
    def end(self) -> int:
        return self.offset + len(self.data)


@dataclass(frozen=True, slots=True)
class Gap:
    """Skeleton bytes not held in memory: ``length`` bytes at ``offset`` of the seekable file parsed.

    Used where a run can be arbitrarily large (a zip's prepended stub, trailing bytes after a
    compressed stream); the caller reads it back from the file in pieces when it needs it.
    """

    offset: int
    length: int

    @property
    def end(self) -> int:
        return self.offset + self.length


#: What a streaming reader yields: skeleton runs, and each member followed by its content pieces.
Event = Skeleton | Member | bytes


@runtime_checkable
class ArchiveSource(Protocol):
    """A parsed archive as one ordered event stream.

    ``iter_events`` yields, in stream order, every :class:`Skeleton` run and every
    :class:`Member`; each member is followed by its content as ``bytes`` pieces (decompressed and
    checked, never more than ``Limits.max_member_size``; a verbatim member's stored bytes).
    """

    @property
    def archive(self) -> str:
        """The archive's name as errors show it."""
        ...

    def iter_events(self) -> Iterator[Event]: ...


def decode_name(raw: bytes) -> str | None:
    """Strict UTF-8 decoding; None for names that cannot be a tree path."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def iter_runs(total: int, members: Iterable[Member], archive: str) -> Iterator[Gap | Member]:
    """Interleave ``members`` (sorted by data offset) with the gaps between them.

    Every byte of ``[0, total)`` not inside some member's data falls in a :class:`Gap`, so the
    result reassembles exactly by construction. Overlapping member data is rejected: it is the
    mark of an overlap bomb (many entries pointing at the same compressed bytes).
    """
    position = 0
    previous: Member | None = None
    for member in sorted(members, key=lambda m: (m.data_offset, m.index)):
        if member.data_offset < position:
            other = previous.label if previous is not None else "?"
            raise InvalidArchive(archive, f"data overlaps member {other!r}", member.label, member.data_offset)
        if member.data_offset > position:
            yield Gap(position, member.data_offset - position)
        yield member
        position = member.data_offset + member.data_length
        previous = member
    if position > total:
        raise InvalidArchive(archive, "member data runs past the end of the archive", None, total)
    if position < total:
        yield Gap(position, total - position)


class Readable(Protocol):
    """A forward-only byte stream: a file, a socket, or a decompressor's output."""

    def read(self, size: int = -1, /) -> bytes: ...


class ReadAt(Protocol):
    """``read_at(offset, length)``: exactly ``length`` bytes from ``offset``."""

    def __call__(self, offset: int, length: int, /) -> bytes: ...


def reassemble(runs: Iterable[Skeleton | Gap | Member], read_at: ReadAt) -> Iterator[bytes]:
    """Yield the archive back: skeleton bytes as held, gaps and member data read via ``read_at``."""
    for run in runs:
        if isinstance(run, Skeleton):
            yield run.data
        elif isinstance(run, Gap):
            yield read_at(run.offset, run.length)
        else:
            yield read_at(run.data_offset, run.data_length)


# --- format sniffing -------------------------------------------------------------------------

#: Magic numbers: gzip RFC 1952 §2.3.1 (ID1 ID2 CM=8), bzip2 "BZh" + block size digit, xz
#: spec §2.1.1.1 header magic, zip APPNOTE 4.3.7 local header and 4.3.16 end of central
#: directory (an empty zip is only an EOCD).
GZIP_MAGIC: Final = b"\x1f\x8b\x08"
BZIP2_MAGIC: Final = b"BZh"
XZ_MAGIC: Final = b"\xfd7zXZ\x00"
ZIP_LOCAL_MAGIC: Final = b"PK\x03\x04"
ZIP_EOCD_MAGIC: Final = b"PK\x05\x06"
#: ustar magic at byte 257 of the first header: POSIX "ustar\0" + "00", GNU "ustar  \0".
TAR_MAGIC_OFFSET: Final = 257
TAR_BLOCK: Final = 512


def tar_checksum_ok(block: bytes) -> bool:
    """True if a 512-byte block carries a valid tar header checksum (the v7 test).

    The checksum (bytes 148-155, octal) is the sum of all 512 bytes with the checksum field
    itself counted as eight spaces; historic tars summed signed chars, so both sums are accepted.
    """
    if len(block) != TAR_BLOCK or block == bytes(TAR_BLOCK):
        return False
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or any(c not in b"01234567" for c in field):
        return False
    stored = int(field, 8)
    masked = block[:148] + b" " * 8 + block[156:]
    unsigned = sum(masked)
    if stored == unsigned:
        return True
    return stored == unsigned - 256 * sum(1 for b in masked if b >= 128)  # bytes >= 128 as negative


def detect_format(head: bytes, tail: bytes = b"") -> ArchiveFormat | None:
    """Name the outermost format from the first bytes (and, for zips with prepended data, the last).

    >>> detect_format(b"PK\\x03\\x04" + bytes(26))
    'zip'
    >>> detect_format(b"hello, I am a text file named evil.whl") is None
    True
    """
    if head.startswith((ZIP_LOCAL_MAGIC, ZIP_EOCD_MAGIC)):
        return "zip"
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZIP2_MAGIC) and len(head) > 3 and head[3:4] in b"123456789":
        return "bzip2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head[TAR_MAGIC_OFFSET : TAR_MAGIC_OFFSET + 5] == b"ustar" or tar_checksum_ok(head[:TAR_BLOCK]):
        return "tar"
    if ZIP_EOCD_MAGIC in tail:
        return "zip"
    return None
