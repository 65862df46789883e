"""Read zip archives and wheels exactly: members from the central directory, every other byte as skeleton.

Parsing starts at the end-of-central-directory record (EOCD), follows it (and the zip64 records)
to the central directory (CD), and then checks every local header against its CD entry. Bytes
before the first local header (a prepended stub), data descriptors, the CD, the EOCD, its comment
and any trailing bytes all end up in :class:`~.base.Gap` runs (read back as Skeleton by
:class:`ZipSource`), because the gaps are the complement of the members' data ranges. Field layouts follow PKWARE APPNOTE.TXT
6.3.10 (sections 4.3.7 local header, 4.3.9 data descriptor, 4.3.12 CD header, 4.3.14-4.3.16
zip64 and EOCD records, 4.5.3 zip64 extra field).
"""

from __future__ import annotations

import calendar
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from ..errors import InvalidArchive, LimitExceeded
from .base import (
    DEFAULT_LIMITS,
    METHOD_DEFLATED,
    METHOD_STORED,
    Event,
    Gap,
    KiB,
    Limits,
    Member,
    MemberKind,
    Skeleton,
    WorkBudget,
    decode_name,
    iter_runs,
)
from .inflate import iter_content, iter_raw

# Fixed-size record layouts, little-endian (APPNOTE 4.3.7, 4.3.12, 4.3.14, 4.3.15, 4.3.16).
LOCAL = struct.Struct("<4sHHHHHIIIHH")  # 30 bytes
CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")  # 46 bytes
EOCD = struct.Struct("<4sHHHHIIH")  # 22 bytes
EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
LOCATOR64 = struct.Struct("<4sIQI")  # 20 bytes
SIG_LOCAL: Final = b"PK\x03\x04"
SIG_CENTRAL: Final = b"PK\x01\x02"
SIG_EOCD: Final = b"PK\x05\x06"
SIG_EOCD64: Final = b"PK\x06\x06"
SIG_LOCATOR64: Final = b"PK\x06\x07"
SIG_DESCRIPTOR: Final = b"PK\x07\x08"

#: The EOCD ends with a comment of at most 0xFFFF bytes; up to ``Limits.max_trailing_size`` bytes
#: of junk after the comment (download padding) are tolerated before the backwards search gives up.
MAX_COMMENT: Final = 0xFFFF
#: 0xFFFFFFFF / 0xFFFF in a 32/16-bit field means "the real value is in the zip64 extra".
ZIP64_32: Final = 0xFFFFFFFF
ZIP64_16: Final = 0xFFFF
EXTRA_ZIP64: Final = 0x0001
#: General purpose flag bits (APPNOTE 4.4.4): 0 encrypted, 3 sizes in a data descriptor,
#: 6 strong encryption, 13 central directory encrypted.
FLAG_ENCRYPTED: Final = 1 << 0
FLAG_DESCRIPTOR: Final = 1 << 3
FLAG_STRONG: Final = 1 << 6
FLAG_CD_ENCRYPTED: Final = 1 << 13
#: "Version made by" upper byte 3 = Unix: the external attributes' high 16 bits are st_mode.
SYSTEM_UNIX: Final = 3
#: A symlink's target is its content; PATH_MAX (4096 on Linux) bounds a sensible one.
MAX_LINK_TARGET: Final = 4 * KiB


@dataclass(frozen=True, slots=True)
class ZipLayout:
    """A parsed zip: members in central-directory order, and all runs in file order."""

    archive: str
    size: int
    prefix_length: int
    comment: bytes
    members: tuple[Member, ...]
    segments: tuple[Gap | Member, ...]


@dataclass(frozen=True, slots=True)
class _Central:
    """What one CD entry says, zip64 values resolved."""

    raw_name: bytes
    system: int
    flags: int
    method: int
    dos_time: int
    dos_date: int
    crc: int
    csize: int
    usize: int
    external: int
    header_offset: int
    cd_offset: int


