"""``dpip-import add`` gives the same CIDs as the JS UnixFS importer run with Kubo's semantics.

Every option that shapes a DAG is crossed with inputs chosen at its edges: files at and around
chunk multiples and at the 174/175- and 1024/1025-chunk fan-out boundaries (up to ~45 MiB),
trees with every kind of entry (also with --preserve-mode/--preserve-mtime), and directories
just below, at and above the HAMT switch under both size estimations. The JS oracle runs once per test session on every job (one node process);
each test then runs our importer in-process and compares the root and every printed entry.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.cli.main import main

from .oracle_data import (
    HAMT_THRESHOLD,
    DirSizing,
    MiB,
    make_attr_tree,
    make_flat_dir,
    make_mixed_tree,
    sized_names,
    stream_names,
    write_random_file,
)
from .oracle_support import (
    AddOptions,
    ImportResult,
    build_once,
    dpip_import_executable,
    js_results_once,
    run_add,
    run_js,
    shared_dir,
)

pytestmark = pytest.mark.oracle

DEFAULT_CHUNK = 256 * 1024  # Kubo's size-262144
PROFILES = ("unixfs-v0-2015", "legacy-cid-v0", "unixfs-v1-2025")


def leaf_variants(**fixed: object) -> list[AddOptions]:
    """cid-version 0/1 x raw-leaves unset/true/false x balanced/trickle, plus ``fixed``."""
    return [AddOptions(cid_version=v, raw_leaves=raw, trickle=trickle).with_(**fixed)
            for v, raw, trickle in itertools.product((0, 1), (None, True, False), (False, True))]


def around(chunk: int, counts: Iterable[int], deltas: Iterable[int] = (-1, 0, 1)) -> list[int]:
    """File sizes ``n * chunk + d``: the edges where another leaf or another level appears."""
    return sorted({n * chunk + d for n in counts for d in deltas if n * chunk + d >= 0})


# ---------------------------------------------------------------------------------------------
# Files: (options, file names) per test; a file called "r<size>" holds stream bytes, "z<size>"
# zeros (identical chunks, so the same leaf is linked many times).


@dataclass(frozen=True, slots=True)
class FileCase:
    options: AddOptions
    files: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.options.id}-{self.files[0]}..{self.files[-1]}x{len(self.files)}"


def names(sizes: Iterable[int], prefix: str = "r") -> tuple[str, ...]:
    return tuple(f"{prefix}{s}" for s in sorted(set(sizes)))


def trickle_edges(links: int, depth: int) -> list[int]:
    """Leaf counts at which a trickle tree with ``links`` leaves per node completes a layer.

    A full subtree of depth d holds S(d) = links + 4 * (S(1) + ... + S(d-1)) leaves; the root
    holds ``links`` leaves, then 4 subtrees of depth 1, 4 of depth 2, ... (boxo trickle,
    depthRepeat 4), so layer d completes at links + 4 * (S(1) + ... + S(d)).
    """
    full: list[int] = []
    for _ in range(depth):
        full.append(links + 4 * sum(full))
    return [links + 4 * sum(full[:d]) for d in range(depth + 1)]


# size-1 chunks with 2 or 3 links per node: deep trees from tiny files, sized around every full
# balanced level (links^k) and every completed trickle layer.
DEEP_SIZES = names([*range(11), *around(1, [2**k for k in range(2, 10)] + [3**k for k in range(2, 6)]),
                    *around(1, trickle_edges(2, 3) + trickle_edges(3, 3)), 100])
# size-3 chunks with 174 or 1024 links: one and two full levels, one leaf past them, and the
# first completed trickle layer of 174 links (174 + 4 * 174 = 870 leaves).
WIDE_SIZES = names([0, *around(3, [1, 2, 173, 174, 175, 176, 348, 349, 869, 870, 871, 1023, 1024, 1025], (-1, 0)),
                    3 * 2049])
# 174^2 = 30276 leaves fill two levels exactly; one more leaf needs a third.
SQUARE_SIZES = names(around(2, [174 * 174], (0, 1)))
MULTIPLE_CHUNKERS = (None, "size-1048576", "size-65536", "size-4097")
# ~43.5 MiB: 174 default chunks fill the root; one more byte makes a 2-level tree.
BIG_SIZES = names([174 * DEFAULT_CHUNK, 174 * DEFAULT_CHUNK + 1]) + names([174 * DEFAULT_CHUNK + 1], "z")
PROFILE_SIZES = names([0, 1, *around(DEFAULT_CHUNK, [1]), *around(MiB, [1]), 2 * MiB + 3]) + names([3 * MiB], "z")
PROFILE_OVERRIDES: tuple[dict[str, object], ...] = (
    {}, {"cid_version": 0}, {"cid_version": 1}, {"raw_leaves": True}, {"raw_leaves": False},
    {"trickle": True}, {"chunker": "size-65536"}, {"max_file_links": 3},
)
# size-1024 chunks under each profile: 174 and 1024 leaves are its two fan-out edges.
PROFILE_EDGE_SIZES = names(around(1024, [174, 1024], (0, 1)))


#: boxo chunker.ChunkSizeLimit = 2 MiB - 256: the largest size-N Kubo accepts (leaves stay under
#: the 2 MiB block limit with room for the UnixFS wrapping).
MAX_CHUNK = 2 * MiB - 256
MAX_CHUNK_SIZES = names(around(MAX_CHUNK, [1], (0, 1)))


def multiples(chunker: str | None) -> tuple[str, ...]:
    c = int(chunker.removeprefix("size-")) if chunker else DEFAULT_CHUNK
    return names([0, 1, *around(c, [1, 2]), 3 * c + 1]) + names([3 * c], "z")


FILE_CASES: list[FileCase] = [
    *(FileCase(o, DEEP_SIZES) for links in (2, 3)
      for o in leaf_variants(chunker="size-1", max_file_links=links)),
    *(FileCase(o, WIDE_SIZES) for links in (174, 1024)
      for o in leaf_variants(chunker="size-3", max_file_links=links)),
    *(FileCase(AddOptions(chunker="size-2").with_(**kw), SQUARE_SIZES) for kw in (
        {}, {"trickle": True, "cid_version": 1})),
    *(FileCase(o, multiples(chunker)) for chunker in MULTIPLE_CHUNKERS
      for o in leaf_variants(chunker=chunker)),
    *(FileCase(o, BIG_SIZES) for o in (
        AddOptions(), AddOptions(cid_version=1), AddOptions(raw_leaves=True), AddOptions(trickle=True),
        AddOptions(cid_version=1, trickle=True))),
    *(FileCase(AddOptions(profile=p).with_(**kw), PROFILE_SIZES) for p in PROFILES for kw in PROFILE_OVERRIDES),
    *(FileCase(AddOptions(profile=p, chunker="size-1024", trickle=t), PROFILE_EDGE_SIZES)
      for p in PROFILES for t in (False, True)),
    *(FileCase(AddOptions(chunker=f"size-{MAX_CHUNK}").with_(**kw), MAX_CHUNK_SIZES)
      for kw in ({}, {"cid_version": 1}, {"trickle": True})),
]


def build_files(folder: Path) -> None:
    for name in sorted({n for case in FILE_CASES for n in case.files}):
        size = int(name[1:])
        if name[0] == "z":
            with open(folder / name, "wb") as f:
                f.truncate(size)  # a sparse file reads back as zeros
        else:
            write_random_file(folder / name, size)


@pytest.fixture(scope="session")
def files_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(shared_dir(tmp_path_factory) / "files", build_files)


@pytest.fixture(scope="session")
def js_files(files_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    """The JS importer's root CID of every (case, file), computed in one node process."""
    keys = [(case.id, name) for case in FILE_CASES for name in case.files]
    jobs = [case.options.js_job(files_dir / name) for case in FILE_CASES for name in case.files]
    results = js_results_once(shared_dir(tmp_path_factory), jobs)
    return {key: r.root for key, r in zip(keys, results, strict=True)}


