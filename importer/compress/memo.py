"""Attempts of compressors that start a process, remembered by the SHA-256 of both streams, in the process and in the store.

A GNU gzip attempt costs a process start (~0.6 ms of CPU on these machines) plus gzip's own work
(~2 ms for a 130 KB JSON file at level 6). botocore ships ~950 ``.json.gz`` files per wheel and
most of them hold the same JSON, deflated to the same bytes, from one release to the next (only
the gzip header's MTIME differs), so importing a release series with ``--open-nested`` would run
gzip on identical inputs again and again. An attempt is a pure function of its settings, the
original stream and the content: the same three give the same :class:`~.search.Attempt`, so a
repeat is answered from here. Streams are named by their length and SHA-256, as the store names
blocks; nothing else is trusted (the search order, the settings' golden checks and the winner's
recorded params are unchanged).

The memo also outlives the process in the embedded store (``BlockStore.load_attempts`` /
``record_attempts``): a PyPI mirror imports one release per process into a store that holds the
previous ones, so the attempts proven for release N answer release N+1's identical streams. A
persisted row is a canonical byte key (:func:`encode_key`) and a value that carries a SHA-256 over
key and payload (:func:`encode_value`); a row whose checksum or layout is wrong is dropped on load
(:func:`decode_row`), never trusted, since a wrong "reproduces" answer would write a recipe that
cannot rebuild its archive. The store keeps the :data:`MEMO_ENTRIES` newest rows, as many as a
load reads back: a botocore row is 183 bytes (143 key, 40 value), ~390 bytes on disk with its
key index (910 rows took 356 KiB), so ~6.4 MB at most; loading all of them takes ~50 ms.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final, Generic, TypeVar

from .errors import InvalidCompressorParams
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
    """A bounded, thread-safe map from (params, original stream, content) to what the attempt gave.

    It also notes which keys were put or answered since :meth:`take_touched` last ran, so the
    caller can write those (new, or worth keeping recent) to the store from its own thread.
    """

    def __init__(self, capacity: int = MEMO_ENTRIES) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[Key, T] = OrderedDict()
        self._touched: dict[Key, None] = {}
        self._lock = threading.Lock()

    def get(self, key: Key) -> T | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
                self._touched[key] = None
            return value

    def put(self, key: Key, value: T) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            self._touched[key] = None
            self._trim()

    def load(self, entries: Iterable[tuple[Key, T]]) -> None:
        """Add entries from the store, oldest first, as older than anything already here (which
        wins on a shared key); loaded entries are not touched."""
        with self._lock:
            current = self._entries
            self._entries = OrderedDict((key, value) for key, value in entries if key not in current)
            self._entries.update(current)
            self._trim()

    def take_touched(self) -> list[tuple[Key, T]]:
        """The entries put or answered since the last call, least recently used first; forgets them."""
        with self._lock:
            touched = [(key, self._entries[key]) for key in self._entries if key in self._touched]
            self._touched.clear()
            return touched

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._touched.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _trim(self) -> None:
        while len(self._entries) > self.capacity:
            key, _ = self._entries.popitem(last=False)
            self._touched.pop(key, None)


# -- persisted rows ------------------------------------------------------------------------------
#
# key   = u16 length of the params JSON, the params JSON (``to_dict()`` with sorted keys and no
#         spaces: one setting, one spelling), then each stream id as i64 length (-1: a CID) and
#         u8 length of its digest, the digest (32 bytes of SHA-256, or a CID of ~36 bytes).
# value = SHA-256(key + payload) (32 bytes), then payload = u64 bytes matched, the reason in UTF-8.
# Big-endian, fixed-width integers: a canonical encoding without a varint codec. u16 bounds the
# params JSON to 64 KiB (a setting's JSON is ~100 bytes), u8 a digest to 255 bytes.

_U16: Final = struct.Struct(">H")
_STREAM: Final = struct.Struct(">qB")
_MATCHED: Final = struct.Struct(">Q")
_CHECKSUM: Final = 32  # SHA-256


def encode_key(key: Key) -> bytes:
    """The canonical bytes of a memo key (see the layout above)."""
    params, *streams = key
    text = json.dumps(params.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    out = [_U16.pack(len(text)), text]
    for size, digest in streams:
        out += [_STREAM.pack(size, len(digest)), digest]
    return b"".join(out)


def encode_value(key_bytes: bytes, matched: int, reason: str) -> bytes:
    """A checksummed value for ``key_bytes``: what an attempt gave (bytes matched, failure reason)."""
    payload = _MATCHED.pack(matched) + reason.encode()
    return hashlib.sha256(key_bytes + payload).digest() + payload


def decode_row(key_bytes: bytes, value: bytes,
               params_cache: dict[bytes, CompressorParams] | None = None) -> tuple[Key, int, str] | None:
    """(key, bytes matched, reason) of a persisted row, or None when the checksum or the layout is wrong.

    ``params_cache`` maps params JSON to decoded params across rows (most rows share a few settings).
    """
    if len(value) < _CHECKSUM + _MATCHED.size:
        return None
    payload = value[_CHECKSUM:]
    if hashlib.sha256(key_bytes + payload).digest() != value[:_CHECKSUM]:
        return None
    try:
        (length,) = _U16.unpack_from(key_bytes, 0)
        offset = _U16.size
        text = key_bytes[offset:offset + length]
        offset += length
        params = params_cache.get(text) if params_cache is not None else None
        if params is None:
            data = json.loads(text)
            if not isinstance(data, dict):
                return None
            params = CompressorParams.from_dict(data)
            if params_cache is not None:
                params_cache[text] = params
        streams: list[StreamId] = []
        for _ in range(2):
            size, digest_length = _STREAM.unpack_from(key_bytes, offset)
            offset += _STREAM.size
            digest = key_bytes[offset:offset + digest_length]
            offset += digest_length
            if len(digest) != digest_length:
                return None
            streams.append((size, digest))
        if offset != len(key_bytes):
            return None
        (matched,) = _MATCHED.unpack_from(payload, 0)
        reason = payload[_MATCHED.size:].decode()
    except (struct.error, ValueError, InvalidCompressorParams):  # JSON and UTF-8 errors are ValueErrors
        return None
    return (params, streams[0], streams[1]), matched, reason