def parse_zip(f: BinaryIO, archive: str, limits: Limits = DEFAULT_LIMITS,
              budget: WorkBudget | None = None) -> ZipLayout:
    """Parse the zip in the seekable binary file ``f``; raise :class:`InvalidArchive` if it is not sound.

    Sizes are checked before any member is inflated: each against ``max_member_size``, their sum
    against ``max_total_size``, and the deflated members' sum against what ``budget`` has left.
    """
    size = f.seek(0, 2)
    comment, cd_start, cd_size, entries, shift = _find_directory(f, size, archive, limits.max_trailing_size)
    if entries > limits.max_members:
        raise LimitExceeded(archive, f"{entries} members, past --max-members {limits.max_members}",
                            limit=f"--max-members {limits.max_members}")
    centrals = _parse_central(_read_at(f, cd_start, cd_size, archive), cd_start, entries, archive)
    members: list[Member] = []
    regions: list[tuple[int, int, str]] = []
    total = inflated = 0
    for index, entry in enumerate(centrals):
        member, region_end = _check_local(f, index, entry, shift, cd_start, archive)
        if member.size > limits.max_member_size and not member.verbatim:
            flag = f"--max-member-size {limits.max_member_size}"
            raise LimitExceeded(archive, f"declares {member.size} bytes, past {flag}", member.label,
                                member.data_offset, limit=flag)
        total += member.size
        if total > limits.max_total_size:
            flag = f"--max-total-size {limits.max_total_size}"
            raise LimitExceeded(archive, f"members declare more than {flag} bytes", member.label,
                                member.data_offset, limit=flag)
        if member.method == METHOD_DEFLATED and not member.verbatim:
            inflated += member.size
            if budget is not None:
                budget.check_declared(inflated, archive, member.label, member.data_offset)
        if member.kind == "symlink":
            member = _with_link_target(f, member, archive)
        members.append(member)
        regions.append((entry.header_offset + shift, region_end, member.label))
    _check_regions(regions, cd_start, archive)
    segments = tuple(iter_runs(size, members, archive))
    return ZipLayout(archive, size, shift, comment, tuple(members), segments)


def _find_directory(f: BinaryIO, size: int, archive: str, trailing: int) -> tuple[bytes, int, int, int, int]:
    """Locate the EOCD by searching backwards; return (comment, cd start, cd size, entries, shift).

    The search looks at the last EOCD + comment + ``trailing`` bytes. ``shift`` is how far every
    stored offset is off because of bytes prepended to the archive: the CD really starts at
    ``stated offset + shift``.
    """
    window = min(size, EOCD.size + MAX_COMMENT + trailing)
    tail = _read_at(f, size - window, window, archive)
    base = size - window
    first_error: InvalidArchive | None = None
    at = tail.rfind(SIG_EOCD)
    while at >= 0:
        try:
            return _try_eocd(f, size, base + at, tail[at:], archive)
        except InvalidArchive as error:
            first_error = first_error or error
        at = tail.rfind(SIG_EOCD, 0, at)
    if first_error is not None:
        raise first_error
    raise InvalidArchive(archive, "no end of central directory record in the last "
                         f"{window} bytes: not a zip, truncated, or trailing bytes past --max-trailing-size "
                         f"{trailing}", None, size)


