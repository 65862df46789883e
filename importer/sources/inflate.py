"""Stream one zip member's content: stored bytes checked, deflate inflated, all within limits.

Inflation runs in pieces (``zlib.decompressobj`` with ``max_length``), so memory stays bounded
however far a member expands, and it stops as soon as the output passes the member's declared
size or the per-member limit: a zip bomb costs at most that many bytes of work. CRC-32 and size
are checked at the end, and the deflate stream must end exactly at the compressed size.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO, Final

from ..errors import InvalidArchive, LimitExceeded
from .base import METHOD_DEFLATED, PIECE_SIZE, KiB, Member, WorkBudget

#: Read size for compressed input: 64 KiB keeps each zlib call short and the buffer small.
READ_SIZE: Final = 64 * KiB


def iter_raw(f: BinaryIO, offset: int, length: int, archive: str) -> Iterator[bytes]:
    """The bytes ``[offset, offset + length)`` of ``f`` in pieces of at most PIECE_SIZE."""
    end = offset + length
    while offset < end:
        f.seek(offset)
        piece = f.read(min(PIECE_SIZE, end - offset))
        if not piece:
            raise InvalidArchive(archive, "archive is truncated", None, offset)
        offset += len(piece)
        yield piece


def iter_content(f: BinaryIO, member: Member, archive: str, limit: int,
                 budget: WorkBudget | None = None) -> Iterator[bytes]:
    """A member's content in pieces: stored bytes checked, deflate inflated (charged to ``budget``),
    verbatim bytes as stored."""
    if member.verbatim:
        yield from iter_raw(f, member.data_offset, member.data_length, archive)
    elif member.method == METHOD_DEFLATED:
        yield from iter_inflated(f, member, archive, limit, budget)
    else:
        _check_limit(member, archive, limit)
        crc = 0
        for piece in iter_raw(f, member.data_offset, member.data_length, archive):
            crc = zlib.crc32(piece, crc)
            yield piece
        _check_crc(member, crc, archive)


def iter_inflated(f: BinaryIO, member: Member, archive: str, limit: int,
                  budget: WorkBudget | None = None) -> Iterator[bytes]:
    """Inflate a deflated member in pieces of at most PIECE_SIZE, in bounded memory.

    Refuses a member whose declared size is over ``limit``, and stops with :class:`InvalidArchive`
    as soon as the output passes the declared size (a zip bomb ends after at most ``limit`` bytes
    of work) or ``budget`` runs out, when the deflate data is corrupt or ends before/after the
    compressed size, and when CRC-32 or size do not match.

    A member with no compressed bytes at all is empty: no deflate stream is not a valid one (even
    an empty stream is 2 bytes, ``03 00``), but old writers stored directories and empty files so
    (setuptools 0.9's 2013 sdist), and unzip and CPython's zipfile read them as empty.
    """
    _check_limit(member, archive, limit)  # so the declared size is also within the limit
    if member.data_length == 0:
        if member.size:
            raise InvalidArchive(archive, f"no deflate data for a member of {member.size} bytes (truncated)",
                                 member.label, member.data_offset)
        _check_crc(member, 0, archive)
        return
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate: no zlib header or trailer
    remaining = member.data_length
    pending = b""
    produced = crc = 0
    while not inflater.eof:
        consumed = member.data_length - remaining - len(pending)
        if not pending and remaining:
            # Seek every time: the caller may read the same file between our pieces.
            f.seek(member.data_offset + member.data_length - remaining)
            pending = f.read(min(READ_SIZE, remaining))
            if not pending:
                raise InvalidArchive(archive, "archive is truncated", member.label, member.data_offset + consumed)
            remaining -= len(pending)
        try:
            out = inflater.decompress(pending, PIECE_SIZE)
        except zlib.error as error:
            raise InvalidArchive(archive, f"corrupt deflate data ({error})", member.label,
                                 member.data_offset + consumed) from None
        pending = inflater.unconsumed_tail
        if not out and not pending and not remaining and not inflater.eof:
            raise InvalidArchive(archive, "deflate data ends before the stream does (truncated)", member.label,
                                 member.data_offset + member.data_length)
        produced += len(out)
        if budget is not None and out:
            budget.charge(len(out), archive, member.label, member.data_offset + consumed)
        if produced > member.size:
            raise InvalidArchive(archive, f"member inflates past its declared size of {member.size} bytes",
                                 member.label, member.data_offset + consumed)
        if out:
            crc = zlib.crc32(out, crc)
            yield out
    leftover = len(inflater.unused_data) + len(pending) + remaining
    if leftover:
        raise InvalidArchive(archive, f"deflate stream ends {leftover} bytes before the compressed size",
                             member.label, member.data_offset + member.data_length - leftover)
    if produced != member.size:
        raise InvalidArchive(archive, f"member inflates to {produced} bytes, not {member.size}", member.label,
                             member.data_offset)
    _check_crc(member, crc, archive)


def _check_limit(member: Member, archive: str, limit: int) -> None:
    if member.size > limit:
        raise LimitExceeded(archive, f"declares {member.size} bytes, past --max-member-size {limit}",
                            member.label, member.data_offset, limit=f"--max-member-size {limit}")


def _check_crc(member: Member, crc: int, archive: str) -> None:
    if member.crc is not None and crc != member.crc:
        raise InvalidArchive(archive, f"CRC-32 {crc:08x} does not match the recorded {member.crc:08x}",
                             member.label, member.data_offset)
