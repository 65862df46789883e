"""Benchmark datasets: package lists, the lock files resolved from a PEP 691 index, and their downloads.

A set ``NAME`` is ``datasets/NAME.txt`` (one project per line, ``#`` comments) and its committed
lock ``datasets/NAME.lock.json``, written by ``python -m bench lock --packages NAME`` (``make lock
PACKAGES=NAME``). The lock pins every file (URL, sha256, size), so every later run measures the
same bytes; ``python -m bench download --packages NAME`` fills the cache ahead of a run. Lock
layout::

    {"set": NAME, "index_url": URL, "versions": N, "all_wheels": bool, "created": ISO 8601,
     "entries": [LockEntry fields...], "skipped": [{"project", "version", "reason"}...]}

Entries are in list order of the projects, releases oldest first, the sdist before its wheel(s);
the selection rule is :func:`bench.pypi_index.select_releases`.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from importer.mirror.names import normalize as normalize_name
from importer.mirror.upstream import DEFAULT_INDEX_URL

from .download_cache import Downloads, cache_dir, ensure_downloaded
from .pypi_index import ProjectNotFound, Skip, fetch_project_page, parse_project_page, select_releases

__all__ = [
    "DATASETS_DIR", "Downloads", "LockEntry", "Skip", "build_lock", "cache_dir", "dump_lock", "ensure_downloaded",
    "load_lock", "lock_digest", "lock_path", "read_package_list", "register", "resolve_index_url", "subset_lock",
]

#: The committed package lists and locks: ``<repo>/datasets``.
DATASETS_DIR = Path(__file__).resolve().parent.parent / "datasets"
#: Project pages fetched at once while locking; PyPI's CDN serves these cheaply.
LOCK_JOBS = 8


@dataclass(frozen=True, slots=True)
class LockEntry:
    """One pinned file of a dataset."""

    project: str  # PEP 503 normalized
    version: str  # PEP 440 normalized
    filename: str
    url: str
    sha256: str  # hex
    size: int
    upload_time: str  # ISO 8601, as the index gives it
    kind: Literal["sdist", "wheel"]


class DatasetError(Exception):
    """A set that has no list or lock, or a lock that does not parse."""


def _checked_name(set_name: str) -> str:
    if not set_name or "/" in set_name or "\\" in set_name or set_name.startswith("."):
        raise DatasetError(f"invalid set name {set_name!r}: use the stem of a datasets/*.txt file")
    return set_name


def lock_path(set_name: str, root: Path = DATASETS_DIR) -> Path:
    return root / f"{_checked_name(set_name)}.lock.json"


def read_package_list(set_name: str, root: Path = DATASETS_DIR) -> list[str]:
    """The normalized projects of ``<root>/<set>.txt`` in file order, duplicates dropped."""
    path = root / f"{_checked_name(set_name)}.txt"
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        known = sorted(p.stem for p in root.glob("*.txt"))
        raise DatasetError(f"no package list {path} (known sets: {', '.join(known) or 'none'})") from None
    names = (normalize_name(line.split("#", 1)[0].strip()) for line in lines)
    return list(dict.fromkeys(n for n in names if n))


def load_lock(set_name: str, root: Path = DATASETS_DIR) -> list[LockEntry]:
    """The entries of ``<root>/<set>.lock.json`` in lock order."""
    path = lock_path(set_name, root)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [LockEntry(**e) for e in data["entries"]]
    except FileNotFoundError:
        raise DatasetError(f"no lock {path}: run `make lock PACKAGES={set_name}` first") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a lock file ({e})") from None


def lock_digest(set_name: str, root: Path = DATASETS_DIR) -> str:
    """sha256 of the lock file's bytes: names the exact dataset a result was measured on."""
    return hashlib.sha256(lock_path(set_name, root).read_bytes()).hexdigest()


