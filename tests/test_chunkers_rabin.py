"""Kubo's rabin chunker: spec parsing and messages (boxo parse.go), cut points against a literal
port of whyrusleeping/chunker's ``Next``, the spec's edge cases and the CDC invariants."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from importer.chunkers import CHUNK_SIZE_LIMIT, parse_chunker
from importer.chunkers.rabin import RabinChunker, go_log2_floor, parse_rabin
from importer.chunkers.reference import RABIN_POL, pol_mod, rabin_fingerprints
from importer.errors import InvalidChunkerSpec

U64 = (1 << 64) - 1


def random_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def text_bytes(n: int) -> bytes:
    line = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit %d.\n"
    return b"".join(line % i for i in range(n // 40 + 1))[:n]


def kubo_random(seed: str, n: int) -> bytes:
    """Kubo test/cli's deterministic stream (random_deterministic.go): ChaCha20 keystream with
    key sha256(seed), zero nonce, counter 0, as ``random-data -seed SEED`` writes it."""
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), None).encryptor().update(bytes(n))


class GoRabin:
    """whyrusleeping/chunker's rolling state, transliterated: ``reset``, ``slide``, ``append``."""

    def __init__(self, min_size: int) -> None:
        def append(h: int, b: int) -> int:
            return pol_mod((h << 8) | b, RABIN_POL)

        self.out = []
        for b in range(256):
            h = append(0, b)
            for _ in range(15):
                h = append(h, 0)
            self.out.append(h)
        self.mod = [pol_mod(b << 53, RABIN_POL) | (b << 53) for b in range(256)]
        self.min_size = min_size
        self.reset()

    def reset(self) -> None:
        self.window = [0] * 16
        self.wpos = 0
        self.digest = 0
        self.slide(1)
        self.pre = (self.min_size - 16) & U64  # Go: uint arithmetic, so MIN < 16 wraps

    def slide(self, b: int) -> None:
        leaving = self.window[self.wpos]
        self.window[self.wpos] = b
        self.digest ^= self.out[leaving]
        self.wpos = (self.wpos + 1) % 16
        index = self.digest >> 45
        self.digest = ((self.digest << 8) | b) ^ self.mod[index]


def go_rabin_cuts(data: bytes, min_size: int, max_size: int, mask: int) -> list[int]:
    """``Chunker.Next`` byte for byte (skip ``pre`` bytes, then slide and test), independent of
    the kernel's shortcuts (fresh zero window, no injected byte)."""
    state = GoRabin(min_size)
    cuts: list[int] = []
    i, n = 0, len(data)
    while i < n:
        state.reset()
        count = min(state.pre, n - i)
        i += count
        while i < n:
            state.slide(data[i])
            i += 1
            count += 1
            if count < min_size:
                continue
            if state.digest & mask == 0 or count >= max_size:
                break
        cuts.append(i)
    return cuts


# ---- parsing: forms Kubo accepts --------------------------------------------------------


def test_parse_rabin_default_is_avg_256k_min_third_max_one_and_a_half() -> None:
    chunker = parse_chunker("rabin")
    assert chunker == RabinChunker(87381, 262144, 393216)
    assert chunker.spec == "rabin-87381-262144-393216"
    assert isinstance(chunker, RabinChunker) and chunker.mask == 0x3FFFF


def test_parse_rabin_avg_derives_min_and_max_by_integer_division() -> None:
    assert parse_chunker("rabin-1024") == RabinChunker(341, 1024, 1536)
    assert parse_rabin("rabin-1024").mask == 0x3FF
    assert parse_rabin("rabin-1000").mask == 0x1FF  # floor(log2(1000)) = 9


def test_parse_rabin_min_avg_max_with_and_without_labels() -> None:
    assert parse_chunker("rabin-18-25-32") == RabinChunker(18, 25, 32)
    assert parse_chunker("rabin-min:16-avg:32-max:64") == RabinChunker(16, 32, 64)
    assert parse_chunker("rabin-16-avg:32-64") == RabinChunker(16, 32, 64)


