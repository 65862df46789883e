"""The zip reader splits zips and wheels into members and skeleton that rebuild them bit for bit,
and rejects broken, hostile or oversized zips with an InvalidArchive that names member and offset."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import time
import tracemalloc
import zipfile
import zlib
from dataclasses import dataclass

import pytest

from importer.errors import InvalidArchive
from importer.sources.base import DEFAULT_LIMITS, Gap, Limits, Member, MiB, Skeleton, reassemble
from importer.sources.inflate import iter_inflated
from importer.sources.zip import ZipLayout, ZipSource, parse_zip

# --- a minimal zip writer for the layouts zipfile cannot produce ------------------------------


@dataclass
class Entry:
    name: bytes
    data: bytes
    method: int = 8
    descriptor: str | None = None  # "sig32", "nosig32", "sig64", "nosig64"
    zip64: bool = False
    flags: int = 0
    extra: bytes = b""
    stored_bytes: bytes | None = None  # the member's data as stored, when not derived from data
    declared_size: int | None = None
    crc: int | None = None
    external: int = 0
    made_by: int = 20


def deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    return compressor.compress(data) + compressor.flush()


def build_zip(
    entries: list[Entry], prefix: bytes = b"", trailing: bytes = b"", comment: bytes = b"", zip64_end: bool = False
) -> bytes:
    """Local headers, data, descriptors, central directory and end records, offsets without ``prefix``."""
    body = bytearray()
    central = bytearray()
    for e in entries:
        stored = e.stored_bytes if e.stored_bytes is not None else (deflate(e.data) if e.method == 8 else e.data)
        crc = e.crc if e.crc is not None else zlib.crc32(e.data)
        usize = e.declared_size if e.declared_size is not None else len(e.data)
        csize = len(stored)
        flags = e.flags | (8 if e.descriptor else 0)
        offset = len(body)
        local_extra = e.extra
        l_crc, l_c, l_u = (0, 0, 0) if e.descriptor else (crc, csize, usize)
        if e.zip64:
            local_extra = struct.pack("<HHQQ", 1, 16, usize, csize) + e.extra
            l_c = l_u = 0xFFFFFFFF
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 45, flags, e.method, 0, 0x21, l_crc, l_c, l_u,
                            len(e.name), len(local_extra)) + e.name + local_extra + stored
        if e.descriptor:
            wide = e.descriptor.endswith("64")
            sig = b"PK\x07\x08" if e.descriptor.startswith("sig") else b""
            body += sig + struct.pack("<IQQ" if wide else "<III", crc, csize, usize)
        c_extra, c_c, c_u, c_off = e.extra, csize, usize, offset
        if e.zip64:
            c_extra = struct.pack("<HHQQQ", 1, 24, usize, csize, offset) + e.extra
            c_c = c_u = c_off = 0xFFFFFFFF
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", e.made_by, 45, flags, e.method, 0, 0x21, crc,
                               c_c, c_u, len(e.name), len(c_extra), 0, 0, 0, e.external, c_off) + e.name + c_extra
    cd_offset, cd_size, n = len(body), len(central), len(entries)
    end = b""
    if zip64_end:
        eocd64_at = cd_offset + cd_size
        end += struct.pack("<4sQHHIIQQQQ", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, cd_size, cd_offset)
        end += struct.pack("<4sIQI", b"PK\x06\x07", 0, eocd64_at, 1)
        end += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    else:
        end += struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, n, n, cd_size, cd_offset, len(comment))
    return prefix + bytes(body) + bytes(central) + end + comment + trailing


# --- helpers -----------------------------------------------------------------------------------


def parse(data: bytes, limits: Limits = DEFAULT_LIMITS) -> ZipLayout:
    return parse_zip(io.BytesIO(data), "t.zip", limits)


def rebuilt_digest(data: bytes, layout: ZipLayout) -> str:
    """sha256 of the gaps plus each member's stored bytes, in layout order."""
    digest = hashlib.sha256()
    for piece in reassemble(layout.segments, lambda offset, length: data[offset : offset + length]):
        digest.update(piece)
    return digest.hexdigest()


def events_digest(data: bytes) -> str:
    """sha256 of the source's skeleton events plus each member's stored bytes."""
    digest = hashlib.sha256()
    for event in ZipSource(io.BytesIO(data), "t.zip").iter_events():
        if isinstance(event, Skeleton):
            digest.update(event.data)
        elif isinstance(event, Member):
            digest.update(data[event.data_offset : event.data_offset + event.data_length])
    return digest.hexdigest()


