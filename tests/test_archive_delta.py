"""Which leaves of a new release are delta-encoded against which of the previous one, and the CLI that does it."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import dag_cbor
import pytest

from importer.adder import Adder
from importer.archive.delta import (
    SIBLING_MIN,
    DeltaReport,
    Distribution,
    delta_against_previous,
    loose_key,
    match_key,
    parse_archive_name,
    plan_deltas,
    previous_archive,
    sibling_key,
)
from importer.archive.recipe import read_root
from importer.dag.cid import RAW, cid_codec, format_cid
from importer.dag.dagpb import decode_node
from importer.dag.reader import Kind, LeafSpan, file_leaves, iter_directory, iter_tree_files, stat
from importer.dag.unixfs import decode_unixfs
from importer.profiles import resolve_settings
from importer.sinks.base import MemorySink
from importer.sinks.delta import MARGIN, MAX_REFS, reference_span
from importer.sinks.store import ArchiveRecord, BlockStore

from .archive_builders import build_with_backend, project_files, project_module, python_source, write_project
from .archive_checks import assert_roundtrip, import_json, sha256_file
from .conftest import RunCli

KiB = 1024
#: The default chunker's leaf size (``size-262144``), which the planned offsets below follow.
LEAF = 256 * KiB


# -- file names ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl",
     Distribution("numpy", "2.1.0", "wheel", "cp311-cp311-manylinux_2_17_x86_64")),
    ("Foo_Bar-1.0-1-py3-none-any.whl", Distribution("foo-bar", "1.0", "wheel", "py3-none-any")),
    ("zope.interface-6.0-py2.py3-none-any.whl", Distribution("zope-interface", "6.0", "wheel", "py2.py3-none-any")),
    ("requests-2.31.0.tar.gz", Distribution("requests", "2.31.0", "sdist", "")),
    ("my-pkg-name-2.0.zip", Distribution("my-pkg-name", "2.0", "sdist", "")),
    ("Django-1.4.tar.bz2", Distribution("django", "1.4", "sdist", "")),
    ("pkg__x-0.1rc1.TAR.GZ", Distribution("pkg-x", "0.1rc1", "sdist", "")),
])
def test_parse_archive_name_reads_project_version_kind_and_tags(name: str, expected: Distribution) -> None:
    assert parse_archive_name(name) == expected


@pytest.mark.parametrize("name", [
    "README.md", "pkg-1.0-py3-none.whl", "a-1-2-3-4-5-6.whl", "nodash.tar.gz", "pkg-.tar.gz", "-1.0.zip",
    "pkg-1.0.rar",
])
def test_parse_archive_name_of_anything_else_is_none(name: str) -> None:
    assert parse_archive_name(name) is None


def record(name: str, seq: int = 0) -> ArchiveRecord:
    return ArchiveRecord(name, bytes([seq]) * 4, b"\0" * 32, 1, float(seq))


def test_previous_archive_is_the_newest_import_with_the_same_tags() -> None:
    linux = "cp311-cp311-manylinux_2_17_x86_64"
    records = [record(f"pkg-1.0-{linux}.whl", 1), record("pkg-2.0-cp311-cp311-macosx_11_0_arm64.whl", 2),
               record(f"pkg-2.0-{linux}.whl", 3), record("pkg-2.5-cp312-cp312-win_amd64.whl", 4)]
    assert previous_archive(records, f"pkg-3.0-{linux}.whl") == records[2]
    # Import order decides, not the version: an older release imported later is "newer".
    assert previous_archive([records[2], records[0]], f"pkg-3.0-{linux}.whl") == records[0]


def test_previous_archive_takes_another_platform_when_none_has_the_same_tags() -> None:
    records = [record("pkg-1.0-cp311-cp311-win_amd64.whl", 1), record("pkg-1.1-cp311-cp311-macosx_11_0_arm64.whl", 2)]
    assert previous_archive(records, "pkg-2.0-cp312-cp312-manylinux_2_17_x86_64.whl") == records[1]


def test_previous_archive_skips_itself_the_same_build_other_projects_and_other_kinds() -> None:
    name = "pkg-2.0-py3-none-any.whl"
    records = [record("pkg-1.0-py3-none-any.whl", 1), record("pkg-3.0.tar.gz", 2), record("pkgx-1.9-py3-none-any.whl", 3),
               record("pkg-2.0-1-py3-none-any.whl", 4), record(name, 5), record("notes.txt", 6)]
    assert previous_archive(records, name) == records[0]
    assert previous_archive(records, "pkg-4.0.tar.gz") == records[1]
    assert previous_archive(records, "pkg-3.0.tar.gz") is None
    assert previous_archive(records, "notes.txt") is None
    # The same version on another platform is the previous archive when nothing else is there.
    assert previous_archive([record("pkg-2.0-cp311-cp311-win_amd64.whl")], name) == record(
        "pkg-2.0-cp311-cp311-win_amd64.whl")


@pytest.mark.parametrize(("old", "old_version", "new", "new_version"), [
    ("pkg-1.2/src/pkg/mod.py", "1.2", "pkg-1.3/src/pkg/mod.py", "1.3"),
    ("pkg-1.2.dist-info/RECORD", "1.2", "pkg-1.3.dist-info/RECORD", "1.3"),
    ("numpy.libs/libscipy_openblas64_-4b78795a.so", "2.0.0", "numpy.libs/libscipy_openblas64_-99e1c8f0.so", "2.1.0"),
    ("pkg/_lib-0123abcd.cpython-311-x86_64-linux-gnu.so", "1.0.1",
     "pkg/_lib-fedc9876.cpython-311-x86_64-linux-gnu.so", "1.0.2"),
])
def test_match_key_pairs_a_file_across_releases(old: str, old_version: str, new: str, new_version: str) -> None:
    assert match_key(old, old_version) == match_key(new, new_version)


def test_match_key_pairs_an_extension_module_across_single_digit_versions() -> None:
    path = "pkg/_ext.cpython-311-x86_64-linux-gnu.so"
    assert match_key(path, "1") == match_key(path, "2")


def test_match_key_strips_exactly_the_version_and_the_graft_hash() -> None:
    assert match_key("pkg-1.2/src/pkg/mod.py", "1.2") == "pkg-\0/src/pkg/mod.py"
    assert match_key("numpy.libs/libgfortran-040039e1.so.5.0.0", "2.0.0") == "numpy.libs/libgfortran.so.5.0.0"
    assert match_key("pkg/deadbeef.py", "") == "pkg/deadbeef.py"  # no dash: not a graft hash
    assert match_key("pkg/mod.py", "") == "pkg/mod.py"


def test_loose_key_makes_every_run_of_digits_alike() -> None:
    assert loose_key("pyarrow/libarrow.so.2600") == loose_key("pyarrow/libarrow.so.2500") == "pyarrow/libarrow.so.#"
    assert loose_key("pkg/mod.py") == "pkg/mod.py"


def crafted_wheel(path: Path, version: str, members: dict[str, bytes]) -> Path:
    """A wheel written by CPython's zipfile (deflate), named so the planner reads its version."""
    import zipfile

    target = path / f"pkg-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return target


