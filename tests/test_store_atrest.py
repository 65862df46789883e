"""Blocks compressed at rest in the embedded store: encodings, dictionaries, corruption, upgrades, races, stats."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import multiprocessing.synchronize
import random
import sqlite3
from pathlib import Path

import pytest
import zstandard

from importer.cli.main import main
from importer.dag.cid import DAG_PB, RAW, cid_of_block, format_cid
from importer.errors import BlockCorrupt, StoreError
from importer.sinks.atrest import (
    ENCODING_IDENTITY,
    ENCODING_ZSTD,
    ENCODING_ZSTD_DICT,
    LEVEL,
    BlockCodec,
    is_stored_frame,
    with_dict_id,
)
from importer.sinks.store import DB_NAME, ROWID_SCHEMA_VERSION, BlockStore
from importer.sinks.store.schema import DICTIONARY_FRAMES_SCHEMA


@pytest.fixture(autouse=True)
def one_row_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read and forge the rows of the one-row-per-block layout (encodings 0-2 and dictionaries), which
    the store still reads, and writes when it rewrites a committed block; packs, the layout new
    blocks are written in, are covered by tests/test_store_packs.py."""
    monkeypatch.setattr(BlockStore, "default_packs", False)

WORDS = ("import", "return", "self", "def", "class", "value", "name", "path", "None", "raise",
         "for", "in", "if", "else", "data", "result", "options", "wheel", "metadata", "version")


def source_block(i: int, lines: int = 40) -> tuple[bytes, bytes]:
    """A small Python-like text block (deterministic in ``i``) and its CIDv1 raw."""
    rnd = random.Random(i)
    text = "".join(f"    {rnd.choice(WORDS)} = {rnd.choice(WORDS)}_{rnd.randrange(100)}({rnd.choice(WORDS)}, "
                   f"{rnd.choice(WORDS)})  # {rnd.choice(WORDS)} {rnd.choice(WORDS)}\n" for _ in range(lines))
    data = f"def function_{i}(self, path, options):\n{text}".encode()
    return cid_of_block(1, RAW, data), data


def noise_block(i: int, size: int) -> tuple[bytes, bytes]:
    """``size`` incompressible bytes (a sha256 chain seeded by ``i``) and their CID."""
    out = bytearray()
    digest = hashlib.sha256(i.to_bytes(8, "big")).digest()
    while len(out) < size:
        digest = hashlib.sha256(digest).digest()
        out += digest
    data = bytes(out[:size])
    return cid_of_block(1, RAW, data), data


def large_text_block(i: int) -> tuple[bytes, bytes]:
    """A 100 KiB text block: above the small-block limit, so never dictionary-compressed."""
    data = b"".join(source_block(i * 1000 + j)[1] for j in range(60))[:100 * 1024]
    return cid_of_block(1, RAW, data), data


def db(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path / DB_NAME, isolation_level=None)


def encodings(path: Path) -> dict[bytes, int]:
    with db(path) as conn:
        return {bytes(cid): int(enc) for cid, enc in conn.execute("SELECT cid, encoding FROM blocks")}


def store_with_dictionary(path: Path, count: int = 150) -> BlockStore:
    """An open zstd store whose first ``count`` small blocks trained its first dictionary."""
    store = BlockStore(path, compression="zstd", train_after=count)
    store.put_many(source_block(i) for i in range(count))
    store.flush()  # commits, then trains: the counter reached train_after
    assert [d.id for d in store.dictionaries()] == [1]
    return store


# -- encodings ----------------------------------------------------------------------------------

def test_every_encoding_round_trips_after_reopen(tmp_path: Path) -> None:
    store = store_with_dictionary(tmp_path / "s")
    small, large, noise = source_block(10_000), large_text_block(1), noise_block(1, 5000)
    store.put_many([small, large, noise])
    store.close()
    assert encodings(tmp_path / "s")[small[0]] == ENCODING_ZSTD_DICT
    assert encodings(tmp_path / "s")[large[0]] == ENCODING_ZSTD
    assert encodings(tmp_path / "s")[noise[0]] == ENCODING_IDENTITY
    with BlockStore(tmp_path / "s", create=False) as store:
        for cid, data in (small, large, noise, source_block(3)):
            assert store.get(cid) == data
        assert all(problem is None for _, problem in store.verify())


