"""The chunk pipeline (``cdc.iter_chunks``): reading and scanning in a producer thread yields the
same chunks as the inline loop for every chunker, size and read size; ``add`` through it gives
the CIDs of a DAG built from the definition's cut points; the producer never runs far ahead,
hands its errors to the consumer, and is stopped and joined when the consumer stops early."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import random
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import BinaryIO, cast

import pytest

from importer.adder import Adder
from importer.chunkers import cdc
from importer.chunkers.buzhash import BuzhashChunker
from importer.chunkers.fastcdc import FastCDCChunker
from importer.chunkers.rabin import RabinChunker
from importer.layout import DagBuilder, balanced_layout, trickle_layout
from importer.profiles import resolve_settings
from importer.sinks import MemorySink

CdcChunker = RabinChunker | BuzhashChunker | FastCDCChunker
READ = 64 * 1024  # small reads, so that a few hundred KiB make many producer batches


def cdc_chunkers() -> Iterator[tuple[str, CdcChunker]]:
    yield "rabin-341-1024-1536", RabinChunker(341, 1024, 1536)
    yield "rabin", RabinChunker.from_avg(262144)
    yield "buzhash", BuzhashChunker()
    yield "fastcdc-256-1024-8192", FastCDCChunker(256, 1024, 8192)


def producers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "dpip-chunker" and t.is_alive()]


def sizes(chunks: list[bytes]) -> list[int]:
    return [len(c) for c in chunks]


def ends(chunker: CdcChunker, data: bytes) -> list[int]:
    return chunker.cut_points(data)


@pytest.mark.parametrize(("name", "chunker"), list(cdc_chunkers()), ids=[n for n, _ in cdc_chunkers()])
def test_threaded_chunks_equal_inline_chunks_for_sizes_around_reads(name: str, chunker: CdcChunker) -> None:
    rng = random.Random(name)
    data = rng.randbytes(1_300_000)
    for n in (0, 1, READ - 1, READ, READ + 1, 2 * READ, 5 * READ + 17, 1_300_000):
        piece = data[:n]
        inline = list(cdc.iter_chunks(chunker.scan, io.BytesIO(piece), READ, threaded=False))
        threaded = list(cdc.iter_chunks(chunker.scan, io.BytesIO(piece), READ, threaded=True))
        assert threaded == inline, n
        assert list(itertools.accumulate(sizes(threaded))) == (ends(chunker, piece) if n else [])
        assert all(type(c) is bytes and c for c in threaded)
    assert not producers_alive()


def test_threaded_chunks_handle_tiny_and_odd_read_sizes() -> None:
    chunker = RabinChunker(341, 1024, 1536)
    for read_size, n in ((1, 5000), (7, 20_000), (1000, 200_000), (4099, 200_000)):
        data = random.Random(read_size).randbytes(n)
        chunks = list(cdc.iter_chunks(chunker.scan, io.BytesIO(data), read_size, threaded=True))
        assert list(itertools.accumulate(sizes(chunks))) == ends(chunker, data), read_size


@pytest.fixture(params=["threads", "inline"])
def spare(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``add`` with its default (automatic) choice forced each way."""
    monkeypatch.setattr(cdc, "spare_core", lambda: request.param == "threads")
    return str(request.param)


@pytest.mark.parametrize("spec", ["rabin", "rabin-4096", "buzhash", "fastcdc-4096-16384-65536"])
@pytest.mark.parametrize("layout", ["balanced", "trickle"])
def test_add_through_pipeline_gives_cids_of_dag_from_cut_points(spec: str, layout: str, spare: str) -> None:
    # Several sizes, from one read (inline path) to many (threaded), CIDv0 and CIDv1 raw leaves.
    rng = random.Random(f"{spec}/{layout}")
    data = rng.randbytes(3_000_000)
    for n, cid_version in ((1000, 0), (cdc.READ_SIZE - 5, 1), (cdc.READ_SIZE + 5, 0), (3_000_000, 1)):
        settings = resolve_settings(chunker=spec, trickle=layout == "trickle", cid_version=cid_version)
        sink = MemorySink()
        adder = Adder(settings, sink)
        root = adder.add_stream(io.BytesIO(data[:n]))
        chunker = adder.chunker
        assert isinstance(chunker, RabinChunker | BuzhashChunker | FastCDCChunker)
        bounds = [0, *ends(chunker, data[:n])]
        by_definition = [data[a:b] for a, b in itertools.pairwise(bounds)]
        expected_sink = MemorySink()
        builder = DagBuilder(expected_sink, cid_version=cid_version, raw_leaves=settings.raw_leaves,
                             max_links=settings.max_file_links)
        build = trickle_layout if layout == "trickle" else balanced_layout
        expected = build(builder, iter(by_definition))
        assert root == expected, n
        assert sink.blocks == expected_sink.blocks, n
    assert not producers_alive()


class CountingStream(io.RawIOBase):
    """Random bytes on demand; counts what was read, can fail after ``fail_after`` bytes."""

    def __init__(self, size: int, fail_after: int | None = None) -> None:
        self.size = size
        self.read_bytes = 0
        self.fail_after = fail_after
        self.rng = random.Random(size)

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray | memoryview) -> int:  # type: ignore[override]
        if self.fail_after is not None and self.read_bytes >= self.fail_after:
            raise OSError(5, "simulated read error")
        n = min(len(b), self.size - self.read_bytes)
        memoryview(b)[:n] = self.rng.randbytes(n)
        self.read_bytes += n
        return n


