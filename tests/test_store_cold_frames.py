"""Cold frames of a chosen size (``store optimize --level N --frame-size SIZE``): blocks and archives
round-trip through them, survive delete + gc and ``store verify``; frames older readers would
refuse raise the store to schema 9 first; a locator over the reader's bound is refused."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import zstandard

from importer.cli.main import main
from importer.dag.cid import RAW, cid_of_block, format_cid
from importer.errors import BlockCorrupt, StoreError
from importer.sinks.atrest import SHIPPED_ID
from importer.sinks.packs import (
    ENCODING_PACKED,
    LEGACY_MAX_FRAME,
    MAX_FRAME,
    Locator,
    MiB,
    cold_frame_bytes,
    parse_locator,
)
from importer.sinks.store import DB_NAME, SCHEMA_VERSION, BlockStore
from importer.sinks.store.schema import DELTA_REF_KEYS_SCHEMA, LARGE_FRAMES_SCHEMA, NEWEST_SCHEMA

from .bench_archives import make_wheel, source_text


def schema_version(store: Path) -> int:
    with sqlite3.connect(store / DB_NAME) as conn:
        return int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0])


def frame_sizes(store: Path) -> set[int]:
    with sqlite3.connect(store / DB_NAME) as conn:
        return {parse_locator(bytes(data), 1).frame_size for (data,) in conn.execute(
            "SELECT data FROM blocks WHERE encoding = ?", (ENCODING_PACKED,))}


def wheels(tmp_path: Path) -> list[Path]:
    """Three releases of 1.8 MB of modules each, all different (no deltas): 5.4 MB of frames."""
    paths = []
    for version in range(3):
        files = {f"pkg/mod{i}.py": source_text(version * 100 + i, 60_000) for i in range(30)}
        path = tmp_path / f"pkg-1.{version}-py3-none-any.whl"
        path.write_bytes(make_wheel("pkg", f"1.{version}", files))
        paths.append(path)
    return paths


def test_frames_of_8_mib_round_trip_survive_delete_and_gc_verify_and_raise_the_schema(tmp_path: Path) -> None:
    from importer.archive.importer import import_archive
    from importer.archive.rebuild import iter_archive
    from importer.profiles import resolve_settings
    from importer.sinks.gc import collect_garbage
    from importer.sinks.store import ArchiveRecord

    paths = wheels(tmp_path)
    with BlockStore(tmp_path / "s") as store:
        records = []
        for path in paths:
            report = import_archive(str(path), resolve_settings(), store)
            records.append(ArchiveRecord(report.file, report.root, bytes.fromhex(report.sha256), report.size, 0.0))
            store.record_archive(records[-1])
    assert schema_version(tmp_path / "s") == SCHEMA_VERSION
    assert main(["store", "optimize", "--level", "9", "--frame-size", "8MiB", "--store", str(tmp_path / "s")]) == 0
    largest = max(frame_sizes(tmp_path / "s"))
    assert LEGACY_MAX_FRAME < largest < 8 * MiB  # every block in one frame, larger than older code reads
    # 11, not 9: optimize also stored the second wheel's changed blocks as deltas, whose
    # references are keyed (the raise to 9 alone: the next test).
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA
    with BlockStore(tmp_path / "s") as store:
        for path, record in zip(paths, records, strict=True):
            assert b"".join(iter_archive(store, record.root)[1]) == path.read_bytes()
        assert store.delete_archives([records[0]]) == 1
    with BlockStore(tmp_path / "s") as store:
        collect_garbage(store)
        assert all(problem is None for _, problem in store.verify())
        for path, record in zip(paths[1:], records[1:], strict=True):
            assert b"".join(iter_archive(store, record.root)[1]) == path.read_bytes()
    assert schema_version(tmp_path / "s") == DELTA_REF_KEYS_SCHEMA


def test_frames_over_4_mib_raise_a_store_without_deltas_to_schema_9(tmp_path: Path) -> None:
    blocks = [source_text(i, 40_000) for i in range(120)]  # 4.8 MB: one frame, over 4 MiB
    with BlockStore(tmp_path / "s") as store:
        store.put_many((cid_of_block(1, RAW, b), b) for b in blocks)
    assert schema_version(tmp_path / "s") == SCHEMA_VERSION
    assert main(["store", "optimize", "--level", "9", "--frame-size", "8MiB", "--store", str(tmp_path / "s")]) == 0
    assert frame_sizes(tmp_path / "s") == {120 * 40_000}
    assert schema_version(tmp_path / "s") == LARGE_FRAMES_SCHEMA
    with BlockStore(tmp_path / "s") as store:
        assert all(store.get(cid_of_block(1, RAW, b)) == b for b in blocks)
    assert schema_version(tmp_path / "s") == LARGE_FRAMES_SCHEMA  # the store may still hold such frames


def test_frames_of_2_mib_keep_the_schema_older_code_reads(tmp_path: Path) -> None:
    blocks = [source_text(i, 40_000) for i in range(120)]  # 4.8 MB: 53 blocks make 2 MiB and more
    with BlockStore(tmp_path / "s") as store:
        store.put_many((cid_of_block(1, RAW, b), b) for b in blocks)
    assert main(["store", "optimize", "--level", "9", "--frame-size", "2MiB", "--store", str(tmp_path / "s")]) == 0
    sizes = frame_sizes(tmp_path / "s")
    assert sizes == {53 * 40_000, 14 * 40_000}  # two frames of 2.12 MB, the rest in a third
    assert schema_version(tmp_path / "s") == SCHEMA_VERSION
    with BlockStore(tmp_path / "s") as store:
        assert all(store.get(cid_of_block(1, RAW, b)) == b for b in blocks)
        assert all(problem is None for _, problem in store.verify())


def test_a_locator_declaring_a_frame_over_the_bound_is_refused(tmp_path: Path) -> None:
    block = source_text(1, 1000)
    key = cid_of_block(1, RAW, block)
    with BlockStore(tmp_path) as store:
        store.put(key, block)
    pack = parse_locator(next(iter(frame_locators(tmp_path))), len(block)).pack
    with sqlite3.connect(tmp_path / DB_NAME) as conn:
        conn.execute("UPDATE blocks SET data = ?", (Locator(pack, 0, 10, MAX_FRAME + 1, 0).encode(),))
    with BlockStore(tmp_path) as store, pytest.raises(BlockCorrupt) as e:
        store.get(key)
    assert e.value.cid == format_cid(key)
    assert str(e.value) == (f"block {format_cid(key)} in {tmp_path} is corrupt: its bytes hash to nothing: its "
                            f"packed payload is damaged: pack locator declares a 16777217-byte frame, over the "
                            f"16777216-byte bound")


def frame_locators(store: Path) -> list[bytes]:
    with sqlite3.connect(store / DB_NAME) as conn:
        return [bytes(data) for (data,) in conn.execute("SELECT data FROM blocks WHERE encoding = ?",
                                                        (ENCODING_PACKED,))]


def test_a_store_of_schema_9_opens_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    BlockStore(tmp_path / "s").close()
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(LARGE_FRAMES_SCHEMA),))
    BlockStore(tmp_path / "s").close()
    assert schema_version(tmp_path / "s") == LARGE_FRAMES_SCHEMA  # not lowered at open
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(NEWEST_SCHEMA + 1),))
    with pytest.raises(StoreError) as e:
        BlockStore(tmp_path / "s")
    assert e.value.reason == (f"schema version {NEWEST_SCHEMA + 1} is newer than this program's {NEWEST_SCHEMA}: "
                              "upgrade dpip-importer")


@pytest.mark.parametrize(("text", "size"), [("1MiB", MiB), ("512KiB", 512 * 1024), ("8mib", 8 * MiB),
                                            ("131072", 131072)])
def test_frame_size_accepts_bytes_kib_and_mib(text: str, size: int) -> None:
    assert cold_frame_bytes(text) == size


@pytest.mark.parametrize(("text", "message"), [
    ("16MiB", "frame size 16MiB is outside 128 KiB - 8 MiB"),
    ("64KiB", "frame size 64KiB is outside 128 KiB - 8 MiB"),
    ("1.5MiB", "frame size '1.5MiB' is not a whole number of bytes, KiB or MiB"),
])
def test_optimize_refuses_a_frame_size_out_of_bounds(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     text: str, message: str) -> None:
    BlockStore(tmp_path / "s").close()
    with pytest.raises(SystemExit) as e:
        main(["store", "optimize", "--level", "19", "--frame-size", text, "--store", str(tmp_path / "s")])
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"dpip-import store optimize: argument --frame-size: {message} "
                                       "(see `dpip-import store optimize --help`)\n")


def test_optimize_refuses_a_frame_size_without_a_level(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    BlockStore(tmp_path / "s").close()
    assert main(["store", "optimize", "--frame-size", "4MiB", "--store", str(tmp_path / "s")]) == 2
    assert capsys.readouterr().err == ("dpip-import store optimize: --frame-size applies to the cold packs of "
                                       "--level N: give a level\n")


@pytest.mark.parametrize("size", [LEGACY_MAX_FRAME + 1, MAX_FRAME + 1])
def test_a_block_larger_than_older_readers_frames_is_packed_raw_and_reads_back(tmp_path: Path, size: int) -> None:
    block = (bytes(range(256)) * (size // 256 + 1))[:size]  # import-car takes blocks up to 32 MiB
    key = cid_of_block(1, RAW, block)
    with BlockStore(tmp_path) as store:
        store.put(key, block)
    assert [parse_locator(data, len(block)).frame_size for data in frame_locators(tmp_path)] == [0]  # raw
    for level in (0, 19):  # and so do the packs store optimize rewrites, cold or not
        with BlockStore(tmp_path) as store:
            store.compact_packs(below=1.01, level=level)
            assert store.get(key) == block


def test_cold_frames_keep_the_blocks_in_the_order_they_were_written(tmp_path: Path) -> None:
    blocks = [source_text(i, 3000) for i in range(200)]  # written in this order, which is not CID order
    with BlockStore(tmp_path / "s") as store:
        for block in blocks:
            store.put(cid_of_block(1, RAW, block), block)
        store.flush()
        assert store.compact_packs(level=9, frame_bytes=cold_frame_bytes("128KiB"))[0] > 0
    with sqlite3.connect(tmp_path / "s" / DB_NAME) as conn:
        where = {bytes(c): parse_locator(bytes(d), int(n)) for c, d, n in conn.execute(
            "SELECT cid, data, size FROM blocks WHERE encoding = ?", (ENCODING_PACKED,))}
    order = sorted(where, key=lambda c: (where[c].pack, where[c].offset, where[c].inner))
    assert order == [cid_of_block(1, RAW, b) for b in blocks]
    assert len({(w.pack, w.offset) for w in where.values()}) == 5  # 600 KB in frames of 128 KiB


def frame_dictionaries(store: Path) -> set[int]:
    """The dictionary id each grouped frame's header names (0: none)."""
    with sqlite3.connect(store / DB_NAME) as conn:
        packs = {int(i): bytes(d) for i, d in conn.execute("SELECT id, data FROM packs")}
        ids = set()
        for data, size in conn.execute("SELECT data, size FROM blocks WHERE encoding = ?", (ENCODING_PACKED,)):
            where = parse_locator(bytes(data), int(size))
            if where.frame_size:
                frame = packs[where.pack][where.offset:where.offset + where.length]
                ids.add(zstandard.get_frame_parameters(frame).dict_id)
        return ids


@pytest.mark.parametrize(("frame_size", "with_dictionary"), [("512KiB", True), ("1MiB", False), ("2MiB", False)])
def test_cold_frames_from_1_mib_are_compressed_without_the_dictionary(tmp_path: Path, frame_size: str,
                                                                      with_dictionary: bool) -> None:
    blocks = [source_text(i, 3000) for i in range(800)]  # 2.4 MB of small blocks: frames full at every size
    with BlockStore(tmp_path / "s") as store:
        for block in blocks:
            store.put(cid_of_block(1, RAW, block), block)
        store.flush()
        assert frame_dictionaries(tmp_path / "s") == {SHIPPED_ID}  # the default frames use the shipped one
        assert store.compact_packs(level=19, frame_bytes=cold_frame_bytes(frame_size))[0] > 0
    assert frame_dictionaries(tmp_path / "s") == ({SHIPPED_ID} if with_dictionary else {0})
    with BlockStore(tmp_path / "s", create=False) as store:
        assert [store.get(cid_of_block(1, RAW, b)) for b in blocks] == blocks
        assert all(problem is None for _, problem in store.verify())
