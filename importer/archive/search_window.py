"""The compressor searches of one archive's deflated members, bounded in flight.

The member pass hands each deflated zip member to :meth:`SearchWindow.start` right after hashing
it; the search runs on the import's thread pool (zlib, bz2 and lzma release the GIL) while the
pass reads on. Reading runs ahead of searching by at most SEARCH_WINDOW bytes and SEARCH_QUEUE
searches, so memory stays bounded however big the archive, and a finished search's result
replaces its future as soon as the window sees it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Final, Protocol

from ..compress import CompressorParams, ProducerHints, SearchResult, search_params
from ..sources.base import Member
from .streams import ReadAt, bounded_decompress, pread_pieces

#: Members (and container streams, :mod:`.outer`) up to this size are kept in memory between
#: hashing and the compressor search; larger ones are read again from the archive (pread, so
#: searches in threads need no shared offset).
BUFFER_LIMIT: Final = 8 * 1024 * 1024
#: Bytes of members (content kept for the search plus compressed bytes) handed to the search pool
#: and not yet searched: reading runs ahead of searching by at most this much, so a 1 GB wheel
#: of large members costs ~64 MiB, not the whole archive, while both cores stay busy.
SEARCH_WINDOW: Final = 64 * 1024 * 1024
#: Searches submitted and not yet done, whatever their size: enough to keep the pool's threads
#: fed (a tiny member's search takes ~0.1 ms), few enough that 100,000 tiny members do not
#: queue 100,000 work items with their inputs.
SEARCH_QUEUE: Final = 256
#: The same window for a nested archive's own searches: up to two workers each run up to three
#: levels at once, so each level gets an eighth, and all of them together stay near one window.
NESTED_SEARCH_WINDOW: Final = SEARCH_WINDOW // 8
#: The bytes of content one compressor search may feed its attempts in total: twice the stream's
#: content plus 256 MiB. A search usually ends at its first attempt (1x), and a wrong candidate
#: on real data fails within its first block; only a stream that candidates follow far without a
#: visible difference (a run of zeros: GNU gzip shows no output for ~258 MiB of them) reaches it,
#: and is then kept as it was, its search bounded.
SEARCH_WORK_FACTOR: Final = 2
SEARCH_WORK_FLOOR: Final = 256 * 1024 * 1024

#: A search while it runs (its future), once done (its result), or none (nothing to search).
Search = Future[SearchResult] | SearchResult | None


class Searching(Protocol):
    """What the window tracks: a record whose ``search`` it replaces by the result once done."""

    search: Search


def search_work(size: int) -> int:
    """The input bytes a search over a stream of ``size`` content bytes may read (SEARCH_WORK_FACTOR)."""
    return SEARCH_WORK_FACTOR * size + SEARCH_WORK_FLOOR


def search_result(search: Future[SearchResult] | SearchResult) -> SearchResult:
    """The search's result, waiting for it if it still runs (raises what the search raised)."""
    return search.result() if isinstance(search, Future) else search


def _done(search: Search) -> bool:
    return not isinstance(search, Future) or search.done()


def _inflate_pieces(read_at: ReadAt, member: Member) -> Iterator[bytes]:
    """A deflated member's content, inflated again (for the search), in pieces of at most PIECE."""
    yield from bounded_decompress("deflate", pread_pieces(read_at, member.data_offset, member.data_length))


class SearchWindow:
    """Starts member searches on ``pool`` and waits for the oldest while too much is in flight.

    ``generator`` (the wheel's ``Generator:`` line) and the previous member's winner order the
    candidates (:class:`~importer.compress.ProducerHints`); ``window`` is SEARCH_WINDOW or, in a
    nested archive, NESTED_SEARCH_WINDOW.
    """

    def __init__(self, pool: ThreadPoolExecutor, read_at: ReadAt, generator: str | None, window: int) -> None:
        self.pool = pool
        self.read_at = read_at
        self.generator = generator
        self.window = window
        self._previous: CompressorParams | None = None
        self._searching: deque[tuple[Searching, int]] = deque()
        self._bytes = 0

    def start(self, pending: Searching, member: Member, kept: list[bytes] | None,
              content_cid: bytes | None) -> None:
        """Search the settings that deflate ``member``'s content (``kept``, or None to inflate it
        again) into its stored bytes; ``content_cid`` names the content for the GNU gzip memo."""
        read_at = self.read_at
        uncompressed: Any
        if kept is None:
            uncompressed = lambda m=member: _inflate_pieces(read_at, m)
        else:
            uncompressed = b"".join(kept)
        compressed: Any
        if member.data_length <= BUFFER_LIMIT:
            compressed = read_at(member.data_length, member.data_offset)
        else:
            compressed = lambda m=member: pread_pieces(read_at, m.data_offset, m.data_length)
        hints = ProducerHints(generator=self.generator, member_name=member.name, previous=self._previous)
        future = self.pool.submit(search_params, compressed, uncompressed, "deflate", hints,
                                  content_cid=content_cid, max_work=search_work(member.size))
        future.add_done_callback(self._remember_winner)
        pending.search = future
        held = (len(compressed) if isinstance(compressed, bytes) else 0) + \
            (len(uncompressed) if isinstance(uncompressed, bytes) else 0)
        self._track(pending, held)

    def _track(self, pending: Searching, held: int) -> None:
        """Track a submitted search; wait for the oldest ones while too many bytes or searches are
        in flight, and keep each finished one's result in place of its future."""
        self._searching.append((pending, held))
        self._bytes += held
        while self._searching and (self._bytes > self.window or len(self._searching) > SEARCH_QUEUE
                                   or _done(self._searching[0][0].search)):
            oldest, size = self._searching.popleft()
            self._bytes -= size
            future = oldest.search
            if isinstance(future, Future) and future.exception() is None:  # waits; errors surface in finish
                oldest.search = future.result()

    def _remember_winner(self, future: Future[SearchResult]) -> None:
        if not future.cancelled() and future.exception() is None and future.result().params is not None:
            self._previous = future.result().params
