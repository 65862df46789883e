"""Zip and tar bombs stop at a limit with one line, in bounded memory; within raised limits they import exactly.

Every import runs the CLI in a child (``run_watched``): its own peak RSS (wait4) stays under
300 MB, and its temporary files never hold more than the archive's declared content.
"""

from __future__ import annotations

import bz2
import lzma
import re
from pathlib import Path

import pytest

from importer.archive.streams import PIECE, bounded_decompress
from importer.compress import search_params
from tests.archive_builders import TarMember, gzip_python, tar_bytes, zero_bomb
from tests.archive_checks import sha256_file
from tests.conftest import RunCli

from .archive_bombs import (
    RSS_CAP,
    GiB,
    MiB,
    checked,
    many_members_zip,
    member_bomb_tar_gz,
    member_bomb_zip,
    run_watched,
)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_zip_member_bomb_is_refused_by_the_ratio_before_inflating(tmp_path: Path) -> None:
    data = checked(member_bomb_zip(GiB), 2 * MiB)  # 1 GiB of zeros, honestly declared, in ~1 MB
    path = _write(tmp_path / "bomb-1.0-py3-none-any.whl", data)
    offset = data.index(b"pkg/bomb.bin") + len(b"pkg/bomb.bin")
    run = run_watched("auto", path, tmp=tmp_path / "tmp", store=tmp_path / "store")
    assert run.rc == 1
    assert run.err == (f"dpip-import auto: bomb-1.0-py3-none-any.whl: member 'pkg/bomb.bin': offset {offset}: "
                       f"members declare {GiB} bytes, past --max-ratio 100 ({100 * len(data)} bytes for this "
                       f"{len(data)}-byte file)\n")
    assert run.peak_rss < RSS_CAP and run.peak_tmp == 0


def test_zip_member_bomb_within_raised_limits_imports_exactly_in_bounded_memory(tmp_path: Path,
                                                                                  cli: RunCli) -> None:
    """256 MiB of zeros from ~260 KB, allowed by --max-ratio 2000: inflated, hashed and searched
    (its stream, cut by sync flushes, matches no compressor: kept as it was) in pieces."""
    path = _write(tmp_path / "zeros-1.0-py3-none-any.whl", checked(member_bomb_zip(256 * MiB), MiB))
    store = tmp_path / "store"
    run = run_watched("auto", "--json", "--max-ratio", "2000", path, tmp=tmp_path / "tmp", store=store)
    assert run.rc == 0, run.err
    assert run.peak_rss < RSS_CAP, f"peak RSS {run.peak_rss / MiB:.0f} MiB"
    assert run.peak_tmp <= 256 * MiB
    root = re.search(r'"root": "(\w+)"', run.out)
    assert root is not None
    rc, _, err = cli("fetch", root.group(1), "-o", tmp_path / "out.whl", "--store", store)
    assert rc == 0, err
    assert sha256_file(tmp_path / "out.whl") == sha256_file(path)


def test_tar_gz_member_bomb_stops_at_the_ratio_while_inflating(tmp_path: Path) -> None:
    data = checked(member_bomb_tar_gz(GiB), 2 * MiB)
    path = _write(tmp_path / "bomb-1.0.tar.gz", data)
    run = run_watched("sdist", path, tmp=tmp_path / "tmp", store=tmp_path / "store")
    assert run.rc == 1
    assert re.fullmatch(rf"dpip-import sdist: bomb-1\.0\.tar\.gz: offset \d+: inflates past --max-ratio 100 "
                        rf"\({100 * len(data)} bytes for this {len(data)}-byte file\)\n", run.err), run.err
    assert run.peak_rss < RSS_CAP
    assert run.peak_tmp <= 100 * len(data)  # at most what it was allowed to inflate


