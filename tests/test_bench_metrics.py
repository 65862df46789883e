"""The benchmark's accounting on synthetic version chains with known answers, and the run's resume."""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest

from bench import datasets
from bench.metrics import ALL, BLOCK_COLUMNS, summarize
from bench.run import ArchiveTask, ProjectTask, cmd_run, run_project

from .bench_archives import make_sdist, make_wheel, needs_zstd, random_bytes, write

BASE = {
    "__init__.py": b"VERSION = 1\n",
    "core.py": b"def run():\n    return 42\n" * 3000,
    "big.bin": random_bytes(400_000, 2),
    "table.bin": random_bytes(100_000, 3),
}
STRATEGIES = ("whole", "fixed-262144", "buzhash", "structural", "structural-v1", "structural+fastcdc",
              "stream-buzhash", "delta-zstd")
#: Generous allowance for per-version metadata: the root, recipe, directories and skeleton frame of
#: a 5-member archive are a few hundred bytes each.
METADATA = 4096


def _chain(tmp: Path, project: str, versions: list[tuple[str, dict[str, bytes]]]) -> ProjectTask:
    archives = []
    for version, files in versions:
        for kind, name, data in (("sdist", f"{project}-{version}.tar.gz", make_sdist(project, version, files)),
                                 ("wheel", f"{project}-{version}-py3-none-any.whl",
                                  make_wheel(project, version, files))):
            archives.append(ArchiveTask(version, name, kind, str(write(tmp, name, data)), len(data)))
    return ProjectTask(project, tuple(archives), STRATEGIES, str(tmp))


def _events(task: ProjectTask) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, blocks = run_project(task)
    return pd.DataFrame(rows), pd.DataFrame(blocks, columns=list(BLOCK_COLUMNS))


def _row(events: pd.DataFrame, file: str, strategy: str) -> Any:
    return events[(events["file"] == file) & (events["strategy"] == strategy)].iloc[0]


@needs_zstd
def test_identical_versions_add_nothing_but_metadata(tmp_path: Path) -> None:
    events, _ = _events(_chain(tmp_path, "demo", [("1.0", BASE), ("1.0.post1", BASE)]))
    for kind, file in (("sdist", "demo-1.0.post1.tar.gz"), ("wheel", "demo-1.0.post1-py3-none-any.whl")):
        for strategy in ("structural", "structural-v1", "structural+fastcdc"):
            row = _row(events, file, strategy)
            assert row["new_bytes"] < METADATA, (kind, strategy)
            assert row["upgrade_bytes"] < METADATA
        assert _row(events, file, "delta-zstd")["new_bytes"] < 400


@needs_zstd
def test_one_changed_member_adds_about_that_member(tmp_path: Path) -> None:
    changed = {**BASE, "table.bin": random_bytes(100_000, 4)}
    events, _ = _events(_chain(tmp_path, "demo", [("1.0", BASE), ("1.1", changed)]))
    for strategy in ("structural", "structural-v1", "structural+fastcdc"):
        new = _row(events, "demo-1.1.tar.gz", strategy)["new_bytes"]
        assert 100_000 <= new < 100_000 + METADATA, (strategy, new)
        # The wheel's members are the sdist's: one project chain stores them once.
        assert _row(events, "demo-1.1-py3-none-any.whl", strategy)["new_bytes"] < METADATA
        assert _row(events, "demo-1.1-py3-none-any.whl", strategy)["upgrade_bytes"] >= 100_000
    for file in ("demo-1.1.tar.gz", "demo-1.1-py3-none-any.whl"):
        delta = _row(events, file, "delta-zstd")["new_bytes"]
        assert 100_000 <= delta < 100_000 + 1024
        # Compressed archive bytes hide the change from the chunkers: a gzip stream changes after it.
        assert _row(events, file, "whole")["new_bytes"] > 500_000


@needs_zstd
def test_cumulative_bytes_are_the_running_sum_of_new_bytes(tmp_path: Path) -> None:
    versions = [("1.0", BASE), ("1.1", {**BASE, "core.py": BASE["core.py"] + b"# 1.1\n"}),
                ("1.2", {**BASE, "big.bin": random_bytes(400_000, 5)})]
    events, blocks = _events(_chain(tmp_path, "demo", versions))
    for strategy, group in events.groupby("strategy"):
        assert list(group["cum_unique_bytes"]) == list(group["new_bytes"].cumsum()), strategy
        assert group["new_bytes_zstd"].sum() == blocks[blocks["strategy"] == strategy]["size_zstd"].sum()
        assert (group["upgrade_bytes_zstd"] <= group["upgrade_bytes"]).all()
    assert not events["has_previous"].iloc[:2 * len(STRATEGIES)].any()
    assert events["has_previous"].iloc[2 * len(STRATEGIES):].all()