def test_parse_rabin_limits_accept_the_boundary_values_of_boxo_tests() -> None:
    assert parse_chunker(f"rabin-19-21-{CHUNK_SIZE_LIMIT}") == RabinChunker(19, 21, CHUNK_SIZE_LIMIT)
    # boxo parse_test.go: rabin-%.0f of 2/3 of the limit (float32) is accepted.
    two_thirds = round(2 * (CHUNK_SIZE_LIMIT / 3))
    assert parse_rabin(f"rabin-{two_thirds}").avg_size == two_thirds


def test_parse_rabin_prefix_without_dash_is_default_rabin_as_in_go() -> None:
    # Go routes strings.HasPrefix(chunker, "rabin") and splits on "-": one part = default.
    assert parse_chunker("rabinfoo") == RabinChunker(87381, 262144, 393216)


def test_parse_rabin_small_avg_is_accepted_and_never_cuts() -> None:
    chunker = parse_rabin("rabin-30")
    assert chunker == RabinChunker(10, 30, 45)
    assert chunker.never_cuts and chunker.spec == "rabin-30"
    data = random_bytes(1, 5000)
    assert list(chunker.chunks(io.BytesIO(data))) == [data]
    assert chunker.cut_points(data) == [5000]


def test_parse_rabin_zero_avg_is_accepted_and_never_cuts() -> None:
    chunker = parse_rabin("rabin-0")
    assert chunker == RabinChunker(0, 0, 0) and chunker.never_cuts
    assert list(chunker.chunks(io.BytesIO(b"abc"))) == [b"abc"]
    assert list(chunker.chunks(io.BytesIO(b""))) == []


def test_parse_rabin_huge_avg_overflows_go_float_check_and_is_accepted() -> None:
    # int(float32(2^63-1) * 1.5) is out of int64 range: amd64 yields MinInt64, which passes the
    # "> ChunkSizeLimit" check; MIN is then ~3e18 bytes, so nothing is ever cut.
    chunker = parse_rabin("rabin-9223372036854775807")
    assert chunker.avg_size == 2**63 - 1 and chunker.never_cuts
    assert chunker.spec == "rabin-9223372036854775807"


# ---- parsing: Kubo's error messages -----------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ("rabin-15-23-31", "rabin min must be greater than 16"),
        ("rabin-20-20-21", "incorrect format: rabin-min must be smaller than rabin-avg"),
        ("rabin-19-21-21", "incorrect format: rabin-avg must be smaller than rabin-max"),
        (
            f"rabin-19-21-{CHUNK_SIZE_LIMIT + 1}",
            f"chunker parameters may not exceed the maximum chunk size of {CHUNK_SIZE_LIMIT}",
        ),
        (
            f"rabin-{round(2 * (CHUNK_SIZE_LIMIT / 3)) + 1}",
            f"chunker parameters may not exceed the maximum chunk size of {CHUNK_SIZE_LIMIT}",
        ),
        ("rabin-1-2", "incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'"),
        ("rabin-1-2-3-4", "incorrect format (expected 'rabin' 'rabin-[avg]' or 'rabin-[min]-[avg]-[max]'"),
        ("rabin-", 'strconv.Atoi: parsing "": invalid syntax'),
        ("rabin-12k", 'strconv.Atoi: parsing "12k": invalid syntax'),
        ("rabin-99999999999999999999", 'strconv.Atoi: parsing "99999999999999999999": value out of range'),
        ("rabin-x-32-64", 'strconv.Atoi: parsing "x": invalid syntax'),
        ("rabin-lo:16-32-64", "first label must be min"),
        ("rabin-16-mid:32-64", "second label must be avg"),
        ("rabin-16-32-hi:64", "final label must be max"),
        ("rabin-16-32-max:x", 'strconv.Atoi: parsing "x": invalid syntax'),
    ],
)
def test_parse_rabin_invalid_spec_raises_kubo_message(spec: str, reason: str) -> None:
    with pytest.raises(InvalidChunkerSpec) as e:
        parse_chunker(spec)
    assert e.value.spec == spec
    assert e.value.reason == reason


def test_parse_rabin_checks_min_before_parsing_avg_like_go() -> None:
    with pytest.raises(InvalidChunkerSpec) as e:
        parse_chunker("rabin-8-x-y")
    assert e.value.reason == "rabin min must be greater than 16"


