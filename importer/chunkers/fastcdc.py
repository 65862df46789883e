"""``fastcdc-MIN-AVG-MAX``: FastCDC with normalized chunking, for the benchmarks (not a Kubo chunker).

Algorithm: Xia et al., "FastCDC: a Fast and Efficient Content-Defined Chunking Approach for Data
Deduplication" (USENIX ATC 2016) and its TPDS 2020 extension, Algorithm 2 ("normalized
chunking", level 2):

* gear hash ``fp = (fp << 1) + G[byte]`` (mod 2^64): one shift and one add per byte, and a byte
  leaves the hash after 64 more (its contribution is shifted out);
* the first MIN bytes of a chunk are not hashed (cut-point skipping); hashing starts at 0;
* while hashing the byte at chunk offset i, MIN <= i < AVG, a match under the stricter
  ``mask_s`` (log2(AVG) + 2 one bits) cuts the chunk to its first i bytes; from AVG on the
  looser ``mask_l`` (log2(AVG) - 2 one bits) applies; no match before MAX cuts at MAX::

      |<-- MIN: skipped -->|<-- mask_s: fewer cuts -->|<-- mask_l: more cuts -->|
      0                   MIN                        AVG                       MAX

  which pulls chunk sizes toward AVG. As in the paper, the byte that matched opens the next
  chunk, so every chunk but the last has MIN <= length <= MAX.
* Masks: the paper spreads its one bits over the upper 48 bits; here they are simply the most
  significant bits of the hash (``mask_s`` = top ``b + 2`` bits, ``mask_l`` = top ``b - 2``,
  ``b = floor(log2(AVG))``). Bit 63 - j of a gear hash depends on the last 64 - j bytes, so a
  top-bits mask sees the 64-byte window that the spread masks were designed to approximate.

Gear table ``G`` (256 uint64): the first 256 outputs of SplitMix64 (Steele, Lea and Flood,
OOPSLA 2014; the generator of Java's ``SplittableRandom``) seeded with 0. It is regenerated at
import; its sha256 (little-endian) is pinned in :data:`GEAR_SHA256` and checked by the tests,
so the cut points of a given spec never change.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import BinaryIO, Final

from ..errors import InvalidChunkerSpec
from .base import CHUNK_SIZE_LIMIT
from .cdc import Buffer, ScanResult, cut_points, iter_chunks, kernel
from .registry import ERR_SIZE_MAX, go_atoi

#: A gear hash covers 64 bytes; smaller chunks would cut on a partial window.
MIN_LIMIT: Final = 64
#: SplitMix64 seed for the gear table.
GEAR_SEED: Final = 0
#: sha256 of the gear table as 256 little-endian uint64.
GEAR_SHA256: Final = "3843faf2c6540306294b486fda136f53cc592319b024ecb30987d6340908063b"
#: Normalization level 2 (the paper's recommended setting): mask widths log2(AVG) +- 2.
NORMALIZATION: Final = 2
_M64: Final = (1 << 64) - 1

ERR_FORMAT: Final = "incorrect format (expected 'fastcdc-[min]-[avg]-[max]')"
ERR_MIN: Final = f"fastcdc min must be at least {MIN_LIMIT}"
ERR_MIN_AVG: Final = "incorrect format: fastcdc-min must be smaller than fastcdc-avg"
ERR_AVG_MAX: Final = "incorrect format: fastcdc-avg must be smaller than fastcdc-max"


def splitmix64(seed: int, count: int) -> list[int]:
    """The first ``count`` outputs of SplitMix64 from ``seed``."""
    out = []
    state = seed & _M64
    for _ in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _M64  # 2^64 / golden ratio, odd
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        out.append(z ^ (z >> 31))
    return out


@cache
def gear_table() -> bytes:
    """The 256-entry gear table as little-endian uint64 (the form the kernel takes)."""
    return struct.pack("<256Q", *splitmix64(GEAR_SEED, 256))


def gear_table_sha256() -> str:
    return hashlib.sha256(gear_table()).hexdigest()


def top_bits_mask(bits: int) -> int:
    """A 64-bit mask of the ``bits`` most significant bits."""
    return (_M64 << (64 - bits)) & _M64


@dataclass(frozen=True, slots=True)
class FastCDCChunker:
    """FastCDC with normalized chunking between ``min_size`` and ``max_size`` bytes."""

    min_size: int
    avg_size: int
    max_size: int

    @property
    def spec(self) -> str:
        return f"fastcdc-{self.min_size}-{self.avg_size}-{self.max_size}"

    @property
    def masks(self) -> tuple[int, int]:
        """``(mask_s, mask_l)``: top log2(AVG)+2 and log2(AVG)-2 bits."""
        bits = self.avg_size.bit_length() - 1
        return top_bits_mask(bits + NORMALIZATION), top_bits_mask(bits - NORMALIZATION)

    def scan(self, buf: Buffer, scanned: int, fp: int) -> ScanResult:
        """The kernel's cut search with this chunker's parameters (see :mod:`.cdc`)."""
        mask_s, mask_l = self.masks
        return kernel().gear_scan(
            buf, scanned, fp, self.min_size, self.avg_size, self.max_size, mask_s, mask_l, gear_table()
        )

    def cut_points(self, data: Buffer) -> list[int]:
        """End offsets of the chunks of an in-memory input."""
        return cut_points(self.scan, data)

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        yield from iter_chunks(self.scan, stream)


def _labelled(spec: str, part: str, label: str, position: str) -> int:
    sub = part.split(":")
    if len(sub) > 1 and sub[0] != label:
        raise InvalidChunkerSpec(spec, f"{position} label must be {label}")
    return go_atoi(spec, sub[-1])


def parse_fastcdc(spec: str) -> FastCDCChunker:
    """``fastcdc-MIN-AVG-MAX`` (labels ``min:``/``avg:``/``max:`` allowed, as for rabin)."""
    parts = spec.split("-")
    if len(parts) != 4 or parts[0] != "fastcdc":
        raise InvalidChunkerSpec(spec, ERR_FORMAT)
    min_size = _labelled(spec, parts[1], "min", "first")
    avg = _labelled(spec, parts[2], "avg", "second")
    max_size = _labelled(spec, parts[3], "max", "final")
    if min_size < MIN_LIMIT:
        raise InvalidChunkerSpec(spec, ERR_MIN)
    if min_size >= avg:
        raise InvalidChunkerSpec(spec, ERR_MIN_AVG)
    if avg >= max_size:
        raise InvalidChunkerSpec(spec, ERR_AVG_MAX)
    if max_size > CHUNK_SIZE_LIMIT:
        raise InvalidChunkerSpec(spec, ERR_SIZE_MAX)
    return FastCDCChunker(min_size, avg, max_size)
