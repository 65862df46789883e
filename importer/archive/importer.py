"""Import one wheel or sdist: its files into a UnixFS tree, everything else into a recipe.

:class:`ArchiveImporter` wires the steps, each in its own module:

* :mod:`.members`: one pass over the archive's events; every member's content becomes a UnixFS
  file DAG with the ``add`` settings, every byte that is not member content (headers, central
  directory, padding, gzip framing) goes to the skeleton (:mod:`.buffers`);
* :mod:`.search_window`: for each deflated zip member (and, :mod:`.outer`, each gzip/bzip2/xz
  stream around a tar) the compressor registry (:mod:`importer.compress`) looks for the settings
  that reproduce the original stream exactly, on a thread pool, a bounded window at a time;
* :mod:`.nested`: with ``--open-nested``, members that are archives imported as archives;
* :mod:`.finish`: the tree, the skeleton as one zstd frame, the recipe and the archive root. A
  stream that nothing reproduces is kept as it was, as its own UnixFS file: unchanged members
  still dedup.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Final

from ..adder import Adder
from ..errors import InvalidArchive
from ..profiles import ImportSettings
from ..sinks.base import BlockSink
from ..sources.auto import open_archive
from ..sources.base import DEFAULT_LIMITS, Limits, WorkBudget
from ..sources.inflate import iter_content
from ..sources.zip import ZipSource
from .finish import Finish
from .members import ContainerState, MemberPass
from .nested import NestedJobs
from .report import ImportReport, MemberReport
from .search_window import NESTED_SEARCH_WINDOW, SEARCH_WINDOW, SearchWindow
from .streams import PIECE, ReadAt

__all__ = ["ArchiveImporter", "ImportReport", "MemberReport", "import_archive"]

#: A WHEEL file is a few lines; a bigger one is not read for its Generator hint.
WHEEL_FILE_LIMIT: Final = 64 * 1024


def _layout_generator(f: BinaryIO, source: ZipSource) -> str | None:
    """The ``Generator:`` line of a wheel's WHEEL file, the best hint of its compressor, from the
    already parsed central directory (no second zip parse: zipfile takes seconds on 100,000 members)."""
    for member in source.layout.members:
        parts = (member.name or "").split("/")
        if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "WHEEL" \
                and member.size < WHEEL_FILE_LIMIT and not member.verbatim:
            try:
                text = b"".join(iter_content(f, member, source.archive, WHEEL_FILE_LIMIT)).decode("utf-8", "replace")
            except InvalidArchive:
                return None
            for line in text.splitlines():
                if line.startswith("Generator:"):
                    return line.split(":", 1)[1].strip()
    return None


@dataclass(slots=True)
class _Shared:
    """State shared by every nesting level of one import."""

    #: Bytes every decompressor of the import, at every level, may still produce (set by the
    #: top-level import from its file's size: ``--max-total-size`` and ``--max-ratio``).
    work: WorkBudget | None = None
    container: ContainerState = field(default_factory=ContainerState)


class ArchiveImporter:
    """Imports archives with fixed settings into one sink; reusable across archives."""

    def __init__(self, settings: ImportSettings, sink: BlockSink, *, limits: Limits = DEFAULT_LIMITS,
                 workers: int | None = None, open_nested: bool = False, depth: int = 0,
                 shared: _Shared | None = None, pool: ThreadPoolExecutor | None = None) -> None:
        self.settings = settings
        self.sink = sink
        self.limits = limits
        self.adder = Adder(settings, sink)
        self.workers = workers or os.cpu_count() or 1
        self.open_nested = open_nested
        self.depth = depth
        #: State shared by every nesting level of one import (its decompression budget above all).
        self.shared = shared or _Shared()
        #: A search pool to share (nested imports use their parent's instead of starting threads).
        self.pool = pool

    def nested_importer(self, pool: ThreadPoolExecutor, sink: BlockSink) -> ArchiveImporter:
        """An importer for an archive inside this one: same sink, settings, limits and budget, one level deeper."""
        return ArchiveImporter(self.settings, sink, limits=self.limits, workers=1, open_nested=True,
                               depth=self.depth + 1, shared=self.shared, pool=pool)

    def import_file(self, path: str, display_name: str | None = None) -> ImportReport:
        with open(path, "rb") as f:
            return self.import_open(f, display_name or os.path.basename(path))

    def import_open(self, f: BinaryIO, name: str, read_at: ReadAt | None = None) -> ImportReport:
        """Import the archive in the seekable file ``f``, all its bytes.

        ``read_at(length, offset)`` reads its bytes at an offset from any thread; by default
        ``pread`` on ``f``'s descriptor (an in-memory archive passes a slice of its bytes).
        A top-level import sets the decompression budget (``Limits.budget`` of its size) that
        its nested archives then share.
        """
        start = time.perf_counter()
        digest = hashlib.sha256()
        size = 0
        f.seek(0)
        while piece := f.read(PIECE):
            digest.update(piece)
            size += len(piece)
        shared = contextlib.nullcontext(self.pool) if self.pool is not None else ThreadPoolExecutor(self.workers)
        with shared as pool:
            if read_at is None:
                read_at = functools.partial(os.pread, f.fileno())
            if self.depth == 0 or self.shared.work is None:
                self.shared.work = self.limits.budget(size)
            opened = open_archive(f, name, self.limits, allow_raw=self.depth > 0, budget=self.shared.work)
            generator = _layout_generator(f, opened.source) if isinstance(opened.source, ZipSource) else None
            window = SearchWindow(pool, read_at, generator, NESTED_SEARCH_WINDOW if self.depth else SEARCH_WINDOW)
            nested = NestedJobs(name, self.adder, self.sink, functools.partial(self.nested_importer, pool),
                                enabled=self.open_nested, depth=self.depth, workers=self.workers)
            run = MemberPass(opened, read_at, self.adder, pool, window, nested, self.shared.container, self.depth)
            finish = Finish(run, self.settings, self.sink)
            try:
                run.read_members()
                run.read_container()
                root, tree = finish.write(name, size, digest.digest())
            finally:
                run.close()
        return ImportReport(
            file=name, format=opened.format, root=root, tree=tree, sha256=digest.hexdigest(), size=size,
            members=len(run.members), replayed_bytes=finish.replayed_bytes, verbatim_bytes=finish.verbatim_bytes,
            producer=generator or run.gzip_producer, outer=tuple(run.outer_labels),
            member_reports=tuple(finish.reports), seconds=time.perf_counter() - start,
            tree_tsize=finish.tree_tsize, nested=nested.count,
        )


def import_archive(path: str, settings: ImportSettings, sink: BlockSink, **kwargs: Any) -> ImportReport:
    """Import the archive at ``path`` into ``sink``; see :class:`ArchiveImporter`."""
    return ArchiveImporter(settings, sink, **kwargs).import_file(path)
