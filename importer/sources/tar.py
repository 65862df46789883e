"""Read a tar stream exactly, in one pass: header blocks, padding and end blocks as skeleton, data as members.

The stream is read forwards only (it is usually the output of a decompressor), in 512-byte
blocks. Formats: v7, POSIX ustar (name ``prefix``), GNU (``L``/``K`` long name and link
members, ``S`` old sparse members with extension blocks, base-256 numbers) and pax (``x``
per-member and ``g`` global extended headers; ``path``, ``linkpath``, ``size`` and ``mtime``
override the header). Extended-header members (``L``, ``K``, ``x``, ``g``) are metadata: their
header and data go into the skeleton of the member they describe. Field offsets follow POSIX
pax(1) "ustar Interchange Format" and GNU tar's ``tar.h``; the reading rules follow CPython's
``tarfile`` so that what Python's own tools accept, this accepts.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from ..errors import InvalidArchive, LimitExceeded
from .base import (
    DEFAULT_LIMITS,
    PIECE_SIZE,
    TAR_BLOCK,
    Event,
    Limits,
    Member,
    MemberKind,
    MiB,
    Readable,
    Skeleton,
    decode_name,
    tar_checksum_ok,
)

ZERO_BLOCK: Final = bytes(TAR_BLOCK)
POSIX_MAGIC: Final = b"ustar\x0000"  # magic "ustar\0" + version "00" (bytes 257-264)
#: Typeflags (POSIX + GNU tar.h). Only these carry data blocks; every unknown type is read
#: as a regular file, as POSIX asks, but kept verbatim.
REGULAR_TYPES: Final = (b"0", b"\x00", b"7")
NO_DATA_TYPES: Final = {b"1": "hardlink", b"2": "symlink", b"3": "other", b"4": "other", b"5": "dir", b"6": "other"}
GNU_LONGNAME: Final = b"L"
GNU_LONGLINK: Final = b"K"
GNU_SPARSE: Final = b"S"
PAX_LOCAL: Final = b"x"
PAX_GLOBAL: Final = b"g"
#: Extended headers hold a path or a few records; anything bigger is an attack on memory.
MAX_EXTENDED: Final = 1 * MiB
#: GNU old sparse: byte 482 says extension blocks follow; in each extension block byte 504 does.
SPARSE_EXTENDED_AT: Final = 482
SPARSE_EXTENSION_EXTENDED_AT: Final = 504


class _Reader:
    """Forward-only reads with a position, raising InvalidArchive on a short read."""

    def __init__(self, stream: Readable, archive: str) -> None:
        self._stream = stream
        self.archive = archive
        self.position = 0

    def read(self, size: int, *, member: str | None = None) -> bytes:
        data = self._stream.read(size)
        while len(data) < size:
            more = self._stream.read(size - len(data))
            if not more:
                raise InvalidArchive(self.archive, "archive is truncated", member, self.position + len(data))
            data += more
        self.position += size
        return data

    def read_some(self, size: int) -> bytes:
        data = self._stream.read(size)
        self.position += len(data)
        return data


def iter_tar(stream: Readable, archive: str, limits: Limits = DEFAULT_LIMITS) -> Iterator[Event]:
    """Yield the skeleton runs and members of the tar in ``stream``, each member followed by its data.

    Concatenating every :class:`~.base.Skeleton` and every data piece in order gives the stream
    back exactly. Raises :class:`InvalidArchive` (with member name and stream offset) on a bad
    checksum, a malformed number or extended header, truncation, or a limit being passed.
    Offsets, in members and errors alike, count bytes of the tar stream: for a ``.tar.gz`` that
    is the decompressed stream, not the file.
    """
    reader = _Reader(stream, archive)
    skeleton = bytearray()
    skeleton_at = 0
    long_name: bytes | None = None
    long_link: bytes | None = None
    pax: dict[str, bytes] = {}
    pax_global: dict[str, bytes] = {}
    index = total = 0
    while True:
        header_at = reader.position
        block = reader.read_some(TAR_BLOCK)
        if len(block) < TAR_BLOCK:
            reason = "archive is truncated" if block else "archive ends without its end-of-archive blocks"
            raise InvalidArchive(archive, reason, None, header_at + len(block))
        if block == ZERO_BLOCK:
            if long_name is not None or long_link is not None or pax:
                raise InvalidArchive(archive, "extended header is not followed by a member", None, header_at)
            skeleton += block
            yield Skeleton(skeleton_at, bytes(skeleton))
            yield from _iter_trailer(reader, limits.max_trailing_size)
            return
        raw_header_name = block[:100].split(b"\x00", 1)[0]
        label = raw_header_name.decode("utf-8", "backslashreplace")
        if not tar_checksum_ok(block):
            raise InvalidArchive(archive, "header checksum mismatch", label, header_at)
        typeflag = block[156:157]
        size = _number(block[124:136], archive, label, header_at, "size")
        skeleton += block
        if typeflag in (GNU_LONGNAME, GNU_LONGLINK, PAX_LOCAL, PAX_GLOBAL):
            if size > MAX_EXTENDED:
                raise InvalidArchive(archive, f"extended header of {size} bytes", label, header_at)
            data = reader.read(size, member=label)
            skeleton += data + reader.read(_padding(size), member=label)
            if typeflag == GNU_LONGNAME:
                long_name = data.split(b"\x00", 1)[0]
            elif typeflag == GNU_LONGLINK:
                long_link = data.split(b"\x00", 1)[0]
            elif typeflag == PAX_LOCAL:
                pax.update(_parse_pax(data, archive, label, header_at))
            else:
                pax_global.update(_parse_pax(data, archive, label, header_at))
            continue
        fields = {**pax_global, **pax}
        name = _header_name(block, raw_header_name)
        name = fields.get("path") or long_name or name
        link = fields.get("linkpath") or long_link or block[157:257].split(b"\x00", 1)[0]
        label = name.decode("utf-8", "backslashreplace")
        if "size" in fields:
            size = _pax_int(fields["size"], archive, label, header_at, "size")
        mtime = _number(block[136:148], archive, label, header_at, "mtime")
        if "mtime" in fields:
            mtime = _pax_int(fields["mtime"].split(b".", 1)[0], archive, label, header_at, "mtime")
        mode = _number(block[100:108], archive, label, header_at, "mode")
        kind, verbatim, has_data = _classify(typeflag, name, fields)
        if typeflag == GNU_SPARSE and block[SPARSE_EXTENDED_AT]:
            skeleton += _read_sparse_extensions(reader, label)
        long_name = long_link = None
        pax = {}
        if not has_data:
            size = 0
        if size < 0:
            raise InvalidArchive(archive, f"negative size {size}", label, header_at)
        if size > limits.max_member_size:
            flag = f"--max-member-size {limits.max_member_size}"
            raise LimitExceeded(archive, f"declares {size} bytes, past {flag}", label, header_at, limit=flag)
        total += size
        if total > limits.max_total_size:
            flag = f"--max-total-size {limits.max_total_size}"
            raise LimitExceeded(archive, f"members declare more than {flag} bytes", label, header_at, limit=flag)
        if index >= limits.max_members:
            flag = f"--max-members {limits.max_members}"
            raise LimitExceeded(archive, f"more members than {flag}", label, header_at, limit=flag)
        yield Skeleton(skeleton_at, bytes(skeleton))
        yield Member(
            index=index,
            raw_name=name,
            name=decode_name(name),
            kind=kind,
            size=size,
            mode=mode,
            mtime=mtime,
            link_target=link if kind in ("symlink", "hardlink") else None,
            data_offset=reader.position,
            data_length=size,
            verbatim_reason=verbatim,
        )
        index += 1
        remaining = size
        while remaining:
            piece = reader.read(min(PIECE_SIZE, remaining), member=label)
            remaining -= len(piece)
            yield piece
        skeleton_at = reader.position
        skeleton = bytearray(reader.read(_padding(size), member=label))


def _iter_trailer(reader: _Reader, limit: int) -> Iterator[Skeleton]:
    """Everything after the first zero block: the second one, record padding, trailing bytes.

    At most ``limit`` bytes: past that the rest (gigabytes of zeros after a tiny tar, in a
    gzip stream) is refused after reading one byte more, not spooled to the skeleton.
    """
    end = reader.position
    while True:
        at = reader.position
        piece = reader.read_some(min(PIECE_SIZE, end + limit + 1 - at))
        if not piece:
            return
        if reader.position > end + limit:
            flag = f"--max-trailing-size {limit}"
            raise LimitExceeded(reader.archive, f"more than {limit} bytes after the tar's end-of-archive block, "
                                f"past {flag}", None, end, limit=flag)
        yield Skeleton(at, piece)


def _header_name(block: bytes, name: bytes) -> bytes:
    """The header's own name: ustar joins ``prefix`` (bytes 345-499) and ``name`` with a slash."""
    if block[257:265] == POSIX_MAGIC:
        prefix = block[345:500].split(b"\x00", 1)[0]
        if prefix:
            return prefix + b"/" + name
    return name


