"""Import one wheel or sdist: its files into a UnixFS tree, everything else into a recipe.

One pass over the archive's events (:mod:`importer.sources`) does the work:

* every member's content becomes a UnixFS file DAG with the ``add`` settings, so a file has the
  CID ``ipfs add`` gives it anywhere, and identical files across versions are stored once;
* every byte that is not member content (headers, central directory, padding, gzip framing)
  is appended to the skeleton, spooled to a temporary file (it can be as large as the trailing
  garbage of a hostile archive) and stored as one zstd frame, compressed as it streams;
* for each deflated zip member (and each gzip/bzip2/xz stream around a tar) the compressor
  registry (:mod:`importer.compress`) looks for the settings that reproduce the original stream
  exactly. Searches run on a thread pool (zlib, bz2 and lzma release the GIL), at most
  SEARCH_WINDOW bytes of members at a time, so memory stays bounded however big the archive. A stream that
  nothing reproduces is kept as it was, as its own UnixFS file: unchanged members still dedup.

Members that cannot live in the tree (see :mod:`importer.sources.names`) keep their content as
"extra" files linked from the recipe, so the root reaches every block the archive needs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import itertools
import os
import tempfile
import time
import zipfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, Final, cast

import zstandard

from ..adder import Adder
from ..compress import CompressorParams, ProducerHints, SearchResult, search_params
from ..dag.cid import format_cid
from ..dag.directory import build_symlink
from ..errors import InvalidArchive, LimitExceeded
from ..layout import DagNode
from ..profiles import ImportSettings
from ..sinks.base import BlockSink
from ..sources.auto import OpenedArchive, open_archive
from ..sources.base import DEFAULT_LIMITS, METHOD_DEFLATED, Limits, Member, Skeleton, WorkBudget
from ..sources.inflate import iter_content
from ..sources.names import classify_members
from ..sources.zip import ZipSource
from .outer import OuterStreams, search_inline, search_on
from .recipe import (
    VERBATIM,
    ArchiveRoot,
    MemberEntry,
    OuterItem,
    Recipe,
    params_index,
    write_recipe,
    write_root,
)
from .staging import StagingSink
from .streams import PIECE, PieceReader, ReadAt, bounded_decompress, pread_pieces
from .tree import TreeBuilder

#: Members up to this size are kept in memory between hashing and the compressor search; larger
#: ones are read again from the archive (pread, so searches in threads need no shared offset).
BUFFER_LIMIT: Final = 8 * 1024 * 1024
#: zstd level of the skeleton frame: skeletons are small (tens of bytes per member) and written
#: once, so a slow, strong level costs little and every later version stores less. Level 19 runs
#: at about 0.5 MB/s, so above SKELETON_STRONG_LIMIT (0.5 s of it) level 12 is used: 100x faster
#: on the 12 MB skeleton of a 100,000-member zip, for a frame about 20% larger.
SKELETON_ZSTD_LEVEL: Final = 19
SKELETON_FAST_LEVEL: Final = 12
SKELETON_STRONG_LIMIT: Final = 256 * 1024
#: Skeleton bytes kept in memory before spilling to a temporary file.
SKELETON_SPOOL: Final = 8 * 1024 * 1024
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
#: A WHEEL file is a few lines; a bigger one is not read for its Generator hint.
WHEEL_FILE_LIMIT: Final = 64 * 1024
#: The bytes of content one compressor search may feed its attempts in total: twice the stream's
#: content plus 256 MiB. A search usually ends at its first attempt (1x), and a wrong candidate
#: on real data fails within its first block; only a stream that candidates follow far without a
#: visible difference (a run of zeros: GNU gzip shows no output for ~258 MiB of them) reaches it,
#: and is then kept as it was, its search bounded.
SEARCH_WORK_FACTOR: Final = 2
SEARCH_WORK_FLOOR: Final = 256 * 1024 * 1024
#: ``--open-nested``: how deep archives inside archives are opened. Three levels cover a wheel
#: vendored in an sdist that itself ships ``.json.gz`` data; a deeper chain is more likely hostile.
MAX_NESTING_DEPTH: Final = 3
#: Candidate settings tried for a nested container stream before it is kept as a plain file:
#: the previous winner and the producer hints come first, so a consistent producer costs one
#: attempt, and a stream nothing reproduces costs a bounded search, not the whole registry.
NESTED_MAX_ATTEMPTS: Final = 16
#: A nested candidate's content stays in memory up to this size, then spills to a temporary file.
NESTED_SPOOL: Final = 8 * 1024 * 1024
#: Bytes of candidates waiting for (or in) nested import jobs before reading pauses for them.
NESTED_WINDOW: Final = 64 * 1024 * 1024
#: Member names worth trying as nested archives (the content is then sniffed, never trusted).
NESTED_SUFFIXES: Final = (".gz", ".tgz", ".whl", ".zip", ".tar", ".bz2", ".xz", ".egg", ".jar")
#: Formats whose one member is the whole content of the compressed file (see sources/raw.py).
_RAW_FORMATS: Final = ("gz", "bz2", "xz")


@dataclass(frozen=True, slots=True)
class MemberReport:
    """How one member is stored: ``how`` is stored | replayed | verbatim | empty."""

    index: int
    name: str
    size: int
    stored_size: int
    how: str
    params: str | None
    path: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What ``dpip-import wheel|sdist|auto`` prints for one archive."""

    file: str
    format: str
    root: bytes
    tree: bytes
    sha256: str
    size: int
    members: int
    replayed_bytes: int
    verbatim_bytes: int
    producer: str | None
    outer: tuple[str, ...]
    member_reports: tuple[MemberReport, ...]
    seconds: float
    tree_tsize: int = 0
    nested: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "file": self.file, "root": format_cid(self.root), "tree": format_cid(self.tree),
            "sha256": self.sha256, "size": self.size, "format": self.format, "members": self.members,
            "replayed_bytes": self.replayed_bytes, "verbatim_bytes": self.verbatim_bytes,
            "producer": self.producer, "outer": list(self.outer), "seconds": round(self.seconds, 3),
            "nested": self.nested,
        }


