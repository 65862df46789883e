"""bench.datasets against a fake PEP 691 index on 127.0.0.1: selection, bad input, verified resumable downloads."""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import importer.mirror.download as mirror_download
from bench.__main__ import main as bench_main
from bench.datasets import LockEntry, build_lock, ensure_downloaded, load_lock, lock_digest, resolve_index_url
from bench.pypi_index import parse_filename, parse_version
from importer.mirror.render import JSON_TYPE as SIMPLE_JSON


def payload(filename: str, size: int = 3000) -> bytes:
    """Distinct, deterministic bytes for a fake distribution file."""
    seed = hashlib.sha256(filename.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@dataclass
class FakeIndex:
    """Pages and files a test sets up, plus a log of what clients asked for."""

    pages: dict[str, dict[str, Any]] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    #: file name -> bodies to serve instead of the real one, one per request, in order
    wrong_bodies: dict[str, list[bytes]] = field(default_factory=dict)
    #: file name -> on the next request send only this many bytes, then drop the connection
    cut_once: dict[str, int] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    url: str = ""

    def add_project(self, name: str, files: list[str], yanked: tuple[str, ...] = (),
                    versions: list[str] | None = None) -> None:
        entries = []
        for i, filename in enumerate(files):
            body = self.files.setdefault(filename, payload(filename))
            entries.append({
                "filename": filename,
                "url": f"../../files/{filename}",  # relative, as PEP 691 allows
                "hashes": {"sha256": hashlib.sha256(body).hexdigest()},
                "size": len(body),
                "upload-time": f"2026-03-{1 + i % 28:02d}T12:00:00.000000Z",
                "yanked": "broken build" if filename in yanked else False,
            })
        page: dict[str, Any] = {"meta": {"api-version": "1.1"}, "name": name, "files": entries}
        if versions is not None:
            page["versions"] = versions
        self.pages[name] = page

    def file_requests(self, filename: str) -> list[str | None]:
        return [rng for path, rng in self.requests if path == f"/files/{filename}"]


def _handler(index: FakeIndex) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            index.requests.append((self.path, self.headers.get("Range")))
            parts = self.path.strip("/").split("/")
            if parts[0] == "simple" and len(parts) == 2 and parts[1] in index.pages:
                assert self.headers["Accept"] == SIMPLE_JSON
                self._send(200, json.dumps(index.pages[parts[1]]).encode(), SIMPLE_JSON)
            elif parts[0] == "files" and len(parts) == 2 and parts[1] in index.files:
                self._send_file(parts[1])
            else:
                self._send(404, b"not found", "text/plain")

        def _send_file(self, name: str) -> None:
            wrong = index.wrong_bodies.get(name)
            body = wrong.pop(0) if wrong else index.files[name]
            start = 0
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.removeprefix("bytes=").removesuffix("-"))
            self.send_response(206 if rng else 200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body) - start))
            if rng:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            cut = index.cut_once.pop(name, None)
            self.wfile.write(body[start:] if cut is None else body[start : start + cut])
            self.close_connection = True

        def _send(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture
def index() -> Iterator[FakeIndex]:
    fake = FakeIndex()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("DPIP_BENCH_CACHE", str(path))
    monkeypatch.setattr(mirror_download, "RETRY_DELAY_S", 0.0)
    return path


def lock_of(index: FakeIndex, projects: list[str], versions: int = 3, all_wheels: bool = False
            ) -> dict[str, Any]:
    lock, failures = build_lock("t", projects, index.url, versions, all_wheels, jobs=2)
    assert failures == 0
    return lock


def files_of(lock: dict[str, Any]) -> list[str]:
    return [e["filename"] for e in lock["entries"]]


def entry_for(index: FakeIndex, filename: str) -> LockEntry:
    body = index.files[filename]
    base = index.url.removesuffix("simple/")
    return LockEntry("p", "1.0", filename, f"{base}files/{filename}", hashlib.sha256(body).hexdigest(),
                     len(body), "2026-03-01T00:00:00Z", "sdist")


# -- names and versions ----------------------------------------------------------------------------


def test_versions_normalize_and_order_as_pep440() -> None:
    texts = ("1.10", "1.9", "1.0.0", "1.0.post2", "1!0.1", "1.0-1", "1.0rc2", "1.0a1", "1.0-beta.3")
    parsed = [parse_version(v) for v in texts]
    assert [str(v) for v in sorted(v for v in parsed if v)] == [
        "1.0a1", "1.0b3", "1.0rc2", "1.0.0", "1.0.post1", "1.0.post2", "1.9", "1.10", "1!0.1"]
    assert [parse_version(v) for v in ("1.0.dev0", "1.0.post1.dev2", "1.0+local", "x")] == [None] * 4


def test_filenames_parse_legacy_sdists_and_build_tagged_wheels() -> None:
    assert parse_filename("python-dateutil-2.8.2.tar.gz", "python-dateutil") == ("sdist", "2.8.2", "")
    assert parse_filename("typing_extensions-4.12.2.tar.gz", "typing-extensions") == ("sdist", "4.12.2", "")
    assert parse_filename("foo-1.0-1-cp312-cp312-manylinux1_x86_64.whl", "foo") == (
        "wheel", "1.0", "cp312-cp312-manylinux1_x86_64")
    assert parse_filename("foobar-1.0.tar.gz", "foo") is None
    assert parse_filename("foo-1.0-py2.7.egg", "foo") is None


# -- selection -------------------------------------------------------------------------------------


def test_lock_takes_newest_finals_oldest_first_sdist_then_pure_wheel(index: FakeIndex) -> None:
    index.add_project("demo", [
        "demo-0.9.tar.gz", "demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl",
        "demo-1.1.zip", "demo-1.1.tar.gz", "demo-1.1-py2.py3-none-any.whl",
        "demo-2.0rc1.tar.gz", "demo-2.0.dev1.tar.gz",  # pre and dev releases: never taken
        "demo-1.2.tar.gz", "demo-1.2-py3-none-any.whl", "demo-1.2-cp312-cp312-manylinux2014_x86_64.whl",
        "demo-1.3.tar.gz",  # newest final, but its only file is yanked
    ], yanked=("demo-1.3.tar.gz",))
    lock = lock_of(index, ["demo"], versions=3)
    assert files_of(lock) == [
        "demo-1.0.tar.gz", "demo-1.0-py3-none-any.whl",
        "demo-1.1.tar.gz", "demo-1.1-py2.py3-none-any.whl",  # .tar.gz preferred over .zip
        "demo-1.2.tar.gz", "demo-1.2-py3-none-any.whl",
    ]
    assert [e["version"] for e in lock["entries"]] == ["1.0", "1.0", "1.1", "1.1", "1.2", "1.2"]
    assert [e["kind"] for e in lock["entries"]] == ["sdist", "wheel"] * 3
    first = lock["entries"][0]
    body = index.files["demo-1.0.tar.gz"]
    assert first["url"] == index.url.removesuffix("simple/") + "files/demo-1.0.tar.gz"
    assert (first["sha256"], first["size"]) == (hashlib.sha256(body).hexdigest(), len(body))
    assert first["upload_time"] == "2026-03-02T12:00:00.000000Z"
    assert lock["skipped"] == []  # 1.3 has no file left once yanked ones are dropped: not a release


def test_lock_takes_pre_releases_only_when_a_project_has_no_final(index: FakeIndex) -> None:
    index.add_project("otel", ["otel-0.47b0.tar.gz", "otel-0.48b0.tar.gz", "otel-0.48b0-py3-none-any.whl",
                               "otel-0.49b0.dev1.tar.gz", "otel-0.48rc1.tar.gz"])
    lock = lock_of(index, ["otel"], versions=2)
    assert files_of(lock) == ["otel-0.48b0.tar.gz", "otel-0.48b0-py3-none-any.whl", "otel-0.48rc1.tar.gz"]
    assert [e["version"] for e in lock["entries"]] == ["0.48b0", "0.48b0", "0.48rc1"]


def test_lock_reports_a_listed_release_whose_files_are_all_yanked(index: FakeIndex) -> None:
    index.add_project("demo", ["demo-1.0.tar.gz", "demo-1.1.tar.gz"], yanked=("demo-1.1.tar.gz",),
                      versions=["1.0", "1.1"])
    lock = lock_of(index, ["demo"], versions=2)
    assert files_of(lock) == ["demo-1.0.tar.gz"]
    assert lock["skipped"] == [{"project": "demo", "version": "1.1", "reason": "every file yanked"}]


def test_lock_falls_back_to_cp312_manylinux_x86_64_wheel(index: FakeIndex) -> None:
    index.add_project("native", [
        "native-1.0.tar.gz",
        "native-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "native-1.0-cp312-cp312-musllinux_1_1_x86_64.whl",
        "native-1.0-cp312-cp312-manylinux_2_17_aarch64.whl",
        "native-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
        "native-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "native-1.0-cp312-cp312-win_amd64.whl",
        "native-1.1.tar.gz",  # only the stable ABI: a cp39-abi3 wheel runs on CPython 3.12
        "native-1.1-cp39-abi3-manylinux_2_28_x86_64.whl", "native-1.1-cp39-abi3-macosx_11_0_arm64.whl",
        "native-1.2.tar.gz", "native-1.2-cp313-cp313-manylinux_2_17_x86_64.whl",  # nothing for 3.12
    ])
    assert files_of(lock_of(index, ["native"])) == [
        "native-1.0.tar.gz", "native-1.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "native-1.1.tar.gz", "native-1.1-cp39-abi3-manylinux_2_28_x86_64.whl",
        "native-1.2.tar.gz",
    ]


def test_lock_all_wheels_takes_every_wheel_of_a_release(index: FakeIndex) -> None:
    wheels = ["native-1.0-cp312-cp312-win_amd64.whl", "native-1.0-cp312-cp312-manylinux_2_28_x86_64.whl",
              "native-1.0-cp311-cp311-macosx_11_0_arm64.whl"]
    index.add_project("native", ["native-1.0.tar.gz", *wheels])
    lock = lock_of(index, ["native"], all_wheels=True)
    assert files_of(lock) == ["native-1.0.tar.gz", *sorted(wheels)]
    assert lock["all_wheels"] is True


def test_lock_skips_a_missing_project_and_keeps_list_order(index: FakeIndex) -> None:
    index.add_project("b", ["b-1.0.tar.gz"])
    index.add_project("a", ["a-1.0.tar.gz"])
    lock = lock_of(index, ["b", "no-such-project", "a"])
    assert files_of(lock) == ["b-1.0.tar.gz", "a-1.0.tar.gz"]
    assert lock["skipped"] == [
        {"project": "no-such-project", "version": "", "reason": "project not found on the index (HTTP 404)"}]


def test_lock_skips_a_release_without_sdist_and_takes_the_next_older(index: FakeIndex) -> None:
    index.add_project("demo", ["demo-1.0.tar.gz", "demo-1.1.tar.gz", "demo-1.1-py3-none-any.whl",
                               "demo-1.2-py3-none-any.whl"])
    lock = lock_of(index, ["demo"], versions=2)
    assert files_of(lock) == ["demo-1.0.tar.gz", "demo-1.1.tar.gz", "demo-1.1-py3-none-any.whl"]
    assert lock["skipped"] == [{"project": "demo", "version": "1.2", "reason": "no sdist"}]


def test_cli_lock_honours_pip_index_url_and_load_lock_reads_it_back(
        index: FakeIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index.add_project("six", ["six-1.0.tar.gz", "six-1.0-py2.py3-none-any.whl", "six-1.1.tar.gz"])
    (tmp_path / "mini.txt").write_text("# a comment\nSix\n\nsix  # twice\n")
    monkeypatch.setenv("PIP_INDEX_URL", index.url)
    assert resolve_index_url() == index.url and resolve_index_url("http://x/") == "http://x/"
    assert bench_main(["lock", "--packages", "mini", "--versions", "5", "--datasets-dir", str(tmp_path)]) == 0
    text = (tmp_path / "mini.lock.json").read_text()
    assert '\n  {"project": "six", "version": "1.1", "filename": "six-1.1.tar.gz", ' in text  # a line per file
    raw = json.loads(text)
    assert (raw["set"], raw["index_url"], raw["versions"], raw["all_wheels"]) == ("mini", index.url, 5, False)
    entries = load_lock("mini", tmp_path)
    assert [(e.project, e.version, e.kind, e.filename) for e in entries] == [
        ("six", "1.0", "sdist", "six-1.0.tar.gz"), ("six", "1.0", "wheel", "six-1.0-py2.py3-none-any.whl"),
        ("six", "1.1", "sdist", "six-1.1.tar.gz")]
    assert len(lock_digest("mini", tmp_path)) == 64
    assert [p for p, _ in index.requests] == ["/simple/six/"]


def test_cli_reports_an_unknown_set_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert bench_main(["download", "--packages", "nope", "--datasets-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.startswith("bench download: no lock ")


# -- downloads -------------------------------------------------------------------------------------


def test_download_verifies_and_a_cached_file_is_not_fetched_again(index: FakeIndex, cache: Path) -> None:
    index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz", 5000)
    entry = entry_for(index, "p-1.0.tar.gz")
    first = ensure_downloaded([entry], jobs=2, progress=False)
    assert first == {"p-1.0.tar.gz": cache / "p-1.0.tar.gz"} and first.failed == {}
    assert (cache / "p-1.0.tar.gz").read_bytes() == index.files["p-1.0.tar.gz"]
    second = ensure_downloaded([entry], progress=False)
    assert second == first and second.bytes_fetched == 0
    assert index.file_requests("p-1.0.tar.gz") == [None]


def test_download_with_wrong_sha256_is_retried_then_failed_never_returned(
        index: FakeIndex, cache: Path) -> None:
    index.files["good-1.0.tar.gz"] = payload("good-1.0.tar.gz")
    good = entry_for(index, "good-1.0.tar.gz")
    index.files["bad-1.0.tar.gz"] = payload("bad-1.0.tar.gz")
    bad = entry_for(index, "bad-1.0.tar.gz")
    index.wrong_bodies["bad-1.0.tar.gz"] = [b"X" * bad.size] * 10  # right size, wrong bytes, every time
    result = ensure_downloaded([bad, good], jobs=2, progress=False)
    assert list(result) == ["good-1.0.tar.gz"]
    assert result.failed["bad-1.0.tar.gz"].startswith("sha256 mismatch: got ")
    assert len(index.file_requests("bad-1.0.tar.gz")) == mirror_download.ATTEMPTS == 4
    assert sorted(p.name for p in cache.iterdir()) == ["good-1.0.tar.gz"]  # no bad file, no .part


def test_download_with_wrong_sha256_once_is_retried_and_returned(index: FakeIndex, cache: Path) -> None:
    index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz")
    entry = entry_for(index, "p-1.0.tar.gz")
    index.wrong_bodies["p-1.0.tar.gz"] = [b"X" * entry.size]
    result = ensure_downloaded([entry], progress=False)
    assert result.failed == {} and result["p-1.0.tar.gz"].read_bytes() == index.files["p-1.0.tar.gz"]
    assert index.file_requests("p-1.0.tar.gz") == [None, None]  # the bad bytes were dropped, not resumed


def test_download_resumes_a_partial_file_with_range(index: FakeIndex, cache: Path) -> None:
    body = index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz", 10000)
    entry = entry_for(index, "p-1.0.tar.gz")
    cache.mkdir()
    (cache / "p-1.0.tar.gz.part").write_bytes(body[:4000])  # left over by an earlier, killed run
    result = ensure_downloaded([entry], progress=False)
    assert result["p-1.0.tar.gz"].read_bytes() == body and result.bytes_fetched == 6000
    assert index.file_requests("p-1.0.tar.gz") == ["bytes=4000-"]


def test_download_cut_mid_stream_resumes_where_it_stopped(index: FakeIndex, cache: Path) -> None:
    body = index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz", 10000)
    index.cut_once["p-1.0.tar.gz"] = 2500
    result = ensure_downloaded([entry_for(index, "p-1.0.tar.gz")], progress=False)
    assert result["p-1.0.tar.gz"].read_bytes() == body
    assert index.file_requests("p-1.0.tar.gz") == [None, "bytes=2500-"]


def test_download_replaces_a_corrupted_cached_file(index: FakeIndex, cache: Path) -> None:
    body = index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz")
    cache.mkdir()
    (cache / "p-1.0.tar.gz").write_bytes(b"\0" * len(body))  # a cached copy damaged on disk
    result = ensure_downloaded([entry_for(index, "p-1.0.tar.gz")], progress=False)
    assert result["p-1.0.tar.gz"].read_bytes() == body
    assert index.file_requests("p-1.0.tar.gz") == [None]


def test_download_of_a_missing_file_fails_without_raising(index: FakeIndex, cache: Path) -> None:
    index.files["gone-1.0.tar.gz"] = payload("gone-1.0.tar.gz")
    entry = entry_for(index, "gone-1.0.tar.gz")
    del index.files["gone-1.0.tar.gz"]
    result = ensure_downloaded([entry], progress=False)
    assert dict(result) == {} and "404" in result.failed["gone-1.0.tar.gz"]


def test_download_refuses_a_file_name_that_is_a_path(index: FakeIndex, cache: Path) -> None:
    index.files["p-1.0.tar.gz"] = payload("p-1.0.tar.gz")
    entry = dataclasses.replace(entry_for(index, "p-1.0.tar.gz"), filename="../p-1.0.tar.gz")
    result = ensure_downloaded([entry], progress=False)
    assert dict(result) == {} and result.failed == {"../p-1.0.tar.gz": "unsafe file name '../p-1.0.tar.gz'"}
    assert index.requests == [] and not (cache.parent / "p-1.0.tar.gz").exists()
