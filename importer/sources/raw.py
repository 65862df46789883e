"""A plain compressed file (``foo.json.gz``) as a one-member archive, for ``--open-nested``.

The container's content is not a tar: the whole decompressed stream is the single member. Its
name is the gzip header's FNAME when that is a safe plain file name, else the archive's name
without its ``.gz``/``.bz2``/``.xz`` suffix (``gunzip``'s rule), else ``content``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

from .base import PIECE_SIZE, Event, Member
from .compressed import FEXTRA, FNAME, ContainerReader

_SUFFIXES: Final = (".gz", ".tgz", ".bz2", ".xz", ".z")


def gzip_fname(header: bytes) -> bytes | None:
    """The FNAME field of a gzip header (RFC 1952 2.3.1), or None."""
    if len(header) < 10 or not header[3] & FNAME:
        return None
    pos = 10
    if header[3] & FEXTRA:
        if len(header) < 12:
            return None
        pos += 2 + int.from_bytes(header[10:12], "little")
    end = header.find(b"\x00", pos)
    return header[pos:end] if end > pos else None


def member_name(archive: str, header: bytes) -> str:
    """The name the one member gets in the tree."""
    fname = gzip_fname(header)
    if fname:
        try:
            text = fname.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        base = text.replace("\\", "/").rsplit("/", 1)[-1]
        if base and base not in (".", "..") and "\x00" not in base:
            return base
    base = archive.rsplit("/", 1)[-1]
    lowered = base.lower()
    for suffix in _SUFFIXES:
        if lowered.endswith(suffix) and len(base) > len(suffix):
            stem = base[: -len(suffix)]
            return stem + ".tar" if suffix == ".tgz" else stem
    return "content"


class RawSource:
    """The decompressed content of a gzip/bzip2/xz file as one member named by :func:`member_name`."""

    def __init__(self, container: ContainerReader, archive: str) -> None:
        self._container = container
        self._archive = archive

    @property
    def archive(self) -> str:
        return self._archive

    def iter_events(self) -> Iterator[Event]:
        self._container.peek(1)  # reads the first header, so its bytes are in the segments
        first = self._container.segments[0] if self._container.segments else None
        header = getattr(first, "data", b"")
        name = member_name(self._archive, header)
        raw = name.encode("utf-8")
        yield Member(index=0, raw_name=raw, name=name, kind="file", size=0, mode=None, mtime=None,
                     link_target=None, data_offset=0, data_length=0)
        while piece := self._container.read(PIECE_SIZE):
            yield piece
