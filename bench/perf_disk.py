"""Benchmark: one release chain imported by two checkouts of the importer, side by side.

Issue 14's rule for every change to how blocks are laid out: import speed, ``fetch`` speed and a
cold random block read, measured before and after, none more than 20% slower for a gain in bytes
without REPORT.md saying so; and the bytes the store takes, on disk and at rest. This runs the
real CLI of *this* checkout and of ``--baseline`` (another checkout, e.g. ``git worktree add
/tmp/base HEAD~1``) in child processes (``PYTHONPATH`` set to the checkout), rounds interleaved
so that the shared machine's load falls on both alike:

* import: ``python -m importer auto --store S FILE...`` of the whole chain into a fresh store;
* fetch: ``python -m importer fetch`` of the chain's newest archive from that store;
* cold read: :data:`COLD_READS` blocks drawn at random (the same CIDs for both), each read by
  ``BlockStore.get`` from a store opened just before (one child process for all of them);
* disk: the store's files after the import; at rest: ``store stats``' bytes at rest.

    python -m bench.perf_disk --baseline /tmp/base --project numpy --versions 5 [--rounds 3]
    python -m bench.perf_disk --baseline /tmp/base --files A.whl B.whl ...

``--stores A B ...`` compares stores that exist already, with this checkout only (e.g. a store and
a copy of it after ``store optimize --level 19``): per store, rounds interleaved, the fetch of the
archive imported last (or ``--archive NAME``) and the same cold reads, and each store's figures
against the first's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .datasets import load_lock
from .download_cache import cache_dir

#: Blocks read cold per store: enough for a median and a worst case, few enough to take seconds.
COLD_READS = 40
HERE = Path(__file__).resolve().parent.parent

#: Run by the checkout under test: ``STORE SEED COUNT`` -> JSON {"times": [s...], "blocks": n}.
#: Only ``BlockStore``'s public reading methods, which every checkout has.
_COLD_READ = """
import json, random, sys, time
from importer.sinks.store import BlockStore
store_dir, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with BlockStore(store_dir, create=False) as store:
    cids = sorted(store.iter_cids())
picked = random.Random(seed).sample(cids, min(count, len(cids)))
times = []
for cid in picked:
    with BlockStore(store_dir, create=False) as store:
        start = time.perf_counter()
        store.get(cid)
        times.append(time.perf_counter() - start)
print(json.dumps({"times": times, "blocks": len(cids)}))
"""
_STATS = """
import json, sys
from importer.sinks.store import BlockStore
with BlockStore(sys.argv[1], create=False) as store:
    stats = store.stats()
    root = next(r.root for r in store.iter_archives() if r.name == sys.argv[2])
from importer.dag.cid import format_cid
print(json.dumps({"at_rest": stats.at_rest_bytes, "root": format_cid(root)}))
"""


def _run(checkout: Path, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=checkout, env=env, capture_output=True, text=True,
                          check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{checkout}: {' '.join(args[:4])} failed: {done.stderr.strip()[-500:]}")
    return seconds, done.stdout


def _disk(store: Path) -> int:
    return sum(p.stat().st_size for p in store.iterdir() if p.name.startswith("blocks.sqlite3"))


def measure(checkout: Path, files: list[Path], scratch: Path, seed: int) -> dict[str, float]:
    """One round of one checkout: import, disk, at rest, fetch, cold reads."""
    store = scratch / "store"
    imported, _ = _run(checkout, ["-m", "importer", "auto", "--store", str(store), *map(str, files)])
    disk = _disk(store)
    _, out = _run(checkout, ["-c", _STATS, str(store), files[-1].name])
    stats = json.loads(out)
    fetched, _ = _run(checkout, ["-m", "importer", "fetch", "--store", str(store), stats["root"], "-o",
                                 str(scratch / "fetched")])
    _, out = _run(checkout, ["-c", _COLD_READ, str(store), str(seed), str(COLD_READS)])
    reads = json.loads(out)["times"]
    return {"import": imported, "fetch": fetched, "disk": disk, "at_rest": stats["at_rest"],
            "read_median": statistics.median(reads), "read_worst": max(reads)}


_NEWEST = """
import sys
from importer.dag.cid import format_cid
from importer.sinks.store import BlockStore
with BlockStore(sys.argv[1], create=False) as store:
    records = [r for r in store.iter_archives() if len(sys.argv) < 3 or r.name == sys.argv[2]]
    print(format_cid(max(records, key=lambda r: r.imported_at).root))
