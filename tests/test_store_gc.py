"""``store gc``: mark and sweep over the archive index and the pins, safe beside other processes;
``delete``; free pages given back; ``store verify`` naming incomplete archives."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from importer.archive.recipe import read_root
from importer.dag.cid import RAW, cid_codec, cid_of_block, format_cid, parse_cid
from importer.errors import StoreError
from importer.sinks.car import iter_dag
from importer.sinks.gc import collect_garbage
from importer.sinks.lock import LOCK_NAME
from importer.sinks.store import DB_NAME, ROWID_SCHEMA_VERSION, ArchiveRecord, BlockStore

from .archive_builders import build_with_backend, project_files, project_module, python_source, write_project
from .archive_checks import import_json, sha256_file
from .conftest import RunCli
from .old_stores import make_old_store
from .oracle_support import dpip_import_executable

MiB = 1024 * 1024


def raw(i: int, size: int = 1000) -> tuple[bytes, bytes]:
    data = (i.to_bytes(4, "big") * (size // 4 + 1))[:size]
    return cid_of_block(1, RAW, data), data


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME, isolation_level=None)


def stored_cids(path: Path) -> set[bytes]:
    with db(path) as conn:
        return {bytes(c) for (c,) in conn.execute("SELECT cid FROM blocks")}


def record(store: BlockStore, name: str, root: bytes) -> None:
    store.record_archive(ArchiveRecord(name, root, bytes(32), 0, time.time()))


# -- the sweep itself -------------------------------------------------------------------------

def test_gc_removes_exactly_the_blocks_no_archive_or_pin_reaches(tmp_path: Path) -> None:
    kept_archive, kept_pin, garbage = raw(1), raw(2), [raw(i, 500 + i) for i in range(10, 15)]
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many([kept_archive, kept_pin, *garbage])
        record(store, "a-1.0.tar.gz", kept_archive[0])
        store.pin(kept_pin[0])
    with BlockStore(tmp_path / "s") as store:
        dry = collect_garbage(store, dry_run=True)
        assert stored_cids(tmp_path / "s") == {kept_archive[0], kept_pin[0], *(c for c, _ in garbage)}
        report = collect_garbage(store)
    total = sum(500 + i for i in range(10, 15))
    assert (dry.removed, dry.logical_bytes, dry.payload_bytes) == (5, total, total)
    assert (report.removed, report.logical_bytes, report.payload_bytes) == (dry.removed, dry.logical_bytes,
                                                                           dry.payload_bytes)
    assert (report.roots, report.live, report.missing) == (2, 2, 0)
    assert stored_cids(tmp_path / "s") == {kept_archive[0], kept_pin[0]}


def test_gc_removes_blocks_in_batches_of_delete_rows_transactions(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many(raw(i, 64) for i in range(12_000))
    commits = []
    original = BlockStore._commit

    def counted(self: BlockStore) -> None:
        commits.append(1)
        original(self)

    monkeypatch.setattr(BlockStore, "_commit", counted)
    with BlockStore(tmp_path / "s") as store:
        assert collect_garbage(store).removed == 12_000
    assert len(commits) == 3  # DELETE_ROWS = 5000 a transaction: 5000 + 5000 + 2000
    assert stored_cids(tmp_path / "s") == set()


def test_gc_refuses_to_sweep_when_a_live_block_is_corrupt(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    root = parse_cid(import_json(cli, wheel, store)["root"])
    with BlockStore(store, compression="none") as opened:
        opened.put(*raw(99))  # garbage that must survive the refusal
        tree = read_root(opened, root).tree
    damaged = b"\x0a\x00"
    with db(store) as conn:
        conn.execute("UPDATE blocks SET encoding = 0, data = ? WHERE cid = ?", (damaged, tree))
    rc, out, err = cli("store", "gc", "--store", store)
    assert (rc, out) == (1, "")
    assert err == (f"dpip-import store gc: store {store}: block {format_cid(tree)} of archive {wheel.name} "
                   f"({format_cid(root)}) is corrupt (its bytes hash to sha2-256 "
                   f"{hashlib.sha256(damaged).hexdigest()}), so what it links to is unknown: "
                   "nothing was removed (`dpip-import store verify` lists the damage; `dpip-import delete` or "
                   "`pin rm` drops the root)\n")
    assert raw(99)[0] in stored_cids(store)


def test_deleting_the_middle_of_a_delta_chain_splices_the_next_delta_onto_the_one_before(tmp_path: Path) -> None:
    from .test_store_delta import chain_of, cid, committed, delta_refs, keyed, sound

    a, b, c = chain_of(3)
    with committed(tmp_path / "s", a, b, c) as store:
        store.delta_encode([(cid(b), [cid(a)])])
        store.delta_encode([(cid(c), [cid(b)])])
        plain_c = len(store._codec.encode(c)[1])
        report = store.delete_many([cid(b)])
        assert store.get(cid(c)) == c
        assert list(store.iter_deltas()) == [(cid(c), 1, (cid(a),))]  # rewritten into a pack
        delta = next(e for e in store.stats().encodings if e.name == "packed delta")
        assert delta.blocks == 1 and delta.stored_bytes < plain_c
    assert (report.blocks, report.rewritten) == (1, 1)
    assert delta_refs(tmp_path / "s") == keyed({(cid(a), cid(c))})
    assert sound(tmp_path / "s")


# -- archives: fixtures built with a real backend ----------------------------------------------

@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Wheels 1.0, 2.0 and 3.0 of the hatchling demo project; ``changed.py`` grows a little each release,
    so each wheel's changed leaves are stored as deltas against the previous one's."""
    folder = tmp_path_factory.mktemp("gc-chain")
    base = python_source(2002, 8000)
    wheels = []
    for version in (1, 2, 3):
        files = project_files("hatchling", version)
        middle = len(base) // 2
        files[f"{project_module('hatchling')}/changed.py"] = (
            base[:middle] + b"".join(f"\ndef added_{k}(x):\n    return x + {k}\n".encode() for k in range(version))
            + base[middle:])
        write_project(folder / f"src-{version}", files)
        wheels.append(build_with_backend("hatchling", "wheel", folder / f"src-{version}", folder / "out"))
    return wheels