@pytest.mark.parametrize("suffix", [".tar.bz2", ".tar.xz"])
def test_bzip2_and_xz_bombs_stop_at_the_floor_for_small_archives(suffix: str, tmp_path: Path) -> None:
    """bzip2 and xz reach ratios deflate cannot (runs of zeros: 10^5 and more); a few-KB archive may
    still inflate to 64 MiB, and no further."""
    compressor = bz2.BZ2Compressor(9) if suffix == ".tar.bz2" else lzma.LZMACompressor(preset=0)
    # A tar header declaring 256 MiB (octal size field, checksum recomputed), then the zeros, streamed.
    block = bytearray(tar_bytes([TarMember("pkg-1.0/zeros.bin", b"")])[:512])
    block[124:136] = b"%011o\x00" % (256 * MiB)
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    out = [compressor.compress(bytes(block))]
    zeros = bytes(MiB)
    out.extend(compressor.compress(zeros) for _ in range(256 + 1))
    out.append(compressor.flush())
    data = checked(b"".join(out), 256 * 1024)
    path = _write(tmp_path / f"bomb-1.0{suffix}", data)
    run = run_watched("sdist", path, tmp=tmp_path / "tmp", store=tmp_path / "store")
    assert run.rc == 1
    assert re.fullmatch(rf"dpip-import sdist: bomb-1\.0{re.escape(suffix)}: offset \d+: inflates past --max-ratio "
                        rf"100 \({64 * MiB} bytes for this {len(data)}-byte file, the floor for small archives\)\n",
                        run.err), run.err
    assert run.peak_rss < RSS_CAP


def test_member_larger_than_max_member_size_is_refused_from_its_header(tmp_path: Path, cli: RunCli) -> None:
    data = checked(member_bomb_tar_gz(GiB), 2 * MiB)
    path = _write(tmp_path / "big-1.0.tar.gz", data)
    rc, _, err = cli("sdist", "--store", tmp_path / "store", "--max-member-size", str(GiB - 1), path)
    assert rc == 1
    assert err == (f"dpip-import sdist: big-1.0.tar.gz: member 'pkg-1.0/bomb.bin': offset 0: declares {GiB} bytes, "
                   f"past --max-member-size {GiB - 1}\n")


def test_more_members_than_max_members_is_refused(tmp_path: Path, cli: RunCli) -> None:
    zip_path = _write(tmp_path / "many-1.0.zip", many_members_zip(5))
    rc, _, err = cli("auto", "--store", tmp_path / "store", "--max-members", "4", zip_path)
    assert (rc, err) == (1, "dpip-import auto: many-1.0.zip: 5 members, past --max-members 4\n")
    tar = tar_bytes([TarMember(f"f{i}", b"x") for i in range(5)])
    tar_path = _write(tmp_path / "many-1.0.tar.gz", gzip_python(tar))
    rc, _, err = cli("auto", "--store", tmp_path / "store", "--max-members", "4", tar_path)
    assert (rc, err) == (1, ("dpip-import auto: many-1.0.tar.gz: member 'f4': offset 4096: more members than "
                             "--max-members 4\n"))


@pytest.mark.parametrize("method", ["deflate", "bzip2", "xz"])
def test_decompressing_again_never_yields_more_than_a_piece(method: str) -> None:
    """The search's second pass over a stream (streams.bounded_decompress): 64 MiB of zeros from a
    few KB, in pieces of at most 1 MiB, whatever size the compressed pieces stand for."""
    size = 64 * MiB
    if method == "deflate":
        compressed = zero_bomb(size)
    else:
        engine = bz2.BZ2Compressor(9) if method == "bzip2" else lzma.LZMACompressor(lzma.FORMAT_XZ, preset=0)
        compressed = b"".join(engine.compress(bytes(MiB)) for _ in range(64)) + engine.flush()
    pieces = [compressed[i:i + 64 * 1024] for i in range(0, len(compressed), 64 * 1024)]
    total = 0
    for out in bounded_decompress(method, pieces):
        assert 0 < len(out) <= PIECE
        total += len(out)
    assert total == size


def test_compressor_search_stops_at_its_work_limit() -> None:
    """No candidate reproduces a zero bomb cut by sync flushes, and each reads far into it before
    its first output: the search gives up once its attempts have read ``max_work`` bytes."""
    stream = zero_bomb(32 * MiB)
    result = search_params(stream, lambda: bounded_decompress("deflate", [stream]), "deflate",
                           max_work=8 * MiB)
    assert result.params is None
    assert result.reason.startswith("search stopped after ")
    assert result.reason.endswith(f"attempts: the search's attempts read {8 * MiB} bytes of input, its work limit")
