"""Bytes after an archive's end are kept exactly up to --max-trailing-size, refused with one line beyond it.

Three places: after a tar's end-of-archive block (inside the gzip stream, where gigabytes of zeros
cost a few megabytes), after the last gzip/bzip2/xz stream, after a zip's end record.
"""

from __future__ import annotations

import bz2
import lzma
from pathlib import Path

import pytest

from tests.archive_builders import TarMember, gzip_python, tar_bytes
from tests.archive_checks import assert_roundtrip
from tests.conftest import RunCli

from .archive_bombs import (
    RSS_CAP,
    GiB,
    KiB,
    MiB,
    checked,
    gzip_garbage_tar_gz,
    run_watched,
    tail_bomb_tar_gz,
    zip_garbage,
)

#: Where the trailer of ``tail_bomb_tar_gz``'s tar starts: one header block, one data block, then
#: the first end-of-archive block ends at 1,536.
TAIL_AT = 3 * 512
#: What follows that block in the tar itself: tarfile pads the archive to a 10,240-byte record.
RECORD_REST = 10240 - TAIL_AT
LIMIT = 1024 * 1024


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _one_line(cli: RunCli, path: Path, store: Path, *flags: str) -> str:
    rc, out, err = cli("auto", "--store", store, *flags, path)
    assert rc == 1, out
    assert err.count("\n") == 1, err
    return err


def test_zeros_after_the_tar_end_within_the_limit_rebuild_exactly(tmp_path: Path, cli: RunCli) -> None:
    path = _write(tmp_path / "padded-1.0.tar.gz", checked(tail_bomb_tar_gz(LIMIT - RECORD_REST), MiB))
    assert_roundtrip(cli, path, tmp_path / "store")


def test_gigabytes_of_zeros_after_the_tar_end_stop_at_the_limit(tmp_path: Path) -> None:
    path = _write(tmp_path / "tail-1.0.tar.gz", checked(tail_bomb_tar_gz(4 * GiB), 8 * MiB))
    run = run_watched("sdist", path, tmp=tmp_path / "tmp", store=tmp_path / "store")
    assert run.rc == 1
    assert run.err == (f"dpip-import sdist: tail-1.0.tar.gz: offset {TAIL_AT}: more than {LIMIT} bytes after the "
                       f"tar's end-of-archive block, past --max-trailing-size {LIMIT}\n")
    assert run.peak_rss < RSS_CAP and run.peak_tmp < 2 * MiB


def test_a_raised_trailing_limit_keeps_them_and_spools_no_more_than_the_content(tmp_path: Path,
                                                                                 cli: RunCli) -> None:
    size = 32 * MiB
    path = _write(tmp_path / "tail-1.0.tar.gz", checked(tail_bomb_tar_gz(size), MiB))
    store = tmp_path / "store"
    limit = str(size + RECORD_REST)
    run = run_watched("sdist", "--max-trailing-size", limit, path, tmp=tmp_path / "tmp", store=store)
    assert run.rc == 0, run.err
    assert run.peak_rss < RSS_CAP
    assert run.peak_tmp <= size + 16 * KiB  # the skeleton spool: the trailer and the tar's own blocks
    assert_roundtrip(cli, path, store, "--max-trailing-size", limit)


@pytest.mark.parametrize("garbage", [1, 1000, LIMIT])
def test_garbage_after_the_last_gzip_member_within_the_limit_rebuilds(garbage: int, tmp_path: Path,
                                                                      cli: RunCli) -> None:
    path = _write(tmp_path / "junk-1.0.tar.gz", gzip_garbage_tar_gz(garbage, 0x41))
    assert_roundtrip(cli, path, tmp_path / "store")


@pytest.mark.parametrize("wrap, suffix, kind", [(gzip_python, ".tar.gz", "gzip"), (bz2.compress, ".tar.bz2", "bzip2"),
                                                (lzma.compress, ".tar.xz", "xz")])
def test_garbage_after_the_last_stream_past_the_limit_is_one_line(wrap: object, suffix: str, kind: str,
                                                                  tmp_path: Path, cli: RunCli) -> None:
    body = wrap(tar_bytes([TarMember("pkg-1.0/setup.py", b"setup()\n")]))  # type: ignore[operator]
    path = _write(tmp_path / f"junk-1.0{suffix}", body + b"\x00" * (LIMIT + 1))
    err = _one_line(cli, path, tmp_path / "store")
    assert err == (f"dpip-import auto: junk-1.0{suffix}: offset {len(body)}: more than {LIMIT} bytes after the last "
                   f"{kind} stream, past --max-trailing-size {LIMIT}\n")
    assert_roundtrip(cli, path, tmp_path / "store", "--max-trailing-size", str(LIMIT + 1))


def test_garbage_after_a_zip_end_record_within_the_limit_rebuilds(tmp_path: Path, cli: RunCli) -> None:
    path = _write(tmp_path / "junk-1.0-py3-none-any.whl", zip_garbage(LIMIT))
    assert_roundtrip(cli, path, tmp_path / "store")


def test_garbage_after_a_zip_end_record_past_the_limit_is_one_line(tmp_path: Path, cli: RunCli) -> None:
    data = zip_garbage(LIMIT + 64 * KiB + 100)  # past the comment and the trailing bytes the search covers
    path = _write(tmp_path / "junk-1.0-py3-none-any.whl", data)
    err = _one_line(cli, path, tmp_path / "store")
    window = 22 + 0xFFFF + LIMIT
    assert err == (f"dpip-import auto: junk-1.0-py3-none-any.whl: offset {len(data)}: no end of central directory "
                   f"record in the last {window} bytes: not a zip, truncated, or trailing bytes past "
                   f"--max-trailing-size {LIMIT}\n")
    assert_roundtrip(cli, path, tmp_path / "store", "--max-trailing-size", str(2 * LIMIT))
