"""Hostile or broken nodes and gateways: every failure is one line naming the source and the CID,
a non-zero exit, and no output file.

A small fake trustless gateway and a fake Kubo RPC API (in-process HTTP servers on loopback,
not IPFS nodes) serve the blocks of a real imported wheel, bent one way per test: a block with
other bytes, a CAR cut short, a CAR with a block outside the DAG, one without a block of the
DAG, a block sent twice, a block over 2 MiB, an answer that never comes.
"""

from __future__ import annotations

import http.server
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from importer.archive.recipe import read_root
from importer.dag.cid import RAW, cid_of_block, format_cid, parse_cid
from importer.sinks.car import encode_car_header, encode_section, iter_dag
from importer.sinks.node import MAX_BLOCK
from importer.sinks.store import BlockStore

from .conftest import RunCli

#: --timeout of the hang tests: short, so that the tests are quick; the fake waits much longer.
TIMEOUT_S = 1.5
HANG_S = 30.0


@dataclass
class Fake:
    """What the fake server answers: the DAG's blocks in dag export order, and how to bend them."""

    blocks: list[tuple[bytes, bytes]]
    root: bytes
    raw: Callable[[bytes], bytes | None] = lambda cid: None
    car: Callable[[], bytes] | None = None
    hang: bool = False
    trickle: bool = False
    requests: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def block(self, cid: bytes) -> bytes | None:
        return dict(self.blocks).get(cid)

    def real_car(self) -> bytes:
        return encode_car_header([self.root]) + b"".join(encode_section(c, b) for c, b in self.blocks)


