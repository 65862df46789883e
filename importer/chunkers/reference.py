"""Plain Python/numpy cut points for rabin, buzhash and FastCDC: the compiled kernel's oracle and fallback.

Written from the definitions (ipfs-unixfs-spec.md sections 4 and 5; the FastCDC paper), not from
the kernel's rolling loops, so that the two can catch each other's mistakes:

* rabin: each 16-byte window's fingerprint is computed as polynomial arithmetic over GF(2)
  (``w(x) mod P`` as the XOR of 16 per-position tables ``v * x^(8*(15-k)) mod P``), instead of
  the kernel's out/mod rolling tables.
* buzhash: each 32-byte window's state is ``XOR_k rotl(T[b_k], 31-k)``, computed directly.
* FastCDC: the gear hash of every position is the shifted sum of the last 64 table entries;
  positions within 63 bytes of the chunk's hashing start are summed separately.

Every ``*_scan`` function has the kernel's signature and contract (see ``_cdc.c``): ``buf`` starts
at the current chunk, the result lists the chunk ends found, and ``(scanned, state)`` describe the
unfinished tail. The reference ignores the carried state and recomputes from ``buf`` (which always
holds the whole unfinished chunk); the state it returns is only meaningful to itself.
"""

from __future__ import annotations

import itertools
from typing import Final

import numpy as np
import numpy.typing as npt

U64 = npt.NDArray[np.uint64]
U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
ScanResult = tuple[list[int], int, int]

#: Kubo's IpfsRabinPoly (boxo chunker/rabin.go), degree 53.
RABIN_POL: Final = 0x3DF305DFB2A805
#: whyrusleeping/chunker windowSize.
RABIN_WINDOW: Final = 16
#: boxo buzhash.go: the state covers the last 32 bytes.
BUZ_WINDOW: Final = 32
#: A gear hash shifts left once per byte, so a byte leaves a 64-bit hash after 64 bytes.
GEAR_WINDOW: Final = 64
#: Chunk sizes above this can never complete inside a real input (1 PiB).
HUGE: Final = 1 << 50
_M64: Final = (1 << 64) - 1


def pol_mod(x: int, p: int) -> int:
    """``x mod p`` for polynomials over GF(2) written as bit patterns."""
    dp = p.bit_length()
    while x.bit_length() >= dp:
        x ^= p << (x.bit_length() - dp)
    return x


def pol_mulmod(a: int, b: int, p: int) -> int:
    """``a * b mod p`` over GF(2) (carry-less multiplication, then reduction)."""
    product = 0
    while b:
        if b & 1:
            product ^= a
        a <<= 1
        b >>= 1
    return pol_mod(product, p)


def rabin_position_tables() -> list[U64]:
    """Table k maps byte v at window position k to ``v * x^(8*(15-k)) mod P``."""
    tables = []
    for k in range(RABIN_WINDOW):
        weight = pol_mod(1 << (8 * (RABIN_WINDOW - 1 - k)), RABIN_POL)
        tables.append(np.array([pol_mulmod(v, weight, RABIN_POL) for v in range(256)], dtype=np.uint64))
    return tables


_RABIN_TABLES: list[U64] = []


def rabin_fingerprints(data: bytes | bytearray | memoryview) -> U64:
    """``fp[j]`` = Rabin fingerprint of ``data[j:j+16]``, for every full window."""
    if not _RABIN_TABLES:
        _RABIN_TABLES.extend(rabin_position_tables())
    arr = np.frombuffer(data, dtype=np.uint8)
    count = len(arr) - RABIN_WINDOW + 1
    fp = np.zeros(max(count, 0), dtype=np.uint64)
    if count <= 0:
        return fp
    for k, table in enumerate(_RABIN_TABLES):
        fp ^= table[arr[k : k + count]]
    return fp


def buzhash_states(data: bytes | bytearray | memoryview, table: bytes) -> U32:
    """``s[j]`` = buzhash state of ``data[j:j+32]``: XOR over k of rotl(T[b_k], 31-k)."""
    t = np.frombuffer(table, dtype="<u4").astype(np.uint32)
    arr = np.frombuffer(data, dtype=np.uint8)
    count = len(arr) - BUZ_WINDOW + 1
    state = np.zeros(max(count, 0), dtype=np.uint32)
    if count <= 0:
        return state
    for k in range(BUZ_WINDOW):
        r = (BUZ_WINDOW - 1 - k) % 32
        rotated = ((t << np.uint32(r)) | (t >> np.uint32((32 - r) % 32))) if r else t
        state ^= rotated[arr[k : k + count]]
    return state


def gear_hashes(data: bytes | bytearray | memoryview, table: bytes) -> U64:
    """``g[j]`` = sum over s < 64 of ``G[data[j-s]] << s`` (mod 2^64): the gear hash at j."""
    g_table = np.frombuffer(table, dtype="<u8").astype(np.uint64)
    arr = np.frombuffer(data, dtype=np.uint8)
    n = len(arr)
    values = g_table[arr]
    g = np.zeros(n, dtype=np.uint64)
    for s in range(min(GEAR_WINDOW, n)):
        g[s:] += values[: n - s] << np.uint64(s)
    return g


