"""``push`` against a real node: js-ipfs 0.66.1 over the Kubo RPC API, and real Kubo 0.22 as its peer.

Everything runs in a private network namespace with only loopback (tests/node_support.py). The
archives are a wheel and an sdist of two releases built at test time with setuptools
(tests/archive_builders.py). What is checked through the node itself: the roots are pinned
recursively, MFS names each archive's tree, ``cat`` through ``ROOT/tree/...`` gives every member,
``refs -r`` lists exactly our DAG, ``dag/export`` equals our CAR byte for byte; the next release
sends exactly its new blocks; a node killed mid-push costs one error line and no record, and the
next push completes; Kubo pins a pushed root over bitswap and downloads its files unchanged.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.cli.main import main
from importer.dag.cid import format_cid, parse_cid
from importer.sinks.store import BlockStore

from .archive_builders import BuiltProject, built_projects
from .conftest import RunCli
from .node_support import (
    JsIpfs,
    KillingProxy,
    archive_members,
    dag_blocks,
    enter_private_netns,
    kubo_pin_and_download,
    run,
    running_jsipfs,
)
from .oracle_support import shared_dir

pytestmark = [pytest.mark.xdist_group("ipfs-nodes"), pytest.mark.slow]

PROJECT = "dpip-demo-setuptools"


def import_archives(store: Path, *paths: Path) -> dict[str, bytes]:
    """Import archives into ``store``; their roots by file name."""
    rc, out, err = run("auto", "--store", store, *paths)
    assert rc == 0, err
    return {line.split()[2]: parse_cid(line.split()[1]) for line in out.splitlines() if line.startswith("imported ")}


def pushed_line(out: str) -> tuple[int, int]:
    """``(blocks, bytes of blocks)`` from push's summary line."""
    line = out.splitlines()[-1]
    assert line.startswith("pushed "), out
    blocks = int(line.split(": ", 1)[1].split(" blocks")[0])
    size = int(line.split(" blocks, ", 1)[1].split(" bytes")[0].replace(",", ""))
    return blocks, size


@pytest.fixture(scope="module")
def netns() -> None:
    enter_private_netns()


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[int, BuiltProject]:
    built = built_projects(shared_dir(tmp_path_factory) / "archive-projects")
    return {version: built["setuptools", version] for version in (1, 2)}


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory, projects: dict[int, BuiltProject]) -> tuple[Path, dict[str, bytes]]:
    """A store holding the wheel and sdist of both releases, and their roots by file name."""
    path = tmp_path_factory.mktemp("push-store") / "store"
    roots = import_archives(path, *(p for v in (1, 2) for p in (projects[v].wheel, projects[v].sdist)))
    return path, roots


@pytest.fixture(scope="module")
def node(netns: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsIpfs]:
    with running_jsipfs(tmp_path_factory.mktemp("jsipfs")) as n:
        yield n


@pytest.fixture(scope="module")
def first_push(node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject]) -> str:
    """Release 1 pushed with --mfs /pypi; push's output."""
    path, _ = store
    rc, out, err = run("push", "--api", node.api, "--store", path, "--mfs", "/pypi",
                       projects[1].wheel.name, projects[1].sdist.name)
    assert rc == 0, err
    return out


def test_push_pins_wheel_and_sdist_and_links_their_trees_into_mfs(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str) -> None:
    path, roots = store
    wheel, sdist = projects[1].wheel, projects[1].sdist
    lines = first_push.splitlines()
    assert lines[:4] == [f"pinned {format_cid(roots[wheel.name])} {wheel.name}",
                         f"pinned {format_cid(roots[sdist.name])} {sdist.name}",
                         f"mfs /pypi/{PROJECT}/{wheel.name}", f"mfs /pypi/{PROJECT}/{sdist.name}"]
    blocks = dag_blocks(path, [roots[wheel.name], roots[sdist.name]])
    assert pushed_line(first_push) == (len(blocks), sum(blocks.values()))  # a fresh node: everything
    assert lines[4].startswith(f"pushed 2 roots to {node.peer_id}: ")

    pins = json.loads(node.rpc("pin/ls", type="recursive"))["Keys"]
    assert {parse_cid(c) for c in pins} >= {roots[wheel.name], roots[sdist.name]}
    listing = json.loads(node.rpc("files/ls", f"/pypi/{PROJECT}", long="true"))["Entries"]
    with BlockStore(path, create=False) as s:
        from importer.archive.recipe import read_root

        trees = {name: format_cid(read_root(s, roots[name]).tree) for name in (wheel.name, sdist.name)}
    assert {(e["Name"], e["Hash"]) for e in listing} == set(trees.items())


