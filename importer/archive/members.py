"""The member pass: one read of an archive's events, every member's content into the store.

The source (:mod:`importer.sources`) yields skeleton runs and members with their content pieces
in file order. Skeleton bytes go to the body skeleton; each member's content becomes a UnixFS
file DAG with the ``add`` settings as it streams (so a file has the CID ``ipfs add`` gives it
anywhere); a deflated zip member is handed to the compressor search (:mod:`.search_window`), a
member named like an archive to a nested import (:mod:`.nested`). Around a tar, the container's
framing and streams (gzip, bzip2, xz) are taken as the tar inside is read (:mod:`.outer`).
What the pass leaves, :mod:`.finish` turns into the tree, the skeleton frame and the recipe.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..adder import Adder
from ..compress import CompressorParams
from ..layout import DagNode
from ..sources.auto import RAW_FORMATS, OpenedArchive
from ..sources.base import METHOD_DEFLATED, Member, Skeleton
from .buffers import Keeper, Spool
from .nested import NESTED_MAX_ATTEMPTS, NestedCandidate, NestedJobs
from .outer import OuterStreams, search_inline, search_on
from .recipe import OuterItem, RecipeTables
from .search_window import BUFFER_LIMIT, Search, SearchWindow, search_work
from .streams import PieceReader, ReadAt


@dataclass(slots=True)
class PendingMember:
    """One member between the pass and the finish: where its skeleton run ends, its content, its
    compressor search (:data:`~.search_window.Search`) and, with ``--open-nested``, its nested import."""

    member: Member
    skeleton_before: int
    content: DagNode | None
    search: Search = None
    nested: NestedCandidate | None = None


@dataclass(slots=True)
class ContainerState:
    """What nesting levels of one import share about container streams: the settings that
    reproduced the last nested container stream (producers are consistent within a package,
    botocore's thousands of .json.gz), tried first for the next."""

    previous: CompressorParams | None = None


class _Events:
    """Groups the flat event stream into skeleton runs and (member, content pieces) pairs."""

    def __init__(self, events: Iterator[Any]) -> None:
        self._it = events
        self._next: Any = None
        self._have = False

    def __iter__(self) -> Iterator[Skeleton | Member]:
        while True:
            event = self._pop()
            if event is None:
                return
            if isinstance(event, bytes):
                raise TypeError("a content piece outside a member: the source broke its event order")
            yield event

    def _pop(self) -> Any:
        if self._have:
            self._have = False
            return self._next
        return next(self._it, None)

    def content(self) -> Iterator[bytes]:
        """The content pieces of the member just yielded."""
        while True:
            event = self._pop()
            if event is None:
                return
            if not isinstance(event, bytes):
                self._next, self._have = event, True
                return
            yield event


class MemberPass:
    """The state of one archive import while its members and container are read.

    ``depth`` is the nesting level (0 for the archive a user named): a nested archive searches
    its container streams inline, on its worker, and shares ``container`` with its parent.
    """

    def __init__(self, opened: OpenedArchive, read_at: ReadAt, adder: Adder, pool: ThreadPoolExecutor,
                 window: SearchWindow, nested: NestedJobs, container: ContainerState, depth: int) -> None:
        self.opened = opened
        self.read_at = read_at
        self.adder = adder
        self.pool = pool
        self.window = window
        self.nested = nested
        self.container = container
        self.depth = depth
        self.tables = RecipeTables()
        self.body_skeleton = Spool()
        self.outer_skeleton = Spool()
        self.members: list[PendingMember] = []
        #: Body skeleton bytes after the last member.
        self.tail = 0
        #: What the container pass leaves: the recipe's ``outer`` items and the report's lines.
        self.outer: list[OuterItem | None] = []
        self.outer_labels: list[str] = []
        self.gzip_producer: str | None = None
        self.outer_verbatim = False
        self._raw = opened.format in RAW_FORMATS
        #: The content of a plain compressed file (format gz/bz2/xz) when it fit in BUFFER_LIMIT.
        self._container_content: list[bytes] | None = None
        self.outer_streams = self._outer_streams()

    # -- members -----------------------------------------------------------------------------

    def read_members(self) -> None:
        events = _Events(iter(self.opened.source.iter_events()))
        before = 0
        for event in events:
            if isinstance(event, Skeleton):
                self.body_skeleton.append(event.data)
                before += len(event.data)
                continue
            self.members.append(self._read_member(event, before, self._tap(events.content())))
            before = 0
            if self.outer_streams is not None and not self._raw:
                self.outer_streams.drain()
        self.tail = before

    def _tap(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """A member's content pieces, draining the container's runs when many pile up inside it."""
        outer = self.outer_streams
        if outer is None or self._raw:
            yield from pieces
            return
        for piece in pieces:
            yield piece
            outer.maybe_drain()

    def _read_member(self, member: Member, before: int, pieces: Iterator[bytes]) -> PendingMember:
        needs_search = self.opened.format == "zip" and member.method == METHOD_DEFLATED and not member.verbatim
        keeper = Keeper(BUFFER_LIMIT)
        source = keeper.tee(pieces) if needs_search or self._raw else pieces
        candidate: NestedCandidate | None = None
        if not self.nested.wants(member):
            reader = PieceReader(source)
            content = self.adder.add_stream(reader)  # type: ignore[arg-type]  # a RawIOBase reads like a BinaryIO
            total = reader.total
        else:
            # A possible nested archive: only if it is not one does its content become a leaf
            # (when resolved), so an opened member leaves no unreferenced blocks behind.
            candidate = self.nested.start(member, source)
            total = candidate.size
            content = DagNode(b"", 0, total)  # stands for the content's size until the job is done
        if self._raw:
            # The one member of a plain .gz/.bz2/.xz is the container's whole content: kept, the
            # container's search reads it instead of decompressing the file a second time.
            self._container_content = keeper.pieces
        empty = total == 0 and member.data_length == 0 and member.kind != "file"
        pending = PendingMember(member, before, None if empty else content, nested=candidate)
        if needs_search:
            self.window.start(pending, member, keeper.pieces, content.cid if candidate is None else None)
        if candidate is not None:
            self.nested.track(candidate)
        return pending

    # -- container (gzip/bzip2/xz around a tar) ---------------------------------------------

    def _outer_streams(self) -> OuterStreams | None:
        """The container's framing and streams, drained as the tar inside is read (outer.py)."""
        container = self.opened.container
        if container is None:
            return None
        # A nested archive's job already runs on a worker thread: it searches right there, not
        # behind the parent's member searches queued in the shared pool.
        searcher = search_inline(NESTED_MAX_ATTEMPTS, search_work) if self.depth else search_on(self.pool, search_work)
        previous = self.container.previous if self.depth else None
        return OuterStreams(container, self.read_at, self.adder, searcher, self.tables.add_params,
                            self.tables.add_extra, self.outer_skeleton.append, previous)

    def read_container(self) -> None:
        outer = self.outer_streams
        if outer is None:
            self.outer.append(None)
            return
        if self._container_content is not None:
            # A plain .gz's one member is its content: searched from memory, its CID names it.
            content = b"".join(self._container_content)
            first = self.members[0] if len(self.members) == 1 else None
            cid = first.content.cid if first is not None and first.content is not None \
                and first.nested is None and first.content.size == len(content) else None
            outer.set_content(content, cid)
        outer.drain(final=True)
        self.outer = outer.items
        if self.depth and outer.previous is not None:
            self.container.previous = outer.previous
        self.outer_labels = list(outer.label_lines())
        self.gzip_producer = outer.gzip_producer
        self.outer_verbatim = outer.verbatim

    def close(self) -> None:
        self.nested.close()
        self.body_skeleton.close()
        self.outer_skeleton.close()