@pytest.fixture
def wheel(chain: list[Path]) -> Path:
    return chain[0]


def file_size(store: Path) -> int:
    return sum((store / (DB_NAME + s)).stat().st_size for s in ("", "-wal") if (store / (DB_NAME + s)).exists())


def test_delete_and_gc_of_the_middle_release_of_a_delta_chain(chain: list[Path], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    summaries = [import_json(cli, path, store) for path in chain]
    with BlockStore(store) as opened:
        deltas_before = opened.stats().encodings
        at_rest_before = opened.stats().at_rest_bytes
        pages_before = opened.page_stats()
    assert any(e.name in ("zstd+delta", "packed delta") and e.blocks for e in deltas_before)
    rc, out, err = cli("delete", chain[1].name, "--store", store)
    assert rc == 0, err
    assert out == f"deleted {chain[1].name} ({summaries[1]['root']}) from the index\n"
    rc, out, err = cli("store", "gc", "--json", "--store", store)
    assert rc == 0, err
    report: dict[str, Any] = json.loads(out)
    assert report["removed_blocks"] > 0 and report["rewritten_deltas"] > 0
    # The middle release held 1.7 KB at rest and its 10 dependents are rewritten into a pack, so
    # the file keeps its page count or loses some: the store shrinks in what it holds at rest, the
    # file never grows, nothing is left free and the file stays within 10% of its payload (issue 14).
    assert report["file_bytes_after"] <= report["file_bytes_before"] == pages_before.file_bytes
    with BlockStore(store) as opened:
        assert opened.stats().at_rest_bytes < at_rest_before
        assert opened.page_stats().free_pages == 0
        assert report["file_bytes_after"] <= 1.10 * opened.stats().at_rest_bytes + 16 * opened.page_stats().page_size
        assert opened.page_stats().file_bytes == report["file_bytes_after"]
    for path, summary in ((chain[0], summaries[0]), (chain[2], summaries[2])):
        out_path = tmp_path / f"back-{path.name}"
        rc, _, err = cli("fetch", path.name, "-o", out_path, "--store", store)
        assert rc == 0, err
        assert sha256_file(out_path) == sha256_file(path) == summary["sha256"]
    rc, out, err = cli("store", "verify", "--store", store)
    assert (rc, err) == (0, ""), out
    assert out.endswith("; 2 of 2 archives and pins complete\n")
    rc, _, err = cli("fetch", chain[1].name, "--store", store)
    assert (rc, err) == (1, (f"dpip-import fetch: '{chain[1].name}': no archive of that name in the store's index "
                             "(`dpip-import list` shows them)\n"))


def _large_wheel(path: Path) -> Path:
    """A 192 MiB wheel of incompressible stored members: several 64 MiB store batches to kill between."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("big-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\n")
        for i in range(24):
            zf.writestr(f"big/blob{i}.bin", os.urandom(8 * MiB))
    return path


def _store_blocks(store: Path) -> int:
    try:
        with db(store) as conn:
            return int(conn.execute("SELECT count(*) FROM blocks").fetchone()[0])
    except sqlite3.Error:
        return 0


def test_gc_after_a_killed_import_brings_the_store_back_to_one_that_never_saw_it(
        chain: list[Path], tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    for path in chain[:2]:
        import_json(cli, path, store)
    with BlockStore(store) as opened:
        never_saw = opened.stats()
        pages = opened.page_stats()
    big = _large_wheel(tmp_path / "big-1.0-py3-none-any.whl")
    proc = subprocess.Popen([str(dpip_import_executable()), "wheel", "--store", str(store), str(big)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and _store_blocks(store) <= never_saw.blocks:
            time.sleep(0.02)
        killed = proc.poll() is None
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    big.unlink()
    assert killed, "the import finished before it could be killed; make the wheel bigger"
    assert _store_blocks(store) > never_saw.blocks  # a batch of the killed import was committed
    rc, out, err = cli("store", "gc", "--store", store)  # the kernel dropped the killed writer's lock
    assert rc == 0, err
    with BlockStore(store) as opened:
        after = opened.stats()
        pages_after = opened.page_stats()
    assert (after.blocks, after.logical_bytes, after.stored_bytes, after.encodings) == (
        never_saw.blocks, never_saw.logical_bytes, never_saw.stored_bytes, never_saw.encodings)
    assert pages_after.free_pages == 0
    # The same rows in a b-tree rebuilt by other inserts and deletes: within 1% of the pages.
    assert pages_after.pages <= pages.pages * 1.01 + 2, (pages_after, pages)
    rc, out, err = cli("store", "verify", "--store", store)
    assert (rc, err) == (0, ""), out
    for path in chain[:2]:
        rc, _, err = cli("fetch", path.name, "-o", tmp_path / path.name, "--store", store)
        assert rc == 0, err
        assert sha256_file(tmp_path / path.name) == sha256_file(path)


# -- two processes: gc waits for writers, writers wait for gc ----------------------------------

def _writer_until_told(path: str, ready: Any, go: Any) -> None:
    with BlockStore(path, compression="none") as store:
        store.put_many(raw(i) for i in range(100, 200))
        store.flush()  # committed, but no root names them yet
        ready.set()
        go.wait(60)
        record(store, "late-1.0.tar.gz", raw(100)[0])
        store.pin(raw(150)[0])
        for i in range(101, 200):
            if i != 150:
                store.pin(raw(i)[0], f"p{i}")


def _collect(path: str, result: Any) -> None:
    with BlockStore(path) as store:
        result.put(collect_garbage(store).removed)


def test_gc_waits_for_an_import_in_another_process_and_keeps_its_blocks(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    BlockStore(path).close()
    ctx = multiprocessing.get_context("fork")
    ready, go, result = ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_writer_until_told, args=(path, ready, go))
    writer.start()
    collector = None
    try:
        assert ready.wait(60)
        with BlockStore(path) as store, pytest.raises(StoreError) as e:
            collect_garbage(store, wait=0.2)
        assert e.value.reason == ("cannot collect garbage now: another process writes to the store "
                                  f"(it holds {tmp_path / 's' / LOCK_NAME})")
        collector = ctx.Process(target=_collect, args=(path, result))
        collector.start()
        time.sleep(0.5)
        assert collector.is_alive()  # waiting for the writer
        go.set()
        writer.join(60)
        collector.join(60)
        assert (writer.exitcode, collector.exitcode) == (0, 0)
        assert result.get(timeout=5) == 0
    finally:
        for p in (writer, collector):
            if p is not None and p.is_alive():
                p.kill()
                p.join()
    assert stored_cids(tmp_path / "s") == {raw(i)[0] for i in range(100, 200)}


def _write_one_batch(path: str, start: Any, done: Any) -> None:
    start.wait(60)
    with BlockStore(path, compression="none") as store:
        store.put_many(raw(i) for i in range(300, 310))
        store.flush()
        done.set()


def test_an_import_waits_while_gc_runs(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    start, done = ctx.Event(), ctx.Event()
    # Forked before the lock is taken: a child forked after would share the parent's locked file.
    writer = ctx.Process(target=_write_one_batch, args=(path, start, done))
    writer.start()
    try:
        with BlockStore(path) as gc_store:
            lock = gc_store.collector_lock()
            lock.exclusive(wait=0)  # what collect_garbage holds during its mark and sweep
            start.set()
            assert not done.wait(1.0)
            assert stored_cids(tmp_path / "s") == set()  # blocked at its first put, nothing committed
            lock.release()
            assert done.wait(60)
    finally:
        writer.join(60)
    assert writer.exitcode == 0
    assert stored_cids(tmp_path / "s") == {raw(i)[0] for i in range(300, 310)}


def _hold_writer_lock(path: str, ready: Any) -> None:
    store = BlockStore(path, compression="none")
    store.put(*raw(1))
    store.flush()
    ready.set()
    time.sleep(600)


def test_a_killed_writer_leaves_no_lock_behind(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_writer_lock, args=(path, ready))
    child.start()
    try:
        assert ready.wait(60)
        os.kill(child.pid, signal.SIGKILL)  # type: ignore[arg-type]
    finally:
        child.join(60)
    with BlockStore(path) as store:
        assert collect_garbage(store, wait=5).removed == 1


def test_gc_in_the_process_that_holds_a_writer_fails_instead_of_deadlocking(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as writer:
        writer.put(*raw(1))
        with pytest.raises(StoreError, match="this process itself writes to the store"):
            collect_garbage(writer, wait=0)


# -- verify: incomplete archives -----------------------------------------------------------------

def test_store_verify_names_an_archive_missing_a_block_and_exits_1(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    summary = import_json(cli, wheel, store)
    root = parse_cid(summary["root"])
    with BlockStore(store) as opened:
        blocks = [cid for cid, _ in iter_dag(opened, root)]
    leaf = next(c for c in reversed(blocks) if cid_codec(c) != RAW)
    with db(store) as conn:
        conn.execute("DELETE FROM blocks WHERE cid = ?", (leaf,))
    rc, out, err = cli("store", "verify", "--store", store)
    assert (rc, err) == (1, "")
    assert out.splitlines() == [
        (f"incomplete archive {wheel.name} ({summary['root']}): 1 of {len(blocks)} blocks missing "
         f"(first: {format_cid(leaf)} missing)"),
        f"verified {len(blocks) - 1} blocks: {len(blocks) - 1} ok, 0 corrupt; 0 of 1 archives and pins complete"]


# -- pins --------------------------------------------------------------------------------------

def test_add_pins_its_root_and_gc_keeps_it_until_pin_rm(tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "store"
    (tmp_path / "f").write_bytes(python_source(5, 300))
    rc, out, _ = cli("add", "-Q", "--store", store, tmp_path / "f")
    root = out.strip()
    rc, _, _ = cli("add", "-Q", "--pin=false", "--store", store, tmp_path / "f", "--cid-version", "1")
    assert rc == 0
    rc, out, _ = cli("pin", "ls", "--store", store)
    assert out == f"{root} recursive\n"
    rc, out, _ = cli("store", "gc", "--store", store)
    assert rc == 0 and out.startswith("removed 1 blocks: ")  # the CIDv1 raw leaf nobody pinned
    rc, out, _ = cli("cat", root, "--store", store)
    assert out.encode() == python_source(5, 300)
    rc, out, _ = cli("pin", "rm", root, "--store", store)
    assert (rc, out) == (0, f"unpinned {root}\n")
    rc, out, _ = cli("store", "gc", "--store", store)
    assert rc == 0 and out.startswith("removed 1 blocks: ")
    assert stored_cids(store) == set()


def test_pin_add_with_a_name_moves_the_name_and_refuses_an_incomplete_dag(wheel: Path, tmp_path: Path,
                                                                           cli: RunCli) -> None:
    store = tmp_path / "store"
    summary = import_json(cli, wheel, store)
    tree = summary["tree"]
    rc, out, err = cli("pin", "add", "--name", "index", tree, "--store", store)
    assert (rc, out) == (0, f"pinned {tree} recursively as 'index'\n"), err
    rc, out, err = cli("pin", "add", "--name", "index", wheel.name, "--store", store)  # an archive name works too
    assert rc == 0, err
    rc, out, _ = cli("pin", "ls", "--store", store)
    assert out == f"{summary['root']} recursive index\n"
    cid = raw(7)[0]
    parent = cid_of_block(1, 0x71, b"\xa1\x61a\xd8\x2a\x58\x25\x00" + cid)  # {"a": link to a block not stored}
    with BlockStore(store) as opened:
        opened.put(parent, b"\xa1\x61a\xd8\x2a\x58\x25\x00" + cid)
    rc, out, err = cli("pin", "add", format_cid(parent), "--store", store)
    assert (rc, out) == (1, "")
    assert err == (f"dpip-import pin add: store {store}: cannot pin {format_cid(parent)}: 1 of the 2 blocks it "
                   f"reaches are not in the store (first: {format_cid(cid)})\n")


def test_import_car_pins_its_roots_unless_pin_roots_false(wheel: Path, tmp_path: Path, cli: RunCli) -> None:
    car = tmp_path / "w.car"
    rc, out, err = cli("wheel", "--json", "--car", car, "--no-store", "--store", tmp_path / "unused", wheel)
    assert rc == 0, err
    root = json.loads(out)["root"]
    assert not (tmp_path / "unused").exists()
    rc, out, err = cli("import-car", "--store", tmp_path / "a", car)
    assert (rc, out) == (0, f"{root}\n"), err
    rc, out, err = cli("import-car", "--pin-roots=false", "--store", tmp_path / "b", car)
    assert (rc, out) == (0, f"{root}\n"), err
    assert cli("pin", "ls", "--store", tmp_path / "a")[1] == f"{root} recursive\n"
    assert cli("pin", "ls", "--store", tmp_path / "b")[1] == ""
    kept = stored_cids(tmp_path / "a")
    assert cli("store", "gc", "--store", tmp_path / "a")[0] == 0 and stored_cids(tmp_path / "a") == kept
    assert cli("store", "gc", "--store", tmp_path / "b")[0] == 0 and stored_cids(tmp_path / "b") == set()


# -- schema and free pages -----------------------------------------------------------------------

def test_new_store_gives_free_pages_back_after_delete(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many(raw(i, 64 * 1024) for i in range(100))
        store.flush()
        full = store.page_stats()
        report = store.delete_many([raw(i, 64 * 1024)[0] for i in range(0, 100, 2)])
        after = store.page_stats()
    assert full.auto_vacuum == after.auto_vacuum == "incremental"
    assert (report.blocks, report.logical_bytes, report.payload_bytes) == (50, 50 * 64 * 1024, 50 * 64 * 1024)
    assert after.free_pages == 0
    assert after.file_bytes <= full.file_bytes - 50 * 64 * 1024


def _old_store(path: Path) -> None:
    """A store as schema 4 wrote it: auto_vacuum off, no pins table."""
    make_old_store(path, 4, drop=("pins", "packs", "pack_usage"))
    with db(path) as conn:
        conn.execute("PRAGMA auto_vacuum = NONE")
        conn.execute("VACUUM")
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (0,)


def test_schema_4_store_is_migrated_and_converted_by_store_vacuum(tmp_path: Path, cli: RunCli) -> None:
    store = tmp_path / "s"
    _old_store(store)
    with BlockStore(store, compression="none") as opened:
        opened.put_many(raw(i, 64 * 1024) for i in range(40))
        opened.flush()
        opened.delete_many([raw(i, 64 * 1024)[0] for i in range(20)])
        pages = opened.page_stats()
        assert opened.find_archives() == [] and list(opened.iter_pins()) == []
    with db(store) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(ROWID_SCHEMA_VERSION),)
    assert pages.auto_vacuum == "none" and pages.free_pages >= 20 * 16  # 64 KiB rows on 4 KiB pages
    rc, out, _ = cli("store", "stats", "--store", store)
    assert (f"free pages:    {pages.free_pages} of {pages.pages} ({pages.free_bytes} bytes, "
            f"{100 * pages.free_pages / pages.pages:.1f}% of the file): reused by later imports, never given back: "
            "`dpip-import store vacuum` returns them") in out
    rc, out, err = cli("store", "vacuum", "--store", store)
    assert rc == 0, err
    with BlockStore(store) as opened:
        after = opened.page_stats()
    assert out == (f"store file {pages.file_bytes:,d} -> {after.file_bytes:,d} bytes ({pages.free_pages} free pages "
                   "returned)\nconverted to auto_vacuum=incremental: gc and delta rewrites now give free "
                   "pages back by themselves\n")
    assert (after.auto_vacuum, after.free_pages) == ("incremental", 0)
    # The rows left, plus the pointer-map pages an incremental store keeps (one per page_size / 5 pages).
    assert after.pages <= pages.pages - pages.free_pages + -(-pages.pages // (pages.page_size // 5))