def test_incompressible_block_stays_raw_byte_for_byte(tmp_path: Path) -> None:
    cid, data = noise_block(7, 256 * 1024)
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put(cid, data)
    with db(tmp_path / "s") as conn:
        assert conn.execute("SELECT encoding, data FROM blocks").fetchone() == (ENCODING_IDENTITY, data)


def test_block_that_saves_under_three_percent_stays_raw() -> None:
    codec = BlockCodec(compress=True, load_dictionary=lambda _: None)
    # 97% noise + 3% zeros: zstd saves a little under 3%, which is not worth a decompression per read.
    block = noise_block(1, 970)[1] + bytes(30)
    assert len(zstandard.ZstdCompressor(level=LEVEL).compress(block)) < len(block)
    assert codec.encode(block) == (ENCODING_IDENTITY, block)


def test_plain_frame_is_standard_zstd_with_content_size_and_no_checksum(tmp_path: Path) -> None:
    cid, data = large_text_block(2)
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put(cid, data)
    with db(tmp_path / "s") as conn:
        payload = bytes(conn.execute("SELECT data FROM blocks").fetchone()[0])
    params = zstandard.get_frame_parameters(payload)
    assert (params.content_size, params.dict_id, params.has_checksum) == (len(data), 0, False)
    assert payload == zstandard.ZstdCompressor(level=LEVEL, write_checksum=False).compress(data)
    assert zstandard.ZstdDecompressor().decompress(payload) == data


def test_compression_none_stores_every_block_raw(tmp_path: Path) -> None:
    blocks = [source_block(i) for i in range(5)] + [large_text_block(1)]
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many(blocks)
    assert set(encodings(tmp_path / "s").values()) == {ENCODING_IDENTITY}


def test_compression_setting_persists_and_env_overrides_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with BlockStore(tmp_path / "s") as store:
        assert store.compression == "zstd"  # the default for a new store
        store.set_compression("none")
    with BlockStore(tmp_path / "s") as store:
        assert store.compression == "none"
        store.put(*large_text_block(1))
    monkeypatch.setenv("DPIP_STORE_COMPRESSION", "zstd")
    with BlockStore(tmp_path / "s") as store:
        store.put(*large_text_block(2))
    assert encodings(tmp_path / "s") == {large_text_block(1)[0]: ENCODING_IDENTITY,
                                          large_text_block(2)[0]: ENCODING_ZSTD}
    with db(tmp_path / "s") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'compression'").fetchone() == ("none",)


def test_unknown_compression_setting_raises_store_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DPIP_STORE_COMPRESSION", "lz4")
    with pytest.raises(StoreError, match="unknown compression 'lz4'"):
        BlockStore(tmp_path / "s")


def test_cids_are_those_of_the_uncompressed_blocks(tmp_path: Path) -> None:
    block = b"\x0a\x02\x08\x01" * 100  # compressible dag-pb-ish bytes under a CIDv0
    cid = cid_of_block(0, DAG_PB, block)
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put(cid, block)
    assert encodings(tmp_path / "s") == {cid: ENCODING_ZSTD}
    with BlockStore(tmp_path / "s") as store:
        assert list(store.iter_cids()) == [cid] and store.get(cid) == block


# -- dictionaries --------------------------------------------------------------------------------