def test_node_reads_back_every_member_through_the_archive_root(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str) -> None:
    _, roots = store
    for archive in (projects[1].wheel, projects[1].sdist):
        root = format_cid(roots[archive.name])
        for name, data in archive_members(archive).items():
            assert node.rpc("cat", f"/ipfs/{root}/tree/{name}") == data, name


def test_node_refs_and_dag_export_equal_our_dag_and_car(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str,
        tmp_path: Path) -> None:
    path, roots = store
    for archive in (projects[1].wheel, projects[1].sdist):
        root = roots[archive.name]
        refs = [json.loads(line) for line in node.rpc("refs", format_cid(root), recursive="true",
                                                       unique="true").splitlines()]
        assert all(not r.get("Err") for r in refs)
        assert {parse_cid(r["Ref"]) for r in refs} | {root} == set(dag_blocks(path, [root]))
        ours = tmp_path / f"{archive.name}.car"
        rc, _, err = run("export", "--store", path, format_cid(root), "-o", ours)
        assert rc == 0, err
        assert node.rpc("dag/export", format_cid(root)) == ours.read_bytes()


def test_next_release_push_sends_only_its_new_blocks(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str,
        cli: RunCli) -> None:
    path, roots = store
    old = [roots[projects[1].wheel.name], roots[projects[1].sdist.name]]
    new = [roots[projects[2].wheel.name], roots[projects[2].sdist.name]]
    old_blocks, new_blocks = dag_blocks(path, old), dag_blocks(path, new)
    added = {cid: size for cid, size in new_blocks.items() if cid not in old_blocks}
    rc, out, err = cli("push", "--api", node.api, "--store", path, "--mfs", "/pypi",
                       projects[2].wheel.name, projects[2].sdist.name)
    assert rc == 0, err
    # The demo project's directories are all under 64 KiB, so every one of release 1 was read
    # and the push subtracts release 1 exactly.
    assert pushed_line(out) == (len(added), sum(added.values()))
    assert sum(added.values()) < sum(new_blocks.values()) / 3  # what a release that adds little costs
    for root in new:
        assert node.rpc("dag/export", format_cid(root)) == cli_export(cli, path, root)
    rc, out, err = cli("push", "--api", node.api, "--store", path, *map(format_cid, new))
    assert rc == 0, err
    assert pushed_line(out) == (0, 0)  # already there: nothing is sent again


def cli_export(cli: RunCli, store: Path, root: bytes) -> bytes:
    out = store.parent / f"{format_cid(root)}.car"
    rc, _, err = cli("export", "--store", store, format_cid(root), "-o", out)
    assert rc == 0, err
    return out.read_bytes()


def test_fetch_api_rebuilds_archives_byte_identical_into_an_empty_store(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str,
        cli: RunCli, tmp_path: Path) -> None:
    _, roots = store
    for archive in (projects[1].wheel, projects[1].sdist):
        root = format_cid(roots[archive.name])
        rc, out, err = cli("fetch", "--api", node.api, "--store", tmp_path / "empty", root, "-o",
                           tmp_path / archive.name)
        assert rc == 0, err
        assert (tmp_path / archive.name).read_bytes() == archive.read_bytes()
        rc, out, err = cli("verify", "--api", node.api, "--store", tmp_path / "empty", root)
        assert rc == 0 and out.startswith(f"ok {archive.name}: "), err
        # --no-cache: the same bytes, and no store is created for them
        rc, _, err = cli("fetch", "--api", node.api, "--no-cache", "--store", tmp_path / "none", root, "-o",
                         tmp_path / f"nocache-{archive.name}")
        assert rc == 0, err
        assert (tmp_path / f"nocache-{archive.name}").read_bytes() == archive.read_bytes()
        assert not (tmp_path / "none").exists()
    with BlockStore(tmp_path / "empty", create=False) as s:
        assert all(problem is None for _, problem in s.verify())


