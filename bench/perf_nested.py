"""Benchmark: ``wheel --open-nested`` against the plain import of the same wheels (issue 6's target).

Issue 6: "Import with ``--open-nested`` at least half as fast as without on botocore", measured
on the newest five botocore wheels of the botocore5 subset (each holds 957 ``.json.gz`` members
that ``--open-nested`` opens and proves to rebuild). Each import is the real CLI in a child
process (``python -m importer wheel [--open-nested] --store DIR WHEEL...``) into a fresh
temporary store, so the interpreter start, the store and the report printing cost the same in
both. Rounds interleave plain and nested (the order alternates so neither always runs on a
warmer cache); it prints every round's wall and CPU seconds (CPU counts the child and the
``gzip`` processes it runs), the medians, the ratio plain / nested of the medians (target >=
0.50: nested takes at most twice as long) and the load average, since the machines are shared.

``--incremental`` measures what a PyPI mirror does instead: one new release per process into a
store that already holds the previous ones. Each round fills a fresh store per mode with all
wheels but the last (one untimed child process, same mode), then times importing the last wheel
alone into it; the gzip attempts proven for the earlier releases are in the store's memo.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .child_cli import run_cli
from .download_cache import cache_dir

#: The newest five botocore wheels of the botocore5 subset (bench/datasets.py), as in issue 6.
DEFAULT_WHEELS = tuple(f"botocore-1.44.{patch}-py3-none-any.whl" for patch in range(4, 9))
#: Issue 6's target for plain / nested wall time.
TARGET_RATIO = 0.50


@dataclass(frozen=True, slots=True)
class Timing:
    """One import: wall seconds and CPU seconds (user + system, the child and its children)."""

    wall: float
    cpu: float


def run_import(wheels: list[Path], nested: bool, work: Path, prefill: list[Path] | None = None) -> Timing:
    """Run the CLI once into a fresh store under ``work`` (first filled with ``prefill`` by an
    untimed run, if given); raise if a run fails."""
    store = work / "store"
    if store.exists():
        shutil.rmtree(store)
    try:
        if prefill:
            _run_cli(prefill, nested, store)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        _run_cli(wheels, nested, store)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(store, ignore_errors=True)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def _run_cli(wheels: list[Path], nested: bool, store: Path) -> None:
    run_cli(["wheel", "--open-nested" if nested else "--no-open-nested", "--store", str(store), *map(str, wheels)])


def default_wheels() -> list[Path]:
    return [cache_dir() / name for name in DEFAULT_WHEELS]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.perf_nested", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", nargs="+", type=Path, metavar="WHEEL",
                        help="wheels to import (default: the five newest botocore wheels from the download cache)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of plain and nested (default 3)")
    parser.add_argument("--workdir", type=Path, help="where the temporary stores go (default: a temp dir)")
    parser.add_argument("--incremental", action="store_true",
                        help="time only the last wheel, imported into a store already holding the others")
    args = parser.parse_args(argv)
    wheels: list[Path] = args.wheels or default_wheels()
    if args.incremental and len(wheels) < 2:
        parser.error("--incremental needs at least two wheels: the last is timed, the others fill the store")
    missing = [str(w) for w in wheels if not w.is_file()]
    if missing:
        print(f"skipped: {len(missing)} wheel(s) not found ({', '.join(missing)}); "
              "fetch them with `python -m bench lock --packages botocore5` or pass --wheels")
        return 0
    prefill = wheels[:-1] if args.incremental else None
    timed = wheels[-1:] if args.incremental else wheels
    size = sum(w.stat().st_size for w in timed)
    into = f" into a store holding the {len(wheels) - 1} before it (untimed)" if args.incremental else ""
    print(f"{len(timed)} wheel(s) timed, {size / 1e6:.1f} MB{into}; {args.rounds} rounds; {os.cpu_count()} cores; "
          f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dpip-perf-nested-"))
    plain: list[Timing] = []
    nested: list[Timing] = []
    try:
        for round_no in range(args.rounds):
            # Alternate which one runs first, so neither always follows the other's cache effects.
            for is_nested in (False, True) if round_no % 2 == 0 else (True, False):
                timing = run_import(timed, is_nested, work, prefill)
                (nested if is_nested else plain).append(timing)
                print(f"round {round_no + 1} {'nested' if is_nested else 'plain ':6s} {timing.wall:7.2f} s wall "
                      f"{timing.cpu:7.2f} s CPU  (load {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    plain_wall = statistics.median(t.wall for t in plain)
    nested_wall = statistics.median(t.wall for t in nested)
    ratio = plain_wall / nested_wall
    print(f"median plain  {plain_wall:7.2f} s wall {statistics.median(t.cpu for t in plain):7.2f} s CPU")
    print(f"median nested {nested_wall:7.2f} s wall {statistics.median(t.cpu for t in nested):7.2f} s CPU")
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    print(f"ratio plain/nested {ratio:.2f} ({verdict} the target >= {TARGET_RATIO:.2f}); load average now "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores: shared machines are noisy")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
