"""An archive's ``tree`` CID is the CID ``add -r --hidden`` gives its safely extracted files, ours and the JS
reference importer's (unixfs-v1-2025 profile).

The extractor here is written independently of ``importer.sources.names``, from the policy the
importer documents: a member is extracted when its name is valid UTF-8, relative, without ``..``
or empty components, not already taken and not below a file; it is a regular file (not
encrypted, stored or deflated for zips, not sparse for tars), a directory, or a symlink whose
target stays inside. The first member of a name wins; parents are created as needed.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .archive_builders import MATURIN_ZLIB_RS, BuiltProject, built_projects, maturin_wheel, python_source
from .archive_checks import import_json
from .conftest import RunCli
from .oracle_support import AddOptions, run_add, run_js, shared_dir
from .test_archive_odd_cases import CASES

_UTF8_FLAG = 1 << 11


@dataclass(frozen=True, slots=True)
class Entry:
    raw_name: bytes
    kind: str  # "file" | "dir" | "symlink" | "skip"
    data: bytes = b""
    target: bytes = b""


def _zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as z:
        for info in z.infolist():
            raw = info.orig_filename.encode("utf-8" if info.flag_bits & _UTF8_FLAG else "cp437")
            mode = info.external_attr >> 16 if info.create_system == 3 else 0
            if info.flag_bits & 1 or info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                yield Entry(raw, "skip")
            elif raw.endswith(b"/") or stat.S_ISDIR(mode):
                yield Entry(raw, "dir" if info.file_size == 0 else "skip")
            elif stat.S_ISLNK(mode):
                yield Entry(raw, "symlink", target=z.read(info))
            elif mode and stat.S_IFMT(mode) and not stat.S_ISREG(mode):
                yield Entry(raw, "skip")
            else:
                yield Entry(raw, "file", z.read(info))


def _tar_entries(path: Path) -> Iterator[Entry]:
    with tarfile.open(path, encoding="utf-8", errors="surrogateescape") as t:
        for info in t:
            raw = info.name.encode("utf-8", "surrogateescape")
            if info.isdir():
                yield Entry(raw, "dir")
            elif info.issym():
                yield Entry(raw, "symlink", target=info.linkname.encode("utf-8", "surrogateescape"))
            elif info.isreg() and not info.issparse() and not any(k.startswith("GNU.sparse.") for k in info.pax_headers):
                f = t.extractfile(info)
                yield Entry(raw, "file", f.read() if f else b"")
            else:
                yield Entry(raw, "skip")


def _parts(raw: bytes, is_dir: bool) -> list[str] | None:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if "\x00" in name or name.startswith("/"):
        return None
    if is_dir:
        name = name.removesuffix("/")
    parts = name.split("/")
    if "" in parts or ".." in parts:
        return None
    return [p for p in parts if p != "."] or None


def _escapes(parent: list[str], target: bytes) -> bool:
    try:
        text = target.decode("utf-8")
    except UnicodeDecodeError:
        return True
    if text.startswith("/"):
        return True
    depth = len(parent)
    for part in text.split("/"):
        depth += -1 if part == ".." else 0 if part in ("", ".") else 1
        if depth < 0:
            return True
    return False


def safe_extract(archive: Path, dest: Path) -> int:
    """Extract the members that can live in the tree into ``dest``; return how many were extracted."""
    entries = _zip_entries(archive) if zipfile.is_zipfile(archive) and not tarfile.is_tarfile(archive) \
        else _tar_entries(archive)
    dest.mkdir()
    kinds: dict[tuple[str, ...], str] = {}  # path -> "dir" | "file" (files and symlinks)
    explicit: set[tuple[str, ...]] = set()
    count = 0
    for entry in entries:
        if entry.kind == "skip":
            continue
        parts = _parts(entry.raw_name, entry.kind == "dir")
        if parts is None:
            continue
        if entry.kind == "symlink" and _escapes(parts[:-1], entry.target):
            continue
        key = tuple(parts)
        if any(kinds.get(key[:i]) == "file" for i in range(1, len(key))):
            continue  # below a file
        existing = kinds.get(key)
        if existing is not None and not (existing == "dir" and entry.kind == "dir" and key not in explicit):
            continue  # taken (an implied directory may still be listed once)
        for i in range(1, len(key)):
            kinds.setdefault(key[:i], "dir")
        kinds[key] = "dir" if entry.kind == "dir" else "file"
        if entry.kind == "dir":
            explicit.add(key)
        target = dest.joinpath(*parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.kind == "dir":
            target.mkdir(exist_ok=True)
        elif entry.kind == "symlink":
            os.symlink(entry.target.decode("utf-8"), target)
        else:
            target.write_bytes(entry.data)
        count += 1
    return count


def _tar_only(name: str) -> bool:
    return CASES[name].suffix.startswith(".tar")


def _archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    projects: dict[tuple[str, int], BuiltProject] = built_projects(shared_dir(tmp_path_factory) / "archive-projects")
    folder = tmp_path_factory.mktemp("tree-eq")
    out: dict[str, Path] = {}
    for (backend, version), built in projects.items():
        if version == 1:
            out[f"{backend}-wheel"] = built.wheel
            out[f"{backend}-sdist"] = built.sdist
    for name, case in CASES.items():
        path = folder / f"{name}{case.suffix}"
        path.write_bytes(case.data())
        out[name] = path
    maturin = folder / "rustpkg-0.1.0-cp311-cp311-linux_x86_64.whl"
    maturin.write_bytes(maturin_wheel(MATURIN_ZLIB_RS, "rustpkg", "0.1.0", {
        "rustpkg/__init__.py": python_source(5, 100), ".hidden/config": b"dot files count with --hidden"}))
    out["maturin"] = maturin
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _archives(tmp_path_factory)


ARCHIVE_NAMES = sorted([f"{b}-{k}" for b in ("flit", "hatchling", "poetry", "setuptools") for k in ("wheel", "sdist")]
                       + list(CASES) + ["maturin"])


@pytest.mark.parametrize("name", ARCHIVE_NAMES)
def test_tree_cid_equals_add_of_safely_extracted_files(name: str, archives: dict[str, Path], tmp_path: Path,
                                                       cli: RunCli) -> None:
    archive = archives[name]
    summary = import_json(cli, archive, tmp_path / "store", "-n")
    extracted = tmp_path / "x"
    safe_extract(archive, extracted)
    added = run_add(AddOptions(hidden=True), [extracted])
    assert summary["tree"] == added.root


@pytest.mark.oracle
def test_tree_cid_equals_js_add_of_extracted_files_unixfs_v1_2025(archives: dict[str, Path], tmp_path: Path,
                                                                    cli: RunCli) -> None:
    options = AddOptions(profile="unixfs-v1-2025", hidden=True)
    trees, jobs = [], []
    for i, name in enumerate(ARCHIVE_NAMES):
        summary = import_json(cli, archives[name], tmp_path / "store", "-n", "--profile", "unixfs-v1-2025")
        extracted = tmp_path / f"x{i}"
        safe_extract(archives[name], extracted)
        trees.append(summary["tree"])
        jobs.append(options.js_job(extracted))
        assert summary["tree"] == run_add(options, [extracted]).root, name
    results = run_js(jobs)
    mismatches = [(name, tree, js.root) for name, tree, js in zip(ARCHIVE_NAMES, trees, results, strict=True)
                  if tree != js.root]
    assert not mismatches
