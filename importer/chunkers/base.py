"""The chunker protocol: a chunker turns a byte stream into a sequence of chunks.

Every chunker is registered under Kubo's spec syntax (``size-N``, ``rabin-MIN-AVG-MAX``,
``buzhash``) by :mod:`importer.chunkers.registry`; the layouts only ever see an iterator of
``bytes``. Chunkers never yield an empty chunk: an empty stream yields nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Final, Protocol, runtime_checkable

KiB: Final = 1024
MiB: Final = 1024 * KiB

#: boxo ``chunker.DefaultBlockSize``: 256 KiB.
DEFAULT_BLOCK_SIZE: Final = 256 * KiB
#: boxo ``chunker.ChunkSizeLimit``: 2 MiB minus 256 bytes of room for the dag-pb/UnixFS
#: wrapping, so that a wrapped leaf stays within the 2 MiB block limit of bitswap.
CHUNK_SIZE_LIMIT: Final = 2 * MiB - 256


@runtime_checkable
class Chunker(Protocol):
    """Splits a stream into chunks; ``spec`` is the canonical Kubo-style name."""

    @property
    def spec(self) -> str: ...

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        """Yield the chunks of ``stream`` in order; never an empty one."""
        ...


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless EOF comes first (Go's ``io.ReadFull``)."""
    data = stream.read(size)
    if len(data) == size or not data:
        return data
    parts = [data]
    have = len(data)
    while have < size:
        more = stream.read(size - have)
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)
