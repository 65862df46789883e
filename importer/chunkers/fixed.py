"""``size-N``: Kubo's fixed-size splitter (boxo ``chunker/splitting.go``).

Reads exactly N bytes per chunk; the last chunk is the remainder; an input that is an exact
multiple of N gets no trailing empty chunk, and an empty input no chunk at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .base import read_full


@dataclass(frozen=True, slots=True)
class FixedChunker:
    """Fixed-size chunks of ``size`` bytes."""

    size: int

    @property
    def spec(self) -> str:
        return f"size-{self.size}"

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        size = self.size
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
