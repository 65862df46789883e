"""CompressorParams round-trips through its recipe dict and rejects anything else."""

from __future__ import annotations

import dataclasses

import dag_cbor
import pytest

from importer.compress import CompressorParams, InvalidCompressorParams

ZLIB6 = CompressorParams("zlib", "madler-zlib", 6, mem_level=8, wbits=-15)
NG = CompressorParams("zlib-ng", "zlib-ng-2.3", 6, mem_level=8, wbits=-15, feed="fixed", feed_size=8192,
                      out_size=32768, sync_flush=True)
XZ = CompressorParams("xz", "liblzma-5", 9, extreme=True, check=10)


@pytest.mark.parametrize("params", [ZLIB6, NG, XZ])
def test_params_dict_roundtrip_equal(params: CompressorParams) -> None:
    data = params.to_dict()
    assert data["v"] == 1
    assert CompressorParams.from_dict(data) == params
    # DAG-CBOR friendly: only str/int/bool, so it encodes and decodes unchanged.
    assert dag_cbor.decode(dag_cbor.encode(data)) == data  # type: ignore[arg-type]  # dict is invariant


def test_params_dict_omits_defaults() -> None:
    assert NG.to_dict() == {"v": 1, "name": "zlib-ng", "family": "zlib-ng-2.3", "level": 6, "mem_level": 8,
                            "wbits": -15, "feed": "fixed", "feed_size": 8192, "out_size": 32768,
                            "sync_flush": True}


def test_params_label_names_settings() -> None:
    assert ZLIB6.label == "zlib/l6/m8/s0"
    assert NG.label == "zlib-ng/l6/m8/feed8192/out32768/sync"
    assert dataclasses.replace(NG, feed="record", feed_size=0).label == "zlib-ng/l6/m8/feed-record/out32768/sync"
    assert XZ.label == "xz/l9/extreme/check10"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"v": 2, "name": "zlib", "family": "madler-zlib", "level": 6}, "unsupported version 2 (expected 1)"),
        ({"v": 1, "name": "zlib", "family": "madler-zlib", "level": 6, "speed": 1}, "unknown fields ['speed']"),
        ({"v": 1, "name": "zlib", "family": "madler-zlib"}, "missing field 'level'"),
        ({"v": 1, "name": "zlib", "family": "madler-zlib", "level": True}, "field 'level' has type bool"),
        ({"v": 1, "name": "zlib", "family": "madler-zlib", "level": 6, "sync_flush": 1},
         "field 'sync_flush' has type int"),
        ({"v": 1, "name": "zopfli", "family": "x", "level": 6}, "unknown compressor 'zopfli'"),
        ({"v": 1, "name": "zlib-ng", "family": "x", "level": 6, "feed": "fixed"}, "invalid feed 'fixed' with feed_size 0"),
        ({"v": 1, "name": "zlib-ng", "family": "x", "level": 6, "feed": "bytes"}, "invalid feed 'bytes' with feed_size 0"),
    ],
)
def test_params_bad_dict_raises_invalid(data: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidCompressorParams) as exc:
        CompressorParams.from_dict(data)
    assert exc.value.reason == reason
