"""``dpip-import serve`` over HTTP: negotiation, redirects, HEAD, ETag, Range, the file cache, concurrency, fallback and pull-through."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import io
import json
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.mirror.state import MirrorState
from importer.server.cache import FileCache
from importer.server.launch import Running, ServeOptions, start
from importer.sinks.store import BlockStore

from .mirror_support import Dist, FakeIndex, shared_dists, wait_for

PIP_ACCEPT = "application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1, text/html; q=0.01"


@dataclass(frozen=True, slots=True)
class Synced:
    store: Path
    dists: dict[str, Dist]


@pytest.fixture(scope="module")
def synced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synced]:
    from importer.cli.main import main

    dists = shared_dists(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("server-http")
    fake = FakeIndex([d for d in dists if d.project == "alpha"]).start()
    try:
        assert main(["mirror", "sync", "--packages", "alpha", "--index-url", fake.url, "--store", str(tmp / "store"),
                     "--no-progress"]) == 0
    finally:
        fake.stop()
    yield Synced(tmp / "store", {d.filename: d for d in dists})
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def served(synced: Synced, tmp_path: Path) -> Iterator[tuple[Running, io.StringIO]]:
    log = io.StringIO()
    running = start(ServeOptions(synced.store, port=0, cache_dir=tmp_path / "cache"), log)
    try:
        yield running, log
    finally:
        running.stop()


def notes(log: io.StringIO, filename: str, count: int) -> list[str]:
    """The notes of the access log lines for ``filename``, once ``count`` are written (a line is
    written after its response's last byte, so the client may be faster than the log, and lines
    of consecutive requests may come in either order)."""
    def found() -> list[str]:
        return [line.split()[-2] for line in log.getvalue().splitlines() if filename in line]

    wait_for(lambda: len(found()) >= count)
    return found()


def get(running: Running, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host, port = running.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=60)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@pytest.mark.parametrize(("accept", "expected"), [
    (PIP_ACCEPT, "application/vnd.pypi.simple.v1+json"),
    (None, "text/html"),
    ("*/*", "text/html"),
    ("text/html", "text/html"),
    ("application/vnd.pypi.simple.v1+html", "application/vnd.pypi.simple.v1+html"),
    ("application/vnd.pypi.simple.latest+json", "application/vnd.pypi.simple.v1+json"),
    ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.6", "application/vnd.pypi.simple.v1+json"),
    ("application/*;q=0.9, text/html;q=0.1", "application/vnd.pypi.simple.v1+html"),
])
def test_project_page_is_negotiated_as_pypi_does(served: tuple[Running, io.StringIO], accept: str | None,
                                                expected: str) -> None:
    status, headers, body = get(served[0], "/simple/alpha/", {"Accept": accept} if accept else {})
    assert status == 200 and headers["content-type"].split(";")[0] == expected and headers["vary"] == "Accept"
    if expected.endswith("json"):
        assert json.loads(body)["name"] == "alpha"
    else:
        assert body.startswith(b"<!DOCTYPE html>")


def test_unacceptable_type_is_406_and_format_parameter_overrides(served: tuple[Running, io.StringIO]) -> None:
    assert get(served[0], "/simple/alpha/", {"Accept": "application/json"})[0] == 406
    status, headers, _ = get(served[0], "/simple/alpha/?format=application/vnd.pypi.simple.v1%2Bjson",
                             {"Accept": "text/html"})
    assert status == 200 and headers["content-type"] == "application/vnd.pypi.simple.v1+json"


def test_names_are_normalized_by_redirect_and_unknown_projects_are_404(served: tuple[Running, io.StringIO]) -> None:
    status, headers, _ = get(served[0], "/simple/Alpha/")
    assert (status, headers["location"]) == (301, "/simple/alpha/")
    assert get(served[0], "/simple/alpha")[1]["location"] == "/simple/alpha/"
    status, _, body = get(served[0], "/simple/nothing-here/")
    assert (status, body) == (404, b"project nothing-here is not in this index\n")


def test_page_etag_gives_304(served: tuple[Running, io.StringIO]) -> None:
    _, headers, _ = get(served[0], "/simple/alpha/", {"Accept": PIP_ACCEPT})
    status, again, body = get(served[0], "/simple/alpha/", {"Accept": PIP_ACCEPT, "If-None-Match": headers["etag"]})
    assert (status, body, again["etag"]) == (304, b"", headers["etag"])


def test_head_range_etag_and_cache_of_a_rebuilt_file(served: tuple[Running, io.StringIO], synced: Synced,
                                                     tmp_path: Path) -> None:
    running, log = served
    d = synced.dists["alpha-1.0.tar.gz"]
    data = d.path.read_bytes()
    path = f"/simple/alpha/{d.filename}"
    status, headers, body = get(running, path, method="HEAD")
    assert (status, body, int(headers["content-length"])) == (200, b"", len(data))
    assert headers["etag"] == f'"sha256:{d.sha256}"' and "immutable" in headers["cache-control"]
    status, headers, body = get(running, path, {"Range": "bytes=100-199"})  # not cached yet: built, then cut
    assert (status, body, headers["content-range"]) == (206, data[100:200], f"bytes 100-199/{len(data)}")
    status, _, body = get(running, path)
    assert (status, body) == (200, data)
    status, _, body = get(running, path, {"Range": "bytes=-10"})
    assert (status, body) == (206, data[-10:])
    assert get(running, path, {"Range": f"bytes={len(data)}-"})[0] == 416
    assert get(running, path, {"If-None-Match": f'"sha256:{d.sha256}"'})[0] == 304
    assert sorted(notes(log, d.filename, 6)) == sorted(["head", "cache-hit-range", "cache-hit", "cache-hit-range",
                                                        "range_not_satisfiable", "not-modified"])
    assert (tmp_path / "cache" / d.sha256[:2] / d.sha256).read_bytes() == data  # built by the Range request


def test_concurrent_requests_for_one_file_rebuild_it_once(served: tuple[Running, io.StringIO], synced: Synced) -> None:
    running, log = served
    d = synced.dists["alpha-1.0-py3-none-any.whl"]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: get(running, f"/simple/alpha/{d.filename}"), range(8)))
    assert all(status == 200 and hashlib.sha256(body).hexdigest() == d.sha256 for status, _, body in results)
    seen = notes(log, d.filename, 8)
    assert seen.count("rebuilt") == 1 and len(seen) == 8


def test_a_damaged_cache_entry_is_refused_then_rebuilt(served: tuple[Running, io.StringIO], synced: Synced,
                                                       tmp_path: Path) -> None:
    running, log = served
    d = synced.dists["alpha-1.0-py3-none-any.whl"]
    assert get(running, f"/simple/alpha/{d.filename}")[0] == 200
    cached = tmp_path / "cache" / d.sha256[:2] / d.sha256
    notes(log, d.filename, 1)  # admitted to the cache before the line is logged
    cached.write_bytes(b"x" + cached.read_bytes()[1:])
    host, port = running.server.server_address[:2]
    conn = http.client.HTTPConnection(str(host), port, timeout=60)
    conn.request("GET", f"/simple/alpha/{d.filename}")
    with pytest.raises(http.client.IncompleteRead):
        conn.getresponse().read()
    conn.close()
    status, _, body = get(running, f"/simple/alpha/{d.filename}")
    assert status == 200 and body == d.path.read_bytes()
    assert sorted(notes(log, d.filename, 3)) == ["aborted:cache-damaged", "rebuilt", "rebuilt"]


def test_file_cache_evicts_least_recently_used_down_to_its_cap(tmp_path: Path) -> None:
    cache = FileCache(tmp_path, max_bytes=250)
    shas = []
    for i, size in enumerate((100, 100, 100)):
        sha = hashlib.sha256(bytes([i])).hexdigest()
        shas.append(sha)
        with cache.temporary(sha) as temp:
            temp.write(b"x" * size)
            cache.admit(sha, temp)
        if i == 1:
            import os
            import time

            os.utime(cache.path(shas[0]), (time.time() + 10, time.time() + 10))  # the first is used again
    assert [cache.get(s) is not None for s in shas] == [True, False, True]
    assert cache.total == 200
    assert FileCache(tmp_path, 0).get(shas[0]) is None  # size 0: no cache


def test_fallback_relays_pages_with_absolute_urls(synced: Synced, tmp_path: Path) -> None:
    upstream = FakeIndex([d for d in synced.dists.values() if d.project == "beta"]).start()
    log = io.StringIO()
    running = start(ServeOptions(synced.store, port=0, cache_dir=tmp_path / "cache", fallback=upstream.url), log)
    try:
        status, headers, body = get(running, "/simple/beta/", {"Accept": PIP_ACCEPT})
        html = get(running, "/simple/beta/", {"Accept": "text/html"})[2]
        assert get(running, "/simple/gamma/")[0] == 404
    finally:
        running.stop()
        upstream.stop()
    assert status == 200 and headers["content-type"] == "application/vnd.pypi.simple.v1+json"
    urls = {f["url"] for f in json.loads(body)["files"]}
    assert urls == {f"http://127.0.0.1:{upstream.port}/files/{d.filename}" for d in synced.dists.values()
                    if d.project == "beta"}
    assert f'<base href="{upstream.url}beta/">'.encode() in html


def test_pull_through_serves_fallback_files_and_imports_them(synced: Synced, tmp_path: Path) -> None:
    upstream = FakeIndex([d for d in synced.dists.values() if d.project == "beta"]).start()
    store = tmp_path / "store"
    shutil.copytree(synced.store, store, ignore=shutil.ignore_patterns("serve-cache"))
    log = io.StringIO()
    running = start(ServeOptions(store, port=0, cache_dir=tmp_path / "cache", fallback=upstream.url,
                                 pull_through=True), log)
    d = synced.dists["beta-1.0-py3-none-any.whl"]
    try:
        status, _, body = get(running, "/simple/beta/", {"Accept": PIP_ACCEPT})
        page = json.loads(body)
        assert status == 200 and {f["url"] for f in page["files"]} == {
            x.filename for x in synced.dists.values() if x.project == "beta"}
        status, _, data = get(running, f"/simple/beta/{d.filename}")
        assert status == 200 and data == d.path.read_bytes()
        assert get(running, f"/simple/beta/{d.filename}")[2] == data
        assert running.pull is not None
        running.pull.join()
    finally:
        running.stop()
        upstream.stop()
    assert [path for path, _ in upstream.file_requests()] == [f"/files/{d.filename}"]  # fetched once
    with BlockStore(store, create=False) as s, MirrorState(store) as state:
        assert d.filename in {r.name for r in s.iter_archives()}
        record = state.get_file(d.filename)
    assert record is not None and record.root is not None and record.sha256 == d.sha256


def test_serve_refuses_an_ipns_index_without_a_node_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importer.cli.main import main

    monkeypatch.setenv("IPFS_PATH", str(tmp_path / "no-daemon"))  # no running daemon wrote an api file there
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["serve", "--store", str(tmp_path / "s"), "--index", "/ipns/k51qzi5uqu5dlvj2baxnqndepeb86cbk3ng7n3i46uzyxzyqj2xjonzllnv0v8"])
    assert rc == 1
    assert err.getvalue() == (f"dpip-import serve: no IPFS node: give --api ADDR (no running daemon wrote "
                              f"{tmp_path / 'no-daemon' / 'api'})\n")


def test_mirror_index_of_a_missing_store_fails_in_one_line(tmp_path: Path) -> None:
    from importer.cli.main import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["mirror", "index", "--store", str(tmp_path / "none")])
    assert rc == 1
    assert err.getvalue() == (f"dpip-import mirror index: store {tmp_path / 'none'}: no block store here (nothing has been "
                              "added to it yet)\n")


def test_pin_index_names_the_pin_mirror_index() -> None:
    from importer.mirror.tree import PIN_NAME, pin_index

    class Pins:
        def __init__(self) -> None:
            self.pins: list[tuple[bytes, str]] = []

        def pin(self, root: bytes, name: str) -> None:
            self.pins.append((root, name))

    store = Pins()
    assert pin_index(store, b"\x12\x20" + bytes(32)) is True  # type: ignore[arg-type]
    assert store.pins == [(b"\x12\x20" + bytes(32), PIN_NAME)] and PIN_NAME == "mirror-index"
