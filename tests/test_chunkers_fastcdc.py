"""FastCDC (normalized chunking): the seeded gear table, parsing, cut points against a literal
port of the paper's Algorithm 2, and the CDC invariants."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from importer.chunkers import CHUNK_SIZE_LIMIT, parse_chunker
from importer.chunkers.fastcdc import GEAR_SHA256, FastCDCChunker, gear_table, parse_fastcdc, splitmix64
from importer.errors import InvalidChunkerSpec

M64 = (1 << 64) - 1


def random_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def text_bytes(n: int) -> bytes:
    line = b"<tr><td>row %d</td><td>value %d</td></tr>\n"
    return b"".join(line % (i, i * 7) for i in range(n // 40 + 1))[:n]


def kubo_random(seed: str, n: int) -> bytes:
    """Kubo test/cli's deterministic stream (random_deterministic.go): ChaCha20 keystream with
    key sha256(seed), zero nonce, counter 0, as ``random-data -seed SEED`` writes it."""
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), None).encryptor().update(bytes(n))


def paper_cuts(data: bytes, chunker: FastCDCChunker) -> list[int]:
    """Xia et al. 2020, Algorithm 2 (FastCDC with normalized chunking), one chunk per call."""
    gear = splitmix64(0, 256)
    mask_s, mask_l = chunker.masks
    cuts: list[int] = []
    pos = 0
    while pos < len(data):
        n = len(data) - pos
        normal = chunker.avg_size
        if n <= chunker.min_size:
            cuts.append(pos + n)
            break
        if n >= chunker.max_size:
            n = chunker.max_size
        elif n <= normal:
            normal = n
        fp, i = 0, chunker.min_size
        cut = None
        while i < normal and cut is None:
            fp = ((fp << 1) + gear[data[pos + i]]) & M64
            if not fp & mask_s:
                cut = i
            i += 1
        while i < n and cut is None:
            fp = ((fp << 1) + gear[data[pos + i]]) & M64
            if not fp & mask_l:
                cut = i
            i += 1
        pos += n if cut is None else cut
        cuts.append(pos)
    return cuts


# ---- gear table and masks ---------------------------------------------------------------


def test_gear_table_is_splitmix64_from_seed_0_and_pinned() -> None:
    assert splitmix64(0, 2) == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4]
    assert hashlib.sha256(gear_table()).hexdigest() == GEAR_SHA256
    assert len(gear_table()) == 256 * 8


def test_fastcdc_masks_are_top_bits_log2_avg_plus_minus_2() -> None:
    mask_s, mask_l = FastCDCChunker(2048, 8192, 65536).masks
    assert mask_s == ((1 << 15) - 1) << 49  # 13 + 2 bits
    assert mask_l == ((1 << 11) - 1) << 53  # 13 - 2 bits


# ---- parsing ----------------------------------------------------------------------------


def test_parse_fastcdc_min_avg_max_with_and_without_labels() -> None:
    assert parse_chunker("fastcdc-2048-8192-65536") == FastCDCChunker(2048, 8192, 65536)
    assert parse_chunker("fastcdc-min:64-avg:128-max:256") == FastCDCChunker(64, 128, 256)
    assert parse_fastcdc("fastcdc-2048-8192-65536").spec == "fastcdc-2048-8192-65536"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("fastcdc", "incorrect format (expected 'fastcdc-[min]-[avg]-[max]')"),
        ("fastcdc-8192", "incorrect format (expected 'fastcdc-[min]-[avg]-[max]')"),
        ("fastcdc-63-128-256", "fastcdc min must be at least 64"),
        ("fastcdc-128-128-256", "incorrect format: fastcdc-min must be smaller than fastcdc-avg"),
        ("fastcdc-64-256-256", "incorrect format: fastcdc-avg must be smaller than fastcdc-max"),
        (
            f"fastcdc-64-128-{CHUNK_SIZE_LIMIT + 1}",
            f"chunker parameters may not exceed the maximum chunk size of {CHUNK_SIZE_LIMIT}",
        ),
        ("fastcdc-a-128-256", 'strconv.Atoi: parsing "a": invalid syntax'),
        ("fastcdc-lo:64-128-256", "first label must be min"),
        ("fastcdc-64-mid:128-256", "second label must be avg"),
        ("fastcdc-64-128-hi:256", "final label must be max"),
    ],
)
def test_parse_fastcdc_invalid_spec_raises_one_line_reason(spec: str, reason: str) -> None:
    with pytest.raises(InvalidChunkerSpec) as e:
        parse_chunker(spec)
    assert e.value.spec == spec and e.value.reason == reason


# ---- cut points -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("min_size", "avg", "max_size"), [(64, 128, 256), (100, 300, 1000), (64, 1024, 4096)]
)
@pytest.mark.parametrize("kind", ["random", "zeros", "text"])
@pytest.mark.parametrize("n", [0, 64, 65, 200, 3000, 20000])
def test_fastcdc_cuts_equal_paper_algorithm(
    min_size: int, avg: int, max_size: int, kind: str, n: int
) -> None:
    data = {"random": random_bytes(n + avg, n), "zeros": bytes(n), "text": text_bytes(n)}[kind]
    chunker = FastCDCChunker(min_size, avg, max_size)
    assert chunker.cut_points(data) == paper_cuts(data, chunker)


def test_fastcdc_chunks_concatenate_and_stay_within_min_max() -> None:
    data = random_bytes(31, 4 * 1024 * 1024)
    chunks = list(parse_chunker("fastcdc-2048-8192-65536").chunks(io.BytesIO(data)))
    assert b"".join(chunks) == data
    assert all(2048 <= len(c) <= 65536 for c in chunks[:-1])


def test_fastcdc_normalized_chunking_concentrates_sizes_around_avg() -> None:
    data = random_bytes(32, 4 * 1024 * 1024)
    sizes = [len(c) for c in parse_chunker("fastcdc-2048-8192-65536").chunks(io.BytesIO(data))][:-1]
    near = sum(1 for s in sizes if 4096 <= s <= 16384)
    # Level-2 normalization: most chunks within a factor of two of AVG (an unnormalized gear
    # chunker with one 13-bit mask puts far fewer there).
    assert near / len(sizes) > 0.8


def test_fastcdc_insertion_near_start_changes_only_first_chunks() -> None:
    data = random_bytes(33, 2 * 1024 * 1024)
    edited = data[:500] + b"xyz" + data[500:]
    chunker = parse_fastcdc("fastcdc-2048-8192-65536")
    before = list(chunker.chunks(io.BytesIO(data)))
    after = list(chunker.chunks(io.BytesIO(edited)))
    assert len(before) > 100
    assert before[3:] == after[-(len(before) - 3) :]


def test_fastcdc_cut_points_on_kubo_deterministic_stream_are_pinned() -> None:
    data = kubo_random("dpip-cdc", 3 * 1024 * 1024)
    assert parse_fastcdc("fastcdc-65536-262144-1048576").cut_points(data) == [
        300222, 581229, 863637, 1301504, 1577311, 1943576, 2207601, 2604409, 2904571, 3145728,
    ]  # fmt: skip