def _cuts_from_hits(hits: I64, n: int, min_size: int, max_size: int) -> tuple[list[int], int]:
    """Chunk ends: first hit in [start+min, start+max], else start+max; stop when data runs out.

    ``hits`` are sorted absolute end offsets whose window test passed (the window ending there
    lies inside the chunk because min >= window).
    """
    cuts: list[int] = []
    pos = 0
    while pos + min_size <= n:
        hi = pos + max(max_size, min_size)  # Go tests "add >= MaxSize" only from MIN on
        i = int(np.searchsorted(hits, pos + min_size))
        if i < len(hits) and int(hits[i]) <= min(hi, n):
            cut = int(hits[i])
        elif hi <= n:
            cut = hi
        else:
            break
        cuts.append(cut)
        pos = cut
    return cuts, pos


def rabin_scan(
    buf: bytes | bytearray | memoryview, scanned: int, digest: int, min_size: int, max_size: int, mask: int
) -> ScanResult:
    """Kubo's rabin cuts: the first length L in [MIN, MAX] whose last 16 bytes have
    ``fp & mask == 0``, else MAX; MIN < 16 (Go's ``pre`` underflows) never cuts."""
    del scanned, digest
    n = len(buf)
    if min_size < RABIN_WINDOW or min_size > HUGE:
        return [], n, 0
    fp = rabin_fingerprints(buf)
    hits = np.flatnonzero((fp & np.uint64(mask)) == 0).astype(np.int64) + RABIN_WINDOW
    cuts, pos = _cuts_from_hits(hits, n, min_size, max_size)
    return cuts, n - pos, 0


def simd(enable: bool) -> bool:
    """The kernel's switch for its x86 vector paths; the reference has none: always False."""
    del enable
    return False


def chunk_bytes(buf: bytes | bytearray | memoryview, start: int, ends: list[int]) -> list[bytes]:
    """``[bytes(buf[start:ends[0]]), bytes(buf[ends[0]:ends[1]]), ...]`` (the kernel's chunk copy)."""
    view = memoryview(buf)
    pairs = list(itertools.pairwise([start, *ends]))
    if start < 0 or any(b < a or b > len(view) for a, b in pairs):
        raise ValueError("chunk_bytes: ends out of order or out of range")
    return [bytes(view[a:b]) for a, b in pairs]


def buzhash_scan(
    buf: bytes | bytearray | memoryview,
    scanned: int,
    state: int,
    min_size: int,
    max_size: int,
    mask: int,
    table: bytes,
) -> ScanResult:
    """Kubo's buzhash cuts: the first length L in [MIN, MAX) whose last 32 bytes have
    ``state & mask == 0``, else MAX."""
    del scanned, state
    n = len(buf)
    states = buzhash_states(buf, table)
    hits = np.flatnonzero((states & np.uint32(mask)) == 0).astype(np.int64) + BUZ_WINDOW
    cuts, pos = _cuts_from_hits(hits, n, min_size, max_size)
    return cuts, n - pos, 0


def gear_scan(
    buf: bytes | bytearray | memoryview,
    scanned: int,
    fp: int,
    min_size: int,
    avg_size: int,
    max_size: int,
    mask_s: int,
    mask_l: int,
    table: bytes,
) -> ScanResult:
    """FastCDC (normalized chunking) cuts: hashing starts at chunk offset MIN; a match while
    hashing the byte at offset i cuts the chunk to i bytes (``mask_s`` below AVG, ``mask_l``
    from AVG on); no match below MAX cuts at MAX."""
    del scanned, fp
    n = len(buf)
    g = gear_hashes(buf, table)
    g_table = [int(v) for v in np.frombuffer(table, dtype="<u8")]
    hits_s = np.flatnonzero((g & np.uint64(mask_s)) == 0).astype(np.int64)
    hits_l = np.flatnonzero((g & np.uint64(mask_l)) == 0).astype(np.int64)
    avg = min(max(avg_size, min_size), max_size)
    cuts: list[int] = []
    pos = 0
    while True:
        cut = _gear_cut(buf, g_table, hits_s, hits_l, pos, n, min_size, avg, max_size, mask_s, mask_l)
        if cut is None:
            break
        cuts.append(cut)
        pos = cut
    return cuts, n - pos, 0


def _gear_cut(
    buf: bytes | bytearray | memoryview,
    g_table: list[int],
    hits_s: I64,
    hits_l: I64,
    pos: int,
    n: int,
    min_size: int,
    avg: int,
    max_size: int,
    mask_s: int,
    mask_l: int,
) -> int | None:
    """End of the chunk starting at ``pos``, or None when ``buf`` ends before it is decided."""
    data = memoryview(buf)
    # Offsets MIN .. MIN+62: fewer than 64 bytes hashed, so the global g[] does not apply.
    h = 0
    direct_end = min(min_size + GEAR_WINDOW - 1, max_size, n - pos)
    for i in range(min_size, direct_end):
        h = ((h << 1) + g_table[data[pos + i]]) & _M64
        if h & (mask_s if i < avg else mask_l) == 0:
            return pos + i
    start = pos + min_size + GEAR_WINDOW - 1
    for hits, lo, hi in ((hits_s, start, pos + avg), (hits_l, max(start, pos + avg), pos + max_size)):
        k = int(np.searchsorted(hits, lo))
        if k < len(hits) and int(hits[k]) < min(hi, n):
            return int(hits[k])
    if pos + max_size <= n:
        return pos + max_size
    return None
