"""The GNU gzip attempt memo survives between processes in the embedded store, and never trusts a damaged row."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from importer.archive.rebuild import fetch
from importer.archive.recipe import read_root
from importer.cli.main import main
from importer.compress.backends import BACKENDS
from importer.compress.memo import AttemptMemo, Key, decode_row, encode_key, encode_value
from importer.compress.search import SPAWNED_ATTEMPTS, load_spawned_attempts, take_spawned_attempts
from importer.errors import StoreError
from importer.sinks.store import DB_NAME, BlockStore

from .old_stores import make_old_store
from .test_archive_nested import doc, wheel

GZIP_L6 = next(p for p in BACKENDS["gnu-gzip"].settings() if p.level == 6)
ZLIB_L6 = next(p for p in BACKENDS["zlib"].settings() if p.level == 6)
SHA_ID = (130_000, hashlib.sha256(b"original").digest())
CID_ID = (-1, b"\x01\x55\x12\x20" + hashlib.sha256(b"content").digest())  # CIDv1 raw sha2-256


def _row(key: Key, matched: int, reason: str) -> tuple[bytes, bytes]:
    key_bytes = encode_key(key)
    return key_bytes, encode_value(key_bytes, matched, reason)


@pytest.mark.parametrize(("key", "matched", "reason"), [
    ((GZIP_L6, SHA_ID, CID_ID), 4711, ""),
    ((GZIP_L6, SHA_ID, SHA_ID), 2**63 + 5, "differs at compressed byte 9 — é"),
    ((ZLIB_L6, (0, b""), CID_ID), 0, "output ends at byte 0, the stream goes on"),
])
def test_persisted_row_round_trips_key_and_attempt_exactly(key: Key, matched: int, reason: str) -> None:
    key_bytes, value = _row(key, matched, reason)
    assert decode_row(key_bytes, value) == (key, matched, reason)
    assert encode_key(key) == key_bytes  # canonical: the same key always gives the same bytes


def test_every_flipped_or_missing_byte_makes_the_row_unreadable() -> None:
    key_bytes, value = _row((GZIP_L6, SHA_ID, CID_ID), 123, "differs at compressed byte 123")
    for i in range(len(key_bytes)):
        damaged = bytearray(key_bytes)
        damaged[i] ^= 0x01
        assert decode_row(bytes(damaged), value) is None
    for i in range(len(value)):
        damaged = bytearray(value)
        damaged[i] ^= 0x80
        assert decode_row(key_bytes, bytes(damaged)) is None
    assert decode_row(key_bytes, value[:-1]) is None
    assert decode_row(key_bytes[:-1], value) is None


def test_rows_load_into_the_memo_and_non_spawning_or_damaged_rows_are_dropped() -> None:
    SPAWNED_ATTEMPTS.clear()
    good = _row((GZIP_L6, SHA_ID, CID_ID), 10, "")
    foreign = _row((ZLIB_L6, SHA_ID, CID_ID), 10, "")  # zlib starts no process: never persisted
    damaged = (good[0], good[1][:-1] + b"x")
    assert load_spawned_attempts([good, foreign, damaged]) == 2
    attempt = SPAWNED_ATTEMPTS.get((GZIP_L6, SHA_ID, CID_ID))
    assert attempt is not None and (attempt.params, attempt.matched, attempt.reason) == (GZIP_L6, 10, "")
    assert take_spawned_attempts() == [good]  # answered: rewritten as the newest on the next record
    assert take_spawned_attempts() == []
    SPAWNED_ATTEMPTS.clear()


def test_loaded_entries_are_older_than_the_process_own_and_do_not_replace_them() -> None:
    memo: AttemptMemo[str] = AttemptMemo(capacity=2)
    keys = [(p, SHA_ID, CID_ID) for p in BACKENDS["gnu-gzip"].settings()[:3]]
    memo.put(keys[0], "own")
    memo.load([(keys[1], "stored-old"), (keys[2], "stored-new"), (keys[0], "stored")])
    assert memo.get(keys[0]) == "own" and memo.get(keys[2]) == "stored-new"
    assert memo.get(keys[1]) is None  # the oldest loaded entry went past the capacity
    assert memo.take_touched() == [(keys[0], "own"), (keys[2], "stored-new")]


def test_store_keeps_only_the_newest_rows_and_a_rewrite_makes_a_row_newest(tmp_path: Path) -> None:
    rows = [(bytes([i]), bytes([i]) * 3) for i in range(5)]
    with BlockStore(tmp_path / "s") as store:
        store.record_attempts(rows[:3], keep=3)
        store.record_attempts([rows[0]], keep=3)  # rows 1, 2, 0 now, oldest first
        store.record_attempts(rows[3:], keep=3)
        assert store.load_attempts(10) == [rows[4], rows[3], rows[0]]
        assert store.load_attempts(2) == [rows[4], rows[3]]
        count = store._conn.execute("SELECT count(*) FROM attempts").fetchone()[0]
    assert count == 3


@pytest.mark.parametrize("version", ["3", "4"])
def test_store_without_the_attempts_table_opens_and_gains_it(tmp_path: Path, version: str) -> None:
    make_old_store(tmp_path / "s", int(version), drop=("attempts", "pins", "pushed", "packs", "pack_usage")
                   + (("delta_refs",) if version == "3" else ()))
    with BlockStore(tmp_path / "s") as store:
        assert store.load_attempts(10) == []
        store.record_attempts([(b"k", b"v")], keep=10)
        assert store.load_attempts(10) == [(b"k", b"v")]


def _counting_popen(starts: list[str]) -> Callable[..., subprocess.Popen[bytes]]:
    real = subprocess.Popen

    def popen(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        starts.append(str(args[0]))
        return real(*args, **kwargs)  # type: ignore[call-overload, no-any-return]
    return popen


def _release_wheels(tmp_path: Path) -> list[Path]:
    """Two releases whose .json.gz hold the same JSON gzip'd alike; only the gzip header's MTIME differs."""
    if shutil.which("gzip") is None:
        pytest.skip("no gzip binary")
    made = [subprocess.run(["gzip", "-c", "-n", "-6"], input=doc(40 + i), capture_output=True, check=True).stdout
            for i in range(2)]
    return [wheel(tmp_path / f"pkg-1.{n}-py3-none-any.whl",
                  {f"pkg/data/{i}.json.gz": body[:4] + (1_700_000_000 + n).to_bytes(4, "little") + body[8:]
                   for i, body in enumerate(made)})
            for n in range(2)]


def _import(store: Path, path: Path) -> None:
    assert main(["wheel", "--open-nested", "--store", str(store), str(path)]) == 0


def _fetch_is_identical(store_path: Path, path: Path, tmp_path: Path) -> None:
    with BlockStore(store_path) as store:
        root = next(r.root for r in store.iter_archives() if r.name == path.name)
        assert read_root(store, root).name == path.name
        out = tmp_path / f"rebuilt-{path.name}"
        fetch(store, root, out)
    assert out.read_bytes() == path.read_bytes()


def test_next_process_importing_the_same_json_gz_starts_no_gzip(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    wheels = _release_wheels(tmp_path)
    store = tmp_path / "store"
    SPAWNED_ATTEMPTS.clear()
    _import(store, wheels[0])
    SPAWNED_ATTEMPTS.clear()  # what a new process starts with
    starts: list[str] = []
    monkeypatch.setattr(subprocess, "Popen", _counting_popen(starts))
    _import(store, wheels[1])
    monkeypatch.undo()  # rebuilding runs gzip
    assert starts == []
    _fetch_is_identical(store, wheels[1], tmp_path)


def test_damaged_rows_are_ignored_and_the_attempts_run_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    wheels = _release_wheels(tmp_path)
    store = tmp_path / "store"
    SPAWNED_ATTEMPTS.clear()
    _import(store, wheels[0])
    with sqlite3.connect(store / DB_NAME) as conn:  # say "matched 0 bytes" in every row, checksum unchanged
        rows = conn.execute("SELECT key, value FROM attempts").fetchall()
        assert len(rows) == 2
        conn.executemany("UPDATE attempts SET value = ? WHERE key = ?",
                         [(value[:32] + bytes(8) + value[40:], key) for key, value in rows])
    conn.close()
    SPAWNED_ATTEMPTS.clear()
    capsys.readouterr()
    starts: list[str] = []
    monkeypatch.setattr(subprocess, "Popen", _counting_popen(starts))
    _import(store, wheels[1])
    monkeypatch.undo()
    assert len(starts) == 2  # one gzip per .json.gz: both attempts ran again
    assert "dpip-import wheel: warning: 2 damaged gzip attempt rows in the store ignored\n" in capsys.readouterr().err
    _fetch_is_identical(store, wheels[1], tmp_path)
    with BlockStore(store) as opened:  # the re-run attempts replaced the damaged rows
        assert all(decode_row(key, value) is not None for key, value in opened.load_attempts(10))


def test_failing_to_keep_the_memo_warns_and_the_import_succeeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    wheels = _release_wheels(tmp_path)
    SPAWNED_ATTEMPTS.clear()

    def fail(self: BlockStore, rows: object, keep: int) -> None:
        raise StoreError(str(self.path), "cannot record the attempts memo: disk I/O error")
    monkeypatch.setattr(BlockStore, "record_attempts", fail)
    _import(tmp_path / "store", wheels[0])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dpip-import wheel: warning: gzip attempts not kept for later imports: ")
    assert "disk I/O error" in err[0]
    _fetch_is_identical(tmp_path / "store", wheels[0], tmp_path)
