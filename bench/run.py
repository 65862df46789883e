"""``python -m bench run``: every strategy over every project's version chain, in parallel and resumable.

A run lives in ``runs/<run-id>/`` (ignored by git)::

    run.json                 what was run: set, lock digest, strategies, commit, machine, times
    events/<project>.parquet one row per (version, file, strategy): see bench.metrics
    blocks/<project>.parquet the project's unique blocks per strategy (for the overall dedup)
    summary.csv              one row per (project, strategy) plus the ALL rows

Projects are the unit of work: a process pool runs one project's chain per worker, oldest
version first, and writes the project's two tables when it is done (blocks first, events last,
each by rename, so an events file means the project is complete). Running the same command
again skips the projects that have an events file: an interrupted run resumes where it stopped.
Projects are started largest first so the last one to finish is small.

Chains (``--chain``): every strategy keeps one store per project, so all of a project's archives
(sdists and wheels, every version and platform) dedup against each other in every mode. The mode
only decides each archive's *previous* archive: the reference of ``delta-zstd`` and what
``upgrade_bytes`` is measured against. Archives are taken in lock order (releases oldest first,
the sdist before its wheels).

``kind`` (the default)
    the project's last archive of the same kind: sdist after sdist, wheel after wheel (with
    ``--all-wheels`` locks: the last wheel in lock order, whatever its platform).
``release``
    one chain through wheel and sdist: the archive just before it in lock order, so a release's
    wheel follows its own sdist and the sdist follows the previous release's last wheel.
``platform``
    sdists as in ``kind``; a wheel follows the previous version's wheel with the same tags
    (python-abi-platform, from the file name): the chain a user of one platform sees.
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import queue
import subprocess
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from importer.errors import ImporterError

from .decoded import DecodedArchive, decode_archive
from .delta_zstd import zstd_cli
from .metrics import BLOCK_COLUMNS, EVENT_COLUMNS, Ledger, summarize
from .strategies import STRATEGIES, get_strategies

RUNS_DIR: Final = Path(__file__).resolve().parent.parent / "runs"
#: Errors that mean "this archive is broken", reported in the events table and skipped.
ARCHIVE_ERRORS: Final = (ImporterError, zlib.error, EOFError, ValueError, OSError, MemoryError)


@dataclass(frozen=True, slots=True)
class ArchiveTask:
    version: str
    filename: str
    kind: str
    path: str
    size: int


@dataclass(frozen=True, slots=True)
class ProjectTask:
    package: str
    archives: tuple[ArchiveTask, ...]
    strategies: tuple[str, ...]
    out_dir: str
    chain: str = "kind"


#: ``--chain`` modes (see the module docstring).
CHAINS: Final = ("kind", "release", "platform")


def chain_key(archive: ArchiveTask, chain: str) -> str:
    """Which earlier archive is this one's previous: the last one seen with the same key."""
    if chain == "release":
        return "release"
    if chain == "platform" and archive.kind == "wheel" and archive.filename.endswith(".whl"):
        # name-version(-build)?-python-abi-platform.whl: the last three fields are the tags.
        return "wheel:" + "-".join(archive.filename[:-len(".whl")].split("-")[-3:])
    return archive.kind


#: Progress callback: called with an archive's size in bytes when it is done (bytes make the ETA
#: honest: archive counts would treat a 40 MB scipy wheel like a 10 kB six wheel).
Tick = Callable[[int], None]


def run_project(task: ProjectTask, tick: Tick | None = None) -> tuple[list[dict[str, Any]], list[tuple[Any, ...]]]:
    """One project's chain through every strategy: the event rows and the unique-block rows."""
    strategies = get_strategies(task.strategies)
    ledgers = {s.name: Ledger(task.package, s.name, deltas=s.family == "structural") for s in strategies}
    previous: dict[str, DecodedArchive] = {}
    rows: list[dict[str, Any]] = []
    for archive in task.archives:
        base = {"package": task.package, "version": archive.version, "file": archive.filename,
                "kind": archive.kind}
        start = time.perf_counter()
        try:
            data = Path(archive.path).read_bytes()
            decoded = decode_archive(data, archive.filename, archive.kind)
        except ARCHIVE_ERRORS as e:
            print(f"bench run: {archive.filename}: skipped, {e}", file=sys.stderr)
            rows.append(_error_row(base, "", "", f"{type(e).__name__}: {e}"))
            if tick is not None:
                tick(archive.size)
            continue
        decode_seconds = time.perf_counter() - start
        key = chain_key(archive, task.chain)
        for strategy in strategies:
            sink = ledgers[strategy.name].sink()
            start = time.perf_counter()
            try:
                root = strategy.store(decoded, previous.get(key), sink)
                seconds = time.perf_counter() - start
                sink.store_deltas(archive.filename, root)
            except ARCHIVE_ERRORS as e:
                print(f"bench run: {archive.filename}: {strategy.name} failed, {e}", file=sys.stderr)
                rows.append(_error_row(base, strategy.name, strategy.family, f"{type(e).__name__}: {e}"))
                continue
            rows.append({**base, "strategy": strategy.name, "family": strategy.family,
                         "archive_bytes": len(data), "content_bytes": decoded.content_bytes,
                         **sink.finish(key), "seconds": seconds, "decode_seconds": decode_seconds,
                         "error": None})
        previous[key] = decoded
        if tick is not None:
            tick(archive.size)
    blocks = [row for ledger in ledgers.values() for row in ledger.block_rows()]
    return rows, blocks