@pytest.mark.parametrize("case", FILE_CASES, ids=lambda c: c.id)
def test_file_cids_eq_js(case: FileCase, files_dir: Path, js_files: dict[tuple[str, str], str]) -> None:
    ours = run_add(case.options, [files_dir / n for n in case.files]).entries
    expected = {name: js_files[case.id, name] for name in case.files}
    assert ours == expected


def test_file_cases_cover_every_option_combination() -> None:
    seen = {(c.options.cid_version, c.options.raw_leaves, c.options.trickle, c.options.max_file_links)
            for c in FILE_CASES if c.options.profile is None}
    for v, raw, trickle, links in itertools.product((0, 1), (None, True, False), (False, True), (2, 3, 174, 1024)):
        assert (v, raw, trickle, links) in seen
    assert {c.options.profile for c in FILE_CASES} == {None, *PROFILES}


# ---------------------------------------------------------------------------------------------
# Trees


TREE_OPTIONS: tuple[AddOptions, ...] = (
    AddOptions(), AddOptions(hidden=True), AddOptions(cid_version=1), AddOptions(raw_leaves=True),
    AddOptions(cid_version=1, raw_leaves=False), AddOptions(profile="unixfs-v1-2025"),
    AddOptions(profile="unixfs-v1-2025", hidden=True), AddOptions(wrap=True),
    AddOptions(wrap=True, hidden=True, cid_version=1), AddOptions(trickle=True, chunker="size-1000"),
    AddOptions(chunker="size-65536", max_file_links=2, hidden=True),
)