def test_go_log2_floor_matches_integer_log2_up_to_the_chunk_limit() -> None:
    for avg in [1, 2, 3, 47, 48, 1000, 1023, 1024, 1025, 262143, 262144, 1397930]:
        assert go_log2_floor(avg) == avg.bit_length() - 1


# ---- cut points -------------------------------------------------------------------------


def test_rabin_fingerprint_is_the_window_polynomial_mod_p() -> None:
    data = random_bytes(7, 64)
    fps = rabin_fingerprints(data)
    for j in range(len(data) - 15):
        assert int(fps[j]) == pol_mod(int.from_bytes(data[j : j + 16], "big"), RABIN_POL)


@pytest.mark.parametrize(
    ("min_size", "avg", "max_size"), [(16, 32, 64), (17, 64, 100), (48, 256, 1024), (20, 40, 60)]
)
@pytest.mark.parametrize("kind", ["random", "zeros", "text"])
def test_rabin_cuts_equal_go_transliteration(min_size: int, avg: int, max_size: int, kind: str) -> None:
    n = 6000
    data = {"random": random_bytes(avg, n), "zeros": bytes(n), "text": text_bytes(n)}[kind]
    chunker = RabinChunker(min_size, avg, max_size)
    assert chunker.cut_points(data) == go_rabin_cuts(data, min_size, max_size, chunker.mask)


def test_rabin_avg_below_48_matches_go_single_chunk() -> None:
    data = random_bytes(3, 3000)
    chunker = RabinChunker.from_avg(40)  # MIN = 13 < 16: Go's pre underflows
    assert chunker.cut_points(data) == go_rabin_cuts(data, 13, 60, chunker.mask) == [3000]


def test_rabin_hello_worlds_is_one_chunk() -> None:
    data = b"Hello Worlds!\n"
    assert list(parse_chunker("rabin").chunks(io.BytesIO(data))) == [data]


def test_rabin_chunks_concatenate_and_stay_within_min_max() -> None:
    data = random_bytes(11, 3 * 1024 * 1024)
    chunker = parse_rabin("rabin-4096")  # 1365 .. 6144
    chunks = list(chunker.chunks(io.BytesIO(data)))
    assert b"".join(chunks) == data
    assert all(1365 <= len(c) <= 6144 for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= 6144


def test_rabin_default_chunks_stay_within_min_max_on_large_input() -> None:
    data = random_bytes(12, 4 * 1024 * 1024)
    chunks = list(parse_chunker("rabin").chunks(io.BytesIO(data)))
    assert b"".join(chunks) == data
    assert all(87381 <= len(c) <= 393216 for c in chunks[:-1])


def test_rabin_insertion_near_start_changes_only_first_chunks() -> None:
    data = random_bytes(13, 1024 * 1024)
    edited = data[:100] + b"inserted!" + data[100:]
    chunker = parse_rabin("rabin-4096")
    before = list(chunker.chunks(io.BytesIO(data)))
    after = list(chunker.chunks(io.BytesIO(edited)))
    assert len(before) > 100
    assert before[3:] == after[-(len(before) - 3) :]


def test_rabin_zeros_cut_at_min() -> None:
    # The fingerprint of 16 zero bytes is 0, so every chunk of zeros ends at MIN.
    data = bytes(10000)
    assert RabinChunker(16, 32, 64).cut_points(data)[:3] == [16, 32, 48]


def test_rabin_cut_points_on_kubo_deterministic_stream_are_pinned() -> None:
    # Regression pin (our output; Kubo can be compared with `random-data -seed dpip-cdc`).
    data = kubo_random("dpip-cdc", 3 * 1024 * 1024)
    assert parse_rabin("rabin").cut_points(data) == [
        393216, 552504, 671781, 786757, 896820, 1017716, 1206730,
        1567761, 1876987, 2270203, 2663419, 2856882, 3145728,
    ]  # fmt: skip
    small = parse_rabin("rabin-4096").cut_points(data)
    assert len(small) == 763 and small[:5] == [4592, 10406, 12404, 18136, 19620]
