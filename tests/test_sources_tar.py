"""The tar reader splits ustar, GNU, pax and v7 streams into members and skeleton that rebuild them
bit for bit, and rejects corrupt or oversized tars with an InvalidArchive naming member and offset."""

from __future__ import annotations

import hashlib
import io
import tarfile
import time

import pytest

from importer.errors import InvalidArchive
from importer.sources.base import DEFAULT_LIMITS, Limits, Member, Skeleton
from importer.sources.tar import TarSource, iter_tar

USTAR = b"ustar\x0000"
GNU = b"ustar  \x00"


def header(
    name: bytes,
    size: int = 0,
    typeflag: bytes = b"0",
    magic: bytes = USTAR,
    linkname: bytes = b"",
    fields: dict[int, bytes] | None = None,
) -> bytes:
    """One 512-byte tar header with a correct checksum; ``fields`` patches raw bytes at offsets."""
    block = bytearray(512)
    block[0 : len(name)] = name
    block[100:108] = b"0000644\x00"
    block[108:116] = block[116:124] = b"0000000\x00"
    block[124:136] = b"%011o\x00" % size
    block[136:148] = b"%011o\x00" % 1_700_000_000
    block[156:157] = typeflag
    block[157 : 157 + len(linkname)] = linkname
    block[257:265] = magic
    for offset, value in (fields or {}).items():
        block[offset : offset + len(value)] = value
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % 512)


END = bytes(1024)


def pax_record(key: str, value: bytes) -> bytes:
    body = b" " + key.encode() + b"=" + value + b"\n"
    length = len(body) + 1
    while len(str(length).encode()) + len(body) != length:
        length += 1
    return str(length).encode() + body


def split(data: bytes, limits: Limits = DEFAULT_LIMITS) -> tuple[list[Member], dict[str, bytes], str]:
    """Members, their contents, and the sha256 of skeleton + contents in event order."""
    members: list[Member] = []
    content: dict[str, bytes] = {}
    digest = hashlib.sha256()
    for event in iter_tar(io.BytesIO(data), "t.tar", limits):
        if isinstance(event, Skeleton):
            digest.update(event.data)
        elif isinstance(event, Member):
            members.append(event)
            content[event.label] = b""
        else:
            digest.update(event)
            content[members[-1].label] += event
    return members, content, digest.hexdigest()


def assert_exact(data: bytes) -> tuple[list[Member], dict[str, bytes]]:
    members, content, digest = split(data)
    assert digest == hashlib.sha256(data).hexdigest()
    for member in members:
        assert data[member.data_offset : member.data_offset + member.data_length] == content[member.label]
    return members, content


def tarfile_bytes(fmt: int) -> bytes:
    long_dir = "pkg/" + "sub" * 40  # 124 characters: needs a ustar prefix, GNU 'L' or pax path
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in [("pkg/a.py", b"print('a')\n"), (f"{long_dir}/b.txt", b"b" * 1000), ("pkg/empty", b"")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_700_000_000
            t.addfile(info, io.BytesIO(data))
        for name, kind, link in [("pkg/dir", tarfile.DIRTYPE, ""), ("pkg/sym", tarfile.SYMTYPE, "a.py"),
                                 ("pkg/hard", tarfile.LNKTYPE, "pkg/a.py"), ("pkg/fifo", tarfile.FIFOTYPE, ""),
                                 ("pkg/dev", tarfile.CHRTYPE, "")]:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, link
            t.addfile(info)
        if fmt != tarfile.USTAR_FORMAT:
            info = tarfile.TarInfo("pkg/long-link")
            info.type, info.linkname = tarfile.SYMTYPE, "t" * 150
            t.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT],
                         ids=["ustar", "gnu", "pax"])
