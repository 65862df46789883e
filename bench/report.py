"""``python -m bench report``: rebuild REPORT.md's generated tables and the figures from one run's results.

Only the run directory is read (``run.json``, ``summary.csv``, ``events/``, ``blocks/``): no archive,
no network. Figures go to ``docs/figures/bench-*.png``; each generated part of REPORT.md sits
between ``<!-- BEGIN:name -->`` and ``<!-- END:name -->`` and is replaced whole, so the prose
around the markers (method, findings) is kept. A REPORT.md without markers gets them appended.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .figures import draw_all, telling_projects

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

ROOT: Final = Path(__file__).resolve().parent.parent
DEFAULT_RUN: Final = ROOT / "runs" / "latest"
REPORT: Final = ROOT / "REPORT.md"
FIGURES: Final = ROOT / "docs" / "figures"
MiB: Final = 1024 * 1024


def load_run(run_dir: Path) -> tuple[dict[str, Any], pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``run.json``, the events and blocks tables, and ``summary.csv`` of a run directory."""
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    meta = json.loads((run_dir / "run.json").read_text())
    events = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "events").glob("*.parquet"))],
                       ignore_index=True)
    blocks = pd.concat([pd.read_parquet(p) for p in sorted((run_dir / "blocks").glob("*.parquet"))],
                       ignore_index=True)
    summary = pd.read_csv(run_dir / "summary.csv")
    return meta, events, blocks, summary


