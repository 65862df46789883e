"""bench.diskusage: a store's file split into payload, free pages, unused page space and structure."""

from __future__ import annotations

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
