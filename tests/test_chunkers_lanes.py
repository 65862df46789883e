"""The kernel's side-by-side rolling hashes (``rabin_first`` and ``buz_first`` in ``_cdc.c``) and
its x86 vector paths (rabin's GFNI prefilter, buzhash's AVX-512 scans) find exactly the cuts of
the definition: a hit planted at the first or last end of every lane of a round, at the edges of
the vector steps, in the short last round and in the single-hash tail is the cut; the earliest
of several hits in one round wins whatever lanes they fall in; masks that hit about once per
lane block, search ranges around the size where lanes start, and resumed scans agree with the
numpy reference. Every test runs with the vector paths off and on."""

from __future__ import annotations

import functools
import importlib
import itertools
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pytest

from importer.chunkers import buzhash, cdc, reference
from importer.chunkers.rabin import RabinChunker


@dataclass(frozen=True, slots=True)
class Lanes:
    """One kernel's lane layout (``*_LANES``, ``*_BLOCK``, ``*_LANE_MIN`` in _cdc.c) and cut rule.

    The tests stay valid if the layout changes; they then just aim at other offsets.
    """

    name: str
    window: int
    lanes: int
    block: int
    lane_min: int
    #: Tested lengths: [MIN, MAX] for rabin, [MIN, MAX - 1] for buzhash (MAX always cuts).
    max_tested: Callable[[int], int]

    def scan(self, mod: ModuleType, data: bytes, min_size: int, max_size: int, mask: int,
             scanned: int = 0, state: int = 0) -> tuple[list[int], int, int]:
        result: tuple[list[int], int, int]
        if self.name == "rabin":
            result = mod.rabin_scan(data, scanned, state, min_size, max_size, mask)
        else:
            result = mod.buzhash_scan(data, scanned, state, min_size, max_size, mask, buzhash.table_bytes())
        return result

    def hit_ends(self, data: bytes, mask: int) -> list[int]:
        """Every window end whose hash passes the mask, from the reference's direct formulas."""
        if self.name == "rabin":
            values = reference.rabin_fingerprints(data) & np.uint64(mask)
        else:
            values = reference.buzhash_states(data, buzhash.table_bytes()) & np.uint32(mask)
        return [int(e) + self.window for e in np.flatnonzero(values == 0)]


#: Ends per GFNI prefilter step (one 512-bit vector of bytes).
VECTOR = 64
RABIN = Lanes("rabin", 16, 5, 4096, 256, lambda max_size: max_size)
BUZHASH = Lanes("buzhash", 32, 4, 4096, 512, lambda max_size: max_size - 1)
_KUBO_RABIN = RabinChunker.from_avg(262144)
#: Kubo's parameters (MIN, MAX, mask) for each: rabin 87381/393216/2^18-1, buzhash 128/512 KiB/2^17-1.
KUBO = {
    "rabin": (_KUBO_RABIN.min_size, _KUBO_RABIN.max_size, _KUBO_RABIN.mask),
    "buzhash": (buzhash.MIN_SIZE, buzhash.MAX_SIZE, buzhash.MASK),
}
BOTH = pytest.mark.parametrize("kind", [RABIN, BUZHASH], ids=["rabin", "buzhash"])


@pytest.fixture(scope="module", params=["lanes", "simd"])
def ext(request: pytest.FixtureRequest) -> Iterator[ModuleType]:
    """The kernel with its x86 vector paths (rabin GFNI, buzhash AVX-512) off, or on where the
    CPU has them."""
    try:
        mod = importlib.import_module(cdc.KERNEL_MODULE)
    except ImportError as exc:
        pytest.fail(f"{cdc.KERNEL_MODULE} is not built ({exc}); run `pip install -e .`")
    mod.simd(request.param == "simd")
    yield mod
    mod.simd(True)


def kubo_cuts(kind: Lanes, mod: ModuleType, data: bytes) -> list[int]:
    return kind.scan(mod, data, *KUBO[kind.name])[0]


@functools.cache
def hit_windows(kind: Lanes) -> list[bytes]:
    """Windows whose hash passes Kubo's mask (found in seeded random data)."""
    data = random.Random("hit windows").randbytes(3 << 20)
    ends = kind.hit_ends(data, KUBO[kind.name][2])
    assert len(ends) >= 4
    return [data[e - kind.window : e] for e in ends]


