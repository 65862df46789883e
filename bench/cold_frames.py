"""``python -m bench.cold_frames``: what the frame size of ``store optimize --level N`` buys, per project.

``store optimize --level 19`` rewrites a store's packs as cold packs: every block but deltas in
zstd frames of ``--frame-size`` bytes (:data:`importer.sinks.packs.COLD_FRAME_BYTES` by
default). This command takes stores made by ``python -m bench realstore --keep DIR`` (one
directory per project, imported with the real CLI), and for each frame size copies every store
and puts the copy through ``dpip-import store optimize --level N --frame-size SIZE`` (the real
CLI, one process at a time), then prints per project and summed: the file on disk
(:mod:`bench.diskusage`), against the store before, the run's bound (``delta-zstd``, ``zstd -19
--long=31 --patch-from`` release after release) and the archives; and the seconds it took. The
copies are kept in ``--out`` (``OUT/SIZE/PROJECT``) for ``python -m bench.perf_disk --stores``.
``--vacuum`` passes ``--vacuum`` to each optimize (the file rebuilt without free pages, its
tables' pages filled in key order), the figure of a store optimized once and left at rest.

    python -m bench.cold_frames --stores DIR --run runs/unseen7-v5 --frame-sizes 1MiB 2MiB 4MiB 8MiB --out OUT
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from importer.sinks.packs import cold_frame_bytes

from .child_cli import run_cli
from .diskusage import disk_usage
from .realstore import BOUND, chain_of, stored_bytes
from .report import MiB, _table


def _chain(run_dir: Path, project: str) -> tuple[int, int]:
    """(bytes of the project's archives, its bound) from the run's events."""
    events, chain = chain_of(run_dir, project)
    return int(chain["archive_bytes"].sum()), stored_bytes(events, BOUND)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cold_frames", description=__doc__.split("\n\n")[0])
    p.add_argument("--stores", required=True, type=Path, help="directory of stores, one per project (realstore --keep)")
    p.add_argument("--run", required=True, type=Path, help="the run the stores were made from (for the bound)")
    p.add_argument("--frame-sizes", nargs="+", default=["1MiB"], metavar="SIZE")
    p.add_argument("--level", type=int, default=19)
    p.add_argument("--out", required=True, type=Path, help="where the optimized copies go (OUT/SIZE/PROJECT)")
    p.add_argument("--packages", nargs="*", metavar="PROJECT", help="default: every store in --stores")
    p.add_argument("--vacuum", action="store_true", help="optimize with --vacuum")
    args = p.parse_args(argv)
    projects = args.packages or sorted(d.name for d in args.stores.iterdir() if d.is_dir())
    for size in args.frame_sizes:
        cold_frame_bytes(size)  # refuse a bad size before hours of work
    chains = {project: _chain(args.run, project) for project in projects}
    before = {project: disk_usage(args.stores / project).disk_bytes for project in projects}
    after: dict[tuple[str, str], tuple[int, float]] = {}
    for size in args.frame_sizes:
        for project in projects:
            copy = args.out / size / project
            if copy.exists():
                raise SystemExit(f"cold_frames: {copy} exists already")
            shutil.copytree(args.stores / project, copy)
            start = time.perf_counter()
            run_cli(["store", "optimize", "--level", str(args.level), "--frame-size", size, "--store", str(copy),
                     *(["--vacuum"] if args.vacuum else [])])
            seconds = time.perf_counter() - start
            after[project, size] = disk_usage(copy).disk_bytes, seconds
            print(f"{project} {size}: {after[project, size][0]:,} B in {seconds:.0f} s", file=sys.stderr, flush=True)
    header = ["project", "archives MiB", "bound MiB", "before MiB"]
    for size in args.frame_sizes:
        header += [f"{size} MiB", f"{size} / bound", f"{size} s"]
    rows = []
    for name, members in [*((project, [project]) for project in projects), ("all", projects)]:
        archives = sum(chains[m][0] for m in members)
        bound = sum(chains[m][1] for m in members)
        row = [name, f"{archives / MiB:,.2f}", f"{bound / MiB:,.2f}", f"{sum(before[m] for m in members) / MiB:,.2f}"]
        for size in args.frame_sizes:
            disk = sum(after[m, size][0] for m in members)
            row += [f"{disk / MiB:,.2f}", f"{disk / bound:.3f}", f"{sum(after[m, size][1] for m in members):,.0f}"]
        rows.append(row)
    print(_table(header, rows))
    for size in args.frame_sizes:
        disk = sum(after[m, size][0] for m in projects)
        archives = sum(chains[m][0] for m in projects)
        print(f"{size}: {disk / MiB:,.2f} MiB, archives / disk {archives / disk:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
