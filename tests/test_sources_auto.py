"""Formats are detected from content, not extension, and every sdist/wheel flavour rebuilds exactly
through the source chosen for it: container runs + streams, and tar or zip skeleton + members."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import random
import tarfile
import zipfile
from collections.abc import Callable

import pytest

from importer.errors import InvalidArchive
from importer.sources.auto import open_archive
from importer.sources.base import Limits, Member, Skeleton, detect_format, reassemble
from importer.sources.compressed import CompressedStream
from importer.sources.zip import ZipSource


def sdist_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in [("demo-1.0/PKG-INFO", b"Metadata-Version: 2.1\nName: demo\n"),
                           ("demo-1.0/demo/__init__.py", b"VALUE = 1\n" * 300)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def wheel_zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("demo/__init__.py", b"VALUE = 1\n" * 300)
        z.writestr("demo-1.0.dist-info/WHEEL", b"Wheel-Version: 1.0\n")
    return buf.getvalue()


TAR = sdist_tar()
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "tar": lambda b: b,
    "tar.gz": lambda b: gzip.compress(b, 9, mtime=0),
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt", list(COMPRESSORS))
def test_sdist_flavours_are_detected_and_rebuild_exactly_at_both_levels(fmt: str) -> None:
    data = COMPRESSORS[fmt](TAR)
    opened = open_archive(io.BytesIO(data), "demo-1.0.whl")  # the misleading name is ignored
    assert opened.format == fmt
    tar_back = hashlib.sha256()
    names = []
    for event in opened.source.iter_events():
        if isinstance(event, Member):
            names.append(event.name)
        else:
            tar_back.update(event.data if isinstance(event, Skeleton) else event)
    assert tar_back.hexdigest() == sha(TAR)
    assert names == ["demo-1.0/PKG-INFO", "demo-1.0/demo/__init__.py"]
    if opened.container is not None:
        runs = opened.container.finish()
        rebuilt = b"".join(
            data[run.offset : run.offset + run.length] if isinstance(run, CompressedStream) else
            run.data if isinstance(run, Skeleton) else data[run.offset : run.end] for run in runs
        )
        assert sha(rebuilt) == sha(data)
        assert all(s.size == len(TAR) for s in opened.container.segments if isinstance(s, CompressedStream))


@pytest.mark.parametrize("prefix", [b"", b"MZ self-extractor stub" * 10])
def test_wheel_and_zip_sdist_are_detected_and_rebuild_exactly(prefix: bytes) -> None:
    data = prefix + wheel_zip()
    f = io.BytesIO(data)
    opened = open_archive(f, "demo-1.0.tar.gz")
    assert opened.format == "zip" and isinstance(opened.source, ZipSource)
    rebuilt = b"".join(reassemble(opened.source.layout.segments, lambda o, n: data[o : o + n]))
    assert sha(rebuilt) == sha(data)


def test_text_file_named_whl_is_rejected() -> None:
    with pytest.raises(InvalidArchive) as e:
        open_archive(io.BytesIO(b"Just some text.\n" * 100), "fake-1.0-py3-none-any.whl")
    assert (e.value.archive, e.value.offset) == ("fake-1.0-py3-none-any.whl", 0)
    assert e.value.reason == "not a zip, tar, gzip, bzip2 or xz archive"


def test_gzip_of_something_that_is_not_a_tar_is_rejected() -> None:
    with pytest.raises(InvalidArchive) as e:
        open_archive(io.BytesIO(gzip.compress(b"not a tar" * 100)), "x.tar.gz")
    assert e.value.reason == "the gzip stream does not hold a tar archive"


def test_empty_file_is_rejected() -> None:
    with pytest.raises(InvalidArchive):
        open_archive(io.BytesIO(b""), "empty.whl")


@pytest.mark.parametrize(("head", "expected"), [
    (b"PK\x03\x04rest", "zip"), (b"PK\x05\x06" + bytes(18), "zip"), (b"\x1f\x8b\x08\x00", "gzip"),
    (b"BZh91AY&SY", "bzip2"), (b"\xfd7zXZ\x00\x00", "xz"), (TAR[:512], "tar"), (b"BZhx", None),
    (b"\x1f\x8b\x07", None), (b"", None), (bytes(512), None),
])
def test_detect_format_reads_magic_bytes(head: bytes, expected: str | None) -> None:
    assert detect_format(head) == expected


def test_detect_format_finds_v7_tar_by_checksum_and_zip_by_tail() -> None:
    v7 = bytearray(TAR[:512])
    v7[257:265] = bytes(8)
    v7[148:156] = b" " * 8
    v7[148:156] = b"%06o\x00 " % sum(v7)
    assert detect_format(bytes(v7)) == "tar"
    assert detect_format(b"stub" * 100, tail=wheel_zip()[-22:]) == "zip"


def test_mutated_archives_end_in_invalid_archive_or_a_parse_never_a_crash() -> None:
    """Seed 0, 600 mutations (byte flips, truncations, insertions) of each container kind."""
    rng = random.Random(0)
    bases = [wheel_zip(), TAR, gzip.compress(TAR, mtime=0), bz2.compress(TAR), lzma.compress(TAR)]
    outcomes = {"invalid": 0, "parsed": 0}
    for _ in range(600):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.6:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif roll < 0.8:
                del data[rng.randrange(1, len(data)) :]
            else:
                data[rng.randrange(len(data)) : 0] = rng.randbytes(rng.randint(1, 16))
        try:
            opened = open_archive(io.BytesIO(bytes(data)), "fuzz", Limits(max_total_size=10**7))
            for _ in opened.source.iter_events():
                pass
            if opened.container is not None:
                opened.container.finish()
            outcomes["parsed"] += 1
        except InvalidArchive:
            outcomes["invalid"] += 1
    print(outcomes)
    assert outcomes["invalid"] > 0 and sum(outcomes.values()) == 600
