"""The content-defined chunking engine: picks the compiled kernel, streams it, registers the chunkers.

The cut-point kernels (``_cdc.c``, built by ``setup.py``) and their numpy references
(:mod:`importer.chunkers.reference`) share one contract::

    scan(buf, scanned, state, *params) -> (cuts, scanned, state)

``buf`` starts at the first byte of the unfinished chunk; ``cuts`` are the ends (offsets in
``buf``) of the chunks it completes; ``(scanned, state)`` is the rolling hash over the new
unfinished chunk, handed back on the next call. :func:`iter_chunks` drives a scan over a stream
in ``READ_SIZE`` reads, keeping only the unfinished chunk (at most MAX bytes) between reads, so
cut points do not depend on how the input is split into reads. When a core is free, streams
longer than one read are read and scanned in a producer thread a few reads ahead of the consumer,
which meanwhile hashes the chunks: both sides release the GIL, so chunking overlaps hashing.

If the kernel is not built, the reference takes over and a warning goes to stderr, once.
"""

from __future__ import annotations

import importlib
import os
import queue
import sys
import threading
from collections.abc import Callable, Generator, Iterator
from functools import cache
from typing import BinaryIO, Final, Protocol, cast

from .base import Chunker, KiB
from .registry import register_chunker

#: Bytes per read: large enough that per-call overhead vanishes next to the byte loop, small
#: enough that the read is still in the CPU cache (L2) when it is scanned, copied into chunks
#: and hashed. On this project's 2-core Xeon (2 MiB L2 per core) rabin add of 1 GiB plus sha256
#: costs 1.6 s of CPU with 8 MiB reads, 1.1 s with 512 KiB reads.
READ_SIZE: Final = 512 * KiB
#: The buffer holds this many reads, so the unfinished chunk moves to the front only every few
#: reads.
BUFFER_READS: Final = 4

#: Reads the producer thread may run ahead of the consumer (each up to READ_SIZE of chunks).
QUEUE_DEPTH: Final = 2
#: Seconds between the producer's checks for a consumer that has stopped listening.
STOP_POLL: Final = 0.05

ScanResult = tuple[list[int], int, int]
Buffer = bytes | bytearray | memoryview
#: ``scan(buf, scanned, state)`` with the chunker's parameters already bound.
Scan = Callable[[Buffer, int, int], ScanResult]

KERNEL_MODULE: Final = "importer.chunkers._cdc"
WARNING: Final = (
    "dpip-importer: warning: the compiled chunking kernel ({module}) is not built ({error}); "
    "rabin, buzhash and fastcdc fall back to the slow numpy reference. "
    "Rebuild it with `pip install -e .` or `python setup.py build_ext --inplace`.\n"
)


class Kernel(Protocol):
    """What ``_cdc`` and :mod:`importer.chunkers.reference` both provide."""

    def rabin_scan(
        self, buf: Buffer, scanned: int, digest: int, min_size: int, max_size: int, mask: int, /
    ) -> ScanResult: ...

    def buzhash_scan(
        self, buf: Buffer, scanned: int, state: int, min_size: int, max_size: int, mask: int, table: bytes, /
    ) -> ScanResult: ...

    def chunk_bytes(self, buf: Buffer, start: int, ends: list[int], /) -> list[bytes]: ...

    def simd(self, enable: bool, /) -> bool: ...

    def gear_scan(
        self,
        buf: Buffer,
        scanned: int,
        fp: int,
        min_size: int,
        avg_size: int,
        max_size: int,
        mask_s: int,
        mask_l: int,
        table: bytes,
        /,
    ) -> ScanResult: ...


@cache
def kernel() -> Kernel:
    """The compiled kernel, or the reference after one warning on stderr."""
    try:
        return cast(Kernel, importlib.import_module(KERNEL_MODULE))
    except ImportError as exc:
        sys.stderr.write(WARNING.format(module=KERNEL_MODULE, error=exc))
        return reference_kernel()


def reference_kernel() -> Kernel:
    """The plain Python/numpy implementation of the same contract."""
    return cast(Kernel, importlib.import_module("importer.chunkers.reference"))


def kernel_is_compiled() -> bool:
    """True when :func:`kernel` is the C extension."""
    return kernel() is not reference_kernel()


class _ChunkReader:
    """Reads ``stream`` through ``scan`` one read at a time: each :meth:`next_batch` returns the
    chunks that one read completes (at the end also the unfinished tail), then ``None``.

    One reusable buffer of ``BUFFER_READS`` reads holds the unfinished chunk (from ``head``)
    followed by new data, read with ``readinto`` when the stream has it: no per-read allocation,
    and the only copy besides the read is the ``bytes`` of each chunk, made right after the
    scan while the read is still in the CPU cache (by the kernel's ``chunk_bytes``, which copies
    without holding the GIL). When less than a read is free at the end, the
    unfinished chunk moves to the front (once every few reads, not after every read).
    """

    def __init__(self, scan: Scan, stream: BinaryIO, read_size: int) -> None:
        self.scan = scan
        self.stream = stream
        self.read_size = read_size
        self.buf = bytearray(BUFFER_READS * read_size)
        self.view = memoryview(self.buf)
        self.readinto = getattr(stream, "readinto", None)
        self.chunk_bytes = kernel().chunk_bytes
        self.head = 0  # start of the unfinished chunk in buf
        self.filled = 0  # end of the data in buf
        self.scanned = self.state = 0
        self.finished = False  # True once the stream is exhausted and every chunk returned

    def next_batch(self) -> list[bytes] | None:
        if self.finished:
            return None
        eof = self._fill()
        view, head, filled = self.view, self.head, self.filled
        batch: list[bytes] = []
        if filled > head:
            cuts, self.scanned, self.state = self.scan(view[head:filled], self.scanned, self.state)
            ends = [head + end for end in cuts]
            if eof and (ends[-1] if ends else head) < filled:
                ends.append(filled)  # what is left at EOF is the last chunk
            if ends:
                batch = self.chunk_bytes(view, head, ends)
                self.head = ends[-1]
        if eof:
            self.finished = True
            self.close()
        return batch

    def _fill(self) -> bool:
        """Append up to ``read_size`` bytes of the stream after the data; True at end of stream."""
        pending = self.filled - self.head
        if len(self.buf) - self.filled < self.read_size:
            if len(self.buf) < pending + self.read_size:  # chunks longer than the buffer allows
                self.view.release()
                self.buf.extend(bytes(pending + self.read_size - len(self.buf)))
                self.view = memoryview(self.buf)
            if self.head:
                self.view[:pending] = bytes(self.view[self.head : self.filled])
                self.head, self.filled = 0, pending
        view, readinto, target = self.view, self.readinto, self.filled + self.read_size
        while self.filled < target:
            if readinto is not None:
                got = readinto(view[self.filled : target]) or 0
            else:
                data = self.stream.read(target - self.filled)
                got = len(data)
                view[self.filled : self.filled + got] = data
            if not got:
                return True
            self.filled += got
        return False

    def close(self) -> None:
        self.view.release()