def contents(data: bytes, limits: Limits = DEFAULT_LIMITS) -> dict[str, bytes]:
    """Each member's content as the source's event stream delivers it."""
    result: dict[str, bytes] = {}
    current: Member | None = None
    for event in ZipSource(io.BytesIO(data), "t.zip", limits).iter_events():
        if isinstance(event, Member):
            current = event
            result[event.label] = b""
        elif isinstance(event, bytes):
            assert current is not None
            result[current.label] += event
    return result


def assert_exact(data: bytes) -> ZipLayout:
    layout = parse(data)
    assert rebuilt_digest(data, layout) == events_digest(data) == hashlib.sha256(data).hexdigest()
    return layout


def zipfile_bytes(comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pkg/__init__.py", b"print('hello')\n" * 200)
        z.writestr("pkg/", b"")
        z.writestr("pkg/data.bin", bytes(range(256)) * 40, compress_type=zipfile.ZIP_STORED)
        z.writestr("pkg-1.0.dist-info/RECORD", b"")
        z.comment = comment
    return buf.getvalue()


# --- exact round trips --------------------------------------------------------------------------


def test_zipfile_archive_rebuilds_exactly_with_members_in_order() -> None:
    data = zipfile_bytes(b"archive comment")
    layout = assert_exact(data)
    assert [(m.name, m.kind, m.method) for m in layout.members] == [
        ("pkg/__init__.py", "file", 8), ("pkg/", "dir", 8), ("pkg/data.bin", "file", 0),
        ("pkg-1.0.dist-info/RECORD", "file", 8),
    ]
    assert layout.comment == b"archive comment" and layout.prefix_length == 0
    assert contents(data) == {
        "pkg/__init__.py": b"print('hello')\n" * 200, "pkg/": b"",
        "pkg/data.bin": bytes(range(256)) * 40, "pkg-1.0.dist-info/RECORD": b"",
    }


def test_prepended_and_trailing_bytes_become_skeleton_and_shift_offsets() -> None:
    inner = zipfile_bytes()
    stub = b"#!/bin/sh\nexec python3 \"$0\"\n" + b"\x00" * 1000
    data = stub + inner + b"trailing junk" * 3
    layout = assert_exact(data)
    assert layout.prefix_length == len(stub)
    assert layout.segments[0] == Gap(0, len(stub) + 30 + len(b"pkg/__init__.py"))
    assert contents(data) == contents(inner)


@pytest.mark.parametrize("descriptor", ["sig32", "nosig32", "sig64", "nosig64"])
def test_data_descriptors_with_and_without_signature_rebuild_exactly(descriptor: str) -> None:
    data = build_zip([Entry(b"a.txt", b"alpha" * 99, descriptor=descriptor),
                      Entry(b"b.txt", b"beta", method=0, descriptor=descriptor)], comment=b"c")
    layout = assert_exact(data)
    assert contents(data) == {"a.txt": b"alpha" * 99, "b.txt": b"beta"}
    width = {"sig32": 16, "nosig32": 12, "sig64": 24, "nosig64": 20}[descriptor]
    after_first = layout.segments[2]
    assert isinstance(after_first, Gap) and after_first.length == width + 30 + len(b"b.txt")


def test_streamed_zipfile_with_descriptors_and_zip64_local_extra_rebuilds_exactly() -> None:
    out = bytearray()

    class Unseekable(io.RawIOBase):
        def writable(self) -> bool:
            return True

        def write(self, b: bytes) -> int:  # type: ignore[override]
            out.extend(b)
            return len(b)

    with zipfile.ZipFile(Unseekable(), "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("big.bin", "w", force_zip64=True) as w:
            w.write(b"0123456789" * 10_000)
        z.writestr("small.txt", b"s")
    layout = assert_exact(bytes(out))
    assert [m.size for m in layout.members] == [100_000, 1]


def test_zip64_end_records_and_extra_fields_with_prepended_data_rebuild_exactly() -> None:
    entries = [Entry(b"x.bin", b"x" * 5000, zip64=True), Entry(b"y.txt", b"why", method=0, zip64=True)]
    for prefix in (b"", b"STUB" * 50):
        data = build_zip(entries, prefix=prefix, zip64_end=True, comment=b"z64", trailing=b"\n")
        layout = assert_exact(data)
        assert layout.prefix_length == len(prefix)
        assert [(m.name, m.size) for m in layout.members] == [("x.bin", 5000), ("y.txt", 3)]
        assert contents(data) == {"x.bin": b"x" * 5000, "y.txt": b"why"}


def test_extra_fields_and_member_comments_are_kept_in_the_skeleton() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("with-extra.txt", (2024, 5, 6, 7, 8, 10))
        info.extra = struct.pack("<HH", 0x5455, 5) + b"\x01\x00\x00\x00\x00"  # extended timestamp
        info.comment = b"member comment"
        z.writestr(info, b"payload")
    layout = assert_exact(buf.getvalue())
    assert layout.members[0].mtime == 1714979290  # 2024-05-06 07:08:10 read as UTC


def test_other_methods_and_encrypted_members_are_kept_verbatim() -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("b.txt", b"bzip2 me" * 100, compress_type=zipfile.ZIP_BZIP2)
    bz = buf.getvalue()
    layout = assert_exact(bz)
    member = layout.members[0]
    assert member.verbatim_reason == "compression method 12 is kept as stored"
    assert contents(bz)["b.txt"] == bz[member.data_offset : member.data_offset + member.data_length]
    encrypted = build_zip([Entry(b"secret", b"", method=8, flags=1, stored_bytes=b"\x13" * 40, declared_size=9)])
    layout = assert_exact(encrypted)
    assert layout.members[0].verbatim_reason == "encrypted member"
    assert contents(encrypted) == {"secret": b"\x13" * 40}


def test_unix_symlink_member_reads_its_target() -> None:
    mode = (stat.S_IFLNK | 0o777) << 16
    data = build_zip([Entry(b"link", b"../target", method=0, external=mode, made_by=(3 << 8) | 20)])
    member = assert_exact(data).members[0]
    assert (member.kind, member.link_target, member.mode) == ("symlink", b"../target", stat.S_IFLNK | 0o777)


def test_empty_zip_is_all_skeleton() -> None:
    buf = io.BytesIO()
    zipfile.ZipFile(buf, "w").close()
    layout = assert_exact(buf.getvalue())
    assert layout.members == () and len(layout.segments) == 1


def test_non_utf8_name_parses_with_no_decoded_name() -> None:
    layout = assert_exact(build_zip([Entry(b"caf\xe9.txt", b"latin-1 name", method=0)]))
    assert layout.members[0].name is None and layout.members[0].raw_name == b"caf\xe9.txt"


# --- bad input ---------------------------------------------------------------------------------


def test_truncated_zip_raises_with_end_offset() -> None:
    data = zipfile_bytes()[:-30]
    with pytest.raises(InvalidArchive) as e:
        parse(data)
    assert e.value.offset == len(data) and "end of central directory" in e.value.reason


def test_text_file_named_whl_is_not_a_zip() -> None:
    with pytest.raises(InvalidArchive) as e:
        parse(b"this is a README, not a wheel\n")
    assert e.value.archive == "t.zip" and "not a zip" in e.value.reason


def test_corrupt_deflate_data_names_member_and_offset() -> None:
    data = build_zip([Entry(b"ok", b"fine", method=0),
                      Entry(b"bad.py", b"x" * 100, stored_bytes=b"\xff" * 20)])
    member = parse(data).members[1]
    with pytest.raises(InvalidArchive) as e:
        contents(data)
    assert e.value.member == "bad.py" and "corrupt deflate" in e.value.reason
    assert member.data_offset <= (e.value.offset or 0) < member.data_offset + member.data_length


def test_wrong_crc_names_member_and_data_offset() -> None:
    data = build_zip([Entry(b"a.py", b"print(1)\n" * 50, crc=0x12345678)])
    member = parse(data).members[0]
    with pytest.raises(InvalidArchive) as e:
        contents(data)
    assert (e.value.member, e.value.offset) == ("a.py", member.data_offset)
    assert "CRC-32" in e.value.reason


def test_local_header_that_disagrees_with_central_directory_is_rejected() -> None:
    data = bytearray(build_zip([Entry(b"first", b"1"), Entry(b"second", b"2")]))
    at = data.index(b"second")  # the local header's copy of the name comes first
    data[at : at + 6] = b"SECOND"
    with pytest.raises(InvalidArchive) as e:
        parse(bytes(data))
    assert e.value.member == "second" and e.value.offset == at - 30 and "name differs" in e.value.reason


def test_two_entries_sharing_one_local_header_are_rejected_as_overlap() -> None:
    one = build_zip([Entry(b"same", b"data" * 10)])
    cd_at = one.index(b"PK\x01\x02")
    eocd_at = one.index(b"PK\x05\x06")
    central = one[cd_at:eocd_at]
    data = one[:cd_at] + central * 2 + struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 2, 2, 2 * len(central), cd_at, 0)
    with pytest.raises(InvalidArchive) as e:
        parse(data)
    assert "overlaps" in e.value.reason and e.value.offset == 0


def test_descriptor_that_disagrees_with_central_directory_is_rejected() -> None:
    data = bytearray(build_zip([Entry(b"d", b"dd", method=0, descriptor="sig32")]))
    at = data.index(b"PK\x07\x08")
    data[at + 8] ^= 1  # compressed size in the descriptor
    with pytest.raises(InvalidArchive) as e:
        parse(bytes(data))
    assert (e.value.member, e.value.offset) == ("d", at)


def zero_bomb_stream(mib: int) -> bytes:
    """Raw deflate of ``mib`` MiB of zeros: one full-flushed block per MiB, repeated (~1 KiB each)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    again = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    assert again == block  # a full flush resets history, so every MiB compresses the same
    return block * mib + compressor.flush()


def test_zero_bomb_stream_helper_inflates_to_zeros() -> None:
    assert zlib.decompress(zero_bomb_stream(3), -15) == bytes(3 * MiB)


def test_bomb_with_honest_size_is_refused_before_inflating() -> None:
    stream = zero_bomb_stream(1024)  # 1 GiB of zeros in about 1 MB
    data = build_zip([Entry(b"bomb", b"", stored_bytes=stream, declared_size=1024 * MiB, crc=0)])
    with pytest.raises(InvalidArchive) as e:
        parse(data, Limits(max_member_size=64 * MiB))
    assert e.value.member == "bomb" and e.value.reason == f"declares {1024 * MiB} bytes, past --max-member-size {64 * MiB}"


def test_bomb_that_lies_about_its_size_stops_at_the_declared_size_in_bounded_memory() -> None:
    stream = zero_bomb_stream(1024)
    data = build_zip([Entry(b"bomb", b"", stored_bytes=stream, declared_size=8 * MiB, crc=0)])
    member = parse(data).members[0]
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(InvalidArchive) as e:
            for _ in iter_inflated(io.BytesIO(data), member, "t.zip", 4 * 1024 * MiB):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"lying 1 GiB bomb stopped after {time.perf_counter() - started:.3f}s, peak {peak / MiB:.1f} MiB")
    assert e.value.member == "bomb" and e.value.reason == "member inflates past its declared size of 8388608 bytes"
    assert peak < 16 * MiB


def test_total_limit_counts_all_members() -> None:
    data = build_zip([Entry(f"m{i}".encode(), bytes(1000)) for i in range(5)])
    with pytest.raises(InvalidArchive) as e:
        parse(data, Limits(max_total_size=4500))
    assert e.value.member == "m4"


def test_member_count_limit() -> None:
    data = build_zip([Entry(f"m{i}".encode(), b"") for i in range(5)])
    with pytest.raises(InvalidArchive) as e:
        parse(data, Limits(max_members=4))
    assert "5 members" in e.value.reason


def test_hundred_thousand_tiny_members_parse_and_rebuild() -> None:
    count = 100_000
    data = build_zip([Entry(f"d/{i}".encode(), b"", method=0) for i in range(count)], zip64_end=True)
    started = time.perf_counter()
    layout = parse(data)
    elapsed = time.perf_counter() - started
    print(f"{count} members, {len(data)} bytes: parse_zip {elapsed:.2f}s")
    assert len(layout.members) == count
    assert rebuilt_digest(data, layout) == hashlib.sha256(data).hexdigest()


def test_directory_entry_with_content_is_kept_verbatim() -> None:
    data = build_zip([Entry(b"odd/", b"data in a directory", method=0)])
    member = assert_exact(data).members[0]
    assert (member.kind, member.verbatim_reason) == ("other", "directory entry with content")


def test_duplicate_names_parse_and_rebuild_exactly() -> None:
    data = build_zip([Entry(b"same.txt", b"first"), Entry(b"same.txt", b"second")])
    layout = assert_exact(data)
    assert [(m.index, m.name) for m in layout.members] == [(0, "same.txt"), (1, "same.txt")]


def test_ten_gib_bomb_is_refused_by_the_default_limits() -> None:
    stream = zero_bomb_stream(10 * 1024)  # 10 GiB of zeros in about 10 MB
    data = build_zip([Entry(b"bomb10", b"", stored_bytes=stream, declared_size=10 * 1024 * MiB, crc=0, zip64=True)],
                     zip64_end=True)
    with pytest.raises(InvalidArchive) as e:
        ZipSource(io.BytesIO(data), "t.zip")
    assert e.value.member == "bomb10" and e.value.reason == (
        f"declares {10 * 1024 * MiB} bytes, past --max-member-size {4 * 1024 * MiB}")


def test_inflation_survives_the_caller_reading_the_same_file_between_pieces() -> None:
    text = bytes(range(256)) * 20_000  # 5 MB: several pieces
    data = build_zip([Entry(b"big.bin", text)])
    f = io.BytesIO(data)
    member = parse(data).members[0]
    pieces = []
    for piece in iter_inflated(f, member, "t.zip", 64 * MiB):
        pieces.append(piece)
        f.seek(0)
        f.read(100)  # e.g. a compressor check reading the raw stream
    assert len(pieces) > 1 and b"".join(pieces) == text