def _classify(typeflag: bytes, name: bytes, fields: dict[str, bytes]) -> tuple[MemberKind, str | None, bool]:
    """(kind, verbatim reason, whether data blocks follow) for a member header."""
    if any(key.startswith("GNU.sparse.") for key in fields):
        return "file", "pax sparse member (stored data is not the file content)", True
    if typeflag == GNU_SPARSE:
        return "file", "GNU sparse member (stored data is not the file content)", True
    if typeflag in REGULAR_TYPES:
        # v7 tars mark directories as regular files whose name ends in a slash (as tarfile reads them).
        if typeflag == b"\x00" and name.endswith(b"/"):
            return "dir", None, False
        return "file", None, True
    if typeflag in NO_DATA_TYPES:
        kind: MemberKind = NO_DATA_TYPES[typeflag]  # type: ignore[assignment]
        return kind, None, False
    return "other", f"unknown tar type {typeflag!r}", True


def _read_sparse_extensions(reader: _Reader, label: str) -> bytes:
    """GNU old sparse extension blocks (21 sparse entries each), chained by their byte 504."""
    blocks = bytearray()
    while True:
        block = reader.read(TAR_BLOCK, member=label)
        blocks += block
        if not block[SPARSE_EXTENSION_EXTENDED_AT]:
            return bytes(blocks)
        if len(blocks) > MAX_EXTENDED:
            raise InvalidArchive(reader.archive, "too many sparse extension blocks", label, reader.position)