def threaded_chunks(chunker: CdcChunker, stream: CountingStream) -> Generator[bytes, None, None]:
    return cdc.iter_chunks(chunker.scan, cast(BinaryIO, stream), READ, threaded=True)


def wait_until_quiet(stream: CountingStream) -> int:
    """Give the producer time to run as far ahead as it may; return what it has read by then."""
    last = -1
    while stream.read_bytes != last:
        last = stream.read_bytes
        time.sleep(0.2)
    return last


def test_producer_runs_at_most_a_few_reads_ahead() -> None:
    stream = CountingStream(100 * READ)
    chunker = RabinChunker(341, 1024, 1536)
    with contextlib.closing(threaded_chunks(chunker, stream)) as chunks:
        next(chunks)
        ahead = wait_until_quiet(stream)
        # The batch being consumed, QUEUE_DEPTH queued, one held by the blocked producer.
        assert ahead <= (cdc.QUEUE_DEPTH + 2) * READ
        assert len(producers_alive()) == 1
    assert not producers_alive()


def test_consumer_closing_early_stops_and_joins_producer_and_stream_is_left_alone() -> None:
    stream = CountingStream(100 * READ)
    chunker = BuzhashChunker()
    chunks = threaded_chunks(chunker, stream)
    assert len(next(chunks)) >= 128 * 1024
    chunks.close()
    assert not producers_alive()
    read = stream.read_bytes
    time.sleep(0.1)
    assert stream.read_bytes == read < 100 * READ


def test_read_error_in_producer_is_raised_in_consumer_after_earlier_chunks() -> None:
    stream = CountingStream(100 * READ, fail_after=20 * READ)
    chunker = RabinChunker(341, 1024, 1536)
    got = 0
    with pytest.raises(OSError, match="simulated read error"):
        for chunk in threaded_chunks(chunker, stream):
            got += len(chunk)
    assert 19 * READ <= got <= 20 * READ
    assert not producers_alive()


def test_exception_in_consumer_stops_producer() -> None:
    stream = CountingStream(100 * READ)
    chunker = RabinChunker(341, 1024, 1536)

    def consume() -> None:
        for i, _ in enumerate(threaded_chunks(chunker, stream)):
            if i == 50:
                raise ValueError("consumer gave up")

    with pytest.raises(ValueError, match="consumer gave up"):
        consume()
    assert not producers_alive()
    assert stream.read_bytes < 100 * READ


def test_small_stream_is_chunked_without_a_thread() -> None:
    data = random.Random(9).randbytes(READ - 1)
    chunker = RabinChunker(341, 1024, 1536)
    started = threading.active_count()
    chunks = cdc.iter_chunks(chunker.scan, io.BytesIO(data), READ, threaded=True)
    first = next(chunks)
    assert threading.active_count() == started and not producers_alive()
    assert first + b"".join(chunks) == data


@pytest.mark.parametrize("mod_name", ["kernel", "reference"])
def test_chunk_bytes_copies_consecutive_slices_and_refuses_bad_ends(mod_name: str) -> None:
    mod = cdc.kernel() if mod_name == "kernel" else cdc.reference_kernel()
    buf = bytearray(random.Random(11).randbytes(5000))
    view = memoryview(buf)
    chunks = mod.chunk_bytes(view, 100, [100, 101, 2000, 5000])
    assert chunks == [b"", bytes(buf[100:101]), bytes(buf[101:2000]), bytes(buf[2000:5000])]
    assert all(type(c) is bytes for c in chunks)
    buf[150] ^= 0xFF  # copies, not views
    assert chunks[2] != bytes(buf[101:2000])
    assert mod.chunk_bytes(b"abc", 3, []) == []
    for start, ends in ((0, [10, 5]), (0, [5001]), (-1, [4]), (20, [10])):
        with pytest.raises(ValueError, match="out of order or out of range"):
            mod.chunk_bytes(view, start, ends)
    view.release()


def test_default_uses_a_thread_only_when_a_core_is_spare(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(12).randbytes(3 * READ)
    chunker = RabinChunker(341, 1024, 1536)
    for spare, threads in ((True, 1), (False, 0)):
        monkeypatch.setattr(cdc, "spare_core", lambda spare=spare: spare)
        chunks = cdc.iter_chunks(chunker.scan, io.BytesIO(data), READ)
        first = next(chunks)
        assert len(producers_alive()) == threads
        assert first + b"".join(chunks) == data
        assert not producers_alive()


def test_spare_core_compares_runnable_tasks_with_cpus(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    loadavg = tmp_path / "loadavg"
    for line, spare in ((b"0.50 0.40 0.30 1/210 4242\n", True), (b"6.10 5.20 4.00 2/300 77\n", False),
                        (b"9.00 9.00 9.00 7/300 77\n", False)):
        loadavg.write_bytes(line)
        assert cdc.spare_core(str(loadavg)) is spare, line
    assert cdc.spare_core(str(tmp_path / "missing")) is True  # not Linux: two CPUs, one to spare
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert cdc.spare_core(str(tmp_path / "missing")) is False