# Directories sized by Kubo's estimate to land at the threshold -1, exactly on it, and +1 byte.
# Each file holds b"x": a CIDv0 dag-pb leaf `0a 07 08 02 12 01 78 18 01` (34-byte CID, Tsize
# 9) without raw leaves; with CIDv1 a raw leaf (36-byte CID, Tsize 1).
THRESHOLD_LEAVES = {"v0": (AddOptions(), 34, 9), "v1raw": (AddOptions(cid_version=1), 36, 1)}


@dataclass(frozen=True, slots=True)
class ThresholdDir:
    estimation: str
    leaves: str
    delta: int

    @property
    def name(self) -> str:
        return f"thr-{self.estimation}-{self.leaves}-{self.delta:+d}"

    @property
    def options(self) -> AddOptions:
        return THRESHOLD_LEAVES[self.leaves][0].with_(hamt_estimation=self.estimation)

    def sizing(self) -> DirSizing:
        _, cid_len, tsize = THRESHOLD_LEAVES[self.leaves]
        return DirSizing.links(cid_len) if self.estimation == "links" else DirSizing.block(cid_len, tsize)


THRESHOLD_DIRS = [ThresholdDir(e, leaves, d) for e in ("links", "block") for leaves in THRESHOLD_LEAVES
                  for d in (-1, 0, 1)]

# A directory far over a small threshold holding every kind of entry, so the HAMT options can
# be crossed cheaply: 300 files, a small and a sharded sub-directory, symlinks, empties, hidden.
# (The JS importer leaves unflushed sub-directories out of its estimate; both sub-directories are
# far enough from the threshold for that not to matter.)
SMALL_THRESHOLD = 1000


def build_hamt_mix(path: Path) -> None:
    make_flat_dir(path, [f"{i}-{n}" for i, n in enumerate(stream_names("hamt-mix", 300, 12))], content=None)
    make_flat_dir(path / "small-sub", ["a", "b", "c"])
    make_flat_dir(path / "big-sub", stream_names("big-sub", 60, 20), content=None)
    (path / "empty-dir").mkdir()
    (path / "empty-file").write_bytes(b"")
    (path / ".hidden").write_bytes(b"hidden\n")
    (path / "link").symlink_to("0-" + stream_names("hamt-mix", 1, 12)[0])
    write_random_file(path / "multi-chunk.bin", 3 * DEFAULT_CHUNK + 7)


HAMT_MIX_OPTIONS = tuple(
    AddOptions(cid_version=v, hamt_threshold=SMALL_THRESHOLD, hamt_estimation=e, hamt_fanout=f)
    for v, e, f in itertools.product((0, 1), ("links", "block"), (None, 8, 16, 1024))
) + (AddOptions(hamt_threshold=SMALL_THRESHOLD, hidden=True, wrap=True),
     AddOptions(profile="unixfs-v1-2025", hamt_threshold=SMALL_THRESHOLD, trickle=True))

