"""Hostile archives, generated small: zip and tar bombs, gzip-after-end bombs, nested bombs, many streams.

Every generator builds its archive from compressed pieces (never the expanded content), so a
bomb that inflates to gigabytes costs megabytes to make and to keep. Each returns bytes whose
size the caller checks before writing them (:func:`checked`).

* :func:`member_bomb_zip`: one member of ``size`` zeros, honest headers (CRC, sizes, zip64).
* :func:`member_bomb_tar_gz`: a tar whose one member is ``size`` zeros, gzip'd.
* :func:`tail_bomb_tar_gz`: a small valid tar, then ``size`` zeros after its end blocks, in the
  same gzip stream (tar readers stop at the end blocks; the zeros are "trailing garbage").
* :func:`gzip_garbage_tar_gz` / :func:`zip_garbage`: bytes after the last gzip member / after a zip's EOCD.
* :func:`nested_bomb_zip`: 42.zip-style: ``fanout`` copies of a zip at every level.
* :func:`many_streams_tar_gz`: a tar cut into ``count`` gzip members, concatenated.
* :func:`many_members_zip`: ``count`` tiny deflated members.

:func:`run_watched` runs the CLI in a child and reports its exit, output, peak RSS and the peak
size of its temporary files, for the memory and temp-disk caps the tests assert.
"""

from __future__ import annotations

import contextlib
import io
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench.peak_rss import CHILD_MAIN, PEAK_FILE_ENV, read_peak
from tests.archive_builders import (
    BOMB_UNIT,
    TarMember,
    ZipEntry,
    build_zip,
    gzip_python,
    tar_bytes,
    zero_bomb,
)

KiB: Final = 1 << 10
MiB: Final = 1 << 20
GiB: Final = 1 << 30
_ZEROS: Final = bytes(BOMB_UNIT)


def checked(data: bytes, at_most: int) -> bytes:
    """``data`` after checking it is at most ``at_most`` bytes (a generator bug must not fill the disk)."""
    if len(data) > at_most:
        raise AssertionError(f"generated archive is {len(data)} bytes, over its budget of {at_most}")
    return data


