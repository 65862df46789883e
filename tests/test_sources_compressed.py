"""The container reader finds the exact gzip, bzip2 and xz stream boundaries, keeps headers,
trailers and trailing bytes as skeleton, streams the content, and rejects broken or bomb containers."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import struct
import tarfile
import time
import tracemalloc
import zlib

import pytest

from importer.errors import InvalidArchive
from importer.sources.base import DEFAULT_LIMITS, Gap, Limits, Member, MiB, Skeleton
from importer.sources.compressed import FCOMMENT, FEXTRA, FHCRC, FNAME, CompressedStream, ContainerReader
from importer.sources.tar import iter_tar


def tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(20):
            data = bytes(range(256)) * (i * 13)
            info = tarfile.TarInfo(f"pkg-1.0/f{i}.bin")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


TAR = tar_bytes()


def open_container(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ContainerReader:
    return ContainerReader(io.BytesIO(data), "t.tar.gz", limits)


def unwrap(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[bytes, tuple[Skeleton | Gap | CompressedStream, ...]]:
    reader = open_container(data, limits)
    content = b"".join(iter(lambda: reader.read(1000), b""))
    return content, reader.finish()


def assert_exact(data: bytes, content: bytes = TAR) -> tuple[Skeleton | Gap | CompressedStream, ...]:
    """Content is right, and skeleton + each stream's raw bytes rebuild the file (sha256)."""
    got, segments = unwrap(data)
    assert got == content
    rebuilt = hashlib.sha256()
    position = 0
    for segment in segments:
        assert segment.offset == position
        if isinstance(segment, Skeleton):
            rebuilt.update(segment.data)
            position += len(segment.data)
        elif isinstance(segment, Gap):
            rebuilt.update(data[segment.offset : segment.end])
            position += segment.length
        else:
            rebuilt.update(data[segment.offset : segment.offset + segment.length])
            position += segment.length
    assert position == len(data) and rebuilt.hexdigest() == hashlib.sha256(data).hexdigest()
    return segments


def streams(segments: tuple[Skeleton | Gap | CompressedStream, ...]) -> list[CompressedStream]:
    return [s for s in segments if isinstance(s, CompressedStream)]


def raw_deflate(data: bytes, level: int = 9) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def gzip_member(content: bytes, header: bytes) -> bytes:
    return header + raw_deflate(content) + struct.pack("<II", zlib.crc32(content), len(content) & 0xFFFFFFFF)


# --- exact round trips --------------------------------------------------------------------------


def test_python_gzip_with_name_and_mtime_rebuilds_exactly() -> None:
    buf = io.BytesIO()
    with gzip.GzipFile("pkg-1.0.tar", "wb", 9, buf, mtime=1_700_000_000) as g:
        g.write(TAR)
    segments = assert_exact(buf.getvalue())
    (stream,) = streams(segments)
    assert stream.gzip is not None
    assert (stream.gzip.name, stream.gzip.mtime, stream.gzip.xfl, stream.gzip.os) == (b"pkg-1.0.tar",
                                                                                       1_700_000_000, 2, 255)
    assert (stream.offset, stream.content_offset, stream.size, stream.crc) == (22, 0, len(TAR), zlib.crc32(TAR))
    assert isinstance(segments[0], Skeleton) and len(segments[0].data) == 22  # 10 fixed + "pkg-1.0.tar\0"
    assert isinstance(segments[-1], Skeleton) and len(segments[-1].data) == 8


def test_every_gzip_header_flag_is_parsed_and_kept() -> None:
    flags = FEXTRA | FNAME | FCOMMENT | FHCRC | 0x01  # FTEXT too
    fixed = struct.pack("<3sBIBB", b"\x1f\x8b\x08", flags, 12345, 0, 3)
    head = fixed + struct.pack("<H", 6) + b"AB\x02\x00xy" + b"name.tar\x00" + b"a comment\x00"
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    segments = assert_exact(gzip_member(TAR, head))
    (stream,) = streams(segments)
    assert stream.gzip is not None
    assert (stream.gzip.extra, stream.gzip.name, stream.gzip.comment, stream.gzip.os) == (
        b"AB\x02\x00xy", b"name.tar", b"a comment", 3)
    assert isinstance(segments[0], Skeleton) and segments[0].data == head


def test_multi_member_gzip_with_trailing_zeros_rebuilds_exactly() -> None:
    plain = struct.pack("<3sBIBB", b"\x1f\x8b\x08", 0, 0, 0, 255)
    data = gzip_member(TAR[:7000], plain) + gzip_member(TAR[7000:], plain) + bytes(300)
    segments = assert_exact(data)
    assert [(s.index, s.content_offset, s.size) for s in streams(segments)] == [(0, 0, 7000),
                                                                                (1, 7000, len(TAR) - 7000)]
    assert segments[-1] == Gap(len(data) - 300, 300)


