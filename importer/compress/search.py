"""Find the compressor settings that reproduce a compressed stream, comparing output as it is produced.

Each candidate compresses the uncompressed input piece by piece; every output piece is compared
with the same span of the original stream and the attempt stops at the first differing byte, so a
wrong guess usually costs one deflate block (tens of KiB), and memory stays bounded whatever the
member size. Candidates come from backends that passed their golden check, in the order
``hints.order_candidates`` gives, so the usual case (same settings as the previous member, or the
producer's default) costs one attempt.

A compressor shows nothing before its first output, and on a run of zeros that can take hundreds
of megabytes (GNU gzip buffers 64 KiB of output, ~258 MiB of zeros): ``max_work`` bounds the
bytes all attempts of one search may read together, so a hostile stream that every candidate
follows far costs a bounded search and ends kept as it was, never an endless one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..errors import ImporterError
from .backends import BACKENDS, Backend
from .golden import backend_status, feed_for, verify_setting
from .hints import ProducerHints, order_candidates
from .memo import AttemptMemo, StreamId, cid_stream_id, decode_row, encode_key, encode_value, stream_id
from .params import KINDS, CompressorParams
from .pieces import ByteInput, FeedTooLarge, Replayable

#: Attempts of process-starting backends (GNU gzip) made in this process, by stream (see memo.py).
SPAWNED_ATTEMPTS: AttemptMemo[Attempt] = AttemptMemo()

#: Bytes of the stream's start handed to backends to narrow their candidates (bz2 "BZh9", xz
#: magic + stream flags = 8 bytes); 16 leaves room.
_HEAD_SIZE = 16


class SearchWorkSpent(ImporterError):
    """The attempts of one search have read ``limit`` bytes of input: the search stops here."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the search's attempts read {limit} bytes of input, its work limit")
        self.limit = limit


class WorkMeter:
    """Counts the input bytes every attempt of one search reads; past ``limit`` the attempt stops."""

    __slots__ = ("limit", "used")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.used = 0

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.used > self.limit

    def count(self, pieces: Iterable[bytes]) -> Iterator[bytes]:
        for piece in pieces:
            self.used += len(piece)
            if self.limit is not None and self.used > self.limit:
                raise SearchWorkSpent(self.limit)
            yield piece


