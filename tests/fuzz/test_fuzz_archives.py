"""Fuzz the zip reader, the tar reader and the gzip/bzip2/xz container reader: any bytes either fail
with one InvalidArchive line, or parse into runs that reassemble the input exactly."""

from __future__ import annotations

import io
import zlib

from hypothesis import example, given

from importer.errors import InvalidArchive
from importer.sources.base import Gap, Limits, Member, Skeleton
from importer.sources.compressed import CompressedStream, ContainerReader
from importer.sources.tar import iter_tar
from importer.sources.zip import ZipSource

from .harness import FUZZ, inputs

#: Small limits: a mutant that happens to be a bomb costs milliseconds, not the fuzz budget.
LIMITS = Limits(max_member_size=1 << 22, max_total_size=1 << 24, max_trailing_size=1 << 16)


def _one_line(error: InvalidArchive) -> None:
    assert "\n" not in str(error) and str(error).startswith("fuzz")


@FUZZ
@given(data=inputs("zip"))
def test_zip_reader_fails_with_one_line_or_reassembles_the_input(data: bytes) -> None:
    try:
        source = ZipSource(io.BytesIO(data), "fuzz", LIMITS)
        out = bytearray()
        member: Member | None = None
        content = 0
        for event in source.iter_events():
            if isinstance(event, Skeleton):
                out += event.data
            elif isinstance(event, Member):
                assert member is None or member.verbatim or content == member.size
                member, content = event, 0
                out += data[event.data_offset:event.data_offset + event.data_length]
            else:
                content += len(event)
        assert member is None or member.verbatim or content == member.size
    except InvalidArchive as e:
        _one_line(e)
        return
    assert bytes(out) == data


@FUZZ
@given(data=inputs("tar"))
@example(data=b"\x00" * 1024)
def test_tar_reader_fails_with_one_line_or_reassembles_the_input(data: bytes) -> None:
    try:
        out = bytearray()
        for event in iter_tar(io.BytesIO(data), "fuzz", LIMITS):
            if isinstance(event, Skeleton):
                out += event.data
            elif isinstance(event, bytes):
                out += event  # a tar member's content is its stored bytes
    except InvalidArchive as e:
        _one_line(e)
        return
    assert bytes(out) == data


@FUZZ
@given(data=inputs("container"))
def test_container_reader_fails_with_one_line_or_reassembles_the_input(data: bytes) -> None:
    try:
        reader = ContainerReader(io.BytesIO(data), "fuzz", LIMITS)
        content = bytearray()
        while piece := reader.read(1 << 16):
            content += piece
        runs = reader.finish()
    except InvalidArchive as e:
        _one_line(e)
        return
    out = bytearray()
    position = 0
    for run in runs:
        if isinstance(run, Skeleton):
            assert run.offset == position
            out += run.data
        elif isinstance(run, Gap):
            assert run.offset == position
            out += data[run.offset:run.end]
        else:
            assert isinstance(run, CompressedStream) and run.offset == position
            out += data[run.offset:run.offset + run.length]
            if run.method == "deflate":  # each stream decompresses to its slice of the content
                piece = zlib.decompressobj(-15).decompress(data[run.offset:run.offset + run.length])
                assert piece == content[run.content_offset:run.content_offset + run.size]
        position = len(out)
    assert bytes(out) == data
