"""The node client on its own: addresses as Kubo takes them, ``--api-auth``, Unix sockets, the
``dag/import`` upload, and what ``push`` records and refuses.

A fake Kubo RPC API (an in-process HTTP server on loopback or a Unix socket, not an IPFS node)
records every request; the real nodes are in tests/test_node_push.py.
"""

from __future__ import annotations

import http.server
import io
import json
import socketserver
import sqlite3
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from importer.cli.main import main
from importer.dag.cid import format_cid
from importer.errors import ImporterError, InvalidOption, RemoteError
from importer.sinks.car import iter_dag
from importer.sinks.node import NodeClient, find_api, parse_api_auth
from importer.sinks.push import known_blocks, push_bases
from importer.sinks.store import DB_NAME, ROWID_SCHEMA_VERSION, BlockStore
from importer.sinks.transport import Endpoint, parse_endpoint

from .conftest import RunCli
from .node_support import free_port
from .old_stores import make_old_store

# -- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "endpoint"), [
    ("/ip4/127.0.0.1/tcp/5001", Endpoint("http", "127.0.0.1", 5001, None, "", "/ip4/127.0.0.1/tcp/5001")),
    ("/ip4/10.0.0.2/tcp/5001/http", Endpoint("http", "10.0.0.2", 5001, None, "", "/ip4/10.0.0.2/tcp/5001/http")),
    ("/dns/ipfs.example/tcp/443/https", Endpoint("https", "ipfs.example", 443, None, "",
                                                 "/dns/ipfs.example/tcp/443/https")),
    ("/ip6/::1/tcp/5001", Endpoint("http", "::1", 5001, None, "", "/ip6/::1/tcp/5001")),
    ("/unix/run/ipfs/api.sock", Endpoint("http", "localhost", 80, "/run/ipfs/api.sock", "", "/unix/run/ipfs/api.sock")),
    ("http://127.0.0.1:5001", Endpoint("http", "127.0.0.1", 5001, None, "", "http://127.0.0.1:5001")),
    ("https://pin.example/cluster/", Endpoint("https", "pin.example", 443, None, "/cluster",
                                              "https://pin.example/cluster/")),
])
def test_api_addresses_are_read_as_kubo_takes_them(text: str, endpoint: Endpoint) -> None:
    assert parse_endpoint(text, "--api") == endpoint


def test_endpoint_renders_the_url_and_the_multiaddr_ipfshttpclient_takes() -> None:
    assert parse_endpoint("/ip6/::1/tcp/5001", "--api").url == "http://[::1]:5001"
    assert parse_endpoint("https://pin.example/x", "--api").url == "https://pin.example/x"
    assert parse_endpoint("http://node.example:5001", "--api").multiaddr == "/dns/node.example/tcp/5001/http"
    assert parse_endpoint("/unix/run/a.sock", "--api").multiaddr == "/unix/run/a.sock"


@pytest.mark.parametrize(("text", "reason"), [
    ("/ip4/127.0.0.1/udp/5001", "expected /ip4|ip6|dns/HOST/tcp/PORT[/http|/https] or /unix/PATH"),
    ("/ip4/localhost/tcp/5001", "'localhost' is not an IPv4 address"),
    ("/ip4/127.0.0.1/tcp/99999", "port '99999' is not a number from 1 to 65535"),
    ("/ip4/127.0.0.1/tcp/5001/ws", "/ws is not /http or /https"),
    ("/unix/", "/unix needs a socket path"),
    ("ftp://127.0.0.1:21", "not an http(s) URL or a multiaddr such as /ip4/127.0.0.1/tcp/5001"),
    ("http://127.0.0.1:5001/?x=1", "a query or fragment has no place in the address"),
])
def test_bad_api_addresses_are_one_clear_error(text: str, reason: str) -> None:
    with pytest.raises(InvalidOption) as e:
        parse_endpoint(text, "--api")
    assert str(e.value) == f"--api {text!r}: {reason}"


