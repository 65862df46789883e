"""Many tiny items cost a small, constant amount each: an sdist of 20,000 gzip members, a wheel of 50,000 members.

Each imports in a child under the 300 MB cap and rebuilds byte for byte; the report names how the
streams were stored once per run of identical ones, not once per stream.
(`python -m bench`-style timings of the 100,000-item versions are in the branch report, not here.)
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.archive_checks import sha256_file
from tests.conftest import RunCli

from .archive_bombs import RSS_CAP, MiB, checked, many_members_zip, many_streams_tar_gz, run_watched

#: Members of the wheel; the sdist has fewer streams because its fetch recompresses each stream on
#: its own (with GNU gzip here: one process per stream, ~2 ms each).
COUNT = 50_000
STREAMS = 20_000


def _fetch_equal(cli: RunCli, root: str, store: Path, original: Path, out: Path) -> None:
    rc, _, err = cli("fetch", root, "-o", out, "--store", store)
    assert rc == 0, err
    assert sha256_file(out) == sha256_file(original)


def test_sdist_of_20000_gzip_members_imports_in_bounded_memory(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "streams-1.0.tar.gz"
    path.write_bytes(checked(many_streams_tar_gz(STREAMS), 4 * MiB))
    store = tmp_path / "store"
    run = run_watched("sdist", path, tmp=tmp_path / "tmp", store=store)
    assert run.rc == 0, run.err
    assert run.peak_rss < RSS_CAP, f"peak RSS {run.peak_rss / MiB:.0f} MiB"
    lines = run.out.splitlines()
    containers = [line for line in lines if line.startswith("  container ")]
    assert len(containers) == 1 and containers[0].endswith(f"(x{STREAMS} streams)"), containers
    _fetch_equal(cli, lines[0].split()[1], store, path, tmp_path / "out.tar.gz")


def test_wheel_of_50000_members_imports_in_bounded_memory(tmp_path: Path, cli: RunCli) -> None:
    path = tmp_path / "members-1.0-py3-none-any.whl"
    path.write_bytes(checked(many_members_zip(COUNT), 8 * MiB))
    store = tmp_path / "store"
    run = run_watched("auto", "--json", path, tmp=tmp_path / "tmp", store=store)
    assert run.rc == 0, run.err
    assert run.peak_rss < RSS_CAP, f"peak RSS {run.peak_rss / MiB:.0f} MiB"
    summary = json.loads(run.out)
    assert summary["members"] == COUNT and summary["verbatim_bytes"] == 0
    _fetch_equal(cli, summary["root"], store, path, tmp_path / "out.whl")