"""


def compare_stores(stores: list[Path], rounds: int, scratch: Path, archive: str | None = None) -> None:
    """Fetch of the newest archive (or the one named ``archive``) and cold reads in existing stores
    (this checkout); medians, ratios to the first."""
    seen: dict[Path, list[dict[str, float]]] = {store: [] for store in stores}
    for round_no in range(rounds):
        for number, store in enumerate(stores) if round_no % 2 == 0 else reversed(list(enumerate(stores))):
            _, root = _run(HERE, ["-c", _NEWEST, str(store), *([archive] if archive else [])])
            fetched, _ = _run(HERE, ["-m", "importer", "fetch", "--store", str(store), root.strip(), "-o",
                                     str(scratch / f"fetched-{round_no}-{number}")])
            _, out = _run(HERE, ["-c", _COLD_READ, str(store), str(round_no), str(COLD_READS)])
            reads = json.loads(out)["times"]
            seen[store].append({"fetch": fetched, "read_median": statistics.median(reads), "read_worst": max(reads),
                                "disk": _disk(store)})
    first = None
    for store, results in seen.items():
        m = {key: statistics.median(r[key] for r in results) for key in results[0]}
        first = first or m
        print(f"  {store}: fetch {archive or 'newest'} {m['fetch']:5.2f} s, cold get median {1000 * m['read_median']:.2f} ms worst "
              f"{1000 * m['read_worst']:.1f} ms; disk {m['disk'] / 1e6:.2f} MB; against the first: fetch speed "
              f"{first['fetch'] / m['fetch']:.2f}, cold read speed {first['read_median'] / m['read_median']:.2f}, "
              f"disk {m['disk'] / first['disk']:.3f}")


def default_files(project: str, versions: int) -> list[Path]:
    """The project's newest ``versions`` releases in the top100 lock, sdist then wheel, oldest first."""
    entries = [e for e in load_lock("top100") if e.project == project]
    order = list(dict.fromkeys(e.version for e in entries))[-versions:]
    return [cache_dir() / e.filename for e in entries if e.version in order]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_disk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, help="the checkout to compare with")
    parser.add_argument("--stores", nargs="+", type=Path, help="compare these existing stores instead (this checkout)")
    parser.add_argument("--files", nargs="+", type=Path, help="archives of one project, oldest first")
    parser.add_argument("--project", default="numpy")
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", help="scratch directory (default: a temporary one)")
    parser.add_argument("--archive", metavar="NAME", help="with --stores: fetch this archive (a file name in "
                                                          "the stores' index) instead of the newest")
    args = parser.parse_args(argv)
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)  # the scratch directory goes inside it
    if args.stores:
        print(f"{len(args.stores)} stores; {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}")
        with tempfile.TemporaryDirectory(prefix="dpip-perf-disk-", dir=args.dir) as scratch:
            compare_stores(args.stores, args.rounds, Path(scratch), args.archive)
        print(f"load average after: {os.getloadavg()[0]:.1f}")
        return 0
    if args.baseline is None:
        parser.error("--baseline is required (or --stores)")
    files = args.files or default_files(args.project, args.versions)
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"perf_disk: {len(missing)} archives are not in the download cache (first: {missing[0]})",
              file=sys.stderr)
        return 1
    size = sum(f.stat().st_size for f in files)
    checkouts = {"this": HERE, "baseline": args.baseline.resolve()}
    print(f"{len(files)} archives, {size / 1e6:.1f} MB: {files[0].name} .. {files[-1].name}; {args.rounds} rounds; "
          f"load average {os.getloadavg()[0]:.1f}")
    results: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="dpip-perf-disk-", dir=args.dir) as scratch:
        for round_no in range(args.rounds):
            order = list(checkouts) if round_no % 2 == 0 else list(reversed(checkouts))
            for name in order:
                work = Path(scratch) / f"{name}-{round_no}"
                work.mkdir()
                results[name].append(measure(checkouts[name], files, work, round_no))
                subprocess.run(["rm", "-rf", str(work)], check=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    med = {name: {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
           for name, rounds in results.items()}
    for name, m in med.items():
        print(f"  {name:<8} import {m['import']:6.2f} s ({size / 1e6 / m['import']:.2f} MB/s), fetch newest "
              f"{m['fetch']:5.2f} s, cold get median {1000 * m['read_median']:.2f} ms worst "
              f"{1000 * m['read_worst']:.1f} ms; disk {m['disk'] / 1e6:.2f} MB, at rest {m['at_rest'] / 1e6:.2f} MB "
              f"(archives / disk {size / m['disk']:.2f})")
    this, base = med["this"], med["baseline"]
    print(f"  this / baseline: import speed {base['import'] / this['import']:.2f}, fetch speed "
          f"{base['fetch'] / this['fetch']:.2f}, cold read speed {base['read_median'] / this['read_median']:.2f}; "
          f"disk {this['disk'] / base['disk']:.3f}, at rest {this['at_rest'] / base['at_rest']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
