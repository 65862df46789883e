"""Every zip and tar flavour and odd case rebuilds byte for byte; members that cannot live in the tree
stay in the recipe with a reason, and members that cannot be recompressed are kept verbatim."""

from __future__ import annotations

import shutil
import stat
import struct
import subprocess
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .archive_builders import (
    FLAG_ENCRYPTED,
    FLAG_UTF8,
    TarMember,
    ZipEntry,
    build_zip,
    bz2_python,
    deflate,
    end_of_tar,
    extra_block,
    gnu_sparse_header,
    gzip_python,
    python_source,
    stdlib_zip,
    tar_bytes,
    xz_python,
)
from .archive_checks import assert_roundtrip
from .conftest import RunCli

TEXT = python_source(3, 200)


@dataclass(frozen=True, slots=True)
class Case:
    """An archive to rebuild and, per member name, what its report must say: (how, path) with
    ``path`` None for members kept out of the tree (their note must then say why)."""

    suffix: str
    data: Callable[[], bytes]
    expect: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)


def _wheel_entries(**changes: object) -> list[ZipEntry]:
    return [ZipEntry(b"pkg/__init__.py", b"", **changes),  # type: ignore[arg-type]
            ZipEntry(b"pkg/mod.py", TEXT, **changes)]  # type: ignore[arg-type]