def renamed_library_plan(tmp_path: Path, old_members: dict[str, bytes], new_members: dict[str, bytes]
                         ) -> tuple[dict[bytes, tuple[bytes, ...]], MemorySink, bytes, bytes]:
    """(candidate -> references, the blocks, old tree, new tree) from a crafted 1.0 wheel to a 2.0 wheel."""
    from importer.archive.importer import import_archive

    sink = MemorySink()
    settings = resolve_settings()
    old = import_archive(str(crafted_wheel(tmp_path, "1.0", old_members)), settings, sink).root
    new = import_archive(str(crafted_wheel(tmp_path, "2.0", new_members)), settings, sink).root
    plan = {c.cid: c.refs for c in plan_deltas(sink, new, sink, old)}
    return plan, sink, read_root(sink, old).tree, read_root(sink, new).tree


def test_plan_pairs_a_library_renamed_only_in_its_numbers(tmp_path: Path) -> None:
    library = python_source(7, 4000)
    changed = library[:1000] + b"# one more line\n" + library[1000:]
    plan, sink, old_tree, new_tree = renamed_library_plan(tmp_path, {"pkg/libfoo.so.2500": library},
                                                          {"pkg/libfoo.so.2600": changed})
    new_leaves = file_leaves(sink, dict(iter_tree_files(sink, new_tree))["pkg/libfoo.so.2600"])[1]
    old_leaves = {leaf.cid for leaf in file_leaves(sink, dict(iter_tree_files(sink, old_tree))["pkg/libfoo.so.2500"])[1]}
    leaf_plan = {cid: refs for cid, refs in plan.items() if cid in {leaf.cid for leaf in new_leaves}}
    assert set(leaf_plan) == {leaf.cid for leaf in new_leaves}  # every leaf moved by the insertion
    assert all(refs and set(refs) <= old_leaves for refs in leaf_plan.values())


def test_plan_leaves_a_renamed_file_unpaired_when_two_old_files_share_its_loose_key(tmp_path: Path) -> None:
    library = python_source(7, 4000)
    plan, sink, _, new_tree = renamed_library_plan(
        tmp_path, {"pkg/libfoo.so.2500": library, "pkg/libfoo.so.2501": library[::-1]},
        {"pkg/libfoo.so.2600": library + b"# more\n"})
    new_file = dict(iter_tree_files(sink, new_tree))["pkg/libfoo.so.2600"]
    assert not set(plan) & {new_file, *(leaf.cid for leaf in file_leaves(sink, new_file)[1])}