def _inflate_pieces(read_at: ReadAt, member: Member) -> Iterator[bytes]:
    """A deflated member's content, inflated again (for the search), in pieces of at most PIECE."""
    yield from bounded_decompress("deflate", pread_pieces(read_at, member.data_offset, member.data_length))


def _search_work(size: int) -> int:
    """The input bytes a search over a stream of ``size`` content bytes may read (SEARCH_WORK_FACTOR)."""
    return SEARCH_WORK_FACTOR * size + SEARCH_WORK_FLOOR


def wheel_generator(path: str) -> str | None:
    """The ``Generator:`` line of a wheel's WHEEL file, the best hint of its compressor."""
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                parts = info.filename.split("/")
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "WHEEL" \
                        and info.file_size < 64 * 1024:
                    for line in z.read(info).decode("utf-8", "replace").splitlines():
                        if line.startswith("Generator:"):
                            return line.split(":", 1)[1].strip()
    except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError, RuntimeError):
        return None
    return None


def _layout_generator(f: Any, source: ZipSource) -> str | None:
    """:func:`wheel_generator` from the already parsed central directory (no second zip parse:
    zipfile takes seconds on 100,000 members)."""
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


class _Spool:
    """Skeleton bytes appended in order, kept in memory up to SKELETON_SPOOL, then in a temp file."""

    def __init__(self) -> None:
        self.file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SKELETON_SPOOL)  # noqa: SIM115
        self.size = 0

    def append(self, data: bytes) -> None:
        self.file.write(data)
        self.size += len(data)

    def pieces(self) -> Iterator[bytes]:
        self.file.seek(0)
        while piece := self.file.read(PIECE):
            yield piece

    def close(self) -> None:
        self.file.close()


