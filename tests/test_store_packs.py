"""Packs in the block store: blocks round-trip through them, damage is reported block by block,
deletes and compaction reclaim them, deltas are decided before the first write, two writers mix."""

from __future__ import annotations

import base64
import multiprocessing
import random
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest
import zstandard

from importer.dag.cid import RAW, cid_of_block, format_cid
from importer.errors import BlockCorrupt
from importer.sinks.delta import read_header
from importer.sinks.packs import (
    COLD_FRAME_BYTES,
    ENCODING_PACKED,
    ENCODING_PACKED_DELTA,
    FRAME_BYTES,
    GROUP_BELOW,
    Locator,
    PackBuilder,
    parse_locator,
)
from importer.sinks.store import DB_NAME, ROWID_SCHEMA_VERSION, BlockStore

from .bench_archives import source_text
from .old_stores import make_old_store


def cid(data: bytes) -> bytes:
    return cid_of_block(1, RAW, data)


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME, isolation_level=None)


def rows(path: Path) -> dict[bytes, tuple[int, bytes]]:
    with db(path) as conn:
        return {bytes(c): (int(e), bytes(d)) for c, e, d in conn.execute("SELECT cid, encoding, data FROM blocks")}


def small_blocks(count: int, seed: int = 0) -> list[bytes]:
    return [source_text(seed * 10_000 + i, 200 + (i * 37) % 3000) for i in range(count)]


def test_small_and_large_blocks_round_trip_through_packs_after_reopen(tmp_path: Path) -> None:
    blocks = small_blocks(120) + [source_text(9, 100_000), random.Random(1).randbytes(50_000), b""]
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks)
    stored = rows(tmp_path)
    assert {e for e, _ in stored.values()} == {ENCODING_PACKED, 0}  # the empty block is a row of its own
    with BlockStore(tmp_path, create=False) as store:
        assert all(store.get(cid(b)) == b for b in blocks)
        stats = store.stats()
        assert all(problem is None for _, problem in store.verify())
    assert stats.blocks == len(blocks) and stats.logical_bytes == sum(map(len, blocks))
    assert stats.packs == 1 and stats.dead_bytes == 0
    assert stats.stored_bytes == stats.pack_bytes  # the empty row adds no payload
    # the random block is kept raw (its own segment), the text compressed
    raw = parse_locator(stored[cid(blocks[-2])][1], len(blocks[-2]))
    assert (raw.frame_size, raw.length) == (0, len(blocks[-2]))


def test_small_blocks_share_frames_and_take_less_than_a_frame_each(tmp_path: Path) -> None:
    blocks = small_blocks(400)
    for name, packs in (("packed", True), ("rows", False)):
        with BlockStore(tmp_path / name, packs=packs, train_after=10**9) as store:
            store.put_many((cid(b), b) for b in blocks)
    with BlockStore(tmp_path / "packed") as packed, BlockStore(tmp_path / "rows") as alone:
        assert packed.stats().at_rest_bytes < 0.8 * alone.stats().at_rest_bytes
    locators = {parse_locator(data, 1).offset for _, data in rows(tmp_path / "packed").values()}
    assert len(locators) == -(-sum(map(len, blocks)) // FRAME_BYTES)  # one frame per 128 KiB, the last one shorter


def test_a_flipped_byte_in_a_frame_names_exactly_the_blocks_it_held(tmp_path: Path) -> None:
    blocks = small_blocks(200)
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks)
    stored = rows(tmp_path)
    first = parse_locator(stored[cid(blocks[0])][1], len(blocks[0]))
    in_frame = {c for c, (_, data) in stored.items() if parse_locator(data, 1).offset == first.offset}
    assert 1 < len(in_frame) < len(blocks)
    with db(tmp_path) as conn:
        data = bytearray(conn.execute("SELECT data FROM packs WHERE id = ?", (first.pack,)).fetchone()[0])
        data[first.offset + first.length // 2] ^= 0x40
        conn.execute("UPDATE packs SET data = ? WHERE id = ?", (bytes(data), first.pack))
    with BlockStore(tmp_path) as store:
        bad = {c for c, problem in store.verify() if problem is not None}
        with pytest.raises(BlockCorrupt) as e:
            store.get(cid(blocks[0]))
    assert bad == in_frame
    assert e.value.cid == format_cid(cid(blocks[0]))
    assert e.value.actual.startswith("nothing: its packed payload is damaged: zstd frame does not decode")


def test_a_missing_pack_names_every_block_it_held(tmp_path: Path) -> None:
    blocks = small_blocks(50)
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks)
    with db(tmp_path) as conn:
        conn.execute("DELETE FROM packs")
    with BlockStore(tmp_path) as store:
        problems = dict(store.verify())
    assert set(problems) == {cid(b) for b in blocks}
    assert all(str(p).endswith("its packed payload is damaged: its pack 1 is not in the store")
               for p in problems.values())