# -- leaves of a file --------------------------------------------------------------------------------

@pytest.mark.parametrize(("raw_leaves", "trickle"), [(True, False), (False, False), (True, True), (False, True)])
def test_file_leaves_cover_the_file_in_order_with_its_bytes(raw_leaves: bool, trickle: bool) -> None:
    data = python_source(3, 120)[:9000]  # 9 leaves of 1024 bytes, the last one 808
    sink = MemorySink()
    settings = resolve_settings(cid_version=1, raw_leaves=raw_leaves, chunker="size-1024", trickle=trickle,
                                max_file_links=3)  # 3 links a node: a tree two or more levels deep
    root = Adder(settings, sink).add_stream(io.BytesIO(data)).cid
    size, leaves = file_leaves(sink, root)
    assert size == len(data)
    assert [(leaf.offset, leaf.length) for leaf in leaves] == [(i * 1024, min(1024, len(data) - i * 1024))
                                                                for i in range(9)]
    for leaf in leaves:
        block = sink.get(leaf.cid)
        content = block if cid_codec(leaf.cid) == RAW else decode_unixfs(decode_node(block).data or b"").data
        assert content == data[leaf.offset:leaf.offset + leaf.length]
    assert (cid_codec(leaves[0].cid) == RAW) is raw_leaves


@pytest.mark.parametrize("raw_leaves", [True, False])
def test_file_of_one_block_is_its_own_single_leaf(raw_leaves: bool) -> None:
    sink = MemorySink()
    root = Adder(resolve_settings(cid_version=1, raw_leaves=raw_leaves), sink).add_stream(io.BytesIO(b"x" * 500)).cid
    assert file_leaves(sink, root) == (500, [LeafSpan(0, 500, root)])


# -- the reference window ------------------------------------------------------------------------------

def leaves(count: int, length: int) -> list[LeafSpan]:
    """``count`` contiguous old leaves of ``length`` bytes; leaf i's CID is ``bytes([i])``."""
    return [LeafSpan(i * length, length, bytes([i])) for i in range(count)]


def test_reference_span_takes_the_leaves_around_the_scaled_position_and_the_margin() -> None:
    assert MARGIN == 128 * KiB
    old = leaves(10, 100 * KiB)
    # A 100 KiB leaf at 500 KiB of a 1000 KiB file: window 372..728 KiB over the old file.
    assert reference_span(500 * KiB, 100 * KiB, 1000 * KiB, old, 1000 * KiB) == [bytes([i]) for i in (3, 4, 5, 6, 7)]
    # The same place of a file twice as long scales onto the same window.
    assert reference_span(1000 * KiB, 200 * KiB, 2000 * KiB, old, 1000 * KiB) == [bytes([i]) for i in (3, 4, 5, 6, 7)]
    # At the start: 0..228 KiB.
    assert reference_span(0, 100 * KiB, 1000 * KiB, old, 1000 * KiB) == [bytes([0]), bytes([1]), bytes([2])]
    # An old leaf that starts exactly where the window ends is outside it: window ends at 128 KiB + 1 byte.
    assert reference_span(0, 1, 1000 * KiB, leaves(4, 128 * KiB + 1), 1000 * KiB) == [bytes([0])]


def test_reference_span_keeps_the_max_refs_leaves_nearest_the_middle() -> None:
    assert MAX_REFS == 6
    old = leaves(100, 10 * KiB)
    # Window 372..728 KiB covers 36 leaves of 10 KiB; its middle is 550 KiB, so the six whose
    # centres are within 25 KiB of it stay, in file order.
    assert reference_span(500 * KiB, 100 * KiB, 1000 * KiB, old, 1000 * KiB) == [bytes([i]) for i in range(52, 58)]


def test_reference_span_of_nothing_to_reference_is_empty() -> None:
    old = leaves(3, 100)
    assert reference_span(0, 100, 300, [], 300) == []
    assert reference_span(0, 0, 300, old, 300) == []
    assert reference_span(0, 100, 0, old, 300) == []
    assert reference_span(0, 100, 300, old, 0) == []
    assert reference_span(0, 100, 300, [LeafSpan(0, 0, b"e"), *old], 300) == [bytes([0]), bytes([1]), bytes([2])]


# -- real releases ------------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Release:
    version: int
    wheel: Path
    sdist: Path


MODULE = project_module("hatchling")
#: About 609 kB of generated code: leaves at 0, 256 and 512 KiB. Each release inserts one short
#: function at its middle, so the first leaf stays and the other two shift by a few dozen bytes.
EVOLVING = python_source(1001, 8000)