def test_tarfile_formats_rebuild_exactly_with_names_kinds_and_links(fmt: int) -> None:
    members, content = assert_exact(tarfile_bytes(fmt))
    seen = [(m.name, m.kind, m.size, m.link_target) for m in members]
    long_dir = "pkg/" + "sub" * 40
    assert seen[:8] == [
        ("pkg/a.py", "file", 11, None), (f"{long_dir}/b.txt", "file", 1000, None), ("pkg/empty", "file", 0, None),
        ("pkg/dir/", "dir", 0, None), ("pkg/sym", "symlink", 0, b"a.py"), ("pkg/hard", "hardlink", 0, b"pkg/a.py"),
        ("pkg/fifo", "other", 0, None), ("pkg/dev", "other", 0, None),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        assert seen[8] == ("pkg/long-link", "symlink", 0, b"t" * 150)
    assert content[f"{long_dir}/b.txt"] == b"b" * 1000
    assert [m.mtime for m in members[:3]] == [1_700_000_000] * 3 and members[0].mode == 0o644


def test_pax_unicode_name_global_header_and_overrides_rebuild_exactly() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "global"}) as t:
        info = tarfile.TarInfo("pkg/ünïcode.txt")
        info.size = 3
        info.pax_headers = {"mtime": "1700000000.25"}
        t.addfile(info, io.BytesIO(b"abc"))
    members, content = assert_exact(buf.getvalue())
    assert [(m.name, m.raw_name, m.mtime) for m in members] == [
        ("pkg/ünïcode.txt", "pkg/ünïcode.txt".encode(), 1_700_000_000)
    ]
    assert content == {"pkg/ünïcode.txt": b"abc"}


def test_pax_size_and_path_override_the_header() -> None:
    records = pax_record("path", b"real/name.txt") + pax_record("size", b"5")
    data = (header(b"PaxHeaders/x", len(records), b"x") + padded(records)
            + header(b"short", 0) + padded(b"hello") + END)
    members, content = assert_exact(data)
    assert [(m.name, m.size, m.data_offset) for m in members] == [("real/name.txt", 5, 1536)]
    assert content == {"real/name.txt": b"hello"}


def test_v7_header_without_magic_and_slash_directory() -> None:
    data = (header(b"old/", 0, b"\x00", magic=bytes(8)) + header(b"old/file", 4, b"\x00", magic=bytes(8))
            + padded(b"v7v7") + END)
    members, _ = assert_exact(data)
    assert [(m.name, m.kind) for m in members] == [("old/", "dir"), ("old/file", "file")]


def test_ustar_prefix_is_joined_to_the_name() -> None:
    data = header(b"file.txt", 1, fields={345: b"very/long/prefix"}) + padded(b"x") + END
    members, _ = assert_exact(data)
    assert members[0].name == "very/long/prefix/file.txt"


def test_gnu_sparse_member_with_extension_block_is_kept_verbatim() -> None:
    sparse = header(b"holes.img", 1024, b"S", magic=GNU, fields={482: b"\x01", 483: b"%011o\x00" % 4096})
    extension = bytearray(512)
    extension[0:24] = b"%011o\x00" % 3072 + b"%011o\x00" % 0
    stored = bytes(range(256)) * 4
    data = sparse + bytes(extension) + stored + header(b"after.txt", 2) + padded(b"ok") + END
    members, content = assert_exact(data)
    assert members[0].verbatim_reason == "GNU sparse member (stored data is not the file content)"
    assert members[0].data_offset == 1024 and content["holes.img"] == stored
    assert (members[1].name, content["after.txt"]) == ("after.txt", b"ok")


def test_negative_mtime_in_base256_is_read() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        info = tarfile.TarInfo("old.txt")
        info.mtime = -1
        t.addfile(info)
    members, _ = assert_exact(buf.getvalue())
    assert members[0].mtime == -1


def test_trailing_zero_blocks_and_garbage_after_end_are_skeleton() -> None:
    data = header(b"a", 1) + padded(b"a") + END + bytes(512 * 15) + b"garbage after the archive"
    members, _ = assert_exact(data)
    assert len(members) == 1