@pytest.mark.parametrize("data", [b"", b"\x80", b"\x01\x00\x05\x00\x00", b"\x01\x00\x05\x00\x00\x00",
                                  Locator(1, 0, 10, 17 * 1024 * 1024, 0).encode()])
def test_a_forged_locator_is_a_corrupt_block_not_a_crash(tmp_path: Path, data: bytes) -> None:
    block = source_text(1, 1000)
    with BlockStore(tmp_path) as store:
        store.put(cid(block), block)
    with db(tmp_path) as conn:
        conn.execute("UPDATE blocks SET data = ?", (data,))
    with BlockStore(tmp_path) as store, pytest.raises(BlockCorrupt, match="pack locator|its pack"):
        store.get(cid(block))


def test_deletes_lower_a_packs_live_bytes_and_compaction_rewrites_it(tmp_path: Path) -> None:
    blocks = small_blocks(300)
    keep = blocks[::5]
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks)
        store.flush()
        for b in blocks:
            if b not in keep:
                assert store.delete(cid(b))
        before = store.stats()
        assert before.dead_bytes > 0.6 * before.pack_bytes
        assert store.compact_packs() == (1, before.pack_bytes - store.stats().pack_bytes)
        after = store.stats()
    assert after.dead_bytes == 0 and after.pack_bytes < 0.35 * before.pack_bytes
    with BlockStore(tmp_path) as store:
        assert all(store.get(cid(b)) == b for b in keep)
        assert all(problem is None for _, problem in store.verify())
        for b in keep:
            store.delete(cid(b))
        assert store.stats().packs == 0  # a pack left holding nothing is deleted with its last block


def test_a_changed_block_still_buffered_is_written_once_as_a_packed_delta(tmp_path: Path) -> None:
    old = base64.b64encode(random.Random(7).randbytes(90_000))  # 120 KB that zstd shrinks by a quarter only
    new = old[:60_000] + b"# one more line\n" + old[60_000:]
    with BlockStore(tmp_path) as store:
        store.put(cid(old), old)
        store.flush()
        free_before = store._conn.execute("PRAGMA freelist_count").fetchone()[0]
        store.put(cid(new), new)
        rewritten, saved = store.delta_encode([(cid(new), [cid(old)])])
        packed_delta = next(e for e in store.stats().encodings if e.name == "packed delta")
        assert rewritten == 1 and packed_delta.blocks == 1 and packed_delta.stored_bytes < 200
        assert saved > 50 * packed_delta.stored_bytes  # against the new block's own zstd frame
        assert store._conn.execute("PRAGMA freelist_count").fetchone()[0] == free_before
        assert [(c, depth, refs) for c, depth, refs in store.iter_deltas()] == [(cid(new), 1, (cid(old),))]
    assert rows(tmp_path)[cid(new)][0] == ENCODING_PACKED_DELTA
    with BlockStore(tmp_path) as store:
        assert store.get(cid(new)) == new
        store.delete(cid(old))  # the delta is rewritten without its reference first
        assert store.get(cid(new)) == new
        assert list(store.iter_deltas()) == []
        assert all(problem is None for _, problem in store.verify())


def buffered_chain() -> list[bytes]:
    """Three versions of a 120 KB block that zstd shrinks by a quarter only, each one edit after the last."""
    a = base64.b64encode(random.Random(11).randbytes(90_000))
    b = a[:30_000] + b"# b\n" + a[30_000:]
    return [a, b, b[:60_000] + b"# c\n" + b[60_000:]]


def test_buffered_blocks_become_deltas_of_buffered_blocks_written_before_them(tmp_path: Path) -> None:
    a, b, c = buffered_chain()
    with BlockStore(tmp_path) as store:
        for block in (c, b, a):  # put in the reverse order: each delta's reference comes later in the pack
            store.put(cid(block), block)
        # b against a (buffered, plain), c against b (buffered, staged as a delta itself): one write.
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(c), [cid(b)])])[0] == 2
        assert sorted(store.iter_deltas()) == sorted([(cid(b), 1, (cid(a),)), (cid(c), 2, (cid(b),))])
        assert store.stats().packs == 1
    with BlockStore(tmp_path) as store:  # cold: nothing in the reference cache
        assert [store.get(cid(x)) for x in (a, b, c)] == [a, b, c]
        assert all(problem is None for _, problem in store.verify())