@dataclass(frozen=True, slots=True)
class Attempt:
    """One candidate tried: how many compressed bytes it matched and why it failed ("" if it won)."""

    params: CompressorParams
    matched: int
    reason: str


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The winning params (or None), every attempt made, and a one-line reason when nothing matched."""

    params: CompressorParams | None
    attempts: tuple[Attempt, ...]
    reason: str


def registry_candidates(kind: str, head: bytes) -> list[CompressorParams]:
    """Settings of every usable backend for ``kind``, interleaved round-robin across backends.

    Round-robin puts each backend's most common setting before any backend's rare ones, so a
    producer we have no hint for still costs few attempts.
    """
    lists = [backend.candidates(head) for backend in BACKENDS.values()
             if backend.kind == kind and backend_status(backend.name).usable]
    interleaved = itertools.chain.from_iterable(itertools.zip_longest(*lists))
    return [params for params in interleaved if params is not None]


def _common_prefix(a: bytes | memoryview, b: bytes | memoryview) -> int:
    """Length of the common prefix of ``a`` and ``b`` (binary search on slices: C-speed compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def try_params(backend: Backend, params: CompressorParams, expected: Replayable,
               data: Replayable, meter: WorkMeter | None = None) -> Attempt:
    """Compress ``data`` with ``params`` and compare with ``expected``, stopping at the first difference
    (or when ``meter`` says the search has read enough)."""
    reader = expected.reader()
    matched = 0
    pieces = data.pieces() if meter is None else meter.count(data.pieces())
    output = backend.encode(params, feed_for(backend, params, pieces))
    try:
        for piece in output:
            if not piece:
                continue
            want = reader.read(len(piece))
            if want != piece:
                same = _common_prefix(want, piece)
                if same == len(want):
                    return Attempt(params, matched + same, f"output is longer than the {matched + same}-byte stream")
                return Attempt(params, matched + same, f"differs at compressed byte {matched + same}")
            matched += len(piece)
        if reader.read(1):
            return Attempt(params, matched, f"output ends at byte {matched}, the stream goes on")
        return Attempt(params, matched, "")
    except (FeedTooLarge, SearchWorkSpent) as exc:
        return Attempt(params, matched, str(exc))
    finally:
        output.close()  # type: ignore[attr-defined]


def search_params(compressed: ByteInput, uncompressed: ByteInput, kind: str = "deflate",
                  hints: ProducerHints | None = None, *, max_attempts: int | None = None,
                  names: Iterable[str] | None = None, content_cid: bytes | None = None,
                  max_work: int | None = None) -> SearchResult:
    """Try candidates in hint order until one reproduces ``compressed`` from ``uncompressed`` exactly.

    ``compressed`` is the raw stream (a raw deflate body for zip members and gzip), ``uncompressed``
    its content; each is bytes-like, a seekable binary file or a callable returning an iterable
    of pieces (each attempt reads them again from the start). ``names`` limits the backends.
    ``content_cid``, the CID of ``uncompressed`` when the caller already has it, names the content
    in the memo of process-starting backends instead of a second SHA-256 pass over it.
    ``max_work`` bounds the bytes of ``uncompressed`` all attempts together read (None: no bound).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown stream kind {kind!r}; expected one of {KINDS}")
    expected, data = Replayable(compressed), Replayable(uncompressed)
    head = bytes(expected.reader().read(_HEAD_SIZE))
    allowed = set(names) if names is not None else None
    attempts: list[Attempt] = []
    streams: list[tuple[StreamId, StreamId]] = []  # both streams' ids, once a memoized backend needs them
    meter = WorkMeter(max_work)
    for params in _ordered_candidates(kind, head, hints, allowed):
        if max_attempts is not None and len(attempts) >= max_attempts:
            break
        if not verify_setting(params).usable:
            continue  # this setting (so its whole backend) failed its golden check
        attempt = _attempt(BACKENDS[params.name], params, expected, data, streams, content_cid, meter)
        attempts.append(attempt)
        if not attempt.reason:
            return SearchResult(params, tuple(attempts), "")
        if meter.spent:
            return SearchResult(None, tuple(attempts), f"search stopped after {len(attempts)} attempts: "
                                f"{SearchWorkSpent(meter.limit or 0)}")
    unusable = sorted(f"{name} ({backend_status(name).reason})" for name, backend in BACKENDS.items()
                      if backend.kind == kind and not backend_status(name).usable)
    return SearchResult(None, tuple(attempts), _explain(kind, attempts, unusable))


def _attempt(backend: Backend, params: CompressorParams, expected: Replayable, data: Replayable,
             streams: list[tuple[StreamId, StreamId]], content_cid: bytes | None, meter: WorkMeter) -> Attempt:
    """:func:`try_params`, answered from :data:`SPAWNED_ATTEMPTS` when the backend starts a process
    and these very streams were tried with these params before (an attempt cut short by the
    search's work limit is not remembered: it says nothing about the params)."""
    if not backend.spawns_process:
        return try_params(backend, params, expected, data, meter)
    if not streams:
        streams.append((stream_id(expected), cid_stream_id(content_cid) if content_cid else stream_id(data)))
    key = (params, *streams[0])
    attempt = SPAWNED_ATTEMPTS.get(key)
    if attempt is None:
        attempt = try_params(backend, params, expected, data, meter)
        if not meter.spent:
            SPAWNED_ATTEMPTS.put(key, attempt)
    return attempt


def load_spawned_attempts(rows: Iterable[tuple[bytes, bytes]]) -> int:
    """Put persisted rows (newest first, as ``BlockStore.load_attempts`` gives them) into
    :data:`SPAWNED_ATTEMPTS`; return how many were dropped: damaged, or not of a process-starting backend."""
    params_cache: dict[bytes, CompressorParams] = {}
    entries = []
    dropped = 0
    for key_bytes, value in rows:
        row = decode_row(key_bytes, value, params_cache)
        backend = BACKENDS.get(row[0][0].name) if row is not None else None
        if row is None or backend is None or not backend.spawns_process:
            dropped += 1
            continue
        key, matched, reason = row
        entries.append((key, Attempt(key[0], matched, reason)))
    entries.reverse()  # oldest first
    SPAWNED_ATTEMPTS.load(entries)
    return dropped


def take_spawned_attempts() -> list[tuple[bytes, bytes]]:
    """Rows for ``BlockStore.record_attempts``: the attempts made or answered since the last call."""
    rows = []
    for key, attempt in SPAWNED_ATTEMPTS.take_touched():
        key_bytes = encode_key(key)
        rows.append((key_bytes, encode_value(key_bytes, attempt.matched, attempt.reason)))
    return rows


def _is_candidate(params: CompressorParams, kind: str, head: bytes, allowed: set[str] | None) -> bool:
    """Whether ``registry_candidates(kind, head)`` (limited to ``allowed``) holds ``params``,
    asking only the backend that ``params`` name."""
    backend = BACKENDS.get(params.name)
    return (backend is not None and backend.kind == kind and (allowed is None or params.name in allowed)
            and backend_status(params.name).usable and params in backend.candidates(head))


def _ordered_candidates(kind: str, head: bytes, hints: ProducerHints | None,
                        allowed: set[str] | None) -> Iterator[CompressorParams]:
    """The candidates in ``order_candidates`` order, the previous winner yielded before the rest are ranked.

    The previous winner comes first in that order whenever it is a candidate, and it is the usual
    winner (one producer per archive), so most searches end before the registry is listed and
    ranked (about 1 ms of Python for ~180 settings, per stream, holding the GIL).
    """
    previous = hints.previous if hints is not None else None
    first = previous if previous is not None and _is_candidate(previous, kind, head, allowed) else None
    if first is not None:
        yield first
    candidates = [p for p in registry_candidates(kind, head) if allowed is None or p.name in allowed]
    ranked = order_candidates(candidates, kind, hints)
    # order_candidates put ``first`` at the front exactly when it is a candidate: it was tried.
    yield from ranked[1:] if first is not None else ranked


def _explain(kind: str, attempts: list[Attempt], unusable: list[str]) -> str:
    skipped = f"; unusable here: {', '.join(unusable)}" if unusable else ""
    if not attempts:
        return f"no usable {kind} compressor setting to try{skipped}"
    best = max(attempts, key=lambda a: a.matched)
    return (f"none of {len(attempts)} {kind} settings reproduces the stream; closest: {best.params.label} "
            f"({best.reason}){skipped}")


def find_params(compressed: ByteInput, uncompressed: ByteInput, kind: str = "deflate",
                hints: ProducerHints | None = None, *, max_attempts: int | None = None) -> CompressorParams | None:
    """The params that reproduce ``compressed`` exactly, or None (see :func:`search_params` for why)."""
    return search_params(compressed, uncompressed, kind, hints, max_attempts=max_attempts).params
