"""Benchmark: ``fetch`` and import of a ~1 GB wheel against recompressing its members on all cores (issue 3's targets).

Generates a wheel of about ``--size-mb`` MB locally (CPython zipfile, deflate level 6: what
setuptools, hatchling, flit and poetry write), its members half text-like and half binary-like,
then measures in one run on this machine:

* the baseline: read the extracted members from disk and compress each with the same settings
  (raw deflate, zlib level 6) on a thread pool with one thread per core;
* ``fetch`` into a file: its throughput over the archive size, and its ratio to the baseline
  (target >= 0.80), and its peak RSS (target < 300 MB);
* the import into a fresh embedded store: throughput, ratio to the baseline and peak RSS.

Import and fetch run in child processes so each peak RSS is that operation's own. Rounds
interleave baseline and fetch; the best of each and the ratio of their medians are printed,
with the load average, because these machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
#: Member sizes cycle through these (bytes): many small modules, some mid-sized, a few big
#: extension-module-like files, as in large real wheels (torch, tensorflow).
SIZES = (40_000, 250_000, 1_500_000, 8 * MiB)
#: Pieces the members are assembled from: 4 KiB of text-like or random bytes, so the wheel
#: compresses to about 60% overall and no member is cheaper than the real thing.
BLOCK = 4096


def _corpus(rng: random.Random) -> bytes:
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randrange(2, 12)))
             for _ in range(2000)]
    lines = []
    for _ in range(40_000):
        lines.append(b"    " + b" = ".join(rng.choice(words) for _ in range(rng.randrange(2, 6))) + b"\n")
    return b"".join(lines)


def member_content(rng: random.Random, corpus: bytes, size: int, binary: bool) -> bytes:
    out = bytearray()
    while len(out) < size:
        if binary and rng.random() < 0.5:
            out += rng.randbytes(BLOCK)
        else:
            at = rng.randrange(len(corpus) - BLOCK)
            out += corpus[at:at + BLOCK]
    return bytes(out[:size])


def make_wheel(path: Path, members_dir: Path, size: int) -> None:
    """Write the wheel and its members extracted beside it (the baseline's input)."""
    rng = random.Random(3)
    corpus = _corpus(rng)
    total = i = 0
    names: list[str] = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
        while total < size:
            member_size = SIZES[i % len(SIZES)]
            binary = i % len(SIZES) >= 2
            name = f"bigpkg/{'lib' if binary else 'mod'}{i:05d}.{'so' if binary else 'py'}"
            data = member_content(rng, corpus, member_size, binary)
            z.writestr(name, data)
            (members_dir / f"{i:05d}").write_bytes(data)
            names.append(name)
            total += member_size
            i += 1
        record = "".join(f"{n},sha256=x,0\n" for n in names).encode()
        z.writestr("bigpkg-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\n")
        z.writestr("bigpkg-1.0.dist-info/RECORD", record)


def _deflate_file(path: Path) -> int:
    data = path.read_bytes()
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return len(c.compress(data)) + len(c.flush())


def baseline(members_dir: Path) -> float:
    """Seconds to read every member and deflate it with the wheel's own settings, on all cores."""
    files = sorted(members_dir.iterdir())
    start = time.perf_counter()
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        sum(pool.map(_deflate_file, files))
    return time.perf_counter() - start


def child(argv: list[str]) -> None:
    """Run one operation in this process; print its seconds and peak RSS as JSON."""
    from importer.archive.importer import ArchiveImporter
    from importer.archive.rebuild import fetch
    from importer.dag.cid import format_cid, parse_cid
    from importer.profiles import resolve_settings
    from importer.sinks.store import BlockStore

    what, archive, store_path, extra = argv
    start = time.perf_counter()
    result: dict[str, Any] = {}
    with BlockStore(store_path) as store:
        if what == "import":
            report = ArchiveImporter(resolve_settings(), store).import_file(archive)
            result = {"root": format_cid(report.root), "replayed": report.replayed_bytes,
                      "verbatim": report.verbatim_bytes}
        else:
            fetch(store, parse_cid(extra), archive)
    result["seconds"] = time.perf_counter() - start
    result["peak_rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


def run_child(*args: str) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-m", "bench.perf_archive", "--child", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed: {proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="uncompressed size of the wheel (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="baseline/fetch rounds, best of each (default 2)")
    parser.add_argument("--workdir", type=Path, help="where to put the wheel and store (default: a temp dir)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return 0
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dpip-perf-archive-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        wheel = work / "bigpkg-1.0-cp311-cp311-linux_x86_64.whl"
        members = work / "members"
        if members.exists():
            shutil.rmtree(members)
        members.mkdir()
        start = time.perf_counter()
        make_wheel(wheel, members, args.size_mb * MiB)
        size = wheel.stat().st_size
        content = sum(p.stat().st_size for p in members.iterdir())
        print(f"wheel: {size / MiB:,.0f} MiB on disk, {content / MiB:,.0f} MiB of members "
              f"({len(os.listdir(members))} members), generated in {time.perf_counter() - start:.0f} s; "
              f"{os.cpu_count()} cores")
        store = work / "store"
        if store.exists():
            shutil.rmtree(store)
        base = [baseline(members)]
        imported = run_child("import", str(wheel), str(store), "-")
        base.append(baseline(members))
        fetches = []
        for _ in range(args.rounds):
            out = work / "fetched.whl"
            fetches.append(run_child("fetch", str(out), str(store), imported["root"]))
            out.unlink()
            base.append(baseline(members))
        best_base = min(base)
        best_fetch = min(fetches, key=lambda r: r["seconds"])

        def line(label: str, seconds: float) -> str:
            return (f"{label:44s} {seconds:7.2f} s  {size / MiB / seconds:8.1f} MiB/s of archive  "
                    f"ratio to baseline {best_base / seconds:5.2f}")

        print(line("baseline: deflate the members on all cores", best_base))
        print(line("fetch (rebuild + sha256 + write)", best_fetch["seconds"]) + "  (target >= 0.80)")
        print(line("import into a fresh store", imported["seconds"]))
        print(f"{'peak RSS of fetch':44s} {best_fetch['peak_rss'] / MiB:7.1f} MiB (target < 300)")
        print(f"{'peak RSS of import':44s} {imported['peak_rss'] / MiB:7.1f} MiB (target < 300)")
        print(f"{'replayed / verbatim content bytes':44s} {imported['replayed']:,d} / {imported['verbatim']:,d}")
        fetch_times = [r["seconds"] for r in fetches]
        print(f"rounds: baseline {', '.join(f'{b:.2f}' for b in base)} s; "
              f"fetch {', '.join(f'{f:.2f}' for f in fetch_times)} s")
        print(f"median ratio fetch/baseline {statistics.median(base) / statistics.median(fetch_times):.2f} "
              f"(medians {statistics.median(base):.2f} s and {statistics.median(fetch_times):.2f} s; "
              f"load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores: shared machines are noisy)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
