"""``mirror publish`` and ``serve --index /ipns/NAME`` against a real node: js-ipfs 0.66.1 over the Kubo RPC API.

Everything runs in a private network namespace with only loopback (tests/node_support.py). The
mirror is two projects (alpha, beta; a wheel and an sdist per release, built at test time with
hatchling: tests/mirror_support.py), synced from a fake index. What is checked through the node
itself: the index root and every archive root are pinned, MFS ``/dpip`` and the IPNS name give
the root, the tree reads back through js-ipfs's (path-only) gateway byte for byte as ``serve``
gives it, and with ``--plain`` real pip ``--require-hashes`` downloads a wheel through that gateway; a second publish
after one new release sends exactly the blocks that are new and moves the name; ``serve
--index /ipns/NAME --api`` serves real pip ``--require-hashes`` from the node's blocks into an
empty store and follows the name when it moves. And the failures, each one line: a node killed
mid-publish (as the archives arrive, as the index does) leaves no index recorded, nothing in MFS,
no name, and the next publish completes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.dag.cid import format_cid, parse_cid
from importer.server.launch import ServeOptions, start
from importer.sinks.store import BlockStore

from .conftest import RunCli
from .mirror_support import Dist, FakeIndex, installed, make_venv, pip_env, shared_dists, wait_for
from .node_support import (
    CALL_TIMEOUT_S,
    STOP_TIMEOUT_S,
    JsIpfs,
    KillingProxy,
    dag_blocks,
    enter_private_netns,
    free_port,
    run,
    running_jsipfs,
)

pytestmark = [pytest.mark.xdist_group("ipfs-nodes"), pytest.mark.slow]

JSON = "application/vnd.pypi.simple.v1+json"


def sync(store: Path, dists: list[Dist], *extra: str) -> None:
    """``mirror sync`` of alpha and beta from a fake index serving ``dists``."""
    fake = FakeIndex(list(dists)).start()
    try:
        rc, _, err = run("mirror", "sync", "--packages", "alpha", "beta", "--index-url", fake.url, "--store", store,
                         "--no-progress", *extra)
    finally:
        fake.stop()
    assert rc == 0, err


@dataclass(frozen=True, slots=True)
class Published:
    store: Path
    root: bytes
    name: str
    out: str
    archives: tuple[bytes, ...]


def published(store: Path, out: str) -> Published:
    """What ``mirror publish`` printed: its root and IPNS name, with the store's archive roots."""
    line = next(line for line in out.splitlines() if line.startswith("published "))
    name, path = line.split()[1:3]
    with BlockStore(store, create=False) as s:
        archives = tuple(r.root for r in s.iter_archives())
    return Published(store, parse_cid(path), name.removeprefix("/ipns/"), out, archives)


def pushed_counts(out: str) -> tuple[int, int]:
    """``(blocks, bytes of blocks)`` of publish's ``pushed`` line."""
    line = next(line for line in out.splitlines() if line.startswith("pushed "))
    blocks = int(line.split(": ", 1)[1].split(" blocks")[0])
    size = int(line.split(" blocks, ", 1)[1].split(" bytes")[0].replace(",", ""))
    return blocks, size


def get(url: str, accept: str | None = None) -> bytes:
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    with urllib.request.urlopen(request, timeout=CALL_TIMEOUT_S) as answer:
        data: bytes = answer.read()
    return data


def recursive_pins(node: JsIpfs) -> set[bytes]:
    keys = json.loads(node.rpc("pin/ls", type="recursive"))["Keys"]
    return {parse_cid(cid) for cid in keys}


@pytest.fixture(scope="module")
def netns() -> None:
    enter_private_netns()


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    return shared_dists(tmp_path_factory)


@pytest.fixture(scope="module")
def node(netns: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JsIpfs]:
    with running_jsipfs(tmp_path_factory.mktemp("jsipfs")) as n:
        yield n


