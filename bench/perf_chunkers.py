"""Benchmark: MB/s of the rabin, buzhash and FastCDC chunkers against hashlib sha256 (issue 4's targets).

One process, the same in-memory pseudo-random data for every contender. For each chunker three
figures: ``kernel`` (cut points of the whole buffer, the compiled core alone, one core; for
rabin and buzhash also with the x86 vector path off, i.e. the side-by-side rolling hashes
alone), ``stream`` (``.chunks()`` over an ``io.BytesIO``: 512 KiB reads, scanned in a producer
thread when a CPU is free, the carried-over tail and the ``bytes`` of every chunk, i.e. what an
import pays) and ``stream + sha256`` (the same, each chunk hashed by the consumer as ``add``
does; compare it with the baseline). Baseline: ``hashlib.sha256`` over the same bytes in 256 KiB
pieces. Several rounds, interleaved, best of each (the machine is shared); wall-clock MB/s.

Targets (issue 4): rabin >= 300 MB/s, buzhash >= 1 GB/s, fastcdc >= 1 GB/s.
Usage: ``python -m bench.perf_chunkers [--mib 256] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from importer.chunkers.buzhash import BuzhashChunker, parse_buzhash
from importer.chunkers.cdc import kernel, kernel_is_compiled
from importer.chunkers.fastcdc import FastCDCChunker, parse_fastcdc
from importer.chunkers.rabin import RabinChunker, parse_rabin

MiB = 1024 * 1024
#: sha256 baseline piece size: Kubo's default chunk, 256 KiB.
PIECE = 256 * 1024
CdcChunker = RabinChunker | BuzhashChunker | FastCDCChunker
#: (label, chunker, target MB/s): Kubo's defaults for rabin and buzhash, and a FastCDC of the
#: same average (256 KiB) as Kubo's default chunk size.
CONTENDERS: tuple[tuple[str, CdcChunker, int], ...] = (
    ("rabin", parse_rabin("rabin"), 300),
    ("buzhash", parse_buzhash("buzhash"), 1000),
    ("fastcdc", parse_fastcdc("fastcdc-65536-262144-1048576"), 1000),
)


def make_data(size: int) -> bytes:
    """Seeded pseudo-random bytes (incompressible; CDC never finds long runs to skip)."""
    return np.random.default_rng(20161).integers(0, 256, size, dtype=np.uint8).tobytes()


def hash_all(data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), PIECE):
        hashlib.sha256(view[start : start + PIECE]).digest()


def count_chunks(chunker: CdcChunker, data: bytes) -> int:
    return sum(1 for _ in chunker.chunks(io.BytesIO(data)))


def hash_chunks(chunker: CdcChunker, data: bytes) -> None:
    for chunk in chunker.chunks(io.BytesIO(data)):
        hashlib.sha256(chunk).digest()


def lanes_only(chunker: CdcChunker, data: bytes) -> None:
    """Cut points with the kernel's x86 vector paths (rabin GFNI, buzhash AVX-512) turned off."""
    kernel().simd(False)
    try:
        chunker.cut_points(data)
    finally:
        kernel().simd(True)


def best_seconds(fn: Callable[[], object], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_chunkers", description=__doc__)
    parser.add_argument("--mib", type=int, default=256, help="input size in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per contender, best kept")
    args = parser.parse_args(argv)
    data = make_data(args.mib * MiB)
    mb = len(data) / 1e6
    print(f"input: {args.mib} MiB pseudo-random, in memory; compiled kernel: {kernel_is_compiled()}")
    sha = mb / best_seconds(lambda: hash_all(data), args.rounds)
    print(f"{'sha256 (hashlib, 256 KiB pieces)':44s} {sha:8.0f} MB/s")
    for label, chunker, target in CONTENDERS:
        n_chunks = len(chunker.cut_points(data))
        core = mb / best_seconds(partial(chunker.cut_points, data), args.rounds)
        stream = mb / best_seconds(partial(count_chunks, chunker, data), args.rounds)
        hashed = mb / best_seconds(partial(hash_chunks, chunker, data), args.rounds)
        verdict = "ok" if stream >= target else "BELOW TARGET"
        print(
            f"{label + ' kernel (' + chunker.spec + ')':44s} {core:8.0f} MB/s  {core / sha:5.2f}x sha256"
            f"  ({n_chunks} chunks, mean {len(data) // max(n_chunks, 1)} B)"
        )
        if label in ("rabin", "buzhash") and kernel().simd(True):
            lanes = mb / best_seconds(partial(lanes_only, chunker, data), args.rounds)
            label_off = f"{label} kernel, vector path off (rolling lanes)"
            print(f"{label_off:44s} {lanes:8.0f} MB/s  {lanes / sha:5.2f}x sha256")
        print(
            f"{label + ' stream (.chunks over BytesIO)':44s} {stream:8.0f} MB/s  {stream / sha:5.2f}x sha256"
            f"  target >= {target} MB/s: {verdict}"
        )
        label_hashed = label + " stream + sha256 of every chunk"
        print(f"{label_hashed:44s} {hashed:8.0f} MB/s  {hashed / sha:5.2f}x sha256")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