def serve(fake: Fake, kubo: bool) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def answer(self, status: int, content_type: str, body: bytes, *, length: bool = True) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if length:
                self.send_header("Content-Length", str(len(body)))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            if not length:
                self.close_connection = True

        def handle_any(self) -> None:
            fake.requests.append(self.path)
            if fake.hang:
                fake.stop.wait(HANG_S)
                return
            if fake.trickle:  # headers at once, then a byte now and then: never idle for --timeout
                self.send_response(200)
                self.send_header("Content-Type", "application/vnd.ipld.raw")
                self.send_header("Content-Length", "1000")
                self.end_headers()
                for _ in range(1000):
                    if fake.stop.wait(TIMEOUT_S / 5):
                        return
                    self.wfile.write(b"x")
                    self.wfile.flush()
                return
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            if kubo:
                call = url.path.removeprefix("/api/v0/")
                if call == "id":
                    return self.answer(200, "application/json", b'{"ID": "12D3KooWFake"}')
                cid = parse_cid(query["arg"][0])
                if call == "block/get":
                    return self.raw_block(cid, "application/octet-stream")
                if call == "dag/export":
                    car = fake.car() if fake.car else fake.real_car()
                    return self.answer(200, "application/vnd.ipld.car", car, length=False)
                return self.answer(404, "text/plain", b"no such call")
            cid = parse_cid(url.path.split("/")[2])
            if query.get("format") == ["car"]:
                if fake.car is None:
                    return self.answer(501, "text/plain", b"no CARs here")
                return self.answer(200, "application/vnd.ipld.car; version=1; order=dfs; dups=n", fake.car(),
                                   length=False)
            return self.raw_block(cid, "application/vnd.ipld.raw")

        def raw_block(self, cid: bytes, content_type: str) -> None:
            data = fake.raw(cid)
            if data is None:
                data = fake.block(cid)
            if data is None:
                return self.answer(404, "text/plain", b"not found")
            return self.answer(200, content_type, data)

        do_GET = do_POST = handle_any

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client that went away mid-answer is what these tests do; no traceback on stderr

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def wheel_dag(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """A wheel imported into a store: its root, its blocks in dag export order, its tree."""
    folder = tmp_path_factory.mktemp("bad-sources")
    wheel = folder / "dpip_bad-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("dpip_bad/__init__.py", "VALUE = 1\n" * 40000)  # ~400 kB: a file of two leaves
        z.writestr("dpip_bad/small.py", "x = 2\n")
        z.writestr("dpip_bad-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: dpip-bad\nVersion: 1.0\n")
        z.writestr("dpip_bad-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        z.writestr("dpip_bad-1.0.dist-info/RECORD", "")
    from importer.cli.main import main

    assert main(["wheel", "--store", str(folder / "store"), str(wheel)]) == 0
    with BlockStore(folder / "store", create=False) as store:
        root = next(store.iter_archives()).root
        return root, list(iter_dag(store, root)), read_root(store, root).tree


@pytest.fixture
def fake_of(wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes]) -> Iterator[Callable[..., tuple[Fake, str]]]:
    servers: list[tuple[Fake, http.server.ThreadingHTTPServer]] = []

    def make(kubo: bool = False, **bends: object) -> tuple[Fake, str]:
        root, blocks, _ = wheel_dag
        fake = Fake(blocks, root, **bends)  # type: ignore[arg-type]
        server, url = serve(fake, kubo)
        servers.append((fake, server))
        return fake, url

    yield make
    for fake, server in servers:
        fake.stop.set()
        server.shutdown()
        server.server_close()


def leaf(blocks: list[tuple[bytes, bytes]]) -> tuple[bytes, bytes]:
    """The largest block of the DAG (a 256 KiB file leaf)."""
    return max(blocks, key=lambda b: len(b[1]))


def assert_failed(rc: int, out: str, err: str, prefix: str, folder: Path) -> None:
    assert rc == 1 and out == "", err
    assert len(err.splitlines()) == 1, err
    assert err.startswith(prefix), err
    assert sorted(p.name for p in folder.iterdir() if p.name != "store") == []  # no output, no temporary file


def fetch(cli: RunCli, tmp_path: Path, root: bytes, *source: str) -> tuple[int, str, str]:
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    return cli("fetch", *source, "--timeout", str(TIMEOUT_S), "--store", out_dir / "store", format_cid(root),
               "-o", out_dir / "dpip_bad-1.0-py3-none-any.whl")


# -- gateways -------------------------------------------------------------------------------------

def test_gateway_block_with_other_bytes_is_refused(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                                    wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                                    tmp_path: Path) -> None:
    root, blocks, _ = wheel_dag
    bad_cid, bad_block = leaf(blocks)
    _, url = fake_of(raw=lambda cid: bad_block[:-1] + b"!" if cid == bad_cid else None)
    rc, out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert_failed(rc, out, err, f"dpip-import fetch: gateway {url}: {format_cid(bad_cid)}: sent {len(bad_block)} "
                                "bytes that hash to sha2-256 ", tmp_path / "out")
    assert err.rstrip().endswith(", not to this CID")


#: A block of no DAG here, for the CAR that holds one block too many.
STRANGER = b"not part of this DAG"


def bent_car(fake: Fake, bend: str) -> tuple[bytes, str]:
    """A CAR of the wheel's DAG bent one way, and the start of the reason fetch must give."""
    blocks = fake.blocks
    if bend == "cut-short":
        return fake.real_car()[:-1000], "invalid CAR at byte "
    if bend == "extra-block":
        stranger = cid_of_block(1, RAW, STRANGER)
        return (fake.real_car() + encode_section(stranger, STRANGER),
                f"CAR holds block {format_cid(stranger)}, which is not linked from the blocks before it")
    if bend == "missing-block":
        return (encode_car_header([fake.root]) + b"".join(encode_section(c, b) for c, b in blocks[:-1]),
                f"CAR ended without block {format_cid(blocks[-1][0])}")
    if bend == "block-twice":
        return fake.real_car() + encode_section(*blocks[1]), f"CAR holds block {format_cid(blocks[1][0])} twice"
    assert bend == "section-over-2-mib"
    return encode_car_header([fake.root]) + encode_section(fake.root, b"\0" * (3 * 1024 * 1024)), "invalid CAR at byte "


@pytest.mark.parametrize(("bend", "detail"), [
    ("cut-short", "truncated (CAR cut short)"),
    ("extra-block", "(not in the DAG asked for)"),
    ("missing-block", ""),
    ("block-twice", ""),
    ("section-over-2-mib", f"exceeds the {MAX_BLOCK + 1024}-byte limit"),
])
def test_gateway_car_that_is_not_exactly_the_dag_is_refused(
        fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
        wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes], tmp_path: Path, bend: str, detail: str) -> None:
    root, _, _ = wheel_dag
    fake, url = fake_of()
    car, reason = bent_car(fake, bend)
    fake.car = lambda: car
    rc, out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert_failed(rc, out, err, f"dpip-import fetch: gateway {url}: {format_cid(root)}: {reason}", tmp_path / "out")
    assert detail in err


def test_gateway_block_over_2_mib_is_refused_before_it_is_read_whole(
        fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
        wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes], tmp_path: Path) -> None:
    root, _, _ = wheel_dag
    _, url = fake_of(raw=lambda cid: b"\0" * (MAX_BLOCK + 1) if cid == root else None)
    rc, out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert_failed(rc, out, err, f"dpip-import fetch: gateway {url}: {format_cid(root)}: answer longer than "
                                f"{MAX_BLOCK} bytes", tmp_path / "out")