def evolving_module(version: int) -> bytes:
    middle = len(EVOLVING) // 2
    inserted = b"".join(f"\ndef inserted_{k}(x):\n    return x + {k}\n".encode() for k in range(version - 1, 0, -1))
    return EVOLVING[:middle] + inserted + EVOLVING[middle:]


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> list[Release]:
    """Versions 1, 2 and 3 of the hatchling demo project, wheel and sdist; ``changed.py`` edits a little each time."""
    folder = tmp_path_factory.mktemp("delta-releases")
    built = []
    for version in (1, 2, 3):
        files = project_files("hatchling", version)
        files[f"{MODULE}/changed.py"] = evolving_module(version)
        write_project(folder / f"src-{version}", files)
        out = folder / f"out-{version}"
        built.append(Release(version, build_with_backend("hatchling", "wheel", folder / f"src-{version}", out),
                             build_with_backend("hatchling", "sdist", folder / f"src-{version}", out)))
    return built


def archive(release: Release, kind: str) -> Path:
    return release.wheel if kind == "wheel" else release.sdist


def leaf_places(store: BlockStore, root: bytes) -> dict[bytes, tuple[str, int, int]]:
    """Every leaf of the archive ``root``: ``cid -> (path, offset, length)``."""
    places = {}
    for path, cid in iter_tree_files(store, read_root(store, root).tree):
        for leaf in file_leaves(store, cid)[1]:
            places[leaf.cid] = (path, leaf.offset, leaf.length)
    return places


def structure_places(path: Path, root: bytes) -> dict[bytes, str]:
    """The archive's blocks that are not leaves, named: ``dir PATH``, ``file PATH``, ``recipe``, ``page N``."""
    with BlockStore(path, create=False) as store:
        archive = read_root(store, root)
        places = {archive.recipe: "recipe"}
        recipe = dag_cbor.decode(store.get(archive.recipe))
        assert isinstance(recipe, dict) and isinstance(recipe["pages"], list)
        places.update({bytes(page): f"page {i}" for i, page in enumerate(recipe["pages"])})  # type: ignore[arg-type]

        def walk(tree: bytes, prefix: str) -> None:
            places[tree] = f"dir {prefix.rstrip('/')}"
            for entry in iter_directory(store, tree):
                node = stat(store, entry.cid)
                if node.kind is Kind.DIRECTORY:
                    walk(entry.cid, prefix + entry.name + "/")
                elif len(file_leaves(store, entry.cid)[1]) > 1:
                    places[entry.cid] = f"file {prefix}{entry.name}"
        walk(archive.tree, "")
    return places


def _roots(store: BlockStore, *names: str) -> list[bytes]:
    by_name = {r.name: r.root for r in store.iter_archives()}
    return [by_name[name] for name in names]


#: Length of version 2's last leaf of ``changed.py``: what is left after two full leaves.
TAIL = len(evolving_module(2)) - 2 * LEAF
#: What changes from version 1 to 2, per kind: (path in version 2, leaf offset, leaf length) and
#: the old leaves' offsets it is planned against. The module's first leaf is unchanged, the two
#: after the insertion shifted; METADATA/PKG-INFO and pyproject.toml name the version; a wheel's
#: RECORD lists hashes. Every other file is the same and is no candidate.
WHEEL_PLAN = {
    (f"{MODULE}/changed.py", LEAF, LEAF): (0, LEAF, 2 * LEAF),
    (f"{MODULE}/changed.py", 2 * LEAF, TAIL): (LEAF, 2 * LEAF),
    (f"{MODULE}-2.0.dist-info/METADATA", 0, 159): (0,),
    (f"{MODULE}-2.0.dist-info/RECORD", 0, 756): (0,),
}
SDIST_PLAN = {
    (f"{MODULE}-2.0/{MODULE}/changed.py", LEAF, LEAF): (0, LEAF, 2 * LEAF),
    (f"{MODULE}-2.0/{MODULE}/changed.py", 2 * LEAF, TAIL): (LEAF, 2 * LEAF),
    (f"{MODULE}-2.0/PKG-INFO", 0, 159): (0,),
    (f"{MODULE}-2.0/pyproject.toml", 0, 238): (0,),
}