def _table(header: list[str], rows: list[list[str]], align: str = "") -> str:
    align = align or "l" + "r" * (len(header) - 1)
    marks = [":--" if a == "l" else "--:" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _mib(n: float) -> str:
    return f"{n / MiB:,.1f}"


def run_section(meta: dict[str, Any], events: pd.DataFrame) -> str:
    m = meta.get("machine", {})
    errors = events[events["error"].notna() & (events["error"] != "")]
    rows = [
        ["dataset", (f"`{meta.get('set')}`, newest {meta.get('versions')} versions; lock sha256 "
                    f"`{meta.get('lock_sha256', '?')}`")],
        ["files", (f"{meta.get('projects')} projects, {meta.get('files')} archives, "
                  f"{_mib(meta.get('archive_bytes', 0))} MiB")],
        ["strategies", ", ".join(f"`{s}`" for s in meta.get("strategies", []))],
        ["commit", f"`{meta.get('commit')}`"],
        ["date", f"{meta.get('started')} to {meta.get('finished', 'unfinished')} (UTC)"],
        ["machine", (f"{m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB, "
                    f"{m.get('system')}, Python {m.get('python')}")],
        ["wall time", (f"download {meta.get('download_seconds', 0):,.0f} s (cache hits are free); "
                      f"bench {meta.get('bench_seconds', 0):,.0f} s on {meta.get('jobs')} processes")],
        ["archives skipped", f"{len(errors)} rows with errors" + (
            ": " + "; ".join(sorted({f"`{f}`" for f in errors['file']}))[:600] if len(errors) else "")],
    ]
    return _table(["", ""], rows, "ll")


def with_delta(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with the delta columns (a run from before deltas: equal to the zstd ones)."""
    if "unique_bytes_delta" in summary.columns:
        return summary
    out = summary.copy()
    out["unique_bytes_delta"] = out["unique_bytes_zstd"]
    out["dedup_ratio_delta"] = out["dedup_ratio_zstd"]
    return out


def overall_section(summary: pd.DataFrame) -> str:
    overall = with_delta(summary)
    overall = overall[overall["package"] == "ALL"].sort_values("unique_bytes")
    rows = []
    for _, r in overall.iterrows():
        rows.append([f"`{r['strategy']}`", _mib(r["logical_bytes"]), _mib(r["unique_bytes"]),
                     _mib(r["unique_bytes_zstd"]), _mib(r["unique_bytes_delta"]), f"{r['dedup_ratio']:.2f}",
                     f"{r['dedup_ratio_zstd']:.2f}", f"{r['dedup_ratio_delta']:.2f}",
                     f"{int(r['blocks']):,}", _mib(r["overhead_bytes"]),
                     f"{100 * r['upgrade_bytes'] / max(1, r['upgrade_archive_bytes']):.1f}%",
                     f"{100 * r['upgrade_bytes_zstd'] / max(1, r['upgrade_archive_bytes']):.1f}%",
                     f"{r['seconds']:,.0f}"])
    return _table(["strategy", "archives MiB", "stored MiB", "stored MiB, zstd at rest",
                   "stored MiB, zstd + deltas at rest", "dedup ratio", "ratio, zstd", "ratio, zstd + deltas",
                   "unique blocks", "overhead MiB", "upgrade fetch", "upgrade, zstd", "CPU s"], rows)


#: Issue 6's top100 targets for the best structural strategy at rest: at least this many times
#: fewer bytes than the archives, and at most this many times the delta-zstd bound.
TARGET_RATIO: Final = 3.0
TARGET_BOUND: Final = 1.2


def targets_section(summary: pd.DataFrame) -> str:
    """Issue 6's top100 targets, checked on this run: the best structural strategy with the store's default at rest."""
    overall = with_delta(summary)
    overall = overall[overall["package"] == "ALL"].set_index("strategy")
    structural = overall[overall["family"] == "structural"]
    if structural.empty or "delta-zstd" not in overall.index:
        return "(the run has no structural strategy or no `delta-zstd`)"
    bound = overall.loc["delta-zstd", "unique_bytes_zstd"]
    rows = []
    for column, label in (("unique_bytes_zstd", "zstd at rest"), ("unique_bytes_delta", "zstd + deltas at rest")):
        best = structural[column].idxmin()
        stored = structural.loc[best, column]
        ratio = structural.loc[best, "logical_bytes"] / stored
        rows.append([label, f"`{best}`", _mib(stored), f"{ratio:.2f}", "met" if ratio >= TARGET_RATIO else "not met",
                     f"{stored / bound:.2f}x", "met" if stored / bound <= TARGET_BOUND else "not met"])
    return _table(["store", "best structural strategy", "stored MiB", "archives / stored",
                   f">= {TARGET_RATIO:g}x", "x bound", f"<= {TARGET_BOUND:g}x"], rows, "llrrlrl")


#: Strategies compared project by project in the per-project table.
PROJECT_COLUMNS: Final = ("whole", "fixed-262144", "structural", "structural+fastcdc", "delta-zstd")


def projects_section(summary: pd.DataFrame, limit: int = 25) -> str:
    per = summary[summary["package"] != "ALL"]
    ratio = per.pivot_table(index="package", columns="strategy", values="dedup_ratio")
    ratio_z = per.pivot_table(index="package", columns="strategy", values="dedup_ratio_zstd")
    logical = per.groupby("package")["logical_bytes"].first().sort_values(ascending=False)
    shown = [s for s in PROJECT_COLUMNS if s in ratio.columns]
    best = ratio.drop(columns=["delta-zstd"], errors="ignore")
    rows = []
    for package in logical.index[:limit]:
        cells = [f"{ratio.loc[package, s]:.2f}" for s in shown]
        z = ratio_z.loc[package, "structural"] if "structural" in ratio_z.columns else float("nan")
        winner = best.loc[package].idxmax()
        rows.append([package, _mib(logical[package]), *cells, f"{z:.2f}", f"`{winner}` {best.loc[package].max():.2f}"])
    header = ["project", "archives MiB", *[f"`{s}`" for s in shown], "`structural`, zstd at rest",
              "best chunking strategy"]
    note = (f"\n\nDedup ratio (archive bytes / stored bytes) per project, the {min(limit, len(logical))} largest "
            f"of {len(logical)} projects; all projects are in the run's `summary.csv`.")
    return _table(header, rows) + note


def losses_section(summary: pd.DataFrame, limit: int = 12) -> str:
    """Where structural import stores more than the archives: uncompressed leaves of well-compressed files."""
    per = summary[summary["package"] != "ALL"]
    if not {"structural", "whole"} <= set(per["strategy"]):
        return "(the run has no `structural` and `whole` to compare)"
    pivot = per.pivot_table(index="package", columns="strategy",
                            values=["unique_bytes", "unique_bytes_zstd", "content_bytes", "logical_bytes"])
    whole = pivot[("unique_bytes", "whole")]
    table = pd_frame({
        "squeeze": pivot[("content_bytes", "whole")] / pivot[("logical_bytes", "whole")],
        "raw": pivot[("unique_bytes", "structural")] / whole,
        "zstd": pivot[("unique_bytes_zstd", "structural")] / whole,
    }).sort_values("raw", ascending=False)
    losing = table[table["raw"] > 1]
    losing_z = table[table["zstd"] > 1]
    rows = [[package, f"{r['squeeze']:.1f}x", f"{r['raw']:.2f}", f"{r['zstd']:.2f}"]
            for package, r in table.head(limit).iterrows()]
    note = (f"\n\n`structural` stores more than `whole` for {len(losing)} of {len(table)} projects with raw leaves, "
            f"and for {len(losing_z)} with each block zstd-compressed at rest. Columns: how much the archives "
            "compress (uncompressed content / archive bytes), then structural's stored bytes over whole's.")
    return _table(["project", "content / archive", "structural / whole", "structural, zstd at rest / whole"],
                  rows) + note


def bound_section(summary: pd.DataFrame) -> str:
    """How far each strategy's store is from the delta-zstd bound (compressed at rest vs compressed)."""
    overall = with_delta(summary)
    overall = overall[overall["package"] == "ALL"].set_index("strategy")
    if "delta-zstd" not in overall.index:
        return "(the run has no `delta-zstd`)"
    bound = overall.loc["delta-zstd", "unique_bytes_zstd"]
    rows = []
    for strategy, r in overall.drop("delta-zstd").sort_values("unique_bytes_delta").iterrows():
        rows.append([f"`{strategy}`", _mib(r["unique_bytes"]), f"{r['unique_bytes'] / bound:.2f}x",
                     _mib(r["unique_bytes_zstd"]), f"{r['unique_bytes_zstd'] / bound:.2f}x",
                     _mib(r["unique_bytes_delta"]), f"{r['unique_bytes_delta'] / bound:.2f}x"])
    head = f"The bound, `delta-zstd`, stores {_mib(bound)} MiB.\n\n"
    return head + _table(["strategy", "stored MiB", "x bound", "stored MiB, zstd at rest", "x bound (zstd)",
                          "stored MiB, zstd + deltas at rest", "x bound (deltas)"], rows)


#: The strategies the nested-members section compares (those the run has), baseline to bound.
NESTED_COLUMNS: Final = ("whole", "structural", "structural+buzhash", "structural+nested", "structural+nested+buzhash",
                         "delta-zstd")


def nested_section(summary: pd.DataFrame, limit: int = 12) -> str:
    """``--open-nested`` against the plain structural import at rest (zstd alone, and with deltas): overall and per project."""
    summary = with_delta(summary)
    overall = summary[summary["package"] == "ALL"].set_index("strategy")
    if not {"structural", "structural+nested"} <= set(overall.index):
        return "(the run has no `structural` and `structural+nested` to compare)"
    shown = [s for s in NESTED_COLUMNS if s in overall.index]
    bound = overall.loc["delta-zstd", "unique_bytes_zstd"] if "delta-zstd" in overall.index else float("nan")
    rows = []
    for strategy in shown:
        r = overall.loc[strategy]
        rows.append([f"`{strategy}`", _mib(r["logical_bytes"]), _mib(r["unique_bytes_zstd"]),
                     f"{r['dedup_ratio_zstd']:.2f}", f"{r['unique_bytes_zstd'] / bound:.2f}x",
                     _mib(r["unique_bytes_delta"]), f"{r['dedup_ratio_delta']:.2f}",
                     f"{r['unique_bytes_delta'] / bound:.2f}x",
                     f"{100 * r['upgrade_bytes_zstd'] / max(1, r['upgrade_archive_bytes']):.1f}%",
                     f"{r['seconds']:,.0f}"])
    table = _table(["strategy", "archives MiB", "stored MiB, zstd at rest", "ratio, zstd", "x bound (zstd)",
                    "stored MiB, zstd + deltas", "ratio, deltas", "x bound (deltas)", "upgrade, zstd", "CPU s"], rows)
    per_rows = summary[summary["package"] != "ALL"]
    packed = per_rows.pivot_table(index="package", columns="strategy", values="unique_bytes_zstd")
    delta = per_rows.pivot_table(index="package", columns="strategy", values="unique_bytes_delta")
    logical = per_rows.groupby("package")["logical_bytes"].first()
    gain = (packed["structural"] / packed["structural+nested"]).sort_values(ascending=False)
    gain_delta = delta["structural"] / delta["structural+nested"]
    changed = gain[gain > 1.01]
    changed_delta = gain_delta[gain_delta > 1.01]
    project_rows = []
    for package, g in gain.head(limit).items():
        cells = [f"{_mib(packed.loc[package, s])} / {_mib(delta.loc[package, s])}" for s in shown if s != "whole"]
        project_rows.append([str(package), _mib(logical[package]), *cells, f"{g:.2f}x / {gain_delta[package]:.2f}x"])
    header = ["project", "archives MiB", *[f"`{s}` MiB" for s in shown if s != "whole"], "structural / nested"]
    note = (f"\n\nStored MiB per project at rest, zstd alone / with deltas, the {min(limit, len(gain))} where "
            f"opening nested members saves most; it saves more than 1% for {len(changed)} of {len(gain)} projects "
            f"with zstd alone and for {len(changed_delta)} with deltas.")
    return table + "\n\n" + _table(header, project_rows) + note


def pd_frame(columns: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]

    return pd.DataFrame(columns)


def figures_section(paths: dict[str, Path]) -> str:
    captions = {
        "cumulative": "Stored bytes as versions arrive, for the largest projects, the one where structural "
                      "import does worst against `whole` and the one where opening nested members saves most.",
        "dedup-ratio": "Dedup ratio per strategy over all projects (blocks counted once overall).",
        "upgrade-bytes": "Bytes a user holding the previous version fetches, as a share of the new archive.",
        "block-sizes": "Distribution of unique block sizes.",
        "structural-vs-whole": "Per project: structural's stored bytes relative to `whole`, against how well "
                               "the archives compress.",
    }
    out = []
    for name, path in paths.items():
        rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        out.append(f"![{captions.get(name, name)}]({rel})\n\n*{captions.get(name, name)}*")
    return "\n\n".join(out)


def replace_section(text: str, name: str, body: str) -> str:
    """Replace what is between the ``name`` markers (appending the markers when absent)."""
    begin, end = f"<!-- BEGIN:{name} -->", f"<!-- END:{name} -->"
    block = f"{begin}\n{body}\n{end}"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    return text.rstrip("\n") + f"\n\n{block}\n"


def build_sections(meta: dict[str, Any], events: pd.DataFrame, summary: pd.DataFrame,
                   figure_paths: dict[str, Path]) -> dict[str, str]:
    sections: dict[str, Callable[[], str]] = {
        "run": lambda: run_section(meta, events),
        "overall": lambda: overall_section(summary),
        "projects": lambda: projects_section(summary),
        "losses": lambda: losses_section(summary),
        "bound": lambda: bound_section(summary),
        "targets": lambda: targets_section(summary),
        "nested": lambda: nested_section(summary),
        "figures": lambda: figures_section(figure_paths),
    }
    return {name: make() for name, make in sections.items()}


def cmd_report(args: argparse.Namespace) -> int:
    run_dir = Path(args.run)
    meta, events, blocks, summary = load_run(run_dir)
    paths = draw_all(events, blocks, summary, Path(args.figures), telling_projects(summary))
    report = Path(args.report)
    text = report.read_text() if report.exists() else "# Dedup benchmark report\n"
    for name, body in build_sections(meta, events, summary, paths).items():
        text = replace_section(text, name, body)
    report.write_text(text)
    print(f"bench report: {report} from {run_dir.resolve()}; {len(paths)} figures in {args.figures}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="rebuild REPORT.md's tables and figures from a run")
    p.add_argument("--run", default=str(DEFAULT_RUN), help="run directory (default: runs/latest)")
    p.add_argument("--report", default=str(REPORT), help="the Markdown file to update (default: REPORT.md)")
    p.add_argument("--figures", default=str(FIGURES), help="where the PNGs go (default: docs/figures)")
    p.set_defaults(handler=cmd_report)
