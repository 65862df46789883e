"""``python -m bench othertools``: what the tools a user could pick instead make of a run's release chains.

Issue 14 asks the store to beat "every tool a user could pick, with exact archives", measured on
the same chains. For each named project this command takes the run's archives in the run's order
(the chain ``bench realstore`` imports) and stores them with each tool, in a scratch directory
of its own, measuring the bytes the tool's repository takes on disk (``du``-style: the sizes of
its files):

* ``restic`` and ``borg`` *archives as files*: each release's archives backed up as they are
  (restic repository v2, its default ``auto`` compression; borg ``zstd,19``, no encryption).
  These keep the exact archives, like the store.
* ``borg`` *zstd-19 on the unpacked files*: each archive unpacked, each release's trees one borg
  archive. Loses the archives' bytes (their compression, order, timestamps).
* ``git``: each release's unpacked trees (``sdist/``, ``wheel/``) committed in turn, then
  ``git gc --aggressive --prune=now``; the ``.git`` directory. Loses the archives too.
* ``tar | zstd -19 --long=31``: one tar of every release's unpacked trees, in order, compressed
  as one stream (single-threaded). Loses the archives.
* the run's ``delta-zstd`` bound: each version's content a ``zstd -19 --long=31 --patch-from``
  patch against the previous version of the same kind (:mod:`bench.delta_zstd`).

A tool that is not installed (``restic``, ``borg``: ``apt-get install restic borgbackup``) gets
"-" in its column, never a guess. Archives are the benchmark's verified downloads; they are
unpacked with tarfile's ``data`` filter and zipfile (names kept inside the target).

    python -m bench othertools --run runs/unseen7-v5 --packages pydantic starlette
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from importer.archive.delta import parse_archive_name

from .download_cache import cache_dir
from .realstore import BOUND, chain_arguments, chain_of, stored_bytes
from .report import MiB

#: A passphrase restic insists on (its 0.14 has no ``--insecure-no-password``); the repository is
#: scratch, thrown away after it is measured.
_RESTIC_PASSWORD: Final = "dpip-bench-scratch"
#: Columns, in the order of issue 14's table; each is a tool's repository size on disk.
TOOLS: Final = ("restic archives", "borg archives", "borg zstd-19 files", "git gc --aggressive",
                "tar zstd -19 --long=31", "patch-from bound")


@dataclass(slots=True)
class Sizes:
    """One project's (or the sum's) archive bytes and each tool's bytes on disk (None: not installed)."""

    archive_bytes: int = 0
    tools: dict[str, int | None] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, other: Sizes) -> None:
        self.archive_bytes += other.archive_bytes
        for name in TOOLS:
            mine, theirs = self.tools.get(name, 0), other.tools.get(name)
            self.tools[name] = None if mine is None or theirs is None else mine + theirs
            self.seconds[name] = self.seconds.get(name, 0.0) + other.seconds.get(name, 0.0)


def tree_bytes(path: Path) -> int:
    """The bytes of every regular file under ``path`` (what the repository holds on disk)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def unpack(archive: Path, into: Path) -> None:
    """Unpack a wheel, or an sdist (.tar.gz, .tar.bz2, .zip), into ``into``; names stay inside it."""
    into.mkdir(parents=True)
    if archive.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(into)
    else:
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")


def _run(argv: Sequence[str], cwd: Path | None = None, env: dict[str, str] | None = None,
         stdin: int | None = None, stdout: int | None = subprocess.DEVNULL) -> None:
    done = subprocess.run(argv, check=False, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
    if done.returncode:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"othertools: {argv[0]} {argv[1]} exited {done.returncode}: {last}")


def _releases(files: list[Path]) -> list[list[Path]]:
    """The chain's files grouped by release, in order: an sdist and its wheel are one release."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        dist = parse_archive_name(f.name)
        groups.setdefault(dist.version if dist else f.name, []).append(f)
    return list(groups.values())


def _restic(releases: list[list[Path]], work: Path) -> int | None:
    if not shutil.which("restic"):
        return None
    repo = work / "restic"
    env = {**os.environ, "RESTIC_PASSWORD": _RESTIC_PASSWORD, "RESTIC_CACHE_DIR": str(work / "restic-cache")}
    _run(["restic", "init", "--repo", str(repo), "--repository-version", "2"], env=env)
    for release in releases:
        _run(["restic", "backup", "--repo", str(repo), *map(str, release)], env=env)
    return tree_bytes(repo)


def _borg(sources: list[list[Path]], work: Path, name: str) -> int | None:
    if not shutil.which("borg"):
        return None
    repo = work / name
    env = {**os.environ, "BORG_BASE_DIR": str(work / "borg-home"), "BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK": "yes"}
    _run(["borg", "init", "--encryption", "none", str(repo)], env=env)
    for i, paths in enumerate(sources):
        _run(["borg", "create", "--compression", "zstd,19", f"{repo}::r{i}", *map(str, paths)], env=env)
    return tree_bytes(repo)