@pytest.fixture(scope="module")
def first(node: JsIpfs, dists: list[Dist], tmp_path_factory: pytest.TempPathFactory) -> Published:
    """Release 1.0 of alpha and beta synced and published with the defaults."""
    store = tmp_path_factory.mktemp("publish") / "store"
    sync(store, [d for d in dists if d.version == "1.0"])
    rc, out, err = run("mirror", "publish", "--api", node.api, "--store", store)
    assert rc == 0, err
    return published(store, out)


def test_publish_pins_the_index_and_every_archive_and_names_the_root_in_mfs_and_ipns(
        node: JsIpfs, first: Published) -> None:
    root = format_cid(first.root)
    lines = first.out.splitlines()
    assert lines[0] == f"index {root}: 2 projects, 4 files, 0 project pages rebuilt"  # sync wrote it
    assert lines[1].startswith(f"pushed 4 of 4 archives and the index to {node.peer_id}: ")
    assert lines[2] == f"mfs /dpip {root}"
    keys = {k["Name"]: k["Id"] for k in json.loads(node.rpc("key/list"))["Keys"]}
    assert lines[3].startswith(f"published /ipns/{keys['dpip-mirror']} /ipfs/{root} (key dpip-mirror, made now) in ")
    assert lines[4] == f"  dpip-import serve --index /ipns/{first.name} --api {node.api}"
    blocks = dag_blocks(first.store, [first.root, *first.archives])
    assert pushed_counts(first.out) == (len(blocks), sum(blocks.values()))  # a fresh node: everything, once
    assert recursive_pins(node) >= {first.root, *first.archives}
    assert json.loads(node.rpc("files/stat", "/dpip"))["Hash"] == root
    assert json.loads(node.rpc("name/resolve", first.name))["Path"] == f"/ipfs/{root}"
    with BlockStore(first.store, create=False) as s:
        assert {p.root for p in s.pushed_roots(node.peer_id)} == {first.root, *first.archives}


def test_publish_again_with_nothing_new_sends_nothing_and_republishes(node: JsIpfs, first: Published,
                                                                      cli: RunCli) -> None:
    rc, out, err = cli("mirror", "publish", "--api", node.api, "--store", first.store)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[1] == (f"pushed 0 of 4 archives, not the index (there) to {node.peer_id}: 0 blocks, 0 bytes of blocks "
                        "(0 CAR bytes)")
    assert lines[3].startswith(f"published /ipns/{first.name} /ipfs/{format_cid(first.root)} (key dpip-mirror) in ")


def test_published_tree_reads_back_through_the_gateway_as_serve_gives_it(
        node: JsIpfs, first: Published, dists: list[Dist], tmp_path: Path) -> None:
    gateway = f"http://127.0.0.1:{node.ports['gateway']}/ipfs/{format_cid(first.root)}/simple"
    running = start(ServeOptions(first.store, index_root=first.root, port=0, cache_dir=tmp_path / "cache"))
    try:
        served = running.url.rstrip("/")
        assert get(f"{gateway}/") == get(f"{served}/", "text/html")  # the gateway answers a directory with index.html
        assert get(f"{gateway}/index.json") == get(f"{served}/", JSON)
        for project in ("alpha", "beta"):
            assert get(f"{gateway}/{project}/") == get(f"{served}/{project}/index.html")
            assert get(f"{gateway}/{project}/index.json") == get(f"{served}/{project}/index.json")
            wheel = next(d for d in dists if d.project == project and d.version == "1.0" and d.filename.endswith(".whl"))
            metadata = get(f"{gateway}/{project}/{wheel.filename}.metadata")
            assert metadata == get(f"{served}/{project}/{wheel.filename}.metadata")
            assert metadata.startswith(b"Metadata-Version: ")
        ipns = f"http://127.0.0.1:{node.ports['gateway']}/ipns/{first.name}/simple/alpha/index.json"
        assert get(ipns) == get(f"{served}/alpha/index.json")  # and through the IPNS name
    finally:
        running.stop()


