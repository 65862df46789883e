"""bench.frame_context: an archive's distinct member contents in order, grouped into frames as cold packs group them."""

from __future__ import annotations

from pathlib import Path

import zstandard

from bench.frame_context import framed_bytes, frames, store_blocks, store_dictionary, unique_members
from importer.dag.cid import RAW, cid_of_block
from importer.sinks.atrest import shipped_dictionary
from importer.sinks.store import BlockStore

from .bench_archives import make_sdist, make_wheel, source_text, write


def test_unique_members_keep_archive_order_and_each_content_once(tmp_path: Path) -> None:
    files = {"a.py": b"A\n", "b.py": b"B\n", "copy_of_a.py": b"A\n"}
    sdist = write(tmp_path, "p-1.0.tar.gz", make_sdist("p", "1.0", files))
    wheel = write(tmp_path, "p-1.0-py3-none-any.whl", make_wheel("p", "1.0", files))
    assert unique_members(sdist) == [b"A\n", b"B\n"]
    assert unique_members(wheel) == [b"A\n", b"B\n", b"Name: p\nVersion: 1.0\n"]


def test_a_frame_closes_once_it_holds_the_size_and_the_last_keeps_the_rest() -> None:
    members = [b"x" * 3, b"y" * 3, b"z" * 5, b"w"]
    assert list(frames(members, 6)) == [b"xxxyyy", b"zzzzzw"]
    assert list(frames(members, 4)) == [b"xxxyyy", b"zzzzz", b"w"]


def test_store_blocks_leave_deltas_out_unless_asked(tmp_path: Path) -> None:
    old, other = source_text(1, 40_000), source_text(2, 3_000)
    new = old[:20_000] + b"# one changed line\n" + old[20_000:]
    cids = [cid_of_block(1, RAW, b) for b in (old, other, new)]
    with BlockStore(tmp_path / "s") as store:
        for cid, block in zip(cids, (old, other, new)):
            store.put(cid, block)
        store.flush()
        assert store.delta_encode([(cids[2], [cids[0]])])[0] == 1  # the new version is now a delta
    assert sorted(store_blocks(tmp_path / "s")) == sorted([old, other])
    assert sorted(store_blocks(tmp_path / "s", all_blocks=True)) == sorted([old, other, new])


def test_a_store_that_trained_no_dictionary_is_measured_with_the_shipped_one(tmp_path: Path) -> None:
    with BlockStore(tmp_path / "s") as store:
        store.put(cid_of_block(1, RAW, b"x"), b"x")
    assert store_dictionary(tmp_path / "s") == shipped_dictionary() is not None
    assert store_dictionary(None) == shipped_dictionary()


def test_frames_past_the_base_are_made_against_it_and_the_base_frames_alone() -> None:
    first = source_text(3, 65_536)
    again = first[:30_000] + b"# changed\n" + first[30_000:65_526]  # nearly the first frame once more
    plain = zstandard.ZstdCompressor(level=3)
    base = zstandard.ZstdCompressor(level=3, dict_data=zstandard.ZstdCompressionDict(
        first, dict_type=zstandard.DICT_TYPE_RAWCONTENT))
    alone = framed_bytes([first, again], 65_536, plain)
    against = framed_bytes([first, again], 65_536, plain, base, 65_536)
    assert against < alone * 0.6  # the second frame is nearly free against the base
    assert framed_bytes([first], 65_536, plain, base, 65_536) == framed_bytes([first], 65_536, plain)
