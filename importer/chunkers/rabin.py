"""``rabin``, ``rabin-AVG``, ``rabin-MIN-AVG-MAX``: Kubo's Rabin-fingerprint chunker, cut for cut.

Kubo wraps ``whyrusleeping/chunker`` (a fork of restic's) in boxo ``chunker/rabin.go``
(pinned: whyrusleeping/chunker ``fe64bd2``, boxo v0.42.0 ``8df89a7``):

* polynomial ``P = 0x3DF305DFB2A805`` (degree 53, ``IpfsRabinPoly``), window 16 bytes;
* ``mask = 2^floor(log2(AVG)) - 1``, computed as Go's ``uint(math.Log2(float64(avg)))``;
* each chunk skips its first MIN-16 bytes, then slides every byte into the window and, from
  length MIN on, cuts where ``fingerprint & mask == 0`` or the length reaches MAX::

      |<-- MIN-16: not hashed -->|<-16->|<-- tested: fp(last 16 bytes) & mask == 0 ? -->|
      0                                MIN                                             MAX

* ``rabin`` means AVG = 256 KiB; ``rabin-AVG`` derives MIN = AVG/3 and MAX = AVG + AVG/2
  (integer division) and does not check MIN, so AVG < 48 gives MIN < 16, which underflows Go's
  unsigned ``pre`` counter: such a chunker never cuts and the whole input is one chunk.

Spec strings and error messages follow boxo ``chunker/parse.go`` exactly. Kubo only promises
``size-N`` to be stable; this module matches the rabin of boxo as pinned above.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from ..errors import InvalidChunkerSpec
from .base import CHUNK_SIZE_LIMIT, DEFAULT_BLOCK_SIZE
from .cdc import Buffer, ScanResult, cut_points, iter_chunks, kernel
from .registry import ERR_SIZE_MAX, go_atoi

#: whyrusleeping/chunker windowSize: bytes covered by one fingerprint.
WINDOW: Final = 16
#: A MIN this large can never complete inside a real input (1 PiB), like MIN < 16.
HUGE: Final = 1 << 50
_U64: Final = (1 << 64) - 1
_INT64_MIN: Final = -(1 << 63)

# boxo chunker/parse.go, verbatim.
ERR_RABIN_MIN: Final = "rabin min must be greater than 16"
ERR_FORMAT: Final = "incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'"
ERR_LABEL_MIN: Final = "first label must be min"
ERR_LABEL_AVG: Final = "second label must be avg"
ERR_LABEL_MAX: Final = "final label must be max"
ERR_MIN_AVG: Final = "incorrect format: rabin-min must be smaller than rabin-avg"
ERR_AVG_MAX: Final = "incorrect format: rabin-avg must be smaller than rabin-max"


def go_log2_floor(avg: int) -> int:
    """``uint(math.Log2(float64(avg)))`` as Go computes it, for avg > 0.

    Go's ``Log2`` splits ``x = frac * 2^exp`` and returns ``exp - 1`` exactly for powers of two,
    else ``log(frac) * (1/ln 2) + exp``; ``uint()`` truncates.
    """
    frac, exp = math.frexp(float(avg))
    if frac == 0.5:
        return exp - 1
    return int(math.log(frac) * 1.4426950408889634 + exp)


def _go_float32_times_1_5_to_int(value: int) -> int:
    """``int(float32(value) * 1.5)`` on amd64 (out-of-range conversions give MinInt64)."""
    f32 = struct.unpack("<f", struct.pack("<f", float(value)))[0]
    product = struct.unpack("<f", struct.pack("<f", f32 * 1.5))[0]
    if not -(2.0**63) <= product < 2.0**63:
        return _INT64_MIN
    return int(product)


@dataclass(frozen=True, slots=True)
class RabinChunker:
    """Kubo's rabin with unsigned (Go ``uint64``) MIN/AVG/MAX, as ``NewRabinMinMax`` takes them."""

    min_size: int
    avg_size: int
    max_size: int

    @classmethod
    def from_avg(cls, avg: int) -> RabinChunker:
        """boxo ``NewRabin(r, uint64(avg))``: MIN = AVG/3, MAX = AVG + AVG/2 (uint64 arithmetic)."""
        avg &= _U64
        return cls(avg // 3, avg, (avg + avg // 2) & _U64)

    @property
    def mask(self) -> int:
        """``(1 << uint(log2(AVG))) - 1``; Go's shift by 64 or more gives 0, hence all ones."""
        if self.avg_size == 0:
            return _U64  # log2(0) = -Inf; irrelevant: MIN = 0 never cuts
        bits = go_log2_floor(self.avg_size)
        return ((1 << bits) - 1) & _U64 if bits < 64 else _U64

    @property
    def never_cuts(self) -> bool:
        """MIN < 16 (Go's ``pre`` underflows) or too large for any input: one chunk."""
        return self.min_size < WINDOW or self.min_size > HUGE

    @property
    def spec(self) -> str:
        if WINDOW <= self.min_size < self.avg_size < self.max_size <= CHUNK_SIZE_LIMIT:
            return f"rabin-{self.min_size}-{self.avg_size}-{self.max_size}"
        signed = self.avg_size - (1 << 64) if self.avg_size >= 1 << 63 else self.avg_size
        return f"rabin-{signed}"

    def scan(self, buf: Buffer, scanned: int, digest: int) -> ScanResult:
        """The kernel's cut search with this chunker's parameters (see :mod:`.cdc`)."""
        return kernel().rabin_scan(buf, scanned, digest, self.min_size, self.max_size, self.mask)

    def cut_points(self, data: Buffer) -> list[int]:
        """End offsets of the chunks of an in-memory input."""
        if self.never_cuts:
            return [len(data)] if data else []
        return cut_points(self.scan, data)

    def chunks(self, stream: BinaryIO) -> Iterator[bytes]:
        if self.never_cuts:
            # Kubo buffers the whole input as one chunk; so must we.
            whole = stream.read()
            if whole:
                yield whole
            return
        yield from iter_chunks(self.scan, stream)


def _labelled(spec: str, part: str, label: str, error: str) -> int:
    """Go: ``sub := strings.Split(part, ":")``; a label, if any, must be ``label``."""
    sub = part.split(":")
    if len(sub) > 1 and sub[0] != label:
        raise InvalidChunkerSpec(spec, error)
    return go_atoi(spec, sub[-1])


def parse_rabin(spec: str) -> RabinChunker:
    """boxo ``parseRabinString``: every accepted form and every error message."""
    parts = spec.split("-")
    if len(parts) == 1:
        return RabinChunker.from_avg(DEFAULT_BLOCK_SIZE)
    if len(parts) == 2:
        avg = go_atoi(spec, parts[1])
        if _go_float32_times_1_5_to_int(avg) > CHUNK_SIZE_LIMIT:
            raise InvalidChunkerSpec(spec, ERR_SIZE_MAX)
        return RabinChunker.from_avg(avg)
    if len(parts) == 4:
        min_size = _labelled(spec, parts[1], "min", ERR_LABEL_MIN)
        if min_size < WINDOW:
            raise InvalidChunkerSpec(spec, ERR_RABIN_MIN)
        avg = _labelled(spec, parts[2], "avg", ERR_LABEL_AVG)
        max_size = _labelled(spec, parts[3], "max", ERR_LABEL_MAX)
        if min_size >= avg:
            raise InvalidChunkerSpec(spec, ERR_MIN_AVG)
        if avg >= max_size:
            raise InvalidChunkerSpec(spec, ERR_AVG_MAX)
        if max_size > CHUNK_SIZE_LIMIT:
            raise InvalidChunkerSpec(spec, ERR_SIZE_MAX)
        return RabinChunker(min_size, avg, max_size)
    raise InvalidChunkerSpec(spec, ERR_FORMAT)