def test_cat_ls_get_through_the_node_match_the_archive(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str,
        capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path) -> None:
    path, roots = store
    with BlockStore(path, create=False) as s:
        from importer.archive.recipe import read_root

        tree = format_cid(read_root(s, roots[projects[1].wheel.name]).tree)
    files = archive_members(projects[1].wheel)
    empty = tmp_path / "s"
    for name, data in files.items():
        capsysbinary.readouterr()
        rc = main(["cat", "--api", node.api, "--store", str(empty), f"{tree}/{name}"])
        captured = capsysbinary.readouterr()
        assert (rc, captured.out) == (0, data), captured.err
    rc, _, err = run("get", "--api", node.api, "--store", tmp_path / "s2", tree, "-o", tmp_path / "tree")
    assert rc == 0, err
    got = {str(p.relative_to(tmp_path / "tree")): p.read_bytes() for p in (tmp_path / "tree").rglob("*") if p.is_file()}
    assert got == files
    rc, out, err = run("ls", "--api", node.api, "--store", tmp_path / "s3", tree)
    rc_local, out_local, _ = run("ls", "--store", path, tree)
    assert (rc, rc_local) == (0, 0) and out == out_local, err


def test_kubo_pins_a_pushed_root_over_bitswap_and_downloads_its_files(
        node: JsIpfs, store: tuple[Path, dict[str, bytes]], projects: dict[int, BuiltProject], first_push: str,
        tmp_path: Path) -> None:
    path, roots = store
    wheel = projects[1].wheel
    with BlockStore(path, create=False) as s:
        from importer.archive.recipe import read_root

        tree = format_cid(read_root(s, roots[wheel.name]).tree)
    dest = tmp_path / "kubo-download"
    result = kubo_pin_and_download(node.swarm_addr, format_cid(roots[wheel.name]), tree, dest, deadline_s=120)
    assert result["pinned"] and result["downloaded"], result
    assert format_cid(roots[wheel.name]) in result["pins"]
    got = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert got == archive_members(wheel)


# -- a node that dies mid-push ------------------------------------------------------------------

def big_wheel(folder: Path) -> Path:
    """A wheel of 8 MiB of incompressible data: a CAR long enough to be cut in the middle."""
    import random

    path = folder / "dpip_big-1.0-py3-none-any.whl"
    rng = random.Random(12)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("dpip_big/data.bin", rng.randbytes(8 * 1024 * 1024))
        z.writestr("dpip_big-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: dpip-big\nVersion: 1.0\n")
        z.writestr("dpip_big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("dpip_big-1.0.dist-info/RECORD", "")
    return path


def test_node_killed_mid_push_fails_in_one_line_records_nothing_and_the_next_push_completes(
        netns: None, cli: RunCli, tmp_path: Path) -> None:
    wheel = big_wheel(tmp_path)
    store = tmp_path / "store"
    roots = import_archives(store, wheel)
    root = format_cid(roots[wheel.name])
    with running_jsipfs(tmp_path / "killed") as node:
        proxy = KillingProxy(node, after=2 * 1024 * 1024)
        try:
            api = proxy.api
            rc, out, err = cli("push", "--api", api, "--store", store, root)
        finally:
            proxy.close()
        assert proxy.killed.is_set()
        assert rc == 1 and out == ""
        assert len(err.splitlines()) == 1, err
        assert err.startswith(f"dpip-import push: node {api}: dag/import: "), err
        assert "nothing recorded as pushed" in err
        with BlockStore(store, create=False) as s:
            assert s.pushed_roots(node.peer_id) == []
        node.start()  # the same repo, so the same peer ID
        rc, out, err = cli("push", "--api", node.api, "--store", store, root)
        assert rc == 0, err
        assert out.splitlines()[0] == f"pinned {root} {wheel.name}"
        with BlockStore(store, create=False) as s:
            assert [p.root for p in s.pushed_roots(node.peer_id)] == [roots[wheel.name]]
        assert node.rpc("dag/export", root) == cli_export(cli, store, roots[wheel.name])