class _Failed:
    """An exception raised in the producer thread, handed to the consumer to re-raise."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


Batches = queue.Queue[list[bytes] | _Failed | None]


def _produce(reader: _ChunkReader, batches: Batches, stop: threading.Event) -> None:
    """Producer thread: read and scan ahead of the consumer until the end, an error or ``stop``."""
    item: list[bytes] | _Failed | None
    while not stop.is_set():
        try:
            item = reader.next_batch()
        except BaseException as exc:  # noqa: BLE001  (re-raised in the consumer)
            item = _Failed(exc)
        while not stop.is_set():
            try:
                batches.put(item, timeout=STOP_POLL)
                break
            except queue.Full:
                continue
        if not isinstance(item, list):
            return


def spare_core(loadavg: str = "/proc/loadavg") -> bool:
    """True when a CPU is free for a producer thread: fewer runnable tasks than usable CPUs.

    Reads the instantaneous run-queue length from ``/proc/loadavg`` (it counts this thread);
    elsewhere, any machine with two CPUs counts as having one to spare.
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    cpus = len(getaffinity(0)) if getaffinity is not None else os.cpu_count() or 1
    if cpus < 2:
        return False
    try:
        with open(loadavg, "rb") as f:
            runnable = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return True
    return runnable < cpus


def iter_chunks(
    scan: Scan, stream: BinaryIO, read_size: int = READ_SIZE, *, threaded: bool | None = None
) -> Generator[bytes, None, None]:
    """Yield the chunks ``scan`` finds in ``stream``; what is left at EOF is the last chunk.

    When ``threaded`` (by default: when :func:`spare_core` finds a CPU free), a stream longer
    than one read is read and scanned in a producer thread, at most ``QUEUE_DEPTH`` reads ahead,
    while the caller hashes the chunks already yielded: the read, the scan, the chunk copies and
    sha256 all release the GIL, so with a free core the chunker costs little on top of hashing
    (1 GiB rabin add: 0.88 s against 0.78 s for size-262144 on this project's idle 2-core VM).
    On a saturated machine the thread only adds GIL hand-offs and cross-core copies (rabin add
    used 1.03 s of CPU inline, 1.31 s threaded), so it reads inline there. The chunks and their
    order are the same either way; the stream is only touched by the producer while the
    iteration runs, and the producer is stopped and joined before this generator finishes,
    fails or is closed.
    """
    reader = _ChunkReader(scan, stream, read_size)
    try:
        batch = reader.next_batch()
        if not reader.finished and (spare_core() if threaded is None else threaded):
            yield from _pipelined(reader, batch)
            return
        while batch is not None:
            yield from batch
            batch = reader.next_batch()
    finally:
        reader.close()


def _pipelined(reader: _ChunkReader, first: list[bytes] | None) -> Iterator[bytes]:
    """Yield ``first``, then the batches a producer thread reads ahead (see :func:`iter_chunks`)."""
    batches: Batches = queue.Queue(QUEUE_DEPTH)
    stop = threading.Event()
    producer = threading.Thread(
        target=_produce, args=(reader, batches, stop), name="dpip-chunker", daemon=True
    )
    producer.start()
    try:
        item: list[bytes] | _Failed | None = first
        while isinstance(item, list):
            yield from item
            item = batches.get()
        if isinstance(item, _Failed):
            raise item.error
    finally:
        stop.set()
        producer.join()


def cut_points(scan: Scan, data: Buffer) -> list[int]:
    """End offsets of the chunks of an in-memory input (the last one is ``len(data)``)."""
    cuts, _, _ = scan(data, 0, 0)
    if (cuts[-1] if cuts else 0) < len(data):
        cuts.append(len(data))
    return cuts


def _parse_rabin(spec: str) -> Chunker:
    from .rabin import parse_rabin

    return parse_rabin(spec)


def _parse_buzhash(spec: str) -> Chunker:
    from .buzhash import parse_buzhash

    return parse_buzhash(spec)


def _parse_fastcdc(spec: str) -> Chunker:
    from .fastcdc import parse_fastcdc

    return parse_fastcdc(spec)


# The chunker modules import this one, so their parsers are imported on first use.
register_chunker("rabin", _parse_rabin)
register_chunker("buzhash", _parse_buzhash)
register_chunker("fastcdc", _parse_fastcdc)
