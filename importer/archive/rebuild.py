"""Rebuild an archive from its root: the bytes ``fetch`` writes and ``verify`` checks.

The body (a zip file, or a tar stream) is the skeleton interleaved with each member's stored
bytes: a file from the tree or an extra file, copied or recompressed with its recorded params.
Members are recompressed on a thread pool (zlib, bz2, lzma and the ctypes backends release the
GIL) with a bounded window, so both cores work while output stays in order and memory stays
bounded. An outer gzip/bzip2/xz layer is then reapplied around the body, stream by stream.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import tempfile
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import zstandard

from ..compress import CompressorParams, recompress
from ..dag.cid import format_cid
from ..dag.reader import iter_directory, iter_file
from ..errors import InvalidBlock, RecipeMismatch
from ..sinks.base import BlockSource
from .recipe import VERBATIM, ArchiveRoot, OuterStream, Recipe, read_recipe, read_root
from .streams import PieceReader

#: Members larger than this are recompressed in the calling thread, streaming; smaller ones are
#: read whole and handed to the pool.
PARALLEL_LIMIT: Final = 16 * 1024 * 1024
#: Bytes of uncompressed members in flight at once: about 4 members of 16 MiB, far below the
#: 300 MB peak-memory target, yet enough to keep two cores busy on many small members.
WINDOW_BYTES: Final = 64 * 1024 * 1024
PIECE: Final = 1024 * 1024
NO_SOURCE: Final = -1


@dataclass(frozen=True, slots=True)
class Rebuilt:
    root: ArchiveRoot
    recipe: Recipe


class TreePaths:
    """Resolves tree paths to CIDs, listing only the directories on the way, each once.

    No node below a directory is loaded just to learn its kind (a 100,000-file tree would cost
    100,000 block reads); a path that names a directory fails later, when it is read as a file.
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

    def __init__(self, source: BlockSource, recipe: Recipe, skeleton: _SkeletonReader, files: TreePaths,
                 pool: ThreadPoolExecutor) -> None:
        self.source = source
        self.recipe = recipe
        self.skeleton = skeleton
        self.files = files
        self.pool = pool
        self.params = [CompressorParams.from_dict(p) for p in recipe.params]

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
            return iter_archive(self.source, source, workers=1)[1]
        return iter_file(self.source, self._content_cid(source))

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
                        job = pumped(params, itertools.chain(head, pieces))
                    else:
                        content = b"".join(head)
                        size = len(content)
                        in_flight += size
                        job = self.pool.submit(_compress, params, content)
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


def _compress(params: CompressorParams, content: bytes) -> bytes:
    return b"".join(recompress(params, [content]))


def _take(reader: PieceReader, size: int, where: str) -> Iterator[bytes]:
    while size > 0:
        piece = reader.read(min(PIECE, size))
        if not piece:
            raise InvalidBlock(where, "the body ends before a compressed stream's content does")
        size -= len(piece)
        yield piece


def iter_archive(source: BlockSource, root_cid: bytes, *, workers: int | None = None) -> tuple[ArchiveRoot, Iterator[bytes]]:
    """Read the root and recipe now; return them and a lazy iterator of the archive's bytes."""
    root = read_root(source, root_cid)
    recipe = read_recipe(source, root.recipe)
    outer_len = sum(item for item in recipe.outer if isinstance(item, int))
    if outer_len > recipe.skeleton_size:
        raise InvalidBlock(format_cid(root.recipe), f"outer skeleton runs ({outer_len} bytes) exceed the skeleton "
                                                    f"({recipe.skeleton_size})")
    return root, _generate(source, root, recipe, outer_len, workers or os.cpu_count() or 1)


def _generate(source: BlockSource, root: ArchiveRoot, recipe: Recipe, outer_len: int,
              workers: int) -> Iterator[bytes]:
    files = TreePaths(source, root.tree)
    # Two readers over the one frame: the container's runs come first, the body's after them.
    outer_skeleton = _SkeletonReader(source, recipe, 0)
    body_skeleton = _SkeletonReader(source, recipe, outer_len)
    with ThreadPoolExecutor(workers) as pool:
        body = _Body(source, recipe, body_skeleton, files, pool)
        reader = PieceReader(iter(body))
        for item in recipe.outer:
            if item is None:
                while piece := reader.read(PIECE):
                    yield piece
            elif isinstance(item, int):
                yield from outer_skeleton.pieces(item)
            else:
                yield from _outer_stream(source, recipe, item, reader)


