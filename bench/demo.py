"""``make demo``: the product end to end: two versions of a wheel and an sdist into a store of their own and back.

Builds versions 1.0 and 2.0 of a small generated project (they differ in one module) with a real
PEP 517 backend (hatchling, called directly: no network, no build isolation), imports the four
archives with ``dpip-import auto`` into a fresh store of the demo's own (``.cache/demo/store``
in the working tree, emptied at each run, or ``--store DIR``: an empty or new directory; never
the user's default store), says what each second version added, fetches every archive back and
compares its sha256 with the original's, browses the store, deletes the first wheel and
collects its blocks, and ends with sentences built only from the figures measured on the way.

Each step is one function taking what the earlier steps measured; another step (the mirror,
pip) is one more function and one more call in :func:`main`.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from importer.cli.main import main as dpip

from .demo_pip import demo_pip

#: Seed of the generated modules, so every demo run builds the same archives.
SEED = 2026
#: hatchling is a test dependency; any PEP 517 backend in the venv would do.
BACKEND = "hatchling.build"
#: Fixed timestamps (2023-11-14) in the built archives, so every run builds the same bytes.
SOURCE_DATE_EPOCH = "1700000000"
#: The demo's own store when ``--store`` is not given: inside the working tree, emptied each run.
DEFAULT_STORE = Path(__file__).resolve().parent.parent / ".cache" / "demo" / "store"


def run(*argv: str) -> str:
    """``dpip-import ARGV`` in this process; its stdout (its hints on stderr are dropped), or exit with its error."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = dpip(list(argv))
    if rc != 0:
        raise SystemExit(f"dpip-import {' '.join(argv)} failed with exit code {rc}: {err.getvalue().strip()}")
    return out.getvalue()


def module_source(seed: int, functions: int) -> str:
    rng = random.Random(seed)
    return f'"""Generated module {seed}."""\n\n' + "".join(
        f"def f{i}(x, y={rng.randrange(100)}):\n    return x * {rng.randrange(1000)} + y\n\n" for i in range(functions))