def test_without_api_the_address_a_daemon_wrote_to_its_repo_is_used(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IPFS_PATH", str(tmp_path))
    with pytest.raises(InvalidOption) as e:
        find_api(None)
    assert str(e.value) == f"no IPFS node: give --api ADDR (no running daemon wrote {tmp_path / 'api'})"
    (tmp_path / "api").write_text("/ip4/127.0.0.1/tcp/5002/http\n")
    assert find_api(None).port == 5002
    assert find_api("/ip4/127.0.0.1/tcp/5009").port == 5009  # --api wins


@pytest.mark.parametrize(("secret", "header"), [
    ("basic:alice:password123", "Basic YWxpY2U6cGFzc3dvcmQxMjM="),
    ("basic:YWxpY2U6cGFzc3dvcmQxMjM=", "Basic YWxpY2U6cGFzc3dvcmQxMjM="),
    ("bearer:secret-token123", "Bearer secret-token123"),
    ("secret-token123", "Bearer secret-token123"),
])
def test_api_auth_takes_kubo_auth_secrets(secret: str, header: str) -> None:
    assert parse_api_auth(secret) == header


# -- a fake Kubo RPC API ------------------------------------------------------------------------

@dataclass
class FakeRpc:
    """What the fake node saw, and what it requires."""

    auth: str | None = None
    requests: list[tuple[str, dict[str, list[str]], dict[str, str], bytes]] = field(default_factory=list)
    pinned: set[str] = field(default_factory=set)


def handler_for(fake: FakeRpc) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def address_string(self) -> str:
            return "fake"  # a Unix socket's peer has no (host, port)

        def reply(self, status: int, body: object) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def reply_lines(self, lines: list[str]) -> None:
            data = "".join(line + "\n" for line in lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> bytes:
            if self.headers.get("Transfer-Encoding") == "chunked":
                out = b""
                while (size := int(self.rfile.readline().strip(), 16)) > 0:
                    out += self.rfile.read(size)
                    self.rfile.readline()
                self.rfile.readline()
                return out
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            body = self.body()
            fake.requests.append((url.path, query, {k.lower(): v for k, v in self.headers.items()}, body))
            if fake.auth is not None and self.headers.get("Authorization") != fake.auth:
                return self.reply(401, {"Message": "unauthorized", "Code": 0, "Type": "error"})
            call = url.path.removeprefix("/api/v0/")
            if call == "id":
                return self.reply(200, {"ID": "12D3KooWFakeNode"})
            if call == "key/list":
                return self.reply(200, {"Keys": [{"Name": "self", "Id": "12D3KooWFakeNode"}]})
            if call == "dag/import":
                if query.get("pin-roots") == ["true"]:
                    fake.pinned.update(car_roots(body))
                return self.reply(200, {"Stats": {"BlockCount": 1, "BlockBytesCount": len(body)}})
            if call == "pin/add":
                fake.pinned.update(query["arg"])
                return self.reply(200, {"Pins": query["arg"]})
            if call == "pin/ls" and "arg" not in query:
                lines = [json.dumps({"Type": "recursive", "Cid": cid}) for cid in sorted(fake.pinned)]
                return self.reply_lines(lines)
            if call == "pin/ls":
                if query["arg"][0] in fake.pinned:
                    return self.reply(200, {"Keys": {query["arg"][0]: {"Type": "recursive"}}})
                return self.reply(500, {"Message": f"path '{query['arg'][0]}' is not pinned", "Type": "error"})
            return self.reply(404, {"Message": f"no {call}", "Type": "error"})

    return Handler


def car_roots(body: bytes) -> list[str]:
    """The roots in the header of the CAR a ``dag/import`` multipart body carries (the fake pins them)."""
    from importer.sinks.car import CarReader

    start = body.index(b"\r\n\r\n") + 4
    if body[start:start + 1] in (b"", b"\r"):
        return []  # not a CAR: a test that sends bytes of its own
    try:
        reader = CarReader.from_stream(io.BytesIO(body[start:]), "fake dag/import")
    except ImporterError:
        return []
    return [format_cid(root) for root in reader.roots]


@pytest.fixture
def fake_rpc() -> Iterator[tuple[FakeRpc, str]]:
    fake = FakeRpc()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler_for(fake))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield fake, f"/ip4/127.0.0.1/tcp/{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_api_auth_reaches_the_node_on_every_call(fake_rpc: tuple[FakeRpc, str]) -> None:
    fake, api = fake_rpc
    fake.auth = "Basic YWxpY2U6cGFzc3dvcmQxMjM="
    with pytest.raises(RemoteError) as e:
        NodeClient(parse_endpoint(api, "--api")).peer_id()
    assert (e.value.source, e.value.reason) == (f"node {api}", "id: unauthorized")
    node = NodeClient(parse_endpoint(api, "--api"), auth="basic:alice:password123")
    assert node.peer_id() == "12D3KooWFakeNode"
    assert node.dag_import([b"car bytes"]).blocks == 1
    assert {headers["authorization"] for _, _, headers, _ in fake.requests[1:]} == {fake.auth}


def test_dag_import_streams_one_multipart_car_part_with_its_content_type(fake_rpc: tuple[FakeRpc, str]) -> None:
    fake, api = fake_rpc
    node = NodeClient(parse_endpoint(api, "--api"))
    answer = node.dag_import(iter([b"first ", b"second"]))
    path, query, headers, body = fake.requests[-1]
    assert (path, query) == ("/api/v0/dag/import", {"pin-roots": ["true"], "stats": ["true"]})
    assert headers["transfer-encoding"] == "chunked"
    boundary = headers["content-type"].removeprefix("multipart/form-data; boundary=")
    assert body == (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dpip.car\"\r\n"
                    f"Content-Type: application/vnd.ipld.car\r\n\r\nfirst second\r\n--{boundary}--\r\n").encode()
    assert (answer.blocks, answer.bytes) == (1, len(body))


def test_ipfshttpclient_warning_does_not_reach_users(fake_rpc: tuple[FakeRpc, str]) -> None:
    _, api = fake_rpc
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert NodeClient(parse_endpoint(api, "--api")).key_list() == {"self": "12D3KooWFakeNode"}  # ipfshttpclient
    assert [str(w.message) for w in caught] == []


def test_push_path_calls_are_direct_http_and_never_import_ipfshttpclient(fake_rpc: tuple[FakeRpc, str],
                                                                         tmp_path: Path) -> None:
    import subprocess
    import sys

    _, api = fake_rpc
    store = tmp_path / "store"
    root = import_wheel(store, tmp_path, "pkg-1.0-py3-none-any.whl", b"A = 1\n")
    code = ("import sys; from importer.cli.main import main; rc = main(sys.argv[1:]); "
            "print(rc, 'ipfshttpclient' in sys.modules, 'requests' in sys.modules)")
    for _ in range(2):  # a first push to the node, then one that asks which bases it pins
        out = subprocess.run([sys.executable, "-c", code, "push", "--api", api, "--store", str(store),
                              format_cid(root)], capture_output=True, text=True, check=True).stdout
        assert out.splitlines()[-1] == "0 False False", out


def test_node_on_a_unix_socket_is_reached_by_both_clients(tmp_path: Path) -> None:
    fake = FakeRpc()

    class UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
        daemon_threads = True

    sock = tmp_path / "api.sock"
    server = UnixServer(str(sock), handler_for(fake))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        node = NodeClient(parse_endpoint(f"/unix{sock}", "--api"))
        assert node.key_list() == {"self": "12D3KooWFakeNode"}  # ipfshttpclient
        assert node.peer_id() == "12D3KooWFakeNode"  # direct HTTP
        assert node.dag_import([b"x"]).blocks == 1
    finally:
        server.shutdown()
        server.server_close()


def test_a_node_that_is_not_there_is_one_line(cli: RunCli, store_dir: Path) -> None:
    (store_dir.parent / "a.txt").write_bytes(b"some bytes\n")
    _, out, _ = cli("add", "-Q", "--store", store_dir, store_dir.parent / "a.txt")
    port = free_port()  # bound, then released: nothing listens there
    rc, _, err = cli("push", "--api", f"/ip4/127.0.0.1/tcp/{port}", "--store", store_dir, out.strip())
    assert (rc, err) == (1, (f"dpip-import push: node /ip4/127.0.0.1/tcp/{port}: id: connection refused "
                            "(is it running, at this address?)\n"))


# -- push: what is recorded, what is refused ----------------------------------------------------

def import_wheel(store: Path, folder: Path, name: str, content: bytes) -> bytes:
    import zipfile

    path = folder / name
    dist_info = "-".join(name.split("-")[:2]) + ".dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("pkg/__init__.py", content)
        z.writestr("pkg/data.py", b"x = 1\n" * 20000)
        z.writestr(f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    assert main(["wheel", "--store", str(store), str(path)]) == 0
    with BlockStore(store, create=False) as s:
        return next(r.root for r in s.iter_archives() if r.name == name)


def test_push_records_roots_for_the_peer_and_pins_them(fake_rpc: tuple[FakeRpc, str], cli: RunCli,
                                                       tmp_path: Path) -> None:
    fake, api = fake_rpc
    store = tmp_path / "store"
    root = import_wheel(store, tmp_path, "pkg-1.0-py3-none-any.whl", b"A = 1\n")
    rc, out, err = cli("push", "--api", api, "--store", store, "pkg-1.0-py3-none-any.whl")
    assert rc == 0, err
    assert out.splitlines()[0] == f"pinned {format_cid(root)} pkg-1.0-py3-none-any.whl"
    assert fake.pinned == {format_cid(root)}
    with BlockStore(store, create=False) as s:
        assert [p.root for p in s.pushed_roots("12D3KooWFakeNode")] == [root]
        assert s.pushed_roots("12D3KooWOtherNode") == []


def test_push_refuses_what_it_cannot_push_before_sending_anything(fake_rpc: tuple[FakeRpc, str], cli: RunCli,
                                                                  tmp_path: Path) -> None:
    fake, api = fake_rpc
    store = tmp_path / "store"
    root = import_wheel(store, tmp_path, "pkg-1.0-py3-none-any.whl", b"A = 1\n")
    with BlockStore(store, create=False) as s:
        from importer.archive.recipe import read_root

        tree = read_root(s, root).tree
    rc, _, err = cli("push", "--api", api, "--store", store, "pkg-9.9.tar.gz")
    assert (rc, err) == (1, ("dpip-import push: 'pkg-9.9.tar.gz': no archive of that name in the store's index "
                            "(`dpip-import list` shows them)\n"))
    rc, _, err = cli("push", "--api", api, "--store", store, "--mfs", "/pypi", format_cid(tree))
    assert rc == 1 and err.startswith(f"dpip-import push: --mfs links archives into MFS, and {format_cid(tree)} "
                                      "is not one ("), err
    rc, _, err = cli("push", "--api", api, "--store", store, "--mfs", "pypi", format_cid(root))
    assert (rc, err) == (1, "dpip-import push: --mfs 'pypi': an MFS path starts with /\n")
    assert fake.requests == []


def test_push_bases_are_the_root_then_its_project_newest_first(tmp_path: Path) -> None:
    store = tmp_path / "store"
    roots = [import_wheel(store, tmp_path, f"pkg-1.{i}-py3-none-any.whl", f"A = {i}\n".encode()) for i in range(3)]
    other = import_wheel(store, tmp_path, "other-1.0-py3-none-any.whl", b"B = 1\n")
    with BlockStore(store, create=False) as s:
        for i, root in enumerate([*roots, other]):
            s.record_pushed("peer", [root], 1000.0 + i)
        names = {r.root: r.name for r in s.iter_archives()}

        def recorded(peer: str) -> list[bytes]:
            return [p.root for p in s.pushed_roots(peer)]

        assert push_bases(recorded("peer"), roots[1], names) == [roots[1], roots[2], roots[0]]
        assert push_bases(recorded("other-peer"), roots[1], names) == []
        s.forget_pushed("peer", [roots[2]])
        assert push_bases(recorded("peer"), roots[1], names) == [roots[1], roots[0]]


def test_known_blocks_of_a_base_cover_its_whole_dag(tmp_path: Path) -> None:
    store = tmp_path / "store"
    root = import_wheel(store, tmp_path, "pkg-1.0-py3-none-any.whl", b"A = 1\n" * 100000)  # a file of 3 leaves
    with BlockStore(store, create=False) as s:
        assert known_blocks(s, [root]) == {cid for cid, _ in iter_dag(s, root)}


def test_schema_5_store_gains_the_pushed_table(tmp_path: Path) -> None:
    store = tmp_path / "store"
    make_old_store(store, 5, drop=("pushed", "packs", "pack_usage"))  # what schema 5 code wrote
    with BlockStore(store, create=False) as s:
        s.record_pushed("peer", [b"\x01\x55\x12\x20" + bytes(32)], 1.0)
        assert len(s.pushed_roots("peer")) == 1
    with sqlite3.connect(store / DB_NAME) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(ROWID_SCHEMA_VERSION),)


def test_import_with_push_sends_each_archive_after_importing_it(fake_rpc: tuple[FakeRpc, str], cli: RunCli,
                                                                tmp_path: Path) -> None:
    import zipfile

    fake, api = fake_rpc
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/__init__.py", b"A = 1\n")
        z.writestr("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    rc, out, err = cli("wheel", "--store", tmp_path / "store", "--push", "--api", api, wheel)
    assert rc == 0, err
    lines = out.splitlines()
    root = lines[0].split()[1]
    assert lines[0] == f"imported {root} {wheel.name}"
    assert lines[-2] == f"pinned {root} {wheel.name}"
    assert lines[-1].startswith("pushed 1 roots to 12D3KooWFakeNode: ")
    assert [path for path, *_ in fake.requests] == ["/api/v0/id", "/api/v0/dag/import"]  # pinned by pin-roots
    assert fake.pinned == {root}
    rc, _, err = cli("wheel", "--store", tmp_path / "store", "--push", "--car", tmp_path / "x.car", wheel)
    assert (rc, err) == (1, ("dpip-import wheel: --push sends archives from the embedded store: not with "
                            "--only-hash or --car\n"))


def test_push_pins_by_dag_import_pin_roots_or_with_pin_add_for_a_cluster(fake_rpc: tuple[FakeRpc, str],
                                                                          cli: RunCli, tmp_path: Path) -> None:
    fake, api = fake_rpc
    store = tmp_path / "store"
    root = import_wheel(store, tmp_path, "pkg-1.0-py3-none-any.whl", b"A = 1\n")
    rc, _, err = cli("push", "--api", api, "--store", store, "--pin-add", format_cid(root))
    assert rc == 0, err
    assert [(path, query.get("pin-roots")) for path, query, _, _ in fake.requests] == [
        ("/api/v0/id", None), ("/api/v0/dag/import", ["false"]), ("/api/v0/pin/add", None)]
    assert fake.pinned == {format_cid(root)}
    fake.requests.clear()
    rc, out, err = cli("push", "--api", api, "--store", store, format_cid(root))  # pushed before: is it still pinned?
    assert rc == 0, err
    assert [(path, query.get("arg")) for path, query, _, _ in fake.requests] == [
        ("/api/v0/id", None), ("/api/v0/pin/ls", [format_cid(root)]), ("/api/v0/dag/import", None)]
    assert out.splitlines()[-1].startswith("pushed 1 roots to 12D3KooWFakeNode: 0 blocks, 0 bytes of blocks")


def test_pinned_roots_lists_every_pin_once_whatever_cid_version_names_it(fake_rpc: tuple[FakeRpc, str]) -> None:
    from importer.dag.cid import DAG_PB, cid_v0, cid_v1, format_cid_v1
    from importer.sinks.node import pin_key

    fake, api = fake_rpc
    digest = bytes(range(32))
    fake.pinned = {format_cid(cid_v0(digest)), format_cid_v1(cid_v1(DAG_PB, digest)), "not-a-cid"}
    pins = NodeClient(parse_endpoint(api, "--api")).pinned_roots()
    assert pins == {pin_key(cid_v0(digest))} == {cid_v1(DAG_PB, digest)}
    assert fake.requests[-1][1] == {"type": ["recursive"], "stream": ["true"]}
