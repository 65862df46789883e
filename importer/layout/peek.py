"""A one-chunk look-ahead over a chunk iterator: boxo's ``DagBuilderHelper.Done()``."""

from __future__ import annotations

from collections.abc import Iterator


class ChunkStream:
    """Wraps an iterator of chunks so layouts can ask whether any data is left."""

    __slots__ = ("_done", "_it", "_next")

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._it = chunks
        self._next: bytes | None = None
        self._done = False
        self._advance()

    def _advance(self) -> None:
        for chunk in self._it:
            if chunk:
                self._next = chunk
                return
        self._next = None
        self._done = True

    def done(self) -> bool:
        return self._done

    def take(self) -> bytes:
        """Return the next chunk; only call when :meth:`done` is False."""
        chunk = self._next
        assert chunk is not None, "take() past the end of the chunk stream"
        self._advance()
        return chunk
