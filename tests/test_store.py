"""The embedded SQLite block store: durability, verification on read, concurrency, crash safety."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from importer.dag.cid import DAG_PB, IDENTITY, RAW, cid_of_block, format_cid
from importer.errors import BlockCorrupt, BlockNotFound, StoreError
from importer.sinks.base import BlockSink, BlockSource
from importer.sinks.store import DB_NAME, SCHEMA_VERSION, BlockStore, default_store_path
from importer.sinks.store.schema import LAZY_TABLES, NEWEST_SCHEMA, PAGE_SIZE


def raw_block(i: int, size: int = 1000) -> tuple[bytes, bytes]:
    """A deterministic raw block: ``size`` bytes derived from ``i``, and its CIDv1."""
    seed = hashlib.sha256(str(i).encode()).digest()
    data = (seed * (size // len(seed) + 1))[:size]
    return cid_of_block(1, RAW, data), data


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME, isolation_level=None)


def test_store_is_a_block_sink_and_source(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        assert isinstance(store, BlockSink)
        assert isinstance(store, BlockSource)


def test_put_then_get_after_reopen_returns_same_bytes(tmp_path: Path) -> None:
    blocks = [raw_block(i) for i in range(10)]
    with BlockStore(tmp_path / "s") as store:
        store.put_many(blocks)
    with BlockStore(tmp_path / "s", create=False) as store:
        for cid, data in blocks:
            assert store.has(cid)
            assert store.get(cid) == data
        assert store.stats().blocks == 10


def test_buffered_blocks_are_visible_before_flush(tmp_path: Path) -> None:
    cid, data = raw_block(1)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid, data)
        assert store.has(cid) and store.get(cid) == data
        with db(tmp_path / "s") as other:
            assert other.execute("SELECT count(*) FROM blocks").fetchone()[0] == 0
        store.flush()
        with db(tmp_path / "s") as other:
            assert other.execute("SELECT count(*) FROM blocks").fetchone()[0] == 1


def test_batch_is_committed_when_it_reaches_batch_bytes(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", batch_bytes=2500) as store:
        store.put_many(raw_block(i) for i in range(3))  # 3000 bytes >= 2500: one commit
        with db(tmp_path / "s") as other:
            assert other.execute("SELECT count(*) FROM blocks").fetchone()[0] == 3


def test_leaving_with_an_exception_drops_only_the_uncommitted_batch(tmp_path: Path) -> None:
    first, second = raw_block(1), raw_block(2)
    with pytest.raises(RuntimeError), BlockStore(tmp_path / "s") as store:
        store.put(*first)
        store.flush()
        store.put(*second)
        raise RuntimeError("import failed")
    with BlockStore(tmp_path / "s") as store:
        assert store.has(first[0])
        assert not store.has(second[0])


def test_put_of_a_stored_cid_is_a_no_op(tmp_path: Path) -> None:
    cid, data = raw_block(1)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid, data)
        store.flush()
        store.put(cid, data)
        store.flush()
        assert store.stats().blocks == 1


def test_get_of_a_missing_block_raises_block_not_found(tmp_path: Path) -> None:
    cid, _ = raw_block(1)
    with BlockStore(tmp_path / "s") as store, pytest.raises(BlockNotFound) as e:
        store.get(cid)
    assert e.value.cid == format_cid(cid)


def test_identity_cid_is_served_from_the_cid_itself(tmp_path: Path) -> None:
    cid = b"\x01\x55\x00\x05hello"  # CIDv1 raw, identity multihash of length 5
    with BlockStore(tmp_path / "s") as store:
        assert store.get(cid) == b"hello"
    assert cid[2] == IDENTITY


def test_corrupted_blob_is_detected_on_read(tmp_path: Path) -> None:
    cid, data = raw_block(7)
    with BlockStore(tmp_path / "s", compression="none") as store:  # a raw row: flip a block byte
        store.put(cid, data)
    flipped = bytes([data[0] ^ 0x01]) + data[1:]
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE blocks SET data = ? WHERE cid = ?", (flipped, cid))
    with BlockStore(tmp_path / "s") as store:
        with pytest.raises(BlockCorrupt) as e:
            store.get(cid)
        assert e.value.cid == format_cid(cid)
        assert e.value.actual == "sha2-256 " + hashlib.sha256(flipped).hexdigest()
        problems = [(c, p) for c, p in store.verify() if p is not None]
    assert [c for c, _ in problems] == [cid]


def test_verify_of_a_sound_store_reports_every_block_ok(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.put_many(raw_block(i) for i in range(5))
        store.flush()
        assert [p for _, p in store.verify()] == [None] * 5


def test_stats_count_blocks_logical_and_disk_bytes(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", compression="none") as store:  # stored == logical
        store.put_many(raw_block(i, size=100 + i) for i in range(4))
        store.flush()
        stats = store.stats()
    assert (stats.blocks, stats.logical_bytes, stats.stored_bytes) == (4, 406, 406)
    assert stats.disk_bytes >= 406


def test_new_store_has_cid_keyed_blocks_small_pages_and_no_lazy_tables(tmp_path: Path) -> None:
    BlockStore(tmp_path / "s").close()
    with db(tmp_path / "s") as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(blocks)")]
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'blocks'").fetchone()[0]
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert columns == ["cid", "encoding", "size", "data"]
    assert "WITHOUT ROWID" in sql.upper()
    assert version == str(SCHEMA_VERSION)
    assert mode == "wal"
    assert page_size == PAGE_SIZE
    assert tables.isdisjoint(LAZY_TABLES)


def test_block_with_unknown_encoding_is_refused_with_store_error(tmp_path: Path) -> None:
    cid, data = raw_block(3)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid, data)
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE blocks SET encoding = 9")
    with BlockStore(tmp_path / "s") as store, pytest.raises(StoreError, match="encoding 9"):
        store.get(cid)


def test_store_with_newer_schema_is_refused(tmp_path: Path) -> None:
    BlockStore(tmp_path / "s").close()
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(NEWEST_SCHEMA + 1),))
    with pytest.raises(StoreError, match="newer"):
        BlockStore(tmp_path / "s")


def test_path_that_is_a_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StoreError) as e:
        BlockStore(tmp_path / "f")
    assert e.value.reason == "exists and is not a directory"


def test_directory_under_a_file_raises_store_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(StoreError, match="cannot create directory"):
        BlockStore(tmp_path / "f" / "store")


def test_read_only_directory_raises_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "ro").mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: make the permission check see what a user would
        monkeypatch.setattr("importer.sinks.store.schema.os.access", lambda path, mode: False)
    with pytest.raises(StoreError, match="not writable"):
        BlockStore(tmp_path / "ro")


def test_opening_a_missing_store_without_create_raises(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no block store here"):
        BlockStore(tmp_path / "absent", create=False)
    assert not (tmp_path / "absent").exists()


def test_default_store_path_prefers_option_then_env_then_user_data_dir(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPIP_STORE", "/env/store")
    assert default_store_path("/cli/store") == Path("/cli/store")
    assert default_store_path(None) == Path("/env/store")
    monkeypatch.delenv("DPIP_STORE")
    from platformdirs import user_data_dir

    assert default_store_path(None) == Path(user_data_dir("dpip-importer")) / "store"


def test_delete_removes_a_block(tmp_path: Path) -> None:
    cid, data = raw_block(1)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid, data)
        store.flush()
        assert store.delete(cid)
        assert not store.has(cid)
        assert not store.delete(cid)


# -- two processes, and a process killed mid-transaction --------------------------------------

def _writer(path: str, start: int, count: int) -> None:
    # Small batches so the two writers' transactions interleave many times.
    with BlockStore(path, batch_bytes=16 * 1024) as store:
        store.put_many(raw_block(i, size=4096) for i in range(start, start + count))


def test_two_processes_write_one_store_at_once(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    # Ranges 0..299 and 200..499 overlap in 100 blocks that both processes insert.
    procs = [ctx.Process(target=_writer, args=(path, 0, 300)),
             ctx.Process(target=_writer, args=(path, 200, 300))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0]
    with BlockStore(path) as store:
        assert store.stats().blocks == 500
        for i in range(500):
            cid, data = raw_block(i, size=4096)
            assert store.get(cid) == data
        assert all(problem is None for _, problem in store.verify())


def _stall_in_transaction(path: str, ready: Any) -> None:
    # Uncompressed, so that the 8 MiB batch below really overflows the page cache into the WAL.
    store = BlockStore(path, batch_bytes=1 << 40, compression="none")
    store.put_many(raw_block(i) for i in range(10))
    store.flush()  # committed: must survive the kill

    def stall(self: BlockStore) -> None:
        ready.set()
        time.sleep(600)

    # Only in this forked child: the second batch is inserted, then the process hangs before COMMIT.
    BlockStore._commit = stall  # type: ignore[method-assign,assignment]
    store.put_many(raw_block(i, size=64 * 1024) for i in range(1000, 1128))  # 8 MiB > page cache
    store.flush()


def test_process_killed_mid_transaction_leaves_a_sound_store(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_stall_in_transaction, args=(path, ready))
    child.start()
    try:
        assert ready.wait(timeout=120), "child never reached its COMMIT"
        # The uncommitted batch overflowed SQLite's page cache, so its pages sit in the WAL.
        assert os.path.getsize(os.path.join(path, DB_NAME + "-wal")) > 4 * 1024 * 1024
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    with BlockStore(path) as store:
        assert store.stats().blocks == 10
        assert all(store.has(raw_block(i)[0]) for i in range(10))
        assert not store.has(raw_block(1000, size=64 * 1024)[0])
        assert all(problem is None for _, problem in store.verify())
        store.put_many(raw_block(i, size=64 * 1024) for i in range(1000, 1128))
    with BlockStore(path) as store:
        assert store.stats().blocks == 138
        assert all(problem is None for _, problem in store.verify())


def test_dag_pb_cidv0_blocks_round_trip(tmp_path: Path) -> None:
    block = b"\x0a\x02\x08\x01"  # the empty directory
    cid = cid_of_block(0, DAG_PB, block)
    with BlockStore(tmp_path / "s") as store:
        store.put(cid, block)
    with BlockStore(tmp_path / "s") as store:
        assert format_cid(cid) == "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn"
        assert store.get(cid) == block