def test_a_buffered_block_that_a_staged_delta_references_is_not_made_a_delta_after_it(tmp_path: Path) -> None:
    a, b, c = buffered_chain()
    with BlockStore(tmp_path) as store:
        for block in (a, b, c):
            store.put(cid(block), block)
        # b is staged against a; a, now a reference, is not staged against c (it would be deeper
        # than b's header says).
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(a), [cid(c)])])[0] == 1
        assert list(store.iter_deltas()) == [(cid(b), 1, (cid(a),))]
        assert store.get(cid(b)) == b and all(problem is None for _, problem in store.verify())


def test_only_buffered_candidates_are_staged_and_never_rewritten_once_committed(tmp_path: Path) -> None:
    a, b, c = buffered_chain()
    with BlockStore(tmp_path) as store:
        for block in (a, b):
            store.put(cid(block), block)
        store.flush()  # a and b committed, plainly
        store.put(cid(c), c)
        only = {cid(b), cid(c)}
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(c), [cid(a)])], only_buffered=only)[0] == 1
        assert list(store.iter_deltas()) == [(cid(c), 1, (cid(a),))]  # b, committed, is left alone
        assert store.stats().dead_bytes == 0


def test_a_staged_delta_whose_buffered_reference_is_deleted_before_the_write_is_written_plain(tmp_path: Path) -> None:
    a, b, _ = buffered_chain()
    with BlockStore(tmp_path) as store:
        store.put(cid(a), a)
        store.put(cid(b), b)
        assert store._stage(cid(b), [cid(a)])  # decided as a delta of a, not yet written
        assert store.delete(cid(a))
        store.flush()
        assert list(store.iter_deltas()) == [] and store.get(cid(b)) == b
        assert not store.has(cid(a)) and all(problem is None for _, problem in store.verify())


def test_a_committed_packed_block_rewritten_as_a_delta_leaves_its_pack_compacted(tmp_path: Path) -> None:
    old = source_text(8, 120_000)
    new = old[:1000] + b"x" + old[1000:]
    with BlockStore(tmp_path) as store:
        store.put(cid(old), old)
        store.flush()
        store.put(cid(new), new)
        store.flush()  # committed plainly, in a pack of its own
        plain_pack = parse_locator(rows(tmp_path)[cid(new)][1], len(new)).pack
        assert store.delta_encode([(cid(new), [cid(old)])])[0] == 1
        stats = store.stats()
        # The new block's pack held nothing else: deleted; its delta went into a pack of its own.
        assert stats.dead_bytes == 0 and stats.packs == 2
        assert store._conn.execute("SELECT count(*) FROM packs WHERE id = ?", (plain_pack,)).fetchone() == (0,)
        assert store.get(cid(new)) == new
    assert rows(tmp_path)[cid(new)][0] == ENCODING_PACKED_DELTA


def test_a_chain_rewritten_in_one_call_is_written_into_one_pack_at_the_right_depths(tmp_path: Path) -> None:
    a = source_text(21, 120_000)
    b = a[:5000] + b"b" + a[5000:]
    c = b[:9000] + b"c" + b[9000:]
    with BlockStore(tmp_path) as store:
        for block in (a, b, c):
            store.put(cid(block), block)
            store.flush()  # committed plainly, one pack each
        # b becomes a delta in the same transaction as c, written at its end: c's depth is 2.
        assert store.delta_encode([(cid(b), [cid(a)]), (cid(c), [cid(b)])])[0] == 2
        assert sorted(store.iter_deltas()) == sorted([(cid(b), 1, (cid(a),)), (cid(c), 2, (cid(b),))])
    stored = rows(tmp_path)
    assert {stored[cid(x)][0] for x in (b, c)} == {ENCODING_PACKED_DELTA}
    assert len({parse_locator(stored[cid(x)][1], len(x)).pack for x in (b, c)}) == 1
    with BlockStore(tmp_path) as store:  # cold: nothing in the reference cache
        assert store.get(cid(c)) == c and store.get(cid(b)) == b
        assert all(problem is None for _, problem in store.verify())