def _outer_stream(source: BlockSource, recipe: Recipe, item: OuterStream, reader: PieceReader) -> Iterator[bytes]:
    content = _take(reader, item.content_size, format_cid(recipe.skeleton))
    if item.params == VERBATIM:
        for _ in content:  # the original stream is kept whole: skip its content
            pass
        yield from iter_file(source, recipe.extra[item.source])
    else:
        yield from pumped(CompressorParams.from_dict(recipe.params[item.params]), content)


#: Content pieces queued ahead of a streaming compressor: 4 pieces of at most 1 MiB.
PUMP_DEPTH: Final = 4
_END: Final = object()


def pumped(params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
    """``recompress(params, pieces)`` with ``pieces`` iterated in the calling thread only.

    The content comes from the block source (SQLite connections belong to the thread that opened
    them), while some backends read their input in a thread of their own (GNU gzip's stdin
    feeder). So the compressor runs in a worker thread fed through a bounded queue, and this
    thread reads the source: memory stays bounded by PUMP_DEPTH pieces, and reading the store
    overlaps with compressing.
    """
    inbox: queue.Queue[object] = queue.Queue(PUMP_DEPTH)
    outbox: queue.SimpleQueue[object] = queue.SimpleQueue()  # unbounded: the worker never blocks on it
    stop = threading.Event()

    def feed() -> Iterator[bytes]:
        while (piece := inbox.get()) is not _END:
            yield piece  # type: ignore[misc]

    def work() -> None:
        try:
            for out in recompress(params, feed()):
                if stop.is_set():
                    return
                outbox.put(out)
            outbox.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the reading thread
            outbox.put(exc)

    worker = threading.Thread(target=work, name="recompress", daemon=True)
    worker.start()
    done = False

    def drain(block: bool) -> Iterator[bytes]:
        nonlocal done
        while not done:
            try:
                item = outbox.get(block=block)
            except queue.Empty:
                return
            if item is _END:
                done = True
            elif isinstance(item, BaseException):
                done = True
                raise item
            else:
                yield item  # type: ignore[misc]

    try:
        for piece in pieces:
            while True:
                try:
                    inbox.put(piece, timeout=0.05)
                    break
                except queue.Full:
                    yield from drain(False)
                    if done:  # the worker failed or finished early: stop feeding it
                        break
            yield from drain(False)
            if done:
                break
        if not done:
            inbox.put(_END)
        yield from drain(True)
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting for input, then let it end
            try:
                inbox.put_nowait(_END)
            except queue.Full:
                try:
                    inbox.get_nowait()
                except queue.Empty:
                    pass
            worker.join(0.05)


def fetch(source: BlockSource, root_cid: bytes, out: str | os.PathLike[str] | None) -> ArchiveRoot:
    """Rebuild the archive; write it to ``out`` (None: only check) only if its sha256 matches."""
    root, pieces = iter_archive(source, root_cid)
    digest = hashlib.sha256()
    size = 0
    target = Path(out) if out is not None else None
    tmp_name: str | None = None
    try:
        if target is not None:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent or ".")
            with os.fdopen(fd, "wb") as f:
                for piece in pieces:
                    digest.update(piece)
                    size += len(piece)
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
        else:
            for piece in pieces:
                digest.update(piece)
                size += len(piece)
        if size != root.size or digest.digest() != root.sha256:
            raise RecipeMismatch(root.name, f"rebuilt {size} bytes with sha256 {digest.hexdigest()}, expected "
                                            f"{root.size} bytes with sha256 {root.sha256.hex()}")
        if target is not None and tmp_name is not None:
            os.replace(tmp_name, target)
            tmp_name = None
        return root
    finally:
        if tmp_name is not None:
            os.unlink(tmp_name)
