"""Rebuild an archive from its root: the bytes ``fetch`` writes and ``verify`` checks.

The body (a zip file, or a tar stream) is the skeleton interleaved with each member's stored
bytes: a file from the tree or an extra file, copied or recompressed with its recorded params.
Members are recompressed on a thread pool (zlib, bz2, lzma and the ctypes backends release the
GIL) with a bounded window, so both cores work while output stays in order and memory stays
bounded. An outer gzip/bzip2/xz layer is then reapplied around the body, stream by stream.

Roots and recipes may come from strangers: :mod:`importer.archive.plan` checks every root a
rebuild reaches before the first byte, and bounds the output, the bodies and the contents read
while it runs.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Final

import zstandard

from ..compress import CompressorParams
from ..dag.cid import format_cid
from ..dag.reader import iter_directory, iter_file
from ..errors import InvalidBlock, RebuildLimit, RecipeMismatch
from ..sinks.base import BlockSource
from .plan import DEFAULT_REBUILD_LIMITS, ContentBudget, Planned, RebuildLimits, RebuildPlan, bounded
from .pump import compress_whole, pumped
from .recipe import VERBATIM, ArchiveRoot, OuterStream, Recipe
from .streams import PIECE, PieceReader

#: Members larger than this are recompressed in the calling thread, streaming; smaller ones are
#: read whole and handed to the pool.
PARALLEL_LIMIT: Final = 16 * 1024 * 1024
#: Bytes of uncompressed members in flight at once: about 4 members of 16 MiB, far below the
#: 300 MB peak-memory target, yet enough to keep two cores busy on many small members.
WINDOW_BYTES: Final = 64 * 1024 * 1024
NO_SOURCE: Final = -1


class TreePaths:
    """Resolves tree paths to CIDs, listing only the directories on the way, each once.

    No node below a directory is loaded just to learn its kind (a 100,000-file tree would cost
    100,000 block reads); a path that names a directory fails later, when it is read as a file.
    The walk is a loop over the path's parts, however deep the path.
    """

    def __init__(self, source: BlockSource, tree: bytes) -> None:
        self.source = source
        self.tree = tree
        self._listings: dict[str, dict[str, bytes]] = {}

    def _listing(self, prefix: str, cid: bytes) -> dict[str, bytes]:
        listing = self._listings.get(prefix)
        if listing is None:
            listing = self._listings[prefix] = {e.name: e.cid for e in iter_directory(self.source, cid)}
        return listing

    def get(self, path: str) -> bytes | None:
        cid: bytes | None = self.tree
        prefix = ""
        for part in path.split("/"):
            if cid is None:
                return None
            cid = self._listing(prefix, cid).get(part)
            prefix += part + "/"
        return cid


class _Body:
    """Generates the body bytes of a recipe, recompressing members in parallel."""

    def __init__(self, run: _Run, planned: Planned, skeleton: _SkeletonReader, pool: ThreadPoolExecutor) -> None:
        self.run = run
        self.source = run.source
        self.recipe = planned.recipe
        self.where = format_cid(planned.root.recipe)
        self.skeleton = skeleton
        self.files = TreePaths(run.source, planned.root.tree)
        self.pool = pool
        self.params = [CompressorParams.from_dict(p) for p in planned.recipe.params]

    def _content_cid(self, source: str | int) -> bytes:
        if isinstance(source, str):
            cid = self.files.get(source)
            if cid is None:
                raise InvalidBlock(format_cid(self.recipe.skeleton), f"recipe names {source!r}, not in the tree")
            return cid
        return self.recipe.extra[source]

    def _pieces(self, source: str | int | bytes) -> Iterator[bytes]:
        """A member's content: a file of the tree or of ``extra``, or a nested archive rebuilt."""
        if isinstance(source, bytes):
            return self.run.archive(source, workers=1)
        return self.run.budget.count(iter_file(self.source, self._content_cid(source)))

    def __iter__(self) -> Iterator[bytes]:
        pending: deque[_Job] = deque()
        in_flight = 0
        for entry in self.recipe.members:
            job: Future[bytes] | Iterator[bytes] | None = None
            size = 0
            if entry.source != NO_SOURCE:
                if entry.params == VERBATIM:
                    job = self._pieces(entry.source)
                else:
                    params = self.params[entry.params]
                    # Read up to PARALLEL_LIMIT: a small member goes to the pool whole, a big one
                    # streams from what was read on (no stat: one block read less per member).
                    pieces = self._pieces(entry.source)
                    head: list[bytes] = []
                    got = 0
                    for piece in pieces:
                        head.append(piece)
                        got += len(piece)
                        if got > PARALLEL_LIMIT:
                            break
                    if got > PARALLEL_LIMIT:
                        job = pumped(params, itertools.chain(head, pieces), self.where)
                    else:
                        content = b"".join(head)
                        size = len(content)
                        in_flight += size
                        job = self.pool.submit(compress_whole, params, content, self.where)
            pending.append(_Job(self.skeleton, entry.skeleton_before, job, size))
            # Drain in order while the window is full, or when a streaming job must run now.
            while pending and (in_flight > WINDOW_BYTES or not isinstance(pending[-1].job, Future)):
                done = pending.popleft()
                in_flight -= done.size
                yield from done.output()
        while pending:
            yield from pending.popleft().output()
        yield from self.skeleton.pieces(self.recipe.tail)
        if self.skeleton.position != self.recipe.skeleton_size or not self.skeleton.at_end():
            raise InvalidBlock(format_cid(self.recipe.skeleton), "skeleton size does not match the member table")


