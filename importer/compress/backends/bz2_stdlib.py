"""libbzip2 through the stdlib ``bz2`` module: the compressor of .tar.bz2 sdists.

bzip2 output depends only on the block size (level 1-9 = 100-900 kB blocks), which the stream
header names ("BZh" + digit), so a stream has exactly one candidate.
"""

from __future__ import annotations

import bz2
from collections.abc import Iterable, Iterator

from ..params import CompressorParams

#: libbzip2 1.0.x has not changed its output since 1.0.0 (2000); 1.1 did not either.
FAMILY = "bzip2-1"

#: Stream header: b"BZh" then the level as an ASCII digit "1"-"9".
_MAGIC = b"BZh"


class Bz2Backend:
    """``bz2.BZ2Compressor(level)``: one stream, feed-independent."""

    name = "bz2"
    kind = "bz2"
    family = FAMILY
    feed_dependent = False
    spawns_process = False

    def probe(self) -> str:
        return "libbzip2 (CPython bz2)"

    def settings(self) -> tuple[CompressorParams, ...]:
        return tuple(CompressorParams(self.name, self.family, level) for level in (9, 1, 2, 3, 4, 5, 6, 7, 8))

    def candidates(self, head: bytes) -> tuple[CompressorParams, ...]:
        if head[:3] == _MAGIC and head[3:4].isdigit():
            level = head[3] - ord("0")
            return tuple(p for p in self.settings() if p.level == level)
        return ()

    def encode(self, params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        comp = bz2.BZ2Compressor(params.level)
        for piece in pieces:
            if out := comp.compress(piece):
                yield out
        yield comp.flush()
