"""The store's file layout (schema 8): small pages, blocks keyed by CID without a rowid, tables made
on first use; a small store's file stays near its payload, and stores made before keep theirs."""

from __future__ import annotations

import base64
import multiprocessing
import random
import sqlite3
from pathlib import Path

import pytest

from importer.dag.cid import RAW, cid_of_block
from importer.sinks.store import DB_NAME, ROWID_SCHEMA_VERSION, SCHEMA_VERSION, BlockStore
from importer.sinks.store.schema import LAZY_TABLES, PAGE_SIZE

from .archive_builders import build_with_backend, project_files, project_module, write_project
from .archive_checks import import_json, sha256_file
from .conftest import RunCli
from .old_stores import SCHEMA_7, make_old_store
from .test_store_packs import run_to_the_end


def block(seed: int, size: int = 1500) -> tuple[bytes, bytes]:
    """A distinct, compressible block (text-like bytes) and its CID."""
    rng = random.Random(seed)
    data = " ".join(f"name{rng.randrange(50)}" for _ in range(size)).encode()[:size]
    return cid_of_block(1, RAW, data), data


def schema(path: Path) -> tuple[int, int, str, set[str]]:
    """``(schema version, page size, the blocks table's SQL, tables)`` of the store at ``path``."""
    with sqlite3.connect(path / DB_NAME) as conn:
        version = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        sql = str(conn.execute("SELECT sql FROM sqlite_master WHERE name = 'blocks'").fetchone()[0])
        tables = {str(n) for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    return version, page_size, sql, tables


def ratio(store: Path) -> float:
    """The store's file (and write-ahead log, if any) over its payload (``store stats``' bytes at
    rest), as the disk sees them with the store closed."""
    with BlockStore(store, create=False) as opened:
        payload = opened.stats().at_rest_bytes
    return sum(p.stat().st_size for p in (store / DB_NAME, store / (DB_NAME + "-wal")) if p.exists()) / payload


def data_module(seed: int) -> bytes:
    """A 16 kB Python module of base64 text: zstd keeps about 3/4 of it, as it does of a data table."""
    return b"DATA = '''\n" + base64.encodebytes(random.Random(seed).randbytes(12_000)) + b"'''\n"


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Wheel and sdist of versions 1-3 of the setuptools demo project with 24 data modules, of which
    4 change in every release: 0.5 MB at rest in about 100 blocks, a small project's chain."""
    folder = tmp_path_factory.mktemp("layout-chain")
    module = project_module("setuptools")
    out = []
    for version in (1, 2, 3):
        files = project_files("setuptools", version)
        files.update({f"{module}/m{i}.py": data_module(i + (1000 * version if i < 4 else 0)) for i in range(24)})
        write_project(folder / f"src-{version}", files)
        out += [build_with_backend("setuptools", kind, folder / f"src-{version}", folder / "out")
                for kind in ("wheel", "sdist")]
    return out


def test_a_small_real_chain_stays_within_10_percent_of_its_payload_through_imports_and_deletes(
        releases: list[Path], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    for path in releases:
        import_json(cli, path, store)
        assert ratio(store) <= 1.10
    for name in (releases[2].name, releases[3].name):  # the middle release, wheel and sdist
        rc, _, err = cli("delete", name, "--store", store)
        assert rc == 0, err
    rc, _, err = cli("store", "gc", "--store", store)
    assert rc == 0, err
    assert ratio(store) <= 1.10
    for step in (("store", "optimize"), ("store", "optimize", "--level", "19"), ("store", "vacuum")):
        rc, _, err = cli(*step, "--store", store)
        assert rc == 0, err
        assert ratio(store) <= 1.10
    for path in releases[:2] + releases[4:]:
        rc, _, err = cli("fetch", path.name, "-o", tmp_path / f"back-{path.name}", "--store", store)
        assert rc == 0, err
        assert sha256_file(tmp_path / f"back-{path.name}") == sha256_file(path)
    rc, out, err = cli("store", "verify", "--store", store)
    assert (rc, err) == (0, ""), out
    # The same imports into a store laid out as schema 7 made them (4 KiB pages, a rowid
    # blocks table and its CID index, every table from the start) miss the 10%.
    old = tmp_path / "old"
    make_old_store(old)
    for path in releases:
        import_json(cli, path, old)
    assert ratio(old) > 1.10


def test_a_new_store_that_writes_packs_keys_blocks_by_cid_and_makes_no_table_it_does_not_use(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.put_many(block(i) for i in range(10))
    version, page_size, sql, tables = schema(tmp_path / "s")
    assert (version, page_size) == (SCHEMA_VERSION, PAGE_SIZE)
    assert "WITHOUT ROWID" in sql.upper()
    assert tables.isdisjoint(LAZY_TABLES)
    with BlockStore(tmp_path / "s") as store:  # readers take a missing table as empty
        assert (store.dictionaries(), list(store.iter_pins()), store.load_attempts(5),
                store.pushed_roots("peer")) == ([], [], [], [])
        assert store.stats().dictionaries == 0
        assert all(problem is None for _, problem in store.verify())


def test_a_new_store_of_whole_rows_keeps_a_rowid_blocks_table_at_schema_7(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many(block(i) for i in range(10))
    version, page_size, sql, _ = schema(tmp_path / "s")
    assert (version, page_size) == (ROWID_SCHEMA_VERSION, PAGE_SIZE)
    assert "WITHOUT ROWID" not in sql.upper()


def test_a_schema_7_store_keeps_its_pages_tables_and_version_and_takes_packs_deletes_and_optimize(
        tmp_path: Path) -> None:
    make_old_store(tmp_path / "s")
    blocks = [block(i) for i in range(60)]
    with BlockStore(tmp_path / "s") as store:
        store.put_many(blocks)
        store.flush()
        store.delete_many([cid for cid, _ in blocks[:40]])
        store.compact_packs(level=19)
        assert [row.cid for row in store.iter_rows()] == [cid for cid, _ in blocks[40:]]  # rowid order
        assert all(store.get(cid) == data for cid, data in blocks[40:])
        assert all(problem is None for _, problem in store.verify())
    version, page_size, sql, tables = schema(tmp_path / "s")
    assert (version, page_size) == (ROWID_SCHEMA_VERSION, 4096)
    assert "WITHOUT ROWID" not in sql.upper()
    assert tables >= {statement.split()[2] for statement in SCHEMA_7}


def test_a_cid_keyed_store_reads_blocks_in_the_order_they_were_written(tmp_path: Path) -> None:
    blocks = [block(i) for i in range(12)]
    with BlockStore(tmp_path / "s") as store:
        for cid, data in blocks:  # one pack each
            store.put(cid, data)
            store.flush()
        written = [cid for cid, _ in blocks]
        assert written != sorted(written)
        assert store.cids_in_written_order() == written
        assert [cid for cid, _ in store.verify()] == written
        assert sorted(row.cid for row in store.iter_rows(chunk_rows=5)) == sorted(written)  # pages by CID


def test_blocks_sharing_a_frame_come_back_in_the_order_they_were_written(tmp_path: Path) -> None:
    blocks = [block(i) for i in range(12)]
    with BlockStore(tmp_path / "s") as store:
        for cid, data in blocks:  # one flush: one pack, the small blocks in one frame
            store.put(cid, data)
        store.flush()
        written = [cid for cid, _ in blocks]
        assert written != sorted(written)
        assert store.cids_in_written_order() == written


def _lazy_writer(path: str, who: int) -> None:
    with BlockStore(path) as store:
        for i in range(20):
            store.record_attempts([(f"{who}-{i}".encode(), b"v")], keep=1000)
            store.pin(bytes([1, 0x55, 0x12, 0x20]) + bytes([who, i]) * 16, f"{who}-{i}")
            store.record_pushed(f"peer{who}", [bytes([who, i])], float(i))


def test_two_processes_making_the_lazy_tables_at_once_both_write_them(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    BlockStore(path).close()
    ctx = multiprocessing.get_context("fork")
    run_to_the_end([ctx.Process(target=_lazy_writer, args=(path, who)) for who in (1, 2)])
    with BlockStore(path) as store:
        assert len(store.load_attempts(1000)) == 40
        assert len(list(store.iter_pins())) == 40
        assert [len(store.pushed_roots(f"peer{who}")) for who in (1, 2)] == [20, 20]
