"""bench.othertools: the chains other tools are given, unpacked safely, and sums that keep "not installed"."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from bench.othertools import TOOLS, Sizes, _releases, unpack

from .bench_archives import make_sdist, make_wheel, write


def test_an_sdist_and_its_wheel_are_one_release_in_chain_order(tmp_path: Path) -> None:
    names = ["a-1.0.tar.gz", "a-1.0-py3-none-any.whl", "a-1.1.tar.gz", "a-1.1-py3-none-any.whl", "a-2.0.zip"]
    groups = _releases([tmp_path / n for n in names])
    assert [[p.name for p in g] for g in groups] == [names[:2], names[2:4], names[4:]]


def test_unpack_gives_the_members_of_wheels_and_sdists(tmp_path: Path) -> None:
    wheel = write(tmp_path, "pkg-1.0-py3-none-any.whl", make_wheel("pkg", "1.0", {"a.py": b"A = 1\n"}))
    sdist = write(tmp_path, "pkg-1.0.tar.gz", make_sdist("pkg", "1.0", {"setup.py": b"S\n"}))
    unpack(wheel, tmp_path / "w")
    unpack(sdist, tmp_path / "s")
    assert (tmp_path / "w" / "pkg" / "a.py").read_bytes() == b"A = 1\n"
    assert (tmp_path / "w" / "pkg-1.0.dist-info" / "METADATA").read_bytes() == b"Name: pkg\nVersion: 1.0\n"
    assert (tmp_path / "s" / "pkg-1.0" / "setup.py").read_bytes() == b"S\n"


def test_unpack_refuses_an_sdist_member_outside_the_target(tmp_path: Path) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    sdist = write(tmp_path, "evil-1.0.tar.gz", gzip.compress(raw.getvalue()))
    with pytest.raises(tarfile.OutsideDestinationError):
        unpack(sdist, tmp_path / "target")
    assert not (tmp_path / "escaped.txt").exists()


def test_a_sum_with_a_tool_missing_in_one_project_says_missing_not_a_partial_figure() -> None:
    total = Sizes()
    total.add(Sizes(100, dict.fromkeys(TOOLS, 10)))
    total.add(Sizes(50, {**dict.fromkeys(TOOLS, 5), "borg archives": None}))
    assert total.archive_bytes == 150
    assert total.tools["borg archives"] is None
    assert total.tools["git gc --aggressive"] == 15
