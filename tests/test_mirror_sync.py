"""``dpip-import mirror sync`` against a fake PEP 691 index on loopback: what it records, what it skips, what it refuses."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.archive.rebuild import iter_archive
from importer.mirror.progress import Progress
from importer.mirror.select import Chosen, Filters, platform_accepts, select_files
from importer.mirror.state import MirrorState
from importer.mirror.upstream import UpstreamFile
from importer.sinks.store import BlockStore

from .conftest import RunCli
from .mirror_support import UPLOAD_TIMES, YANKED, Dist, FakeIndex, serving, shared_dists, wait_for

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Dist]:
    return shared_dists(tmp_path_factory)


@pytest.fixture
def index(dists: list[Dist]) -> Iterator[FakeIndex]:
    yield from serving(dists)



def sync_args(index: FakeIndex, store: Path, *extra: str) -> list[str]:
    return ["mirror", "sync", "--packages", "alpha", "beta", "--index-url", index.url, "--store", str(store),
            "--no-progress", *extra]


def archives(store: Path) -> dict[str, str]:
    with BlockStore(store, create=False) as s:
        return {r.name: r.sha256.hex() for r in s.iter_archives()}


def test_sync_records_what_the_index_says_and_rebuilds_every_file(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                                  dists: list[Dist]) -> None:
    store = tmp_path / "store"
    rc, out, err = cli(*sync_args(index, store, "--no-index"))
    assert rc == 0, err
    assert "8 files chosen, 0 already mirrored, 0 found in the store, 8 downloaded" in out
    assert archives(store) == {d.filename: d.sha256 for d in dists}
    with MirrorState(store) as state, BlockStore(store, create=False) as s:
        records = {r.filename: r for r in state.files()}
        for d in dists:
            r = records[d.filename]
            assert (r.project, r.version, r.sha256, r.size) == (d.project, d.version, d.sha256, d.path.stat().st_size)
            assert r.upload_time == UPLOAD_TIMES[(d.project, d.version)]
            assert r.requires_python == d.requires_python
            assert r.yanked == (YANKED[1] if d.filename == YANKED[0] else None)
            assert r.root is not None
            _, pieces = iter_archive(s, r.root)
            assert hashlib.sha256(b"".join(pieces)).hexdigest() == d.sha256
    assert not list((store / "mirror-downloads").iterdir())  # imported downloads are not kept


def test_second_sync_with_nothing_new_downloads_and_imports_nothing(cli: RunCli, index: FakeIndex,
                                                                    tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert cli(*sync_args(index, store))[0] == 0
    index.log.clear()
    rc, out, _ = cli(*sync_args(index, store))
    assert rc == 0
    assert "8 files chosen, 8 already mirrored, 0 found in the store, 0 downloaded (0.0 MB), 0 imported" in out
    assert index.file_requests() == []
    assert "0 project pages rebuilt" in out


def test_resync_updates_a_newly_yanked_file_without_downloading_it(cli: RunCli, index: FakeIndex,
                                                                   tmp_path: Path, dists: list[Dist]) -> None:
    store = tmp_path / "store"
    assert cli(*sync_args(index, store, "--no-index"))[0] == 0
    index.log.clear()
    target = next(d for d in dists if d.filename == "beta-1.0.tar.gz")
    index.yanked[target.filename] = True
    rc, out, _ = cli(*sync_args(index, store, "--no-index"))
    assert rc == 0 and "1 updated" in out
    assert index.file_requests() == []
    with MirrorState(store) as state:
        record = state.get_file(target.filename)
    assert record is not None and record.yanked == ""


def test_sync_reads_html_pages_when_the_index_has_no_json(cli: RunCli, dists: list[Dist], tmp_path: Path) -> None:
    fake = FakeIndex(list(dists), mode="html").start()
    try:
        rc, _out, err = cli(*sync_args(fake, tmp_path / "store", "--no-index"))
    finally:
        fake.stop()
    assert rc == 0, err
    assert archives(tmp_path / "store") == {d.filename: d.sha256 for d in dists}
    with MirrorState(tmp_path / "store") as state:
        assert state.get_file(YANKED[0]).yanked == YANKED[1]  # type: ignore[union-attr]
        assert state.get_file("beta-2.0.tar.gz").requires_python == ">=3.99"  # type: ignore[union-attr]
        sizes = {r.filename: r.size for r in state.files()}
    assert sizes == {d.filename: d.path.stat().st_size for d in dists}  # HTML gives no size: the file's own


def test_sync_newest_version_skips_a_release_whose_only_kept_file_is_yanked(cli: RunCli, index: FakeIndex,
                                                                            tmp_path: Path) -> None:
    store = tmp_path / "store"
    rc, _out, _ = cli(*sync_args(index, store, "--no-index", "--only-binary", ":all:", "--versions", "1"))
    assert rc == 0
    # alpha 2.0 keeps only its (yanked) wheel once sdists are dropped: pip would not pick it, so
    # the newest release that counts is 1.0.
    assert sorted(archives(store)) == ["alpha-1.0-py3-none-any.whl", "beta-2.0-py3-none-any.whl"]


def test_sync_python_version_drops_files_whose_requires_python_excludes_it(cli: RunCli, index: FakeIndex,
                                                                           tmp_path: Path) -> None:
    store = tmp_path / "store"
    assert cli(*sync_args(index, store, "--no-index", "--python-version", "3.11"))[0] == 0
    assert not any(name.startswith("beta-2.0") for name in archives(store))
    assert "beta-1.0-py3-none-any.whl" in archives(store)


def _file(name: str, upload: str = "2024-01-01T00:00:00Z", yanked: str | None = None) -> UpstreamFile:
    return UpstreamFile(name, f"http://x/{name}", "0" * 64, 10, upload, None, yanked, None)


def names(chosen: list[Chosen]) -> list[str]:
    return [c.file.filename for c in chosen]


def test_select_platform_python_since_and_one_wheel_per_platform() -> None:
    files = [_file(n) for n in (
        "np-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "np-2.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
        "np-2.0-cp312-cp312-manylinux_2_28_aarch64.whl",
        "np-2.0-cp312-cp312-win_amd64.whl",
        "np-2.0-cp312-cp312-macosx_11_0_arm64.whl",
        "np-2.0.tar.gz")] + [_file("np-1.0.tar.gz", "2023-01-01T00:00:00Z"), _file("np-3.0rc1.tar.gz")]
    chosen, _ = select_files("np", files, Filters(platforms=("manylinux2014_x86_64",), python_versions=("3.12",)))
    assert names(chosen) == ["np-1.0.tar.gz", "np-2.0.tar.gz",
                             "np-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"]
    chosen, _ = select_files("np", files, Filters(per_platform=True, no_binary=frozenset({":all:"})))
    assert names(chosen) == ["np-1.0.tar.gz", "np-2.0.tar.gz"]
    chosen, _ = select_files("np", files, Filters(per_platform=True, only_binary=frozenset({"np"})))
    assert names(chosen) == ["np-2.0-cp312-cp312-macosx_11_0_arm64.whl",
                             "np-2.0-cp312-cp312-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                             "np-2.0-cp312-cp312-manylinux_2_28_aarch64.whl", "np-2.0-cp312-cp312-win_amd64.whl"]
    since = datetime.datetime(2023, 6, 1, tzinfo=datetime.UTC)
    chosen, _ = select_files("np", files, Filters(since=since, no_binary=frozenset({":all:"})))
    assert names(chosen) == ["np-2.0.tar.gz"]
    assert platform_accepts("musllinux_1_2_x86_64", "musllinux_1_1_x86_64")
    assert not platform_accepts("musllinux_1_2_x86_64", "manylinux_2_17_x86_64")
    assert not platform_accepts("macosx_10_15_x86_64", "macosx_11_0_arm64")


def test_select_refuses_names_with_separators_or_of_another_project() -> None:
    files = [_file("../alpha-1.0.tar.gz"), _file("alpha-1.0/x.tar.gz"), _file("gamma-1.0.tar.gz"),
             _file(".alpha-1.0.tar.gz"), _file("alpha-1.0.exe"), _file("alpha-1.0.tar.gz")]
    chosen, refused = select_files("alpha", files, Filters())
    assert [c.file.filename for c in chosen] == ["alpha-1.0.tar.gz"]
    assert [(r.filename, r.reason) for r in refused] == [
        ("../alpha-1.0.tar.gz", "contains a path separator or NUL"),
        ("alpha-1.0/x.tar.gz", "contains a path separator or NUL"),
        ("gamma-1.0.tar.gz", "names project 'gamma', not 'alpha'"),
        (".alpha-1.0.tar.gz", "starts with a dot"),
        ("alpha-1.0.exe", "neither a wheel nor an sdist (.tar.gz, .zip, .tar.bz2, .tgz, .tar.xz, .tar)"),
    ]


def test_sync_refuses_a_file_whose_bytes_do_not_match_the_index_sha256(cli: RunCli, index: FakeIndex,
                                                                       tmp_path: Path, dists: list[Dist],
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importer.mirror.download.RETRY_DELAY_S", 0.0)
    lying = next(d for d in dists if d.filename == "alpha-1.0.tar.gz")
    index.lie.add(lying.filename)
    store = tmp_path / "store"
    rc, out, err = cli(*sync_args(index, store, "--no-index"))
    assert rc == 1
    assert "7 imported" in out and "1 failed" in out
    line = next(line for line in err.splitlines() if lying.filename in line)
    assert line.startswith(f"dpip-import mirror sync: {lying.filename}: sha256 mismatch: got ")
    assert line.endswith(f", the index says {lying.sha256} ({index.url.replace('/simple/', '/files/')}"
                         f"{lying.filename})")
    assert lying.filename not in archives(store)
    with MirrorState(store) as state:
        assert state.get_file(lying.filename) is None
    assert not list((store / "mirror-downloads").iterdir())  # the lying bytes were not kept


def test_sync_stops_reading_past_the_declared_size(cli: RunCli, index: FakeIndex, tmp_path: Path,
                                                   dists: list[Dist], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importer.mirror.download.RETRY_DELAY_S", 0.0)
    big = next(d for d in dists if d.filename == "beta-1.0.tar.gz")
    index.declared_size[big.filename] = 1000
    rc, _, err = cli(*sync_args(index, tmp_path / "store", "--no-index"))
    assert rc == 1
    assert f"dpip-import mirror sync: {big.filename}: more than the 1,000 bytes expected (" in err
    assert big.filename not in archives(tmp_path / "store")


def test_sync_refuses_a_file_above_max_file_size(cli: RunCli, index: FakeIndex, tmp_path: Path) -> None:
    rc, out, err = cli(*sync_args(index, tmp_path / "store", "--no-index", "--max-file-size", "100"))
    assert rc == 1 and "0 imported" in out
    assert "dpip-import mirror sync: alpha-1.0-py3-none-any.whl: the index says " in err
    assert "bytes, above the 100-byte limit (--max-file-size)" in err
    assert index.file_requests() == []


def test_second_concurrent_sync_refuses_with_one_line(cli: RunCli, index: FakeIndex, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", ("import sys, time; sys.path.insert(0, sys.argv[2]);"
         "from importer.mirror.lock import SyncLock; l = SyncLock(sys.argv[1]); l.acquire(); print('held', flush=True);"
         "time.sleep(60)"), str(store), str(REPO)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        rc, out, err = cli(*sync_args(index, store))
    finally:
        holder.kill()
        holder.wait()
    assert rc == 1 and out == ""
    assert err == (f"dpip-import mirror sync: another sync is running on store {store} (pid {holder.pid}); "
                   "not starting a second one\n")
    assert index.log == []


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO)
    return env


def test_sync_killed_midway_then_the_next_one_completes_and_the_index_is_consistent(
        cli: RunCli, index: FakeIndex, tmp_path: Path, dists: list[Dist]) -> None:
    store = tmp_path / "store"
    slow = next(d for d in dists if d.filename == "beta-2.0.tar.gz")
    index.piece = 256
    index.throttle[slow.filename] = 0.05  # ~10 pieces: a couple of seconds
    child = subprocess.Popen([sys.executable, "-m", "importer", *sync_args(index, store, "--jobs", "1")],
                             env=_child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        part = store / "mirror-downloads" / (slow.filename + ".part")
        wait_for(lambda: part.exists() and part.stat().st_size >= 512)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    del index.throttle[slow.filename]
    index.log.clear()
    rc, _out, err = cli(*sync_args(index, store))
    assert rc == 0, err
    assert archives(store) == {d.filename: d.sha256 for d in dists}
    resumed = [headers.get("Range") for path, headers in index.file_requests() if path.endswith(slow.filename)]
    assert resumed and resumed[0] is not None and resumed[0].startswith("bytes=")  # the .part was resumed
    with MirrorState(store) as state, BlockStore(store, create=False) as s:
        for r in state.files():
            assert r.root is not None
            _, pieces = iter_archive(s, r.root)
            assert hashlib.sha256(b"".join(pieces)).hexdigest() == r.sha256


def test_every_keeps_syncing_until_sigterm_then_exits_cleanly(index: FakeIndex, tmp_path: Path) -> None:
    store = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-m", "importer", *sync_args(index, store, "--every", "1s")],
                             env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    try:
        assert child.stdout is not None
        while sum(line.startswith("refresh at ") for line in lines) < 2:
            line = child.stdout.readline()
            assert line, "the daemon ended on its own"
            lines.append(line)
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    syncs = [line for line in lines + out.splitlines() if line.startswith("synced 2 projects")]
    assert syncs[0].startswith("synced 2 projects: 8 files chosen, 0 already mirrored")
    assert all("8 already mirrored" in line for line in syncs[1:])


def test_progress_bar_is_drawn_only_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    quiet, tty = io.StringIO(), Tty()
    for stream in (quiet, tty):
        bar = Progress(1000, 2, "mirror sync", stream)
        bar.add(500, files=1)
        bar.close()
    assert quiet.getvalue() == ""
    assert tty.getvalue().startswith("\rmirror sync [###############...............] 1/2 files, 0.0 MB of 0.0 MB")
    assert tty.getvalue().endswith("\n")
    time.sleep(0)