def _writer(path: str, start: int, count: int) -> None:
    with BlockStore(path, batch_bytes=64 * 1024) as store:
        for i in range(start, start + count):
            block = source_text(i, 500 + i % 4000)
            store.put(cid(block), block)


def run_to_the_end(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    """Start ``procs`` together and require each to exit 0 within 120 s; kill what is left on failure."""
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()


def test_two_processes_writing_packs_at_once_stay_sound(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    BlockStore(path).close()
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(path, 0, 400)), ctx.Process(target=_writer, args=(path, 200, 400))]
    run_to_the_end(procs)
    expected = {cid(b): b for b in (source_text(i, 500 + i % 4000) for i in range(600))}
    with BlockStore(path) as store:
        assert {c: store.get(c) for c in expected} == expected
        stats = store.stats()
        live = store._conn.execute("SELECT sum(live) FROM pack_usage").fetchone()[0]
    assert stats.blocks == 600 and live == stats.logical_bytes


def test_a_schema_4_store_reads_its_rows_and_writes_new_blocks_into_packs(tmp_path: Path) -> None:
    old = small_blocks(20, 1)
    make_old_store(tmp_path, 4, drop=("packs", "pack_usage", "pins"))
    with BlockStore(tmp_path, packs=False) as store:  # rows, as schema 4 code wrote them
        store.put_many((cid(b), b) for b in old)
    new = small_blocks(20, 2)
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in new)
    stored = rows(tmp_path)
    assert {stored[cid(b)][0] for b in old} == {1} and {stored[cid(b)][0] for b in new} == {ENCODING_PACKED}
    with BlockStore(tmp_path) as store:
        assert all(store.get(cid(b)) == b for b in old + new)
    with db(tmp_path) as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(ROWID_SCHEMA_VERSION),)


def test_pack_builder_places_each_block_where_its_locator_says() -> None:
    builder = PackBuilder(zstandard.ZstdCompressor(level=3))
    smalls = small_blocks(60)
    for b in smalls:
        builder.add_grouped(cid(b), b)
    big = source_text(3, 40_000)
    builder.add_frame(cid(big), len(big), big, False)
    data, placed = builder.take()
    assert builder.empty
    by_cid = {p.cid: p for p in placed}
    for b in smalls + [big]:
        p = by_cid[cid(b)]
        segment = data[p.offset:p.offset + p.length]
        got = zstandard.ZstdDecompressor().decompress(segment)[p.inner:p.inner + p.size] if p.frame_size else segment
        assert got == b


def test_recompressing_packs_at_a_higher_level_keeps_every_block_and_is_done_once(tmp_path: Path) -> None:
    blocks = small_blocks(150) + [source_text(i, 200_000) for i in range(3)]
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks)
        store.flush()
        before = store.stats()
        rewritten, freed = store.compact_packs(level=19)
        after = store.stats()
        assert rewritten == before.packs and freed == before.pack_bytes - after.pack_bytes > 0
        assert store.compact_packs(level=19) == (0, 0)  # every pack is at 19 already
        assert {level for (level,) in store._conn.execute("SELECT level FROM pack_usage")} == {19}
    with BlockStore(tmp_path) as store:
        assert all(store.get(cid(b)) == b for b in blocks)
        assert store.stats().dead_bytes == 0


