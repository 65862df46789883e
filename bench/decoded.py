"""Each archive of the benchmark read and decompressed once, in the form every strategy starts from.

:func:`decode_archive` opens an archive with the importer's own sources (:mod:`importer.sources`),
so member boundaries, names, skeleton runs and container streams are exactly the importer's; it
keeps the decompressed body in memory (benchmark archives are at most a few hundred MB) with each
member's place in it, the skeleton already compressed into its frame, and the recipe's ``outer``
items. :func:`open_nested` decodes a member as an archive of its own, as ``--open-nested`` would.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import zlib
from dataclasses import dataclass
from typing import Final

import zstandard

from importer.archive.finish import skeleton_level
from importer.archive.nested import is_nested_candidate
from importer.archive.recipe import VERBATIM, OuterItem, OuterStream
from importer.errors import ImporterError
from importer.sources.auto import open_archive
from importer.sources.base import Gap, Member, Skeleton
from importer.sources.compressed import CompressedStream
from importer.sources.names import classify_members

#: What a nested member that does not open raises while decoding (it then stays a plain file).
NOT_AN_ARCHIVE: Final = (ImporterError, zlib.error, EOFError, ValueError, OSError)


@dataclass(frozen=True, slots=True)
class DecodedMember:
    """A member and where its content lies in the decoded body."""

    member: Member
    path: str | None
    start: int
    length: int
    skeleton_before: int


@dataclass(frozen=True, slots=True)
class DecodedArchive:
    """One archive, read and decompressed once, shared by every strategy.

    ``body`` is the decompressed body in file order (skeleton runs and member contents, for a tar
    the tar stream); ``outer`` the compressed container's items for a ``.tar.gz``/``.bz2``/``.xz``.
    """

    filename: str
    kind: str
    data: bytes
    sha256: bytes
    format: str
    body: bytes
    members: tuple[DecodedMember, ...]
    skeleton_size: int
    skeleton_frame: bytes
    outer: tuple[OuterItem | None, ...]
    tail: int

    def content(self, m: DecodedMember) -> bytes:
        return self.body[m.start:m.start + m.length]

    @property
    def content_bytes(self) -> int:
        return sum(m.length for m in self.members)


def decode_archive(data: bytes, filename: str, kind: str, *, allow_raw: bool = False) -> DecodedArchive:
    """Read every member of ``data`` once; raises ImporterError (InvalidArchive) for a bad archive.

    ``allow_raw`` (nested members only, as in the importer): a compressed non-tar is a one-member
    archive.
    """
    opened = open_archive(io.BytesIO(data), filename, allow_raw=allow_raw)
    body: list[bytes] = []
    skeleton: list[bytes] = []
    offset = 0
    before = 0
    raw_members: list[tuple[Member, int, int, int]] = []
    current: Member | None = None
    start = 0
    for event in opened.source.iter_events():
        if isinstance(event, bytes):
            body.append(event)
            offset += len(event)
            continue
        if current is not None:
            raw_members.append((current, start, offset - start, before))
            before = 0
            current = None
        if isinstance(event, Skeleton):
            body.append(event.data)
            skeleton.append(event.data)
            offset += len(event.data)
            before += len(event.data)
        else:
            current, start = event, offset
    if current is not None:
        raw_members.append((current, start, offset - start, before))
        before = 0
    outer: list[OuterItem | None] = []
    outer_skeleton: list[bytes] = []
    if opened.container is None:
        outer.append(None)
    else:
        for item in opened.container.finish():
            if isinstance(item, CompressedStream):
                outer.append(OuterStream(0, VERBATIM, item.content_offset, item.size))
                continue
            run = item.data if isinstance(item, Skeleton) else _gap(data, item)
            outer_skeleton.append(run)
            outer.append(len(run))
    placements = classify_members(m for m, _, _, _ in raw_members)
    members = tuple(DecodedMember(m, p.path, s, n, b) for (m, s, n, b), p in zip(raw_members, placements, strict=True))
    blob = b"".join(outer_skeleton + skeleton)
    return DecodedArchive(
        filename=filename, kind=kind, data=data, sha256=hashlib.sha256(data).digest(), format=opened.format,
        body=b"".join(body), members=members, skeleton_size=len(blob),
        skeleton_frame=skeleton_frame(blob), outer=tuple(outer),
        tail=before,
    )


def skeleton_frame(blob: bytes) -> bytes:
    """The skeleton as the importer stores it: one zstd frame, its level chosen by size as there."""
    return bytes(zstandard.ZstdCompressor(level=skeleton_level(len(blob))).compress(blob))


def _gap(data: bytes, gap: Gap) -> bytes:
    return data[gap.offset:gap.offset + gap.length]


def open_nested(archive: DecodedArchive, m: DecodedMember) -> DecodedArchive | None:
    """The member decoded as an archive, when the importer's ``--open-nested`` would try it and it parses.

    Like the importer: a file member, not verbatim, named like an archive; None when it does not
    parse or when one of its own members is verbatim (the importer keeps such a member a plain file).
    """
    member = m.member
    if not is_nested_candidate(member):
        return None
    try:
        inner = decode_archive(archive.content(m), posixpath.basename(member.name or "member"), archive.kind,
                               allow_raw=True)
    except NOT_AN_ARCHIVE:
        return None
    if any(n.member.verbatim for n in inner.members):
        return None
    return inner
