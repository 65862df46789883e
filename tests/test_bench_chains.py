"""``--chain`` modes (each archive's previous one) and lock subsets cut from a committed lock."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import pytest

from bench.datasets import LockEntry, dump_lock, load_lock, lock_digest, subset_lock
from bench.run import ArchiveTask, ProjectTask, chain_key, run_project

from .bench_archives import make_sdist, make_wheel, random_bytes, write

LINUX = "cp312-cp312-manylinux_2_17_x86_64"
WINDOWS = "cp312-cp312-win_amd64"


def _task(name: str, kind: str = "wheel") -> ArchiveTask:
    return ArchiveTask("1.0", name, kind, "", 0)


@pytest.mark.parametrize(("chain", "name", "kind", "key"), [
    ("kind", f"demo-1.0-{LINUX}.whl", "wheel", "wheel"),
    ("kind", "demo-1.0.tar.gz", "sdist", "sdist"),
    ("release", f"demo-1.0-{LINUX}.whl", "wheel", "release"),
    ("release", "demo-1.0.tar.gz", "sdist", "release"),
    ("platform", f"demo-1.0-{LINUX}.whl", "wheel", f"wheel:{LINUX}"),
    ("platform", f"demo-1.0-1build-{WINDOWS}.whl", "wheel", f"wheel:{WINDOWS}"),
    ("platform", "demo-1.0.tar.gz", "sdist", "sdist"),
])
def test_chain_key_names_the_archive_each_one_follows(chain: str, name: str, kind: str, key: str) -> None:
    assert chain_key(_task(name, kind), chain) == key


def _platform_chain(tmp: Path, chain: str) -> list[dict[str, Any]]:
    """Two versions x two platforms; each platform's wheel has its own 300 kB binary, same in both versions."""
    archives = []
    for version in ("1.0", "1.1"):
        data = make_sdist("demo", version, {"core.py": b"x = 1\n"})
        name = f"demo-{version}.tar.gz"
        archives.append(ArchiveTask(version, name, "sdist", str(write(tmp, name, data)), len(data)))
        for seed, tags in enumerate((LINUX, WINDOWS)):
            data = make_wheel("demo", version, {"core.py": b"x = 1\n", "_native.so": random_bytes(300_000, seed)})
            name = f"demo-{version}-{tags}.whl"
            archives.append(ArchiveTask(version, name, "wheel", str(write(tmp, name, data)), len(data)))
    rows, _ = run_project(ProjectTask("demo", tuple(archives), ("structural",), str(tmp), chain))
    return rows


def _upgrade(rows: list[dict[str, Any]], file: str) -> tuple[bool, int]:
    row = next(r for r in rows if r["file"] == file)
    return row["has_previous"], row["upgrade_bytes"]


def test_platform_chain_upgrades_a_wheel_from_the_same_platform(tmp_path: Path) -> None:
    by_kind = _platform_chain(tmp_path, "kind")
    by_platform = _platform_chain(tmp_path, "platform")
    linux = f"demo-1.1-{LINUX}.whl"
    # kind: 1.1's linux wheel follows 1.0's windows wheel (the last wheel): its binary is new to it.
    assert _upgrade(by_kind, linux)[1] > 300_000
    assert _upgrade(by_platform, linux)[0] and _upgrade(by_platform, linux)[1] < 4096
    # The first wheel of each platform has no previous one in the platform chain.
    assert not _upgrade(by_platform, f"demo-1.0-{WINDOWS}.whl")[0]
    assert _upgrade(by_kind, f"demo-1.0-{WINDOWS}.whl")[0]
    # The store is per project in every mode: what is new is the same.
    assert [r["new_bytes"] for r in by_kind] == [r["new_bytes"] for r in by_platform]


def test_release_chain_puts_a_wheel_after_its_own_sdist(tmp_path: Path) -> None:
    rows = _platform_chain(tmp_path, "release")
    assert _upgrade(rows, f"demo-1.0-{LINUX}.whl")[0]
    assert not _upgrade(rows, "demo-1.0.tar.gz")[0]
    assert _upgrade(rows, "demo-1.1.tar.gz")[0]  # after 1.0's last wheel


def test_subset_lock_keeps_newest_versions_of_one_kind(tmp_path: Path) -> None:
    kinds: tuple[tuple[Literal["sdist", "wheel"], str], ...] = (("sdist", "tar.gz"), ("wheel", "whl"))
    entries = [LockEntry(p, v, f"{p}-{v}.{ext}", f"https://x/{p}-{v}.{ext}", "0" * 64, 10, "", kind)
               for p in ("a", "b", "c") for v in ("1", "2", "3") for kind, ext in kinds]
    (tmp_path / "big.lock.json").write_text(dump_lock({
        "set": "big", "index_url": "https://x/simple/", "versions": 3, "all_wheels": False, "created": "",
        "entries": [dataclasses.asdict(e) for e in entries], "skipped": []}))
    lock = subset_lock("small", "big", ["b", "zz"], 2, "wheel", tmp_path)
    (tmp_path / "small.lock.json").write_text(dump_lock(lock))
    assert [e.filename for e in load_lock("small", tmp_path)] == ["b-2.whl", "b-3.whl"]
    assert lock["derived_from"] == {"set": "big", "lock_sha256": lock_digest("big", tmp_path), "kind": "wheel"}
    assert [s["project"] for s in lock["skipped"]] == ["zz"]
    assert json.loads((tmp_path / "small.lock.json").read_text())["index_url"] == "https://x/simple/"