def test_optimizing_at_a_level_makes_cold_packs_that_read_back_verify_and_survive_a_delete(tmp_path: Path) -> None:
    small = small_blocks(150, 5)
    leaf = source_text(11, GROUP_BELOW)  # a full leaf: a frame of its own when written
    old = base64.b64encode(random.Random(7).randbytes(90_000))
    new = old[:60_000] + b"# one more line\n" + old[60_000:]
    loose = source_text(12, 30_000)
    with BlockStore(tmp_path, packs=False) as store:
        store.put(cid(loose), loose)  # a row of its own, as rewrites and older stores leave them
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in [*small, leaf, old])
        store.flush()
        store.put(cid(new), new)
        assert store.delta_encode([(cid(new), [cid(old)])])[0] == 1
        store.flush()
        delta_before = store._segment(parse_locator(rows(tmp_path)[cid(new)][1], len(new)))
        assert parse_locator(rows(tmp_path)[cid(leaf)][1], len(leaf)).frame_size in (0, len(leaf))
        before = store.stats()
        rewritten, freed = store.compact_packs(level=19)
        assert rewritten == before.packs and freed > 0
        assert store.compact_packs(level=19) == (0, 0)  # done once
    stored = rows(tmp_path)
    assert stored[cid(loose)][0] == ENCODING_PACKED  # moved into a pack
    leaf_at = parse_locator(stored[cid(leaf)][1], len(leaf))
    assert leaf_at.frame_size > len(leaf)  # the leaf shares a cold frame with its neighbours
    frames = {parse_locator(d, 1).frame_size for e, d in stored.values() if e == ENCODING_PACKED}
    total = sum(map(len, [*small, leaf, old, loose]))
    assert total < COLD_FRAME_BYTES and frames == {total}  # all in one cold frame
    assert stored[cid(new)][0] == ENCODING_PACKED_DELTA
    with BlockStore(tmp_path) as store:
        delta_after = store._segment(parse_locator(stored[cid(new)][1], len(new)))
        assert read_header(delta_after) == read_header(delta_before)  # same references, same depth
        assert all(store.get(cid(b)) == b for b in [*small, leaf, old, new, loose])
        assert all(problem is None for _, problem in store.verify())
        store.delete(cid(old))  # its delta is rewritten without it first
        assert store.get(cid(new)) == new
        assert all(problem is None for _, problem in store.verify())
    # A damaged cold frame names every block it held, and no other.
    leaf_at = parse_locator(rows(tmp_path)[cid(leaf)][1], len(leaf))
    with db(tmp_path) as conn:
        pack_bytes = bytearray(conn.execute("SELECT data FROM packs WHERE id = ?", (leaf_at.pack,)).fetchone()[0])
        pack_bytes[leaf_at.offset:leaf_at.offset + 4] = bytes(4)  # the frame's magic number
        conn.execute("UPDATE packs SET data = ? WHERE id = ?", (bytes(pack_bytes), leaf_at.pack))
    in_frame = {c for c, (e, d) in rows(tmp_path).items() if e == ENCODING_PACKED
                and parse_locator(d, 1) == Locator(leaf_at.pack, leaf_at.offset, leaf_at.length,
                                                   leaf_at.frame_size, parse_locator(d, 1).inner)}
    with BlockStore(tmp_path) as store:
        problems = {c for c, problem in store.verify() if problem is not None}
    assert cid(leaf) in in_frame and problems == in_frame and len(in_frame) > 100


def test_a_new_store_compresses_its_first_small_blocks_with_the_shipped_dictionary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importer.sinks.store.dictionaries as store_module
    from importer.sinks.atrest import SHIPPED_ID, shipped_dictionary

    shipped = shipped_dictionary()
    assert shipped is not None and len(shipped) == 64 * 1024
    assert zstandard.ZstdCompressionDict(shipped).dict_id() == SHIPPED_ID
    metadata = [(f"Metadata-Version: 2.4\nName: pkg{i}\nVersion: 1.{i}\nSummary: A package\n"
                 f"Requires-Python: >=3.9\nLicense-Expression: MIT\n").encode() * 3 for i in range(40)]
    with BlockStore(tmp_path / "shipped") as store:
        store.put_many((cid(b), b) for b in metadata)
        store.flush()
        assert store.dictionaries() == []  # the store trained none of its own
        with_shipped = store.stats().pack_bytes
        frame = store._segment(parse_locator(rows(tmp_path / "shipped")[cid(metadata[0])][1], len(metadata[0])))
        assert zstandard.get_frame_parameters(frame).dict_id == SHIPPED_ID
    monkeypatch.setattr(store_module, "shipped_dictionary", lambda: None)
    with BlockStore(tmp_path / "none") as store:
        store.put_many((cid(b), b) for b in metadata)
        store.flush()
        assert store.stats().pack_bytes > with_shipped
    monkeypatch.undo()
    with BlockStore(tmp_path / "shipped") as store:
        assert all(store.get(cid(b)) == b for b in metadata)


def test_rows_swept_in_bulk_leave_packs_that_reconcile_recounts_and_compaction_reclaims(tmp_path: Path) -> None:
    blocks = small_blocks(200, 3)
    with BlockStore(tmp_path) as store:
        store.put_many((cid(b), b) for b in blocks[:100])
        store.flush()
        store.put_many((cid(b), b) for b in blocks[100:])
        store.flush()
        assert store.stats().packs == 2
    with db(tmp_path) as conn:  # a sweep that deletes rows without telling the packs
        conn.executemany("DELETE FROM blocks WHERE cid = ?", [(cid(b),) for b in blocks[:100] + blocks[100:190]])
    with BlockStore(tmp_path) as store:
        assert store.reconcile_packs() == 1  # the first pack holds nothing any more
        (live,) = store._conn.execute("SELECT live FROM pack_usage").fetchone()
        assert live == sum(map(len, blocks[190:]))
        assert store.compact_packs()[0] == 1
        assert all(store.get(cid(b)) == b for b in blocks[190:])
        assert store.stats().dead_bytes == 0


