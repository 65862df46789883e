"""The content-defined chunking engine: picks the compiled kernel, streams it, registers the chunkers.

The cut-point kernels (``_cdc.c``, built by ``setup.py``) and their numpy references
(:mod:`importer.chunkers.reference`) share one contract::

    scan(buf, scanned, state, *params) -> (cuts, scanned, state)

``buf`` starts at the first byte of the unfinished chunk; ``cuts`` are the ends (offsets in
``buf``) of the chunks it completes; ``(scanned, state)`` is the rolling hash over the new
unfinished chunk, handed back on the next call. :func:`iter_chunks` drives a scan over a stream
in ``READ_SIZE`` reads, keeping only the unfinished chunk (at most MAX bytes) between reads, so
cut points do not depend on how the input is split into reads.

If the kernel is not built, the reference takes over and a warning goes to stderr, once.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from functools import cache
from typing import BinaryIO, Final, Protocol, cast

from .base import Chunker, MiB
from .registry import register_chunker

#: Bytes per read: large enough that per-call overhead vanishes next to the byte loop, small
#: enough to keep memory flat (the unfinished chunk, at most 2 MiB, is carried over).
READ_SIZE: Final = 8 * MiB

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


def iter_chunks(scan: Scan, stream: BinaryIO, read_size: int = READ_SIZE) -> Iterator[bytes]:
    """Yield the chunks ``scan`` finds in ``stream``; what is left at EOF is the last chunk.

    One reusable buffer holds the unfinished chunk followed by the next ``read_size`` bytes, read
    with ``readinto`` when the stream has it: no per-read allocation, and the only copy besides
    the read is the ``bytes`` of each chunk (plus moving the unfinished tail to the front).
    """
    buf = bytearray(read_size)
    view = memoryview(buf)
    readinto = getattr(stream, "readinto", None)
    filled = 0  # bytes in buf: the unfinished chunk, then new data
    scanned = state = 0
    eof = False
    try:
        while not eof:
            target = filled + read_size
            if len(buf) < target:  # a scan whose chunks outgrow one read (not Kubo's chunkers)
                view.release()
                buf.extend(bytes(target - len(buf)))
                view = memoryview(buf)
            while filled < target:
                if readinto is not None:
                    got = readinto(view[filled:target]) or 0
                else:
                    data = stream.read(target - filled)
                    got = len(data)
                    view[filled : filled + got] = data
                if not got:
                    eof = True
                    break
                filled += got
            if not filled:
                break
            cuts, scanned, state = scan(view[:filled], scanned, state)
            start = 0
            for end in cuts:
                yield bytes(view[start:end])
                start = end
            if start:
                view[: filled - start] = bytes(view[start:filled])
                filled -= start
        if filled:
            yield bytes(view[:filled])
    finally:
        view.release()


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
