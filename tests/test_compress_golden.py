"""The golden self-check: compressors whose output differs from the recorded one are refused for rebuild."""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Iterable, Iterator

import pytest

from importer.compress import (
    CompressorParams,
    CompressorUnavailable,
    check_compressors,
    find_params,
    recompress,
    reset_compressor_checks,
)
from importer.compress.backends import BACKENDS
from importer.compress.golden_table import GOLDEN

ZLIB6 = CompressorParams("zlib", "madler-zlib", 6, mem_level=8, wbits=-15)
DATA = b"".join(b"%d: golden check data\n" % i for i in range(3000))


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    # Each test starts and ends with no cached result, so a monkeypatched backend never leaks.
    reset_compressor_checks()
    yield
    reset_compressor_checks()


def test_every_setting_has_exactly_one_golden_entry() -> None:
    labels = [params.label for backend in BACKENDS.values() for params in backend.settings()]
    assert len(labels) == len(set(labels))
    assert set(labels) == set(GOLDEN)


def test_installed_compressors_pass_golden_check() -> None:
    status = check_compressors()
    # zlib-ng 2.2 is optional: usable only when DPIP_ZLIB_NG_2_2 names its library.
    optional = status.pop("zlib-ng-2.2")
    assert {name: (s.usable, s.reason) for name, s in status.items()} == {
        name: (True, "") for name in BACKENDS if name != "zlib-ng-2.2"}
    if not os.environ.get("DPIP_ZLIB_NG_2_2"):
        assert (optional.usable, optional.reason) == (False, "DPIP_ZLIB_NG_2_2 does not name a zlib-ng 2.2 library")
    else:
        assert (optional.usable, optional.reason) == (True, "")
    assert status["zlib"].checked == len(BACKENDS["zlib"].settings())


def _flip_first_byte(real: object) -> object:
    def encode(params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        first = True
        for out in real(params, pieces):  # type: ignore[operator]
            if first and out:
                out, first = bytes([out[0] ^ 0x80]) + out[1:], False
            yield out
    return encode


def test_compressor_with_different_output_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    zlib_backend = BACKENDS["zlib"]
    monkeypatch.setattr(zlib_backend, "encode", _flip_first_byte(zlib_backend.encode))
    status = check_compressors()["zlib"]
    assert not status.usable
    assert "output for zlib/l6/m8/s0 differs from the golden output" in status.reason
    assert status.reason.endswith("not family madler-zlib")
    with pytest.raises(CompressorUnavailable) as exc:
        recompress(ZLIB6, [DATA])
    assert exc.value.name == "zlib"
    assert exc.value.reason == status.reason
    # Searching no longer offers zlib either: its params could not be rebuilt.
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    found = find_params(comp.compress(DATA) + comp.flush(), DATA)
    assert found is None or found.name != "zlib"


def test_zlib_ng_like_runtime_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A CPython built on zlib-ng: same API, valid deflate, other bytes. Stand-in: miniz's encoder.
    zlib_backend, miniz_backend = BACKENDS["zlib"], BACKENDS["miniz"]

    def other_deflate(params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        return miniz_backend.encode(CompressorParams("miniz", "miniz-3", params.level, wbits=-15), pieces)

    monkeypatch.setattr(zlib_backend, "encode", other_deflate)
    with pytest.raises(CompressorUnavailable, match="differs from the golden output"):
        recompress(ZLIB6, [DATA])


def test_missing_compressor_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing() -> str:
        raise CompressorUnavailable("gnu-gzip", "no gzip binary on PATH (install the Debian package gzip)")

    monkeypatch.setattr(BACKENDS["gnu-gzip"], "probe", missing)
    with pytest.raises(CompressorUnavailable) as exc:
        recompress(CompressorParams("gnu-gzip", "gnu-gzip-1", 9), [DATA])
    assert str(exc.value) == ("compressor 'gnu-gzip' cannot be used to rebuild: "
                              "no gzip binary on PATH (install the Debian package gzip)")


def test_other_family_is_refused() -> None:
    with pytest.raises(CompressorUnavailable, match="needs family 'zlib-ng-2'"):
        recompress(dataclasses.replace(ZLIB6, family="zlib-ng-2"), [DATA])


def test_setting_without_golden_output_is_refused() -> None:
    with pytest.raises(CompressorUnavailable, match="setting zlib/l6/m5/s0 has no golden check"):
        recompress(dataclasses.replace(ZLIB6, mem_level=5), [DATA])


def test_unknown_xz_check_is_refused() -> None:
    with pytest.raises(CompressorUnavailable, match="unknown xz check id 7"):
        recompress(CompressorParams("xz", "liblzma-5", 6, check=7), [DATA])


def test_refusal_happens_before_any_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BACKENDS["zlib"], "encode", _flip_first_byte(BACKENDS["zlib"].encode))
    consumed: list[bytes] = []

    def pieces() -> Iterator[bytes]:
        consumed.append(DATA)
        yield DATA

    with pytest.raises(CompressorUnavailable):
        recompress(ZLIB6, pieces())
    assert consumed == []


def test_one_bad_setting_disables_whole_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    zlib_backend = BACKENDS["zlib"]
    real, flipped = zlib_backend.encode, _flip_first_byte(zlib_backend.encode)

    def level9_differs(params: CompressorParams, pieces: Iterable[bytes]) -> Iterator[bytes]:
        return (flipped if params.level == 9 else real)(params, pieces)  # type: ignore[operator, no-any-return]

    monkeypatch.setattr(zlib_backend, "encode", level9_differs)
    assert b"".join(recompress(ZLIB6, [DATA])) == _zlib6(DATA)  # level 6 still verifies
    with pytest.raises(CompressorUnavailable, match="output for zlib/l9/m8/s0 differs"):
        recompress(dataclasses.replace(ZLIB6, level=9), [DATA])
    # From then on the backend is distrusted as a whole, level 6 included.
    with pytest.raises(CompressorUnavailable, match="output for zlib/l9/m8/s0 differs"):
        recompress(ZLIB6, [DATA])


def _zlib6(data: bytes) -> bytes:
    comp = zlib.compressobj(6, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()