def _try_eocd(
    f: BinaryIO, size: int, eocd_at: int, record: bytes, archive: str
) -> tuple[bytes, int, int, int, int]:
    if len(record) < EOCD.size:
        raise InvalidArchive(archive, "end of central directory record is truncated", None, eocd_at)
    _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, comment_len = EOCD.unpack_from(record)
    if EOCD.size + comment_len > len(record):
        raise InvalidArchive(archive, "zip comment runs past the end of the file", None, eocd_at)
    comment = record[EOCD.size : EOCD.size + comment_len]
    cd_end = eocd_at
    locator_at = eocd_at - LOCATOR64.size
    zip64 = locator_at >= 0 and _read_at(f, locator_at, 4, archive) == SIG_LOCATOR64
    if zip64:
        _, z_disk, stated_eocd64, n_disks = LOCATOR64.unpack(_read_at(f, locator_at, LOCATOR64.size, archive))
        if z_disk != 0 or n_disks > 1:
            raise InvalidArchive(archive, "multi-disk zip archives are not supported", None, locator_at)
        eocd64_at = _find_eocd64(f, stated_eocd64, locator_at, archive)
        fields = EOCD64.unpack(_read_at(f, eocd64_at, EOCD64.size, archive))
        _, _, _, _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset = fields
        cd_end = eocd64_at
    if disk != 0 or cd_disk != 0 or disk_entries != entries:
        raise InvalidArchive(archive, "multi-disk zip archives are not supported", None, eocd_at)
    if cd_size > cd_end:
        raise InvalidArchive(archive, f"central directory size {cd_size} exceeds its position", None, eocd_at)
    # Prefer the stated offset; otherwise assume the CD sits right before the end records and
    # everything is shifted by a prepended stub (what `cat stub.exe x.zip` produces).
    for shift in (0, cd_end - cd_size - cd_offset):
        start = cd_offset + shift
        if shift < 0 or start + cd_size > cd_end:
            continue
        if entries == 0 or _read_at(f, start, 4, archive) == SIG_CENTRAL:
            return comment, start, cd_size, entries, shift
    raise InvalidArchive(archive, "central directory not found where the end record says", None, cd_offset)


def _find_eocd64(f: BinaryIO, stated: int, locator_at: int, archive: str) -> int:
    """The zip64 end record: at its stated offset, or (prepended data) right before the locator."""
    for at in (stated, locator_at - EOCD64.size):
        if 0 <= at <= locator_at - EOCD64.size and _read_at(f, at, 4, archive) == SIG_EOCD64:
            return at
    raise InvalidArchive(archive, "zip64 end of central directory record not found", None, stated)


def _parse_central(data: bytes, cd_start: int, entries: int, archive: str) -> list[_Central]:
    result: list[_Central] = []
    pos = 0
    for _ in range(entries):
        at = cd_start + pos
        if pos + CENTRAL.size > len(data) or data[pos : pos + 4] != SIG_CENTRAL:
            raise InvalidArchive(archive, "bad central directory entry", None, at)
        (_, made_by, _, flags, method, dos_time, dos_date, crc, csize, usize, name_len, extra_len, comment_len,
         disk, _, external, header_offset) = CENTRAL.unpack_from(data, pos)
        name_end = pos + CENTRAL.size + name_len
        extra_end = name_end + extra_len
        if extra_end + comment_len > len(data):
            raise InvalidArchive(archive, "central directory entry runs past the directory", None, at)
        raw_name = data[pos + CENTRAL.size : name_end]
        label = raw_name.decode("utf-8", "backslashreplace")
        if ZIP64_32 in (usize, csize, header_offset) or disk == ZIP64_16:
            values = _zip64_values(data[name_end:extra_end], archive, label, at)
            if usize == ZIP64_32:
                usize = next(values)
            if csize == ZIP64_32:
                csize = next(values)
            if header_offset == ZIP64_32:
                header_offset = next(values)
            if disk == ZIP64_16:
                disk = next(values)
        if disk != 0:
            raise InvalidArchive(archive, "multi-disk zip archives are not supported", label, at)
        if flags & FLAG_CD_ENCRYPTED:
            raise InvalidArchive(archive, "encrypted central directories are not supported", label, at)
        result.append(
            _Central(raw_name, made_by >> 8, flags, method, dos_time, dos_date, crc, csize, usize, external,
                     header_offset, at)
        )
        pos = extra_end + comment_len
    if pos != len(data):
        raise InvalidArchive(archive, f"central directory holds {len(data) - pos} bytes after its last entry",
                             None, cd_start + pos)
    return result


def _zip64_values(extra: bytes, archive: str, label: str, at: int) -> Iterator[int]:
    """The 8-byte values of the zip64 extra field (0x0001), in APPNOTE order; errors when missing."""
    body = _find_extra(extra, EXTRA_ZIP64)
    if body is None:
        raise InvalidArchive(archive, "zip64 field marker without a zip64 extra field", label, at)
    pos = 0
    while True:
        if pos + 8 <= len(body):
            yield int.from_bytes(body[pos : pos + 8], "little")
            pos += 8
        elif pos + 4 <= len(body):  # the disk number is the only 4-byte value, and the last
            yield int.from_bytes(body[pos : pos + 4], "little")
            pos += 4
        else:
            raise InvalidArchive(archive, "zip64 extra field is too short", label, at)


