"""``python -m bench realstore``: a run's projects imported into real embedded stores, against the run's ledgers.

The benchmark's structural strategies never write a store: their ledgers count what the store
would hold (zstd -3 per block, and the store's delta pass replayed). This command checks that
model and measures what the ledgers cannot: the file on disk. For each named project it imports
the run's archives, in the run's order, with the real CLI (``dpip-import auto --store DIR
FILE...``: compressor search, dictionaries, deltas, packs and all) into a fresh store of its own,
then prints per project and summed over them:

* ``disk``: the store's files (database, log) after the chain, as ``ls`` sees them;
* ``payload``: what ``store stats`` says the blocks weigh (payloads plus dictionaries);
* the bound: the run's ``delta-zstd`` (``zstd -19 --long=31 --patch-from`` release after release)
  and, when the run has it, ``delta-zstd-9``; ``disk / bound`` is the figure issue 14 asks for;
* the run's ``structural`` ledger with deltas, and the import's wall time.

The split of each store's file (free pages, half-empty pages, index) goes to stderr
(:mod:`bench.diskusage`). With ``--optimize N`` each store is then put through ``store optimize
--level N`` and measured again (the ``optimized`` columns): what a store that recompresses in the
background takes.

    python -m bench realstore --run runs/unseen7-v5 --packages pandas grpcio virtualenv
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .child_cli import run_cli
from .diskusage import disk_usage, format_usage
from .download_cache import cache_dir
from .report import DEFAULT_RUN, MiB

#: The strategy whose ledger models the CLI's default import (``unixfs-v0-2015``, no nesting).
STRATEGY = "structural"
#: The bound, and the looser level-9 bound of earlier reports (:mod:`bench.strategies`).
BOUND = "delta-zstd"
BOUND_9 = "delta-zstd-9"
HEADER = ["project", "archives", "archives MiB", "disk MiB", "payload MiB", "disk / payload", "bound MiB",
          "disk / bound", "payload / bound", "bound -9 MiB", "ledger MiB", "archives / disk", "import s"]
OPTIMIZED = ["optimized disk MiB", "optimized disk / bound", "archives / optimized disk", "optimize s"]


@dataclass(frozen=True, slots=True)
class Measured:
    """One project's (or the sum's) figures."""

    archives: int
    archive_bytes: int
    disk: int
    payload: int
    bound: int
    bound_9: int
    ledger: int
    seconds: float
    optimized_disk: int = 0
    optimize_seconds: float = 0.0

    def __add__(self, other: Measured) -> Measured:
        return Measured(self.archives + other.archives, self.archive_bytes + other.archive_bytes,
                        self.disk + other.disk, self.payload + other.payload, self.bound + other.bound,
                        self.bound_9 + other.bound_9, self.ledger + other.ledger, self.seconds + other.seconds,
                        self.optimized_disk + other.optimized_disk, self.optimize_seconds + other.optimize_seconds)


def stored_bytes(events: object, strategy: str) -> int:
    """What ``strategy`` stored over the chain (its ``new_bytes_zstd``, rows without an error)."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    assert isinstance(events, pd.DataFrame)
    rows = events[(events["strategy"] == strategy) & (events["error"].isna() | (events["error"] == ""))]
    return int(rows["new_bytes_zstd"].sum())


def chain_of(run_dir: Path, package: str) -> tuple[Any, Any]:
    """The run's events of ``package`` and its chain: one row per archive, in the run's order."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    events = pd.read_parquet(run_dir / "events" / f"{package}.parquet")
    return events, events[(events["strategy"] == STRATEGY) & (events["error"].isna() | (events["error"] == ""))]


def check_project(run_dir: Path, package: str, scratch: Path, optimize: int = 0) -> Measured:
    """Import the project's chain into a fresh store; its figures beside the run's."""
    events, chain = chain_of(run_dir, package)
    files = [str(cache_dir() / name) for name in chain["file"]]
    store = scratch / package
    start = time.perf_counter()
    run_cli(["auto", "--store", str(store), *files])
    seconds = time.perf_counter() - start
    usage = disk_usage(store)
    print(format_usage(package, usage), file=sys.stderr, flush=True)
    optimized, optimize_seconds = 0, 0.0
    if optimize:
        start = time.perf_counter()
        run_cli(["store", "optimize", "--level", str(optimize), "--store", str(store)])
        optimize_seconds = time.perf_counter() - start
        after = disk_usage(store)
        print(format_usage(f"{package} after store optimize --level {optimize}", after), file=sys.stderr, flush=True)
        optimized = after.disk_bytes
    return Measured(len(files), int(chain["archive_bytes"].sum()), usage.disk_bytes, usage.payload_bytes,
                    stored_bytes(events, BOUND), stored_bytes(events, BOUND_9), int(chain["new_bytes_delta"].sum()), seconds,
                    optimized, optimize_seconds)


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def format_row(name: str, m: Measured) -> list[str]:
    row = [name, str(m.archives), f"{m.archive_bytes / MiB:,.2f}", f"{m.disk / MiB:,.2f}",
           f"{m.payload / MiB:,.2f}", _ratio(m.disk, m.payload), f"{m.bound / MiB:,.2f}", _ratio(m.disk, m.bound),
           _ratio(m.payload, m.bound), f"{m.bound_9 / MiB:,.2f}" if m.bound_9 else "-",
           f"{m.ledger / MiB:,.2f}", _ratio(m.archive_bytes, m.disk), f"{m.seconds:,.0f}"]
    if m.optimized_disk:
        row += [f"{m.optimized_disk / MiB:,.2f}", _ratio(m.optimized_disk, m.bound),
                _ratio(m.archive_bytes, m.optimized_disk), f"{m.optimize_seconds:,.0f}"]
    return row


def cmd_realstore(args: argparse.Namespace) -> int:
    from .report import _table

    run_dir = Path(args.run)
    rows = []
    total = Measured(0, 0, 0, 0, 0, 0, 0, 0.0)
    with contextlib.ExitStack() as stack:
        if args.keep:
            scratch = args.keep
            Path(scratch).mkdir(parents=True, exist_ok=True)
        else:
            scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="dpip-realstore-", dir=args.dir))
        for package in args.packages:
            if (Path(scratch) / package).exists():
                raise SystemExit(f"realstore: {Path(scratch) / package} exists already")
            measured = check_project(run_dir, package, Path(scratch), args.optimize)
            total = total + measured
            rows.append(format_row(package, measured))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    if len(rows) > 1:
        rows.append(format_row("all (sum)", total))
    print(_table(HEADER + (OPTIMIZED if args.optimize else []), rows))
    return 0


def chain_arguments(p: argparse.ArgumentParser) -> None:
    """``--run`` and ``--packages``: which run's chains a command takes (realstore, othertools)."""
    p.add_argument("--run", default=str(DEFAULT_RUN), help="run directory (default: runs/latest)")
    p.add_argument("--packages", nargs="+", required=True, metavar="PROJECT")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("realstore", help="import a run's projects into real stores: disk, payload, the bound")
    chain_arguments(p)
    p.add_argument("--dir", help="scratch directory for the stores (default: a temporary one under /tmp)")
    p.add_argument("--keep", metavar="DIR",
                   help="make the stores in DIR/PROJECT and keep them (for `python -m bench.diskusage`)")
    p.add_argument("--optimize", type=int, default=0, metavar="LEVEL",
                   help="then run `store optimize --level LEVEL` on each store and measure it again")
    p.set_defaults(handler=cmd_realstore)
