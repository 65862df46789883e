"""find_params/search_params: order, early stop, reasons, input kinds and bounded memory."""

from __future__ import annotations

import io
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from importer.compress import CompressorParams, ProducerHints, find_params, recompress, search_params
from importer.compress.backends import BACKENDS
from importer.compress.golden import backend_status

DATA = b"".join(b"line %d of a member that compresses well enough\n" % i for i in range(6000))


def _zlib(data: bytes, level: int = 6, mem_level: int = 8) -> bytes:
    comp = zlib.compressobj(level, zlib.DEFLATED, -15, mem_level)
    return comp.compress(data) + comp.flush()


def test_tampered_stream_finds_none_and_says_why() -> None:
    stream = bytearray(_zlib(DATA))
    stream[len(stream) // 2] ^= 0x01
    result = search_params(bytes(stream), DATA)
    assert result.params is None
    # Every usable deflate setting was tried (177, or 277 with the optional zlib-ng 2.2); the closest
    # is zlib level 6 up to the tampered byte.
    usable = [b for b in BACKENDS.values() if b.kind == "deflate" and backend_status(b.name).usable]
    tried = sum(len(b.candidates(bytes(stream[:16]))) for b in usable)
    assert tried == (277 if backend_status("zlib-ng-2.2").usable else 177)
    assert len(result.attempts) == tried
    best = max(result.attempts, key=lambda a: a.matched)
    assert best.params.label == "zlib/l6/m8/s0"
    assert best.matched == len(stream) // 2
    assert result.reason.startswith(f"none of {tried} deflate settings reproduces the stream; closest: zlib/l6/m8/s0 "
                                    f"(differs at compressed byte {len(stream) // 2})")


def test_stream_with_trailing_bytes_is_not_reproduced() -> None:
    result = search_params(_zlib(DATA) + b"\x00", DATA, names=["zlib"], max_attempts=1)
    assert result.params is None
    assert result.attempts[0].reason == f"output ends at byte {len(_zlib(DATA))}, the stream goes on"


def test_truncated_stream_reports_longer_output() -> None:
    stream = _zlib(DATA)
    result = search_params(stream[:-3], DATA, names=["zlib"], max_attempts=1)
    assert result.attempts[0].reason == f"output is longer than the {len(stream) - 3}-byte stream"


def test_previous_winner_is_tried_first() -> None:
    stream = _zlib(DATA, level=5, mem_level=9)
    first = search_params(stream, DATA)
    assert first.params is not None and first.params.label == "zlib/l5/m9/s0"
    assert len(first.attempts) > 1
    again = search_params(stream, DATA, hints=ProducerHints(previous=first.params))
    assert [a.params for a in again.attempts] == [first.params]


def test_max_attempts_limits_search() -> None:
    result = search_params(_zlib(DATA, level=5, mem_level=9), DATA, max_attempts=3)
    assert result.params is None
    assert len(result.attempts) == 3


def test_wrong_guess_stops_at_first_difference() -> None:
    big = DATA * 20  # ~1 MB: a level-9 attempt on a level-1 stream stops long before the end
    stream = _zlib(big, level=1)
    result = search_params(stream, big, hints=ProducerHints(gzip_xfl=2, gzip_os=255))
    assert result.params is not None and result.params.level == 1
    assert result.attempts[0].params.label == "zlib/l9/m8/s0"
    assert result.attempts[0].matched < len(stream) // 4


def test_inputs_may_be_files_and_callables(tmp_path: Path) -> None:
    stream = _zlib(DATA)
    path = tmp_path / "stream.bin"
    path.write_bytes(b"prefix" + stream)
    with path.open("rb") as file:
        file.seek(6)  # a file positioned at the stream: every attempt starts there again
        params = find_params(file, lambda: iter([DATA[:1000], b"", DATA[1000:]]))
    assert params is not None and params.label == "zlib/l6/m8/s0"
    assert find_params(memoryview(stream), io.BytesIO(DATA)) == params


def test_unseekable_input_is_refused() -> None:
    class Pipe(io.RawIOBase):
        def readable(self) -> bool:
            return True

    with pytest.raises(TypeError, match="unseekable"):
        find_params(_zlib(DATA), Pipe())  # type: ignore[arg-type]


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown stream kind 'zstd'"):
        find_params(b"", b"", "zstd")


def _big_pieces(count: int = 384) -> Iterator[bytes]:
    """24 MiB (384 x 64 KiB) of compressible content, generated piece by piece."""
    for i in range(count):
        yield ((b"%08d member content that repeats with a counter\n" % i) * 1261)[: 1 << 16]


def test_large_member_search_and_rebuild_memory_bounded(tmp_path: Path) -> None:
    path = tmp_path / "big.deflate"
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    with path.open("wb") as out:
        for piece in _big_pieces():
            out.write(comp.compress(piece))
        out.write(comp.flush())
    tracemalloc.start()
    try:
        with path.open("rb") as stream:
            result = search_params(stream, _big_pieces)
        assert result.params is not None and result.params.label == "zlib/l6/m8/s0"
        assert len(result.attempts) == 1
        rebuilt = zlib.decompressobj(-15)
        total = 0
        for piece in recompress(result.params, _big_pieces()):
            total += len(rebuilt.decompress(piece, 1 << 16))
            while rebuilt.unconsumed_tail:
                total += len(rebuilt.decompress(rebuilt.unconsumed_tail, 1 << 16))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == 384 * (1 << 16)
    # The member is 24 MiB; search and rebuild never hold more than a few pieces of it.
    assert peak < 4 << 20


def test_params_from_recipe_dict_rebuild_the_stream() -> None:
    stream = _zlib(DATA, level=9)
    params = find_params(stream, DATA)
    assert params is not None
    again = CompressorParams.from_dict(params.to_dict())
    assert b"".join(recompress(again, [DATA])) == stream