class _SkeletonReader:
    """The decompressed skeleton frame read forwards from byte ``start``, streaming from the store.

    Skeletons are usually kilobytes, but a hostile archive's trailing bytes or a zip's prepended
    stub can make one as large as the archive, so it is never held whole.
    """

    def __init__(self, source: BlockSource, recipe: Recipe, start: int) -> None:
        self.where = format_cid(recipe.skeleton)
        self.size = recipe.skeleton_size
        frame = PieceReader(iter_file(source, recipe.skeleton))
        self._reader = zstandard.ZstdDecompressor().stream_reader(frame, read_size=PIECE)  # type: ignore[arg-type]
        self.position = 0
        for _ in self.pieces(start):
            pass

    def pieces(self, length: int) -> Iterator[bytes]:
        """The next ``length`` bytes, in pieces."""
        while length > 0:
            try:
                piece = self._reader.read(min(PIECE, length))
            except zstandard.ZstdError as e:
                raise InvalidBlock(self.where, f"skeleton frame: {e}") from None
            if not piece:
                raise InvalidBlock(self.where, f"skeleton ends at byte {self.position}, recipe says {self.size}")
            length -= len(piece)
            self.position += len(piece)
            yield piece

    def at_end(self) -> bool:
        try:
            return not self._reader.read(1)
        except zstandard.ZstdError as e:
            raise InvalidBlock(self.where, f"skeleton frame: {e}") from None



@dataclass(slots=True)
class _Job:
    """Skeleton bytes before a member, then the member's bytes: ready, computing, or a stream."""

    skeleton: _SkeletonReader
    head: int
    job: Future[bytes] | Iterator[bytes] | None
    size: int

    def output(self) -> Iterator[bytes]:
        yield from self.skeleton.pieces(self.head)  # jobs are output in order: the reader is sequential
        if isinstance(self.job, Future):
            yield self.job.result()
        elif self.job is not None:
            yield from self.job


def _take(reader: PieceReader, size: int, where: str) -> Iterator[bytes]:
    while size > 0:
        piece = reader.read(min(PIECE, size))
        if not piece:
            raise InvalidBlock(where, "the body ends before a compressed stream's content does")
        size -= len(piece)
        yield piece


class _Run:
    """One rebuild: the plan, the content budget and the worker count, shared by every level."""

    def __init__(self, source: BlockSource, plan: RebuildPlan, workers: int) -> None:
        self.source = source
        self.plan = plan
        self.workers = workers
        self.budget = ContentBudget(format_cid(plan.top.cid), plan.limits.max_total_size)

    def archive(self, cid: bytes, workers: int | None = None) -> Iterator[bytes]:
        """The rebuilt bytes of the planned archive ``cid``, never more than its declared size."""
        planned = self.plan.archives[cid]

        def overflow(limit: int) -> RebuildLimit:
            return RebuildLimit(format_cid(cid), f"rebuilds more than the {limit:,d} bytes its root declares")

        return bounded(_generate(self, planned, workers or self.workers), planned.root.size, overflow)


