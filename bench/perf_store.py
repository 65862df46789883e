"""Benchmark: embedded store write (and verified read) throughput against a plain file.

Writes ``--size-mib`` (default 1024) of distinct 256 KiB blocks into a fresh :class:`BlockStore`
(put, then close: the batches are committed and the WAL checkpointed and synced), and the same
bytes into a plain file (write, fsync, close). Then reads everything back: ``get`` of each block
(which re-hashes it against its CID) against a plain sequential read. CIDs are computed before
the clock starts, so the write figures are the store's cost alone. Rounds alternate between the
two and the best of each is printed, because the machine is shared and noisy. The store is
written twice, with compression at rest off and on: incompressible leaves show what trying zstd
on every block costs when it never pays.

``--wheels W.whl ...`` adds the at-rest figures on a realistic block mix: the wheels are imported
into memory (timed: the import's own throughput, for scale), then their blocks are written into
fresh stores with compression off and on (write MB/s, bytes at rest, ratio, file size), and
compressed at zstd levels 1-19 and with and without a dictionary for the small blocks (the
figures behind :mod:`importer.sinks.atrest`'s choices).

    python -m bench.perf_store [--size-mib 1024] [--rounds 2] [--dir DIR] [--wheels W.whl ...]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import zstandard

from importer.archive.importer import import_archive
from importer.dag.cid import RAW, cid_of_block
from importer.profiles import resolve_settings
from importer.sinks.atrest import DICT_SIZE, SMALL_BLOCK, BlockCodec
from importer.sinks.base import MemorySink
from importer.sinks.store import BlockStore

MiB = 1024 * 1024
#: Kubo's default leaf: 256 KiB.
BLOCK = 256 * 1024


def iter_blocks(count: int) -> Iterator[bytes]:
    """``count`` distinct incompressible blocks: a fixed random body behind an 8-byte counter."""
    body = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(BLOCK // 32))[8:]
    for i in range(count):
        yield i.to_bytes(8, "big") + body


def time_store_write(path: Path, cids: list[bytes], compression: str) -> float:
    start = time.perf_counter()
    with BlockStore(path, compression=compression) as store:
        for cid, block in zip(cids, iter_blocks(len(cids))):
            store.put(cid, block)
    return time.perf_counter() - start


def time_encode(blocks: Iterable[bytes]) -> float:
    """Seconds :class:`BlockCodec` spends deciding how to store ``blocks`` (no I/O)."""
    codec = BlockCodec(compress=True, load_dictionary=lambda _: None)
    seconds = 0.0
    for block in blocks:
        start = time.perf_counter()
        codec.encode(block)
        seconds += time.perf_counter() - start
    return seconds


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
    parser.add_argument("--wheels", nargs="+", default=[], metavar="WHL", help="wheels for the at-rest figures")
    args = parser.parse_args()
    count = args.size_mib * MiB // BLOCK
    total_mb = count * BLOCK / 1e6
    cids = [cid_of_block(1, RAW, block) for block in iter_blocks(count)]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        for _ in range(args.rounds):
            store_dir, plain = Path(scratch) / "store", Path(scratch) / "plain.bin"
            zstd_dir = Path(scratch) / "store-zstd"
            results = {
                "store write": time_store_write(store_dir, cids, "none"),
                "store write, zstd on": time_store_write(zstd_dir, cids, "zstd"),
                "zstd encode alone": time_encode(iter_blocks(count)),
                "file write + fsync": time_file_write(plain, count),
                "store read (verified)": time_store_read(store_dir, cids),
                "file read": time_file_read(plain),
            }
            disk = sum(p.stat().st_size for p in store_dir.iterdir())
            shutil.rmtree(zstd_dir)
            for name, seconds in results.items():
                best[name] = min(best.get(name, seconds), seconds)
            shutil.rmtree(store_dir)
            plain.unlink()
    print(f"{count} blocks of {BLOCK // 1024} KiB = {total_mb:.0f} MB, best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:<22} {total_mb / seconds:8.1f} MB/s  ({seconds:.2f} s)")
    print(f"  store write / file write: {best['file write + fsync'] / best['store write']:.2f}")
    print(f"  store size on disk after close: {disk / 1e6:.0f} MB ({disk / (count * BLOCK):.3f}x the data)")
    if args.wheels:
        at_rest(args.wheels, args.rounds, args.dir)


# -- at-rest figures on real blocks ---------------------------------------------------------------

def write_blocks(path: Path, blocks: dict[bytes, bytes], compression: str) -> float:
    start = time.perf_counter()
    with BlockStore(path, compression=compression) as store:
        store.put_many(blocks.items())
    return time.perf_counter() - start


def compressed_size(blocks: list[bytes], level: int, dictionary: zstandard.ZstdCompressionDict | None = None) -> int:
    """Bytes at rest at ``level``, a block kept raw when zstd does not shrink it."""
    compressor = zstandard.ZstdCompressor(level=level, write_checksum=False, dict_data=dictionary)
    return sum(min(len(b), len(compressor.compress(b))) for b in blocks)


def at_rest(wheels: list[str], rounds: int, scratch_dir: str | None) -> None:
    sink = MemorySink()
    start = time.perf_counter()
    for wheel in wheels:
        import_archive(wheel, resolve_settings(), sink)
    import_seconds = time.perf_counter() - start
    blocks = sink.blocks
    logical = sum(map(len, blocks.values()))
    mb = logical / 1e6
    small = sum(1 for b in blocks.values() if len(b) < SMALL_BLOCK)
    print(f"\nat rest: {len(wheels)} wheels -> {len(blocks)} blocks ({small} under {SMALL_BLOCK // 1024} KiB), "
          f"{mb:.1f} MB logical; import into memory {mb / import_seconds:.1f} MB/s ({import_seconds:.2f} s)")
    best: dict[str, float] = {}
    sizes: dict[str, tuple[int, int]] = {}
    with tempfile.TemporaryDirectory(dir=scratch_dir) as scratch:
        for _ in range(rounds):
            for compression in ("none", "zstd"):
                path = Path(scratch) / compression
                seconds = write_blocks(path, blocks, compression)
                best[compression] = min(best.get(compression, seconds), seconds)
                seconds = time_store_read(path, list(blocks))
                best["read " + compression] = min(best.get("read " + compression, seconds), seconds)
                with BlockStore(path) as store:
                    stats = store.stats()
                    sizes[compression] = (stats.at_rest_bytes, stats.disk_bytes)
                    if compression == "zstd":  # what `store optimize --vacuum` makes of it
                        start = time.perf_counter()
                        store.recompress()
                        store.vacuum()
                        seconds = time.perf_counter() - start
                        best["optimize"] = min(best.get("optimize", seconds), seconds)
                        stats = store.stats()
                        sizes["zstd, optimized"] = (stats.at_rest_bytes, stats.disk_bytes)
                        dictionaries = (stats.dictionaries, stats.dictionary_bytes)
                shutil.rmtree(path)
    for compression in ("none", "zstd"):
        seconds = best[compression]
        rest, disk = sizes[compression]
        print(f"  store write, {compression:<4} {mb / seconds:7.1f} MB/s ({seconds:.2f} s)  at rest {rest:>10} B "
              f"(ratio {logical / rest:.2f})  files {disk:>10} B")
    rest, disk = sizes["zstd, optimized"]
    print(f"  then store optimize --vacuum ({best['optimize']:.2f} s, {dictionaries[0]} dictionary of "
          f"{dictionaries[1]} B): at rest {rest} B (ratio {logical / rest:.2f})  files {disk} B")
    for compression in ("none", "zstd"):
        seconds = best["read " + compression]
        print(f"  store read (verified), {compression:<4} {mb / seconds:7.1f} MB/s ({seconds:.2f} s)")
    encode = time_encode(blocks.values())
    print(f"  zstd encode alone   {mb / encode:7.1f} MB/s ({encode:.2f} s = {encode / import_seconds:.1%} of the import)")
    print(f"  store write time / import time: zstd {best['zstd'] / import_seconds:.1%}, "
          f"none {best['none'] / import_seconds:.1%}")
    values = list(blocks.values())
    for level in (1, 3, 6, 9, 19):
        start = time.perf_counter()
        size = compressed_size(values, level)
        seconds = time.perf_counter() - start
        print(f"  level {level:>2}: ratio {logical / size:.2f}, {mb / seconds:6.1f} MB/s")
    smalls = [b for b in values if len(b) < SMALL_BLOCK]
    test = smalls[1::2]
    train: list[bytes | bytearray | memoryview[int]] = list(smalls[::2])
    if len(train) >= 100:
        tested = sum(map(len, test))
        print(f"  small blocks: trained on {len(train)}, measured on the other {len(test)} ({tested} B), level 3:")
        print(f"    no dictionary: ratio {tested / compressed_size(test, 3):.2f}")
        for size in (DICT_SIZE // 2, DICT_SIZE):
            d = zstandard.train_dictionary(size, train, level=3)
            print(f"    {size // 1024} KiB dictionary: ratio {tested / compressed_size(test, 3, d):.2f}")


if __name__ == "__main__":
    main()
