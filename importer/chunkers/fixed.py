"""``size-N``: Kubo's fixed-size splitter (boxo ``chunker/splitting.go``).

Reads exactly N bytes per chunk; the last chunk is the remainder; an input that is an exact
multiple of N gets no trailing empty chunk, and an empty input no chunk at all.

When a CPU is free (:func:`importer.chunkers.cdc.spare_core`), the reads run in a thread a few
chunks ahead of the caller, which hashes the chunks already yielded: file reads and hashlib both
release the GIL, so the two overlap on two cores. The chunks are the same either way.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from .base import read_full

#: Chunks read ahead of the caller: enough to hide a read's latency, 1 MiB at Kubo's default.
READ_AHEAD: Final = 4


@dataclass(frozen=True, slots=True)
class FixedChunker:
    """Fixed-size chunks of ``size`` bytes."""

    size: int

    @property
    def spec(self) -> str:
        return f"size-{self.size}"

    def chunks(self, stream: BinaryIO, *, threaded: bool | None = None) -> Generator[bytes, None, None]:
        size = self.size
        first = read_full(stream, size)
        if not first:
            return
        if len(first) < size:
            yield first
            return
        if threaded is None:
            from .cdc import spare_core

            threaded = spare_core()
        yield first
        if threaded:
            yield from _read_ahead(stream, size)
            return
        while True:
            chunk = read_full(stream, size)
            if not chunk:
                return
            yield chunk
            if len(chunk) < size:
                return

    def cut_points(self, length: int) -> list[int]:
        """End offsets of the chunks of a ``length``-byte input (for in-memory use)."""
        return list(range(self.size, length, self.size)) + ([length] if length else [])


def _read_ahead(stream: BinaryIO, size: int) -> Iterator[bytes]:
    """The remaining chunks, read by a producer thread at most READ_AHEAD chunks ahead."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(READ_AHEAD)
    stop = threading.Event()

    def produce() -> None:
        try:
            while not stop.is_set():
                chunk = read_full(stream, size)
                if not chunk:
                    break
                chunks.put(chunk)
                if len(chunk) < size:
                    break
            chunks.put(None)
        except BaseException as e:  # noqa: BLE001  (re-raised in the consumer, in order)
            chunks.put(e)

    producer = threading.Thread(target=produce, name="dpip-read-ahead", daemon=True)
    producer.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while producer.is_alive():  # unblock a producer waiting on a full queue
            try:
                chunks.get_nowait()
            except queue.Empty:
                producer.join(0.01)
        producer.join()