@needs_zstd
def test_renamed_project_shares_everything_overall(tmp_path: Path) -> None:
    versions = [("1.0", BASE), ("1.1", {**BASE, "table.bin": random_bytes(100_000, 6)})]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = _events(_chain(tmp_path / "a", "demo", versions))
    b = _events(_chain(tmp_path / "b", "renamed", versions))
    alone = summarize(*a).set_index(["package", "strategy"])
    both = summarize(pd.concat([a[0], b[0]]), pd.concat([a[1], b[1]])).set_index(["package", "strategy"])
    for strategy in ("structural", "structural-v1", "structural+fastcdc"):
        extra = both.loc[(ALL, strategy), "unique_bytes"] - alone.loc[(ALL, strategy), "unique_bytes"]
        assert 0 < extra < 4 * METADATA, strategy  # names differ, so archive roots and recipes do
        per_project = both.loc[("renamed", strategy), "unique_bytes"] - alone.loc[("demo", strategy), "unique_bytes"]
        assert abs(per_project) < 4 * METADATA  # alone, the renamed chain costs what the original did


@needs_zstd
def test_delta_bound_is_never_above_whole(tmp_path: Path) -> None:
    versions = [("1.0", BASE), ("1.1", {**BASE, "big.bin": random_bytes(400_000, 7)}),
                ("2.0", {"other.bin": random_bytes(300_000, 8)})]
    events, _ = _events(_chain(tmp_path, "demo", versions))
    delta = events[events["strategy"] == "delta-zstd"].set_index("file")["new_bytes"]
    whole = events[events["strategy"] == "whole"].set_index("file")["new_bytes"]
    assert (delta <= whole).all()


@needs_zstd
def test_summary_has_one_row_per_project_and_strategy_plus_all(tmp_path: Path) -> None:
    events, blocks = _events(_chain(tmp_path, "demo", [("1.0", BASE), ("1.1", BASE)]))
    summary = summarize(events, blocks)
    assert {"package", "strategy", "versions", "files", "logical_bytes", "unique_bytes", "unique_bytes_zstd",
            "blocks", "dedup_ratio"} <= set(summary.columns)
    assert len(summary) == 2 * len(STRATEGIES)
    whole = summary[(summary["package"] == "demo") & (summary["strategy"] == "whole")].iloc[0]
    assert (whole["versions"], whole["files"]) == (2, 4)
    assert whole["dedup_ratio"] == whole["logical_bytes"] / whole["unique_bytes"]


@needs_zstd
def test_corrupt_archive_is_reported_and_the_chain_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = _chain(tmp_path, "demo", [("1.0", BASE), ("1.1", BASE), ("1.2", BASE)])
    Path(task.archives[3].path).write_bytes(b"this is not a wheel at all")  # 1.1's wheel
    events, _ = _events(task)
    bad = events[events["file"] == "demo-1.1-py3-none-any.whl"]
    assert len(bad) == 1 and "not a zip" in bad.iloc[0]["error"]
    good = _row(events, "demo-1.2-py3-none-any.whl", "structural")
    assert good["has_previous"] and good["new_bytes"] < METADATA  # compared with 1.0's wheel
    assert "demo-1.1-py3-none-any.whl: skipped" in capsys.readouterr().err


@dataclass(frozen=True)
class _Entry:
    project: str
    version: str
    filename: str
    kind: str
    size: int


def test_run_resumes_skipping_finished_projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files: dict[str, Path] = {}
    entries = []
    for project in ("alpha", "beta"):
        for version in ("1.0", "1.1"):
            name = f"{project}-{version}-py3-none-any.whl"
            files[name] = write(tmp_path, name, make_wheel(project, version, BASE))
            entries.append(_Entry(project, version, name, "wheel", files[name].stat().st_size))

    class _Downloads(dict[str, Path]):
        failed: ClassVar[dict[str, str]] = {}

    monkeypatch.setattr(datasets, "load_lock", lambda name: entries)
    monkeypatch.setattr(datasets, "lock_digest", lambda name: "0" * 64)
    monkeypatch.setattr(datasets, "ensure_downloaded", lambda e, jobs, progress: _Downloads(files))
    args = argparse.Namespace(packages="fake", versions=10, jobs=1, download_jobs=1, run_id="r",
                              runs_dir=str(tmp_path / "runs"), strategies=["whole", "structural"], no_progress=True,
                              chain="kind")
    assert cmd_run(args) == 0
    run = tmp_path / "runs" / "r"
    (run / "events" / "beta.parquet").unlink()
    kept = (run / "events" / "alpha.parquet").stat().st_mtime_ns
    assert cmd_run(args) == 0
    assert (run / "events" / "alpha.parquet").stat().st_mtime_ns == kept
    summary = pd.read_csv(run / "summary.csv")
    assert set(summary["package"]) == {"alpha", "beta", ALL}
    assert (tmp_path / "runs" / "latest").resolve() == run.resolve()


def test_run_without_zstd_cli_refuses_delta_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("bench.delta_zstd.shutil.which", lambda name: None)
    args = argparse.Namespace(packages="smoke", versions=1, jobs=1, download_jobs=1, run_id="r",
                              runs_dir=str(tmp_path), strategies=None, no_progress=True, chain="kind")
    assert cmd_run(args) == 1
    assert capsys.readouterr().err == ("bench run: delta-zstd needs the zstd command-line tool (apt install zstd); "
                                       "or leave delta-zstd out with --strategies\n")
    assert not (tmp_path / "r").exists()


