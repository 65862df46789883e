"""The shortcuts that make ``--open-nested`` cheap keep the search order and the rebuilt bytes exact."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import importer.archive.buffers as archive_buffers
import importer.archive.outer as archive_outer
from importer.archive.importer import ArchiveImporter
from importer.archive.rebuild import fetch
from importer.compress import CompressorParams, ProducerHints, SearchResult, search_params
from importer.compress.backends import BACKENDS, gnu_gzip
from importer.compress.hints import order_candidates
from importer.compress.memo import AttemptMemo, StreamId, stream_id
from importer.compress.pieces import Replayable
from importer.compress.search import SPAWNED_ATTEMPTS, registry_candidates
from importer.profiles import resolve_settings
from importer.sinks import MemorySink

from .test_archive_nested import doc, gz, wheel


def _deflate(data: bytes, level: int) -> bytes:
    engine = zlib.compressobj(level, zlib.DEFLATED, -15)
    return engine.compress(data) + engine.flush()


def _refuse(what: str) -> Callable[..., None]:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(what)
    return refuse


def _import_and_fetch(path: Path, tmp_path: Path) -> int:
    sink = MemorySink()
    report = ArchiveImporter(resolve_settings(), sink, open_nested=True).import_file(str(path))
    out = tmp_path / f"rebuilt-{path.name}"
    fetch(sink, report.root, out)
    assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(path.read_bytes()).digest()
    return report.nested


def test_search_with_failing_previous_tries_the_ranked_order_once_each() -> None:
    data = doc(1)
    tampered = bytearray(_deflate(data, 6))
    tampered[40] ^= 0xFF  # nothing reproduces it: every candidate up to the limit is tried
    candidates = registry_candidates("deflate", bytes(tampered[:16]))
    previous = next(p for p in candidates if p.name == "miniz" and p.level == 9)
    hints = ProducerHints(generator="bdist_wheel (0.43.0)", previous=previous)
    result = search_params(bytes(tampered), data, "deflate", hints, max_attempts=12)
    expected = order_candidates(candidates, "deflate", hints)[:12]
    assert result.params is None
    assert [a.params for a in result.attempts] == expected
    assert expected[0] == previous


def test_previous_of_an_excluded_backend_is_not_tried_first() -> None:
    data = doc(2)
    stream = _deflate(data, 9)
    miniz = next(p for p in BACKENDS["miniz"].settings() if p.level == 6)
    result = search_params(stream, data, "deflate", ProducerHints(previous=miniz), names=["zlib"])
    assert result.params is not None and result.params.name == "zlib" and result.params.level == 9
    assert all(a.params.name == "zlib" for a in result.attempts)


def test_previous_winner_wins_in_one_attempt() -> None:
    data = doc(3)
    stream = _deflate(data, 1)
    winner = CompressorParams("zlib", BACKENDS["zlib"].family, 1, mem_level=8, wbits=-15)
    result = search_params(stream, data, "deflate", ProducerHints(previous=winner))
    assert [a.params for a in result.attempts] == [winner]
    assert result.params == winner


def test_backend_settings_are_built_once_and_unchanged() -> None:
    for name in ("zlib", "zlib-ng"):
        backend = BACKENDS[name]
        first = backend.settings()
        assert backend.settings() is first
        assert len(set(first)) == len(first)
    assert BACKENDS["zlib"].settings()[0] == CompressorParams("zlib", BACKENDS["zlib"].family, 6, mem_level=8,
                                                              wbits=-15)


def test_nested_gz_is_imported_without_a_temporary_directory(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tempfile.TemporaryDirectory", _refuse("a nested import made a temporary directory"))
    path = wheel(tmp_path / "pkg-1.0-py3-none-any.whl",
                  {"pkg/data/a.json.gz": gz(doc(4)), "pkg/data/b.json.gz": gz(doc(5))})
    assert _import_and_fetch(path, tmp_path) == 2


def test_nested_gz_search_reads_the_kept_content_not_the_file_again(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_outer, "decompress_pieces", _refuse("the container was decompressed twice"))
    path = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/data/a.json.gz": gz(doc(6))})
    assert _import_and_fetch(path, tmp_path) == 1


def test_nested_gz_of_two_members_rebuilds_each_stream_from_its_slice(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_outer, "decompress_pieces", _refuse("the container was decompressed twice"))
    two = gz(doc(7), level=9) + gz(doc(8), level=1)
    path = wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/data/two.json.gz": two})
    assert _import_and_fetch(path, tmp_path) == 1


@pytest.mark.parametrize(("small_input", "pipe_input"), [
    (gnu_gzip.SMALL_INPUT, gnu_gzip.PIPE_INPUT),  # a filled pipe
    (gnu_gzip.SMALL_INPUT, 0),  # a temporary file
    (1000, gnu_gzip.PIPE_INPUT),  # a feeder thread
])
def test_gnu_gzip_body_is_the_same_from_a_pipe_a_file_or_a_feeder_thread(small_input: int, pipe_input: int,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    monkeypatch.setattr(gnu_gzip, "SMALL_INPUT", small_input)
    monkeypatch.setattr(gnu_gzip, "PIPE_INPUT", pipe_input)
    data = doc(9) * 3
    whole = subprocess.run(["gzip", "-c", "-n", "-6"], input=data, capture_output=True, check=True).stdout
    params = next(p for p in BACKENDS["gnu-gzip"].settings() if p.level == 6)
    pieces = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    assert b"".join(BACKENDS["gnu-gzip"].encode(params, pieces)) == whole[10:-8]



def _gnu_gzip_body(data: bytes, level: int) -> bytes:
    return subprocess.run(["gzip", "-c", "-n", f"-{level}"], input=data, capture_output=True, check=True).stdout[10:-8]


GZIP_HINTS = ProducerHints(gzip_xfl=0, gzip_os=3)


def _first_gzip_search(data: bytes, content_cid: bytes | None = None) -> tuple[bytes, SearchResult]:
    """A fresh memo, then one search that GNU gzip level 6 wins: (the stream, its result)."""
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    SPAWNED_ATTEMPTS.clear()
    body = _gnu_gzip_body(data, 6)
    first = search_params(body, data, "deflate", GZIP_HINTS, content_cid=content_cid)
    assert first.params is not None and first.params.label == "gnu-gzip/l6"
    return body, first


def test_repeated_gzip_attempt_is_answered_without_starting_gzip(monkeypatch: pytest.MonkeyPatch) -> None:
    data = doc(11)
    body, first = _first_gzip_search(data)
    hints = GZIP_HINTS
    monkeypatch.setattr(subprocess, "Popen", _refuse("gzip started for a stream already tried"))
    assert search_params(bytes(body), bytearray(data), "deflate", hints) == first
    other = doc(12)
    with pytest.raises(AssertionError, match="gzip started"):
        search_params(_gnu_gzip_body(other, 6), other, "deflate", hints)


def test_remembered_gzip_mismatch_keeps_its_reason_and_the_search_order() -> None:
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    SPAWNED_ATTEMPTS.clear()
    data = doc(13)
    body = _gnu_gzip_body(data, 1)  # level 1: the level-6 hint misses first
    hints = ProducerHints(gzip_xfl=0, gzip_os=3)
    first = search_params(body, data, "deflate", hints)
    again = search_params(body, data, "deflate", hints)
    assert again == first
    assert [a.params.label for a in first.attempts][:2] == ["gnu-gzip/l6", "gnu-gzip/l9"]
    assert first.params is not None and first.params.label == "gnu-gzip/l1"


def test_attempt_memo_drops_the_oldest_past_its_capacity() -> None:
    memo: AttemptMemo[str] = AttemptMemo(capacity=2)
    params = BACKENDS["gnu-gzip"].settings()
    keys = [(p, (1, b"a"), (2, b"b")) for p in params[:3]]
    for key, value in zip(keys, "xyz", strict=False):
        memo.put(key, value)
    assert memo.get(keys[0]) is None
    assert memo.get(keys[1]) == "y" and memo.get(keys[2]) == "z"


@pytest.mark.parametrize("spool", [archive_buffers.NESTED_SPOOL, 100])
def test_nested_member_in_memory_or_spilled_to_a_file_rebuilds(spool: int, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(archive_buffers, "NESTED_SPOOL", spool)
    inner = wheel(tmp_path / "inner-1.0-py3-none-any.whl", {"inner/data.json.gz": gz(doc(14))})
    path = wheel(tmp_path / "pkg-1.0-py3-none-any.whl",
                 {"pkg/vendor/inner-1.0-py3-none-any.whl": inner.read_bytes(),
                  "pkg/data/not-gzip.json.gz": b"plain text named like a gzip file",
                  "pkg/data/a.json.gz": gz(doc(15))})
    assert _import_and_fetch(path, tmp_path) == 3  # the inner wheel, its .json.gz and a.json.gz


def test_gzip_memo_names_the_content_by_the_callers_cid(monkeypatch: pytest.MonkeyPatch) -> None:
    data = doc(16)
    cid = b"\x01\x55\x12\x20" + hashlib.sha256(data).digest()  # CIDv1 raw sha2-256 of the content
    body, first = _first_gzip_search(data, cid)
    hints = GZIP_HINTS
    monkeypatch.setattr(subprocess, "Popen", _refuse("gzip started for a content already tried"))
    calls: list[int] = []
    monkeypatch.setattr("importer.compress.search.stream_id", _counting_stream_id(calls))
    assert search_params(body, data, "deflate", hints, content_cid=cid) == first
    assert calls == [len(body)]  # only the compressed stream was hashed
    with pytest.raises(AssertionError, match="gzip started"):
        search_params(body, data, "deflate", hints)  # named by its SHA-256 instead: another entry


def _counting_stream_id(calls: list[int]) -> Callable[[Replayable], StreamId]:
    def counting(stream: Replayable) -> StreamId:
        result = stream_id(stream)
        calls.append(result[0])
        return result
    return counting


def test_same_json_gz_in_a_second_wheel_starts_no_gzip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    SPAWNED_ATTEMPTS.clear()
    made = subprocess.run(["gzip", "-c", "-n", "-6"], input=doc(17), capture_output=True, check=True).stdout
    wheels = [wheel(tmp_path / f"pkg-1.{i}-py3-none-any.whl",  # only the gzip header's MTIME differs
                    {"pkg/data/a.json.gz": made[:4] + (1_700_000_000 + i).to_bytes(4, "little") + made[8:]})
              for i in range(2)]
    sink = MemorySink()
    ArchiveImporter(resolve_settings(), sink, open_nested=True).import_file(str(wheels[0]))
    monkeypatch.setattr(subprocess, "Popen", _refuse("gzip started for a stream already proven"))
    report = ArchiveImporter(resolve_settings(), sink, open_nested=True).import_file(str(wheels[1]))
    monkeypatch.undo()  # rebuilding runs gzip
    assert report.nested == 1 and report.verbatim_bytes == 0
    out = tmp_path / "rebuilt.whl"
    fetch(sink, report.root, out)
    assert out.read_bytes() == wheels[1].read_bytes()
