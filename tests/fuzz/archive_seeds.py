"""The seed corpora of the archive readers, built when a fuzz target first draws one (:func:`archive_corpora`).

``zip``: a setuptools and a hatchling wheel (the demo project, its modules cut short so
each seed stays a few KB) and hand-made odd zips (zip64, data descriptors with and without
signature, deflated entries with no bytes, a prepended stub and a comment, a symlink, an encrypted
flag). ``tar``: the sdists' tars (decompressed) and hand-made GNU long-name, pax, old
sparse, v7 and trailing-bytes tars. ``container``: gzip (several members, every header
field), bzip2, xz (concatenated, stream padding) and trailing garbage.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import struct
import tarfile
import tempfile
import zlib
from functools import cache
from pathlib import Path

from tests.archive_builders import (
    MADE_BY_UNIX,
    SOURCE_DATE_EPOCH,
    TarMember,
    ZipEntry,
    build_with_backend,
    build_zip,
    gnu_sparse_header,
    project_files,
    tar_bytes,
    write_project,
)

_TEXT = b"def f(x):\n    return x * 2\n" * 8


def _zips(projects: list[tuple[str, Path, Path]]) -> dict[str, bytes]:
    out = {f"{backend}-wheel.whl": wheel.read_bytes() for backend, wheel, _ in projects}
    symlink = (0o120777 << 16)
    out.update({
        "zip64.zip": build_zip([ZipEntry(b"a.py", _TEXT, zip64=True), ZipEntry(b"b.txt", b"b", method=0, zip64=True)],
                               zip64_end=True),
        "descriptors.zip": build_zip([ZipEntry(b"s.py", _TEXT, descriptor="sig"),
                                      ZipEntry(b"n.txt", b"stored", method=0, descriptor="nosig")]),
        "old-empty.zip": build_zip([ZipEntry(b"d/", b"", stored=b"", external=(0o40755 << 16) | 0x10),
                                    ZipEntry(b"d/e.txt", b"", stored=b"\x03\x00")]),
        "stub-comment.zip": build_zip([ZipEntry(b"x.py", _TEXT)], prefix=b"#!/bin/sh\nexit 0\n", comment=b"hi"),
        "symlink.zip": build_zip([ZipEntry(b"t.txt", b"t", method=0),
                                  ZipEntry(b"l", b"t.txt", method=0, external=symlink, made_by=MADE_BY_UNIX)]),
        "encrypted.zip": build_zip([ZipEntry(b"e.bin", b"", stored=b"\x00" * 24, flags=1, usize=12)]),
    })
    return out


def _fixed_times(tar: bytes) -> bytes:
    """``tar`` written again with every mtime at the builders' SOURCE_DATE_EPOCH: setuptools'
    sdist stamps its members with the build's clock (in pax records too), and a seed must be the
    same bytes on every run for ``make test`` to draw the same mutants."""
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(tar)) as source, \
            tarfile.open(fileobj=out, mode="w", format=source.format) as target:
        for member in source.getmembers():
            member.mtime = int(SOURCE_DATE_EPOCH)
            member.pax_headers = {k: v for k, v in member.pax_headers.items() if k != "mtime"}
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    return out.getvalue()


def _tars(projects: list[tuple[str, Path, Path]]) -> dict[str, bytes]:
    out = {f"{backend}-sdist.tar": _fixed_times(gzip.decompress(sdist.read_bytes())) for backend, _, sdist in projects}
    long = "pkg/" + "d" * 120 + "/module_with_a_long_name.py"
    sparse = gnu_sparse_header("sparse.bin", 4096, [(0, b"a" * 512), (2048, b"b" * 512)])
    out.update({
        "gnu-long.tar": tar_bytes([TarMember(long, _TEXT), TarMember("l", kind=tarfile.SYMTYPE, linkname=long)],
                                  tarfile.GNU_FORMAT),
        "pax.tar": tar_bytes([TarMember("p\u00e9.py", _TEXT, pax={"mtime": "1700000000.5", "comment": "x"})]),
        "v7-dir.tar": tar_bytes([TarMember("d/", kind=tarfile.DIRTYPE), TarMember("d/f", b"f")], tarfile.USTAR_FORMAT),
        "sparse.tar": sparse + bytes(1024),
        "trailing.tar": tar_bytes([TarMember("a", b"a")]) + b"junk" * 8,
    })
    return out


def _containers(tar: bytes) -> dict[str, bytes]:
    fields = gzip.compress(tar, mtime=1)
    header = bytearray(b"\x1f\x8b\x08\x1e" + struct.pack("<I", 1) + b"\x00\x03")  # FHCRC FEXTRA FNAME FCOMMENT
    header += struct.pack("<H", 4) + b"ab\x00\x00" + b"name.tar\x00" + b"comment\x00"
    header += struct.pack("<H", zlib.crc32(header) & 0xFFFF)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(tar) + deflate.flush()
    return {
        "gzip-two-members.tar.gz": gzip.compress(tar[:700], mtime=0) + gzip.compress(tar[700:], mtime=0),
        "gzip-all-fields.tar.gz": bytes(header) + body + struct.pack("<II", zlib.crc32(tar), len(tar)),
        "gzip-garbage.tar.gz": fields + b"\x00" * 40,
        "bzip2-two-streams.tar.bz2": bz2.compress(tar[:900]) + bz2.compress(tar[900:]),
        "xz-padding.tar.xz": lzma.compress(tar[:800]) + bytes(8) + lzma.compress(tar[800:]) + bytes(4),
    }


@cache
def archive_corpora() -> dict[str, dict[str, bytes]]:
    """``zip``, ``tar`` and ``container`` seeds by file name (built with real backends, once per process)."""
    with tempfile.TemporaryDirectory() as folder:
        projects = []
        for backend in ("setuptools", "hatchling"):
            # The demo project with its big modules cut short, so that each seed stays a few KB.
            files = {name: data[:2000] for name, data in project_files(backend, 1).items()}
            files = {name: data if not name.endswith("data.py") else b"TABLE = []\n" for name, data in files.items()}
            source = Path(folder) / backend
            write_project(source, files)
            wheel = build_with_backend(backend, "wheel", source, source / "dist")
            sdist = build_with_backend(backend, "sdist", source, source / "dist")
            projects.append((backend, wheel, sdist))
        small = tar_bytes([TarMember("pkg-1.0/setup.py", _TEXT), TarMember("pkg-1.0/PKG-INFO", b"Name: pkg\n")])
        return {"zip": _zips(projects), "tar": _tars(projects), "container": _containers(small)}
