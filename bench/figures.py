"""The benchmark's figures, drawn with matplotlib from a run's tables only (no archive is read).

Each function takes the loaded tables and returns a Figure; :func:`draw_all` writes them as PNGs.
The notebook calls the same functions, so the report and the notebook never disagree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import pandas as pd  # type: ignore[import-untyped,unused-ignore]
    from matplotlib.figure import Figure

MiB: Final = 1024 * 1024
#: Strategies drawn in the per-project and block-size figures (all of them would be unreadable):
#: the baseline, the two IPIP-499 fixed profiles, one archive CDC, the structural variants (with
#: nested members opened too), the casync-like stream and the bound.
HIGHLIGHT: Final = ("whole", "fixed-262144", "buzhash", "structural", "structural-v1", "structural+fastcdc",
                    "structural+nested", "stream-buzhash", "delta-zstd")
#: Block-size histogram bins: powers of two from 16 B to 4 MiB (chunks stay under the 2 MiB block limit).
SIZE_BINS: Final = tuple(2.0 ** k for k in range(4, 23))


#: Distinct colours for the highlighted strategies (tab10), so the lines of one family stay apart.
COLORS: Final = {
    "whole": "#1f77b4", "fixed-262144": "#17becf", "buzhash": "#2ca02c", "structural": "#d62728",
    "structural-v1": "#ff7f0e", "structural+fastcdc": "#9467bd", "stream-buzhash": "#e377c2",
    "structural+nested": "#8c564b", "delta-zstd": "#7f7f7f",
}


def color(strategy: str) -> str:
    """One colour per strategy across every figure: fixed for the highlighted ones, else the
    strategy's place in the registry on the tab20 map."""
    from matplotlib import colormaps

    from .strategies import STRATEGIES

    if strategy in COLORS:
        return COLORS[strategy]
    names = list(STRATEGIES)
    index = names.index(strategy) if strategy in names else len(names)
    rgba = colormaps["tab20"](index % 20)
    return "#{:02x}{:02x}{:02x}".format(*(round(c * 255) for c in rgba[:3]))


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _present(names: Sequence[str], available: Sequence[str]) -> list[str]:
    return [n for n in names if n in set(available)]


def telling_projects(summary: pd.DataFrame, count: int = 4) -> list[str]:
    """The largest projects by archive bytes, plus where structural import does worst against whole,
    plus (one more panel) where opening nested members saves most at rest, when the run has it."""
    per = summary[summary["package"] != "ALL"]
    largest = [str(p) for p in per[per["strategy"] == per["strategy"].iloc[0]]
               .sort_values("logical_bytes", ascending=False)["package"]]
    chosen = largest[:max(1, count - 1)]
    pivot = per.pivot_table(index="package", columns="strategy", values="unique_bytes")
    if {"structural", "whole"} <= set(pivot.columns):
        worst = (pivot["structural"] / pivot["whole"]).drop(labels=chosen, errors="ignore")
        if len(worst):
            chosen.append(str(worst.idxmax()))
    chosen = chosen[:count]
    packed = per.pivot_table(index="package", columns="strategy", values="unique_bytes_zstd")
    if {"structural", "structural+nested"} <= set(packed.columns):
        gain = (packed["structural"] / packed["structural+nested"]).drop(labels=chosen, errors="ignore")
        if len(gain) and gain.max() > 1.01:
            chosen.append(str(gain.idxmax()))
    return chosen


