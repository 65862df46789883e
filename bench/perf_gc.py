"""Benchmark: ``store gc`` on a large store, and giving free pages back, each against its baseline.

1. **gc**: a store holds ``--live`` raw blocks reached from one pinned DAG-CBOR tree (nodes of
   1,000 links) and ``--garbage`` raw blocks nothing reaches (1 KiB each, distinct). Timed: the
   phases of :func:`~importer.sinks.gc.collect_garbage` (mark, sweep in
   :data:`~importer.sinks.store.DELETE_ROWS` a transaction, free pages given back), and as the
   baseline the issue warns of, one :meth:`~importer.sinks.store.BlockStore.delete` (one
   transaction) per garbage block, on an identical copy of the store made before either ran.
2. **free pages**: a store of ``--reclaim-mib`` of 64 KiB blocks loses every other block; then
   ``PRAGMA incremental_vacuum`` (what the store runs after a delete, gc or delta rewrite) is
   timed against a full ``VACUUM`` on an identical copy, with the file sizes before and after.

    python -m bench.perf_gc [--live 100000] [--garbage 100000] [--reclaim-mib 256] [--dir DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from importer.dag.cbor import Link, encode_dag_cbor
from importer.dag.cid import DAG_CBOR, RAW, cid_of_block
from importer.sinks.gc import iter_roots, mark
from importer.sinks.store import DELETE_ROWS, BlockStore

KiB = 1024
MiB = 1024 * KiB
#: Links per interior node of the live tree: a node of 1,000 CIDv1 links is ~40 KB, under the 1 MiB
#: block limit, and 100,000 leaves need 100 of them and one root.
FANOUT = 1000


def raw_block(i: int, size: int) -> tuple[bytes, bytes]:
    seed = hashlib.sha256(i.to_bytes(8, "big")).digest()
    data = (seed * (size // 32 + 1))[:size]
    return cid_of_block(1, RAW, data), data


def build_store(path: Path, live: int, garbage: int) -> bytes:
    """The gc benchmark's store; returns the pinned root."""
    with BlockStore(path, compression="none") as store:
        leaves = []
        for i in range(live):
            cid, data = raw_block(i, KiB)
            store.put(cid, data)
            leaves.append(cid)
        nodes = []
        for start in range(0, len(leaves), FANOUT):
            block = encode_dag_cbor({"l": [Link(c) for c in leaves[start:start + FANOUT]]})
            nodes.append(cid_of_block(1, DAG_CBOR, block))
            store.put(nodes[-1], block)
        root_block = encode_dag_cbor({"l": [Link(c) for c in nodes]})
        root = cid_of_block(1, DAG_CBOR, root_block)
        store.put(root, root_block)
        for i in range(live, live + garbage):
            store.put(*raw_block(i, KiB))
        store.pin(root, "bench")
    return root


def bench_gc(work: Path, live: int, garbage: int) -> None:
    print(f"gc: {live:,d} live blocks under one pin, {garbage:,d} garbage blocks of 1 KiB")
    batched, baseline = work / "gc-batched", work / "gc-per-block"
    build_store(batched, live, garbage)
    shutil.copytree(batched, baseline)
    with BlockStore(batched) as store:
        # collect_garbage's phases, one by one, so the sweep can be set against the baseline's.
        before = store.page_stats()
        start = time.perf_counter()
        live_set, _ = mark(store, iter_roots(store))
        doomed = [row.cid for row in store.iter_rows() if row.cid not in live_set]
        marked = time.perf_counter()
        removed = store.delete_many(doomed, reclaim=False)
        swept = time.perf_counter()
        store.reclaim_free_pages()
        reclaimed = time.perf_counter()
        after = store.page_stats()
    with BlockStore(baseline) as store:
        live_set, _ = mark(store, iter_roots(store))
        doomed = [row.cid for row in store.iter_rows() if row.cid not in live_set]
        start_baseline = time.perf_counter()
        for cid in doomed:
            store.delete(cid)
        per_block = time.perf_counter() - start_baseline
    sweep = swept - marked
    print(f"  mark and list:  {marked - start:7.2f} s")
    print(f"  sweep, {removed.blocks:,d} blocks in transactions of {DELETE_ROWS:,d}: {sweep:7.2f} s")
    print(f"  reclaim:        {reclaimed - swept:7.2f} s   file {before.file_bytes / MiB:.1f} -> "
          f"{after.file_bytes / MiB:.1f} MiB, {after.free_pages} free pages left")
    print(f"  whole gc:       {reclaimed - start:7.2f} s")
    print(f"  baseline sweep, one transaction per block: {per_block:7.2f} s ({per_block / sweep:.1f}x the batched "
          f"sweep, {per_block / (reclaimed - start):.1f}x the whole gc)")


def bench_reclaim(work: Path, mib: int) -> None:
    count = mib * MiB // (64 * KiB)
    print(f"free pages: {count:,d} blocks of 64 KiB ({mib} MiB), every other one deleted")
    incremental, full = work / "reclaim-incremental", work / "reclaim-full"
    with BlockStore(incremental, compression="none") as store:
        store.put_many(raw_block(i, 64 * KiB) for i in range(count))
        store.flush()
        store.delete_many([raw_block(i, 64 * KiB)[0] for i in range(0, count, 2)], reclaim=False)
        freed = store.page_stats()
    shutil.copytree(incremental, full)
    with BlockStore(incremental) as store:
        start = time.perf_counter()
        store.reclaim_free_pages()
        seconds = time.perf_counter() - start
        after = store.page_stats()
    with BlockStore(full) as store:
        start = time.perf_counter()
        store.vacuum()
        vacuum_seconds = time.perf_counter() - start
        after_full = store.page_stats()
    print(f"  before: {freed.file_bytes / MiB:.1f} MiB, {freed.free_bytes / MiB:.1f} MiB of it free pages")
    print(f"  incremental_vacuum: {seconds:6.2f} s -> {after.file_bytes / MiB:.1f} MiB")
    print(f"  full VACUUM:        {vacuum_seconds:6.2f} s -> {after_full.file_bytes / MiB:.1f} MiB"
          f"  (incremental took {seconds / vacuum_seconds:.2f}x its time)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_gc", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--live", type=int, default=100_000)
    parser.add_argument("--garbage", type=int, default=100_000)
    parser.add_argument("--reclaim-mib", type=int, default=256)
    parser.add_argument("--dir", help="where to build the stores (default: a temporary directory)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perf-gc-", dir=args.dir) as tmp:
        bench_gc(Path(tmp), args.live, args.garbage)
        bench_reclaim(Path(tmp), args.reclaim_mib)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