def test_pip_downloads_a_wheel_through_the_jsipfs_gateway_from_a_plain_index(
        node: JsIpfs, dists: list[Dist], tmp_path: Path) -> None:
    store = tmp_path / "store"
    sync(store, [d for d in dists if d.version == "1.0"], "--plain")
    rc, out, err = run("mirror", "publish", "--plain", "--key", "dpip-plain", "--mfs", "/dpip-plain", "--api", node.api,
                       "--store", store)
    assert rc == 0, err
    plain = published(store, out)
    assert out.splitlines()[4] == f"  pip install --index-url <gateway>/ipns/{plain.name}/simple/ ..."
    index_url = f"http://127.0.0.1:{node.ports['gateway']}/ipfs/{format_cid(plain.root)}/simple/"
    wheel = next(d for d in dists if d.filename == "alpha-1.0-py3-none-any.whl")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(f"alpha==1.0 --hash=sha256:{wheel.sha256}\n")
    python = make_venv(tmp_path / "venv")
    result = subprocess.run([str(python), "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
                             "--no-cache-dir", "--require-hashes", "--index-url", index_url, "-d", str(tmp_path / "got"),
                             "-r", str(requirements)],
                            capture_output=True, text=True, env=pip_env(tmp_path), timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    got = tmp_path / "got" / wheel.filename
    assert hashlib.sha256(got.read_bytes()).hexdigest() == wheel.sha256
    sdist = next(d for d in dists if d.filename == "alpha-1.0.tar.gz")
    assert get(f"{index_url}alpha/{sdist.filename}") == sdist.path.read_bytes()  # the sdist too, byte for byte


def test_two_publications_of_one_store_keep_each_other_s_roots_pinned(
        node: JsIpfs, dists: list[Dist], cli: RunCli, tmp_path: Path) -> None:
    store = tmp_path / "store"
    sync(store, [d for d in dists if d.version == "1.0"])

    def publish(*extra: str) -> Published:
        rc, out, err = cli("mirror", "publish", "--api", node.api, "--store", store, *extra)
        assert rc == 0, err
        return published(store, out)

    structural = publish("--key", "two-a", "--mfs", "/two/a")
    plain = publish("--plain", "--key", "two-b", "--mfs", "/two/b")
    again = publish("--key", "two-a", "--mfs", "/two/a")
    assert again.root == structural.root and plain.root != structural.root
    assert {structural.root, plain.root} <= recursive_pins(node)
    assert json.loads(node.rpc("files/stat", "/two/b"))["Hash"] == format_cid(plain.root)
    assert json.loads(node.rpc("name/resolve", plain.name))["Path"] == f"/ipfs/{format_cid(plain.root)}"


# -- serve --index /ipns/NAME --api, and a second publish ----------------------------------------


@dataclass
class IpnsServer:
    process: subprocess.Popen[str]
    url: str
    store: Path


@pytest.fixture(scope="module")
def ipns_server(node: JsIpfs, first: Published, tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpnsServer]:
    """``dpip-import serve --index /ipns/NAME --api`` on an empty store, resolving the name every second."""
    folder = tmp_path_factory.mktemp("ipns-serve")
    port = free_port()
    log = open(folder / "serve.log", "w")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen([sys.executable, "-m", "importer", "serve", "--index", f"/ipns/{first.name}", "--api",
                                node.api, "--refresh", "1s", "--store", str(folder / "store"), "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True)
    try:
        banner = process.stdout.readline() if process.stdout else ""
        assert banner == (f"serving index /ipns/{first.name} ({format_cid(first.root)}) at "
                          f"http://127.0.0.1:{port}/simple/\n"), (folder / "serve.log").read_text()
        yield IpnsServer(process, f"http://127.0.0.1:{port}/simple/", folder / "store")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(STOP_TIMEOUT_S)
        log.close()


def test_pip_installs_with_require_hashes_through_serve_of_the_ipns_name(
        ipns_server: IpnsServer, dists: list[Dist], tmp_path: Path) -> None:
    wanted = [d for d in dists if d.version == "1.0" and d.filename.endswith(".whl")]
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("".join(f"{d.project}=={d.version} --hash=sha256:{d.sha256}\n" for d in wanted))
    python = make_venv(tmp_path / "venv")
    result = subprocess.run([str(python), "-m", "pip", "install", "--no-cache-dir", "--require-hashes", "--only-binary",
                             ":all:", "--index-url", ipns_server.url, "-r", str(requirements)],
                            capture_output=True, text=True, env=pip_env(tmp_path), timeout=300, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert {k: v for k, v in installed(python).items() if k in ("alpha", "beta")} == {"alpha": "1.0", "beta": "1.0"}
    with BlockStore(ipns_server.store, create=False) as s:  # the node's blocks, kept (verified) in the empty store
        assert s.stats().blocks > 0


@pytest.fixture(scope="module")
def second(node: JsIpfs, first: Published, ipns_server: IpnsServer, dists: list[Dist]) -> Published:
    """alpha 2.0 (a wheel and an sdist) synced into the first store and published again."""
    sync(first.store, [d for d in dists if d.version == "1.0" or d.project == "alpha"])
    rc, out, err = run("mirror", "publish", "--api", node.api, "--store", first.store)
    assert rc == 0, err
    return published(first.store, out)


def test_second_publish_after_one_release_sends_only_its_new_blocks_and_moves_the_name(
        node: JsIpfs, first: Published, second: Published) -> None:
    new_archives = [root for root in second.archives if root not in first.archives]
    assert len(new_archives) == 2
    before = dag_blocks(first.store, [first.root, *first.archives])
    after = dag_blocks(first.store, [second.root, *second.archives])
    added = {cid: size for cid, size in after.items() if cid not in before}
    lines = second.out.splitlines()
    assert lines[0] == f"index {format_cid(second.root)}: 2 projects, 6 files, 0 project pages rebuilt"
    assert lines[1].startswith(f"pushed 2 of 6 archives and the index to {node.peer_id}: ")
    assert lines[1].endswith("; 1 earlier index roots unpinned")
    assert pushed_counts(second.out) == (len(added), sum(added.values()))
    assert sum(added.values()) < sum(after.values()) / 3  # what one release that adds little costs
    assert json.loads(node.rpc("name/resolve", first.name))["Path"] == f"/ipfs/{format_cid(second.root)}"
    assert json.loads(node.rpc("files/stat", "/dpip"))["Hash"] == format_cid(second.root)
    pins = recursive_pins(node)
    assert {second.root, *second.archives} <= pins and first.root not in pins


def test_serve_follows_the_ipns_name_to_the_new_root(ipns_server: IpnsServer, second: Published) -> None:
    def lists_alpha_2() -> bool:
        page = json.loads(get(f"{ipns_server.url}alpha/", JSON))
        return "alpha-2.0.tar.gz" in {f["filename"] for f in page["files"]}

    wait_for(lists_alpha_2, timeout=60)


# -- failures -----------------------------------------------------------------------------------


def test_publish_to_a_node_that_is_not_there_is_one_line(first: Published, cli: RunCli) -> None:
    api = f"/ip4/127.0.0.1/tcp/{free_port()}"  # bound, then released: nothing listens there
    rc, out, err = cli("mirror", "publish", "--api", api, "--store", first.store)
    assert (rc, out) == (1, "")
    assert err == f"dpip-import mirror publish: node {api}: id: connection refused (is it running, at this address?)\n"


def test_a_key_the_node_refuses_is_one_line_and_nothing_is_pushed(node: JsIpfs, dists: list[Dist], cli: RunCli,
                                                                  tmp_path: Path) -> None:
    store = tmp_path / "store"
    sync(store, [d for d in dists if d.version == "1.0"])
    rc, out, err = cli("mirror", "publish", "--api", node.api, "--store", store, "--key", "mirror:main")
    assert (rc, out) == (1, "")
    assert err == f"dpip-import mirror publish: node {node.api}: mirror:main: key/gen: Invalid key name\n"
    with BlockStore(store, create=False) as s:
        assert s.pushed_roots(node.peer_id) == []


def test_serve_of_a_name_that_does_not_resolve_is_one_line(node: JsIpfs, cli: RunCli, tmp_path: Path) -> None:
    never_published = json.loads(node.rpc("key/gen", "never-published", type="ed25519"))["Id"]
    rc, out, err = cli("serve", "--index", f"/ipns/{never_published}", "--api", node.api, "--store", tmp_path / "s",
                       "--port", "0")
    assert (rc, out) == (1, "")
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"dpip-import serve: node {node.api}: {never_published}: name/resolve: "), err
    rc, _, err = cli("serve", "--index", f"/ipns/{never_published}/simple", "--api", node.api, "--store", tmp_path / "s")
    assert (rc, err) == (1, (f"dpip-import serve: --index '/ipns/{never_published}/simple': expected /ipns/NAME "
                             "(an IPNS name, no path below it)\n"))
    rc, _, err = cli("serve", "--index", f"/ipns/{never_published}", "--gateway", "http://127.0.0.1:1", "--store",
                     tmp_path / "s")
    assert (rc, err) == (1, ("dpip-import serve: --index /ipns/NAME is resolved by an IPFS node: give --api ADDR, "
                             "not --gateway\n"))



def test_node_killed_mid_publish_fails_in_one_line_publishes_nothing_and_the_next_publish_completes(
        netns: None, dists: list[Dist], cli: RunCli, tmp_path: Path) -> None:
    store = tmp_path / "store"
    sync(store, [d for d in dists if d.version == "1.0"])
    with BlockStore(store, create=False) as s:
        archives = {r.root for r in s.iter_archives()}
    with running_jsipfs(tmp_path / "killed") as node:
        # Killed as the archives' CAR arrives (the first dag/import), then as the index's does (the
        # second): the archives that landed stay recorded, so the next publish resumes after them.
        for nth, recorded in ((1, set()), (2, archives)):
            proxy = KillingProxy(node, call="dag/import", nth=nth)
            try:
                rc, out, err = cli("mirror", "publish", "--api", proxy.api, "--store", store)
            finally:
                proxy.close()
            assert proxy.killed.is_set()
            assert (rc, out) == (1, "")
            assert len(err.splitlines()) == 1, err
            assert err.startswith(f"dpip-import mirror publish: node {proxy.api}: dag/import: "), err
            assert err.endswith("; nothing recorded as pushed)\n"), err
            with BlockStore(store, create=False) as s:
                assert {p.root for p in s.pushed_roots(node.peer_id)} == recorded
            node.start()  # the same repo, so the same peer ID
            name = {k["Name"]: k["Id"] for k in json.loads(node.rpc("key/list"))["Keys"]}["dpip-mirror"]  # made first
            for call, arg in (("files/stat", "/dpip"), ("name/resolve", name)):  # nothing in MFS, nothing published
                with pytest.raises(urllib.error.HTTPError):
                    node.rpc(call, arg)
        rc, out, err = cli("mirror", "publish", "--api", node.api, "--store", store)
        assert rc == 0, err
        done = published(store, out)
        assert out.splitlines()[1].startswith(f"pushed 0 of 4 archives and the index to {node.peer_id}: ")
        assert json.loads(node.rpc("files/stat", "/dpip"))["Hash"] == format_cid(done.root)
        assert json.loads(node.rpc("name/resolve", done.name))["Path"] == f"/ipfs/{format_cid(done.root)}"
        assert recursive_pins(node) >= {done.root, *archives}
        rc, _, err = cli("export", "--store", store, format_cid(done.root), "-o", tmp_path / "index.car")
        assert rc == 0, err
        assert node.rpc("dag/export", format_cid(done.root)) == (tmp_path / "index.car").read_bytes()
