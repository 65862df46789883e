"""bench.diskusage: a store's file split into payload, free pages, unused page space and structure."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bench.diskusage import disk_usage, format_usage
from importer.dag.cid import RAW, cid_of_block
from importer.sinks.store import DB_NAME, BlockStore

from .bench_archives import random_bytes


def test_the_parts_add_up_to_the_file_and_deletes_show_as_free_pages(tmp_path: Path) -> None:
    blocks = [random_bytes(20_000, seed) for seed in range(40)]
    cids = [cid_of_block(1, RAW, block) for block in blocks]
    with BlockStore(tmp_path, compression="none") as store:
        store.put_many(zip(cids, blocks, strict=True))
    before = disk_usage(tmp_path)
    assert before.payload_bytes == sum(map(len, blocks))
    assert before.file_bytes == (tmp_path / DB_NAME).stat().st_size
    assert before.file_bytes == before.payload_bytes + before.free_bytes + before.unused_bytes + before.structure_bytes
    with BlockStore(tmp_path) as store:
        for cid in cids[:20]:
            store.delete(cid)
    after = disk_usage(tmp_path)
    assert after.payload_bytes == sum(map(len, blocks[20:]))
    assert after.free_bytes >= sum(map(len, blocks[:20])) - 20 * 4096
    assert format_usage("s", after).startswith(f"s: file {after.disk_bytes:,d} B = ")


def test_bytes_by_role_count_each_block_once_for_the_first_archive_that_has_it(tmp_path: Path) -> None:
    from bench.diskusage import bytes_by_role
    from importer.archive.importer import import_archive
    from importer.profiles import resolve_settings
    from importer.sinks.store import ArchiveRecord

    from .bench_archives import make_wheel

    with BlockStore(tmp_path / "s") as store:
        for version in ("1.0", "1.1"):
            files = {"pkg/__init__.py": b"VERSION = '" + version.encode() + b"'\n", "pkg/big.py": random_bytes(300_000, 3)}
            path = tmp_path / f"pkg-{version}-py3-none-any.whl"
            path.write_bytes(make_wheel("pkg", version, files))
            report = import_archive(str(path), resolve_settings(), store)
            store.record_archive(ArchiveRecord(report.file, report.root, bytes.fromhex(report.sha256), report.size, 0.0))
        payloads = {cid: stored for cid, _, stored in store.iter_payloads()}
    parts = bytes_by_role(tmp_path / "s")
    assert sum(n for n, _ in parts.values()) == len(payloads)  # every block once, none twice
    assert sum(stored for _, stored in parts.values()) == sum(payloads.values())
    assert parts[("first wheel", "leaf")][0] == 4  # __init__.py, big.py's two leaves of 256 KiB and less, METADATA
    assert parts[("later", "leaf")][0] == 2  # the new __init__.py and METADATA: big.py is the first wheel's


def test_release_cost_counts_each_release_against_its_patch(tmp_path: Path) -> None:
    from bench.diskusage import ROLES, bytes_by_archive
    from bench.release_cost import HEADER, later_releases, measure, skeleton_deltas

    from .bench_archives import make_wheel

    paths = []
    for version in ("1.0", "1.1"):
        files = {"pkg/__init__.py": b"VERSION = '" + version.encode() + b"'\n", "pkg/big.py": random_bytes(100_000, 3)}
        paths.append(tmp_path / f"pkg-{version}-py3-none-any.whl")
        paths[-1].write_bytes(make_wheel("pkg", version, files))
    rows = measure(paths, tmp_path / "s")
    table = [dict(zip(HEADER, row, strict=True)) for row in rows]
    assert [row["archive"] for row in table] == [p.name for p in paths]
    assert [row["archive B"] for row in table] == [f"{p.stat().st_size:,}" for p in paths]
    first, second = (int(row["patch B"].replace(",", "")) for row in table)
    assert second < 1000 and first > 100_000  # the first alone (random bytes), the second against it
    split = bytes_by_archive(tmp_path / "s")
    for row, path in zip(table, paths, strict=True):  # the roles columns are bytes_by_archive's
        assert [row[f"{role} B"] for role in ROLES] == [f"{split[path.name].get(role, (0, 0))[1]:,}" for role in ROLES]
    assert split[paths[1].name]["leaf"][0] == 2  # the new __init__.py and METADATA: big.py is the first's
    assert later_releases(rows) == [["1 later wheels", *rows[1][1:]]]  # the first of its kind apart
    skeletons = skeleton_deltas(tmp_path / "s")
    assert [row[0] for row in skeletons] == [p.name for p in paths] and skeletons[0][3:] == ["-", "-"]
    frame, raw_delta = (int(skeletons[1][i].replace(",", "")) for i in (2, 4))
    assert raw_delta < frame  # the second wheel's headers differ from the first's in a few bytes
    with BlockStore(tmp_path / "s") as store:
        assert sum(stored for _, _, stored in store.iter_payloads()) == sum(
            stored for roles in split.values() for _, stored in roles.values())


def test_store_layouts_copies_every_row_in_written_order_into_each_layout(tmp_path: Path) -> None:
    from bench.store_layouts import _layout

    blocks = [random_bytes(3_000, seed) for seed in range(30)]
    cids = [cid_of_block(1, RAW, block) for block in blocks]
    with BlockStore(tmp_path / "s") as store:
        for cid, block in zip(cids, blocks, strict=True):  # one pack each: written order != CID order
            store.put(cid, block)
            store.flush()
        rows = sorted(store._conn.execute("SELECT cid, encoding, size, data FROM blocks").fetchall())
        packs = store._conn.execute("SELECT id, data FROM packs ORDER BY id").fetchall()
    for page_size, without_rowid, lazy in ((512, True, True), (4096, False, False)):
        target = tmp_path / f"{page_size}.sqlite3"
        assert _layout(tmp_path / "s", cids, target, page_size, without_rowid, lazy) == target.stat().st_size
        with sqlite3.connect(target) as conn:
            assert conn.execute("PRAGMA page_size").fetchone() == (page_size,)
            assert sorted(conn.execute("SELECT cid, encoding, size, data FROM blocks").fetchall()) == rows
            assert conn.execute("SELECT id, data FROM packs ORDER BY id").fetchall() == packs
            if not without_rowid:
                assert [bytes(c) for (c,) in conn.execute("SELECT cid FROM blocks ORDER BY rowid")] == cids
            assert (conn.execute("SELECT count(*) FROM sqlite_schema WHERE name = 'pins'").fetchone() == (0,)) == lazy
        conn.close()