# js-ipfs-unixfs hash-parity-with-go-ipfs.spec.ts "auto-sharding" (spec §8.5): 1343 entries stay
# a basic directory, 1344 tip it over 256 KiB of links bytes. Published CIDs (CIDv1, raw leaves).
AUTOSHARD_NAME = ("long name to fill out bytes to make the sharded directory test flip over the sharded"
                  " directory limit because link names are included in the directory entry ")
AUTOSHARD_VECTORS = {
    1343: "bafybeihecq4rpl4nw3cgfb2uiwltgsmw5sutouvuldv5fxn4gfbihvnalq",
    1344: "bafybeigyvxs6og5jbmpaa43qbhhd5swklqcfzqdrtjgfh53qjon6hpjaye",
}


# Trees for --preserve-mode/--preserve-mtime: the JS importer mirrors Kubo there only for trees of
# one-chunk files or of multi-chunk files (see unixfs_import.mjs), so there is one of each.
ATTR_TREES = {"attrs-small": [0, 1, 1000, DEFAULT_CHUNK], "attrs-big": [DEFAULT_CHUNK + 1, 600_000, MiB + 1]}
ATTR_OPTIONS = tuple(
    AddOptions(preserve_mode=mode, preserve_mtime=mtime).with_(**extra)
    for mode, mtime in ((True, False), (False, True), (True, True))
    for extra in ({}, {"cid_version": 1}, {"trickle": True}, {"hidden": True, "raw_leaves": False})
)


def build_trees(folder: Path) -> None:
    make_mixed_tree(folder / "mixed")
    for name, sizes in ATTR_TREES.items():
        make_attr_tree(folder / name, sizes)
    for t in THRESHOLD_DIRS:
        names_ = sized_names(t.sizing(), HAMT_THRESHOLD + t.delta, seed=t.name)
        make_flat_dir(folder / t.name, names_)
    build_hamt_mix(folder / "hamt-mix")
    for count in AUTOSHARD_VECTORS:
        make_flat_dir(folder / f"autoshard-{count}", [AUTOSHARD_NAME + str(i) for i in range(count)], content=None)


@dataclass(frozen=True, slots=True)
class TreeCase:
    options: AddOptions
    tree: str

    @property
    def id(self) -> str:
        return f"{self.tree}-{self.options.id}"


TREE_CASES: list[TreeCase] = [
    *(TreeCase(o, "mixed") for o in TREE_OPTIONS),
    *(TreeCase(t.options, t.name) for t in THRESHOLD_DIRS),
    # the v1 profile = CIDv1, raw leaves, block estimation: the same bytes as the block/v1raw dirs
    *(TreeCase(AddOptions(profile="unixfs-v1-2025"), t.name) for t in THRESHOLD_DIRS
      if (t.estimation, t.leaves) == ("block", "v1raw")),
    *(TreeCase(o, "hamt-mix") for o in HAMT_MIX_OPTIONS),
    *(TreeCase(AddOptions(cid_version=1), f"autoshard-{n}") for n in AUTOSHARD_VECTORS),
    *(TreeCase(o, tree) for tree in ATTR_TREES for o in ATTR_OPTIONS),
]


@pytest.fixture(scope="session")
def trees_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(shared_dir(tmp_path_factory) / "trees", build_trees)


@pytest.fixture(scope="session")
def js_trees(trees_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ImportResult]:
    jobs = [case.options.js_job(trees_dir / case.tree) for case in TREE_CASES]
    results = js_results_once(shared_dir(tmp_path_factory), jobs)
    return {case.id: r for case, r in zip(TREE_CASES, results, strict=True)}


@pytest.mark.parametrize("case", TREE_CASES, ids=lambda c: c.id)
def test_tree_cids_eq_js(case: TreeCase, trees_dir: Path, js_trees: dict[str, ImportResult]) -> None:
    expected = js_trees[case.id]
    run = run_add(case.options, [trees_dir / case.tree])
    assert run.root == expected.root
    assert run.entries == dict(expected.entries)


