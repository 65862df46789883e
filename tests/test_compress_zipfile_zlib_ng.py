"""CPython's zipfile on zlib-ng (Pillow's auditwheel-repacked wheels): real members reproduced, wrong settings refused."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import zlib
from pathlib import Path

import pytest

from importer.compress import (
    CompressorParams,
    InvalidCompressorParams,
    ProducerHints,
    recompress,
    search_params,
)
from importer.compress.backends import BACKENDS
from importer.compress.golden import backend_status, golden_corpus, zlib_ng_probes
from importer.compress.pieces import Replayable
from importer.compress.search import try_params

VECTORS = json.loads((Path(__file__).parent / "vectors" / "compress_pillow_members.json").read_text())["members"]
IDS = [v["wheel"].split("-cp")[0] for v in VECTORS]

STOCK = "zlib-ng/l6/m8/feed-writestr/out-cpython"
LAZY17 = "zlib-ng/l6/m8/feed-writestr/out-cpython/lazy17"


def _vector(vector: dict[str, str]) -> tuple[bytes, bytes]:
    content = zlib.decompress(base64.b64decode(vector["content_zlib_b64"]))
    assert hashlib.sha256(content).hexdigest() == vector["content_sha256"]
    return content, base64.b64decode(vector["stream_b64"])


def _setting(name: str, label: str) -> CompressorParams:
    return next(p for p in BACKENDS[name].settings() if p.label == label)


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_real_pillow_member_reproduced_with_setuptools_hint(vector: dict[str, str]) -> None:
    content, stream = _vector(vector)
    hints = ProducerHints(generator=vector["generator"], member_name=vector["member"])
    result = search_params(stream, content, hints=hints)
    assert result.params is not None, result.reason
    assert result.params.label == vector["params"]
    # zlib level 6 first (setuptools' usual writer), then the zipfile-on-zlib-ng settings in hint
    # order: stock 2.3, stock 2.2 (when usable), then max_lazy 17.
    assert result.attempts[0].params.label == "zlib/l6/m8/s0" and result.attempts[0].reason
    with_2_2 = backend_status("zlib-ng-2.2").usable
    assert len(result.attempts) == (2 if vector["params"] == STOCK else 4 if with_2_2 else 3)
    pieces = [content[i : i + 3000] for i in range(0, len(content), 3000)]
    assert b"".join(recompress(result.params, pieces)) == stream


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_real_pillow_member_refused_by_the_other_insert_limit_and_by_madler_zlib(vector: dict[str, str]) -> None:
    content, stream = _vector(vector)
    wrong = LAZY17 if vector["params"] == STOCK else STOCK
    attempt = try_params(BACKENDS["zlib-ng"], _setting("zlib-ng", wrong), Replayable(stream), Replayable(content))
    assert attempt.reason.startswith("differs at compressed byte ")
    assert 0 < attempt.matched < len(stream)
    zlib_attempt = try_params(BACKENDS["zlib"], _setting("zlib", "zlib/l6/m8/s0"), Replayable(stream),
                              Replayable(content))
    assert zlib_attempt.reason


@pytest.mark.parametrize("vector", VECTORS, ids=IDS)
def test_real_pillow_member_same_bytes_from_zlib_ng_2_2(vector: dict[str, str]) -> None:
    if not backend_status("zlib-ng-2.2").usable:
        pytest.skip("DPIP_ZLIB_NG_2_2 does not name a zlib-ng 2.2 library")
    content, stream = _vector(vector)
    params = _setting("zlib-ng-2.2", vector["params"].replace("zlib-ng/", "zlib-ng-2.2/"))
    assert b"".join(recompress(params, [content])) == stream


def test_cpython_output_growth_changes_zlib_ng_output_of_large_members() -> None:
    # zlib-ng forgets its one-match lookahead whenever a call runs out of output space, so output
    # beyond 64 KiB (where CPython's second block, 64 KiB, outlasts flate2's second 32 KiB one)
    # differs between the two buffers; a member compressing to less than that does not.
    content, _ = _vector(VECTORS[0])
    large = golden_corpus() * 3  # 562 KB: 171 KB compressed (repeats lie beyond the 32 KiB window)
    cpython = _setting("zlib-ng", STOCK)
    flate2 = dataclasses.replace(cpython, out_growth="", out_size=32768)
    backend = BACKENDS["zlib-ng"]
    assert b"".join(backend.encode(cpython, [content])) == b"".join(backend.encode(flate2, [content]))
    big_cpython = b"".join(backend.encode(cpython, [large]))
    assert big_cpython != b"".join(backend.encode(flate2, [large]))
    assert zlib.decompress(big_cpython, -15) == large


def test_probes_tell_insert_limit_apart() -> None:
    long_match, _ = zlib_ng_probes()
    backend = BACKENDS["zlib-ng"]
    stock = b"".join(backend.encode(_setting("zlib-ng", STOCK), [long_match]))
    tuned = b"".join(backend.encode(_setting("zlib-ng", LAZY17), [long_match]))
    assert stock != tuned
    assert zlib.decompress(stock, -15) == zlib.decompress(tuned, -15) == long_match


def test_probes_tell_zlib_ng_2_2_from_2_3() -> None:
    if not backend_status("zlib-ng-2.2").usable:
        pytest.skip("DPIP_ZLIB_NG_2_2 does not name a zlib-ng 2.2 library")
    _, end = zlib_ng_probes()
    new = b"".join(BACKENDS["zlib-ng"].encode(_setting("zlib-ng", STOCK), [end]))
    old = b"".join(BACKENDS["zlib-ng-2.2"].encode(_setting("zlib-ng-2.2", STOCK.replace("zlib-ng/", "zlib-ng-2.2/")),
                                                   [end]))
    assert new != old
    assert zlib.decompress(new, -15) == zlib.decompress(old, -15) == end


def test_new_fields_round_trip_and_bad_values_are_refused() -> None:
    params = _setting("zlib-ng", LAZY17)
    data = params.to_dict()
    assert data["feed"] == "writestr" and data["out_growth"] == "cpython" and data["max_lazy"] == 17
    assert CompressorParams.from_dict(data) == params
    with pytest.raises(InvalidCompressorParams):
        CompressorParams.from_dict({**data, "out_growth": "python"})
    with pytest.raises(InvalidCompressorParams):
        CompressorParams.from_dict({**data, "max_lazy": -1})