def _find_extra(extra: bytes, header_id: int) -> bytes | None:
    """The body of the extra-field block ``header_id``; junk that is not blocks (zipalign padding) is ignored."""
    pos = 0
    while pos + 4 <= len(extra):
        block_id, length = struct.unpack_from("<HH", extra, pos)
        if pos + 4 + length > len(extra):
            return None
        if block_id == header_id:
            return extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
    return None


def _check_local(
    f: BinaryIO, index: int, entry: _Central, shift: int, cd_start: int, archive: str
) -> tuple[Member, int]:
    """Cross-check the local header (and data descriptor) of ``entry``; return the member and its region end."""
    label = entry.raw_name.decode("utf-8", "backslashreplace")
    at = entry.header_offset + shift
    if at + LOCAL.size > cd_start:
        raise InvalidArchive(archive, "local header offset points past the central directory", label, at)
    head = _read_at(f, at, LOCAL.size, archive)
    sig, _, flags, method, _, _, crc, csize, usize, name_len, extra_len = LOCAL.unpack(head)
    if sig != SIG_LOCAL:
        raise InvalidArchive(archive, "no local file header where the central directory points", label, at)
    names = _read_at(f, at + LOCAL.size, name_len + extra_len, archive)
    if names[:name_len] != entry.raw_name:
        raise InvalidArchive(archive, "local header name differs from the central directory", label, at)
    if method != entry.method:
        raise InvalidArchive(archive, f"local header method {method} differs from central {entry.method}",
                             label, at)
    data_offset = at + LOCAL.size + name_len + extra_len
    data_end = data_offset + entry.csize
    if data_end > cd_start:
        raise InvalidArchive(archive, "member data runs into the central directory", label, data_offset)
    region_end = data_end
    if flags & FLAG_DESCRIPTOR:
        region_end += _descriptor_length(f, data_end, entry, cd_start, archive, label)
    else:
        if ZIP64_32 in (csize, usize):
            values = _zip64_values(names[name_len:], archive, label, at)
            usize = next(values) if usize == ZIP64_32 else usize
            csize = next(values) if csize == ZIP64_32 else csize
        if (crc, csize, usize) != (entry.crc, entry.csize, entry.usize):
            raise InvalidArchive(archive, "local header CRC or sizes differ from the central directory",
                                 label, at)
    verbatim = _verbatim_reason(entry.flags | flags, entry.method)
    if verbatim is None and entry.method == METHOD_STORED and entry.csize != entry.usize:
        raise InvalidArchive(archive, f"stored member has compressed size {entry.csize} != size {entry.usize}",
                             label, data_offset)
    kind, mode = _kind_and_mode(entry)
    if kind == "dir" and entry.usize and verbatim is None:
        # A directory entry cannot hold content in the tree; keep its bytes as they are.
        kind, verbatim = "other", "directory entry with content"
    member = Member(
        index=index,
        raw_name=entry.raw_name,
        name=decode_name(entry.raw_name),
        kind=kind,
        size=entry.usize,
        mode=mode,
        mtime=_dos_to_epoch(entry.dos_date, entry.dos_time),
        link_target=None,
        data_offset=data_offset,
        data_length=entry.csize,
        method=entry.method,
        crc=entry.crc,
        verbatim_reason=verbatim,
    )
    return member, region_end


def _descriptor_length(f: BinaryIO, at: int, entry: _Central, limit: int, archive: str, label: str) -> int:
    """Length of the data descriptor at ``at``: signature optional, sizes 4 or 8 bytes (APPNOTE 4.3.9)."""
    raw = _read_at(f, at, min(24, limit - at), archive, exact=False)
    expected = (entry.crc, entry.csize, entry.usize)
    for signed in (True, False):
        body = raw[4:] if signed else raw
        if signed and raw[:4] != SIG_DESCRIPTOR:
            continue
        for fmt in ("<III", "<IQQ"):
            width = struct.calcsize(fmt)
            if len(body) >= width and struct.unpack_from(fmt, body) == expected:
                return width + (4 if signed else 0)
    raise InvalidArchive(archive, "data descriptor missing or differs from the central directory", label, at)


