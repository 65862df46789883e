"""With --open-nested, the bytes inflated at every nesting level count against one budget.

A 42.zip-style wheel (16 copies of a zip at every level, 2^40 bytes at the bottom) and a wheel of
``.gz`` members that are each harmless but together are not, stop with one line in bounded memory;
the same archives without --open-nested import as plain files and rebuild exactly.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from tests.archive_builders import ZipEntry, build_zip
from tests.archive_checks import assert_roundtrip
from tests.conftest import RunCli

from .archive_bombs import RSS_CAP, MiB, checked, nested_bomb_zip, run_watched

FLOOR = 64 * MiB


def _zeros_gz(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9, mtime=0)


def _gz_wheel(count: int, size: int) -> bytes:
    """A wheel of ``count`` ``.json.gz`` members, each ``size`` zeros gzip'd (stored in the zip)."""
    entries = [ZipEntry(f"pkg/data{i}.json.gz".encode(), _zeros_gz(size), method=0) for i in range(count)]
    return build_zip(entries)


def test_42_zip_style_wheel_stops_at_the_shared_budget(tmp_path: Path, cli: RunCli) -> None:
    data = checked(nested_bomb_zip(3, 16, 256 * MiB), 64 * 1024)
    path = tmp_path / "nested-1.0-py3-none-any.whl"
    path.write_bytes(data)
    run = run_watched("auto", "--open-nested", path, tmp=tmp_path / "tmp", store=tmp_path / "store")
    assert run.rc == 1
    assert run.err.count("\n") == 1
    assert run.err.startswith("dpip-import auto: nested-1.0-py3-none-any.whl: member 'pkg/l2-0.whl': nested "
                              "archive l2-0.whl: member 'l1-0.zip': nested archive l1-0.zip: member 'l0-")
    assert f"past --max-ratio 100 ({FLOOR} bytes for this {len(data)}-byte file, the floor for small archives)" \
        in run.err
    assert run.peak_rss < RSS_CAP and run.peak_tmp < 16 * MiB
    assert_roundtrip(cli, path, tmp_path / "plain-store")  # without --open-nested: files, exactly


def test_nested_gz_members_together_past_the_budget_are_refused(tmp_path: Path, cli: RunCli) -> None:
    """Three 30 MiB .json.gz: each alone fits the 64 MiB budget of a ~100 KB wheel, two do, three do not."""
    store = tmp_path / "store"
    two = tmp_path / "two-1.0-py3-none-any.whl"
    two.write_bytes(checked(_gz_wheel(2, 30 * MiB), 256 * 1024))
    summary = assert_roundtrip(cli, two, store, "--open-nested")
    assert summary["nested"] == 2
    three = tmp_path / "three-1.0-py3-none-any.whl"
    three.write_bytes(checked(_gz_wheel(3, 30 * MiB), 256 * 1024))
    rc, _, err = cli("auto", "--open-nested", "--store", store, three)
    assert rc == 1 and err.count("\n") == 1
    assert err.startswith("dpip-import auto: three-1.0-py3-none-any.whl: member 'pkg/data")
    assert f"inflates past --max-ratio 100 ({FLOOR} bytes for this {three.stat().st_size}-byte file, the floor " \
           "for small archives)" in err
    assert_roundtrip(cli, three, store)  # without --open-nested the members are plain files


def test_nested_budget_follows_max_total_size(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "one-1.0-py3-none-any.whl"
    path.write_bytes(_gz_wheel(1, 8 * MiB))
    rc, _, err = cli("auto", "--open-nested", "--max-total-size", str(4 * MiB), "--store", tmp_path / "store", path)
    assert rc == 1
    assert err.startswith("dpip-import auto: one-1.0-py3-none-any.whl: member 'pkg/data0.json.gz': nested archive "
                          "data0.json.gz: offset ")
    assert err.endswith(f": inflates past --max-total-size {4 * MiB}\n")