def cumulative(events: pd.DataFrame, projects: Sequence[str], strategies: Sequence[str] = HIGHLIGHT) -> Figure:
    """Stored bytes (MiB) against archives imported, oldest first, one panel per project."""
    fig = _figure(11, 3.2 * ((len(projects) + 1) // 2))
    axes = fig.subplots(max(1, (len(projects) + 1) // 2), 2, squeeze=False).ravel()
    shown = _present(strategies, events["strategy"].unique())
    for ax, project in zip(axes, projects, strict=False):
        chain = events[(events["package"] == project) & (events["strategy"].isin(shown))]
        for strategy in shown:
            line = chain[chain["strategy"] == strategy]
            ax.plot(range(1, len(line) + 1), line["cum_unique_bytes"] / MiB, label=strategy, color=color(strategy),
                    marker="." if len(line) < 30 else None)
        for at_rest in ("structural", "structural+nested"):
            zstd = chain[chain["strategy"] == at_rest]
            if len(zstd):
                ax.plot(range(1, len(zstd) + 1), zstd["cum_unique_bytes_zstd"] / MiB, color=color(at_rest),
                        linestyle="--", label=f"{at_rest}, zstd at rest")
            if len(zstd) and "cum_unique_bytes_delta" in zstd.columns:
                ax.plot(range(1, len(zstd) + 1), zstd["cum_unique_bytes_delta"] / MiB, color=color(at_rest),
                        linestyle="-.", label=f"{at_rest}, zstd + deltas at rest")
        logical = chain[chain["strategy"] == shown[0]]["archive_bytes"].cumsum() / MiB
        ax.plot(range(1, len(logical) + 1), logical, color="black", linestyle=":", label="archives (no dedup)")
        ax.set_title(project)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("archives imported (sdist, wheel per version, oldest first)")
        ax.set_ylabel("stored MiB")
    for ax in axes[len(projects):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=5, fontsize="small")
    return fig


def _overall(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["package"] == "ALL"].set_index("strategy")


def dedup_ratio(summary: pd.DataFrame) -> Figure:
    """Archive bytes / unique stored bytes over all projects, raw blocks and zstd at rest."""
    overall = _overall(summary).sort_values("dedup_ratio")
    fig = _figure(9, 0.35 * len(overall) + 1.5)
    ax = fig.subplots()
    y = range(len(overall))
    if "dedup_ratio_delta" in overall.columns:
        overall = overall.sort_values("dedup_ratio_delta")
        ax.barh([i + 0.27 for i in y], overall["dedup_ratio"], height=0.27, label="blocks as they are")
        ax.barh(list(y), overall["dedup_ratio_zstd"], height=0.27, label="each block zstd -3 at rest")
        ax.barh([i - 0.27 for i in y], overall["dedup_ratio_delta"], height=0.27,
                label="zstd -3, changed leaves as deltas (the store's default)")
    else:
        ax.barh([i + 0.2 for i in y], overall["dedup_ratio"], height=0.4, label="blocks as they are")
        ax.barh([i - 0.2 for i in y], overall["dedup_ratio_zstd"], height=0.4, label="each block zstd -3 at rest")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(list(y), overall.index)
    ax.set_xlabel("dedup ratio: archive bytes / stored bytes (higher is better)")
    ax.legend(loc="lower right")
    return fig


def upgrade_bytes(summary: pd.DataFrame) -> Figure:
    """What a user holding the previous version fetches, as a share of the new archive's size."""
    overall = _overall(summary)
    share = (overall["upgrade_bytes"] / overall["upgrade_archive_bytes"]).sort_values(ascending=False)
    packed = (overall["upgrade_bytes_zstd"] / overall["upgrade_archive_bytes"])[share.index]
    fig = _figure(9, 0.35 * len(share) + 1.5)
    ax = fig.subplots()
    y = range(len(share))
    ax.barh([i + 0.2 for i in y], share * 100, height=0.4, label="blocks as they are")
    ax.barh([i - 0.2 for i in y], packed * 100, height=0.4, label="each block zstd -3 on the wire")
    ax.set_yticks(list(y), share.index)
    ax.legend(loc="upper right")  # the smallest bars (the bound) are on top
    ax.axvline(100, color="black", linewidth=0.8)
    ax.set_xlabel("upgrade download, % of the new archive's size (lower is better)")
    return fig


def block_sizes(blocks: pd.DataFrame, strategies: Sequence[str] = HIGHLIGHT) -> Figure:
    """Distribution of unique block sizes per strategy (count per power-of-two bin, log axis).

    ``whole`` (one block per archive) and ``delta-zstd`` (one patch per archive) are left out:
    their "blocks" are archives and patches, not chunks.
    """
    shown = [s for s in _present(strategies, blocks["strategy"].unique()) if s not in ("whole", "delta-zstd")]
    fig = _figure(10, 4)
    ax = fig.subplots()
    for strategy in shown:
        sizes = blocks[blocks["strategy"] == strategy]["size"]
        ax.hist(sizes.clip(lower=SIZE_BINS[0]), bins=list(SIZE_BINS), histtype="step", label=strategy,
                linewidth=1.4, color=color(strategy))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("block size, bytes")
    ax.set_ylabel("unique blocks")
    ax.legend(fontsize="small", ncols=2)
    return fig


def structural_vs_whole(summary: pd.DataFrame) -> Figure:
    """Per project: structural's stored bytes over whole's, against how much the archives compress."""
    per = summary[summary["package"] != "ALL"].pivot_table(
        index="package", columns="strategy", values=["unique_bytes", "unique_bytes_zstd", "content_bytes",
                                                     "logical_bytes"])
    fig = _figure(8, 5)
    ax = fig.subplots()
    if ("unique_bytes", "structural") not in per.columns or ("unique_bytes", "whole") not in per.columns:
        return fig
    from matplotlib.ticker import FuncFormatter

    squeeze = per[("content_bytes", "whole")] / per[("logical_bytes", "whole")]
    raw = per[("unique_bytes", "structural")] / per[("unique_bytes", "whole")]
    ax.scatter(squeeze, raw, s=14, label="structural, leaves raw")
    for package in raw.sort_values(ascending=False).index[:6]:
        ax.annotate(str(package), (squeeze[package], raw[package]), fontsize="x-small",
                    xytext=(3, 3), textcoords="offset points")
    ax.scatter(squeeze, per[("unique_bytes_zstd", "structural")] / per[("unique_bytes", "whole")], s=14,
               marker="x", label="structural, leaves zstd -3 at rest")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain = FuncFormatter(lambda value, _: f"{value:g}")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_formatter(plain)
        axis.set_minor_formatter(plain)
    ax.set_xlabel("uncompressed content / archive bytes (how much the archives compress)")
    ax.set_ylabel("stored bytes vs whole (below 1: structural wins)")
    ax.legend()
    return fig


def draw_all(events: pd.DataFrame, blocks: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
             projects: Sequence[str] | None = None) -> dict[str, Path]:
    """Write every figure as ``out_dir/bench-<name>.png``; return name -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "cumulative": cumulative(events, projects or telling_projects(summary)),
        "dedup-ratio": dedup_ratio(summary),
        "upgrade-bytes": upgrade_bytes(summary),
        "block-sizes": block_sizes(blocks),
        "structural-vs-whole": structural_vs_whole(summary),
    }
    paths = {}
    for name, fig in figures.items():
        paths[name] = out_dir / f"bench-{name}.png"
        fig.savefig(paths[name], dpi=110)
    return paths
