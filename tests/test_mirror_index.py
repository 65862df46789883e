"""``dpip-import mirror index``: the repository as a deterministic UnixFS tree, equal to ``add -r`` of its files."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from importer.adder import Adder
from importer.archive.recipe import read_root
from importer.dag.cid import format_cid, parse_cid
from importer.dag.reader import Kind, iter_directory, iter_file, resolve, stat
from importer.mirror.state import MirrorState
from importer.mirror.tree import build_index, index_settings
from importer.sinks.base import BlockSource, MemorySink
from importer.sinks.store import BlockStore

from .conftest import RunCli
from .mirror_support import YANKED, Dist, FakeIndex, serving, shared_dists


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    return shared_dists(tmp_path_factory)


@pytest.fixture
def index(dists: list[Dist]) -> Iterator[FakeIndex]:
    yield from serving(dists)


def synced(cli: RunCli, index: FakeIndex, store: Path, *extra: str) -> str:
    rc, out, err = cli("mirror", "sync", "--packages", "alpha", "beta", "--index-url", index.url, "--store", str(store),
                       "--no-progress", *extra)
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.startswith("index "))
    return line.split()[1].rstrip(":")


def read(source: BlockSource, root: str, path: str) -> bytes:
    return b"".join(iter_file(source, resolve(source, parse_cid(root), path)))


def materialize(source: BlockSource, cid: bytes, target: Path) -> None:
    """Write the tree ``cid`` to disk (what ``ipfs get`` does)."""
    target.mkdir()
    for entry in iter_directory(source, cid):
        node = stat(source, entry.cid)
        if node.kind is Kind.DIRECTORY:
            materialize(source, entry.cid, target / entry.name)
        else:
            (target / entry.name).write_bytes(b"".join(iter_file(source, entry.cid)))


def test_index_cid_is_stable_across_stores_and_runs(cli: RunCli, index: FakeIndex, tmp_path: Path) -> None:
    first = synced(cli, index, tmp_path / "a")
    second = synced(cli, index, tmp_path / "b")
    assert first == second
    rc, out, _ = cli("mirror", "index", "--store", str(tmp_path / "a"))
    assert rc == 0 and out.startswith(f"index {first}: 2 projects, 8 files, 0 project pages rebuilt\n")


def test_one_new_release_changes_only_its_project_path(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                        dists: list[Dist]) -> None:
    store = tmp_path / "store"
    new = [d for d in dists if (d.project, d.version) == ("alpha", "2.0")]
    index.dists[:] = [d for d in dists if d not in new]
    before = synced(cli, index, store)
    index.dists[:] = dists
    rc, out, _ = cli("mirror", "sync", "--packages", "alpha", "beta", "--index-url", index.url, "--store", str(store),
                     "--no-progress")
    assert rc == 0 and "1 project pages rebuilt" in out
    after = next(line for line in out.splitlines() if line.startswith("index ")).split()[1].rstrip(":")
    with BlockStore(store, create=False) as s:
        def cid(root: str, path: str) -> bytes:
            return resolve(s, parse_cid(root), path)

        assert cid(before, "simple/beta") == cid(after, "simple/beta")
        assert cid(before, "simple/index.html") == cid(after, "simple/index.html")  # same projects listed
        assert cid(before, "simple/alpha") != cid(after, "simple/alpha")
        assert cid(before, "simple") != cid(after, "simple") and before != after
        old_alpha = {e.name: e.cid for e in iter_directory(s, cid(before, "simple/alpha"))}
        new_alpha = {e.name: e.cid for e in iter_directory(s, cid(after, "simple/alpha"))}
    changed = {n for n in new_alpha if old_alpha.get(n) != new_alpha[n]}
    assert changed == {"index.html", "index.json", "alpha-2.0-py3-none-any.whl.metadata"}


def test_index_tree_is_what_add_r_gives_for_its_files_also_when_sharded(cli: RunCli, index: FakeIndex,
                                                                        tmp_path: Path) -> None:
    store = tmp_path / "store"
    root = synced(cli, index, store)
    # A 40-byte threshold makes every directory of the tree a HAMT, as a big mirror's simple/ is.
    base = index_settings()
    sharded = replace(base, directory=replace(base.directory, hamt_threshold=40))
    with BlockStore(store, create=False) as s, MirrorState(store) as state:
        materialize(s, parse_cid(root), tmp_path / "tree")
        built = build_index(s, state, settings=sharded)
        assert stat(s, built.simple).unixfs.type.name == "HAMT_SHARD"  # type: ignore[union-attr]
    for settings, expected in ((base, root), (sharded, format_cid(built.root))):
        added = Adder(settings, MemorySink()).add_path(str(tmp_path / "tree"), recursive=True)
        assert format_cid(added.cid) == expected


def test_pages_say_what_the_index_said_and_name_each_archive_root(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                                  dists: list[Dist]) -> None:
    store = tmp_path / "store"
    root = synced(cli, index, store)
    with BlockStore(store, create=False) as s:
        page = json.loads(read(s, root, "simple/alpha/index.json"))
        html = read(s, root, "simple/alpha/index.html").decode()
        listing = json.loads(read(s, root, "simple/index.json"))
        assert listing == {"meta": {"api-version": "1.1"}, "projects": [{"name": "alpha"}, {"name": "beta"}]}
        assert page["name"] == "alpha" and page["versions"] == ["1.0", "2.0"]
        files = {f["filename"]: f for f in page["files"]}
        assert sorted(files) == sorted(d.filename for d in dists if d.project == "alpha")
        for d in dists:
            if d.project != "alpha":
                continue
            f = files[d.filename]
            assert f["hashes"] == {"sha256": d.sha256} and f["size"] == d.path.stat().st_size
            assert f["url"] == d.filename and f["requires-python"] == ">=3.8"
            assert f["yanked"] == (YANKED[1] if d.filename == YANKED[0] else False)
            assert read_root(s, parse_cid(f["_dpip-root"])).sha256.hex() == d.sha256
            assert f'<a href="{d.filename}#sha256={d.sha256}" data-requires-python="&gt;=3.8"' in html
        assert f'data-yanked="{YANKED[1]}"' in html


def test_metadata_file_is_the_wheels_own_leaf_with_its_sha256(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                              dists: list[Dist]) -> None:
    store = tmp_path / "store"
    root = synced(cli, index, store)
    wheel = next(d for d in dists if d.filename == "beta-1.0-py3-none-any.whl")
    with zipfile.ZipFile(wheel.path) as z:
        metadata = z.read("beta-1.0.dist-info/METADATA")
    with BlockStore(store, create=False) as s:
        page = json.loads(read(s, root, "simple/beta/index.json"))
        entry = next(f for f in page["files"] if f["filename"] == wheel.filename)
        leaf = resolve(s, read_root(s, parse_cid(entry["_dpip-root"])).tree, "beta-1.0.dist-info/METADATA")
        linked = resolve(s, parse_cid(root), f"simple/beta/{wheel.filename}.metadata")
        assert linked == leaf and format_cid(leaf) == entry["_dpip-metadata"]
        assert read(s, root, f"simple/beta/{wheel.filename}.metadata") == metadata
    assert entry["core-metadata"] == entry["dist-info-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert "sdist" not in {f["filename"] for f in page["files"] if "core-metadata" in f}


def test_plain_puts_each_archive_in_the_tree_as_add_makes_it(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                             dists: list[Dist]) -> None:
    store = tmp_path / "store"
    plain = synced(cli, index, store, "--plain")
    with BlockStore(store, create=False) as s:
        for d in dists:
            cid = resolve(s, parse_cid(plain), f"simple/{d.project}/{d.filename}")
            with open(d.path, "rb") as f:
                assert cid == Adder(index_settings(), MemorySink()).add_stream(f).cid
            assert b"".join(iter_file(s, cid)) == d.path.read_bytes()
        page = json.loads(read(s, plain, "simple/alpha/index.json"))
        assert all(f["_dpip-plain"] for f in page["files"])


def test_index_lists_archives_imported_without_a_sync(cli: RunCli, tmp_path: Path, dists: list[Dist]) -> None:
    store = tmp_path / "store"
    assert cli("auto", "--store", str(store), *(str(d.path) for d in dists))[0] == 0
    rc, out, _ = cli("mirror", "index", "--store", str(store))
    assert rc == 0 and "2 projects, 8 files, 2 project pages rebuilt" in out
    root = out.split()[1].rstrip(":")
    with BlockStore(store, create=False) as s:
        page = json.loads(read(s, root, "simple/beta/index.json"))
    requires = {f["filename"]: f.get("requires-python") for f in page["files"]}
    assert requires == {d.filename: d.requires_python for d in dists if d.project == "beta"}  # read from METADATA/PKG-INFO
    assert all("upload-time" not in f and f["yanked"] is False for f in page["files"])


def test_index_root_is_pinned_and_survives_store_gc(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                    dists: list[Dist]) -> None:
    store = tmp_path / "store"
    plain = synced(cli, index, store, "--plain")
    with BlockStore(store, create=False) as s:
        assert [(p.name, format_cid(p.root)) for p in s.iter_pins()] == [("mirror-index", plain)]
    assert cli("store", "gc", "--store", str(store))[0] == 0
    with BlockStore(store, create=False) as s:
        for d in dists:  # the pages and the plain files are still there: the pin keeps them
            assert read(s, plain, f"simple/{d.project}/{d.filename}") == d.path.read_bytes()
        before = s.stats().blocks
    # Without --plain the pin moves to the smaller tree, and gc takes the plain files away ...
    assert cli("mirror", "index", "--store", str(store))[0] == 0
    assert cli("store", "gc", "--store", str(store))[0] == 0
    with BlockStore(store, create=False) as s:
        assert s.stats().blocks < before
    # ... so --plain adds them again instead of trusting what the state remembers.
    rc, out, _ = cli("mirror", "index", "--plain", "--store", str(store))
    assert rc == 0 and out.split()[1].rstrip(":") == plain
    with BlockStore(store, create=False) as s:
        for d in dists:
            assert read(s, plain, f"simple/{d.project}/{d.filename}") == d.path.read_bytes()


def test_a_file_deleted_from_the_store_is_fetched_again_by_the_next_sync(cli: RunCli, index: FakeIndex,
                                                                         tmp_path: Path) -> None:
    store = tmp_path / "store"
    synced(cli, index, store)
    assert cli("delete", "alpha-1.0.tar.gz", "--store", str(store))[0] == 0
    index.log.clear()
    rc, out, _ = cli("mirror", "sync", "--packages", "alpha", "beta", "--index-url", index.url, "--store", str(store),
                     "--no-progress")
    assert rc == 0 and "7 already mirrored, 0 found in the store, 1 downloaded" in out
    assert [path for path, _ in index.file_requests()] == ["/files/alpha-1.0.tar.gz"]