def write_project(root: Path, version: int) -> dict[str, str]:
    """The demo project at ``version``; only ``pkg/changed.py`` differs between versions."""
    files = {
        "pyproject.toml": textwrap.dedent(f"""\
            [build-system]
            requires = ["hatchling"]
            build-backend = "hatchling.build"

            [project]
            name = "dpip-demo"
            version = "{version}.0"
            description = "The package make demo builds, imports and fetches back"
            """),
        "dpip_demo/__init__.py": '"""dpip-import demo package."""\n',
        "dpip_demo/core.py": module_source(SEED, 8000),  # ~400 kB, the same in both versions
        "dpip_demo/tables.py": "TABLE = " + repr([random.Random(SEED + 1).random() for _ in range(20000)]) + "\n",
        "dpip_demo/changed.py": module_source(SEED + 100 * version, 1500),
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return files


def build(project: Path, kind: str, out: Path) -> Path:
    hook = "import sys, importlib; print(getattr(importlib.import_module(sys.argv[1]), 'build_' + sys.argv[2])(sys.argv[3]))"
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, "-c", hook, BACKEND, kind, str(out)], cwd=project, env=env,
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{BACKEND} build_{kind} failed: {proc.stderr.strip()[-1000:]}")
    return out / proc.stdout.strip().splitlines()[-1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Built:
    """The four archives: ``paths[kind, version]``, and the size of 2.0's changed module."""

    paths: dict[tuple[str, int], Path]
    changed_bytes: int

    @property
    def import_order(self) -> list[Path]:
        # Both wheels, then both sdists: an sdist holds the same files as its wheel, so after
        # the wheels even sdist 1.0 adds little (dedup works across formats too).
        return [self.paths[kind, version] for kind in ("wheel", "sdist") for version in (1, 2)]


def prepare_store(requested: str | None) -> Path:
    """A fresh store directory: ``requested`` if it is new or empty, else the demo's own, emptied."""
    if requested is not None:
        path = Path(requested)
        if path.exists() and any(path.iterdir()):
            raise SystemExit(f"--store {path}: not empty; the demo measures a fresh store (give a new directory)")
        return path
    shutil.rmtree(DEFAULT_STORE, ignore_errors=True)
    DEFAULT_STORE.parent.mkdir(parents=True, exist_ok=True)
    return DEFAULT_STORE


def step_build(tmp: Path) -> Built:
    print(f"1. build dpip-demo 1.0 and 2.0 with {BACKEND} (2.0 changes one module):")
    paths: dict[tuple[str, int], Path] = {}
    changed = 0
    for version in (1, 2):
        project = tmp / f"src-{version}"
        files = write_project(project, version)
        changed = len(files["dpip_demo/changed.py"].encode())
        for kind in ("wheel", "sdist"):
            paths[kind, version] = build(project, kind, tmp / "dist")
    built = Built(paths, changed)
    for path in built.import_order:
        print(f"   {path.name:34s} {path.stat().st_size:>9,d} bytes")
    return built


def step_import(built: Built, store: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Import the four archives; their JSON reports by file name, and ``store stats --json`` after."""
    print(f"2. dpip-import auto into a fresh store of the demo's own: {store}")
    reports: dict[str, dict[str, Any]] = {}
    for path in built.import_order:
        data = json.loads(run("auto", "--json", "--store", str(store), str(path)))
        reports[path.name] = data
        share = 100.0 * data["replayed_bytes"] / max(1, data["replayed_bytes"] + data["verbatim_bytes"])
        print(f"   {path.name:34s} {data['root']}\n"
              f"   {'':34s} {data['members']} members, {share:.0f}% rebuilt from file leaves; new: "
              f"{data['new_blocks']} of {data['blocks']} blocks, {data['new_bytes']:,d} of {data['bytes']:,d} "
              f"logical bytes, {data['new_payload_bytes']:,d} bytes at rest")
    stats: dict[str, Any] = json.loads(run("store", "stats", "--json", "--store", str(store)))
    print(f"   the store: {stats['stored_bytes']:,d} bytes at rest (payloads and dictionaries), "
          f"its database file {stats['page_size'] * stats['pages']:,d} bytes")
    return reports, stats


def step_second_versions(built: Built, reports: dict[str, dict[str, Any]]) -> None:
    print(f"3. what version 2.0 added (its changed module is {built.changed_bytes:,d} bytes):")
    for kind in ("wheel", "sdist"):
        two = reports[built.paths[kind, 2].name]
        print(f"   {built.paths[kind, 2].name:34s} {two['new_bytes']:>9,d} logical bytes in {two['new_blocks']} new "
              f"blocks of {two['blocks']}, {two['new_payload_bytes']:,d} bytes at rest")


def step_fetch(built: Built, reports: dict[str, dict[str, Any]], store: Path, tmp: Path) -> int:
    print("4. fetch every archive back by file name and compare sha256 with the original:")
    back = tmp / "fetched"
    back.mkdir()
    identical = 0
    for path in built.import_order:
        run("fetch", path.name, "-o", str(back / path.name), "--store", str(store))
        original, rebuilt = sha256(path), sha256(back / path.name)
        identical += original == rebuilt
        print(f"   {path.name:34s} {rebuilt}  {'identical' if original == rebuilt else 'DIFFERENT'}")
        if original != rebuilt:
            raise SystemExit("round trip failed")
    return identical


def step_browse(built: Built, reports: dict[str, dict[str, Any]], store: Path) -> None:
    wheel = built.paths["wheel", 2].name
    print("5. the store's index (dpip-import list), and the files of a wheel (dpip-import ls ROOT/dpip_demo):")
    for line in run("list", "--store", str(store)).splitlines():
        print("   " + line)
    for line in run("ls", reports[wheel]["root"] + "/dpip_demo", "--store", str(store)).splitlines():
        print("   " + line)
    print(f"   dpip-import inspect {wheel}:")
    for line in run("inspect", wheel, "--store", str(store)).splitlines():
        print("      " + line)


def step_delete_and_collect(built: Built, store: Path, tmp: Path) -> dict[str, Any]:
    first, second = built.paths["wheel", 1], built.paths["wheel", 2]
    print(f"6. delete {first.name} from the index, collect its blocks, fetch {second.name} again:")
    run("delete", first.name, "--store", str(store))
    gc: dict[str, Any] = json.loads(run("store", "gc", "--json", "--store", str(store)))
    print(f"   store gc: removed {gc['removed_blocks']} blocks, {gc['removed_payload_bytes']:,d} bytes at rest; "
          f"file {gc['file_bytes_before']:,d} -> {gc['file_bytes_after']:,d} bytes")
    out = tmp / "after-gc" / second.name
    out.parent.mkdir()
    run("fetch", second.name, "-o", str(out), "--store", str(store))
    gc["second_identical"] = sha256(out) == sha256(second)
    print(f"   {second.name:34s} {sha256(out)}  {'identical' if gc['second_identical'] else 'DIFFERENT'}")
    if not gc["second_identical"]:
        raise SystemExit("fetch after gc failed")
    return gc


def step_summary(built: Built, reports: dict[str, dict[str, Any]], stats: dict[str, Any], identical: int,
                 gc: dict[str, Any], store: Path) -> None:
    """Sentences made only of figures measured above."""
    archives = built.import_order
    files = sum(path.stat().st_size for path in archives)
    at_rest = sum(reports[p.name]["new_payload_bytes"] for p in archives)
    w1, w2 = (reports[built.paths["wheel", v].name] for v in (1, 2))
    s1 = reports[built.paths["sdist", 1].name]
    print("summary (every figure measured above):")
    database = stats["page_size"] * stats["pages"]
    print(f"   The {len(archives)} archives ({files:,d} bytes as files) took {at_rest:,d} bytes at rest in the store, "
          f"{files / max(1, at_rest):.2f}x less than the files themselves; the store's database file is "
          f"{database:,d} bytes ({files / max(1, database):.2f}x less).")
    print(f"   Wheel 2.0 added {w2['new_bytes']:,d} logical bytes ({100.0 * w2['new_bytes'] / max(1, w2['bytes']):.1f}% "
          f"of its {w2['bytes']:,d}; its changed module is {built.changed_bytes:,d} bytes) and "
          f"{w2['new_payload_bytes']:,d} bytes at rest, against {w1['new_payload_bytes']:,d} for wheel 1.0.")
    print(f"   Sdist 1.0, imported after the wheels, added {s1['new_bytes']:,d} of its {s1['bytes']:,d} logical bytes "
          f"({100.0 * s1['new_bytes'] / max(1, s1['bytes']):.2f}%).")
    print(f"   {identical} of {len(archives)} archives came back byte-identical; after deleting wheel 1.0, store gc "
          f"removed {gc['removed_blocks']} blocks ({gc['removed_payload_bytes']:,d} bytes at rest) and wheel 2.0 "
          f"still came back {'byte-identical' if gc['second_identical'] else 'DIFFERENT'}.")
    print(f"   The store stays at {store} (`dpip-import --store {store} list`); the next `make demo` empties it.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.demo", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--store", metavar="DIR", help="a new or empty directory for the demo's store "
                                                       f"(default: {DEFAULT_STORE}, emptied first)")
    args = parser.parse_args(argv)
    store = prepare_store(args.store)
    with tempfile.TemporaryDirectory(prefix="dpip-demo-") as tmp_name:
        tmp = Path(tmp_name)
        built = step_build(tmp)
        reports, stats = step_import(built, store)
        step_second_versions(built, reports)
        identical = step_fetch(built, reports, store, tmp)
        step_browse(built, reports, store)
        gc = step_delete_and_collect(built, store, tmp)
        pip = demo_pip(store, built.paths["wheel", 2], 7)
        step_summary(built, reports, stats, identical, gc, store)
        for sentence in pip:
            print(f"   {sentence}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