def test_dictionary_is_trained_after_enough_small_blocks_and_used_for_later_ones(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", compression="zstd", train_after=150) as store:
        store.put_many(source_block(i) for i in range(149))
        store.flush()
        assert store.dictionaries() == []  # 149 < 150: not yet
        store.put(*source_block(149))
        store.flush()
        (made,) = store.dictionaries()
        assert (made.id, made.samples) == (1, 150)
        assert zstandard.ZstdCompressionDict(made.data).dict_id() == 1
        store.put_many(source_block(i) for i in range(1000, 1010))
    later = {source_block(i)[0] for i in range(1000, 1010)}
    assert {encodings(tmp_path / "s")[cid] for cid in later} == {ENCODING_ZSTD_DICT}
    assert {encodings(tmp_path / "s")[source_block(i)[0]] for i in range(150)} == {ENCODING_ZSTD}
    with db(tmp_path / "s") as conn:
        payload = bytes(conn.execute("SELECT data FROM blocks WHERE cid = ?", (source_block(1000)[0],)).fetchone()[0])
    assert zstandard.get_frame_parameters(payload).dict_id == 1
    # Standard zstd with the exported dictionary decodes the frame.
    d = zstandard.ZstdCompressionDict(made.data)
    assert zstandard.ZstdDecompressor(dict_data=d).decompress(payload) == source_block(1000)[1]


def schema_version(path: Path) -> int:
    with db(path) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def dictionary_row(path: Path, dict_id: int = 1) -> bytes:
    with db(path) as conn:
        return bytes(conn.execute("SELECT data FROM dictionaries WHERE id = ?", (dict_id,)).fetchone()[0])


def test_a_trained_dictionary_is_stored_as_a_frame_of_itself_and_the_store_raised_to_13(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        (made,) = store.dictionaries()
        store.put(*source_block(5000))
    row = dictionary_row(tmp_path / "s")
    assert is_stored_frame(row) and len(row) < len(made.data) // 2
    assert zstandard.ZstdDecompressor().decompress(row) == made.data  # plain zstd gives the dictionary back
    assert schema_version(tmp_path / "s") == DICTIONARY_FRAMES_SCHEMA
    assert stats_dictionary_bytes(tmp_path / "s") == len(row)  # at rest: what the row takes
    with BlockStore(tmp_path / "s") as store:  # a new process reads frames made with it
        assert store.get(source_block(5000)[0]) == source_block(5000)[1]
        assert all(problem is None for _, problem in store.verify())


def stats_dictionary_bytes(path: Path) -> int:
    with BlockStore(path, create=False) as store:
        return store.stats().dictionary_bytes


def test_optimize_stores_a_plain_dictionary_of_an_older_store_as_a_frame(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        (made,) = store.dictionaries()
        store.put(*source_block(5000))
    with db(tmp_path / "s") as conn:  # as code before schema 13 kept it
        conn.execute("UPDATE dictionaries SET data = ?", (made.data,))
        conn.execute("UPDATE meta SET value = '12' WHERE key = 'schema_version'")
    with BlockStore(tmp_path / "s") as store:
        assert store.get(source_block(5000)[0]) == source_block(5000)[1]  # plain rows still read
        saved = store.compress_dictionaries()
        assert saved == len(made.data) - len(dictionary_row(tmp_path / "s")) > len(made.data) // 2
        assert store.compress_dictionaries() == 0  # nothing left to do
    assert schema_version(tmp_path / "s") == DICTIONARY_FRAMES_SCHEMA
    with BlockStore(tmp_path / "s") as store:
        assert [d.data for d in store.dictionaries()] == [made.data]
        assert store.get(source_block(5000)[0]) == source_block(5000)[1]


def test_optimize_leaves_a_damaged_plain_dictionary_row_as_it_is(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s"):
        pass
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE dictionaries SET data = ?", (b"junk" * 100,))
    with BlockStore(tmp_path / "s") as store:
        assert store.compress_dictionaries() == 0
    assert dictionary_row(tmp_path / "s") == b"junk" * 100


@pytest.mark.parametrize("damage", ["not a frame", "truncated", "huge size", "frame of junk"])
def test_a_damaged_dictionary_row_makes_its_frames_corrupt_and_is_named(tmp_path: Path, damage: str) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        store.put(*source_block(5000))
    row = dictionary_row(tmp_path / "s")
    # A frame header declaring 2**40 bytes (single segment, 8-byte content size) and nothing after it.
    huge = b"\x28\xb5\x2f\xfd" + bytes([0xE0]) + (1 << 40).to_bytes(8, "little")
    forged = {"not a frame": b"junk" + row, "truncated": row[:len(row) // 2], "huge size": huge,
              "frame of junk": zstandard.ZstdCompressor().compress(b"no dictionary here" * 10)}[damage]
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE dictionaries SET data = ?", (forged,))
    with BlockStore(tmp_path / "s", create=False) as store:
        with pytest.raises(BlockCorrupt) as e:
            store.get(source_block(5000)[0])
        assert "dictionary row" in str(e.value)
        with pytest.raises(StoreError) as listed:
            store.dictionaries()
        assert str(listed.value).count("\n") == 0 and "dictionary 1 is damaged: a dictionary row" in str(listed.value)


def test_dictionary_makes_small_blocks_smaller_than_plain_zstd(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        store.put_many(source_block(i) for i in range(2000, 2100))
    with db(tmp_path / "s") as conn:
        with_dict = conn.execute("SELECT sum(length(data)) FROM blocks WHERE encoding = 2").fetchone()[0]
    plain = sum(len(zstandard.ZstdCompressor(level=LEVEL, write_checksum=False).compress(source_block(i)[1]))
                for i in range(2000, 2100))
    assert with_dict < plain * 0.9


def test_next_dictionary_waits_four_times_as_long(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s", count=100) as store:
        store.put_many(source_block(i) for i in range(1000, 1399))
        store.flush()
        assert len(store.dictionaries()) == 1  # 399 < 4 * 100
        store.put(*source_block(1399))
        store.flush()
        assert [d.id for d in store.dictionaries()] == [1, 2]
        store.put(*source_block(5000))
    assert encodings(tmp_path / "s")[source_block(5000)[0]] == ENCODING_ZSTD_DICT
    with db(tmp_path / "s") as conn:
        payload = bytes(conn.execute("SELECT data FROM blocks WHERE cid = ?", (source_block(5000)[0],)).fetchone()[0])
    assert zstandard.get_frame_parameters(payload).dict_id == 2


def test_rows_keep_their_dictionary_after_a_newer_one(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        store.put_many(source_block(i) for i in range(1000, 1010))
        store.flush()
        assert store.train() is not None  # dictionary 2, explicitly
        store.put_many(source_block(i) for i in range(2000, 2010))
    with BlockStore(tmp_path / "s") as store:
        for i in [*range(1000, 1010), *range(2000, 2010)]:
            assert store.get(source_block(i)[0]) == source_block(i)[1]


def test_train_with_too_few_small_blocks_returns_none(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.put_many(source_block(i) for i in range(20))
        assert store.train() is None
        assert store.dictionaries() == []


def test_dictionary_id_is_patched_into_the_header() -> None:
    trained = zstandard.train_dictionary(4096, [source_block(i)[1] for i in range(200)]).as_bytes()
    assert zstandard.ZstdCompressionDict(with_dict_id(trained, 77)).dict_id() == 77
    with pytest.raises(ValueError, match="out of range"):
        with_dict_id(trained, 0)


# -- corruption -----------------------------------------------------------------------------------

def flip_byte(path: Path, cid: bytes, offset: int) -> None:
    with db(path) as conn:
        data = bytearray(conn.execute("SELECT data FROM blocks WHERE cid = ?", (cid,)).fetchone()[0])
        data[offset % len(data)] ^= 0x40
        conn.execute("UPDATE blocks SET data = ? WHERE cid = ?", (bytes(data), cid))


@pytest.mark.parametrize("offset", [0, 5, 8, -3, 40])  # magic, header, first block header, body, middle
@pytest.mark.parametrize("encoding", [ENCODING_IDENTITY, ENCODING_ZSTD, ENCODING_ZSTD_DICT])
def test_flipped_byte_in_any_encoding_is_block_corrupt(tmp_path: Path, encoding: int, offset: int) -> None:
    store = store_with_dictionary(tmp_path / "s")
    cid, data = {ENCODING_IDENTITY: noise_block(1, 3000), ENCODING_ZSTD: large_text_block(1),
                 ENCODING_ZSTD_DICT: source_block(5000)}[encoding]
    store.put(cid, data)
    store.close()
    assert encodings(tmp_path / "s")[cid] == encoding
    flip_byte(tmp_path / "s", cid, offset)
    with BlockStore(tmp_path / "s") as store:
        with pytest.raises(BlockCorrupt) as e:
            store.get(cid)
        assert e.value.cid == format_cid(cid)
        assert [c for c, problem in store.verify() if problem is not None] == [cid]


def test_frame_naming_a_missing_dictionary_is_block_corrupt(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        store.put(*source_block(5000))
    with db(tmp_path / "s") as conn:
        conn.execute("DELETE FROM dictionaries")
    with BlockStore(tmp_path / "s") as store, pytest.raises(BlockCorrupt) as e:
        store.get(source_block(5000)[0])
    assert "dictionary 1, which the store does not have" in str(e.value)


def test_frame_claiming_a_huge_size_is_refused_before_decompressing(tmp_path: Path) -> None:
    cid, data = large_text_block(1)
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put(cid, data)
    with db(tmp_path / "s") as conn:
        conn.execute("UPDATE blocks SET size = ?", (1 << 40,))  # the row and the frame disagree
    with BlockStore(tmp_path / "s") as store, pytest.raises(BlockCorrupt, match="declares 102400 bytes"):
        store.get(cid)


def test_corrupt_compressed_block_is_one_line_in_cat_and_verify(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    cid, data = large_text_block(1)
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put(cid, data)
    flip_byte(tmp_path / "s", cid, 0)
    assert main(["store", "verify", "--store", str(tmp_path / "s")]) == 1
    out, err = capsys.readouterr()
    assert out.startswith(f"corrupt {format_cid(cid)}: ") and "Traceback" not in out + err
    assert out.splitlines()[1:] == ["verified 1 blocks: 0 ok, 1 corrupt; 0 of 0 archives and pins complete"]
    assert err == ""


# -- stores from before compression ----------------------------------------------------------------

V1_SCHEMA = ("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
             ("CREATE TABLE blocks (cid BLOB NOT NULL PRIMARY KEY, encoding INTEGER NOT NULL DEFAULT 0,"
              " size INTEGER NOT NULL, data BLOB NOT NULL)"))
V2_SCHEMA = (*V1_SCHEMA, ("CREATE TABLE archives (name TEXT NOT NULL, root BLOB NOT NULL, sha256 BLOB NOT NULL,"
                          " size INTEGER NOT NULL, imported_at REAL NOT NULL, PRIMARY KEY (name, root))"))


@pytest.mark.parametrize(("version", "schema"), [(1, V1_SCHEMA), (2, V2_SCHEMA)])
def test_store_written_before_compression_reads_and_takes_new_blocks(
        tmp_path: Path, version: int, schema: tuple[str, ...]) -> None:
    (tmp_path / "s").mkdir()
    old = [source_block(i) for i in range(10)] + [large_text_block(1)]
    with db(tmp_path / "s") as conn:  # what the version 1/2 code wrote: every row encoding 0
        conn.execute("PRAGMA journal_mode = WAL")
        for statement in schema:
            conn.execute(statement)
        conn.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(version),))
        conn.executemany("INSERT INTO blocks (cid, encoding, size, data) VALUES (?, 0, ?, ?)",
                         [(cid, len(data), data) for cid, data in old])
    with BlockStore(tmp_path / "s", create=False) as store:
        assert store.compression == "zstd"
        for cid, data in old:
            assert store.get(cid) == data
        store.put(*large_text_block(2))
    with db(tmp_path / "s") as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == (str(ROWID_SCHEMA_VERSION),)
    with BlockStore(tmp_path / "s") as store:
        assert store.dictionaries() == []
    assert encodings(tmp_path / "s")[large_text_block(2)[0]] == ENCODING_ZSTD
    assert encodings(tmp_path / "s")[large_text_block(1)[0]] == ENCODING_IDENTITY
    with BlockStore(tmp_path / "s") as store:
        assert all(problem is None for _, problem in store.verify())


# -- two processes ---------------------------------------------------------------------------------

def _writer(path: str, start: int, count: int) -> None:
    # Small batches so the two writers interleave; each crosses the training trigger mid-run.
    with BlockStore(path, batch_bytes=32 * 1024, compression="zstd", train_after=120) as store:
        store.put_many(source_block(i) for i in range(start, start + count))
        store.put(*large_text_block(start))


def _trainer(path: str, start: int, ready: multiprocessing.synchronize.Barrier) -> None:
    with BlockStore(path, compression="zstd") as store:
        store.put_many(source_block(i) for i in range(start, start + 10))
        store.flush()
        ready.wait(timeout=60)
        assert store.train() is not None
        store.put_many(source_block(i) for i in range(start + 10, start + 20))


def test_two_processes_writing_and_training_at_once_stay_sound(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    # Ranges overlap in 100 blocks that both insert; 400 distinct small blocks in all.
    procs = [ctx.Process(target=_writer, args=(path, 0, 250)), ctx.Process(target=_writer, args=(path, 150, 250))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    with BlockStore(path) as store:
        # 400 small blocks: one trigger at 120; the next (120 x 4 more) is never reached, and a
        # writer that trained too late drops its dictionary.
        assert [d.id for d in store.dictionaries()] == [1]
        assert store.stats().blocks == 402
        for i in range(400):
            assert store.get(source_block(i)[0]) == source_block(i)[1]
        assert all(problem is None for _, problem in store.verify())
    assert ENCODING_ZSTD_DICT in encodings(tmp_path / "s").values()


def test_second_automatic_training_of_one_trigger_is_dropped(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s", train_after=10**9) as store:
        store.put_many(source_block(i) for i in range(150))  # 150 small blocks, no training yet
    first, second = BlockStore(tmp_path / "s", train_after=100), BlockStore(tmp_path / "s", train_after=100)
    with first, second:
        # Both see the trigger (150 >= 100) before either adds a dictionary, as two racing
        # importers would; the re-check under the write lock lets only the first one in.
        assert first._due_for_training() and second._due_for_training()
        made = first.train(auto=True)
        assert made is not None and made.id == 1
        assert second.train(auto=True) is None
        assert [d.id for d in second.dictionaries()] == [1]
        second.put(*source_block(5000))
    assert encodings(tmp_path / "s")[source_block(5000)[0]] == ENCODING_ZSTD_DICT


def test_two_processes_training_at_the_same_moment_get_distinct_ids(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with BlockStore(path) as store:
        store.put_many(source_block(i) for i in range(200))
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Barrier(2)
    procs = [ctx.Process(target=_trainer, args=(path, start, ready)) for start in (1000, 2000)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0, 0]
    with BlockStore(path) as store:
        assert [d.id for d in store.dictionaries()] == [1, 2]
        assert all(problem is None for _, problem in store.verify())
    written_late = [source_block(i)[0] for start in (1000, 2000) for i in range(start + 10, start + 20)]
    assert {encodings(tmp_path / "s")[cid] for cid in written_late} == {ENCODING_ZSTD_DICT}


# -- stats --------------------------------------------------------------------------------------------

def test_stats_are_exact_on_a_known_set_of_blocks(tmp_path: Path) -> None:
    text = [large_text_block(i) for i in range(3)]
    noise = [noise_block(i, 1000 + i) for i in range(2)]
    with BlockStore(tmp_path / "s", compression="zstd") as store:
        store.put_many(text + noise)
        store.flush()
        stats = store.stats()
    plain = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
    zstd_bytes = sum(len(plain.compress(data)) for _, data in text)
    assert (stats.blocks, stats.logical_bytes) == (5, 3 * 100 * 1024 + 2001)
    assert stats.stored_bytes == zstd_bytes + 2001
    assert (stats.dictionaries, stats.dictionary_bytes, stats.at_rest_bytes) == (0, 0, zstd_bytes + 2001)
    assert [(e.name, e.blocks, e.logical_bytes, e.stored_bytes) for e in stats.encodings] == [
        ("identity", 2, 2001, 2001), ("zstd", 3, 3 * 100 * 1024, zstd_bytes)]
    assert stats.ratio == (3 * 100 * 1024 + 2001) / (zstd_bytes + 2001)


def test_stats_count_dictionaries_in_the_bytes_at_rest(tmp_path: Path) -> None:
    with store_with_dictionary(tmp_path / "s") as store:
        stats = store.stats()
    row = dictionary_row(tmp_path / "s")  # the dictionary as a frame (schema 13): what it takes at rest
    assert (stats.dictionaries, stats.dictionary_bytes) == (1, len(row))
    assert stats.at_rest_bytes == stats.stored_bytes + len(row)


def test_cli_stats_json_compression_and_train(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = str(tmp_path / "s")
    assert main(["store", "compression", "none", "--store", s]) == 0
    assert capsys.readouterr().out == "none\n"
    with BlockStore(s) as store:
        store.put_many(source_block(i) for i in range(150))
    assert main(["store", "compression", "zstd", "--store", s]) == 0
    assert main(["store", "train", "--store", s]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("dictionary 1: ")
    assert main(["store", "stats", "--json", "--store", s]) == 0
    report = json.loads(capsys.readouterr().out)
    logical = sum(len(source_block(i)[1]) for i in range(150))
    assert report["blocks"] == 150 and report["logical_bytes"] == logical
    assert report["encodings"] == {"identity": {"blocks": 150, "logical_bytes": logical, "stored_bytes": logical}}
    assert report["dictionaries"] == 1 and report["compression"] == "zstd"
    assert report["stored_bytes"] == logical + report["dictionary_bytes"]


def test_cli_train_on_an_empty_store_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    BlockStore(tmp_path / "s").close()
    assert main(["store", "train", "--store", str(tmp_path / "s")]) == 1
    assert capsys.readouterr().err == "dpip-import store train: too few small blocks to train a dictionary from\n"



def test_large_block_with_an_incompressible_head_is_stored_raw_unread() -> None:
    codec = BlockCodec(compress=True, load_dictionary=lambda _: None)
    # The probe compresses only the first 16 KiB: noise there means "raw", whatever follows.
    block = noise_block(1, 16 * 1024)[1] + bytes(240 * 1024)
    assert codec.encode(block) == (ENCODING_IDENTITY, block)
    encoding, payload = codec.encode(bytes(16 * 1024) + noise_block(1, 240 * 1024)[1])
    assert encoding == ENCODING_ZSTD and len(payload) < 241 * 1024


# -- optimize ------------------------------------------------------------------------------------

def test_optimize_compresses_an_old_raw_store_and_it_still_reads(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    small = [source_block(i) for i in range(150)]
    large = [large_text_block(i) for i in range(2)]
    noise = noise_block(3, 4000)
    with BlockStore(tmp_path / "s", compression="none") as store:
        store.put_many([*small, *large, noise])
    before = sum(len(data) for _, data in [*small, *large, noise])
    with BlockStore(tmp_path / "s") as store:
        file_bytes = store.stats().disk_bytes
    assert main(["store", "optimize", "--vacuum", "--store", str(tmp_path / "s")]) == 0
    assert capsys.readouterr().out.startswith("rewrote 152 blocks, ")  # noise stays raw
    codes = encodings(tmp_path / "s")
    assert {codes[cid] for cid, _ in small} == {ENCODING_ZSTD_DICT}  # a dictionary was trained first
    assert {codes[cid] for cid, _ in large} == {ENCODING_ZSTD} and codes[noise[0]] == ENCODING_IDENTITY
    with BlockStore(tmp_path / "s") as store:
        stats = store.stats()
        assert stats.at_rest_bytes < before / 2
        assert stats.disk_bytes < file_bytes / 2  # --vacuum gave the freed pages back
        assert all(problem is None for _, problem in store.verify())
        for cid, data in [*small, *large, noise]:
            assert store.get(cid) == data
        assert store.recompress() == (0, 0)  # nothing left to shrink


def test_optimize_with_compression_off_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.set_compression("none")
    assert main(["store", "optimize", "--store", str(tmp_path / "s")]) == 1
    assert "compression is off" in capsys.readouterr().err