@functools.cache
def filler(kind: Lanes, size: int) -> bytes:
    """Data with no hit for Kubo's mask: a period of one window whose rotations all miss."""
    rng = random.Random("filler")
    while True:
        period = rng.randbytes(kind.window)
        if not kind.hit_ends(period * 3, KUBO[kind.name][2]):
            return (period * (size // kind.window + 1))[:size]


def planted(kind: Lanes, size: int, ends: list[int]) -> bytes:
    """Filler with a hit window ending at each of ``ends``; asserts those are the only hits.

    The filler has none, so only windows overlapping a planted one can hit: those are checked.
    """
    w, mask = kind.window, KUBO[kind.name][2]
    for window in hit_windows(kind):
        data = bytearray(filler(kind, size))
        for end in ends:
            data[end - w : end] = window
        hits = set()
        for end in ends:
            lo = max(end - 2 * w, 0)
            hits |= {lo + e for e in kind.hit_ends(bytes(data[lo : end + w]), mask)}
        if sorted(hits) == sorted(ends):
            return bytes(data)
    raise AssertionError(f"no window plants cleanly at {ends}")


def lane_starts(kind: Lanes) -> list[int]:
    """First tested end of each lane in the full rounds, the short last round and the tail, for
    a chunk starting at 0 with Kubo's parameters."""
    min_size, max_size, _ = KUBO[kind.name]
    last = kind.max_tested(max_size)
    starts = []
    a = min_size
    while last - a + 1 >= kind.lanes * kind.lane_min:
        blk = min(kind.block, (last - a + 1) // kind.lanes)
        starts += [a + j * blk for j in range(kind.lanes)]
        a += kind.lanes * blk
    return [*starts, a]  # a: the single hash's first end (past the last when there is no tail)


def boundary_ends(kind: Lanes) -> list[int]:
    """The first, second and last end of every lane, within the tested lengths, and the edges of
    the vector paths' steps at the start and before their scalar tails."""
    min_size, max_size, _ = KUBO[kind.name]
    last = kind.max_tested(max_size)
    ends = {min_size, last}
    for start, following in itertools.pairwise(lane_starts(kind)):
        ends |= {start, start + 1, following - 1}
    # The vector paths' steps: rabin tests ends a .. a+63 per step; buzhash, after a, blocks of
    # 64 ends (AVX512-VBMI) in steps of 16, then steps of 16 (AVX-512), then one at a time.
    first = min_size if kind is RABIN else min_size + 1
    for step in (VECTOR,) if kind is RABIN else (VECTOR, 16):
        tail = first + (last - first + 1) // step * step
        ends |= {first + step * v + d for v in range(3) for d in (0, 1, step - 1)}
        ends |= {tail - step, tail - 1, tail, tail + 1}
    return sorted(e for e in ends if min_size <= e <= kind.max_tested(max_size))


@BOTH
def test_hit_at_every_lane_boundary_is_the_cut(ext: ModuleType, kind: Lanes) -> None:
    max_size = KUBO[kind.name][1]
    ends = boundary_ends(kind)
    assert len(ends) > 40
    for end in ends:
        data = planted(kind, 2 * max_size + 100_000, [end])
        # The planted window is the only hit: one cut there, then cuts at MAX.
        assert kubo_cuts(kind, ext, data)[:2] == [end, end + max_size], end


@BOTH
def test_earliest_of_several_hits_in_one_round_wins_whatever_the_lanes(ext: ModuleType, kind: Lanes) -> None:
    min_size, max_size, _ = KUBO[kind.name]
    w, block = kind.window, kind.block
    a = min_size + 2 * kind.lanes * block  # the third full round
    lane = [a + j * block for j in range(kind.lanes)]
    cases = [
        [lane[0] + block - 1, lane[1] + w],  # lane 0 late beats lane 1 early
        [lane[1] + block - 90, lane[2] + 5 + w, lane[-1]],  # lane 1 late beats the lanes after it
        [lane[-2] + w + 1, lane[-1] + 1],
        [lane[2] + 9 + w, lane[2] + 100 + w],  # two hits in one lane: the first
        [lane[-1] + block - 1, a + kind.lanes * block + 2 * w],  # across rounds
    ]
    for ends in cases:
        data = planted(kind, max_size + 1000, ends)
        assert kubo_cuts(kind, ext, data)[0] == min(ends), ends


@BOTH
def test_no_hit_cuts_at_max_after_all_rounds(ext: ModuleType, kind: Lanes) -> None:
    max_size = KUBO[kind.name][1]
    data = filler(kind, 3 * max_size + 5)
    assert kubo_cuts(kind, ext, data) == [max_size, 2 * max_size, 3 * max_size]


@BOTH
@pytest.mark.parametrize("mask_bits", [10, 12, 14])
def test_masks_hitting_about_once_per_lane_block_equal_reference(
    ext: ModuleType, kind: Lanes, mask_bits: int
) -> None:
    # MIN at the window and a wide MAX: every chunk searches many rounds; hits land in any lane.
    data = random.Random(mask_bits).randbytes(1_500_000)
    params = (kind.window, 200_000, (1 << mask_bits) - 1)
    expected = kind.scan(reference, data, *params)[0]
    assert len(expected) > 10
    assert kind.scan(ext, data, *params)[0] == expected


@BOTH
@pytest.mark.parametrize("extra", [-1, 0, 1])
@pytest.mark.parametrize("blocks", [0, 1, 2])
def test_search_ranges_around_lane_sizes_equal_reference(
    ext: ModuleType, kind: Lanes, extra: int, blocks: int
) -> None:
    # Tested lengths per chunk just below, at and above where lanes start, one and two rounds.
    width = (kind.lanes * kind.lane_min if blocks == 0 else blocks * kind.lanes * kind.block) + extra
    min_size = 1000
    max_size = min_size + width - 1 if kind is RABIN else min_size + width  # buzhash: MAX untested
    for mask_bits in (8, 11, 20):
        params = (min_size, max_size, (1 << mask_bits) - 1)
        data = random.Random(width + mask_bits).randbytes(300_000)
        assert kind.scan(ext, data, *params)[0] == kind.scan(reference, data, *params)[0], mask_bits


@BOTH
def test_resumed_scans_start_lanes_after_the_tested_lengths(ext: ModuleType, kind: Lanes) -> None:
    # A chunk whose first lengths were already tested (``scanned``) restarts its search in the
    # middle of a round; reads split around lane boundaries give the whole-buffer cuts.
    min_size, max_size, mask = KUBO[kind.name]
    data = planted(kind, max_size + 50_000, [lane_starts(kind)[7] + 3])
    expected = kubo_cuts(kind, ext, data)
    assert expected == kubo_cuts(kind, reference, data)
    splits = [*lane_starts(kind)[:7], min_size - 1, min_size + 1, expected[0] - 1]
    assert max(splits) < expected[0]
    for split in splits:
        cuts, scanned, state = kind.scan(ext, data[:split], min_size, max_size, mask)
        assert cuts == [] and scanned == split
        assert kind.scan(ext, data, min_size, max_size, mask, scanned, state)[0][0] == expected[0], split


def test_rabin_false_candidate_before_true_hit_in_one_vector(ext: ModuleType) -> None:
    # Windows whose low 16 bits pass but bits 16-17 of Kubo's 18-bit mask do not: the GFNI
    # prefilter flags them and the full fingerprint must reject them.
    mask = KUBO["rabin"][2]
    data = random.Random("near misses").randbytes(4 << 20)
    fp = reference.rabin_fingerprints(data)
    near = [int(j) for j in np.flatnonzero(((fp & np.uint64(0xFFFF)) == 0) & ((fp & np.uint64(mask)) != 0))]
    assert near
    fake = data[near[0] : near[0] + RABIN.window]
    true = hit_windows(RABIN)[0]
    min_size, max_size, _ = KUBO["rabin"]
    base = bytearray(filler(RABIN, max_size + 1000))
    for offset in (0, 5, 40):
        data2 = bytearray(base)
        start = min_size + 3 * VECTOR + offset  # the fake window ends at start, the true one later
        data2[start - RABIN.window : start] = fake
        data2[start + 20 - RABIN.window : start + 20] = true
        cut = RABIN.scan(ext, bytes(data2), min_size, max_size, mask)[0][0]
        assert cut == start + 20 == RABIN.scan(reference, bytes(data2), min_size, max_size, mask)[0][0]
