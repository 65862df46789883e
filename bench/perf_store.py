"""Benchmark: embedded store write (and verified read) throughput against a plain file.

Writes ``--size-mib`` (default 1024) of distinct 256 KiB blocks into a fresh :class:`BlockStore`
(put, then close: the batches are committed and the WAL checkpointed and synced), and the same
bytes into a plain file (write, fsync, close). Then reads everything back: ``get`` of each block
(which re-hashes it against its CID) against a plain sequential read. CIDs are computed before
the clock starts, so the write figures are the store's cost alone. Rounds alternate between the
two and the best of each is printed, because the machine is shared and noisy.

    python -m bench.perf_store [--size-mib 1024] [--rounds 2] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from importer.dag.cid import RAW, cid_of_block
from importer.sinks.store import BlockStore

MiB = 1024 * 1024
#: Kubo's default leaf: 256 KiB.
BLOCK = 256 * 1024


def iter_blocks(count: int) -> Iterator[bytes]:
    """``count`` distinct incompressible blocks: a fixed random body behind an 8-byte counter."""
    body = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BLOCK // 32))[8:]
    for i in range(count):
        yield i.to_bytes(8, "big") + body


def time_store_write(path: Path, cids: list[bytes]) -> float:
    start = time.perf_counter()
    with BlockStore(path) as store:
        for cid, block in zip(cids, iter_blocks(len(cids))):
            store.put(cid, block)
    return time.perf_counter() - start


def time_file_write(path: Path, count: int) -> float:
    start = time.perf_counter()
    with open(path, "wb") as f:
        f.writelines(iter_blocks(count))
        f.flush()
        os.fsync(f.fileno())
    return time.perf_counter() - start


def time_store_read(path: Path, cids: list[bytes]) -> float:
    start = time.perf_counter()
    with BlockStore(path, create=False) as store:
        for cid in cids:
            store.get(cid)
    return time.perf_counter() - start


def time_file_read(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.read(BLOCK):
            pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dir", help="scratch directory (default: a temporary one under /tmp)")
    args = parser.parse_args()
    count = args.size_mib * MiB // BLOCK
    total_mb = count * BLOCK / 1e6
    cids = [cid_of_block(1, RAW, block) for block in iter_blocks(count)]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for _ in range(args.rounds):
            store_dir, plain = Path(scratch) / "store", Path(scratch) / "plain.bin"
            results = {
                "store write": time_store_write(store_dir, cids),
                "file write + fsync": time_file_write(plain, count),
                "store read (verified)": time_store_read(store_dir, cids),
                "file read": time_file_read(plain),
            }
            disk = sum(p.stat().st_size for p in store_dir.iterdir())
            for name, seconds in results.items():
                best[name] = min(best.get(name, seconds), seconds)
            shutil.rmtree(store_dir)
            plain.unlink()
    print(f"{count} blocks of {BLOCK // 1024} KiB = {total_mb:.0f} MB, best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:<22} {total_mb / seconds:8.1f} MB/s  ({seconds:.2f} s)")
    print(f"  store write / file write: {best['file write + fsync'] / best['store write']:.2f}")
    print(f"  store size on disk after close: {disk / 1e6:.0f} MB ({disk / (count * BLOCK):.3f}x the data)")


if __name__ == "__main__":
    main()