def _padding(size: int) -> int:
    """Bytes from the end of ``size`` data bytes to the next 512-byte block boundary."""
    return -size % TAR_BLOCK


def _number(field: bytes, archive: str, label: str, at: int, what: str) -> int:
    """A numeric header field: octal ASCII ended by NUL or space, or GNU base-256 (high bit set)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[0] == 0xFF else value
    text = field.split(b"\x00", 1)[0].strip()
    if not text:
        return 0
    if any(c not in b"01234567" for c in text):
        raise InvalidArchive(archive, f"malformed {what} field {field!r}", label, at)
    return int(text, 8)


def _pax_int(value: bytes, archive: str, label: str, at: int, what: str) -> int:
    text = value.strip()
    if not text.lstrip(b"-").isdigit():
        raise InvalidArchive(archive, f"malformed pax {what} {value!r}", label, at)
    return int(text)


def _parse_pax(data: bytes, archive: str, label: str, at: int) -> dict[str, bytes]:
    """Pax records ``"<len> <key>=<value>\\n"``, ``len`` counting the whole record (POSIX pax).

    An empty value removes the key (it then falls back to the header field).
    """
    records: dict[str, bytes] = {}
    pos = 0
    while pos < len(data):
        if not data[pos:].strip(b"\x00"):
            break  # NUL padding after the last record
        space = data.find(b" ", pos)
        length_text = data[pos:space] if space > pos else b""
        if not length_text.isdigit() or int(length_text) <= space - pos + 1:
            raise InvalidArchive(archive, "malformed pax extended header", label, at)
        end = pos + int(length_text)
        record = data[space + 1 : end]
        if end > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise InvalidArchive(archive, "malformed pax extended header", label, at)
        key, _, value = record[:-1].partition(b"=")
        text_key = key.decode("utf-8", "backslashreplace")
        if value:
            records[text_key] = value
        else:
            records.pop(text_key, None)
        pos = end
    return records


class TarSource:
    """A tar stream as an :class:`~.base.ArchiveSource`; ``members`` fills in as events are read.

    The stream is read forwards only: do not read it elsewhere while iterating.
    """

    def __init__(self, stream: Readable, archive: str, limits: Limits = DEFAULT_LIMITS) -> None:
        self._stream = stream
        self._archive = archive
        self._limits = limits
        self.members: list[Member] = []

    @property
    def archive(self) -> str:
        return self._archive

    def iter_events(self) -> Iterator[Event]:
        for event in iter_tar(self._stream, self._archive, self._limits):
            if isinstance(event, Member):
                self.members.append(event)
            yield event