def _git(trees: list[Path], work: Path) -> int:
    repo = work / "git"
    repo.mkdir()
    _run(["git", "init", "-q", str(repo)])
    # gc.auto=0: no automatic gc in the background after a commit, which would refuse the one below.
    ident = ["-c", "user.name=bench", "-c", "user.email=bench@localhost", "-c", "gc.auto=0"]
    for i, tree in enumerate(trees):
        for old in repo.iterdir():
            if old.name != ".git":
                shutil.rmtree(old)
        for part in tree.iterdir():
            shutil.copytree(part, repo / part.name, symlinks=True)
        _run(["git", "-C", str(repo), "add", "-A", "-f"])
        _run(["git", "-C", str(repo), *ident, "commit", "-q", "--allow-empty", "-m", f"release {i}"])
    _run(["git", "-C", str(repo), "gc", "-q", "--aggressive", "--prune=now"])
    return tree_bytes(repo / ".git")


def _tar_zstd(trees: list[Path], work: Path) -> int:
    out = work / "all.tar.zst"
    with out.open("wb") as sink:
        tar = subprocess.Popen(["tar", "-C", str(work / "trees"), "-cf", "-", *[t.name for t in trees]],
                               stdout=subprocess.PIPE)
        assert tar.stdout is not None
        _run(["zstd", "-q", "-19", "--long=31", "-T1", "-c"], stdin=tar.stdout.fileno(), stdout=sink.fileno())
        tar.stdout.close()
        if tar.wait() != 0:
            raise subprocess.CalledProcessError(tar.returncode, "tar")
    return out.stat().st_size


def measure_project(run_dir: Path, package: str, scratch: Path) -> Sizes:
    """Every tool over one project's chain; the scratch space is removed before returning."""
    events, chain = chain_of(run_dir, package)
    files = [cache_dir() / name for name in chain["file"]]
    sizes = Sizes(int(chain["archive_bytes"].sum()))
    work = Path(tempfile.mkdtemp(prefix=f"othertools-{package}-", dir=scratch))
    try:
        releases = _releases(files)
        trees = []
        for i, release in enumerate(releases):
            tree = work / "trees" / f"r{i:02d}"
            for archive in release:
                unpack(archive, tree / ("wheel" if archive.name.endswith(".whl") else "sdist"))
            trees.append(tree)
        steps: dict[str, Callable[[], int | None]] = {
            "restic archives": lambda: _restic(releases, work),
            "borg archives": lambda: _borg(releases, work, "borg-archives"),
            "borg zstd-19 files": lambda: _borg([[t] for t in trees], work, "borg-files"),
            "git gc --aggressive": lambda: _git(trees, work),
            "tar zstd -19 --long=31": lambda: _tar_zstd(trees, work),
        }
        for name, step in steps.items():
            start = time.perf_counter()
            sizes.tools[name] = step()
            sizes.seconds[name] = time.perf_counter() - start
            print(f"{package}: {name} {sizes.tools[name]} B in {sizes.seconds[name]:.0f} s", file=sys.stderr, flush=True)
        sizes.tools["patch-from bound"] = stored_bytes(events, BOUND)
    finally:
        shutil.rmtree(work)
    return sizes


def format_row(name: str, s: Sizes) -> list[str]:
    row = [name, f"{s.archive_bytes / MiB:,.2f}"]
    for tool in TOOLS:
        size = s.tools.get(tool)
        row.append("-" if not size else f"{size / MiB:,.2f} ({s.archive_bytes / size:.2f}x)")
    return row


def cmd_othertools(args: argparse.Namespace) -> int:
    from .report import _table

    run_dir = Path(args.run)
    scratch = Path(args.dir or tempfile.gettempdir())
    rows, total = [], Sizes()
    for package in args.packages:
        sizes = measure_project(run_dir, package, scratch)
        total.add(sizes)
        rows.append(format_row(package, sizes))
        print(" | ".join(rows[-1]), file=sys.stderr, flush=True)
    if len(rows) > 1:
        rows.append(format_row("all (sum)", total))
    header = ["project", "archives MiB", *(f"{t} MiB (archives / it)" for t in TOOLS)]
    print(_table(header, rows))
    seconds = ", ".join(f"{t} {total.seconds.get(t, 0.0):,.0f} s" for t in TOOLS[:-1])
    print(f"\ntime spent: {seconds}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("othertools", help="restic, borg, git, tar+zstd over a run's chains: bytes on disk")
    chain_arguments(p)
    p.add_argument("--dir", help="scratch directory (default: the temporary directory); emptied after each project")
    p.set_defaults(handler=cmd_othertools)