@pytest.mark.parametrize("t", THRESHOLD_DIRS, ids=lambda t: t.name)
def test_threshold_dir_is_sharded_only_above_threshold(t: ThresholdDir, js_trees: dict[str, ImportResult]) -> None:
    # Guards the generator: the JS importer (strict ">", as Kubo since v0.40) must shard exactly
    # the +1 directories, or the tests above would not be probing the switch.
    kind = js_trees[TreeCase(t.options, t.name).id].root_type
    assert kind == ("hamt-sharded-directory" if t.delta > 0 else "directory")


@pytest.mark.parametrize(("count", "cid"), AUTOSHARD_VECTORS.items())
def test_autoshard_vector_js_and_ours_give_published_cid(count: int, cid: str, trees_dir: Path,
                                                        js_trees: dict[str, ImportResult]) -> None:
    options = AddOptions(cid_version=1)
    assert js_trees[TreeCase(options, f"autoshard-{count}").id].root == cid
    assert run_add(options, [trees_dir / f"autoshard-{count}"]).root == cid


# Several paths wrapped in one directory (`add -w P...`): a file, a directory, a symlink, an
# empty file. The last option set makes the wrapper a HAMT: its links estimate is 200 bytes (160
# for the JS importer, which counts the unflushed "nested" as 0) and that of "nested" 120 (JS: 80),
# so a 150-byte threshold shards the wrapper alone in both.
WRAP_PATHS = ("mixed/a.txt", "mixed/nested", "mixed/link-rel", "mixed/empty.bin", "attrs-big/f0")
WRAP_OPTIONS = (AddOptions(wrap=True), AddOptions(wrap=True, cid_version=1),
                AddOptions(wrap=True, profile="unixfs-v1-2025", trickle=True),
                AddOptions(wrap=True, hamt_threshold=150, hamt_fanout=16))