PLANS = {"wheel": WHEEL_PLAN, "sdist": SDIST_PLAN}
#: The blocks of structure planned against their counterparts in version 1 (new -> old): every
#: directory on the way to a changed file, the changed module's root node, the recipe and its page.
STRUCTURE = {
    "wheel": {"dir ": "dir ", f"dir {MODULE}": f"dir {MODULE}",
              f"dir {MODULE}-2.0.dist-info": f"dir {MODULE}-1.0.dist-info",
              f"file {MODULE}/changed.py": f"file {MODULE}/changed.py", "recipe": "recipe", "page 0": "page 0"},
    "sdist": {"dir ": "dir ", f"dir {MODULE}-2.0": f"dir {MODULE}-1.0",
              f"dir {MODULE}-2.0/{MODULE}": f"dir {MODULE}-1.0/{MODULE}",
              f"file {MODULE}-2.0/{MODULE}/changed.py": f"file {MODULE}-1.0/{MODULE}/changed.py",
              "recipe": "recipe", "page 0": "page 0"},
}
#: Those of them whose delta is smaller than the block: all but an sdist's tree, a node of one
#: link (to ``pkg-2.0/``) that costs less than a delta header naming its counterpart.
SHRUNK = {kind: set(places) - ({"dir "} if kind == "sdist" else set()) for kind, places in STRUCTURE.items()}


@pytest.mark.parametrize(("kind", "expected"), PLANS.items())
def test_plan_pairs_each_changed_leaf_with_the_old_leaves_of_the_same_file(
        releases: list[Release], kind: str, expected: dict[tuple[str, int, int], tuple[int, ...]],
        tmp_path: Path, cli: RunCli) -> None:
    store_path = tmp_path / "store"
    first = import_json(cli, archive(releases[0], kind), store_path, "--no-delta")
    second = import_json(cli, archive(releases[1], kind), store_path, "--no-delta")
    with BlockStore(store_path, create=False) as store:
        old_root, new_root = _roots(store, first["file"], second["file"])
        new_places, old_places = leaf_places(store, new_root), leaf_places(store, old_root)
        planned = plan_deltas(store, new_root, store, old_root)
    got = {new_places[c.cid]: c.refs for c in planned if c.cid in new_places}
    assert set(got) == set(expected)
    structure = {c.cid: c.refs for c in planned if c.cid not in new_places}
    new_nodes, old_nodes = structure_places(store_path, new_root), structure_places(store_path, old_root)
    assert {new_nodes[cid]: old_nodes[refs[0]] for cid, refs in structure.items() if len(refs) == 1} == \
        STRUCTURE[kind]
    assert all(len(refs) == 1 for refs in structure.values())
    for place, refs in got.items():
        old_paths = {old_places[ref][0] for ref in refs}
        assert len(old_paths) == 1 and match_key(old_paths.pop(), "1.0") == match_key(place[0], "2.0")
        assert tuple(old_places[ref][1] for ref in refs) == expected[place]


def test_delta_against_previous_without_a_previous_archive_or_siblings_does_nothing(tmp_path: Path) -> None:
    from importer.archive.importer import import_archive

    with BlockStore(tmp_path / "s") as store:
        wheel = crafted_wheel(tmp_path, "2.0", {"pkg/a.bin": noise(1, 300 * KiB), "pkg/b.bin": noise(2, 300 * KiB)})
        root = import_archive(str(wheel), resolve_settings(), store).root
        gone = record("pkg-1.0-py3-none-any.whl", 9)
        assert delta_against_previous(store, wheel.name, root, [gone]) == DeltaReport(None, 0, 0, 0)
        assert delta_against_previous(store, wheel.name, root) == DeltaReport(None, 0, 0, 0)


