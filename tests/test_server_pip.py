"""``dpip-import serve`` with real pip and real uv: hashes required, PEP 691 JSON, PEP 658 metadata, yanked, requires-python; and a damaged store or a lying source that pip must refuse."""

from __future__ import annotations

import http.client
import io
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from importer.archive.recipe import read_root
from importer.dag.cid import parse_cid
from importer.dag.reader import resolve
from importer.server.app import ServerConfig, make_server, serve_in_thread
from importer.server.cache import FileCache
from importer.server.launch import Running, ServeOptions, start
from importer.sinks.base import BlockSource
from importer.sinks.store import BlockStore

from .mirror_support import (
    Dist,
    FakeIndex,
    installed,
    make_venv,
    pip_env,
    shared_dists,
    uninstall,
    uv_binary,
    wait_for,
)

JSON = "application/vnd.pypi.simple.v1+json"


@dataclass(frozen=True, slots=True)
class Mirror:
    store: Path
    dists: dict[str, Dist]
    python: Path
    tmp: Path


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mirror]:
    """A store holding both releases of alpha and beta, synced from a fake index, and one fresh venv."""
    from importer.cli.main import main

    dists = shared_dists(tmp_path_factory)
    tmp = tmp_path_factory.mktemp("server-pip")
    fake = FakeIndex(list(dists)).start()
    try:
        rc = main(["mirror", "sync", "--packages", "alpha", "beta", "--index-url", fake.url,
                   "--store", str(tmp / "store"), "--no-progress"])
    finally:
        fake.stop()
    assert rc == 0
    python = make_venv(tmp / "venv")
    yield Mirror(tmp / "store", {d.filename: d for d in dists}, python, tmp)
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def server(mirror: Mirror, tmp_path: Path) -> Iterator[tuple[Running, io.StringIO]]:
    log = io.StringIO()
    running = start(ServeOptions(mirror.store, port=0, cache_dir=tmp_path / "cache"), log)
    try:
        yield running, log
    finally:
        running.stop()
        uninstall(mirror.python, "alpha", "beta")


def requirements(mirror: Mirror, tmp_path: Path, *filenames: str) -> Path:
    lines = []
    for name in filenames:
        d = mirror.dists[name]
        lines.append(f"{d.project}=={d.version} --hash=sha256:{d.sha256}")
    path = tmp_path / "requirements.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def pip(mirror: Mirror, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(mirror.python), "-m", "pip", "install", "--no-cache-dir", "--index-url", url, *args],
                          capture_output=True, text=True, env=pip_env(mirror.tmp), timeout=300, check=False)


def log_lines(log: io.StringIO, fragment: str, at_least: int = 0) -> list[str]:
    """Access log lines holding ``fragment``, once ``at_least`` are there (a line is written after
    its response's last byte: the client may be done before it)."""
    def found() -> list[str]:
        return [line for line in log.getvalue().splitlines() if fragment in line]

    wait_for(lambda: len(found()) >= at_least)
    return found()


def test_pip_installs_with_require_hashes_and_asks_for_pep691_json(mirror: Mirror, server: tuple[Running, io.StringIO],
                                                                   tmp_path: Path) -> None:
    running, log = server
    req = requirements(mirror, tmp_path, "beta-1.0-py3-none-any.whl", "alpha-1.0-py3-none-any.whl")
    result = pip(mirror, running.url, "--require-hashes", "--only-binary", ":all:", "-r", str(req))
    assert result.returncode == 0, result.stderr
    assert {k: v for k, v in installed(mirror.python).items() if k in ("alpha", "beta")} == {"alpha": "1.0",
                                                                                             "beta": "1.0"}
    for project in ("alpha", "beta"):
        page = log_lines(log, f'"GET /simple/{project}/" 200')
        assert page and page[0].split()[6] == JSON  # pip asked for, and got, PEP 691 JSON
    assert len(log_lines(log, "-py3-none-any.whl\" 200", 2)) == 2
    assert all(" rebuilt " in line for line in log_lines(log, ".whl\" 200", 2))


def test_pip_uses_metadata_files_skips_yanked_and_honours_requires_python(
        mirror: Mirror, server: tuple[Running, io.StringIO]) -> None:
    running, log = server
    result = pip(mirror, running.url, "-v", "--only-binary", ":all:", "beta")
    assert result.returncode == 0, result.stderr
    versions = installed(mirror.python)
    # beta 2.0 requires Python >= 3.99; alpha 2.0's only wheel is yanked.
    assert (versions["beta"], versions["alpha"]) == ("1.0", "1.0")
    assert f"Obtaining dependency information for beta from {running.url}beta/beta-1.0-py3-none-any.whl.metadata" \
        in result.stdout
    assert "Link requires a different Python" in result.stdout and "beta-2.0" in result.stdout
    assert log_lines(log, '"GET /simple/beta/beta-1.0-py3-none-any.whl.metadata" 200', 1)
    assert not log_lines(log, "alpha-2.0-py3-none-any.whl\"")  # the yanked wheel was never fetched
    assert not log_lines(log, "beta-2.0")


