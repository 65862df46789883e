"""``buzhash``: Kubo's cyclic-polynomial chunker (boxo ``chunker/buzhash.go``), cut for cut.

Parameters are fixed in Kubo (pinned: boxo v0.42.0 ``8df89a7``): MIN = 128 KiB, MAX = 512 KiB,
mask = 2^17 - 1 (so after MIN a cut comes on average every 128 KiB), window 32 bytes, 32-bit
state. The state over the 32 bytes before length L is::

    state(L) = XOR_{k=0..31} rotl32(T[b[L-32+k]], 31-k)

and the chunk ends at the first L in [MIN, MAX) with ``state & mask == 0``, else at MAX; an input
tail shorter than MIN is the last chunk. Rolling costs one rotation and two lookups per byte:
``state = rotl(state, 1) ^ T[out] ^ T[in]`` (the leaving byte's term has been rotated 32 times,
the identity).

``T`` is boxo's ``bytehash`` table, generated once by ``chunker/gen/main.go`` from Go's
``math/rand`` seeded with 0 (every bit position holds exactly 128 ones). Reproducing it would
need Go's generator, so it ships as data in ``buzhash_table.json`` (MIT/Apache-2.0, provenance
inside the file).

End of input: an input tail shorter than MIN is one chunk, and a tail of MIN bytes or more is
searched like any buffer, its last chunk ending at EOF. Go's ``NextBytes`` once returned an extra
empty chunk after such a tail (ipfs/kubo#6953: ``yes foo | head -n 40000`` gave a second, empty
leaf); go-ipfs-chunker#22 fixed it in March 2020 (Kubo 0.5), so no Kubo since emits empty chunks,
and neither does this module (see :mod:`.base`).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import BinaryIO, Final

from ..errors import InvalidChunkerSpec
from .base import KiB
from .cdc import Buffer, ScanResult, cut_points, iter_chunks, kernel

#: boxo buzMin / buzMax / buzMask.
MIN_SIZE: Final = 128 * KiB
MAX_SIZE: Final = 512 * KiB
MASK: Final = (1 << 17) - 1
WINDOW: Final = 32
#: sha256 of the 256 table entries as little-endian uint32 (ipfs-unixfs-spec.md section 5).
TABLE_SHA256: Final = "5682f46a3226102a4f113d61841ab4f3e815b43ba590f1a1ecab7561369fc0cb"


@cache
def table_words() -> tuple[int, ...]:
    """boxo's ``bytehash[256]`` (uint32), from the shipped JSON."""
    text = resources.files(__package__).joinpath("buzhash_table.json").read_text(encoding="utf-8")
    words = tuple(int(w) for w in json.loads(text)["bytehash"])
    if len(words) != 256 or not all(0 <= w < 1 << 32 for w in words):
        raise RuntimeError("buzhash_table.json: expected 256 uint32 values")
    return words


@cache
def table_bytes() -> bytes:
    """The table as 256 little-endian uint32, the form the kernel takes."""
    return struct.pack("<256I", *table_words())


@dataclass(frozen=True, slots=True)
class BuzhashChunker:
    """Kubo's ``buzhash``; it has no parameters."""

    @property
    def spec(self) -> str:
        return "buzhash"

    def scan(self, buf: Buffer, scanned: int, state: int) -> ScanResult:
        """The kernel's cut search with Kubo's constants (see :mod:`.cdc`)."""
        return kernel().buzhash_scan(buf, scanned, state, MIN_SIZE, MAX_SIZE, MASK, table_bytes())

    def cut_points(self, data: Buffer) -> list[int]:
        """End offsets of the chunks of an in-memory input."""
        return cut_points(self.scan, data)

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        yield from iter_chunks(self.scan, stream)


def parse_buzhash(spec: str) -> BuzhashChunker:
    """Only the bare name: boxo's ``FromString`` matches ``chunker == "buzhash"``."""
    if spec != "buzhash":
        raise InvalidChunkerSpec(spec, f"unrecognized chunker option: {spec}")
    return BuzhashChunker()