def _error_row(base: dict[str, Any], strategy: str, family: str, error: str) -> dict[str, Any]:
    row: dict[str, Any] = {c: 0 for c in EVENT_COLUMNS}
    row.update(base, strategy=strategy, family=family, has_previous=False, seconds=0.0, decode_seconds=0.0,
               error=error)
    return row


def write_tables(out_dir: Path, package: str, rows: list[dict[str, Any]], blocks: list[tuple[Any, ...]]) -> None:
    """Write a project's blocks then events table, each atomically (rename)."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    for sub, frame in (("blocks", pd.DataFrame(blocks, columns=list(BLOCK_COLUMNS))),
                       ("events", pd.DataFrame(rows, columns=list(EVENT_COLUMNS)))):
        target = out_dir / sub / f"{package}.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, target)


_QUEUE: Any = None


def _init_worker(progress: Any) -> None:
    global _QUEUE
    _QUEUE = progress


def _worker(task: ProjectTask) -> str:
    rows, blocks = run_project(task, (lambda n: _QUEUE.put(n)) if _QUEUE is not None else None)
    write_tables(Path(task.out_dir), task.package, rows, blocks)
    return task.package


def run_tasks(tasks: Sequence[ProjectTask], jobs: int, progress: bool) -> None:
    """Run the project tasks on ``jobs`` processes with a progress bar (archive bytes, with ETA)."""
    from tqdm import tqdm  # type: ignore[import-untyped,unused-ignore]

    total = sum(a.size for task in tasks for a in task.archives)
    bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, disable=not progress,
               dynamic_ncols=True, mininterval=2.0)
    if jobs <= 1:
        for task in tasks:
            rows, blocks = run_project(task, bar.update)
            write_tables(Path(task.out_dir), task.package, rows, blocks)
            bar.set_postfix_str(task.package)
        bar.close()
        return
    manager = multiprocessing.Manager()
    ticks = manager.Queue()
    with ProcessPoolExecutor(jobs, initializer=_init_worker, initargs=(ticks,)) as pool:
        pending: set[Future[str]] = {pool.submit(_worker, task) for task in tasks}
        while pending:
            try:
                bar.update(ticks.get(timeout=0.5))
            except queue.Empty:
                pass
            for done in [f for f in pending if f.done()]:
                pending.discard(done)
                bar.set_postfix_str(done.result())
        while not ticks.empty():
            bar.update(ticks.get())
    bar.close()
    manager.shutdown()


def select_versions(entries: Sequence[Any], versions: int) -> dict[str, list[Any]]:
    """Lock entries by project (lock order), keeping each project's newest ``versions`` versions."""
    by_project: dict[str, list[Any]] = {}
    for entry in entries:
        by_project.setdefault(entry.project, []).append(entry)
    out: dict[str, list[Any]] = {}
    for project, items in by_project.items():
        order = list(dict.fromkeys(e.version for e in items))
        keep = set(order[-versions:]) if versions > 0 else set(order)
        out[project] = [e for e in items if e.version in keep]
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        mem = 0
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "python": platform.python_version(), "system": f"{platform.system()} {platform.release()}"}


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_summary(run_dir: Path) -> Path:
    """Combine the per-project tables into ``summary.csv``."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    events = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "events").glob("*.parquet"))],
                       ignore_index=True)
    blocks = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "blocks").glob("*.parquet"))],
                       ignore_index=True)
    out = run_dir / "summary.csv"
    summarize(events, blocks).to_csv(out, index=False)
    return out


def cmd_run(args: argparse.Namespace) -> int:
    from . import datasets

    strategies = tuple(s.name for s in get_strategies(args.strategies))
    if any(STRATEGIES[name].family == "delta" for name in strategies):
        try:
            zstd_cli()
        except RuntimeError as e:
            print(f"bench run: {e}; or leave delta-zstd out with --strategies", file=sys.stderr)
            return 1
    entries = datasets.load_lock(args.packages)
    chains = select_versions(entries, args.versions)
    run_id = args.run_id or f"{args.packages}-v{args.versions}" + ("" if args.chain == "kind" else f"-{args.chain}")
    run_dir = Path(args.runs_dir) / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    meta_path = run_dir / "run.json"
    meta: dict[str, Any] = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if meta and (tuple(meta.get("strategies", ())) != strategies or meta.get("chain", "kind") != args.chain):
        print(f"bench run: {run_dir} was run with other strategies or chains; pass another --run-id",
              file=sys.stderr)
        return 1

    wanted = [e for items in chains.values() for e in items]
    print(f"bench run: {args.packages}: {len(chains)} projects, {len(wanted)} files, "
          f"{sum(e.size for e in wanted) / 2**20:.1f} MiB; downloading what the cache lacks")
    start = time.perf_counter()
    downloads = datasets.ensure_downloaded(wanted, jobs=args.download_jobs, progress=not args.no_progress)
    download_seconds = time.perf_counter() - start
    for name, reason in downloads.failed.items():
        print(f"bench run: {name}: not downloaded ({reason}); left out", file=sys.stderr)

    tasks = []
    done = 0
    for project, items in chains.items():
        if (run_dir / "events" / f"{project}.parquet").exists():
            done += 1
            continue
        archives = tuple(ArchiveTask(e.version, e.filename, e.kind, str(downloads[e.filename]), e.size)
                         for e in items if e.filename in downloads)
        if archives:
            tasks.append((sum(e.size for e in items),
                          ProjectTask(project, archives, strategies, str(run_dir), args.chain)))
    tasks.sort(key=lambda t: -t[0])
    if done:
        print(f"bench run: resuming {run_dir}: {done} projects already done, {len(tasks)} to go")
    meta.setdefault("started", datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    meta.update({"set": args.packages, "versions": args.versions, "strategies": list(strategies), "chain": args.chain,
                 "lock_sha256": datasets.lock_digest(args.packages), "commit": git_commit(), "machine": machine(),
                 "jobs": args.jobs, "projects": len(chains), "files": len(wanted),
                 "archive_bytes": sum(e.size for e in wanted)})
    meta["download_seconds"] = round(meta.get("download_seconds", 0.0) + download_seconds, 1)
    meta_path.write_text(json.dumps(meta, indent=1))

    start = time.perf_counter()
    try:
        run_tasks([t for _, t in tasks], args.jobs, not args.no_progress)
    finally:
        bench_seconds = time.perf_counter() - start
        meta["bench_seconds"] = round(meta.get("bench_seconds", 0.0) + bench_seconds, 1)
        meta_path.write_text(json.dumps(meta, indent=1))
    summary = write_summary(run_dir)
    meta["finished"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    meta_path.write_text(json.dumps(meta, indent=1))
    latest = Path(args.runs_dir) / "latest"
    if latest.is_symlink() or not latest.exists():
        latest.unlink(missing_ok=True)
        latest.symlink_to(run_id)
    print(f"bench run: download {download_seconds:.1f} s, bench {bench_seconds:.1f} s "
          f"(this invocation; run total {meta['bench_seconds']:.1f} s) on {args.jobs} processes")
    print(f"bench run: {summary}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="run the dedup strategies over a locked package set")
    p.add_argument("--packages", default="smoke", help="package set (datasets/<SET>.lock.json)")
    p.add_argument("--versions", type=int, default=10, help="newest N versions of each project (0: all)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: all cores)")
    p.add_argument("--download-jobs", type=int, default=8, help="parallel downloads")
    p.add_argument("--run-id", help="run directory name under runs/ (default SET-vN; same id resumes)")
    p.add_argument("--runs-dir", default=str(RUNS_DIR), help=argparse.SUPPRESS)
    p.add_argument("--strategies", nargs="+", metavar="NAME", choices=list(STRATEGIES),
                   help="strategies to run (default: all)")
    p.add_argument("--chain", choices=CHAINS, default="kind",
                   help="each archive's previous one (delta-zstd reference, upgrade bytes): same kind (default), "
                        "release (wheel and sdist in one chain) or platform (same wheel tags)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(handler=cmd_run)