class _Spill:
    """A nested candidate's content: in memory up to NESTED_SPOOL, past that in an unnamed temporary file.

    In memory, the nested import reads it as bytes (no file is created: a temporary file per
    ``.json.gz`` costs more than the rest of its import on a busy machine).
    """

    def __init__(self) -> None:
        self._pieces: list[bytes] = []
        self._data: bytes | None = None
        self.file: IO[bytes] | None = None
        self.size = 0

    def write(self, piece: bytes) -> None:
        if self.file is None and self.size + len(piece) > NESTED_SPOOL:
            self.file = tempfile.TemporaryFile()  # noqa: SIM115  (closed by close())
            self.file.writelines(self._pieces)
            self._pieces = []
        if self.file is not None:
            self.file.write(piece)
        else:
            self._pieces.append(piece)
        self.size += len(piece)

    def data(self) -> bytes | None:
        """The content when it is held in memory, else None."""
        if self.file is not None:
            return None
        if self._data is None:
            self._data = b"".join(self._pieces)
            self._pieces = []
        return self._data

    def open(self) -> BinaryIO:
        """The content as a file read from its start (the temporary file itself, rewound)."""
        data = self.data()
        if data is not None:
            return io.BytesIO(data)
        assert self.file is not None
        self.file.seek(0)  # flushes: a reader may pread the descriptor
        return cast(BinaryIO, self.file)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        self._pieces, self._data = [], None