def _verbatim_reason(flags: int, method: int) -> str | None:
    if flags & (FLAG_ENCRYPTED | FLAG_STRONG):
        return "encrypted member"
    if method not in (METHOD_STORED, METHOD_DEFLATED):
        return f"compression method {method} is kept as stored"
    return None


def _kind_and_mode(entry: _Central) -> tuple[MemberKind, int | None]:
    mode = entry.external >> 16 if entry.system == SYSTEM_UNIX else None
    if entry.raw_name.endswith(b"/"):
        return "dir", mode
    if mode:
        if stat.S_ISLNK(mode):
            return "symlink", mode
        if stat.S_ISDIR(mode):
            return "dir", mode
        if not stat.S_ISREG(mode) and stat.S_IFMT(mode):
            return "other", mode
    return "file", mode


def _dos_to_epoch(dos_date: int, dos_time: int) -> int | None:
    """DOS date/time (APPNOTE 4.4.6: 7-bit year since 1980, 4-bit month, 5-bit day; 5/6/5 bits
    hour, minute, seconds/2) as seconds since the epoch, read as UTC; None if it is no real date."""
    year, month, day = (dos_date >> 9) + 1980, (dos_date >> 5) & 0xF, dos_date & 0x1F
    hour, minute, second = dos_time >> 11, (dos_time >> 5) & 0x3F, (dos_time & 0x1F) * 2
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    return calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0))


def _with_link_target(f: BinaryIO, member: Member, archive: str) -> Member:
    """A zip symlink's target is its content; read it if it is short enough to be a path."""
    if member.verbatim or member.size > MAX_LINK_TARGET:
        return member
    target = b"".join(iter_content(f, member, archive, MAX_LINK_TARGET))
    return Member(
        member.index, member.raw_name, member.name, member.kind, member.size, member.mode, member.mtime,
        target, member.data_offset, member.data_length, member.method, member.crc, member.verbatim_reason,
    )


def _check_regions(regions: list[tuple[int, int, str]], cd_start: int, archive: str) -> None:
    """Local header + data + descriptor of each member must not overlap another's (overlap bombs)."""
    regions.sort()
    previous_end, previous = 0, ""
    for start, end, label in regions:
        if start < previous_end:
            raise InvalidArchive(archive, f"entry overlaps member {previous!r}", label, start)
        previous_end, previous = end, label
    if previous_end > cd_start:
        raise InvalidArchive(archive, "member data runs into the central directory", previous, cd_start)


def _read_at(f: BinaryIO, offset: int, length: int, archive: str, *, exact: bool = True) -> bytes:
    f.seek(offset)
    data = f.read(length)
    if exact and len(data) != length:
        raise InvalidArchive(archive, "archive is truncated", None, offset + len(data))
    return data


class ZipSource:
    """A zip or wheel as an :class:`~.base.ArchiveSource`: runs in file order, contents inflated."""

    def __init__(self, f: BinaryIO, archive: str, limits: Limits = DEFAULT_LIMITS,
                 budget: WorkBudget | None = None) -> None:
        self._file = f
        self._archive = archive
        self._limits = limits
        self._budget = budget if budget is not None else limits.budget(f.seek(0, 2))
        self.layout = parse_zip(f, archive, limits, self._budget)

    @property
    def archive(self) -> str:
        return self._archive

    def iter_events(self) -> Iterator[Event]:
        for segment in self.layout.segments:
            if isinstance(segment, Gap):
                for offset, piece in _iter_pieces(self._file, segment.offset, segment.length, self._archive):
                    yield Skeleton(offset, piece)
            else:
                yield segment
                yield from iter_content(self._file, segment, self._archive, self._limits.max_member_size,
                                        self._budget)


def _iter_pieces(f: BinaryIO, offset: int, length: int, archive: str) -> Iterator[tuple[int, bytes]]:
    for piece in iter_raw(f, offset, length, archive):
        yield offset, piece
        offset += len(piece)