def test_gateway_that_hangs_fails_after_timeout(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                                wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                                tmp_path: Path) -> None:
    root, _, _ = wheel_dag
    _, url = fake_of(hang=True)
    start = time.monotonic()
    rc, out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert time.monotonic() - start < HANG_S / 2
    assert_failed(rc, out, err, f"dpip-import fetch: gateway {url}: {format_cid(root)}: no answer within "
                                f"{TIMEOUT_S:g} s (--timeout)", tmp_path / "out")


def test_gateway_that_trickles_bytes_fails_after_timeout(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                                        wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                                        tmp_path: Path) -> None:
    root, _, _ = wheel_dag
    _, url = fake_of(trickle=True)
    start = time.monotonic()
    rc, out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert time.monotonic() - start < 4 * TIMEOUT_S  # the probe for CARs, then the block: each within --timeout
    assert_failed(rc, out, err, f"dpip-import fetch: gateway {url}: {format_cid(root)}: no answer within "
                                f"{TIMEOUT_S:g} s (--timeout)", tmp_path / "out")


def test_gateway_without_cars_serves_blocks_one_by_one(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                                       wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                                       tmp_path: Path) -> None:
    root, blocks, _ = wheel_dag
    fake, url = fake_of()  # answers ?format=car with 501
    rc, _out, err = fetch(cli, tmp_path, root, "--gateway", url)
    assert rc == 0, err
    raw_requests = [r for r in fake.requests if "format=raw" in r]
    assert len(raw_requests) == len(blocks)
    assert len([r for r in fake.requests if "format=car" in r]) == 1  # asked once, then remembered


# -- nodes (Kubo RPC API) ---------------------------------------------------------------------

def test_node_block_with_other_bytes_is_refused(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                                wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                                tmp_path: Path) -> None:
    _, blocks, tree = wheel_dag
    tree_block = dict(blocks)[tree]
    _, url = fake_of(kubo=True, raw=lambda cid: tree_block + b"\0" if cid == tree else None)
    rc, out, err = cli("ls", "--api", url, "--timeout", str(TIMEOUT_S), "--store", tmp_path / "store",
                       format_cid(tree))
    assert rc == 1 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"dpip-import ls: node {url}: {format_cid(tree)}: sent {len(tree_block) + 1} bytes "
                          "that hash to sha2-256 "), err


def test_node_dag_export_cut_short_is_refused(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                              wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                              tmp_path: Path) -> None:
    root, _, _ = wheel_dag
    fake, url = fake_of(kubo=True)
    fake.car = lambda: fake.real_car()[:-7]
    rc, out, err = fetch(cli, tmp_path, root, "--api", url)
    assert_failed(rc, out, err, f"dpip-import fetch: node {url}: {format_cid(root)}: invalid CAR at byte ",
                  tmp_path / "out")


def test_node_that_hangs_fails_after_timeout(fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
                                             wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes],
                                             tmp_path: Path) -> None:
    root, _, tree = wheel_dag
    _, url = fake_of(kubo=True, hang=True)
    rc, out, err = fetch(cli, tmp_path, root, "--api", url)
    assert_failed(rc, out, err, f"dpip-import fetch: node {url}: {format_cid(root)}: dag/export: no answer within "
                                f"{TIMEOUT_S:g} s (--timeout)", tmp_path / "out")
    rc, out, err = cli("ls", "--api", url, "--timeout", str(TIMEOUT_S), "--store", tmp_path / "store",
                       format_cid(tree))
    assert rc == 1 and len(err.splitlines()) == 1, err
    assert err.startswith(f"dpip-import ls: node {url}: {format_cid(tree)}: block/get: no answer within "), err


def test_node_block_over_2_mib_is_refused_before_it_is_read_whole(
        fake_of: Callable[..., tuple[Fake, str]], cli: RunCli,
        wheel_dag: tuple[bytes, list[tuple[bytes, bytes]], bytes], tmp_path: Path) -> None:
    _, _, tree = wheel_dag
    _, url = fake_of(kubo=True, raw=lambda cid: b"\0" * (MAX_BLOCK + 1) if cid == tree else None)
    rc, out, err = cli("ls", "--api", url, "--timeout", str(TIMEOUT_S), "--store", tmp_path / "store",
                       format_cid(tree))
    assert (rc, out, err) == (1, "", (f"dpip-import ls: node {url}: {format_cid(tree)}: block/get: answer longer "
                                     f"than {MAX_BLOCK} bytes\n"))
