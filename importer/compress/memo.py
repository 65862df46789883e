"""Attempts of compressors that start a process, remembered for the rest of the process by the SHA-256 of both streams.

A GNU gzip attempt costs a process start (~0.6 ms of CPU on these machines) plus gzip's own work
(~2 ms for a 130 KB JSON file at level 6). botocore ships ~950 ``.json.gz`` files per wheel and
most of them hold the same JSON, deflated to the same bytes, from one release to the next (only
the gzip header's MTIME differs), so importing a release series with ``--open-nested`` would run
gzip on identical inputs again and again. An attempt is a pure function of its settings, the
original stream and the content: the same three give the same :class:`~.search.Attempt`, so a
repeat is answered from here. Streams are named by their length and SHA-256, as the store names
blocks; nothing else is trusted (the search order, the settings' golden checks and the winner's
recorded params are unchanged).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Final, Generic, TypeVar

from .params import CompressorParams
from .pieces import Replayable

#: Attempts kept; the oldest is dropped past this. An entry is ~300 bytes (two digests, the
#: params record, the attempt), so ~5 MB at most; 16384 covers the .json.gz files of ~17 botocore wheels.
MEMO_ENTRIES: Final = 16384

#: (length, SHA-256) of a stream, or (-1, CID) for a content the caller names by its CID.
StreamId = tuple[int, bytes]
Key = tuple[CompressorParams, StreamId, StreamId]
T = TypeVar("T")


def stream_id(stream: Replayable) -> StreamId:
    """(length, SHA-256) of a stream, read from its start."""
    digest = hashlib.sha256()
    size = 0
    for piece in stream.pieces():
        digest.update(piece)
        size += len(piece)
    return size, digest.digest()


def cid_stream_id(cid: bytes) -> StreamId:
    """A content named by its CID (a CID fixes its bytes as a SHA-256 does; -1 keeps the two kinds apart)."""
    return -1, cid


class AttemptMemo(Generic[T]):
    """A bounded, thread-safe map from (params, original stream, content) to what the attempt gave."""

    def __init__(self, capacity: int = MEMO_ENTRIES) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key) -> T | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: Key, value: T) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