def _full_flush_deflate(data: bytes) -> bytes:
    """Valid deflate that no known writer produces: a full flush after 1000 bytes."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data[:1000]) + c.flush(zlib.Z_FULL_FLUSH) + c.compress(data[1000:]) + c.flush()


def _symlink(name: bytes, target: bytes) -> ZipEntry:
    return ZipEntry(name, target, method=0, external=(stat.S_IFLNK | 0o777) << 16)


ZIP_CASES = {
    "zipfile-deflated": Case(".whl", lambda: stdlib_zip([("a.py", TEXT), ("b/c.txt", b"x" * 5000)]),
                             {"a.py": ("replayed", "a.py")}),
    "zipfile-stored": Case(".whl", lambda: stdlib_zip([("a.py", TEXT), ("empty", b"")], method=0),
                           {"a.py": ("stored", "a.py")}),
    "zipfile-level9": Case(".zip", lambda: stdlib_zip([("a.py", TEXT)], level=9), {"a.py": ("replayed", "a.py")}),
    "descriptor-with-signature": Case(".whl", lambda: build_zip(_wheel_entries(descriptor="sig")),
                                      {"pkg/mod.py": ("replayed", "pkg/mod.py")}),
    "descriptor-without-signature": Case(".whl", lambda: build_zip(_wheel_entries(descriptor="nosig")),
                                         {"pkg/mod.py": ("replayed", "pkg/mod.py")}),
    "zip64-entries-and-end": Case(".whl", lambda: build_zip(_wheel_entries(zip64=True), zip64_end=True),
                                  {"pkg/mod.py": ("replayed", "pkg/mod.py")}),
    "zip64-with-descriptors": Case(".whl", lambda: build_zip(_wheel_entries(zip64=True, descriptor="sig"),
                                                             zip64_end=True)),
    "extra-fields": Case(".whl", lambda: build_zip(_wheel_entries(
        local_extra=extra_block(0x5455, b"\x03" + struct.pack("<II", 1_700_000_000, 1_700_000_000)) + b"\x00\x00\x00",
        central_extra=extra_block(0x5455, b"\x01" + struct.pack("<I", 1_700_000_000))))),
    "comments": Case(".whl", lambda: build_zip(_wheel_entries(comment=b"member comment"),
                                               comment=b"archive comment \xff")),
    "prepended-stub": Case(".zip", lambda: build_zip(_wheel_entries(), prefix=b"#!/bin/sh\nexit 0\n" + bytes(999))),
    "trailing-bytes": Case(".whl", lambda: build_zip(_wheel_entries(), trailing=b"\x00" * 1000 + b"junk")),
    "bzip2-method-kept-verbatim": Case(".zip", lambda: build_zip([
        ZipEntry(b"a.txt", b"hello", method=12, stored=bz2_python(b"hello")), ZipEntry(b"b.py", TEXT)]),
        {"a.txt": ("verbatim", None), "b.py": ("replayed", "b.py")}),
    "encrypted-member-kept-verbatim": Case(".zip", lambda: build_zip([
        ZipEntry(b"secret.txt", b"0123456789", method=0, flags=FLAG_ENCRYPTED, stored=bytes(range(12)) + b"ciphertext",
                 usize=10), ZipEntry(b"plain.txt", b"plain", method=0)]),
        {"secret.txt": ("verbatim", None), "plain.txt": ("stored", "plain.txt")}),
    "zlib-level1-deflate": Case(".zip", lambda: build_zip([ZipEntry(b"l1.py", TEXT, stored=deflate(TEXT, 1))]),
                                {"l1.py": ("replayed", "l1.py")}),
    "unreproducible-deflate-kept-verbatim": Case(".zip", lambda: build_zip([
        ZipEntry(b"odd.py", TEXT, stored=_full_flush_deflate(TEXT)), ZipEntry(b"next.py", TEXT)]),
        {"odd.py": ("verbatim", "odd.py"), "next.py": ("replayed", "next.py")}),
    "duplicate-names": Case(".zip", lambda: build_zip([ZipEntry(b"dup.txt", b"first"), ZipEntry(b"dup.txt", b"second")]),
                            {}),
    "absolute-and-dotdot-names": Case(".zip", lambda: build_zip([
        ZipEntry(b"/etc/passwd", b"root"), ZipEntry(b"../../escape.txt", b"out"), ZipEntry(b"ok.txt", b"in")]),
        {"/etc/passwd": (None, None), "../../escape.txt": (None, None), "ok.txt": ("replayed", "ok.txt")}),
    "invalid-utf8-name": Case(".zip", lambda: build_zip([ZipEntry(b"caf\xe9.txt", b"latin-1 name", method=0),
                                                         ZipEntry("café.txt".encode(), b"utf-8", method=0, flags=FLAG_UTF8)]),
                              {"café.txt": ("stored", "café.txt")}),
    "file-and-dir-same-name": Case(".zip", lambda: build_zip([
        ZipEntry(b"a", b"a file"), ZipEntry(b"a/b.txt", b"below a file"), ZipEntry(b"c/", method=0),
        ZipEntry(b"c", b"file where a dir is")]),
        {"a": ("replayed", "a"), "a/b.txt": (None, None), "c": (None, None)}),
    "symlinks-inside-and-escaping": Case(".zip", lambda: build_zip([
        ZipEntry(b"pkg/real.txt", b"real"), _symlink(b"pkg/link", b"real.txt"), _symlink(b"evil", b"../../etc/passwd")]),
        {"pkg/link": ("stored", "pkg/link"), "evil": (None, None)}),
    "directory-entries": Case(".zip", lambda: build_zip([
        ZipEntry(b"d/", method=0, external=(stat.S_IFDIR | 0o755) << 16), ZipEntry(b"d/e/", method=0),
        ZipEntry(b"d/f.txt", b"f")])),
    "directory-entry-with-content": Case(".zip", lambda: build_zip([ZipEntry(b"d/", b"data in a directory entry"),
                                                                    ZipEntry(b"d/f.txt", b"f")]),
                                         {"d/": ("verbatim", None), "d/f.txt": ("replayed", "d/f.txt")}),
    "empty-zip": Case(".zip", lambda: build_zip([])),
    "empty-deflated-member": Case(".whl", lambda: build_zip([ZipEntry(b"empty.py", b"")]),
                                  {"empty.py": ("replayed", "empty.py")}),
    "non-unix-attributes": Case(".zip", lambda: build_zip([ZipEntry(b"dos.txt", b"dos", made_by=0x0014, external=0x20)])),
}


def _tar_members(fmt: int) -> list[TarMember]:
    long_dir = "d" * 60 + "/" + "e" * 60
    return [
        TarMember("pkg-1.0/", kind=tarfile.DIRTYPE, mode=0o755),
        TarMember("pkg-1.0/setup.py", TEXT),
        TarMember("pkg-1.0/empty.txt", b""),
        TarMember(f"pkg-1.0/{long_dir}/{'f' * 90}.py", b"long name"),
        TarMember("pkg-1.0/link", kind=tarfile.SYMTYPE, linkname="setup.py"),
        TarMember("pkg-1.0/long-link", kind=tarfile.SYMTYPE, linkname=f"{long_dir}/{'f' * 90}.py"),
        TarMember("pkg-1.0/hard", kind=tarfile.LNKTYPE, linkname="pkg-1.0/setup.py"),
    ]


def _tar(fmt: int, extra: list[TarMember] | None = None) -> Callable[[], bytes]:
    return lambda: tar_bytes(_tar_members(fmt) + (extra or []), fmt)


_TAR_EXPECT: dict[str, tuple[str | None, str | None]] = {
    "pkg-1.0/setup.py": ("stored", "pkg-1.0/setup.py"),
    "pkg-1.0/link": ("empty", "pkg-1.0/link"),
    "pkg-1.0/hard": ("empty", None),
}

_HOSTILE = [
    TarMember("/abs.txt", b"absolute"),
    TarMember("pkg-1.0/../../escape.txt", b"dotdot"),
    TarMember("pkg-1.0/evil", kind=tarfile.SYMTYPE, linkname="../../../etc/passwd"),
    TarMember("pkg-1.0/abs-link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"),
    TarMember("pkg-1.0/hard-out", kind=tarfile.LNKTYPE, linkname="/etc/shadow"),
    TarMember("pkg-1.0/setup.py", b"duplicate"),
    TarMember("pkg-1.0/setup.py/below", b"below a file"),
    TarMember("pkg-1.0/caf\udce9.txt", b"not utf-8"),
    TarMember("pkg-1.0/null", kind=tarfile.CHRTYPE),
    TarMember("pkg-1.0/disk", kind=tarfile.BLKTYPE),
    TarMember("pkg-1.0/fifo", kind=tarfile.FIFOTYPE),
]

TAR_CASES = {
    "ustar": Case(".tar", lambda: tar_bytes([
        m for m in _tar_members(tarfile.USTAR_FORMAT) if "long" not in m.name], tarfile.USTAR_FORMAT),
        {"pkg-1.0/setup.py": ("stored", "pkg-1.0/setup.py")}),
    "ustar-prefix-field": Case(".tar", lambda: tar_bytes([TarMember("p" * 90 + "/" + "q" * 80 + ".py", b"split")],
                                                        tarfile.USTAR_FORMAT)),
    "gnu-long-names-and-links": Case(".tar", _tar(tarfile.GNU_FORMAT), _TAR_EXPECT),
    "pax": Case(".tar", _tar(tarfile.PAX_FORMAT), _TAR_EXPECT),
    "pax-global-header": Case(".tar", lambda: tar_bytes([TarMember("pax_global_header", kind=tarfile.XGLTYPE,
                                                                   pax={"comment": "git archive"}),
                                                         TarMember("a.txt", b"a")])),
    "pax-unicode-and-records": Case(".tar", lambda: tar_bytes([TarMember("pkg/ünïcode.txt", b"u", pax={
        "comment": "x" * 300, "mtime": "1700000000.123456789"})])),
    "gnu-hostile-members": Case(".tar", _tar(tarfile.GNU_FORMAT, _HOSTILE), {
        **_TAR_EXPECT, "/abs.txt": (None, None), "pkg-1.0/../../escape.txt": (None, None),
        "pkg-1.0/evil": (None, None), "pkg-1.0/abs-link": (None, None), "pkg-1.0/hard-out": (None, None),
        "pkg-1.0/setup.py/below": (None, None), "pkg-1.0/null": (None, None), "pkg-1.0/fifo": (None, None)}),
    "pax-hostile-members": Case(".tar", _tar(tarfile.PAX_FORMAT, _HOSTILE)),
    "gnu-sparse-crafted": Case(".tar", lambda: tar_bytes([TarMember("a.txt", b"a")], tarfile.GNU_FORMAT)[:1024]
                               + gnu_sparse_header("sparse.img", 1 << 20, [(0, b"head" * 128), (65536, b"mid" * 200)])
                               + end_of_tar(), {"sparse.img": ("verbatim", None), "a.txt": ("stored", "a.txt")}),
    # pax sparse 1.0: the data starts with the map (1 segment: offset 0, 5 bytes) padded to 512.
    "pax-sparse-keys": Case(".tar", lambda: tar_bytes([TarMember("s.img", b"1\n0\n5\n".ljust(512, b"\0") + b"hello", pax={
        "GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "s.img",
        "GNU.sparse.realsize": "4096"})]), {"s.img": ("verbatim", None)}),
    "v7-directory-as-slash-file": Case(".tar", lambda: tar_bytes([TarMember("old/", kind=tarfile.REGTYPE),
                                                                  TarMember("old/f", b"f")], tarfile.USTAR_FORMAT)),
    "dot-slash-names": Case(".tar", lambda: tar_bytes([TarMember("./", kind=tarfile.DIRTYPE), TarMember("./a.txt", b"a"),
                                                       TarMember("./sub/./b.txt", b"b"), TarMember("c//d.txt", b"d")]),
                            {"./": ("empty", None), "./a.txt": ("stored", "a.txt"), "./sub/./b.txt": ("stored", "sub/b.txt"),
                             "c//d.txt": ("stored", None)}),
    "extra-zero-records-and-garbage": Case(".tar", lambda: tar_bytes([TarMember("a", b"a")]) + bytes(10240) + b"junk"),
}

CASES = {**ZIP_CASES, **TAR_CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_odd_archive_rebuilds_identically(name: str, tmp_path: Path, cli: RunCli) -> None:
    case = CASES[name]
    archive = tmp_path / f"{name}{case.suffix}"
    archive.write_bytes(case.data())
    summary = assert_roundtrip(cli, archive, tmp_path / "store")
    detail: dict[str, dict[str, object]] = {}
    for m in summary["member_detail"]:
        detail.setdefault(m["name"], m)  # the first of duplicates
    for member, (how, path) in case.expect.items():
        assert member in detail, sorted(detail)
        got = detail[member]
        if how is not None:
            assert got["how"] == how, got
        assert got["path"] == path, got
        if path is None:
            assert got["note"], f"{member} is kept out of the tree without a reason: {got}"


@pytest.mark.parametrize("suffix, wrap", [(".tar.gz", gzip_python), (".tar.bz2", bz2_python),
                                          (".tar.xz", xz_python)])
@pytest.mark.parametrize("name", ["gnu-hostile-members", "pax", "gnu-sparse-crafted"])
def test_odd_tar_rebuilds_identically_in_every_container(name: str, suffix: str, wrap: Callable[[bytes], bytes],
                                                           tmp_path: Path, cli: RunCli) -> None:
    archive = tmp_path / f"{name}{suffix}"
    archive.write_bytes(wrap(CASES[name].data()))
    assert_roundtrip(cli, archive, tmp_path / "store")


def test_concatenated_gzip_members_and_trailing_zeros_rebuild_identically(tmp_path: Path, cli: RunCli) -> None:
    data = tar_bytes(_tar_members(tarfile.PAX_FORMAT))
    archive = tmp_path / "multi.tar.gz"
    archive.write_bytes(gzip_python(data[:5120]) + gzip_python(data[5120:], 6) + bytes(512))
    summary = assert_roundtrip(cli, archive, tmp_path / "store")
    assert len(summary["outer"]) == 2


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar is not installed")
@pytest.mark.parametrize("fmt", ["gnu", "posix", "oldgnu"])
def test_gnu_tar_sparse_archive_rebuilds_identically_with_sparse_member_verbatim(
        fmt: str, tmp_path: Path, cli: RunCli) -> None:
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "sparse.img", "wb") as f:
        f.write(b"start")
        f.seek(3 << 20)
        f.write(b"end")
    (src / "plain.txt").write_bytes(b"plain")
    archive = tmp_path / f"sparse-{fmt}.tar"
    subprocess.run(["tar", f"--format={fmt}", "--sparse", "-cf", str(archive), "-C", str(src), "sparse.img",
                    "plain.txt"], check=True)
    summary = assert_roundtrip(cli, archive, tmp_path / "store")
    detail = {m["name"]: m for m in summary["member_detail"]}
    assert detail["plain.txt"]["path"] == "plain.txt"
    # pax sparse 1.0 names the header ./GNUSparseFile.0/sparse.img (the real name is in GNU.sparse.name).
    sparse = next(m for name, m in detail.items() if name.endswith("sparse.img"))
    if sparse["how"] == "verbatim":  # tar wrote it sparse (the file system kept the hole)
        assert sparse["path"] is None and "sparse" in sparse["note"]
