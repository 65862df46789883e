"""The compiled kernel (``_cdc``) against the numpy reference: same cuts for every chunker and
parameter set on random, zero and text data, whatever the buffer boundaries; buffer protocol,
argument checks, threads, and the loud fallback when the kernel is missing."""

from __future__ import annotations

import importlib
import io
import itertools
import random
import threading
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

from importer.chunkers import cdc, reference
from importer.chunkers.buzhash import BuzhashChunker, table_bytes
from importer.chunkers.fastcdc import FastCDCChunker, gear_table
from importer.chunkers.rabin import RabinChunker

Buffer = bytes | bytearray | memoryview
ScanFn = Callable[[Buffer, int, int], tuple[list[int], int, int]]


@pytest.fixture(scope="module")
def ext() -> ModuleType:
    try:
        return importlib.import_module(cdc.KERNEL_MODULE)
    except ImportError as exc:  # a missing build must fail the suite, not skip it
        pytest.fail(f"{cdc.KERNEL_MODULE} is not built ({exc}); run `pip install -e .`")


def rabin_scan(mod: ModuleType, min_size: int, avg: int, max_size: int) -> ScanFn:
    mask = RabinChunker(min_size, avg, max_size).mask

    def scan(buf: Buffer, scanned: int, state: int) -> tuple[list[int], int, int]:
        result: tuple[list[int], int, int] = mod.rabin_scan(buf, scanned, state, min_size, max_size, mask)
        return result

    return scan


def buzhash_scan(mod: ModuleType, min_size: int, max_size: int, mask: int) -> ScanFn:
    def scan(buf: Buffer, scanned: int, state: int) -> tuple[list[int], int, int]:
        result: tuple[list[int], int, int] = mod.buzhash_scan(
            buf, scanned, state, min_size, max_size, mask, table_bytes()
        )
        return result

    return scan


def gear_scan(mod: ModuleType, min_size: int, avg: int, max_size: int) -> ScanFn:
    mask_s, mask_l = FastCDCChunker(min_size, avg, max_size).masks

    def scan(buf: Buffer, scanned: int, state: int) -> tuple[list[int], int, int]:
        result: tuple[list[int], int, int] = mod.gear_scan(
            buf, scanned, state, min_size, avg, max_size, mask_s, mask_l, gear_table()
        )
        return result

    return scan


#: (name, scan factory taking the kernel module) for every chunker and several parameter sets,
#: from tiny (many chunks per small input) to Kubo's own.
SMALL_CASES: list[tuple[str, Callable[[ModuleType], ScanFn]]] = [
    ("rabin-16-32-64", lambda m: rabin_scan(m, 16, 32, 64)),
    ("rabin-17-100-300", lambda m: rabin_scan(m, 17, 100, 300)),
    ("rabin-341-1024-1536", lambda m: rabin_scan(m, 341, 1024, 1536)),
    ("rabin-10-30-45 (never cuts)", lambda m: rabin_scan(m, 10, 30, 45)),
    ("buzhash-32-64-m7", lambda m: buzhash_scan(m, 32, 64, 0x7)),
    ("buzhash-64-256-m3f", lambda m: buzhash_scan(m, 64, 256, 0x3F)),
    ("buzhash-1000-4000-m3ff", lambda m: buzhash_scan(m, 1000, 4000, 0x3FF)),
    ("fastcdc-64-128-256", lambda m: gear_scan(m, 64, 128, 256)),
    ("fastcdc-64-1024-4096", lambda m: gear_scan(m, 64, 1024, 4096)),
    ("fastcdc-300-301-302", lambda m: gear_scan(m, 300, 301, 302)),
]
KUBO_CASES: list[tuple[str, Callable[[ModuleType], ScanFn]]] = [
    ("rabin", lambda m: rabin_scan(m, 87381, 262144, 393216)),
    ("buzhash", lambda m: buzhash_scan(m, 131072, 524288, (1 << 17) - 1)),
    ("fastcdc-65536-262144-1048576", lambda m: gear_scan(m, 65536, 262144, 1048576)),
]


def make_data(kind: str, n: int, seed: int) -> bytes:
    rng = random.Random(seed)
    if kind == "random":
        return rng.randbytes(n)
    if kind == "zeros":
        return bytes(n)
    if kind == "lowentropy":
        return bytes(rng.choice(b"ab") for _ in range(n))
    words = [b"import", b"numpy", b"def", b"return", b"self", b"\n", b"    ", b"(", b")", b":"]
    out = bytearray()
    while len(out) < n:
        out += rng.choice(words) + b" "
    return bytes(out[:n])


