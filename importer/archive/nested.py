"""``--open-nested``: members that are archives themselves, imported as archives of their own.

A member named like an archive (NESTED_SUFFIXES) is held whole (:class:`~.buffers.Spill`) and
imported on a worker thread into a staging sink while the member pass reads on; whether it is
an archive is decided by its content, never its name. When it opens, and every stream in it is
reproduced, its blocks are copied to the store and its tree becomes a directory in the parent's
tree, its root the source of the parent's member entry; otherwise its content becomes a plain
leaf, as without ``--open-nested``, and nothing it staged is kept. Jobs resolve in member order,
at most NESTED_WINDOW bytes of candidates waiting, so memory stays bounded.
"""

from __future__ import annotations

import io
import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Final, Protocol

from ..adder import Adder
from ..errors import InvalidArchive, LimitExceeded
from ..layout import DagNode
from ..sinks.base import BlockSink
from ..sources.base import Member
from .buffers import Spill
from .report import ImportReport
from .staging import StagingSink
from .streams import ReadAt

#: How deep archives inside archives are opened. Three levels cover a wheel vendored in an sdist
#: that itself ships ``.json.gz`` data; a deeper chain is more likely hostile.
MAX_NESTING_DEPTH: Final = 3
#: Candidate settings tried for a nested container stream before it is kept as a plain file:
#: the previous winner and the producer hints come first, so a consistent producer costs one
#: attempt, and a stream nothing reproduces costs a bounded search, not the whole registry.
NESTED_MAX_ATTEMPTS: Final = 16
#: Bytes of candidates waiting for (or in) nested import jobs before reading pauses for them.
NESTED_WINDOW: Final = 64 * 1024 * 1024
#: Member names worth trying as nested archives (the content is then sniffed, never trusted).
NESTED_SUFFIXES: Final = (".gz", ".tgz", ".whl", ".zip", ".tar", ".bz2", ".xz", ".egg", ".jar")


def is_nested_candidate(member: Member) -> bool:
    """True when the member may be an archive worth opening (its content decides later)."""
    return member.kind == "file" and not member.verbatim and (member.name or "").lower().endswith(NESTED_SUFFIXES)


class NestedImporter(Protocol):
    """The importer of one nested archive (an ``ArchiveImporter`` one level deeper)."""

    def import_open(self, f: BinaryIO, name: str, read_at: ReadAt | None = None) -> ImportReport: ...


@dataclass(frozen=True, slots=True)
class NestedResult:
    """A nested import: its report and staged blocks, or (None, None) to keep the member plain."""

    report: ImportReport | None
    staging: StagingSink | None


@dataclass(slots=True)
class NestedCandidate:
    """A member being tried as an archive; once resolved, either ``root`` and ``tree`` (a directory
    node) are set, or ``leaf``: its content as a plain UnixFS file."""

    member: Member
    #: The content's bytes.
    size: int
    spill: Spill | None
    job: Future[NestedResult] | None
    root: bytes | None = None
    tree: DagNode | None = None
    leaf: DagNode | None = None


class NestedJobs:
    """The nested imports of one archive: started, bounded, resolved in member order.

    ``child(sink)`` makes the importer of a nested archive (same settings, limits and budget, one
    level deeper). At the top level (``depth`` 0) jobs run on a pool of ``workers`` threads;
    deeper down they run inline, on the worker that imports their parent.
    """

    def __init__(self, archive: str, adder: Adder, sink: BlockSink, child: Callable[[BlockSink], NestedImporter], *,
                 enabled: bool, depth: int, workers: int) -> None:
        self.archive = archive
        self.adder = adder
        self.sink = sink
        self.child = child
        self.enabled = enabled and depth < MAX_NESTING_DEPTH
        self.depth = depth
        self.workers = workers
        #: Nested archives kept, at every level below this one.
        self.count = 0
        self._pool: ThreadPoolExecutor | None = None
        self._waiting: deque[NestedCandidate] = deque()
        self._waiting_bytes = 0
        self._started: list[NestedCandidate] = []

    def wants(self, member: Member) -> bool:
        """True when ``member`` is to be tried as an archive."""
        return self.enabled and is_nested_candidate(member)

    def start(self, member: Member, pieces: Iterable[bytes]) -> NestedCandidate:
        """Hold the member's content and start importing it as an archive.

        Each job imports into its own staging sink (the store belongs to this thread);
        :meth:`resolve` copies the staged blocks only when the nested import is kept.
        """
        spill = Spill()  # closed when resolved, or by close()
        for piece in pieces:
            spill.write(piece)
        candidate = NestedCandidate(member, spill.size, spill, self._submit(member, spill))
        self._started.append(candidate)
        return candidate

    def _submit(self, member: Member, spill: Spill) -> Future[NestedResult]:
        if self.depth == 0:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers)
            return self._pool.submit(self._job, member, spill)
        done: Future[NestedResult] = Future()
        try:
            done.set_result(self._job(member, spill))
        except BaseException as e:  # noqa: BLE001  (handed to resolve(), which raises it in order)
            done.set_exception(e)
        return done

    def _job(self, member: Member, spill: Spill) -> NestedResult:
        """Import the spilled member as an archive into a staging sink (any thread)."""
        staging = StagingSink()
        child = self.child(staging)
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
            raise LimitExceeded(self.archive, f"nested archive {e}", member.label, limit=e.limit) from None
        except BaseException as e:
            staging.close()
            if isinstance(e, InvalidArchive):
                return NestedResult(None, None)
            raise
        if report.verbatim_bytes:
            staging.close()
            return NestedResult(None, None)
        return NestedResult(report, staging)

    def track(self, candidate: NestedCandidate) -> None:
        """Resolve finished jobs in member order, and wait for the oldest while the running ones
        hold more than NESTED_WINDOW bytes of candidates: what a job holds (its spooled content,
        its staged blocks) is released as soon as it is resolved."""
        self._waiting.append(candidate)
        self._waiting_bytes += candidate.size
        while self._waiting:
            oldest = self._waiting[0]
            job = oldest.job
            if job is not None and not job.done() and self._waiting_bytes <= NESTED_WINDOW:
                break
            self._waiting.popleft()
            self._waiting_bytes -= oldest.size
            self.resolve(oldest)

    def resolve(self, candidate: NestedCandidate) -> None:
        """Wait for the candidate's job, then keep its blocks or make its content a plain leaf."""
        job = candidate.job
        if job is None:
            return
        candidate.job = None
        spill = candidate.spill
        result = job.result()
        if result.report is not None and result.staging is not None:
            self.sink.put_many(result.staging.items())
            result.staging.close()
            report = result.report
            self.count += 1 + report.nested
            candidate.root = report.root
            candidate.tree = DagNode(report.tree, report.tree_tsize, report.replayed_bytes)
        elif spill is not None:
            candidate.leaf = self.adder.add_stream(spill.open())
        if spill is not None:
            spill.close()
            candidate.spill = None

    def close(self) -> None:
        """Stop the workers and drop what unresolved jobs hold (an import that failed midway)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        for candidate in self._started:
            if candidate.spill is not None:
                candidate.spill.close()
            job = candidate.job
            if job is not None and job.done() and not job.cancelled() and job.exception() is None:
                staging = job.result().staging
                if staging is not None:
                    staging.close()
