"""Recompressing a stream in a worker thread fed from the calling thread, with bounded memory.

Used by the rebuild for members and outer streams too large to hand to the pool whole. A
compressor failure not of the importer's making (hostile params: a level or window no backend
takes) becomes one :class:`InvalidBlock` naming the recipe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Final

from ..compress import CompressorParams, recompress
from ..errors import ImporterError, InvalidBlock


def compressor_failed(params: CompressorParams, where: str, error: Exception) -> InvalidBlock:
    """A compressor that the recipe's params make fail (a hostile level or window): one line."""
    return InvalidBlock(where, f"compressor {params.label} fails: {type(error).__name__}: {error}")


def compress_whole(params: CompressorParams, content: bytes, where: str) -> bytes:
    try:
        return b"".join(recompress(params, [content]))
    except ImporterError:
        raise
    except Exception as e:  # noqa: BLE001  (zlib.error, ValueError, OverflowError, LZMAError...)
        raise compressor_failed(params, where, e) from None


#: Content pieces queued ahead of a streaming compressor: 4 pieces of at most 1 MiB.
PUMP_DEPTH: Final = 4
_END: Final = object()


def pumped(params: CompressorParams, pieces: Iterable[bytes], where: str = "recipe") -> Iterator[bytes]:
    """``recompress(params, pieces)`` with ``pieces`` iterated in the calling thread only.

    The content comes from the block source (SQLite connections belong to the thread that opened
    them), while some backends read their input in a thread of their own (GNU gzip's stdin
    feeder). So the compressor runs in a worker thread fed through a bounded queue, and this
    thread reads the source: memory stays bounded by PUMP_DEPTH pieces, and reading the store
    overlaps with compressing. A compressor failure not of the importer's making (hostile params)
    is re-raised here as one :class:`InvalidBlock` naming ``where``.
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
                if isinstance(item, Exception) and not isinstance(item, ImporterError):
                    raise compressor_failed(params, where, item) from None
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