def zeros_crc(size: int, head: bytes = b"") -> int:
    """CRC-32 of ``head`` followed by ``size`` zero bytes (``size`` a multiple of BOMB_UNIT)."""
    crc = zlib.crc32(head)
    for _ in range(size // BOMB_UNIT):
        crc = zlib.crc32(_ZEROS, crc)
    return crc


def member_bomb_zip(size: int, name: bytes = b"pkg/bomb.bin") -> bytes:
    """A wheel-shaped zip whose member ``name`` honestly declares and inflates to ``size`` zeros."""
    big = size >= 0xFFFFFFFF
    entries = [
        ZipEntry(b"pkg/__init__.py", b"", method=0),
        ZipEntry(name, b"", stored=zero_bomb(size), usize=size, crc=zeros_crc(size), zip64=big),
    ]
    return build_zip(entries, zip64_end=big)


def _gzip_member(deflated: bytes, crc: int, size: int) -> bytes:
    """One gzip member (RFC 1952) around a raw deflate stream: no flags, XFL 2, OS 3 (Unix)."""
    return b"\x1f\x8b\x08\x00" + struct.pack("<I", 0) + b"\x02\x03" + deflated + struct.pack("<II", crc, size & 0xFFFFFFFF)


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 1_700_000_000
    return info.tobuf(tarfile.GNU_FORMAT)


def member_bomb_tar_gz(size: int, name: str = "pkg-1.0/bomb.bin") -> bytes:
    """An sdist whose one member is ``size`` zeros, then the tar's end blocks (zeros too), honest trailer."""
    head = _tar_header(name, size)
    zeros = size + 2 * 512
    return _gzip_member(_zero_stream(head, zeros), zeros_crc_tail(head, zeros), len(head) + zeros)


def _zero_stream(head: bytes, zeros: int) -> bytes:
    """Raw deflate of ``head`` and then ``zeros`` zero bytes (any count), built from repeated units."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    whole, rest = divmod(zeros, BOMB_UNIT)
    if whole == 0:
        return c.compress(head + bytes(rest)) + c.flush()
    first = c.compress(head) + c.compress(_ZEROS) + c.flush(zlib.Z_SYNC_FLUSH)
    unit = c.compress(_ZEROS) + c.flush(zlib.Z_SYNC_FLUSH)
    return first + unit * (whole - 1) + c.compress(bytes(rest)) + c.flush(zlib.Z_FINISH)


def zeros_crc_tail(head: bytes, zeros: int) -> int:
    """CRC-32 of ``head`` then ``zeros`` zero bytes (any count)."""
    whole, rest = divmod(zeros, BOMB_UNIT)
    crc = zeros_crc(whole * BOMB_UNIT, head)
    return zlib.crc32(bytes(rest), crc)


def tail_bomb_tar_gz(size: int) -> bytes:
    """A valid one-file tar, then ``size`` more zeros after its end blocks, in one honest gzip member."""
    tar = tar_bytes([TarMember("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n")])
    deflated = _zero_stream(tar, size)
    return _gzip_member(deflated, zeros_crc_tail(tar, size), len(tar) + size)


def gzip_garbage_tar_gz(garbage: int, byte: int = 0) -> bytes:
    """A valid small ``.tar.gz`` followed by ``garbage`` bytes of ``byte`` that start no gzip member."""
    tar = tar_bytes([TarMember("pkg-1.0/setup.py", b"from setuptools import setup\nsetup()\n")])
    return gzip_python(tar) + bytes([byte]) * garbage


def zip_garbage(garbage: int) -> bytes:
    """A valid small zip followed by ``garbage`` zero bytes after its end of central directory."""
    return build_zip([ZipEntry(b"pkg/__init__.py", b"x = 1\n")], trailing=bytes(garbage))


def nested_bomb_zip(levels: int, fanout: int, leaf_size: int) -> bytes:
    """42.zip's shape: the innermost zip holds ``fanout`` members of ``leaf_size`` zeros; every zip
    above holds ``fanout`` copies of the one below (``l{i}.zip``), each deflated: a copy of a
    deflated run of zeros is periodic, so it deflates again, and the whole stays small."""
    leaf = zero_bomb(leaf_size)
    crc = zeros_crc(leaf_size)
    level = build_zip([ZipEntry(f"d{i}.bin".encode(), b"", stored=leaf, usize=leaf_size, crc=crc)
                       for i in range(fanout)])
    for depth in range(levels):
        inner = level
        compressed = zlib.compressobj(9, zlib.DEFLATED, -15)
        stored = compressed.compress(inner) + compressed.flush()
        suffix = ".whl" if depth == levels - 1 else ".zip"
        names = [f"pkg/l{depth}-{i}{suffix}".encode() if depth == levels - 1 else f"l{depth}-{i}.zip".encode()
                 for i in range(fanout)]
        level = build_zip([ZipEntry(name, inner, stored=stored) for name in names])
    return level


def many_streams_tar_gz(count: int) -> bytes:
    """A tar of a few files cut into ``count`` pieces, each its own gzip member (as ``cat *.gz``)."""
    files = [TarMember(f"pkg-1.0/f{i:03d}.py", (b"# line %d\n" % i) * 400) for i in range(40)]
    tar = tar_bytes(files)
    if count > len(tar):
        raise ValueError(f"a {len(tar)}-byte tar cannot be cut into {count} non-empty gzip members")
    out = io.BytesIO()
    for i in range(count):
        piece = tar[len(tar) * i // count:len(tar) * (i + 1) // count]
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        out.write(_gzip_member(c.compress(piece) + c.flush(), zlib.crc32(piece), len(piece)))
    return out.getvalue()


def many_members_zip(count: int) -> bytes:
    """``count`` tiny deflated members under ``pkg/`` (CPython zipfile's bytes, level 6)."""
    entries = [ZipEntry(f"pkg/m{i // 1000:03d}/f{i:06d}.py".encode(), b"v = %d\n" % i) for i in range(count)]
    return build_zip(entries, zip64_end=count > 0xFFFF)


# --- running the CLI in a child, watched ----------------------------------------------------------

#: The memory every import must stay under, whatever the input (issue 10).
RSS_CAP: Final = 300 * MiB
#: A watched child is killed after this long: a hung import must fail its test, not the suite.
CHILD_TIMEOUT_S: Final = 600
#: How often the child's temporary files are measured.
_POLL_S: Final = 0.05


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What a watched CLI run did: exit code, output, peak RSS (its own ``VmHWM``) and peak bytes
    of temporary files (named ones under its TMPDIR, and unlinked ones it holds open there)."""

    rc: int
    out: str
    err: str
    peak_rss: int
    peak_tmp: int


def _tmp_bytes(pid: int, tmp: Path) -> int:
    total = 0
    for path in tmp.rglob("*"):
        with contextlib.suppress(OSError):
            total += path.lstat().st_blocks * 512
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(f"{tmp}/") and \
                        "(deleted)" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                    total += os.stat(f"/proc/{pid}/fd/{fd}").st_blocks * 512
    return total


def run_watched(*argv: str | os.PathLike[str], tmp: Path, store: Path) -> ChildRun:
    """``dpip-import ARGV`` in a child with TMPDIR at the fresh folder ``tmp`` and the store at ``store``."""
    tmp.mkdir(parents=True, exist_ok=False)
    peak_file = tmp.parent / f"{tmp.name}.peak-rss"
    env = {**os.environ, "TMPDIR": str(tmp), "DPIP_STORE": str(store), PEAK_FILE_ENV: str(peak_file)}
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-c", CHILD_MAIN, *(os.fspath(a) for a in argv)], env=env,
                                stdout=out, stderr=err)
        deadline = time.monotonic() + CHILD_TIMEOUT_S
        peak_tmp = 0
        try:
            while True:
                pid, status, _usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                peak_tmp = max(peak_tmp, _tmp_bytes(proc.pid, tmp))
                if time.monotonic() > deadline:
                    proc.kill()
                    raise AssertionError(f"dpip-import {' '.join(map(str, argv))} ran past {CHILD_TIMEOUT_S} s")
                time.sleep(_POLL_S)
        finally:
            if proc.returncode is None and proc.poll() is None:
                proc.kill()
                proc.wait()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        peak_rss = read_peak(peak_file)
        peak_file.unlink()
        return ChildRun(proc.returncode, out.read().decode(), err.read().decode(), peak_rss, peak_tmp)
