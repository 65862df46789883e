"""The rabin kernel's side-by-side hashes (``rabin_first`` in ``_cdc.c``) find exactly the cuts of
the definition: a hit planted at the first or last end of every lane of a round, in the short last
round and in the single-hash tail is the cut; the earliest of several hits in one round wins
whatever lanes they fall in; masks that hit about once per lane block, ranges around the size
where lanes start, and reads split anywhere agree with the numpy reference."""

from __future__ import annotations

import functools
import importlib
import itertools
import random
from types import ModuleType

import numpy as np
import pytest

from importer.chunkers import cdc, reference
from importer.chunkers.rabin import RabinChunker

#: The kernel's lane layout (``RABIN_LANES``, ``RABIN_BLOCK``, ``RABIN_LANE_MIN`` in _cdc.c). The
#: tests stay valid if those change; they then just aim at other offsets.
LANES = 5
BLOCK = 4096
LANE_MIN = 256
WINDOW = 16
#: Kubo's ``rabin``: MIN = 262144 / 3, MAX = 262144 * 3 / 2, mask 2^18 - 1.
KUBO = RabinChunker.from_avg(262144)


@pytest.fixture(scope="module")
def ext() -> ModuleType:
    try:
        return importlib.import_module(cdc.KERNEL_MODULE)
    except ImportError as exc:
        pytest.fail(f"{cdc.KERNEL_MODULE} is not built ({exc}); run `pip install -e .`")


def scan(mod: ModuleType, chunker: RabinChunker, data: bytes, scanned: int = 0, digest: int = 0) -> list[int]:
    cuts: list[int] = mod.rabin_scan(data, scanned, digest, chunker.min_size, chunker.max_size, chunker.mask)[0]
    return cuts


def hit_ends(data: bytes, mask: int) -> list[int]:
    """Every window end whose fingerprint passes the mask, from the reference's direct formula."""
    fp = reference.rabin_fingerprints(data)
    return [int(e) + WINDOW for e in np.flatnonzero((fp & np.uint64(mask)) == 0)]


@functools.cache
def kubo_windows() -> list[bytes]:
    """16-byte windows whose fingerprint passes Kubo's mask (found in seeded random data)."""
    data = random.Random("hit windows").randbytes(3 << 20)
    windows = [data[e - WINDOW : e] for e in hit_ends(data, KUBO.mask)]
    assert len(windows) >= 4
    return windows