def resolve_index_url(explicit: str | None = None) -> str:
    """``--index-url``, else ``$PIP_INDEX_URL`` (as pip does), else pypi.org's Simple API."""
    return explicit or os.environ.get("PIP_INDEX_URL") or DEFAULT_INDEX_URL


def _lock_project(project: str, index_url: str, versions: int, all_wheels: bool
                  ) -> tuple[list[LockEntry], list[Skip], bool]:
    """(entries, skips, whether the index failed) for one project."""
    try:
        page, page_url = fetch_project_page(index_url, project)
    except ProjectNotFound:
        return [], [Skip(project, "", "project not found on the index (HTTP 404)")], False
    except (OSError, ValueError) as e:
        return [], [Skip(project, "", f"index error: {e}")], True
    files = parse_project_page(page, project, page_url)
    releases, skips = select_releases(files, versions, all_wheels, project, page.get("versions", ()))
    if not releases:
        skips.append(Skip(project, "", "no release with an sdist"))
    entries = [
        LockEntry(project, str(f.version), f.filename, f.url, f.sha256, f.size, f.upload_time, f.kind)
        for release in releases
        for f in release
    ]
    return entries, skips, False


def build_lock(set_name: str, projects: Sequence[str], index_url: str, versions: int, all_wheels: bool,
               jobs: int = LOCK_JOBS) -> tuple[dict[str, Any], int]:
    """The lock document for ``projects`` and how many projects the index failed to serve."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        results = list(pool.map(lambda p: _lock_project(p, index_url, versions, all_wheels), projects))
    entries = [e for r in results for e in r[0]]
    skipped = [s for r in results for s in r[1]]
    lock = {
        "set": set_name,
        "index_url": index_url,
        "versions": versions,
        "all_wheels": all_wheels,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "entries": [dataclasses.asdict(e) for e in entries],
        "skipped": [dataclasses.asdict(s) for s in skipped],
    }
    return lock, sum(r[2] for r in results)


def dump_lock(lock: dict[str, Any]) -> str:
    """The lock as JSON with one entry per line, so a re-lock reads as a per-file diff."""
    lines = ["{"]
    for key, value in lock.items():
        if isinstance(value, list):
            items = ",\n".join(f"  {json.dumps(v)}" for v in value)
            lines.append(f" {json.dumps(key)}: [\n{items}\n ]," if value else f" {json.dumps(key)}: [],")
        else:
            lines.append(f" {json.dumps(key)}: {json.dumps(value)},")
    lines[-1] = lines[-1].removesuffix(",")
    return "\n".join(lines) + "\n}\n"


# -- command line (registered by bench/__main__.py) ------------------------------------------------


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.1f} MiB"


def cmd_lock(args: argparse.Namespace) -> int:
    root = Path(args.datasets_dir)
    projects = read_package_list(args.packages, root)
    index_url = resolve_index_url(args.index_url)
    lock, failures = build_lock(args.packages, projects, index_url, args.versions, args.all_wheels, args.jobs)
    path = lock_path(args.packages, root)
    path.write_text(dump_lock(lock), encoding="utf-8")
    entries = lock["entries"]
    releases = {(e["project"], e["version"]) for e in entries}
    print(f"{path}: {len(projects)} projects, {len(releases)} releases, {len(entries)} files, "
          f"{_mib(sum(e['size'] for e in entries))} (index {index_url})")
    for s in lock["skipped"]:
        print(f"  skipped {s['project']} {s['version'] or '(project)'}: {s['reason']}", file=sys.stderr)
    if failures:
        print(f"{failures} project(s) could not be read from the index: the lock is incomplete, run it again",
              file=sys.stderr)
        return 1
    return 0


def subset_lock(set_name: str, source: str, projects: Sequence[str], versions: int, kind: str | None,
                root: Path = DATASETS_DIR) -> dict[str, Any]:
    """A lock of ``projects`` cut from the committed lock of ``source`` (no index needed, files cached).

    Keeps each project's newest ``versions`` versions (0: all) and, with ``kind``, only sdists or
    wheels; the lock records where it came from (``derived_from`` and that lock's sha256).
    """
    wanted = set(projects)
    entries = [e for e in load_lock(source, root) if e.project in wanted and (kind is None or e.kind == kind)]
    if versions > 0:
        order: dict[str, list[str]] = {}
        for e in entries:
            order.setdefault(e.project, [])
            if e.version not in order[e.project]:
                order[e.project].append(e.version)
        keep = {(p, v) for p, vs in order.items() for v in vs[-versions:]}
        entries = [e for e in entries if (e.project, e.version) in keep]
    missing = sorted(wanted - {e.project for e in entries})
    source_doc = json.loads(lock_path(source, root).read_text(encoding="utf-8"))
    return {
        "set": set_name,
        "index_url": source_doc.get("index_url", DEFAULT_INDEX_URL),
        "versions": versions,
        "all_wheels": bool(source_doc.get("all_wheels", False)),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "derived_from": {"set": source, "lock_sha256": lock_digest(source, root), "kind": kind},
        "entries": [dataclasses.asdict(e) for e in entries],
        "skipped": [{"project": p, "version": "", "reason": f"not in the {source} lock"} for p in missing],
    }


def cmd_subset(args: argparse.Namespace) -> int:
    root = Path(args.datasets_dir)
    lock = subset_lock(args.packages, args.source, read_package_list(args.packages, root), args.versions,
                       args.kind, root)
    path = lock_path(args.packages, root)
    path.write_text(dump_lock(lock), encoding="utf-8")
    entries = lock["entries"]
    print(f"{path}: {len({e['project'] for e in entries})} projects, {len(entries)} files, "
          f"{_mib(sum(e['size'] for e in entries))} (from {args.source})")
    for s in lock["skipped"]:
        print(f"  skipped {s['project']}: {s['reason']}", file=sys.stderr)
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    entries = load_lock(args.packages, Path(args.datasets_dir))
    result = ensure_downloaded(entries, jobs=args.jobs, progress=not args.no_progress)
    total = sum(e.size for e in entries if e.filename in result)
    print(f"{args.packages}: {len(result)}/{len(entries)} files verified in {cache_dir()}, {_mib(total)}; "
          f"fetched {_mib(result.bytes_fetched)} in {result.seconds:.1f} s")
    for name, reason in sorted(result.failed.items()):
        print(f"  failed {name}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``lock`` and ``download`` to the ``python -m bench`` parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--packages", required=True, metavar="SET", help="a datasets/SET.txt list, e.g. smoke")
    common.add_argument("--datasets-dir", default=str(DATASETS_DIR), help=argparse.SUPPRESS)
    p = sub.add_parser("lock", parents=[common], help="resolve a package list into datasets/SET.lock.json")
    p.add_argument("--versions", type=int, default=10, metavar="N", help="newest N final releases (10)")
    p.add_argument("--all-wheels", action="store_true", help="take every wheel of a release, not one")
    p.add_argument("--index-url", help=f"PEP 691 index (default $PIP_INDEX_URL, else {DEFAULT_INDEX_URL})")
    p.add_argument("--jobs", type=int, default=LOCK_JOBS, help="project pages fetched at once")
    p.set_defaults(handler=cmd_lock)
    p = sub.add_parser("subset", parents=[common], help="cut datasets/SET.lock.json from another set's lock")
    p.add_argument("--from", dest="source", required=True, metavar="SOURCE", help="the set whose lock to cut from")
    p.add_argument("--versions", type=int, default=0, metavar="N", help="newest N versions (0: all in SOURCE)")
    p.add_argument("--kind", choices=("sdist", "wheel"), help="only sdists or only wheels")
    p.set_defaults(handler=cmd_subset)
    p = sub.add_parser("download", parents=[common], help="fetch and verify a locked set into the cache")
    p.add_argument("--jobs", type=int, default=8, help="parallel downloads (8)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_download)
