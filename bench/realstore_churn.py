"""A real release chain imported and deleted in a mixed order: the store's file against its payload after each step.

Issue 14's target "the file within 10% of its payload after any sequence of imports and deletes"
cannot be checked by one chain imported once. This takes one project of a run (its releases in
the run's order, sdist + wheel each) and puts one real store through imports, deletes from the
index, ``store gc``, ``store optimize`` and ``store vacuum`` with the real CLI, in child processes
(:mod:`bench.child_cli`), printing after every step the store's file (database and log), its
payload (``store stats``: payloads plus dictionaries), their ratio and the split of the rest
(:mod:`bench.diskusage`). The archives still in the index are fetched and checked against their
sha256 at the end (``dpip-import verify``), so no step lost a byte.

The sequence (releases numbered 1..n in the run's order, n >= 4)::

    import 1-3          the first half of a chain
    delete 1, gc        the oldest release dropped: its blocks go, deltas against them are rewritten
    import 4-n          the rest of the chain
    delete 2, gc        another release dropped in the middle
    import 1            the dropped release comes back (its blocks are new again)
    delete n, gc        the newest dropped
    optimize            ``store optimize`` (no level): packs left half dead rewritten
    optimize --level 19 cold packs (``--optimize-level``; 0 skips the step)
    vacuum              ``store vacuum``: the file rebuilt

    python -m bench.realstore_churn --run runs/unseen7-v5 --package aiohttp
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from .child_cli import run_cli
from .diskusage import disk_usage, format_usage
from .download_cache import cache_dir
from .report import DEFAULT_RUN, MiB, _table

#: The strategy whose events list the chain's archives in the run's order (as bench.realstore).
STRATEGY = "structural"
HEADER = ["step", "archives in index", "disk MiB", "payload MiB", "disk / payload", "free pages MiB",
          "unused in pages MiB", "index and rows MiB", "seconds"]


def releases(run_dir: Path, package: str) -> list[list[Path]]:
    """The project's archives in the run's order, grouped by release."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    events = pd.read_parquet(run_dir / "events" / f"{package}.parquet")
    chain = events[(events["strategy"] == STRATEGY) & (events["error"].isna() | (events["error"] == ""))]
    grouped: dict[str, list[Path]] = {}
    for version, name in zip(chain["version"], chain["file"], strict=True):
        grouped.setdefault(str(version), []).append(cache_dir() / str(name))
    return list(grouped.values())


def churn(store: Path, chain: list[list[Path]], optimize_level: int) -> list[list[str]]:
    """Run the sequence of the module docstring on a fresh ``store``; one table row per step."""
    n = len(chain)
    if n < 4:
        raise SystemExit(f"realstore_churn: the chain has {n} releases, at least 4 are needed")
    indexed: set[int] = set()
    rows: list[list[str]] = []

    def step(label: str, *commands: list[str]) -> None:
        start = time.perf_counter()
        for command in commands:
            run_cli(command)
        seconds = time.perf_counter() - start
        usage = disk_usage(store)
        print(format_usage(label, usage), file=sys.stderr, flush=True)
        rows.append([label, str(sum(len(chain[i]) for i in indexed)), f"{usage.disk_bytes / MiB:,.2f}",
                     f"{usage.payload_bytes / MiB:,.2f}", f"{usage.disk_bytes / max(1, usage.payload_bytes):.3f}",
                     f"{usage.free_bytes / MiB:,.2f}", f"{usage.unused_bytes / MiB:,.2f}",
                     f"{usage.structure_bytes / MiB:,.2f}", f"{seconds:,.1f}"])

    def imported(*releases_: int) -> list[str]:
        indexed.update(releases_)
        return ["auto", "--store", str(store), *(str(f) for r in releases_ for f in chain[r])]

    def deleted(*releases_: int) -> list[str]:
        indexed.difference_update(releases_)
        return ["delete", "--store", str(store), *(f.name for r in releases_ for f in chain[r])]

    gc = ["store", "gc", "--store", str(store)]
    step("import 1-3", imported(0, 1, 2))
    step("delete 1, gc", deleted(0), gc)
    step(f"import 4-{n}", imported(*range(3, n)))
    step("delete 2, gc", deleted(1), gc)
    step("import 1 again", imported(0))
    step(f"delete {n}, gc", deleted(n - 1), gc)
    step("optimize", ["store", "optimize", "--store", str(store)])
    if optimize_level:
        step(f"optimize --level {optimize_level}",
             ["store", "optimize", "--level", str(optimize_level), "--store", str(store)])
    step("vacuum", ["store", "vacuum", "--store", str(store)])
    start = time.perf_counter()
    for r in sorted(indexed):
        for archive in chain[r]:
            run_cli(["verify", "--store", str(store), archive.name])
    print(f"realstore_churn: the {sum(len(chain[r]) for r in indexed)} archives in the index rebuilt byte for "
          f"byte ({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realstore_churn", description=__doc__.split("\n")[0])
    parser.add_argument("--run", default=str(DEFAULT_RUN), help="run directory (default: runs/latest)")
    parser.add_argument("--package", required=True, metavar="PROJECT")
    parser.add_argument("--dir", help="scratch directory for the store (default: a temporary one)")
    parser.add_argument("--optimize-level", type=int, default=19, metavar="LEVEL",
                        help="the level of the `store optimize --level` step (0: no such step; default 19)")
    args = parser.parse_args(argv)
    chain = releases(Path(args.run), args.package)
    with tempfile.TemporaryDirectory(prefix="dpip-churn-", dir=args.dir) as scratch:
        rows = churn(Path(scratch) / args.package, chain, args.optimize_level)
    print(_table(HEADER, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