@pytest.mark.parametrize("method", ["bzip2", "xz"])
def test_concatenated_bzip2_and_xz_streams_rebuild_exactly(method: str) -> None:
    compress = bz2.compress if method == "bzip2" else lzma.compress
    single = assert_exact(compress(TAR))
    assert [(s.method, s.offset, s.size) for s in streams(single)] == [(method, 0, len(TAR))]
    data = compress(TAR[:5000]) + compress(TAR[5000:]) + b"trailing junk"
    segments = assert_exact(data)
    assert [s.content_offset for s in streams(segments)] == [0, 5000]
    assert segments[-1] == Gap(len(data) - 13, 13)


def test_tar_inside_gzip_streams_members_with_offsets_in_the_tar() -> None:
    reader = open_container(gzip.compress(TAR, mtime=0))
    members = [e for e in iter_tar(reader, "t.tar.gz") if isinstance(e, Member)]
    assert len(members) == 20
    last = members[-1]
    assert TAR[last.data_offset : last.data_offset + last.data_length] == bytes(range(256)) * (19 * 13)
    assert len(streams(reader.finish())) == 1


# --- bad input ---------------------------------------------------------------------------------


def test_truncated_gzip_names_the_offset() -> None:
    data = gzip.compress(TAR, mtime=0)
    with pytest.raises(InvalidArchive) as e:
        unwrap(data[: len(data) // 2])
    assert e.value.offset == len(data) // 2 and "truncated inside deflate stream 0" in e.value.reason
    with pytest.raises(InvalidArchive) as e:
        unwrap(data[:-3])
    assert e.value.offset == len(data) - 3 and "gzip trailer" in e.value.reason


def test_corrupt_deflate_data_is_an_error() -> None:
    data = bytearray(gzip.compress(TAR, mtime=0))
    data[10:30] = b"\xff" * 20
    with pytest.raises(InvalidArchive) as e:
        unwrap(bytes(data))
    assert "corrupt deflate data" in e.value.reason and e.value.offset is not None


def test_wrong_gzip_crc_and_size_are_errors() -> None:
    good = gzip.compress(TAR, mtime=0)
    bad_crc = good[:-8] + struct.pack("<I", zlib.crc32(TAR) ^ 1) + good[-4:]
    with pytest.raises(InvalidArchive) as e:
        unwrap(bad_crc)
    assert e.value.offset == len(good) - 8 and "CRC-32" in e.value.reason
    bad_size = good[:-4] + struct.pack("<I", len(TAR) + 1)
    with pytest.raises(InvalidArchive) as e:
        unwrap(bad_size)
    assert e.value.offset == len(good) - 4


def test_reserved_flag_and_bad_header_crc_are_errors() -> None:
    reserved = struct.pack("<3sBIBB", b"\x1f\x8b\x08", 0x20, 0, 0, 3)
    with pytest.raises(InvalidArchive) as e:
        unwrap(gzip_member(TAR, reserved))
    assert "reserved flag" in e.value.reason
    bad_hcrc = struct.pack("<3sBIBB", b"\x1f\x8b\x08", FHCRC, 0, 0, 3) + b"\x00\x00"
    with pytest.raises(InvalidArchive) as e:
        unwrap(gzip_member(TAR, bad_hcrc))
    assert e.value.reason == "gzip header CRC does not match" and e.value.offset == 0


def test_corrupt_bzip2_and_xz_are_errors() -> None:
    for data in (bz2.compress(TAR), lzma.compress(TAR)):
        broken = data[:40] + bytes(20) + data[60:]
        with pytest.raises(InvalidArchive) as e:
            unwrap(broken)
        assert "corrupt" in e.value.reason or "truncated" in e.value.reason


def test_not_a_container_is_an_error() -> None:
    with pytest.raises(InvalidArchive) as e:
        open_container(TAR)
    assert e.value.reason == "not a gzip, bzip2 or xz file"


def test_gzip_bomb_stops_at_the_limit_in_bounded_memory() -> None:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    deflate = block * 1024 + compressor.flush()  # 1 GiB of zeros in about 1 MB
    data = struct.pack("<3sBIBB", b"\x1f\x8b\x08", 0, 0, 0, 3) + deflate + struct.pack("<II", 0, 0)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        reader = open_container(data, Limits(max_total_size=32 * MiB))
        with pytest.raises(InvalidArchive) as e:
            while reader.read(64 * 1024):  # discard, as a consumer streaming to a sink would
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"1 GiB gzip bomb ({len(data)} bytes) stopped after {time.perf_counter() - started:.3f}s, "
          f"peak {peak / MiB:.1f} MiB")
    assert e.value.reason == "inflates past --max-total-size 33554432"
    assert peak < 16 * MiB


def test_xz_stream_padding_between_streams_is_skeleton() -> None:
    data = lzma.compress(TAR[:5000]) + bytes(8) + lzma.compress(TAR[5000:]) + bytes(4)
    segments = assert_exact(data)
    assert [type(s).__name__ for s in segments] == ["CompressedStream", "Skeleton", "CompressedStream", "Gap"]
    assert isinstance(segments[1], Skeleton) and segments[1].data == bytes(8)