def streamed_cuts(scan: ScanFn, parts: list[bytes]) -> list[int]:
    """Drive ``scan`` over ``parts`` as consecutive reads, the way ``iter_chunks`` does."""
    cuts: list[int] = []
    pending = b""
    scanned = state = 0
    base = 0
    for part in parts:
        buf = pending + part
        found, scanned, state = scan(buf, scanned, state)
        cuts.extend(base + c for c in found)
        last = found[-1] if found else 0
        base += last
        pending = buf[last:]
    return cuts


def whole_cuts(scan: ScanFn, data: bytes) -> list[int]:
    return scan(data, 0, 0)[0]


def random_split(data: bytes, rng: random.Random) -> list[bytes]:
    points = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(8)))
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# ---- equivalence ------------------------------------------------------------------------


def test_kernel_is_built(ext: ModuleType) -> None:
    assert cdc.kernel_is_compiled()
    assert cdc.kernel() is ext


@pytest.mark.parametrize(("name", "factory"), SMALL_CASES, ids=[c[0] for c in SMALL_CASES])
@pytest.mark.parametrize("kind", ["random", "zeros", "text", "lowentropy"])
def test_kernel_equals_reference_on_many_inputs_and_splits(
    ext: ModuleType, name: str, factory: Callable[[ModuleType], ScanFn], kind: str
) -> None:
    rng = random.Random(f"{name}/{kind}")
    fast, slow = factory(ext), factory(reference)
    for trial in range(25):
        n = rng.choice([0, 1, 15, 16, 31, 32, 33, 64, 65, 257, 1000, 4099, 20000])
        data = make_data(kind, n, trial)
        expected = whole_cuts(slow, data)
        assert whole_cuts(fast, data) == expected, (name, kind, n)
        assert streamed_cuts(fast, random_split(data, rng)) == expected, (name, kind, n)


@pytest.mark.parametrize(("name", "factory"), KUBO_CASES, ids=[c[0] for c in KUBO_CASES])
@pytest.mark.parametrize("kind", ["random", "zeros", "text"])
def test_kernel_equals_reference_with_kubo_parameters(
    ext: ModuleType, name: str, factory: Callable[[ModuleType], ScanFn], kind: str
) -> None:
    data = make_data(kind, 3 * 1024 * 1024 + 12345, 99)
    fast, slow = factory(ext), factory(reference)
    expected = whole_cuts(slow, data)
    assert len(expected) >= 3
    assert whole_cuts(fast, data) == expected
    assert streamed_cuts(fast, random_split(data, random.Random(name))) == expected


@pytest.mark.parametrize(("name", "factory"), SMALL_CASES[:3] + SMALL_CASES[4:], ids=lambda x: str(x)[:24])
def test_kernel_reads_split_at_and_around_every_cut_give_same_cuts(
    ext: ModuleType, name: str, factory: Callable[[ModuleType], ScanFn]
) -> None:
    data = make_data("random", 6000, 5)
    fast = factory(ext)
    expected = whole_cuts(fast, data)
    assert expected
    for cut in expected[:12]:
        for delta in (-33, -17, -16, -1, 0, 1, 16, 32):
            at = min(max(cut + delta, 0), len(data))
            assert streamed_cuts(fast, [data[:at], data[at:]]) == expected, (name, cut, delta)


def test_kernel_one_byte_reads_give_same_cuts(ext: ModuleType) -> None:
    data = make_data("random", 3000, 6)
    for _, factory in SMALL_CASES:
        fast = factory(ext)
        parts = [data[i : i + 1] for i in range(len(data))]
        assert streamed_cuts(fast, parts) == whole_cuts(fast, data)


# ---- the stream adapter -----------------------------------------------------------------