def test_source_collects_members_while_streaming() -> None:
    source = TarSource(io.BytesIO(tarfile_bytes(tarfile.GNU_FORMAT)), "t.tar")
    events = list(source.iter_events())
    assert [m.index for m in source.members] == list(range(9))
    assert sum(isinstance(e, Member) for e in events) == 9


# --- bad input ---------------------------------------------------------------------------------


def test_checksum_mismatch_names_member_and_header_offset() -> None:
    second = bytearray(header(b"second.txt", 3))
    second[0:6] = b"SECOND"  # changes the sum, not the stored checksum
    data = header(b"first.txt", 3) + padded(b"one") + bytes(second) + padded(b"two") + END
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert (e.value.member, e.value.offset, e.value.reason) == ("SECOND.txt", 1024, "header checksum mismatch")


def test_truncated_member_data_names_member_and_offset() -> None:
    data = header(b"big.bin", 5000) + b"x" * 3000
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert (e.value.member, e.value.offset, e.value.reason) == ("big.bin", 3512, "archive is truncated")


def test_missing_end_blocks_is_an_error() -> None:
    with pytest.raises(InvalidArchive) as e:
        split(header(b"a", 1) + padded(b"a"))
    assert e.value.offset == 1024 and "end-of-archive" in e.value.reason


def test_truncated_header_is_an_error() -> None:
    with pytest.raises(InvalidArchive) as e:
        split(header(b"a", 0)[:300])
    assert (e.value.offset, e.value.reason) == (300, "archive is truncated")


def test_malformed_pax_record_is_an_error() -> None:
    records = b"99 path=x\n"
    data = header(b"PaxHeaders/x", len(records), b"x") + padded(records) + header(b"a") + END
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert e.value.reason == "malformed pax extended header" and e.value.offset == 0


def test_malformed_size_field_is_an_error() -> None:
    data = header(b"a", fields={124: b"12345678z90\x00"}) + END
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert e.value.member == "a" and "malformed size field" in e.value.reason


def test_extended_header_without_member_is_an_error() -> None:
    data = header(b"././@LongLink", 6, b"L", magic=GNU) + padded(b"name\x00\x00") + END
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert e.value.offset == 1024


def test_member_and_total_and_count_limits() -> None:
    data = b"".join(header(f"m{i}".encode(), 600) + padded(bytes(600)) for i in range(4)) + END
    with pytest.raises(InvalidArchive) as e:
        split(data, Limits(max_member_size=500))
    assert (e.value.member, e.value.offset) == ("m0", 0)
    with pytest.raises(InvalidArchive) as e:
        split(data, Limits(max_total_size=1500))
    assert (e.value.member, e.value.offset) == ("m2", 3072)
    with pytest.raises(InvalidArchive) as e:
        split(data, Limits(max_members=3))
    assert e.value.member == "m3"


def test_hundred_thousand_tiny_members_parse_and_rebuild() -> None:
    count = 100_000
    template = header(b"d/000000", 1)
    blocks = []
    for i in range(count):  # patch name and checksum instead of rebuilding each header
        block = bytearray(template)
        block[2:8] = b"%06d" % i
        block[148:156] = b" " * 8
        block[148:156] = b"%06o\x00 " % sum(block)
        blocks.append(bytes(block) + padded(b"x"))
    data = b"".join(blocks) + END
    started = time.perf_counter()
    members, _, digest = split(data)
    print(f"{count} tar members, {len(data)} bytes: iter_tar {time.perf_counter() - started:.2f}s")
    assert len(members) == count and digest == hashlib.sha256(data).hexdigest()


def test_negative_base256_size_is_an_error() -> None:
    data = header(b"neg", fields={124: b"\xff" * 12}) + END
    with pytest.raises(InvalidArchive) as e:
        split(data)
    assert (e.value.member, e.value.offset, e.value.reason) == ("neg", 0, "negative size -1")