def _chain(seed: int) -> list[bytes]:
    """Five releases of one 100 KB module, each with one more line in the middle."""
    releases = [base64.b64encode(random.Random(seed).randbytes(75_000))]
    for step in range(1, 5):
        previous = releases[-1]
        releases.append(previous[:50_000] + f"# release {step}\n".encode() + previous[50_000:])
    return releases


def _delta_writer(path: str, seeds: list[int]) -> None:
    chains = [_chain(seed) for seed in seeds]
    with BlockStore(path) as store:
        for step in range(5):
            for chain in chains:
                block = chain[step]
                store.put(cid(block), block)
                if step:
                    store.delta_encode([(cid(block), [cid(chain[step - 1])])])
                store.flush()


def test_two_processes_staging_deltas_into_packs_at_once_stay_sound(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    BlockStore(path).close()
    ctx = multiprocessing.get_context("fork")
    # Overlapping chains: both writers write chain 2's releases and deltas.
    procs = [ctx.Process(target=_delta_writer, args=(path, [1, 2])),
             ctx.Process(target=_delta_writer, args=(path, [2, 3]))]
    run_to_the_end(procs)
    blocks = [block for seed in (1, 2, 3) for block in _chain(seed)]
    with BlockStore(path) as store:
        assert all(store.get(cid(b)) == b for b in blocks)
        assert all(problem is None for _, problem in store.verify())
        deltas = {c: (depth, refs) for c, depth, refs in store.iter_deltas()}
        stats = store.stats()
        live = store._conn.execute("SELECT sum(live) FROM pack_usage").fetchone()[0]
    assert len(deltas) >= 12  # releases 2-5 of the three modules
    for depth, refs in deltas.values():  # every reference is shallower than its referrer
        assert all(deltas.get(ref, (0, ()))[0] < depth for ref in refs)
    packed = sum(e.logical_bytes for e in stats.encodings if e.name in ("packed", "packed delta"))
    assert live == packed


def test_packs_survive_gc_of_a_deleted_archive_and_are_compacted(tmp_path: Path) -> None:
    from importer.archive.delta import delta_against_previous
    from importer.archive.importer import import_archive
    from importer.archive.rebuild import iter_archive
    from importer.profiles import resolve_settings
    from importer.sinks.gc import collect_garbage
    from importer.sinks.store import ArchiveRecord

    from .bench_archives import make_wheel

    wheels = []
    for version in range(3):
        # Every module changes a little in every release: each later wheel's modules are deltas
        # against the wheel before, so removing the first rewrites the second's out of its packs.
        files = {f"pkg/mod{i}.py": base64.b64encode(random.Random(i).randbytes(3000)) + f"# {version}\n".encode()
                 for i in range(60)}
        path = tmp_path / f"pkg-1.{version}-py3-none-any.whl"
        path.write_bytes(make_wheel("pkg", f"1.{version}", files))
        wheels.append(path)
    with BlockStore(tmp_path / "s") as store:
        records = []
        for path in wheels:
            report = import_archive(str(path), resolve_settings(), store)
            delta_against_previous(store, report.file, report.root)
            records.append(ArchiveRecord(report.file, report.root, bytes.fromhex(report.sha256), report.size, 0.0))
            store.record_archive(records[-1])
        assert store.delete_archives([records[0]]) == 1
    with BlockStore(tmp_path / "s") as store:  # a collector of its own, as `store gc` is
        collect_garbage(store)
        collect_garbage(store)  # nothing left to collect
        usage = store._conn.execute("SELECT logical, live FROM pack_usage").fetchall()
        deltas = {c for c, _, _ in store.iter_deltas()}
    assert usage and all(2 * live >= logical for logical, live in usage)  # no pack left more than half dead
    assert deltas  # the third wheel's modules are still deltas (against the second's)
    with BlockStore(tmp_path / "s") as store:
        assert all(problem is None for _, problem in store.verify())
        for path, record in zip(wheels[1:], records[1:], strict=True):  # the kept releases rebuild exactly
            assert b"".join(iter_archive(store, record.root)[1]) == path.read_bytes()
