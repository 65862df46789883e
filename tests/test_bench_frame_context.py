"""bench.frame_context: an archive's distinct member contents in order, grouped into frames as cold packs group them."""

from __future__ import annotations

from pathlib import Path

from bench.frame_context import frames, unique_members

from .bench_archives import make_sdist, make_wheel, write


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
