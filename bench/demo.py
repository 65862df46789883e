"""``make demo``: the product end to end: two versions of a wheel and an sdist into the embedded store and back.

Builds versions 1.0 and 2.0 of a small generated project (they differ in one module) with a real
PEP 517 backend (hatchling, called directly: no network, no build isolation), imports the four
archives into the embedded store (``$DPIP_STORE`` or the user data directory) with
``dpip-import auto``, says what each second version added to the store, fetches every archive
back from its root and shows that the rebuilt file has the original's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from importer.cli.main import main as dpip

#: Seed of the generated modules, so every demo run builds the same archives.
SEED = 2026
#: hatchling is a test dependency; any PEP 517 backend in the venv would do.
BACKEND = "hatchling.build"
#: Fixed timestamps (2023-11-14) in the built archives, so every run builds the same bytes.
SOURCE_DATE_EPOCH = "1700000000"


def run(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = dpip(list(argv))
    if rc != 0:
        raise SystemExit(f"dpip-import {' '.join(argv)} failed with exit code {rc}")
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


def main() -> int:
    store = os.environ.get("DPIP_STORE")
    with tempfile.TemporaryDirectory(prefix="dpip-demo-") as tmp_name:
        tmp = Path(tmp_name)
        dist = tmp / "dist"
        print(f"1. build dpip-demo 1.0 and 2.0 with {BACKEND} (2.0 changes one module):")
        built: dict[tuple[str, int], Path] = {}
        changed: dict[int, int] = {}
        for version in (1, 2):
            project = tmp / f"src-{version}"
            files = write_project(project, version)
            changed[version] = len(files["dpip_demo/changed.py"].encode())
            for kind in ("wheel", "sdist"):
                built[kind, version] = build(project, kind, dist)
        # Import order: both wheels, then both sdists (an sdist holds the same files as its wheel,
        # so after the wheels even sdist 1.0 adds little: dedup works across formats too).
        archives = [built[kind, version] for kind in ("wheel", "sdist") for version in (1, 2)]
        for path in archives:
            print(f"   {path.name:34s} {path.stat().st_size:>9,d} bytes")

        print(f"2. dpip-import auto into the embedded store ({store or 'user data directory'}):")
        reports: dict[str, dict[str, Any]] = {}
        for path in archives:
            data = json.loads(run("auto", "--json", str(path)))
            reports[path.name] = data
            share = 100.0 * data["replayed_bytes"] / max(1, data["replayed_bytes"] + data["verbatim_bytes"])
            print(f"   {path.name:34s} {data['root']}\n"
                  f"   {'':34s} {data['members']} members, {share:.0f}% rebuilt from file leaves, "
                  f"new: {data['new_blocks']} of {data['blocks']} blocks, {data['new_bytes']:,d} of "
                  f"{data['bytes']:,d} bytes")

        print(f"3. what version 2.0 added (its changed module is {changed[2]:,d} bytes):")
        for kind in ("wheel", "sdist"):
            one, two = reports[built[kind, 1].name], reports[built[kind, 2].name]
            print(f"   {built[kind, 2].name:34s} {two['new_bytes']:>9,d} new bytes in {two['new_blocks']} new blocks "
                  f"of {two['blocks']} (after {built[kind, 1].name}: {one['new_bytes']:,d} new bytes)")
        print("   (the sdists hold the same files as the wheels: only their skeletons, recipes and directories are new)")
        if reports[built["wheel", 1].name]["new_bytes"] == 0:
            print("   (this store already held everything from an earlier demo run: run with DPIP_STORE=<empty "
                  "directory> to see first-import figures)")

        print("4. fetch every archive back from its root and compare sha256 with the original:")
        back = tmp / "fetched"
        back.mkdir()
        for path in archives:
            root = reports[path.name]["root"]
            run("fetch", root, "-o", str(back / path.name))
            original, rebuilt = sha256(path), sha256(back / path.name)
            same = "identical" if original == rebuilt else "DIFFERENT"
            print(f"   {path.name:34s} {rebuilt}  {same}")
            if original != rebuilt:
                raise SystemExit("round trip failed")

        wheel = reports[built["wheel", 2].name]["root"]
        print(f"5. dpip-import inspect {wheel}:")
        for line in run("inspect", wheel).splitlines():
            print("   " + line)

        from importer.sinks.store import default_store_path

        from .demo_pip import demo_pip

        measured = demo_pip(default_store_path(store), built["wheel", 2], 6)
    print("demo done: four archives went into the store as file trees plus recipes, the second version "
          "added little more than its changed module, and every archive came back byte-identical; "
          + "; ".join(measured) + ".")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
