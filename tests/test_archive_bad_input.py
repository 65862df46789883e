"""Bad and hostile archives end in one clear error line or a correct import: truncation, corrupt deflate,
wrong CRCs, 10 GiB bombs (stopped at a limit, in bounded memory), escaping names and links, 100,000
members, a text file named .whl; nothing is written outside the store, and a killed import leaves
the store usable."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
import zlib
from pathlib import Path

import pytest

from bench.peak_rss import CHILD_MAIN, PEAK_FILE_ENV, read_peak

from .archive_builders import (
    TarMember,
    ZipEntry,
    build_zip,
    bz2_python,
    deflate,
    gzip_python,
    gzip_wrap,
    python_source,
    stdlib_zip,
    tar_bytes,
    xz_python,
    zero_bomb,
)
from .archive_checks import assert_roundtrip, sha256_file
from .conftest import RunCli
from .oracle_support import dpip_import_executable

TEXT = python_source(11, 400)
GiB = 1 << 30
MiB = 1 << 20


def assert_clear_error(cli: RunCli, path: Path, store: Path, *want: str, flags: tuple[str, ...] = ()) -> str:
    """The import fails with exit 1 and one stderr line naming the archive and every ``want``."""
    rc, out, err = cli("auto", "--store", store, *flags, path)
    assert rc == 1, out
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dpip-import auto: ") and path.name in lines[0]
    for text in want:
        assert text in lines[0], lines[0]
    return lines[0]


def _wheel() -> bytes:
    return build_zip([ZipEntry(b"pkg/__init__.py", b""), ZipEntry(b"pkg/mod.py", TEXT)])


def _sdist_tar() -> bytes:
    return tar_bytes([TarMember("pkg-1.0/", kind=tarfile.DIRTYPE), TarMember("pkg-1.0/setup.py", TEXT)])


@pytest.mark.parametrize("cut", [1, 22, 100, 0.5, 0.1])
def test_truncated_wheel_is_a_clear_error(cut: float, tmp_path: Path, cli: RunCli) -> None:
    data = _wheel()
    keep = int(len(data) * cut) if isinstance(cut, float) else len(data) - cut
    path = tmp_path / "trunc-1.0-py3-none-any.whl"
    path.write_bytes(data[:keep])
    assert_clear_error(cli, path, tmp_path / "store")


@pytest.mark.parametrize("suffix, wrap", [(".tar", lambda d: d), (".tar.gz", gzip_python), (".tar.bz2", bz2_python),
                                          (".tar.xz", xz_python)])
@pytest.mark.parametrize("fraction", [0.3, 0.6])  # inside setup.py's data (0.9 may leave a valid end block)
def test_truncated_sdist_is_a_clear_error(suffix: str, wrap: object, fraction: float, tmp_path: Path,
                                          cli: RunCli) -> None:
    data = wrap(_sdist_tar())  # type: ignore[operator]
    path = tmp_path / f"trunc-1.0{suffix}"
    path.write_bytes(data[:int(len(data) * fraction)])
    assert_clear_error(cli, path, tmp_path / "store", "truncated")


def test_corrupt_deflate_data_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    data = bytearray(_wheel())
    at = data.index(b"pkg/mod.py") + len(b"pkg/mod.py") + 40  # inside the member's deflate data
    data[at:at + 8] = b"\xff" * 8
    path = tmp_path / "corrupt-1.0-py3-none-any.whl"
    path.write_bytes(bytes(data))
    line = assert_clear_error(cli, path, tmp_path / "store", "pkg/mod.py")
    assert "deflate" in line or "CRC" in line or "inflates" in line


def test_wrong_crc_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "crc-1.0-py3-none-any.whl"
    path.write_bytes(build_zip([ZipEntry(b"a.py", TEXT, crc=zlib.crc32(TEXT) ^ 1)]))
    assert_clear_error(cli, path, tmp_path / "store", "CRC-32", "a.py")


def test_wrong_gzip_trailer_crc_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    data = bytearray(gzip_python(_sdist_tar()))
    data[-8] ^= 1
    path = tmp_path / "crc-1.0.tar.gz"
    path.write_bytes(bytes(data))
    assert_clear_error(cli, path, tmp_path / "store", "CRC-32")


def test_text_file_named_whl_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "evil-1.0-py3-none-any.whl"
    path.write_text("I am not a zip archive, only text with a wheel's name.\n" * 20)
    assert_clear_error(cli, path, tmp_path / "store", "not a zip, tar, gzip, bzip2 or xz archive")
    rc, _, err = cli("wheel", "--store", tmp_path / "store", path)
    assert rc == 1 and err.count("\n") == 1


def _bomb_zip(declared: int) -> bytes:
    """A zip whose one member inflates to 10 GiB of zeros from about 10 MB, declaring ``declared`` bytes."""
    return build_zip([ZipEntry(b"bomb.bin", b"", stored=zero_bomb(10 * GiB), usize=declared, crc=0,
                               zip64=declared >= 0xFFFFFFFF)], zip64_end=True)


def test_zip_bomb_declaring_10_gib_stops_at_the_member_limit(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "bomb.zip"
    path.write_bytes(_bomb_zip(10 * GiB))
    assert path.stat().st_size < 16 * MiB
    assert_clear_error(cli, path, tmp_path / "store", "bomb.bin", "past --max-member-size 4294967296")
    assert_clear_error(cli, path, tmp_path / "store", "past --max-member-size 100000000",
                       flags=("--max-member-size", "100000000"))


def test_zip_bomb_lying_about_its_size_stops_past_the_declared_size(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "liar.zip"
    path.write_bytes(_bomb_zip(MiB))
    assert_clear_error(cli, path, tmp_path / "store", "bomb.bin", "past its declared size of 1048576")


def _tar_gz_bomb() -> bytes:
    info = tarfile.TarInfo("bomb.bin")
    info.size = 10 * GiB  # over 8 GiB: a GNU base-256 size field
    return gzip_wrap(zero_bomb(10 * GiB, info.tobuf(tarfile.GNU_FORMAT)))


def _tar_gz_zero_tail_bomb() -> bytes:
    """A small valid tar followed by 10 GiB of zeros (end-of-archive padding, as far as tar knows)."""
    return gzip_wrap(zero_bomb(10 * GiB, tar_bytes([TarMember("a.txt", b"a")])))


def test_tar_gz_bomb_member_stops_at_the_member_and_total_limits(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "bomb-1.0.tar.gz"
    path.write_bytes(_tar_gz_bomb())
    assert path.stat().st_size < 16 * MiB
    assert_clear_error(cli, path, tmp_path / "store", "bomb.bin", "past --max-member-size 4294967296")
    assert_clear_error(cli, path, tmp_path / "store", "bomb.bin", "members declare more than --max-total-size 100000000",
                       flags=("--max-member-size", str(20 * GiB), "--max-total-size", "100000000"))


def test_tar_gz_zero_padding_bomb_stops_at_the_trailing_and_total_limits(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "padding-1.0.tar.gz"
    path.write_bytes(_tar_gz_zero_tail_bomb())
    assert_clear_error(cli, path, tmp_path / "store", "offset 1536: more than 1048576 bytes after the tar's "
                       "end-of-archive block, past --max-trailing-size 1048576")
    assert_clear_error(cli, path, tmp_path / "store", "inflates past --max-total-size 100000000",
                       flags=("--max-total-size", "100000000", "--max-trailing-size", str(20 * GiB)))


@pytest.mark.parametrize("limit", ["600000000"])
def test_bomb_is_inflated_in_bounded_memory_until_the_limit(limit: str, tmp_path: Path) -> None:
    """A gzip'd tar whose zero padding inflates 600 MB before the limit stops it: the padding is
    skeleton, spooled to a temporary file, so peak RSS stays far below the bytes inflated."""
    path = tmp_path / "padding-1.0.tar.gz"
    path.write_bytes(_tar_gz_zero_tail_bomb())
    peak_file = tmp_path / "peak-rss"
    proc = subprocess.run([sys.executable, "-c", CHILD_MAIN, "sdist", "-n", "--max-total-size", limit,
                           "--max-trailing-size", str(20 * GiB), str(path)], capture_output=True, text=True,
                          check=False, env={**os.environ, PEAK_FILE_ENV: str(peak_file)})
    assert proc.returncode == 1 and f"inflates past --max-total-size {limit}" in proc.stderr, proc.stderr
    assert read_peak(peak_file) < 300 * MiB, f"peak RSS {read_peak(peak_file) / MiB:.0f} MiB"


def test_escaping_names_and_links_import_and_write_nothing_outside(tmp_path: Path) -> None:
    """Members named ../x, /x and links to outside import (recipe-only) and rebuild; the only new files
    are the store and the -o target, checked over the whole sandbox around the working directory."""
    sandbox = tmp_path / "sandbox"
    work = sandbox / "a" / "b"
    work.mkdir(parents=True)
    tar = tar_bytes([
        TarMember("../../escape.txt", b"dotdot"), TarMember("/tmp/absolute.txt", b"absolute"),
        TarMember("pkg/out", kind=tarfile.SYMTYPE, linkname="../../../etc"),
        TarMember("pkg/out/passwd", b"through the link"),
        TarMember("pkg/hard", kind=tarfile.LNKTYPE, linkname="../../escape.txt"),
    ])
    zip_data = build_zip([ZipEntry(b"../../../zip-escape.txt", b"z"), ZipEntry(b"/abs.txt", b"a")])
    archives = {"hostile-1.0.tar.gz": gzip_python(tar), "hostile-1.0-py3-none-any.whl": zip_data}
    for name, data in archives.items():
        (sandbox / name).write_bytes(data)
    before = {p for p in sandbox.rglob("*")}
    exe = str(dpip_import_executable())
    env = {**os.environ, "DPIP_STORE": str(work / "store")}
    for name in archives:
        proc = subprocess.run([exe, "auto", "--json", str(sandbox / name)], cwd=work, env=env, capture_output=True,
                              text=True, check=True)
        root = json.loads(proc.stdout)["root"]
        subprocess.run([exe, "fetch", root, "-o", f"out-{name}"], cwd=work, env=env, check=True,
                       capture_output=True)
        assert sha256_file(work / f"out-{name}") == sha256_file(sandbox / name)
    after = {p for p in sandbox.rglob("*")}
    new = {p.relative_to(work) for p in after - before}
    assert all(p.parts[0] == "store" or p.name.startswith("out-") for p in new), sorted(map(str, new))
    assert not Path("/tmp/absolute.txt").exists()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zip", "tar.gz"])
def test_100000_tiny_members_import_and_rebuild(kind: str, tmp_path: Path, cli: RunCli) -> None:
    names = [f"pkg/m{i // 1000:03d}/f{i:06d}.txt" for i in range(100_000)]
    if kind == "zip":
        data = stdlib_zip(((name, name.encode()[-7:]) for name in names), method=0)
        path = tmp_path / "many.zip"
    else:
        data = gzip_python(tar_bytes([TarMember(name, name.encode()[-7:]) for name in names]), 6)
        path = tmp_path / "many-1.0.tar.gz"
    path.write_bytes(data)
    summary = assert_roundtrip(cli, path, tmp_path / "store")
    assert summary["members"] == 100_000


def _store_blocks(store: Path) -> int:
    try:
        conn = sqlite3.connect(store / "blocks.sqlite3", timeout=0.1)
        try:
            return int(conn.execute("SELECT count(*) FROM blocks").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def _big_archive(kind: str, folder: Path) -> Path:
    """~200 MB of distinct incompressible members: several 64 MiB store batches, so a kill lands
    after a commit and before the end. The wheel's members are deflated (level 1), so its import
    also runs the compressor search when it is killed."""
    blobs = [(f"pkg-1.0/blob{i}.bin", os.urandom(8 * MiB)) for i in range(24)]
    if kind == "tar":
        path = folder / "big-1.0.tar"
        path.write_bytes(tar_bytes([TarMember(name, data) for name, data in blobs]))
    else:
        path = folder / "big-1.0-py3-none-any.whl"
        path.write_bytes(build_zip([ZipEntry(name.encode(), data, stored=deflate(data, 1)) for name, data in blobs]))
    return path


def _gc(cli: RunCli, store: Path) -> int:
    rc, out, err = cli("store", "gc", "--json", "--store", store)
    assert rc == 0, err
    removed = json.loads(out)["removed_blocks"]
    assert isinstance(removed, int)
    return removed


@pytest.mark.parametrize("kind, gc_first", [("tar", False), ("wheel", True)])
def test_import_killed_halfway_leaves_the_store_consistent_and_importable(kind: str, gc_first: bool, tmp_path: Path,
                                                                          cli: RunCli) -> None:
    """kill -9 mid-import: `store verify` is clean; `store gc` removes what the killed run left (or,
    after a re-import that reuses those blocks, nothing); the re-import fetches byte for byte."""
    path = _big_archive(kind, tmp_path)
    store = tmp_path / "store"
    proc = subprocess.Popen([str(dpip_import_executable()), "auto", "--store", str(store), str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline:
            if (store / "blocks.sqlite3").exists() and _store_blocks(store) > 0:  # a batch is committed
                break
            time.sleep(0.02)
        killed = proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed, "the import finished before it could be killed; make the archive bigger"
    rc, _, err = cli("store", "verify", "--store", store)
    assert rc == 0, err
    left = _store_blocks(store)
    if gc_first:
        assert _gc(cli, store) == left > 0  # no archive of the index reaches them
        assert _store_blocks(store) == 0
    summary = assert_roundtrip(cli, path, store)
    if not gc_first:
        assert summary["new_blocks"] < summary["blocks"]  # what the killed run committed is reused
        assert _gc(cli, store) == 0
    assert _store_blocks(store) >= summary["blocks"]
    rc, _, err = cli("store", "verify", "--store", store)
    assert rc == 0, err


def test_overlapping_entries_bomb_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    """Two central directory entries pointing at one local header (an overlap bomb) are refused."""
    data = build_zip([ZipEntry(b"a.py", TEXT)])
    cd_at = data.index(b"PK\x01\x02")
    eocd_at = data.index(b"PK\x05\x06")
    entry = data[cd_at:eocd_at]
    eocd = bytearray(data[eocd_at:])
    eocd[8:10] = eocd[10:12] = (2).to_bytes(2, "little")  # entries on this disk / in total
    eocd[12:16] = (2 * len(entry)).to_bytes(4, "little")  # central directory size
    path = tmp_path / "overlap.zip"
    path.write_bytes(data[:cd_at] + entry + entry + bytes(eocd))
    assert_clear_error(cli, path, tmp_path / "store", "overlaps")
