"""Benchmark: how much of real archives is rebuilt from file leaves (issue 3's 99% target).

Imports every archive of a dataset's lock (default ``top100``, from the download cache) with
``-n`` semantics (CIDs only, nothing stored) and prints, per producer (the WHEEL ``Generator``
for wheels, the gzip header for sdists), the share of uncompressed member bytes rebuilt from
their file leaves rather than kept as original compressed streams, plus archives that failed
to import. Runs archives on all cores. Writes the per-archive rows to ``runs/replay-<set>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from importer.archive.importer import ArchiveImporter
from importer.errors import ImporterError
from importer.profiles import resolve_settings
from importer.sinks.base import NullSink

from .datasets import ensure_downloaded, load_lock

_VERSION = re.compile(r"\s*\(?v?[0-9][^ ]*\)?")


def producer_family(producer: str | None, kind: str) -> str:
    """A producer name without its version: 'bdist_wheel (0.43.0)' -> 'bdist_wheel'."""
    if not producer:
        return f"{kind}: unknown"
    if producer.startswith("gzip header"):
        return f"sdist {producer}"
    name = _VERSION.split(producer, maxsplit=1)[0].strip() or producer
    if name.startswith("maturin"):
        match = re.search(r"(\d+)\.(\d+)", producer)
        if match:
            return "maturin < 1.10" if (int(match[1]), int(match[2])) < (1, 10) else "maturin >= 1.10"
    return name


def import_one(path: str, kind: str) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        report = ArchiveImporter(resolve_settings(), NullSink(), workers=1).import_file(path)
    except ImporterError as e:
        return {"file": os.path.basename(path), "kind": kind, "error": str(e)}
    verbatim = [(m.name, m.note) for m in report.member_reports if m.how == "verbatim"]
    return {
        "file": report.file, "kind": kind, "producer": report.producer, "size": report.size,
        "replayed_bytes": report.replayed_bytes, "verbatim_bytes": report.verbatim_bytes,
        "verbatim": verbatim[:5], "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--packages", default="top100")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, help="only the first N archives of the lock")
    args = parser.parse_args(argv)
    entries = load_lock(args.packages)[: args.limit]
    paths = ensure_downloaded(entries, progress=False)
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(import_one, str(paths[e.filename]), e.kind) for e in entries if e.filename in paths]
        for future in as_completed(futures):
            rows.append(future.result())
    wall = time.perf_counter() - start
    by_producer: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in rows:
        if "error" in row:
            continue
        family = producer_family(row["producer"], row["kind"])
        by_producer[family][0] += row["replayed_bytes"]
        by_producer[family][1] += row["verbatim_bytes"]
        by_producer[family][2] += 1
    print(f"{'producer':40s} {'archives':>8s} {'content MB':>11s} {'replayed':>9s}")
    total = [0, 0]
    for family, (replayed, verbatim, count) in sorted(by_producer.items(), key=lambda kv: -sum(kv[1][:2])):
        content = replayed + verbatim
        total[0] += replayed
        total[1] += verbatim
        print(f"{family[:40]:40s} {count:8d} {content / 1e6:11.1f} {100 * replayed / max(content, 1):8.2f}%")
    content = sum(total)
    errors = [row for row in rows if "error" in row]
    print(f"{'ALL':40s} {len(rows) - len(errors):8d} {content / 1e6:11.1f} {100 * total[0] / max(content, 1):8.2f}%"
          f"   (target >= 99%)")
    print(f"{len(errors)} archives failed to import; wall {wall:.0f} s on {args.jobs} processes")
    for row in errors[:20]:
        print(f"  error: {row['error']}", file=sys.stderr)
    out = Path("runs") / f"replay-{args.packages}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