class ShortReads(io.RawIOBase):
    """A raw stream whose ``readinto`` returns at most a few bytes at a time."""

    def __init__(self, data: bytes, seed: int) -> None:
        self.data = data
        self.pos = 0
        self.rng = random.Random(seed)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Buffer) -> int:  # type: ignore[override]
        view = memoryview(b)
        n = min(len(view), len(self.data) - self.pos, self.rng.randrange(1, 5000))
        view[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


class ReadOnly:
    """A stream with ``read`` and no ``readinto``."""

    def __init__(self, data: bytes) -> None:
        self.inner = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self.inner.read(size)


def chunkers() -> Iterator[RabinChunker | BuzhashChunker | FastCDCChunker]:
    yield RabinChunker(341, 1024, 1536)
    yield RabinChunker(87381, 262144, 393216)
    yield BuzhashChunker()
    yield FastCDCChunker(256, 1024, 8192)


@pytest.mark.parametrize("read_size", [1, 7, 1000, 65536, 1 << 20])
def test_iter_chunks_cuts_do_not_depend_on_read_size(read_size: int) -> None:
    data = make_data("random", 1_500_000 if read_size > 1 else 20000, 7)
    for chunker in chunkers():
        chunks = list(cdc.iter_chunks(chunker.scan, io.BytesIO(data), read_size))
        assert b"".join(chunks) == data
        assert all(type(c) is bytes and c for c in chunks)
        assert [len(c) for c in chunks] == sizes(chunker.cut_points(data))


def test_iter_chunks_handles_short_reads_and_streams_without_readinto() -> None:
    data = make_data("text", 1_200_000, 8)
    for chunker in chunkers():
        expected = sizes(chunker.cut_points(data))
        via_short = list(cdc.iter_chunks(chunker.scan, ShortReads(data, 1), 100_000))  # type: ignore[arg-type]
        via_read = list(cdc.iter_chunks(chunker.scan, ReadOnly(data), 100_000))  # type: ignore[arg-type]
        assert [len(c) for c in via_short] == expected == [len(c) for c in via_read]


def test_iter_chunks_empty_stream_yields_nothing() -> None:
    for chunker in chunkers():
        assert list(chunker.chunks(io.BytesIO(b""))) == []


def sizes(ends: list[int]) -> list[int]:
    return [b - a for a, b in itertools.pairwise([0, *ends])]


# ---- the C interface --------------------------------------------------------------------


def test_kernel_accepts_bytes_bytearray_and_memoryview(ext: ModuleType) -> None:
    data = make_data("random", 50000, 9)
    framed = memoryview(b"xx" + data + b"yy")[2:-2]
    for _, factory in SMALL_CASES:
        scan = factory(ext)
        assert scan(data, 0, 0) == scan(bytearray(data), 0, 0) == scan(framed, 0, 0)


def test_kernel_rejects_bad_tables_and_state(ext: ModuleType) -> None:
    with pytest.raises(ValueError, match="bad table"):
        ext.buzhash_scan(b"abc", 0, 0, 64, 256, 0x3F, b"short")
    with pytest.raises(ValueError, match="bad table"):
        ext.gear_scan(b"abc", 0, 0, 64, 128, 256, 1, 1, table_bytes())  # 1 KiB, not 2 KiB
    with pytest.raises(ValueError, match="scanned out of range"):
        ext.rabin_scan(b"abc", 4, 0, 16, 64, 31)
    with pytest.raises(TypeError):
        ext.rabin_scan("text", 0, 0, 16, 64, 31)


def test_kernel_runs_in_threads_with_same_results(ext: ModuleType) -> None:
    inputs = [make_data("random", 2_000_000, seed) for seed in range(4)]
    scan = buzhash_scan(ext, 131072, 524288, (1 << 17) - 1)
    expected = [whole_cuts(scan, d) for d in inputs]
    results: list[list[int]] = [[] for _ in inputs]

    def work(i: int) -> None:
        results[i] = whole_cuts(scan, inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == expected


# ---- fallback ---------------------------------------------------------------------------


def test_missing_kernel_warns_once_on_stderr_and_falls_back_to_reference(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_import = importlib.import_module
    data = make_data("random", 300_000, 10)
    expected = BuzhashChunker().cut_points(data)

    def no_kernel(name: str, package: str | None = None) -> ModuleType:
        if name == cdc.KERNEL_MODULE:
            raise ImportError("simulated: not built")
        return real_import(name, package)

    monkeypatch.setattr(importlib, "import_module", no_kernel)
    cdc.kernel.cache_clear()
    try:
        capsys.readouterr()
        assert cdc.kernel() is reference
        assert not cdc.kernel_is_compiled()
        assert BuzhashChunker().cut_points(data) == expected
        err = capsys.readouterr().err
        assert err.count("warning: the compiled chunking kernel") == 1
        assert "simulated: not built" in err and "fall back to the slow numpy reference" in err
    finally:
        monkeypatch.undo()
        cdc.kernel.cache_clear()
    assert cdc.kernel_is_compiled()
