"""Open any supported archive by its content, not its extension: zip/wheel, tar, or a compressed tar.

``open_archive`` sniffs the first bytes (and the last ones, for a zip with a prepended stub),
then wires the right readers: a :class:`~.zip.ZipSource` for zips, a :class:`~.tar.TarSource`
over the file for plain tars, and a :class:`~.tar.TarSource` over a
:class:`~.compressed.ContainerReader` for ``.tar.gz``/``.tgz``/``.tar.bz2``/``.tar.xz``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import BinaryIO, Final, Literal

from ..errors import InvalidArchive
from .base import DEFAULT_LIMITS, TAR_BLOCK, ArchiveSource, Limits, WorkBudget, detect_format
from .compressed import ContainerReader
from .raw import RawSource
from .tar import TarSource
from .zip import EOCD, MAX_COMMENT, ZipSource

SourceFormat = Literal["zip", "tar", "tar.gz", "tar.bz2", "tar.xz", "gz", "bz2", "xz"]
#: A zip with a prepended stub shows no magic at its start; its EOCD is within the last
#: 22 + 65535 bytes (EOCD record plus the longest comment) plus the trailing bytes the limits
#: tolerate (``Limits.max_trailing_size``).
TAIL_BASE: Final = EOCD.size + MAX_COMMENT
_SUFFIX: Final[dict[str, SourceFormat]] = {"gzip": "tar.gz", "bzip2": "tar.bz2", "xz": "tar.xz"}
_RAW: Final[dict[str, SourceFormat]] = {"gzip": "gz", "bzip2": "bz2", "xz": "xz"}
#: Formats of a plain compressed file (``allow_raw``): its one member is its whole content.
RAW_FORMATS: Final[tuple[SourceFormat, ...]] = tuple(_RAW.values())


@dataclass(frozen=True, slots=True)
class OpenedArchive:
    """A source ready to iterate, its format, and for compressed tars the container reader
    (whose ``segments``/``finish()`` give the container's own skeleton and streams)."""

    format: SourceFormat
    source: ArchiveSource
    container: ContainerReader | None = None


def open_archive(f: BinaryIO, archive: str, limits: Limits = DEFAULT_LIMITS, *,
                 allow_raw: bool = False, budget: WorkBudget | None = None) -> OpenedArchive:
    """Detect the format of the seekable file ``f`` and return a source for it.

    Raises :class:`InvalidArchive` for anything that is not a zip, a tar or a compressed tar
    (a text file named ``.whl``, a gzip of something other than a tar...). With ``allow_raw``
    a gzip/bzip2/xz of anything else is a one-member archive (:mod:`.raw`, ``--open-nested``).
    Decompression is charged to ``budget`` (default: ``limits.budget`` of this file's size).
    """
    size = f.seek(0, 2)
    if budget is None:
        budget = limits.budget(size)
    f.seek(0)
    head = f.read(TAR_BLOCK)
    kind = detect_format(head)
    if kind is None:
        tail = TAIL_BASE + limits.max_trailing_size
        f.seek(max(0, size - tail))
        kind = detect_format(head, f.read(tail))
    f.seek(0)
    if kind is None:
        raise InvalidArchive(archive, "not a zip, tar, gzip, bzip2 or xz archive", None, 0)
    if kind == "zip":
        return OpenedArchive("zip", ZipSource(f, archive, limits, budget))
    if kind == "tar":
        return OpenedArchive("tar", TarSource(f, archive, limits))
    container = ContainerReader(f, archive, limits, budget)
    if detect_format(container.peek(TAR_BLOCK)) != "tar":
        if allow_raw:
            return OpenedArchive(_RAW[kind], RawSource(container, archive), container)
        raise InvalidArchive(archive, f"the {kind} stream does not hold a tar archive", None, 0)
    return OpenedArchive(_SUFFIX[kind], TarSource(container, archive, limits), container)
