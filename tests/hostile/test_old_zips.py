"""Legal but odd encodings of old zips import and rebuild byte for byte (setuptools 0.9's 2013 sdist and kin).

Each archive is written by hand (``build_zip``) the way an old writer wrote it, imported through the
CLI into a fresh store, fetched back and compared by sha256 (``assert_roundtrip``).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.archive_builders import FLAG_DESCRIPTOR, ZipEntry, build_zip, deflate, python_source
from tests.archive_checks import assert_roundtrip
from tests.conftest import RunCli

TEXT = python_source(7, 200)
#: External attributes of a directory as Unix zips store them: st_mode 040755 << 16, plus the
#: MS-DOS directory bit (0x10) that Python 2's zipfile also set.
DIR_755 = (0o40755 << 16) | 0x10
#: "Version made by" of Python 2.7's zipfile on Unix: system 3, spec 2.0.
MADE_BY_PY27 = 0x0314


def _member(summary: dict[str, object], name: str) -> dict[str, object]:
    detail = summary["member_detail"]
    assert isinstance(detail, list)
    return next(m for m in detail if m["name"] == name)


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_setuptools_0_9_directory_entries_deflated_with_no_bytes_import(tmp_path: Path, cli: RunCli) -> None:
    """Python 2.7's zipfile (setuptools 0.9's sdist, 2013) wrote directories as method 8 with 0
    compressed bytes: no deflate stream at all. unzip reads them as empty; so must we."""
    entries = [
        ZipEntry(b"setuptools-0.9/", b"", stored=b"", external=DIR_755, made_by=MADE_BY_PY27),
        ZipEntry(b"setuptools-0.9/setup.py", TEXT, made_by=MADE_BY_PY27),
        ZipEntry(b"setuptools-0.9/docs/", b"", stored=b"", external=DIR_755, made_by=MADE_BY_PY27),
        ZipEntry(b"setuptools-0.9/docs/empty.txt", b"", stored=b"", made_by=MADE_BY_PY27),
    ]
    path = _write(tmp_path, "setuptools-0.9.zip", build_zip(entries))
    summary = assert_roundtrip(cli, path, tmp_path / "store", "--verbose")
    assert _member(summary, "setuptools-0.9/docs/")["path"] == "setuptools-0.9/docs"
    assert _member(summary, "setuptools-0.9/docs/empty.txt")["path"] == "setuptools-0.9/docs/empty.txt"


def test_deflated_member_with_no_bytes_but_a_size_is_a_clear_error(tmp_path: Path, cli: RunCli) -> None:
    path = _write(tmp_path, "liar-1.0.zip", build_zip([ZipEntry(b"a.py", b"", stored=b"", usize=5)]))
    rc, _, err = cli("auto", "--store", tmp_path / "store", path)
    assert rc == 1
    assert err.strip() == ("dpip-import auto: liar-1.0.zip: member 'a.py': offset 34: "
                           "no deflate data for a member of 5 bytes (truncated)")


@pytest.mark.parametrize("stored, why", [
    (b"\x03\x00", "empty fixed-Huffman block: what zlib writes for no input"),
    (b"\x01\x00\x00\xff\xff", "empty final stored block: what zlib level 0 writes for no input"),
    (b"\x00\x00\x00\xff\xff\x03\x00", "an empty sync-flushed stored block, then the empty final block"),
])
def test_empty_deflate_streams_of_every_shape_rebuild(stored: bytes, why: str, tmp_path: Path, cli: RunCli) -> None:
    assert zlib.decompressobj(-15).decompress(stored) == b"", why
    entries = [ZipEntry(b"pkg/empty.py", b"", stored=stored), ZipEntry(b"pkg/dir/", b"", stored=stored,
                                                                          external=DIR_755)]
    path = _write(tmp_path, "empty-1.0-py3-none-any.whl", build_zip(entries))
    assert_roundtrip(cli, path, tmp_path / "store")


@pytest.mark.parametrize("descriptor", ["sig", "nosig"])
@pytest.mark.parametrize("method", [0, 8])
def test_data_descriptors_with_and_without_signature_rebuild(descriptor: str, method: int, tmp_path: Path,
                                                             cli: RunCli) -> None:
    """Streaming writers (Java's jar, old Info-ZIP on pipes) put CRC and sizes after the data, with
    or without the optional PK\\x07\\x08 signature, for stored members too."""
    entries = [ZipEntry(b"pkg/a.py", TEXT, method=method, descriptor=descriptor),
               ZipEntry(b"pkg/empty.py", b"", method=method, descriptor=descriptor),
               ZipEntry(b"pkg/b.py", TEXT[:999], method=method, descriptor=descriptor)]
    path = _write(tmp_path, f"dd-{descriptor}-{method}-1.0.zip", build_zip(entries))
    assert_roundtrip(cli, path, tmp_path / "store")


def test_zip64_extras_on_small_members_rebuild(tmp_path: Path, cli: RunCli) -> None:
    """Writers that always emit zip64 (Java 7+ on streams, some Go tools) mark small sizes 0xFFFFFFFF."""
    entries = [ZipEntry(b"pkg/a.py", TEXT, zip64=True), ZipEntry(b"pkg/s.txt", b"stored", method=0, zip64=True),
               ZipEntry(b"pkg/d.py", TEXT, zip64=True, descriptor="sig")]
    path = _write(tmp_path, "z64-1.0-py3-none-any.whl", build_zip(entries, zip64_end=True))
    assert_roundtrip(cli, path, tmp_path / "store")


def _set_versions(data: bytes, needed: int) -> bytes:
    """Every local and central header's "version needed to extract" set to ``needed``."""
    out = bytearray(data)
    at = 0
    while (at := out.find(b"PK\x03\x04", at)) >= 0:
        struct.pack_into("<H", out, at + 4, needed)
        at += 4
    at = 0
    while (at := out.find(b"PK\x01\x02", at)) >= 0:
        struct.pack_into("<H", out, at + 6, needed)
        at += 4
    return bytes(out)


@pytest.mark.parametrize("needed", [0, 10, 63, 0x0314, 0xFFFF])
def test_any_version_needed_to_extract_rebuilds(needed: int, tmp_path: Path, cli: RunCli) -> None:
    """The field is advisory: 1.0 for deflate (too low), 6.3, a copy of "made by", garbage."""
    data = _set_versions(build_zip([ZipEntry(b"pkg/a.py", TEXT), ZipEntry(b"pkg/b.txt", b"b", method=0)]), needed)
    path = _write(tmp_path, f"v{needed}-1.0-py3-none-any.whl", data)
    assert_roundtrip(cli, path, tmp_path / "store")


def test_flags_and_descriptor_bit_on_a_member_with_sizes_in_place_rebuild(tmp_path: Path, cli: RunCli) -> None:
    """Bit 3 set while the local header still carries CRC and sizes, and a descriptor follows too."""
    data = bytearray(build_zip([ZipEntry(b"pkg/a.py", TEXT, descriptor="sig")]))
    stored = deflate(TEXT)
    struct.pack_into("<III", data, 14, zlib.crc32(TEXT), len(stored), len(TEXT))  # local crc, csize, usize
    assert struct.unpack_from("<H", data, 6)[0] & FLAG_DESCRIPTOR
    path = _write(tmp_path, "both-1.0-py3-none-any.whl", bytes(data))
    assert_roundtrip(cli, path, tmp_path / "store")