class _Keeper:
    """Keeps a copy of the pieces that pass through, up to ``limit`` bytes; past that, none."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pieces: list[bytes] | None = []
        self.kept = 0

    def tee(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            if self.pieces is not None:
                self.kept += len(piece)
                if self.kept <= self.limit:
                    self.pieces.append(piece)
                else:
                    self.pieces = None
            yield piece


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
            run = _Run(self, opened, read_at, pool, generator, name)
            try:
                run.read_members()
                run.read_container()
                root, tree = run.finish(name, size, digest.digest())
            finally:
                run.close()
        return ImportReport(
            file=name, format=opened.format, root=root, tree=tree, sha256=digest.hexdigest(), size=size,
            members=len(run.members), replayed_bytes=run.replayed_bytes, verbatim_bytes=run.verbatim_bytes,
            producer=generator or run.gzip_producer, outer=tuple(run.outer_labels),
            member_reports=tuple(run.reports), seconds=time.perf_counter() - start,
            tree_tsize=run.tree_tsize, nested=run.nested_count,
        )


@dataclass(slots=True)
class _Shared:
    """State shared by every nesting level of one import."""

    #: Bytes every decompressor of the import, at every level, may still produce (set by the
    #: top-level import from its file's size: ``--max-total-size`` and ``--max-ratio``).
    work: WorkBudget | None = None
    #: The settings that reproduced the last nested container stream: producers are consistent
    #: within a package (botocore's thousands of .json.gz), so this is tried first.
    previous: CompressorParams | None = None


@dataclass(slots=True)
class _Pending:
    member: Member
    skeleton_before: int
    content: DagNode | None
    #: The compressor search: its future while it runs, its result once done (a future holds a
    #: condition and locks, ~1 KiB: 100,000 members would keep 100 MB of them).
    search: Future[SearchResult] | SearchResult | None
    #: With --open-nested: the member's own archive root and its tree (a directory node).
    nested_root: bytes | None = None
    nested_tree: DagNode | None = None
    nested_job: Future[_NestedResult] | None = None
    spill: _Spill | None = None


@dataclass(frozen=True, slots=True)
class _NestedResult:
    """A nested import: its report and staged blocks, or (None, None) to keep the member plain."""

    report: ImportReport | None
    staging: StagingSink | None


class _Run:
    """The state of one archive import."""

    def __init__(self, owner: ArchiveImporter, opened: OpenedArchive, read_at: ReadAt, pool: ThreadPoolExecutor,
                 generator: str | None, name: str) -> None:
        self.owner = owner
        self.adder = owner.adder
        self.opened = opened
        self.read_at = read_at
        self.pool = pool
        self.generator = generator
        self.name = name
        self.body_skeleton = _Spool()
        self.outer_skeleton = _Spool()
        self._searching: deque[tuple[_Pending, int]] = deque()
        self._searching_bytes = 0
        self.outer: list[OuterItem | None] = []
        self.outer_labels: list[str] = []
        self.members: list[_Pending] = []
        self.tail = 0
        self.params: list[dict[str, Any]] = []
        self._params_index: dict[str, int] = {}
        self.extra: list[bytes] = []
        self.replayed_bytes = 0
        self.verbatim_bytes = 0
        self.reports: list[MemberReport] = []
        self.gzip_producer: str | None = None
        self._previous: CompressorParams | None = None
        self._outer_verbatim = False
        self.tree_tsize = 0
        self.nested_count = 0
        self._nested_pool: ThreadPoolExecutor | None = None
        self._jobs: deque[tuple[_Pending, int]] = deque()
        self._jobs_bytes = 0
        #: The content of a plain compressed file (format gz/bz2/xz) when it fit in BUFFER_LIMIT.
        self._container_content: list[bytes] | None = None
        self._params_by_value: dict[CompressorParams, int] = {}
        self.outer_streams = self._outer_streams()

    # -- body --------------------------------------------------------------------------------

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
            if self.outer_streams is not None and self.opened.format not in _RAW_FORMATS:
                self.outer_streams.drain()
        self.tail = before

    def _tap(self, pieces: Iterator[bytes]) -> Iterator[bytes]:
        """A member's content pieces, draining the container's runs when many pile up inside it."""
        outer = self.outer_streams
        if outer is None or self.opened.format in _RAW_FORMATS:
            yield from pieces
            return
        for piece in pieces:
            yield piece
            outer.maybe_drain()

    def _read_member(self, member: Member, before: int, pieces: Iterator[bytes]) -> _Pending:
        needs_search = self.opened.format == "zip" and member.method == METHOD_DEFLATED and not member.verbatim
        keeper = _Keeper(BUFFER_LIMIT)
        raw_container = self.opened.format in _RAW_FORMATS
        source = keeper.tee(pieces) if needs_search or raw_container else pieces
        nested_job: Future[_NestedResult] | None = None
        if not self._nested_candidate(member):
            reader = PieceReader(source)
            content = self.adder.add_stream(reader)  # type: ignore[arg-type]  # a RawIOBase reads like a BinaryIO
            total = reader.total
        else:
            # A possible nested archive: only if it is not one does its content become a leaf
            # (in finish), so an opened member leaves no unreferenced blocks behind.
            spill = _Spill()  # closed in finish
            for piece in source:
                spill.write(piece)
            total = spill.size
            nested_job = self._submit_nested(member, spill)
            content = DagNode(b"", 0, total)  # stands for the content's size until the job is done
        if raw_container:
            # The one member of a plain .gz/.bz2/.xz is the container's whole content: kept, the
            # container's search reads it instead of decompressing the file a second time.
            self._container_content = keeper.pieces
        if total == 0 and member.data_length == 0:
            content_node: DagNode | None = None if member.kind != "file" else content
        else:
            content_node = content
        search = None
        if needs_search:
            if keeper.pieces is None:
                read_at = self.read_at
                uncompressed: Any = lambda m=member: _inflate_pieces(read_at, m)
            else:
                uncompressed = b"".join(keeper.pieces)
            compressed: Any
            if member.data_length <= BUFFER_LIMIT:
                compressed = self.read_at(member.data_length, member.data_offset)
            else:
                read_at = self.read_at
                compressed = lambda m=member: pread_pieces(read_at, m.data_offset, m.data_length)
            hints = ProducerHints(generator=self.generator, member_name=member.name, previous=self._previous)
            search = self.pool.submit(search_params, compressed, uncompressed, "deflate", hints,
                                      content_cid=content.cid if nested_job is None else None,
                                      max_work=_search_work(member.size))
            search.add_done_callback(self._remember_winner)
            held = (len(compressed) if isinstance(compressed, bytes) else 0) + \
                (len(uncompressed) if isinstance(uncompressed, bytes) else 0)
        pending = _Pending(member, before, content_node, search, nested_job=nested_job)
        if search is not None:
            self._window(pending, held)
        if nested_job is not None:
            pending.spill = spill
            self._track_nested(pending, total)
        return pending

    def _track_nested(self, pending: _Pending, size: int) -> None:
        """Resolve finished nested jobs in member order, and wait for the oldest while the
        running ones hold more than NESTED_WINDOW bytes of candidates: what a job holds (its
        spooled content, its staged blocks) is released as soon as it is resolved."""
        self._jobs.append((pending, size))
        self._jobs_bytes += size
        while self._jobs:
            oldest, held = self._jobs[0]
            job = oldest.nested_job
            if job is not None and not job.done() and self._jobs_bytes <= NESTED_WINDOW:
                break
            self._jobs.popleft()
            self._jobs_bytes -= held
            self._resolve_nested(oldest)

    def _nested_candidate(self, member: Member) -> bool:
        """True when the member may be an archive worth opening (its content decides later)."""
        owner = self.owner
        if not owner.open_nested or owner.depth >= MAX_NESTING_DEPTH or member.kind != "file" or member.verbatim:
            return False
        return (member.name or "").lower().endswith(NESTED_SUFFIXES)

    def _submit_nested(self, member: Member, spill: _Spill) -> Future[_NestedResult]:
        """Open the member as an archive: on a worker thread at the top level, inline deeper down.

        Each job imports into its own staging sink (the store belongs to this thread); finish()
        copies the staged blocks only when the nested import is kept.
        """
        if self.owner.depth == 0:
            if self._nested_pool is None:
                self._nested_pool = ThreadPoolExecutor(self.owner.workers)
            return self._nested_pool.submit(self._nested_job, member, spill)
        done: Future[_NestedResult] = Future()
        try:
            done.set_result(self._nested_job(member, spill))
        except BaseException as e:  # noqa: BLE001  (handed to finish(), which raises it in order)
            done.set_exception(e)
        return done

    def _nested_job(self, member: Member, spill: _Spill) -> _NestedResult:
        """Import the spilled member as an archive into a staging sink (any thread)."""
        staging = StagingSink()
        child = self.owner.nested_importer(self.pool, staging)
        name = os.path.basename(member.name or "member")
        data = spill.data()
        try:
            if data is not None:
                report = child.import_open(io.BytesIO(data), name, lambda length, offset: data[offset:offset + length])
            else:
                report = child.import_open(spill.open(), name)
        except LimitExceeded as e:
            staging.close()
            # The budget is shared by every level: a nested bomb is the archive's bomb.
            raise LimitExceeded(self.name, f"nested archive {e}", member.label, limit=e.limit) from None
        except BaseException as e:
            staging.close()
            if isinstance(e, InvalidArchive):
                return _NestedResult(None, None)
            raise
        if report.verbatim_bytes:
            staging.close()
            return _NestedResult(None, None)
        return _NestedResult(report, staging)

    def _resolve_nested(self, pending: _Pending) -> None:
        """Finish's half of a nested job: keep its blocks, or make the content a plain leaf."""
        job = pending.nested_job
        if job is None:
            return
        pending.nested_job = None
        spill = pending.spill
        result = job.result()
        if result.report is not None and result.staging is not None:
            self.owner.sink.put_many(result.staging.items())
            result.staging.close()
            report = result.report
            self.nested_count += 1 + report.nested
            pending.nested_root = report.root
            pending.nested_tree = DagNode(report.tree, report.tree_tsize, report.replayed_bytes)
        elif spill is not None:
            pending.content = self.adder.add_stream(spill.open())
        if spill is not None:
            spill.close()
            pending.spill = None

    def _window(self, pending: _Pending, held: int) -> None:
        """Track a submitted search; wait for the oldest ones while too many bytes or searches are
        in flight, and keep each finished one's result in place of its future."""
        self._searching.append((pending, held))
        self._searching_bytes += held
        window = SEARCH_WINDOW if self.owner.depth == 0 else NESTED_SEARCH_WINDOW
        while self._searching and (self._searching_bytes > window or len(self._searching) > SEARCH_QUEUE
                                   or _done(self._searching[0][0].search)):
            oldest, size = self._searching.popleft()
            self._searching_bytes -= size
            future = oldest.search
            if isinstance(future, Future) and future.exception() is None:  # waits; errors surface in finish
                oldest.search = future.result()

    def close(self) -> None:
        if self._nested_pool is not None:
            self._nested_pool.shutdown(wait=True, cancel_futures=True)
        for pending in self.members:
            if pending.spill is not None:
                pending.spill.close()
            job = pending.nested_job  # an import that failed before resolving it: drop its staged blocks
            if job is not None and job.done() and not job.cancelled() and job.exception() is None \
                    and job.result().staging is not None:
                job.result().staging.close()  # type: ignore[union-attr]
        self.body_skeleton.close()
        self.outer_skeleton.close()

    def _remember_winner(self, future: Future[SearchResult]) -> None:
        if not future.cancelled() and future.exception() is None and future.result().params is not None:
            self._previous = future.result().params

    # -- container (gzip/bzip2/xz around a tar) ---------------------------------------------

    def _outer_streams(self) -> OuterStreams | None:
        """The container's framing and streams, drained as the tar inside is read (outer.py)."""
        container = self.opened.container
        if container is None:
            return None
        work = _search_work
        # A nested archive's job already runs on a worker thread: it searches right there, not
        # behind the parent's member searches queued in the shared pool.
        searcher = search_inline(NESTED_MAX_ATTEMPTS, work) if self.owner.depth else search_on(self.pool, work)
        previous = self.owner.shared.previous if self.owner.depth else None
        return OuterStreams(container, self.read_at, self.adder, searcher, self._add_params, self._add_extra,
                            self.outer_skeleton.append, previous)

    def _add_params(self, params: CompressorParams) -> int:
        index = self._params_by_value.get(params)
        if index is None:
            index = self._params_by_value[params] = params_index(self.params, self._params_index, params.to_dict())
        return index

    def _add_extra(self, cid: bytes) -> int:
        self.extra.append(cid)
        return len(self.extra) - 1

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
                and first.nested_job is None and first.content.size == len(content) else None
            outer.set_content(content, cid)
        outer.drain(final=True)
        self.outer = outer.items
        if self.owner.depth and outer.previous is not None:
            self.owner.shared.previous = outer.previous
        self.outer_labels = list(outer.label_lines())
        self.gzip_producer = outer.gzip_producer
        self._outer_verbatim = outer.verbatim

    # -- tree, skeleton, recipe ------------------------------------------------------------

    def finish(self, name: str, size: int, sha256: bytes) -> tuple[bytes, bytes]:
        for pending in self.members:
            self._resolve_nested(pending)
        placements = classify_members(p.member for p in self.members)
        tree = TreeBuilder(name)
        entries: list[MemberEntry] = []
        for pending, placement in zip(self.members, placements, strict=True):
            entries.append(self._entry(pending, placement.path, placement.reason, tree))
        tree_node = tree.build(self.owner.settings.directory, self.owner.sink)
        total = self.outer_skeleton.size + self.body_skeleton.size
        level = SKELETON_ZSTD_LEVEL if total <= SKELETON_STRONG_LIMIT else SKELETON_FAST_LEVEL
        blob = PieceReader(itertools.chain(self.outer_skeleton.pieces(), self.body_skeleton.pieces()))
        frame = zstandard.ZstdCompressor(level=level).read_to_iter(blob, size=total, read_size=PIECE,  # type: ignore[arg-type]
                                                                   write_size=PIECE)
        skeleton = self.adder.add_stream(PieceReader(frame))  # type: ignore[arg-type]  # reads like a BinaryIO
        self.tree_tsize = tree_node.tsize
        body = {"zip": "zip", "gz": "raw", "bz2": "raw", "xz": "raw"}.get(self.opened.format, "tar")
        recipe = Recipe(
            body=body, outer=tuple(self.outer),
            skeleton=skeleton.cid, skeleton_size=total, params=tuple(self.params), extra=tuple(self.extra),
            members=tuple(entries), tail=self.tail,
        )
        recipe_cid = write_recipe(recipe, self.owner.sink)
        root = write_root(ArchiveRoot(name, size, sha256, tree_node.cid, recipe_cid), self.owner.sink)
        return root, tree_node.cid

    def _entry(self, pending: _Pending, path: str | None, reason: str | None, tree: TreeBuilder) -> MemberEntry:
        member = pending.member
        label = member.label
        in_tree = path is not None
        if pending.nested_root is not None and pending.nested_tree is not None:
            return self._nested_entry(pending, path, reason, tree)
        if in_tree and path is not None:
            if member.kind == "dir":
                tree.add_dir(path)
            elif member.kind == "symlink":
                tree.add_file(path, build_symlink(member.link_target or b"", self.owner.settings.cid_version,
                                                  self.owner.sink))
            elif pending.content is not None:
                tree.add_file(path, pending.content)
        content = pending.content
        if content is None or member.data_length == 0 and content.size == 0 and member.kind != "file":
            self.reports.append(MemberReport(member.index, label, 0, member.data_length, "empty", None, path, reason))
            return MemberEntry(pending.skeleton_before, _NO_SOURCE, VERBATIM)
        source_is_tree = in_tree and member.kind == "file"
        size = content.size  # the member's uncompressed bytes (a raw .gz member has no size field)

        def content_source() -> str | int:
            if source_is_tree and path is not None:
                return path
            self.extra.append(content.cid)
            return len(self.extra) - 1

        if pending.search is None:
            # Stored as-is: zip method 0, tar contents, verbatim members (their stored bytes).
            how = "verbatim" if member.verbatim else "stored"
            if member.verbatim or self._outer_verbatim:
                self.verbatim_bytes += size
            else:
                self.replayed_bytes += size
            source = content_source() if not member.verbatim else self._extra_file(content)
            self.reports.append(MemberReport(member.index, label, size, member.data_length, how, None, path,
                                             member.verbatim_reason or reason))
            return MemberEntry(pending.skeleton_before, source, VERBATIM)
        result = _search_result(pending.search)
        if result.params is not None:
            self.replayed_bytes += size
            index = self._add_params(result.params)
            self.reports.append(MemberReport(member.index, label, size, member.data_length, "replayed",
                                             result.params.label, path, reason))
            return MemberEntry(pending.skeleton_before, content_source(), index)
        # Nothing reproduces the stream: keep the original compressed bytes as their own leaf.
        raw = self.adder.add_stream(PieceReader(pread_pieces(self.read_at, member.data_offset, member.data_length)))  # type: ignore[arg-type]
        self.verbatim_bytes += size
        self.reports.append(MemberReport(member.index, label, size, member.data_length, "verbatim", None,
                                         path, result.reason))
        return MemberEntry(pending.skeleton_before, self._extra_file(raw), VERBATIM)

    def _nested_entry(self, pending: _Pending, path: str | None, reason: str | None,
                      tree: TreeBuilder) -> MemberEntry:
        """A member opened as an archive: its tree is a directory in ours, its root the source."""
        member = pending.member
        assert pending.nested_root is not None and pending.nested_tree is not None
        if path is not None:
            tree.add_file(path, pending.nested_tree)
        params = VERBATIM
        label = None
        if pending.search is not None:
            result = _search_result(pending.search)
            if result.params is None:
                # The member's own stream is not reproducible: keep it whole, as without nesting.
                raw = self.adder.add_stream(PieceReader(pread_pieces(self.read_at, member.data_offset,  # type: ignore[arg-type]
                                                                      member.data_length)))
                self.verbatim_bytes += member.size
                self.reports.append(MemberReport(member.index, member.label, member.size, member.data_length,
                                                 "verbatim", None, path, result.reason))
                return MemberEntry(pending.skeleton_before, self._extra_file(raw), VERBATIM)
            params = self._add_params(result.params)
            label = result.params.label
        size = pending.content.size if pending.content is not None else member.size
        self.replayed_bytes += size
        self.reports.append(MemberReport(member.index, member.label, size, member.data_length, "nested", label,
                                         path, reason))
        return MemberEntry(pending.skeleton_before, pending.nested_root, params)

    def _extra_file(self, node: DagNode) -> int:
        return self._add_extra(node.cid)


def _done(search: Future[SearchResult] | SearchResult | None) -> bool:
    return not isinstance(search, Future) or search.done()


def _search_result(search: Future[SearchResult] | SearchResult) -> SearchResult:
    """The search's result, waiting for it if it still runs (raises what the search raised)."""
    return search.result() if isinstance(search, Future) else search


#: Member table source of a member with no stored bytes (directories, links, empty entries).
_NO_SOURCE: Final = -1


def import_archive(path: str, settings: ImportSettings, sink: BlockSink, **kwargs: Any) -> ImportReport:
    """Import the archive at ``path`` into ``sink``; see :class:`ArchiveImporter`."""
    return ArchiveImporter(settings, sink, **kwargs).import_file(path)


ProgressCallback = Callable[[ImportReport], None]