@functools.cache
def filler(size: int) -> bytes:
    """Data with no hit for Kubo's mask: a 16-byte period whose 16 rotations all miss."""
    rng = random.Random("filler")
    while True:
        period = rng.randbytes(WINDOW)
        if not hit_ends(period * 3, KUBO.mask):
            return (period * (size // WINDOW + 1))[:size]


def planted(size: int, ends: list[int]) -> bytes:
    """Filler with a hit window ending at each of ``ends``; asserts those are the only hits."""
    for window in kubo_windows():
        data = bytearray(filler(size))
        for end in ends:
            data[end - WINDOW : end] = window
        if hit_ends(bytes(data), KUBO.mask) == sorted(ends):
            return bytes(data)
    raise AssertionError(f"no window plants cleanly at {ends}")


def lane_starts() -> list[int]:
    """First tested end of each lane, in the full rounds, the short last round and the tail, for a
    chunk starting at 0 (tested lengths MIN .. MAX)."""
    first, last = KUBO.min_size, KUBO.max_size
    starts = []
    a = first
    while last - a + 1 >= LANES * LANE_MIN:
        blk = min(BLOCK, (last - a + 1) // LANES)
        starts += [a + j * blk for j in range(LANES)]
        a += LANES * blk
    return [*starts, a]  # a: the single hash's first end (or MAX + 1 when there is no tail)


def boundary_ends() -> list[int]:
    """The first and last end of every lane, clipped to the tested lengths [MIN, MAX]."""
    starts = lane_starts()
    ends = {KUBO.min_size, KUBO.max_size - 1}
    for start, following in itertools.pairwise(starts):
        ends |= {start, start + 1, following - 1}
    return sorted(e for e in ends if KUBO.min_size <= e < KUBO.max_size)


def test_hit_at_every_lane_boundary_is_the_cut(ext: ModuleType) -> None:
    size = 2 * KUBO.max_size + 100_000
    ends = boundary_ends()
    assert len(ends) > 40
    for end in ends:
        data = planted(size, [end])
        # The planted window is the only hit: one cut there, then cuts at MAX.
        assert scan(ext, KUBO, data)[:2] == [end, end + KUBO.max_size], end


def test_earliest_of_several_hits_in_one_round_wins_whatever_the_lanes(ext: ModuleType) -> None:
    a = KUBO.min_size + 2 * LANES * BLOCK  # the third full round
    lane = [a + j * BLOCK for j in range(LANES)]
    cases = [
        [lane[0] + BLOCK - 1, lane[1] + 16],  # lane 0 late beats lane 1 early
        [lane[1] + 4000, lane[2] + 5, lane[4]],  # lane 1 late beats the lanes after it
        [lane[3] + 17, lane[4] + 1],
        [lane[2] + 9, lane[2] + 100],  # two hits in one lane: the first
        [lane[4] + BLOCK - 1, a + LANES * BLOCK + 20],  # across rounds
    ]
    for ends in cases:
        data = planted(KUBO.max_size + 1000, ends)
        assert scan(ext, KUBO, data)[0] == min(ends), ends


def test_no_hit_cuts_at_max_after_all_rounds(ext: ModuleType) -> None:
    data = filler(3 * KUBO.max_size + 5)
    assert scan(ext, KUBO, data) == [KUBO.max_size, 2 * KUBO.max_size, 3 * KUBO.max_size]


@pytest.mark.parametrize("mask_bits", [10, 12, 14])
def test_masks_hitting_about_once_per_lane_block_equal_reference(ext: ModuleType, mask_bits: int) -> None:
    # MIN 16 and a wide MAX: every chunk searches many rounds, and a hit lands in any lane.
    chunker = RabinChunker(16, 1 << mask_bits, 200_000)
    assert chunker.mask == (1 << mask_bits) - 1
    data = random.Random(mask_bits).randbytes(1_500_000)
    expected = scan(reference, chunker, data)
    assert len(expected) > 10
    assert scan(ext, chunker, data) == expected


@pytest.mark.parametrize("width", [LANES * LANE_MIN - 1, LANES * LANE_MIN, LANES * LANE_MIN + 1,
                                   LANES * BLOCK - 1, LANES * BLOCK + 1, 2 * LANES * BLOCK + 7])
def test_search_ranges_around_lane_sizes_equal_reference(ext: ModuleType, width: int) -> None:
    # MAX - MIN + 1 lengths are tested per chunk: just below, at and above where lanes start.
    min_size = 1000
    for avg_bits in (8, 11, 20):
        chunker = RabinChunker(min_size, 1 << avg_bits, min_size + width - 1)
        data = random.Random(width + avg_bits).randbytes(300_000)
        assert scan(ext, chunker, data) == scan(reference, chunker, data), avg_bits


def test_resumed_scans_start_lanes_after_the_tested_lengths(ext: ModuleType) -> None:
    # A chunk whose first lengths were already tested (``scanned``) restarts its search in the
    # middle of a round; reads split around lane boundaries give the whole-buffer cuts.
    data = planted(KUBO.max_size + 50_000, [lane_starts()[7] + 3])
    expected = scan(ext, KUBO, data)
    assert expected == scan(reference, KUBO, data)
    splits = [*lane_starts()[:7], KUBO.min_size - 1, KUBO.min_size + 1, expected[0] - 1]
    assert max(splits) < expected[0]
    for split in splits:
        cuts, scanned, digest = ext.rabin_scan(data[:split], 0, 0, KUBO.min_size, KUBO.max_size, KUBO.mask)
        assert cuts == [] and scanned == split
        assert scan(ext, KUBO, data, scanned, digest)[0] == expected[0], split
