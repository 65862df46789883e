"""The container around a tar (gzip, bzip2, xz): its framing and streams as recipe ``outer`` items, streamed.

The :class:`~importer.sources.compressed.ContainerReader` records the container's runs as the tar
inside it is read. :class:`OuterStreams` takes them as they complete (:meth:`OuterStreams.drain`,
called between members and when many runs pile up inside one), appends framing bytes to the
outer skeleton, and hands every compressed stream to the compressor search, at most OUTER_QUEUE
searches at a time, resolving them in file order into ``outer`` items. So an sdist cut into
100,000 gzip members costs a small, constant amount of memory per stream (its ``outer`` item),
not a search, a future and the container's records for all of them at once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final

from ..adder import Adder
from ..compress import CompressorParams, ProducerHints, SearchResult, search_params
from ..sources.base import Gap, Skeleton
from ..sources.compressed import CompressedStream, ContainerReader
from .recipe import VERBATIM, OuterItem, OuterStream
from .search_window import BUFFER_LIMIT
from .streams import PieceReader, ReadAt, bounded_decompress, pread_pieces

#: Compressed streams searched and not yet resolved: enough to keep the pool busy (a small
#: stream's search takes well under a millisecond), bounded so that a container of 100,000 tiny
#: gzip members does not hold 100,000 searches with their inputs.
OUTER_QUEUE: Final = 256
#: Container runs recorded before they are drained in the middle of a member: one member's data
#: may span many streams (a tar cut into 2-byte gzip members).
DRAIN_EVERY: Final = 4096
_STREAM_KIND: Final = {"deflate": "deflate", "bzip2": "bz2", "xz": "xz"}

#: ``search(stream, compressed, uncompressed, kind, hints, content_cid) -> future``: run the search
#: somewhere (``content_cid`` names the uncompressed bytes for the GNU gzip memo when known).
Searcher = Callable[[CompressedStream, Any, Any, str, ProducerHints, "bytes | None"], "Future[SearchResult]"]


class OuterStreams:
    """Turns a container's runs into recipe ``outer`` items in file order, searches bounded in number.

    ``add_params(params) -> index`` interns a winner into the recipe's params table,
    ``add_extra(cid) -> index`` links a stream kept verbatim, ``skeleton(bytes)`` appends framing
    to the outer skeleton; ``search`` starts a search (on the pool, or inline for a nested archive).
    """

    def __init__(self, container: ContainerReader, read_at: ReadAt, adder: Adder, search: Searcher,
                 add_params: Callable[[CompressorParams], int], add_extra: Callable[[bytes], int],
                 skeleton: Callable[[bytes], None], previous: CompressorParams | None = None) -> None:
        self.container = container
        self.read_at = read_at
        self.adder = adder
        self.search = search
        self.add_params = add_params
        self.add_extra = add_extra
        self.skeleton = skeleton
        #: The last winner: producers are consistent, so it is tried first for the next stream.
        self.previous = previous
        self.items: list[OuterItem | None] = []
        #: [label, count] of consecutive streams stored the same way, for the report.
        self.labels: list[list[Any]] = []
        self.verbatim = False
        self.gzip_producer: str | None = None
        #: A plain .gz's content when it is held (``set_content``): searched from memory, not re-read.
        self.content: bytes | None = None
        self.content_cid: bytes | None = None
        self._pending: deque[OuterItem | tuple[CompressedStream, Future[SearchResult]]] = deque()
        self._searching = 0

    def set_content(self, content: bytes, cid: bytes | None) -> None:
        """The whole decompressed content (a plain .gz/.bz2/.xz's one member) and its CID, if known."""
        self.content, self.content_cid = content, cid

    def drain(self, *, final: bool = False) -> None:
        """Take the runs the container completed so far (all of them, read to its end, if ``final``)."""
        if final:
            self.container.finish()
        for run in self.container.take_segments():
            if isinstance(run, Skeleton):
                self.skeleton(run.data)
                self._pending.append(len(run.data))
            elif isinstance(run, Gap):
                for piece in pread_pieces(self.read_at, run.offset, run.length):
                    self.skeleton(piece)
                self._pending.append(run.length)
            else:
                self._pending.append((run, self._start(run)))
                self._searching += 1
            self._resolve(wait=self._searching > OUTER_QUEUE)
        if final:
            while self._pending:
                self._resolve(wait=True)

    def maybe_drain(self) -> None:
        """Drain in the middle of a member when many runs have piled up."""
        if len(self.container.segments) >= DRAIN_EVERY:
            self.drain()

    def label_lines(self) -> tuple[str, ...]:
        return tuple(label if count == 1 else f"{label} (x{count} streams)" for label, count in self.labels)

    def _start(self, stream: CompressedStream) -> Future[SearchResult]:
        hints = ProducerHints(previous=self.previous)
        if stream.gzip is not None:
            hints = ProducerHints(gzip_xfl=stream.gzip.xfl, gzip_os=stream.gzip.os, previous=self.previous)
            self.gzip_producer = f"gzip header: XFL={stream.gzip.xfl} OS={stream.gzip.os}"
        read_at = self.read_at
        compressed: Any = (lambda s=stream: pread_pieces(read_at, s.offset, s.length)) \
            if stream.length > BUFFER_LIMIT else read_at(stream.length, stream.offset)
        uncompressed: Any = lambda s=stream: decompress_pieces(read_at, s)
        cid = None
        if self.content is not None:
            uncompressed = memoryview(self.content)[stream.content_offset:stream.content_offset + stream.size]
            whole = stream.content_offset == 0 and stream.size == len(self.content)
            cid = self.content_cid if whole else None
        future = self.search(stream, compressed, uncompressed, _STREAM_KIND[stream.method], hints, cid)
        future.add_done_callback(self._remember)
        return future

    def _remember(self, future: Future[SearchResult]) -> None:
        if not future.cancelled() and future.exception() is None and future.result().params is not None:
            self.previous = future.result().params

    def _resolve(self, *, wait: bool) -> None:
        """Append the ready items at the front of the queue; with ``wait``, at least one stream's."""
        while self._pending:
            head = self._pending[0]
            if not isinstance(head, tuple):
                self.items.append(self._pending.popleft())  # type: ignore[arg-type]
                continue
            stream, future = head
            if not wait and not future.done():
                return
            self._pending.popleft()
            self._searching -= 1
            wait = False
            self.items.append(self._stream_item(stream, future.result()))

    def _stream_item(self, stream: CompressedStream, result: SearchResult) -> OuterStream:
        if result.params is not None:
            self._label(f"{stream.method}: {result.params.label}")
            return OuterStream(self.add_params(result.params), VERBATIM, stream.content_offset, stream.size)
        raw = self.adder.add_stream(PieceReader(pread_pieces(self.read_at, stream.offset, stream.length)))  # type: ignore[arg-type]
        self.verbatim = True
        self._label(f"{stream.method}: kept verbatim ({result.reason})")
        return OuterStream(VERBATIM, self.add_extra(raw.cid), stream.content_offset, stream.size)

    def _label(self, label: str) -> None:
        if self.labels and self.labels[-1][0] == label:
            self.labels[-1][1] += 1
        else:
            self.labels.append([label, 1])


def search_inline(max_attempts: int, work: Callable[[int], int]) -> Searcher:
    """A :data:`Searcher` that searches in the calling thread (a nested archive's worker)."""

    def run(stream: CompressedStream, compressed: Any, uncompressed: Any, kind: str, hints: ProducerHints,
            content_cid: bytes | None) -> Future[SearchResult]:
        done: Future[SearchResult] = Future()
        try:
            done.set_result(search_params(compressed, uncompressed, kind, hints, max_attempts=max_attempts,
                                          content_cid=content_cid, max_work=work(stream.size)))
        except BaseException as e:  # noqa: BLE001  (raised again by result(), in file order)
            done.set_exception(e)
        return done

    return run


def search_on(pool: ThreadPoolExecutor, work: Callable[[int], int]) -> Searcher:
    """A :data:`Searcher` that runs each search on ``pool``."""

    def run(stream: CompressedStream, compressed: Any, uncompressed: Any, kind: str, hints: ProducerHints,
            content_cid: bytes | None) -> Future[SearchResult]:
        return pool.submit(search_params, compressed, uncompressed, kind, hints, content_cid=content_cid,
                           max_work=work(stream.size))

    return run


def decompress_pieces(read_at: ReadAt, stream: CompressedStream) -> Iterator[bytes]:
    """The content of one compressed stream of the file, decompressed again (for the search)."""
    produced = 0
    for out in bounded_decompress(stream.method, pread_pieces(read_at, stream.offset, stream.length)):
        produced += len(out)
        yield out
    if produced != stream.size:
        raise EOFError(f"stream {stream.index} decompressed to {produced} bytes, expected {stream.size}")