def test_delta_against_previous_of_an_unreadable_root_without_a_previous_archive_says_why(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        report = delta_against_previous(store, "pkg-2.0-py3-none-any.whl", b"\x01" * 4)
    assert (report.previous, report.candidates, report.rewritten, report.saved) == (None, 0, 0, 0)
    assert report.skipped is not None


# -- siblings: similar large files of one archive -----------------------------------------------------

def noise(seed: int, size: int) -> bytes:
    """``size`` incompressible bytes: zstd alone cannot shrink them, a delta against a copy can."""
    import random

    return random.Random(seed).randbytes(size)


def edited(data: bytes, *at: int) -> bytes:
    """``data`` with a few bytes inserted at each offset of ``at`` (a new version of a vendored file)."""
    for offset in sorted(at, reverse=True):
        data = data[:offset] + b"<new version>" + data[offset:]
    return data


EMBED = "pkg/embed"
BASE = noise(7, 600 * KiB)  # three 256 KiB leaves
SIBLINGS = {f"{EMBED}/tool-1.0.1-py3-none-any.whl": BASE,
            f"{EMBED}/tool-1.2-py3-none-any.whl": edited(BASE, 1000, 300_000),
            f"{EMBED}/tool-2.0-py3-none-any.whl": edited(BASE, 1000, 300_000, 500_000)}


def test_sibling_key_makes_the_versions_in_a_file_name_alike() -> None:
    assert sibling_key(f"{EMBED}/pip-26.0.1-py3-none-any.whl") == sibling_key(f"{EMBED}/pip-26.3-py3-none-any.whl") \
        == f"{EMBED}/pip-#-py#-none-any.whl"
    assert sibling_key("gen/sha256-x86_64-linux.S") == sibling_key("gen/sha512-x86_64-linux.S") == "gen/sha#-x#-linux.S"
    assert sibling_key(f"{EMBED}/setuptools-82.0.1-py3-none-any.whl") != sibling_key(f"{EMBED}/pip-26.3-py3-none-any.whl")
    assert sibling_key("other/pip-26.3-py3-none-any.whl") != sibling_key(f"{EMBED}/pip-26.0.1-py3-none-any.whl")


def sibling_plan(tmp_path: Path, members: dict[str, bytes]) -> tuple[dict[str, list[tuple[bytes, ...]]], dict[bytes, str]]:
    """The plan of a first archive (no previous one): path -> its leaves' references, and every leaf's path."""
    from importer.archive.importer import import_archive

    sink = MemorySink()
    root = import_archive(str(crafted_wheel(tmp_path, "1.0", members)), resolve_settings(), sink).root
    files = dict(iter_tree_files(sink, read_root(sink, root).tree))
    owner: dict[bytes, str] = {}  # a leaf two files share is the first one's
    for path, cid in files.items():
        for leaf in file_leaves(sink, cid)[1]:
            owner.setdefault(leaf.cid, path)
    plan: dict[str, list[tuple[bytes, ...]]] = {}
    for candidate in plan_deltas(sink, root):
        plan.setdefault(owner[candidate.cid], []).append(candidate.refs)
    return plan, owner


def test_plan_pairs_each_large_new_file_with_the_sibling_before_it_leaf_by_leaf(tmp_path: Path) -> None:
    plan, owner = sibling_plan(tmp_path, {**SIBLINGS, f"{EMBED}/other-1.0.whl": noise(8, 600 * KiB)})
    names = list(SIBLINGS)
    assert set(plan) == {names[1], names[2]}  # the first has no sibling before it; "other" has none
    # names[1]: the edit at byte 1000 shifts every leaf; names[2] shares its first leaf with names[1].
    for new, ref, leaves in ((names[1], names[0], 3), (names[2], names[1], 2)):
        assert len(plan[new]) == leaves
        assert all(refs and {owner[r] for r in refs} == {ref} for refs in plan[new])


def test_plan_leaves_small_siblings_and_siblings_in_other_directories_alone(tmp_path: Path) -> None:
    small = noise(9, SIBLING_MIN - 1)
    plan, _ = sibling_plan(tmp_path, {"pkg/a/tool-1.0.whl": BASE, "pkg/b/tool-1.1.whl": edited(BASE, 10),
                                      "pkg/c/lib-1.0.so": small, "pkg/c/lib-1.1.so": edited(small, 10)[:SIBLING_MIN - 1]})
    assert plan == {}


def test_plan_prefers_the_previous_release_over_a_sibling(tmp_path: Path) -> None:
    first, second = list(SIBLINGS)[:2]
    plan, sink, old_tree, new_tree = renamed_library_plan(
        tmp_path, {first: BASE, second: SIBLINGS[second]}, {first: BASE, second: edited(SIBLINGS[second], 400_000)})
    old_files, new_files = dict(iter_tree_files(sink, old_tree)), dict(iter_tree_files(sink, new_tree))
    old_second = {leaf.cid for leaf in file_leaves(sink, old_files[second])[1]}
    new_second = [leaf.cid for leaf in file_leaves(sink, new_files[second])[1]]
    planned = [plan[cid] for cid in new_second if cid in plan]
    assert planned and all(set(refs) <= old_second for refs in planned)


# -- through the CLI ---------------------------------------------------------------------------------------------

def store_stats(path: Path) -> dict[str, int]:
    with BlockStore(path, create=False) as store:
        stats = store.stats()
    return {"at_rest": stats.at_rest_bytes, "blocks": stats.blocks, "logical": stats.logical_bytes,
            **{f"{e.name} blocks": e.blocks for e in stats.encodings}}


def _root_of(store: Path, name: str) -> str:
    with BlockStore(store, create=False) as opened:
        return format_cid(_roots(opened, name)[0])


def delta_depths(path: Path) -> list[int]:
    """The depth of every delta row of the store at ``path``, smallest first."""
    with BlockStore(path, create=False) as store:
        return sorted(depth for _, depth, _ in store.iter_deltas())


def test_first_archive_stores_its_large_siblings_as_deltas_and_fetches_back(tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    wheel = crafted_wheel(tmp_path, "1.0", SIBLINGS)
    summary = assert_roundtrip(cli, wheel, store)
    assert summary["delta_against"] is None
    assert summary["delta_blocks"] == 5  # the second file's 3 leaves, the third's 2 (it shares one with the second)
    # Those 5 leaves hold 600 KiB + 344 KiB of noise, which zstd cannot shrink; as deltas a few hundred bytes each.
    assert summary["delta_saved_bytes"] > 900 * KiB
    assert delta_depths(store) == [1, 1, 1, 2, 2]  # the third's against the second's, themselves deltas
    rc, out, err = cli("store", "verify", "--store", store)
    assert rc == 0 and " 0 corrupt; 1 of 1 archives and pins complete" in out, err
    rc, out, _ = cli("auto", "--store", tmp_path / "text", wheel)
    assert rc == 0
    assert [line.split(",")[0] for line in out.splitlines() if "stored as deltas" in line] == [
        "  5 blocks stored as deltas against similar files of this archive"]


def test_siblings_already_committed_by_an_earlier_batch_are_left_as_they_are(tmp_path: Path) -> None:
    from importer.archive.importer import import_archive

    wheel = crafted_wheel(tmp_path, "1.0", SIBLINGS)
    # Batches of one block: every leaf is committed before the plan, as past 64 MiB of an archive.
    with BlockStore(tmp_path / "s", batch_bytes=1) as store:
        root = import_archive(str(wheel), resolve_settings(), store).root
        before = store.stats()
        report = delta_against_previous(store, wheel.name, root)
        after = store.stats()
    assert (report.previous, report.candidates, report.rewritten) == (None, 5, 0)
    assert (after.packs, after.pack_bytes, after.dead_bytes) == (before.packs, before.pack_bytes, 0)


def test_deleting_the_release_that_held_a_siblings_reference_keeps_the_next_release_exact(
        tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    _, second, third = SIBLINGS
    old = crafted_wheel(tmp_path, "1.0", SIBLINGS)
    new = crafted_wheel(tmp_path, "2.0", {second: SIBLINGS[second], third: SIBLINGS[third]})  # drops the first
    assert_roundtrip(cli, old, store)
    assert import_json(cli, new, store)["delta_against"] == old.name  # its files are the old ones: no new leaves
    assert cli("delete", old.name, "--store", store)[0] == 0
    rc, _, err = cli("store", "gc", "--store", store)
    assert rc == 0, err
    # The first file's leaves, the second's references, are gone: the second's leaves were
    # rewritten without them first (plain: the first's leaves were no deltas to splice from), and
    # the third's still read through the second's.
    assert delta_depths(store) == [2, 2]
    out_file = tmp_path / "out.whl"
    assert cli("fetch", new.name, "-o", out_file, "--store", store)[0] == 0
    assert sha256_file(out_file) == sha256_file(new)
    rc, out, err = cli("store", "verify", "--store", store)
    assert rc == 0 and " 0 corrupt; 1 of 1 archives and pins complete" in out, err


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_new_release_is_stored_as_deltas_and_every_release_fetches_back(
        releases: list[Release], kind: str, tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    summaries = [assert_roundtrip(cli, archive(r, kind), store, kind=kind) for r in releases]
    assert summaries[0]["delta_against"] is None and summaries[0]["delta_blocks"] == 0
    planned = len(PLANS[kind]) + len(SHRUNK[kind])
    for previous, summary in pairwise(summaries):
        assert summary["delta_against"] == previous["file"]
        assert summary["delta_blocks"] == planned  # every planned leaf shrank, and most structure
        assert summary["delta_saved_bytes"] > 25_000  # the 4 leaves: ~33 kB as zstd -9 frames, ~500 bytes as deltas
    # Version 3's blocks reference version 2's deltas: a chain of two.
    assert delta_depths(store) == [1] * planned + [2] * planned
    with BlockStore(store, create=False) as opened:
        deltas = {cid for cid, _, _ in opened.iter_deltas()}
        second = _roots(opened, summaries[1]["file"])[0]
    assert {name for cid, name in structure_places(store, second).items() if cid in deltas} == SHRUNK[kind]
    for release in releases:  # also the older ones, whose leaves the later deltas reference
        rc, _, err = cli("fetch", _root_of(store, archive(release, kind).name), "-o", tmp_path / "out", "--store", store,
                         "--force")  # each release replaces the previous one
        assert rc == 0, err
        assert sha256_file(tmp_path / "out") == sha256_file(archive(release, kind))
    rc, out, err = cli("store", "verify", "--store", store)
    blocks = store_stats(store)["blocks"]
    assert (rc, err, out) == (0, "", (f"verified {blocks} blocks: {blocks} ok, 0 corrupt; "
                                     f"{len(releases)} of {len(releases)} archives and pins complete\n"))


def test_import_says_how_many_leaves_became_deltas_against_which_archive(
        releases: list[Release], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    assert cli("wheel", "--store", store, releases[0].wheel)[0] == 0
    rc, out, _ = cli("wheel", "--store", store, releases[1].wheel)
    assert rc == 0
    lines = [line for line in out.splitlines() if "stored as deltas" in line]
    assert len(lines) == 1
    count, rest = lines[0].strip().split(" changed blocks stored as deltas against ")
    assert int(count) == len(WHEEL_PLAN) + len(SHRUNK["wheel"])
    name, saved = rest.split(", ")
    assert name == releases[0].wheel.name
    assert saved.endswith(" bytes smaller at rest") and int(saved.split()[0].replace(",", "")) > 25_000


def test_previous_archive_missing_blocks_skips_deltas_with_one_warning_and_the_import_succeeds(
        releases: list[Release], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    first = import_json(cli, releases[0].wheel, store)
    with BlockStore(store, create=False) as opened:
        old_tree = read_root(opened, _roots(opened, first["file"])[0]).tree
        changed = dict(iter_tree_files(opened, old_tree))[f"{MODULE}/changed.py"]
        leaf = file_leaves(opened, changed)[1][-1].cid
        assert opened.delete(leaf)  # the previous release is now damaged
    rc, out, err = cli("wheel", "--json", "--store", store, releases[1].wheel)
    assert rc == 0
    summary = json.loads(out)
    assert summary["delta_against"] == releases[0].wheel.name and summary["delta_blocks"] == 0
    assert summary["delta_skipped"] is not None and format_cid(leaf) in summary["delta_skipped"]
    warnings = err.strip().splitlines()
    assert len(warnings) == 1
    assert warnings[0].startswith(f"dpip-import wheel: {releases[1].wheel.name}: no deltas against {releases[0].wheel.name}: ")
    # The new release is whole and fetches back exactly.
    out_file = tmp_path / "out.whl"
    assert cli("fetch", summary["root"], "-o", out_file, "--store", store)[0] == 0
    assert sha256_file(out_file) == sha256_file(releases[1].wheel)


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_no_delta_store_is_larger_by_the_saved_bytes_until_optimize(
        releases: list[Release], kind: str, tmp_path: Path, cli: RunCli) -> None:
    with_delta, without = tmp_path / "delta", tmp_path / "plain"
    saved = 0
    for release in releases:
        saved += import_json(cli, archive(release, kind), with_delta, kind=kind)["delta_saved_bytes"]
        plain = import_json(cli, archive(release, kind), without, "--no-delta", kind=kind)
        assert "delta_against" not in plain and "delta_blocks" not in plain
    delta_stats, plain_stats = store_stats(with_delta), store_stats(without)
    # "saved" is against each block's own frame; in the plain store a block under 256 KiB shares
    # a frame with its neighbours and costs less, so the store saves less: about two thirds here.
    assert plain_stats["at_rest"] - saved <= delta_stats["at_rest"] <= plain_stats["at_rest"] - 0.5 * saved
    assert (delta_stats["blocks"], delta_stats["logical"]) == (plain_stats["blocks"], plain_stats["logical"])
    assert "zstd+delta blocks" not in plain_stats and "packed delta blocks" not in plain_stats

    rc, out, _ = cli("store", "optimize", "--store", without)
    assert rc == 0
    # The same plan; a committed block in a shared frame is rewritten only if its delta beats its
    # share of the frame, which the small structure blocks' deltas do not always do.
    count = int(out.split("stored ")[1].split(" changed blocks as deltas against the previous archive")[0])
    optimized = store_stats(without)  # the same plan, the same delta frames (in a new pack)
    assert 2 <= count < 2 * (len(PLANS[kind]) + len(SHRUNK[kind]))
    assert (optimized["blocks"], optimized["logical"]) == (delta_stats["blocks"], delta_stats["logical"])
    assert optimized["packed delta blocks"] == count and "zstd+delta blocks" not in optimized
    assert abs(optimized["at_rest"] - delta_stats["at_rest"]) <= 0.02 * delta_stats["at_rest"]
    assert set(delta_depths(without)) == set(delta_depths(with_delta)) == {1, 2}
    rc, _, _ = cli("store", "verify", "--store", without)
    assert rc == 0
    rc, out, _ = cli("store", "optimize", "--store", without)
    # Little left to do: compacting moved blocks into new, smaller frames, where a delta may now
    # beat a block's (larger) share of its frame.
    again = int(out.split("similar files of their archive, ")[1].split(" bytes smaller")[0])
    assert rc == 0 and 0 <= again < 0.02 * optimized["at_rest"]


def test_import_into_an_uncompressed_store_writes_no_delta(releases: list[Release], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    assert cli("store", "compression", "none", "--store", store)[0] == 0
    import_json(cli, releases[0].wheel, store)
    summary = assert_roundtrip(cli, releases[1].wheel, store, kind="wheel")
    assert (summary["delta_against"], summary["delta_blocks"], summary["delta_saved_bytes"]) == (
        releases[0].wheel.name, 0, 0)
    assert delta_depths(store) == []
