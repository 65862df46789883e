"""Streams made at test time by each compressor's own API are identified and rebuilt byte for byte."""

from __future__ import annotations

import base64
import bz2
import dataclasses
import hashlib
import json
import lzma
import random
import shutil
import subprocess
import zlib
from pathlib import Path

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


VECTORS = json.loads((Path(__file__).parent / "vectors" / "compress_maturin_members.json").read_text())["members"]


@pytest.mark.parametrize("vector", VECTORS, ids=[v["member"].rsplit("/", 1)[-1] for v in VECTORS])
def test_real_maturin_member_reproduced(vector: dict[str, str]) -> None:
    # Real wheel members (maturin 1.5: miniz; 1.15/1.16: zlib-rs, replayed by zlib-ng as flate2 drives it).
    content = zlib.decompress(base64.b64decode(vector["content_zlib_b64"]))
    stream = base64.b64decode(vector["stream_b64"])
    assert hashlib.sha256(content).hexdigest() == vector["content_sha256"]
    hints = ProducerHints(generator=vector["generator"], member_name=vector["member"])
    result = search_params(stream, content, hints=hints)
    assert result.params is not None, result.reason
    assert len(result.attempts) == 1  # the producer guess is right the first time
    assert b"".join(recompress(result.params, [content[i : i + 3000] for i in range(0, len(content), 3000)])) == stream
    expected = {"__init__.pyi": "zlib-ng/l6/m8/feed8192/out32768/sync", "RECORD": "zlib-ng/l6/m8/feed-record/out32768",
                "rpds-py.cyclonedx.json": "zlib-ng/l6/m8/feed-whole/out32768/sync"}
    if vector["generator"].startswith("maturin (1.5"):
        assert result.params.label == "miniz/l6"
    else:
        assert result.params.label == expected[vector["member"].rsplit("/", 1)[-1]]


def _zlib_ng_module(pieces: list[bytes], sync: bool) -> bytes:
    """A stream made through the zlib-ng package's own Python API (another code path than ours)."""
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng")
    comp = zlib_ng.compressobj(6, zlib_ng.DEFLATED, -15, 8, 0)
    out = b"".join(comp.compress(piece) for piece in pieces)
    if sync:
        out += comp.flush(zlib_ng.Z_SYNC_FLUSH)
    return bytes(out + comp.flush())


def test_zlib_ng_agrees_with_its_python_binding_on_copy_feed() -> None:
    # The binding's flush starts with less output space than flate2's 32 KiB, and zlib-ng's last
    # block depends on that space, so the two agree only while the final flush fits in both;
    # 60 kB of DATA is such a case.
    data = DATA[:60_000]
    stream = _zlib_ng_module([data[i : i + 8192] for i in range(0, len(data), 8192)], sync=True)
    result = search_params(stream, data, hints=ProducerHints(generator="maturin (1.12.0)"))
    assert [a.params.label for a in result.attempts] == ["zlib-ng/l6/m8/feed8192/out32768/sync"]


@pytest.mark.parametrize("feed", ["fixed", "whole", "record", "lines"])
def test_zlib_ng_feeds_give_different_streams_and_are_told_apart(feed: str) -> None:
    record = b"".join(b"pkg/mod%d.py,sha256=%064x,%d\n" % (i, i * 7919, i) for i in range(2000))
    params = CompressorParams("zlib-ng", "zlib-ng-2.3", 6, mem_level=8, wbits=-15, feed=feed,
                              feed_size=8192 if feed == "fixed" else 0, out_size=32768, sync_flush=True)
    stream = b"".join(recompress(params, [record]))
    others = {b"".join(recompress(dataclasses.replace(params, feed=f, feed_size=8192 if f == "fixed" else 0),
                                  [record])) for f in ("fixed", "whole", "record", "lines") if f != feed}
    assert stream not in others
    assert find_params(stream, record) == params


def test_zlib_ng_empty_member_is_seven_bytes() -> None:
    # flate2 on an empty file: sync flush (empty stored block 00 00 00 ff ff), then final block 03 00.
    params = find_params(b"\x00\x00\x00\xff\xff\x03\x00", b"", hints=ProducerHints(generator="maturin (1.15.0)"))
    assert params is not None and params.name == "zlib-ng" and params.sync_flush
    assert _zlib_ng_module([], sync=True) == b"\x00\x00\x00\xff\xff\x03\x00"


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
