"""``serve-blocks``: our trustless gateway, checked by HTTP, by ``fetch --gateway`` and by a real
verifying client (@helia/verified-fetch).

The server runs in-process on a free loopback port, inside the private network namespace of
tests/node_support.py (verified-fetch runs there too). Archives are a wheel and an sdist built
with setuptools; a HAMT-sharded directory covers ``dag-scope=entity``.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from importer.archive.recipe import read_root
from importer.cli.main import main
from importer.dag.cid import RAW, cid_of_block, format_cid, parse_cid
from importer.dag.reader import iter_directory, resolve
from importer.gateway.server import GatewayServer, serve_in_thread
from importer.sinks.car import CarReader, iter_dag
from importer.sinks.store import BlockStore

from .archive_builders import built_projects
from .conftest import RunCli
from .node_support import archive_members, enter_private_netns, verified_fetch
from .oracle_support import shared_dir

pytestmark = [pytest.mark.xdist_group("ipfs-nodes")]

PROBE = "bafkqaaa"


def run(*argv: str | Path) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([str(a) for a in argv])
    assert rc == 0, err.getvalue()
    return out.getvalue()


class Served:
    """A store behind a running gateway, and what the tests need to know about its content."""

    def __init__(self, folder: Path, wheel: Path, sdist: Path, hamt_dir: Path) -> None:
        self.store = folder / "store"
        self.wheel, self.sdist = wheel, sdist
        lines = run("auto", "--store", self.store, wheel, sdist).splitlines()
        self.roots = {line.split()[2]: parse_cid(line.split()[1]) for line in lines if line.startswith("imported ")}
        added = run("add", "-r", "--hamt-threshold", "1000", "--store", self.store, hamt_dir).splitlines()
        self.hamt = parse_cid(added[-1].split()[1])
        with BlockStore(self.store, create=False) as s:
            self.trees = {name: read_root(s, root).tree for name, root in self.roots.items()}
        self.server = GatewayServer(self.store, "127.0.0.1", 0)
        serve_in_thread(self.server)
        self.port = int(self.server.server_address[1])

    def get(self, target: str, method: str = "GET", **headers: str) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, target, headers=headers)
            answer = conn.getresponse()
            return answer.status, dict(answer.getheaders()), answer.read()
        finally:
            conn.close()

    def export(self, cid: bytes) -> bytes:
        out = self.store.parent / f"{format_cid(cid)}.car"
        run("export", "--store", self.store, format_cid(cid), "-o", out)
        return out.read_bytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    enter_private_netns()
    built = built_projects(shared_dir(tmp_path_factory) / "archive-projects")["setuptools", 1]
    folder = tmp_path_factory.mktemp("gateway")
    hamt_dir = folder / "many"
    hamt_dir.mkdir()
    for i in range(60):
        (hamt_dir / f"file-{i:03}.txt").write_text(f"file {i}\n")
    served = Served(folder, built.wheel, built.sdist, hamt_dir)
    try:
        yield served
    finally:
        served.server.shutdown()
        served.server.server_close()


def car_cids(data: bytes) -> list[bytes]:
    with CarReader.from_stream(io.BufferedReader(io.BytesIO(data)), "answer") as reader:
        return [cid for cid, _ in reader]


def test_raw_block_answer_has_the_trustless_headers_and_the_block(served: Served) -> None:
    root = served.roots[served.wheel.name]
    name = format_cid(root)
    with BlockStore(served.store, create=False) as s:
        block = s.get(root)
    status, headers, body = served.get(f"/ipfs/{name}?format=raw")
    assert (status, body) == (200, block)
    assert {k: headers[k] for k in ("Content-Type", "Content-Length", "X-Content-Type-Options", "ETag",
                                    "Content-Disposition", "Cache-Control")} == {
        "Content-Type": "application/vnd.ipld.raw", "Content-Length": str(len(block)),
        "X-Content-Type-Options": "nosniff", "ETag": f'"{name}.raw"',
        "Content-Disposition": f'attachment; filename="{name}.bin"',
        "Cache-Control": "public, max-age=29030400, immutable"}
    assert served.get(f"/ipfs/{name}", Accept="application/vnd.ipld.raw")[::2] == (200, block)
    status, head_headers, body = served.get(f"/ipfs/{name}?format=raw", "HEAD")
    assert (status, body, head_headers["Content-Length"], head_headers["ETag"]) == (200, b"", str(len(block)),
                                                                                   f'"{name}.raw"')
    assert served.get(f"/ipfs/{name}?format=raw", **{"If-None-Match": f'"{name}.raw"'})[::2] == (304, b"")


def test_car_answer_is_dag_export_byte_for_byte(served: Served) -> None:
    for root in (served.roots[served.wheel.name], served.roots[served.sdist.name], served.hamt):
        status, headers, body = served.get(f"/ipfs/{format_cid(root)}?format=car")
        assert status == 200
        assert headers["Content-Type"] == "application/vnd.ipld.car; version=1; order=dfs; dups=n"
        assert headers["Content-Disposition"] == f'attachment; filename="{format_cid(root)}.car"'
        assert body == served.export(root)
        assert served.get(f"/ipfs/{format_cid(root)}", Accept="application/vnd.ipld.car")[2] == body


def test_car_of_a_path_through_an_archive_root_holds_the_path_then_the_file(served: Served) -> None:
    root = served.roots[served.wheel.name]
    path = "dpip_demo_setuptools/big.py"
    with BlockStore(served.store, create=False) as s:
        tree = served.trees[served.wheel.name]
        package = resolve(s, tree, "dpip_demo_setuptools")
        target = resolve(s, tree, path)
        file_blocks = [cid for cid, _ in iter_dag(s, target)]
    status, _, body = served.get(f"/ipfs/{format_cid(root)}/tree/{path}?format=car")
    assert status == 200
    assert car_cids(body) == [root, tree, package, *file_blocks]
    status, _, body = served.get(f"/ipfs/{format_cid(root)}/tree/{path}?format=car&dag-scope=block")
    assert car_cids(body) == [root, tree, package, target]


def test_entity_scope_of_a_hamt_directory_is_its_shards_without_entries(served: Served) -> None:
    with BlockStore(served.store, create=False) as s:
        every = [cid for cid, _ in iter_dag(s, served.hamt)]
        entries = {entry.cid for entry in iter_directory(s, served.hamt)}
    status, _, body = served.get(f"/ipfs/{format_cid(served.hamt)}?format=car&dag-scope=entity")
    shards = car_cids(body)
    assert status == 200 and shards[0] == served.hamt and len(shards) > 1  # sharded: more than one block
    assert set(shards) == set(every) - entries


@pytest.mark.parametrize(("target", "headers", "status"), [
    ("/ipfs/{root}", {}, 400),                                  # no format: this gateway never deserializes
    ("/ipfs/{root}?format=tar", {}, 406),
    ("/ipfs/{root}?format=car&dag-scope=most", {}, 400),
    ("/ipfs/{root}/tree?format=raw", {}, 400),                  # raw blocks by CID alone
    ("/ipfs/not-a-cid?format=raw", {}, 400),
    ("/ipfs/{missing}?format=raw", {}, 404),
    ("/ipfs/{missing}?format=car", {}, 404),
    ("/ipfs/{root}/tree/no-such-file?format=car", {}, 404),
    ("/ipns/example.org?format=raw", {}, 404),
])
def test_bad_requests_get_the_trustless_status(served: Served, target: str, headers: dict[str, str],
                                               status: int) -> None:
    missing = format_cid(cid_of_block(1, RAW, b"a block this store never held"))
    url = target.format(root=format_cid(served.roots[served.wheel.name]), missing=missing)
    got, answer_headers, body = served.get(url, **headers)
    assert got == status, body
    assert answer_headers["X-Content-Type-Options"] == "nosniff"


def test_other_methods_are_refused_with_allow(served: Served) -> None:
    status, headers, _ = served.get(f"/ipfs/{format_cid(served.hamt)}?format=raw", "POST")
    assert (status, headers["Allow"]) == (405, "GET, HEAD")


def test_probe_cid_answers_an_empty_block_and_an_empty_car(served: Served) -> None:
    assert served.get(f"/ipfs/{PROBE}?format=raw")[::2] == (200, b"")
    status, _, body = served.get(f"/ipfs/{PROBE}?format=car")
    with CarReader.from_stream(io.BufferedReader(io.BytesIO(body)), "probe") as reader:
        assert (status, reader.roots, list(reader)) == (200, (parse_cid(PROBE),), [])


def test_parallel_requests_each_get_their_block(served: Served) -> None:
    with BlockStore(served.store, create=False) as s:
        blocks = dict(iter_dag(s, served.roots[served.sdist.name]))
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda cid: (cid, served.get(f"/ipfs/{format_cid(cid)}?format=raw")), blocks))
    assert all(status == 200 and body == blocks[cid] for cid, (status, _, body) in answers)


def test_fetch_from_our_gateway_rebuilds_archives_into_an_empty_store(served: Served, cli: RunCli,
                                                                      tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{served.port}"
    for archive in (served.wheel, served.sdist):
        root = format_cid(served.roots[archive.name])
        rc, _, err = cli("fetch", "--gateway", url, "--store", tmp_path / "empty", root, "-o", tmp_path / archive.name)
        assert rc == 0, err
        assert (tmp_path / archive.name).read_bytes() == archive.read_bytes()
    with BlockStore(tmp_path / "empty", create=False) as s:
        assert sorted(s.iter_cids()) == sorted({cid for name in (served.wheel.name, served.sdist.name)
                                                for cid, _ in iter_dag(s, served.roots[name])})


def test_a_block_missing_mid_car_cuts_the_answer_and_fetch_fails_in_one_line(
        served: Served, cli: RunCli, tmp_path: Path) -> None:
    damaged = tmp_path / "damaged"
    shutil.copytree(served.store, damaged)
    root = served.roots[served.wheel.name]
    with BlockStore(damaged, create=False) as s:
        leaf = max(iter_dag(s, root), key=lambda b: len(b[1]))[0]
        assert s.delete(leaf)
    server = GatewayServer(damaged, "127.0.0.1", 0)
    serve_in_thread(server)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        rc, _, err = cli("fetch", "--gateway", url, "--store", tmp_path / "s", format_cid(root),
                           "-o", tmp_path / "out.whl")
    finally:
        server.shutdown()
        server.server_close()
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"dpip-import fetch: gateway {url}: {format_cid(root)}: "), err
    assert not (tmp_path / "out.whl").exists()


def test_verified_fetch_gets_files_through_our_gateway_by_tree_and_through_the_archive_root(
        served: Served, tmp_path: Path) -> None:
    fetches: list[tuple[str, Path]] = []
    expected: dict[Path, bytes] = {}
    for archive in (served.wheel, served.sdist):
        root, tree = format_cid(served.roots[archive.name]), format_cid(served.trees[archive.name])
        for i, (name, data) in enumerate(sorted(archive_members(archive).items())):
            url = f"ipfs://{root}/tree/{name}" if i % 2 else f"ipfs://{tree}/{name}"
            out = tmp_path / f"{len(fetches)}.out"
            fetches.append((url, out))
            expected[out] = data
    results = verified_fetch(f"http://127.0.0.1:{served.port}", fetches)
    assert [r.get("error") for r in results] == [None] * len(fetches), results
    assert all(r["status"] == 200 for r in results)
    assert {out: out.read_bytes() for _, out in fetches} == expected
