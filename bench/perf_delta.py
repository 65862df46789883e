"""Benchmark: what storing changed leaves as deltas (``--delta``, the default) costs and saves.

Imports a project's consecutive releases (default: the newest 5 numpy wheels of the top100 lock,
from the download cache) into two fresh embedded stores, one with ``--delta`` and one with
``--no-delta``, each import a child process running the real CLI, rounds alternating between
the two. Prints, from the same run:

* import wall time summed over the releases, each store's median over the rounds, and the ratio
  (``--no-delta`` / ``--delta``: the speed kept with deltas on);
* bytes at rest of each store (``store stats``) and their ratio;
* ``fetch`` of the newest release from each store (a child process; the sha256 is checked by
  fetch itself): median seconds and ratio, since its leaves are the deepest deltas;
* cold reads: single ``get`` of delta-encoded leaves from a freshly opened store (empty reference
  cache), median and worst milliseconds, with the deepest delta depth in the store.

    python -m bench.perf_delta [--files A.whl B.whl ...] [--project numpy --kind wheel --versions 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from importer.dag.cid import format_cid
from importer.sinks.store import BlockStore

from .child_cli import run_cli
from .datasets import load_lock
from .download_cache import cache_dir

#: Delta-encoded leaves read cold per store (each from a freshly opened store).
COLD_READS = 40


def _cli(*args: str) -> float:
    start = time.perf_counter()
    run_cli(args)
    return time.perf_counter() - start


def default_files(project: str, kind: str, versions: int) -> list[Path]:
    entries = sorted((e for e in load_lock("top100") if e.project == project and e.kind == kind),
                     key=lambda e: e.upload_time)[-versions:]
    cache = cache_dir()
    return [cache / e.filename for e in entries]


def cold_reads(store_dir: Path, rng: random.Random) -> tuple[list[float], int]:
    with BlockStore(store_dir, create=False) as store:
        deltas = sorted((cid, depth) for cid, depth, _ in store.iter_deltas())  # in rows or in packs
    if not deltas:
        return [], 0
    depth = max(d for _, d in deltas)
    times = []
    for cid, _ in rng.sample(deltas, min(COLD_READS, len(deltas))):
        with BlockStore(store_dir, create=False) as store:
            start = time.perf_counter()
            store.get(bytes(cid))
            times.append(time.perf_counter() - start)
    return times, depth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_delta", description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", nargs="+", type=Path, help="archives of one project, oldest first")
    parser.add_argument("--project", default="numpy")
    parser.add_argument("--kind", default="wheel", choices=("wheel", "sdist"))
    parser.add_argument("--versions", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    files = args.files or default_files(args.project, args.kind, args.versions)
    missing = [f for f in files if not f.is_file()]
    if missing:
        print(f"perf_delta: {len(missing)} archives are not in the download cache (first: {missing[0]}); "
              "fill it with `python -m bench download --packages top100`", file=sys.stderr)
        return 0
    command = "wheel" if files[0].name.endswith(".whl") else "sdist"
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} archives, {size / 1e6:.1f} MB: {files[0].name} .. {files[-1].name}; "
          f"{args.rounds} rounds, load average {os.getloadavg()[0]:.1f}")
    imports: dict[str, list[float]] = {"--delta": [], "--no-delta": []}
    fetches: dict[str, list[float]] = {"--delta": [], "--no-delta": []}
    at_rest: dict[str, int] = {}
    reads: dict[str, tuple[list[float], int]] = {}
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="dpip-perf-delta-") as scratch:
        for round_no in range(args.rounds):
            for flag in (("--delta", "--no-delta") if round_no % 2 == 0 else ("--no-delta", "--delta")):
                store = Path(scratch) / f"store{flag}-{round_no}"
                imports[flag].append(sum(_cli(command, flag, "--store", str(store), str(f)) for f in files))
                with BlockStore(store, create=False) as opened:
                    at_rest[flag] = opened.stats().at_rest_bytes
                    root = format_cid(next(r for r in opened.iter_archives() if r.name == files[-1].name).root)
                out = Path(scratch) / f"fetched{flag}"
                out.unlink(missing_ok=True)
                fetches[flag].append(_cli("fetch", "--store", str(store), root, "-o", str(out)))
                if round_no == 0:
                    reads[flag] = cold_reads(store, rng)
    for flag, seconds in imports.items():
        print(f"  {flag:<11} import {statistics.median(seconds):6.2f} s (rounds: "
              f"{', '.join(f'{t:.2f}' for t in seconds)}), fetch newest {statistics.median(fetches[flag]):5.2f} s, "
              f"at rest {at_rest[flag] / 1e6:7.2f} MB")
    delta, plain = "--delta", "--no-delta"
    print(f"  import speed with deltas: {statistics.median(imports[plain]) / statistics.median(imports[delta]):.2f} "
          f"of without; fetch speed: {statistics.median(fetches[plain]) / statistics.median(fetches[delta]):.2f}; "
          f"at rest {at_rest[plain] / at_rest[delta]:.2f}x smaller ({size / at_rest[delta]:.2f}x the archives, "
          f"{size / at_rest[plain]:.2f}x without deltas)")
    times, depth = reads[delta]
    if times:
        print(f"  cold get of {len(times)} delta leaves: median {1000 * statistics.median(times):.1f} ms, "
              f"worst {1000 * max(times):.1f} ms; deepest delta in the store: {depth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
