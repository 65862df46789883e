"""``--open-nested``: archives and .gz files inside archives become directories, rebuilt exactly."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest

from importer.archive.importer import ArchiveImporter, ImportReport
from importer.archive.rebuild import fetch
from importer.dag.reader import Kind, iter_directory, iter_file, resolve, stat
from importer.errors import LimitExceeded
from importer.profiles import resolve_settings
from importer.sinks import MemorySink
from importer.sources.base import Limits


def gz(data: bytes, *, fname: bytes | None = b"doc.json", extra: bytes | None = None,
       comment: bytes | None = None, mtime: int = 1_700_000_000, level: int = 9, flushes: int = 0) -> bytes:
    """A gzip member with exactly the optional header fields asked for (RFC 1952)."""
    flags = (0x04 if extra is not None else 0) | (0x08 if fname is not None else 0) | \
        (0x10 if comment is not None else 0)
    header = b"\x1f\x8b\x08" + bytes([flags]) + struct.pack("<I", mtime) + bytes([2 if level == 9 else 0, 3])
    if extra is not None:
        header += struct.pack("<H", len(extra)) + extra
    if fname is not None:
        header += fname + b"\x00"
    if comment is not None:
        header += comment + b"\x00"
    engine = zlib.compressobj(level, zlib.DEFLATED, -15)
    body = b""
    step = max(1, len(data) // (flushes + 1))
    for i in range(0, len(data), step):
        body += engine.compress(data[i:i + step])
        if flushes:
            body += engine.flush(zlib.Z_FULL_FLUSH)  # full flushes: a stream no registry setting makes
    body += engine.flush()
    return header + body + struct.pack("<II", zlib.crc32(data), len(data) & 0xFFFFFFFF)


def doc(i: int) -> bytes:
    return json.dumps({"shape": i, "items": [f"item-{k}" for k in range(2000)]}).encode()


def wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("pkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: bdist_wheel (0.43.0)\n")
    return path


def targz(path: Path, members: dict[str, bytes]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue(), compresslevel=9, mtime=0))
    return path


def import_and_fetch(path: Path, sink: MemorySink, tmp_path: Path, **kwargs: object) -> ImportReport:
    report = ArchiveImporter(resolve_settings(), sink, open_nested=True, **kwargs).import_file(str(path))  # type: ignore[arg-type]
    out = tmp_path / f"rebuilt-{path.name}"
    fetch(sink, report.root, out)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()
    return report


@pytest.mark.parametrize(("name", "kwargs", "inner"), [
    ("plain.json.gz", {"fname": None}, "plain.json"),
    ("named.json.gz", {"fname": b"inner.json"}, "inner.json"),
    ("extra.json.gz", {"fname": b"x.json", "extra": b"AB\x02\x00hi"}, "x.json"),
    ("comment.json.gz", {"fname": None, "comment": b"made by hand"}, "comment.json"),
    ("all.json.gz", {"fname": b"all.json", "extra": b"", "comment": b"c"}, "all.json"),
])
def test_gz_member_becomes_directory_of_its_file_and_rebuilds(tmp_path: Path, name: str,
                                                              kwargs: dict[str, bytes | None], inner: str) -> None:
    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {f"pkg/{name}": gz(doc(1), **kwargs)})  # type: ignore[arg-type]
    sink = MemorySink()
    report = import_and_fetch(archive, sink, tmp_path)
    assert report.nested == 1
    node = resolve(sink, report.tree, f"pkg/{name}")
    assert stat(sink, node).kind is Kind.DIRECTORY
    assert [e.name for e in iter_directory(sink, node)] == [inner]
    assert b"".join(iter_file(sink, resolve(sink, node, inner))) == doc(1)


def test_gz_whose_stream_nothing_reproduces_stays_a_plain_file(tmp_path: Path) -> None:
    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/odd.json.gz": gz(doc(2), flushes=7)})
    sink = MemorySink()
    report = import_and_fetch(archive, sink, tmp_path)
    assert report.nested == 0
    assert stat(sink, resolve(sink, report.tree, "pkg/odd.json.gz")).kind is Kind.FILE


def test_tar_gz_inside_wheel_and_wheel_inside_sdist_rebuild(tmp_path: Path) -> None:
    inner_tgz = targz(tmp_path / "data.tar.gz", {"data/a.txt": b"alpha\n" * 500, "data/b.txt": b"beta\n"})
    whl = wheel(tmp_path / "inner-1.0-py3-none-any.whl", {"inner/data.tar.gz": inner_tgz.read_bytes(),
                                                           "inner/__init__.py": b"x = 1\n"})
    sdist = targz(tmp_path / "outer-1.0.tar.gz", {"outer-1.0/vendor/inner-1.0-py3-none-any.whl": whl.read_bytes(),
                                                  "outer-1.0/setup.py": b"setup()\n"})
    sink = MemorySink()
    report = import_and_fetch(sdist, sink, tmp_path)
    assert report.nested == 2  # the wheel, and the .tar.gz inside it
    leaf = resolve(sink, report.tree, "outer-1.0/vendor/inner-1.0-py3-none-any.whl/inner/data.tar.gz/data/a.txt")
    assert b"".join(iter_file(sink, leaf)) == b"alpha\n" * 500


def test_nesting_three_deep_rebuilds_and_unchanged_document_dedups(tmp_path: Path) -> None:
    def build(version: int) -> Path:
        json_gz = gz(doc(3), mtime=1_700_000_000 + version)  # only the gzip header changes
        tgz = targz(tmp_path / f"d{version}.tar.gz", {"d/doc.json.gz": json_gz})
        whl = wheel(tmp_path / f"w{version}.whl", {"w/d.tar.gz": tgz.read_bytes()})
        return targz(tmp_path / f"top-{version}.tar.gz", {f"top-{version}/w.whl": whl.read_bytes()})

    sink = MemorySink()
    first = import_and_fetch(build(1), sink, tmp_path)
    assert first.nested == 3
    before = set(sink.blocks)
    second = import_and_fetch(build(2), sink, tmp_path)
    doc_path = "top-2/w.whl/w/d.tar.gz/d/doc.json.gz/doc.json"
    assert resolve(sink, second.tree, doc_path) in before  # the JSON itself was stored once


def test_nested_bomb_is_an_error_not_an_outage(tmp_path: Path) -> None:
    bomb = gz(bytes(64 * 1024 * 1024), fname=b"zeros")  # 64 MiB of zeros in ~64 KiB
    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/zeros.gz": bomb})
    limits = Limits(max_member_size=1 << 30, max_total_size=8 * 1024 * 1024)
    with pytest.raises(LimitExceeded) as e:
        ArchiveImporter(resolve_settings(), MemorySink(), open_nested=True, limits=limits).import_file(str(archive))
    assert e.value.member == "pkg/zeros.gz" and e.value.limit == "--max-total-size 8388608"
    assert e.value.reason.startswith("nested archive zeros.gz: ")
    assert e.value.reason.endswith("inflates past --max-total-size 8388608")


def test_without_open_nested_gz_members_stay_files(tmp_path: Path) -> None:
    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/a.json.gz": gz(doc(4))})
    sink = MemorySink()
    report = ArchiveImporter(resolve_settings(), sink).import_file(str(archive))
    assert report.nested == 0
    assert stat(sink, resolve(sink, report.tree, "pkg/a.json.gz")).kind is Kind.FILE


def test_member_that_only_looks_like_an_archive_is_a_plain_file(tmp_path: Path) -> None:
    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/fake.zip": b"not a zip at all\n" * 10})
    sink = MemorySink()
    report = import_and_fetch(archive, sink, tmp_path)
    assert report.nested == 0
    assert stat(sink, resolve(sink, report.tree, "pkg/fake.zip")).kind is Kind.FILE


def test_preserve_flags_are_refused_for_archives(tmp_path: Path) -> None:
    import subprocess
    import sys

    archive = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/a.py": b"a = 1\n"})
    for flag in ("--preserve-mode", "--preserve-mtime"):
        proc = subprocess.run([sys.executable, "-m", "importer", "wheel", "-n", flag, str(archive)],
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 1
        assert "apply to add only" in proc.stderr and "Traceback" not in proc.stderr