@pytest.fixture(scope="session")
def js_wrapped(trees_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[ImportResult]:
    jobs = [o.js_job([trees_dir / p for p in WRAP_PATHS]) for o in WRAP_OPTIONS]
    return js_results_once(shared_dir(tmp_path_factory), jobs)


@pytest.mark.parametrize("index", range(len(WRAP_OPTIONS)), ids=[o.id for o in WRAP_OPTIONS])
def test_wrapped_paths_eq_js(index: int, trees_dir: Path, js_wrapped: list[ImportResult]) -> None:
    run = run_add(WRAP_OPTIONS[index], [trees_dir / p for p in WRAP_PATHS])
    assert run.root == js_wrapped[index].root
    assert run.entries == dict(js_wrapped[index].entries)


# ---------------------------------------------------------------------------------------------
# Output modes and the real console script


def test_quiet_flags_print_js_cids(trees_dir: Path, js_trees: dict[str, ImportResult]) -> None:
    options = AddOptions(hidden=True)
    expected = js_trees[TreeCase(options, "mixed").id]
    full = run_add(options, [trees_dir / "mixed"])
    only_root = run_add_raw(options, trees_dir / "mixed", "-Q")
    cids_only = run_add_raw(options, trees_dir / "mixed", "-q")
    assert only_root == [expected.root]
    assert cids_only == [cid for cid, _ in full.lines]
    assert cids_only[-1] == expected.root


def run_add_raw(options: AddOptions, path: Path, *flags: str) -> list[str]:
    """Words ``dpip-import add -r -n FLAGS PATH`` prints (for the -Q/-q output modes)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["add", "-r", "-n", *flags, *options.cli_args(), str(path)]) == 0
    return out.getvalue().split()


@pytest.mark.parametrize("case", [TREE_CASES[0], TreeCase(AddOptions(profile="unixfs-v1-2025"), "thr-block-v1raw-+1")],
                         ids=lambda c: c.id)
def test_console_script_root_eq_js(case: TreeCase, trees_dir: Path, js_trees: dict[str, ImportResult]) -> None:
    proc = subprocess.run([str(dpip_import_executable()), "add", "-r", "-Q", "-n", *case.options.cli_args(),
                           str(trees_dir / case.tree)], capture_output=True, text=True, check=False, timeout=300)
    assert (proc.returncode, proc.stdout.strip(), proc.stderr) == (0, js_trees[case.id].root, "")


# ---------------------------------------------------------------------------------------------
# The oracle itself: its mapping of Kubo's options reproduces CIDs Kubo published


def build_vector_inputs(folder: Path) -> None:
    (folder / "planets").mkdir()
    (folder / "planets" / "mars.txt").write_bytes(b"Hello Mars!\n")
    (folder / "planets" / "venus.txt").write_bytes(b"Hello Venus!\n")
    for name, mode, mtime_ns in (("m640", 0o640, None), ("t1604320482", None, 1604320482 * 10**9),
                                 ("m764", 0o764, None), ("tn", None, 1603539720 * 10**9 + 54321),
                                 ("all", 0o764, 1603539720 * 10**9 + 54321)):
        (folder / name).write_bytes(b"")
        if mode is not None:
            (folder / name).chmod(mode)
        if mtime_ns is not None:
            os.utime(folder / name, ns=(mtime_ns, mtime_ns))
    (folder / "s1").symlink_to("nothing")
    os.utime(folder / "s1", ns=(1604320482 * 10**9,) * 2, follow_symlinks=False)
    (folder / "d713").mkdir()
    (folder / "d713").chmod(0o713)
    with open(folder / "zeros", "wb") as f:
        f.truncate(ZEROS_VECTOR_SIZE)


MODE, MTIME = AddOptions(preserve_mode=True), AddOptions(preserve_mtime=True)
#: js-ipfs-unixfs hash-parity-with-go-ipfs: 45,900,000 zero bytes (spec §8.5), 176 leaves.
ZEROS_VECTOR_SIZE = 45_900_000
#: ipfs-unixfs-spec.md §8.3 (sharness t0040, t0047) and §8.5: (input, options, CID).
KUBO_VECTORS = (
    ("planets", AddOptions(), "QmWSgS32xQEcXMeqd3YPJLrNBLSdsfYCep2U7CFkyrjXwY"),
    ("planets", AddOptions(raw_leaves=True), "QmfWfQfKCY5Ukv9peBbxM5vqWM9BzmqUSXvdCgjT2wsiBT"),
    ("planets", AddOptions(cid_version=1), "bafybeih7e5dmkyk25up5vxug4q3hrg2fxbzf23dfrac2fns5h7z4aa7ioi"),
    ("planets", AddOptions(cid_version=1, raw_leaves=False),
     "bafybeif5tuep5ap2d7zyhbktucey75aoacxufgt6i3v4gebmixyipnyp7y"),
    ("m640", MODE, "QmQLgxypSNGNFTuUPGCecq6dDEjb6hNB5xSyVmP3cEuNtq"),
    ("t1604320482", MTIME, "QmQ6kErEW8kztQFV8vbwNU8E4dmtGsYpRiboiLxUEwibvj"),
    ("s1", MTIME, "QmbJwotgtr84JxcnjpwJ86uZiyMoxbZuNH4YrdJMypkYaB"),
    ("m764", MODE, "QmchD3BN8TQ3RW6jPLxSaNkqvfuj7syKhzTRmL4EpyY1Nz"),
    ("tn", MTIME, "QmaKH8H5rXBUBCX4vdxi7ktGQEL7wejV7L9rX2qpZjwncz"),
    ("all", MODE.with_(preserve_mtime=True), "QmUkxrtBA8tPjwCYz1HrsoRfDz6NgKut3asVeHVQNH4C8L"),
    ("d713", MODE, "QmQ1ABnw2iip7sj23EzzBZ9T77KyyfESP6SUboiXPyzNQe"),
    ("zeros", AddOptions(), "QmRdPboiJQoZ5cdazR9a8vGqdJvWg6M5bfdtUSKNHpuscj"),
    ("zeros", AddOptions(trickle=True), "QmdZcefqMZ3tzdS4CRBN5s1c67eS3nQzN8TNXFBYfgofoy"),
)


def test_js_oracle_reproduces_kubo_published_vectors(tmp_path: Path) -> None:
    build_vector_inputs(tmp_path)
    results = run_js([options.js_job(tmp_path / name) for name, options, _ in KUBO_VECTORS], processes=1)
    assert [r.root for r in results] == [cid for _, _, cid in KUBO_VECTORS]


# Kubo's own IPIP-499 vectors (kubo test/cli/cid_profiles_test.go, Kubo >= 0.40): inputs from the
# ChaCha20 stream of oracle_data (files: the first N bytes for a seed; directories: files holding
# b"x" named by createDeterministicFiles). (name, profile, CID); the 1 GiB v1 file is left out.
KUBO_PROFILE_FILES = {  # name: (seed, size)
    "v0-chunk": ("chunk-v0-seed", DEFAULT_CHUNK), "v0-chunk+1": ("chunk-v0-seed", DEFAULT_CHUNK + 1),
    "v0-links": ("v0-seed", 174 * DEFAULT_CHUNK), "v0-links+1": ("v0-seed", 174 * DEFAULT_CHUNK + 1),
    "v1-chunk": ("chunk-v1-seed", MiB), "v1-chunk+1": ("chunk-v1-seed", MiB + 1),
}
KUBO_PROFILE_DIRS = {  # name: (seed, files, name length, last name length)
    "v0-dir-at": ("hamt-unixfs-v0-2015", 4096, 30, 30),  # 4096 * (30 + 34) = 262144
    "v0-dir-over": ("hamt-unixfs-v0-2015", 4033, 31, 31),  # 4033 * (31 + 34) = 262145
    "v1-dir-at": ("hamt-unixfs-v1-2025", 4766, 11, 21),  # 4 + 4765 * 55 + 65 = 262144
    "v1-dir-over": ("hamt-unixfs-v1-2025", 4766, 11, 22),  # 4 + 4765 * 55 + 66 = 262145
}
KUBO_PROFILE_VECTORS = (
    ("v0-chunk", "unixfs-v0-2015", "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE"),
    ("v0-chunk+1", "unixfs-v0-2015", "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ"),
    ("v0-links", "unixfs-v0-2015", "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2"),
    ("v0-links+1", "unixfs-v0-2015", "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW"),
    ("v0-dir-at", "unixfs-v0-2015", "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN"),
    ("v0-dir-over", "unixfs-v0-2015", "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP"),
    ("v1-chunk", "unixfs-v1-2025", "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta"),
    ("v1-chunk+1", "unixfs-v1-2025", "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64"),
    ("v1-dir-at", "unixfs-v1-2025", "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"),
    ("v1-dir-over", "unixfs-v1-2025", "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu"),
)


def build_profile_vectors(folder: Path) -> None:
    for name, (seed, size) in KUBO_PROFILE_FILES.items():
        write_random_file(folder / name, size, seed=seed)
    for name, (seed, count, length, last) in KUBO_PROFILE_DIRS.items():
        make_flat_dir(folder / name, stream_names(seed, count, length, last))


@pytest.fixture(scope="session")
def profile_vectors_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_once(shared_dir(tmp_path_factory) / "profile-vectors", build_profile_vectors)


@pytest.fixture(scope="session")
def js_profile_vectors(profile_vectors_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    jobs = [AddOptions(profile=p).js_job(profile_vectors_dir / name) for name, p, _ in KUBO_PROFILE_VECTORS]
    return [r.root for r in js_results_once(shared_dir(tmp_path_factory), jobs)]


def test_js_oracle_reproduces_kubo_profile_vectors(js_profile_vectors: list[str]) -> None:
    assert js_profile_vectors == [cid for _, _, cid in KUBO_PROFILE_VECTORS]


@pytest.mark.parametrize(("name", "profile", "cid"), KUBO_PROFILE_VECTORS, ids=[v[0] for v in KUBO_PROFILE_VECTORS])
def test_kubo_profile_vector_eq_ours(name: str, profile: str, cid: str, profile_vectors_dir: Path) -> None:
    assert run_add(AddOptions(profile=profile), [profile_vectors_dir / name]).root == cid
