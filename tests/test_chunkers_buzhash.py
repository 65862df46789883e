"""Kubo's buzhash chunker: the shipped table, parsing, cut points against a literal port of boxo
``Buzhash.NextBytes`` (including its behaviour at end of input) and the CDC invariants."""

from __future__ import annotations

import hashlib
import io
import random

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from importer.chunkers import parse_chunker
from importer.chunkers.buzhash import (
    MASK,
    MAX_SIZE,
    MIN_SIZE,
    TABLE_SHA256,
    BuzhashChunker,
    table_bytes,
    table_words,
)
from importer.chunkers.cdc import cut_points, kernel
from importer.dag.cid import RAW, cid_of_block, format_cid
from importer.errors import InvalidChunkerSpec


def random_bytes(seed: int, n: int) -> bytes:
    return random.Random(seed).randbytes(n)


def text_bytes(n: int) -> bytes:
    line = b"def function_%d(argument):\n    return argument * %d\n\n"
    return b"".join(line % (i, i) for i in range(n // 40 + 1))[:n]


def kubo_random(seed: str, n: int) -> bytes:
    """Kubo test/cli's deterministic stream (random_deterministic.go): ChaCha20 keystream with
    key sha256(seed), zero nonce, counter 0, as ``random-data -seed SEED`` writes it."""
    key = hashlib.sha256(seed.encode()).digest()
    return Cipher(algorithms.ChaCha20(key, bytes(16)), None).encryptor().update(bytes(n))


def rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF if r % 32 else x


def go_buzhash_next_bytes(
    data: bytes, min_size: int, max_size: int, mask: int, *, before_fix: bool = False
) -> list[bytes]:
    """boxo ``Buzhash.NextBytes`` transliterated, ``io.ReadFull`` buffering included; returns
    every chunk Go returns before ``io.EOF``. ``before_fix``: the code before go-ipfs-chunker#22,
    which returned an empty chunk when the buffer was empty at EOF."""
    table = table_words()
    reader = io.BytesIO(data)
    buf = bytearray(max_size)
    n_buffered = 0
    done = False
    chunks: list[bytes] = []
    while not done:
        got = reader.readinto(memoryview(buf)[n_buffered:])  # io.ReadFull on a bytes.Reader
        eof = n_buffered + got < max_size
        if eof and n_buffered + got < min_size:
            if n_buffered + got == 0 and not before_fix:
                break  # since the fix: nil, io.EOF
            chunks.append(bytes(buf[: n_buffered + got]))
            done = True  # b.err = io.EOF: the next call returns it
            continue
        state = 0
        for i in range(min_size - 32, min_size):
            state = rotl32(state, 1) ^ table[buf[i]]
        last = n_buffered + got - 32 - 1
        i = min_size - 32
        while i <= last:
            if state & mask == 0:
                break
            state = rotl32(state, 1) ^ table[buf[i]] ^ table[buf[i + 32]]
            i += 1
        i += 32
        chunks.append(bytes(buf[:i]))
        rest = buf[i : n_buffered + got]
        buf[: len(rest)] = rest
        n_buffered = len(rest)
    return chunks


def small_buzhash_cuts(data: bytes, min_size: int, max_size: int, mask: int) -> list[int]:
    """Our kernel with non-Kubo sizes, to exercise the same code on small inputs."""

    def bound(buf: bytes | bytearray | memoryview, scanned: int, state: int) -> tuple[list[int], int, int]:
        return kernel().buzhash_scan(buf, scanned, state, min_size, max_size, mask, table_bytes())

    return cut_points(bound, data)


def ends(chunks: list[bytes]) -> list[int]:
    out, total = [], 0
    for c in chunks:
        total += len(c)
        out.append(total)
    return out


# ---- the table --------------------------------------------------------------------------


def test_buzhash_table_is_boxo_bytehash() -> None:
    words = table_words()
    assert hashlib.sha256(table_bytes()).hexdigest() == TABLE_SHA256
    assert (words[0], words[1], words[-1]) == (0x6236E7D5, 0x10279B0B, 0x5C41857D)


def test_buzhash_table_has_128_ones_in_every_bit_position() -> None:
    # boxo TestBuzhashBitsHashBias
    assert all(sum((w >> bit) & 1 for w in table_words()) == 128 for bit in range(32))


# ---- parsing ----------------------------------------------------------------------------


def test_parse_buzhash_returns_kubo_buzhash() -> None:
    chunker = parse_chunker("buzhash")
    assert chunker == BuzhashChunker() and chunker.spec == "buzhash"


@pytest.mark.parametrize("spec", ["buzhash-1024", "buzhash-"])
def test_parse_buzhash_with_parameters_is_unrecognized_like_kubo(spec: str) -> None:
    with pytest.raises(InvalidChunkerSpec) as e:
        parse_chunker(spec)
    assert e.value.reason == f"unrecognized chunker option: {spec}"


# ---- cut points -------------------------------------------------------------------------


@pytest.mark.parametrize(("min_size", "max_size", "mask"), [(32, 64, 0x7), (64, 256, 0x3F), (100, 400, 0xFF)])
@pytest.mark.parametrize("kind", ["random", "zeros", "text"])
@pytest.mark.parametrize("n", [0, 31, 64, 65, 1000, 5000])
def test_buzhash_small_sizes_equal_go_transliteration(
    min_size: int, max_size: int, mask: int, kind: str, n: int
) -> None:
    data = {"random": random_bytes(n + mask, n), "zeros": bytes(n), "text": text_bytes(n)}[kind]
    go = [c for c in go_buzhash_next_bytes(data, min_size, max_size, mask) if c]
    assert small_buzhash_cuts(data, min_size, max_size, mask) == ends(go)


@pytest.mark.parametrize("kind", ["random", "text"])
def test_buzhash_kubo_sizes_equal_go_transliteration(kind: str) -> None:
    n = 1024 * 1024 + 200 * 1024
    data = random_bytes(5, n) if kind == "random" else text_bytes(n)
    go = [c for c in go_buzhash_next_bytes(data, MIN_SIZE, MAX_SIZE, MASK) if c]
    ours = list(BuzhashChunker().chunks(io.BytesIO(data)))
    assert ours == go


@pytest.mark.parametrize("n", [0, 100, 3000, 5000, 7919])
def test_buzhash_never_yields_empty_chunks_unlike_go_before_2020(n: int) -> None:
    data = random_bytes(n, n)
    fixed = go_buzhash_next_bytes(data, 64, 256, 0x3F)
    old = go_buzhash_next_bytes(data, 64, 256, 0x3F, before_fix=True)
    assert all(fixed) and ends(fixed) == small_buzhash_cuts(data, 64, 256, 0x3F)
    # The old code appended b"" after a last chunk that came out of a cut search.
    if not fixed or len(fixed[-1]) >= 64:
        assert old == [*fixed, b""]
    else:
        assert old == fixed


def test_buzhash_kubo_issue_6953_file_is_one_chunk() -> None:
    # ipfs/kubo#6953 (go-ipfs 0.5.0-dev, before the fix): `yes "foo" | head -n 40000` with
    # --chunker=buzhash --raw-leaves linked a 160000-byte leaf
    # bafkreigqq7maj23te3dkn4j76n7haab7lgmdz5fztubrdgsv44k4vyipsa, then an empty one. So Go
    # found no cut in this file; since the fix it is that single leaf.
    data = b"foo\n" * 40000
    chunks = list(BuzhashChunker().chunks(io.BytesIO(data)))
    assert chunks == [data]
    cid = format_cid(cid_of_block(1, RAW, chunks[0]))
    assert cid == "bafkreigqq7maj23te3dkn4j76n7haab7lgmdz5fztubrdgsv44k4vyipsa"
    assert go_buzhash_next_bytes(data, MIN_SIZE, MAX_SIZE, MASK, before_fix=True) == [data, b""]


def test_buzhash_hello_worlds_is_one_chunk() -> None:
    data = b"Hello Worlds!\n"
    assert list(parse_chunker("buzhash").chunks(io.BytesIO(data))) == [data]


def test_buzhash_input_shorter_than_min_is_one_chunk() -> None:
    data = random_bytes(1, MIN_SIZE - 1)
    assert BuzhashChunker().cut_points(data) == [MIN_SIZE - 1]


def test_buzhash_chunks_concatenate_and_stay_within_min_max() -> None:
    data = random_bytes(21, 6 * 1024 * 1024)
    chunks = list(BuzhashChunker().chunks(io.BytesIO(data)))
    assert b"".join(chunks) == data
    assert all(MIN_SIZE <= len(c) <= MAX_SIZE for c in chunks[:-1])
    assert 1 <= len(chunks[-1]) <= MAX_SIZE


def test_buzhash_zeros_cut_at_min() -> None:
    # The state of 32 equal bytes XORs all 32 rotations of one table word: 0 when the word has an
    # even number of one bits, as T[0] does, so zeros cut at every MIN.
    assert table_words()[0].bit_count() % 2 == 0
    data = bytes(2 * MAX_SIZE + 10)
    assert BuzhashChunker().cut_points(data) == [*range(MIN_SIZE, len(data), MIN_SIZE), len(data)]
    go = go_buzhash_next_bytes(data, MIN_SIZE, MAX_SIZE, MASK)
    assert ends([c for c in go if c]) == BuzhashChunker().cut_points(data)


def test_buzhash_insertion_near_start_changes_only_first_chunks() -> None:
    data = random_bytes(22, 8 * 1024 * 1024)
    edited = data[:1000] + b"a few new bytes" + data[1000:]
    before = list(BuzhashChunker().chunks(io.BytesIO(data)))
    after = list(BuzhashChunker().chunks(io.BytesIO(edited)))
    assert len(before) > 20
    assert before[2:] == after[-(len(before) - 2) :]


def test_buzhash_cut_points_on_kubo_deterministic_stream_are_pinned() -> None:
    # Regression pin (our output; Kubo can be compared with `random-data -seed dpip-cdc`).
    data = kubo_random("dpip-cdc", 3 * 1024 * 1024)
    assert BuzhashChunker().cut_points(data) == [
        174854, 381816, 620952, 776749, 1156754, 1327096, 1768045,
        1971409, 2239198, 2478924, 2662362, 2936761, 3080303, 3145728,
    ]  # fmt: skip