def iter_archive(source: BlockSource, root_cid: bytes, *, workers: int | None = None,
                 limits: RebuildLimits = DEFAULT_REBUILD_LIMITS,
                 plan: RebuildPlan | None = None) -> tuple[ArchiveRoot, Iterator[bytes]]:
    """Read and check the root, its recipe and every nested root now (unless ``plan`` did); return
    the root and a lazy iterator of the archive's bytes (never more than the root declares)."""
    if plan is None:
        plan = RebuildPlan(source, root_cid, limits)
    run = _Run(source, plan, workers or os.cpu_count() or 1)
    return plan.top.root, run.archive(root_cid)


def _generate(run: _Run, planned: Planned, workers: int) -> Iterator[bytes]:
    recipe = planned.recipe
    # Two readers over the one frame: the container's runs come first, the body's after them.
    outer_skeleton = _SkeletonReader(run.source, recipe, 0)
    body_skeleton = _SkeletonReader(run.source, recipe, planned.outer_skeleton)
    where = format_cid(planned.root.recipe)

    declared_by = "root declares" if planned.recipe.body_size is None else "outer streams declare"

    def overflow(limit: int) -> RebuildLimit:
        return RebuildLimit(format_cid(planned.cid), f"rebuilds a body of more than the {limit:,d} bytes "
                                                     f"its {declared_by}")

    with ThreadPoolExecutor(workers) as pool:
        body = _Body(run, planned, body_skeleton, pool)
        reader = PieceReader(bounded(body, planned.body_limit, overflow))
        for item in recipe.outer:
            if item is None:
                while piece := reader.read(PIECE):
                    yield piece
            elif isinstance(item, int):
                yield from outer_skeleton.pieces(item)
            else:
                yield from _outer_stream(run, recipe, item, reader, where)


def _outer_stream(run: _Run, recipe: Recipe, item: OuterStream, reader: PieceReader, where: str) -> Iterator[bytes]:
    content = _take(reader, item.content_size, format_cid(recipe.skeleton))
    if item.params == VERBATIM:
        for _ in content:  # the original stream is kept whole: skip its content
            pass
        yield from run.budget.count(iter_file(run.source, recipe.extra[item.source]))
    else:
        params = CompressorParams.from_dict(recipe.params[item.params])
        if item.content_size <= PARALLEL_LIMIT:
            # A small stream (an sdist of thousands of gzip members has thousands): compressed here,
            # without the thread a streaming compressor needs.
            yield compress_whole(params, b"".join(content), where)
        else:
            yield from pumped(params, content, where)


def rebuild(source: BlockSource, root_cid: bytes, write: Callable[[bytes], object] | None = None, *,
            limits: RebuildLimits = DEFAULT_REBUILD_LIMITS, plan: RebuildPlan | None = None) -> ArchiveRoot:
    """Rebuild the archive, handing each piece to ``write`` (None: only check it).

    Output stops before the first byte past the root's declared size; the final size and sha256
    are compared with the root's, so a caller keeps the bytes only when this returns.
    """
    root, pieces = iter_archive(source, root_cid, limits=limits, plan=plan)
    digest = hashlib.sha256()
    size = 0
    for piece in pieces:
        digest.update(piece)
        size += len(piece)
        if write is not None:
            write(piece)
    if size != root.size or digest.digest() != root.sha256:
        raise RecipeMismatch(root.name, f"rebuilt {size} bytes with sha256 {digest.hexdigest()}, expected "
                                        f"{root.size} bytes with sha256 {root.sha256.hex()}")
    return root


def fetch(source: BlockSource, root_cid: bytes, out: str | os.PathLike[str] | BinaryIO | None, *,
          force: bool = False, limits: RebuildLimits = DEFAULT_REBUILD_LIMITS) -> ArchiveRoot:
    """Rebuild the archive into ``out``: a path (written under a ``.part`` name and renamed into
    place only if the sha256 matches; an existing file is replaced only with ``force``), a binary
    stream (written as it is rebuilt; the caller learns of a mismatch from the exception), or
    None (only check)."""
    from ..sinks.partfile import PartFile

    if out is None:
        return rebuild(source, root_cid, None, limits=limits)
    if not isinstance(out, str | os.PathLike):
        return rebuild(source, root_cid, out.write, limits=limits)
    with PartFile(out, force=force) as part:
        root = rebuild(source, root_cid, part.write, limits=limits)
        part.commit()
    return root
