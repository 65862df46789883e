"""Streams made at test time by each compressor's own API are identified and rebuilt byte for byte."""

from __future__ import annotations

import bz2
import lzma
import random
import shutil
import subprocess
import zlib
from collections.abc import Callable

import pytest

from importer.compress import CompressorParams, ProducerHints, find_params, recompress, search_params


def _content(seed: int = 7, size: int = 300_000) -> bytes:
    """Word text, a noise section longer than one deflate block, and a zero run."""
    rng = random.Random(seed)
    # A small vocabulary over a small alphabet: many competing matches, so the levels (how far
    # each searches) give different streams.
    words = [bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(1, 6))) for _ in range(20)]
    text = bytearray()
    while len(text) < size - 40_000:
        text += rng.choice(words) + (b"\n" if rng.random() < 0.1 else b" ")
    return bytes(text[:100_000]) + rng.randbytes(30_000) + bytes(text[100_000:]) + bytes(10_000)


DATA = _content()


def _zlib(level: int, mem_level: int = 8, strategy: int = 0, sync: bool = False) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level, strategy)
    out = comp.compress(DATA)
    if sync:
        out += comp.flush(zlib.Z_SYNC_FLUSH)
    return out + comp.flush()


def _reproduce(stream: bytes, kind: str = "deflate", hints: ProducerHints | None = None) -> CompressorParams:
    params = find_params(stream, DATA, kind, hints)
    assert params is not None
    assert b"".join(recompress(params, [DATA[i : i + 10_000] for i in range(0, len(DATA), 10_000)])) == stream
    return params


@pytest.mark.parametrize(
    ("level", "mem_level", "strategy", "sync", "label"),
    [
        (6, 8, 0, False, "zlib/l6/m8/s0"),
        (9, 8, 0, False, "zlib/l9/m8/s0"),
        (1, 8, 0, False, "zlib/l1/m8/s0"),
        (6, 9, 0, False, "zlib/l6/m9/s0"),
        (6, 8, 0, True, "zlib/l6/m8/s0/sync"),
        (6, 8, zlib.Z_FILTERED, False, "zlib/l6/m8/s1"),
        (6, 8, zlib.Z_RLE, False, "zlib/l6/m8/s3"),
    ],
)
def test_zlib_stream_identified_and_rebuilt(level: int, mem_level: int, strategy: int, sync: bool,
                                            label: str) -> None:
    assert _reproduce(_zlib(level, mem_level, strategy, sync)).label == label


def test_zlib_level6_default_costs_one_attempt() -> None:
    result = search_params(_zlib(6), DATA)
    assert [a.params.label for a in result.attempts] == ["zlib/l6/m8/s0"]


@pytest.mark.parametrize("level", [1, 6, 9])
def test_miniz_one_shot_stream_identified(level: int) -> None:
    miniz = pytest.importorskip("miniz")
    # The package's own one-shot API (mz_compress2, zlib-wrapped): an independent code path.
    wrapped = miniz.Miniz.compress(DATA, level)
    stream = wrapped[2:-4]  # strip the 2-byte zlib header and the 4-byte Adler-32 trailer
    params = _reproduce(stream, hints=ProducerHints(generator="maturin (1.5.1)"))
    assert (params.name, params.level, params.sync_flush) == ("miniz", level, False)


def _zlib_rs(feed: Callable[[bytes], list[bytes]], sync: bool, data: bytes = DATA) -> bytes:
    zlib_rs = pytest.importorskip("zlib_rs")
    comp = zlib_rs.compressobj(6, 8, -15)
    out = b"".join(comp.compress(piece) for piece in feed(data))
    if sync:
        out += comp.flush(zlib_rs.Z_SYNC_FLUSH)
    return bytes(out + comp.flush())


def test_zlib_rs_copy_feed_with_sync_flush_costs_one_attempt() -> None:
    stream = _zlib_rs(lambda d: [d[i : i + 8192] for i in range(0, len(d), 8192)], sync=True)
    result = search_params(stream, DATA, hints=ProducerHints(generator="maturin (1.12.0)"))
    assert [a.params.label for a in result.attempts] == ["zlib-rs/l6/m8/feed8192/sync"]
    _reproduce(stream)


def test_zlib_rs_lines_feed_identified_for_record() -> None:
    record = b"".join(b"pkg/mod%d.py,sha256=%064x,%d\n" % (i, i * 7919, i) for i in range(2000))
    stream = _zlib_rs(lambda d: d.splitlines(keepends=True), sync=False, data=record)
    hints = ProducerHints(generator="maturin (1.15.0)", member_name="pkg-1.0.dist-info/RECORD")
    result = search_params(stream, record, hints=hints)
    assert result.params is not None and result.params.label == "zlib-rs/l6/m8/lines"
    assert len(result.attempts) == 1


def test_zlib_rs_empty_member_is_seven_bytes() -> None:
    stream = _zlib_rs(lambda d: [d], sync=True, data=b"")
    assert stream == b"\x00\x00\x00\xff\xff\x03\x00"
    params = find_params(stream, b"", hints=ProducerHints(generator="maturin (1.15.0)"))
    assert params is not None and params.sync_flush


@pytest.mark.parametrize("level", [6, 9])
def test_gnu_gzip_stream_identified_from_os_byte(level: int) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    gz = subprocess.run(["gzip", "-c", "-n", f"-{level}"], input=DATA, capture_output=True, check=True).stdout
    xfl, os_byte = gz[8], gz[9]
    assert os_byte == 3
    result = search_params(gz[10:-8], DATA, hints=ProducerHints(gzip_xfl=xfl, gzip_os=os_byte))
    assert result.params is not None and result.params.label == f"gnu-gzip/l{level}"
    assert len(result.attempts) == 1


@pytest.mark.parametrize("level", [1, 9])
def test_bz2_stream_identified_from_header(level: int) -> None:
    result = search_params(bz2.compress(DATA, level), DATA, "bz2")
    assert result.params is not None and result.params.level == level
    assert len(result.attempts) == 1
    _reproduce(bz2.compress(DATA, level), "bz2")


@pytest.mark.parametrize(
    ("preset", "check", "label"),
    [
        (6, lzma.CHECK_CRC64, "xz/l6/check4"),
        (0, lzma.CHECK_CRC32, "xz/l0/check1"),
        (6 | lzma.PRESET_EXTREME, lzma.CHECK_SHA256, "xz/l6/extreme/check10"),
        (6, lzma.CHECK_NONE, "xz/l6/check0"),
    ],
)
def test_xz_stream_identified_with_header_check(preset: int, check: int, label: str) -> None:
    params = _reproduce(lzma.compress(DATA, check=check, preset=preset), "xz")
    assert params.label == label


def test_xz_not_an_xz_stream_has_no_candidates() -> None:
    result = search_params(b"not xz at all", b"", "xz")
    assert result.params is None
    assert result.reason == "no usable xz compressor setting to try"