def test_report_rebuilds_marked_sections_and_keeps_prose(tmp_path: Path) -> None:
    from bench.report import cmd_report

    fixture = Path(__file__).parent / "fixtures" / "bench_results"
    report = tmp_path / "REPORT.md"
    report.write_text("# Title\n\nHand-written findings.\n\n<!-- BEGIN:overall -->\nstale\n<!-- END:overall -->\n")
    args = argparse.Namespace(run=str(fixture), report=str(report), figures=str(tmp_path / "figures"))
    assert cmd_report(args) == 0
    text = report.read_text()
    assert "Hand-written findings." in text and "stale" not in text
    for name in ("run", "overall", "projects", "losses", "bound", "figures"):
        assert text.count(f"<!-- BEGIN:{name} -->") == 1 and text.count(f"<!-- END:{name} -->") == 1
    assert "| `delta-zstd` |" in text
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "bench-block-sizes.png", "bench-cumulative.png", "bench-dedup-ratio.png", "bench-structural-vs-whole.png",
        "bench-upgrade-bytes.png"]
    assert cmd_report(args) == 0 and report.read_text() == text  # idempotent


# -- deltas at rest: the ledger replays the store ------------------------------------------------

def _edited(data: bytes, step: int) -> bytes:
    middle = len(data) // 2 + 101 * step
    return data[:middle] + f"# release {step}\n".encode() + data[middle:]


def _module(seed: int, functions: int) -> bytes:
    """Python-like text that zstd compresses about 7x, not 1000x like a repeated line."""
    rnd = random.Random(seed)
    return "".join(f"def f_{i}(a, b):\n    return a * {rnd.randrange(10**6)} + b\n\n"
                   for i in range(functions)).encode()


#: Three releases whose source module (about 420 KB: two leaves of 256 KiB) gains a line each
#: time, beside BASE's members, which never change.
DELTA_RELEASES = [(f"1.{step}", {**BASE, "core.py": _edited(_module(7, 9500), step)}) for step in range(3)]


@needs_zstd
def test_ledger_delta_savings_equal_a_real_store_importing_the_same_chain(tmp_path: Path) -> None:
    from importer.archive.delta import delta_against_previous
    from importer.archive.importer import import_archive
    from importer.profiles import resolve_settings
    from importer.sinks.store import ArchiveRecord, BlockStore

    task = _chain(tmp_path, "demo", DELTA_RELEASES)
    events, _ = _events(task)
    # A store with no trained dictionary and one row per block (each block its own zstd -3 frame,
    # as the ledger counts them; packs, which group small blocks, are not modelled by the ledger).
    saved: dict[str, int] = {}
    with BlockStore(tmp_path / "store", train_after=10**9, packs=False) as store:
        for archive in task.archives:
            report = import_archive(archive.path, resolve_settings(), store)
            store.record_archive(ArchiveRecord(report.file, report.root, bytes.fromhex(report.sha256), report.size, 0.0))
            saved[archive.filename] = delta_against_previous(store, report.file, report.root).saved
    ledger = {a.filename: int(_row(events, a.filename, "structural")["new_bytes_zstd"]
                              - _row(events, a.filename, "structural")["new_bytes_delta"]) for a in task.archives}
    # Equal to the byte but for the recipe and its page: the benchmark builds them with one typical
    # compressor parameter set (REPORT, Method), so their deltas differ by a few bytes each.
    assert set(ledger) == set(saved)
    assert all(abs(ledger[name] - saved[name]) <= 16 for name in saved), (ledger, saved)
    # The sdists of releases 2 and 3 shrank by the module's leaves; the first archives have nothing
    # to pair with, and each later wheel's changed module is its own sdist's, whose leaves are
    # deltas already: the wheels shrink only by their structure (directories, recipe).
    assert [name for name, n in saved.items() if n > 10_000] == ["demo-1.1.tar.gz", "demo-1.2.tar.gz"]
    assert saved["demo-1.0.tar.gz"] == saved["demo-1.0-py3-none-any.whl"] == 0
    assert 0 < saved["demo-1.1-py3-none-any.whl"] < 1000


@needs_zstd
def test_deltas_only_shrink_the_structural_stores(tmp_path: Path) -> None:
    events, blocks = _events(_chain(tmp_path, "demo", DELTA_RELEASES))
    for strategy in STRATEGIES:
        rows = events[events["strategy"] == strategy]
        last = rows.iloc[-1]
        if strategy.startswith("structural"):
            assert last["cum_unique_bytes_delta"] < last["cum_unique_bytes_zstd"], strategy
        else:
            assert (rows["new_bytes_delta"] == rows["new_bytes_zstd"]).all(), strategy
        # The block table carries the same totals as the events.
        mine = blocks[blocks["strategy"] == strategy]
        assert int(mine["size_delta"].sum()) == int(last["cum_unique_bytes_delta"]), strategy
