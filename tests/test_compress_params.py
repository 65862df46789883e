"""CompressorParams round-trips through its recipe dict and rejects anything else."""

from __future__ import annotations

import dag_cbor
import pytest

from importer.compress import CompressorParams, InvalidCompressorParams

ZLIB6 = CompressorParams("zlib", "madler-zlib", 6, mem_level=8, wbits=-15)
RS = CompressorParams("zlib-rs", "zlib-rs-0.6", 6, mem_level=8, wbits=-15, feed_size=8192, sync_flush=True)
XZ = CompressorParams("xz", "liblzma-5", 9, extreme=True, check=10)


@pytest.mark.parametrize("params", [ZLIB6, RS, XZ])
def test_params_dict_roundtrip_equal(params: CompressorParams) -> None:
    data = params.to_dict()
    assert data["v"] == 1
    assert CompressorParams.from_dict(data) == params
    # DAG-CBOR friendly: only str/int/bool, so it encodes and decodes unchanged.
    assert dag_cbor.decode(dag_cbor.encode(data)) == data  # type: ignore[arg-type]  # dict is invariant


def test_params_dict_omits_defaults() -> None:
    assert RS.to_dict() == {"v": 1, "name": "zlib-rs", "family": "zlib-rs-0.6", "level": 6, "mem_level": 8,
                            "wbits": -15, "feed_size": 8192, "sync_flush": True}


def test_params_label_names_settings() -> None:
    assert ZLIB6.label == "zlib/l6/m8/s0"
    assert RS.label == "zlib-rs/l6/m8/feed8192/sync"
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
    ],
)
def test_params_bad_dict_raises_invalid(data: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidCompressorParams) as exc:
        CompressorParams.from_dict(data)
    assert exc.value.reason == reason
