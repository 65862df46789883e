"""``python -m bench realstore``: a run's projects imported into real embedded stores, against the run's ledgers.

The benchmark's structural strategies never write a store: their ledgers count what the store
would hold (zstd -3 per block, and the store's delta pass replayed). This command checks that
model: for each named project it imports the run's archives, in the run's order, with the real
CLI (``dpip-import auto --store DIR FILE...``: compressor search, trained dictionaries, deltas
and all) into a fresh store, then prints the store's bytes at rest (``store stats``: payloads plus
dictionaries) next to the run's ``structural`` figures (``new_bytes_delta`` and ``new_bytes_zstd``
summed over the chain), and the import's wall time.

    python -m bench realstore --run runs/top100-v10-delta --packages requests attrs numpy
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from importer.sinks.store import BlockStore

from .child_cli import run_cli
from .download_cache import cache_dir
from .report import DEFAULT_RUN, MiB

#: The strategy whose ledger models the CLI's default import (``unixfs-v0-2015``, no nesting).
STRATEGY = "structural"


def check_project(run_dir: Path, package: str, scratch: Path) -> list[str]:
    """One table row: the project, its archives, the real store at rest, the ledger's figures."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    events = pd.read_parquet(run_dir / "events" / f"{package}.parquet")
    chain = events[(events["strategy"] == STRATEGY) & (events["error"].isna() | (events["error"] == ""))]
    files = [str(cache_dir() / name) for name in chain["file"]]
    store = scratch / package
    start = time.perf_counter()
    run_cli(["auto", "--store", str(store), *files])
    seconds = time.perf_counter() - start
    with BlockStore(store, create=False) as opened:
        at_rest = opened.stats().at_rest_bytes
    ledger, ledger_zstd = int(chain["new_bytes_delta"].sum()), int(chain["new_bytes_zstd"].sum())
    archives = int(chain["archive_bytes"].sum())
    return [package, str(len(files)), f"{archives / MiB:,.2f}", f"{at_rest / MiB:,.2f}", f"{ledger / MiB:,.2f}",
            f"{at_rest / ledger:.3f}", f"{ledger_zstd / MiB:,.2f}", f"{archives / at_rest:.2f}", f"{seconds:,.0f}"]


def cmd_realstore(args: argparse.Namespace) -> int:
    from .report import _table

    run_dir = Path(args.run)
    rows = []
    with tempfile.TemporaryDirectory(prefix="dpip-realstore-", dir=args.dir) as scratch:
        for package in args.packages:
            rows.append(check_project(run_dir, package, Path(scratch)))
            print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    print(_table(["project", "archives", "archives MiB", "real store at rest MiB", "ledger, deltas MiB",
                  "real / ledger", "ledger, zstd alone MiB", "archives / real store", "import s"], rows))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("realstore", help="import a run's projects into real stores and compare with its ledgers")
    p.add_argument("--run", default=str(DEFAULT_RUN), help="run directory (default: runs/latest)")
    p.add_argument("--packages", nargs="+", required=True, metavar="PROJECT")
    p.add_argument("--dir", help="scratch directory for the stores (default: a temporary one under /tmp)")
    p.set_defaults(handler=cmd_realstore)