def test_uv_installs_with_require_hashes(mirror: Mirror, server: tuple[Running, io.StringIO], tmp_path: Path) -> None:
    running, log = server
    req = requirements(mirror, tmp_path, "beta-1.0-py3-none-any.whl", "alpha-1.0-py3-none-any.whl")
    result = subprocess.run([uv_binary(), "pip", "install", "--python", str(mirror.python), "--index-url", running.url,
                             "--require-hashes", "--no-cache", "-r", str(req)],
                            capture_output=True, text=True, env=pip_env(tmp_path), timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert {k: v for k, v in installed(mirror.python).items() if k in ("alpha", "beta")} == {"alpha": "1.0",
                                                                                             "beta": "1.0"}
    assert log_lines(log, '"GET /simple/beta/" 200')[0].split()[6] == JSON


def _leaf_of(store: Path, dist: Dist, member: str) -> bytes:
    with BlockStore(store, create=False) as s:
        root = next(r.root for r in s.iter_archives() if r.name == dist.filename)
        return resolve(s, read_root(s, root).tree, member)


def test_tampered_store_pip_fails_and_installs_nothing(mirror: Mirror, tmp_path: Path) -> None:
    wheel = mirror.dists["alpha-1.0-py3-none-any.whl"]
    store = tmp_path / "store"
    shutil.copytree(mirror.store, store, ignore=shutil.ignore_patterns("serve-cache"))
    leaf = _leaf_of(store, wheel, "alpha/core.py")
    with sqlite3.connect(store / "blocks.sqlite3") as db:  # rewrite one block in the SQLite file
        (data,) = db.execute("SELECT data FROM blocks WHERE cid = ?", (leaf,)).fetchone()
        db.execute("UPDATE blocks SET data = ? WHERE cid = ?", (bytes([data[0] ^ 1]) + data[1:], leaf))
    log = io.StringIO()
    running = start(ServeOptions(store, port=0, cache_dir=tmp_path / "cache"), log)
    try:
        result = pip(mirror, running.url, "--require-hashes", "-r",
                     str(requirements(mirror, tmp_path, wheel.filename)))
    finally:
        running.stop()
    assert result.returncode != 0
    assert "alpha" not in installed(mirror.python)
    aborted = log_lines(log, f"{wheel.filename}\" 200", 1)
    assert aborted and all(" aborted:" in line for line in aborted)
    assert not (tmp_path / "cache" / wheel.sha256[:2] / wheel.sha256).exists()  # nothing wrong was cached


class LyingSource:
    """A block source that answers one CID with other bytes and checks nothing (a lying node)."""

    def __init__(self, inner: BlockStore, lie: bytes) -> None:
        self.inner, self.lie = inner, lie

    def get(self, cid: bytes) -> bytes:
        block = self.inner.get(cid)
        return block.replace(b"return x", b"return y", 1) if cid == self.lie else block

    def has(self, cid: bytes) -> bool:
        return self.inner.has(cid)

    def close(self) -> None:
        self.inner.close()


def test_lying_source_response_ends_before_its_last_byte_and_pip_fails(mirror: Mirror, tmp_path: Path) -> None:
    wheel = mirror.dists["alpha-1.0-py3-none-any.whl"]
    leaf = _leaf_of(mirror.store, wheel, "alpha/core.py")
    index_root = parse_cid(_latest_root(mirror.store))

    def factory() -> BlockSource:
        return LyingSource(BlockStore(mirror.store, create=False), leaf)

    log = io.StringIO()
    server = make_server(ServerConfig(index_root, factory, FileCache(tmp_path / "cache"), None, log))
    thread = serve_in_thread(server)
    try:
        port = server.server_address[1]
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", f"/simple/alpha/{wheel.filename}")
        response = conn.getresponse()
        assert response.status == 200 and int(response.headers["Content-Length"]) == wheel.path.stat().st_size
        with pytest.raises(http.client.IncompleteRead) as e:
            response.read()
        assert len(e.value.partial) < wheel.path.stat().st_size
        conn.close()
        result = pip(mirror, f"http://127.0.0.1:{port}/simple/", "--require-hashes", "-r",
                     str(requirements(mirror, tmp_path, wheel.filename)))
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert result.returncode != 0
    assert "alpha" not in installed(mirror.python)
    aborted = log_lines(log, f"{wheel.filename}\" 200", 2)
    assert len(aborted) >= 2 and all(" aborted:" in line for line in aborted)  # ours, then pip's


def _latest_root(store: Path) -> str:
    from importer.dag.cid import format_cid
    from importer.mirror.state import MirrorState

    with MirrorState(store) as state:
        latest = state.latest_index()
    assert latest is not None
    return format_cid(latest.root)
