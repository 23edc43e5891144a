"""Histograms of the per-instance measures (the study's Figures 4–7), PNG through matplotlib's Agg backend.

Per reader and group: a 2×2 figure, rows p90 / p95, columns the per-instance mean attention
on M and the per-instance Spearman ρ, with the mean and the number of instances marked.
With several readers, one comparison figure per group overlays their p95 lift and Spearman.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ragdistill.analysis.quality import GROUPS, InstanceMeasures
from ragdistill.utils.io import atomic_file

GROUP_TITLE = {"answer": "answer-related tokens", "question": "question-related tokens (nouns)"}


def slug(name: str) -> str:
    """A file-name-safe version of a reader name or checkpoint path."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip("/")).strip("_")
    return s[-60:] or "reader"


def _values(instances: Sequence[InstanceMeasures], group: str, p: int, key: str) -> np.ndarray:
    vals = []
    for inst in instances:
        g = inst.groups.get(group)
        if g is None or g.skipped:
            continue
        v = getattr(g.by_percentile[p], key)
        if v is not None:
            vals.append(v)
    return np.asarray(vals, dtype=np.float64)


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _hist(
    ax,
    vals: np.ndarray,
    title: str,
    xlabel: str,
    color: str,
    n_undefined: int | None = None,
    range_: tuple[float, float] | None = None,
) -> None:
    if vals.size:
        bins = 20 if range_ is not None else min(30, max(8, vals.size // 3))
        ax.hist(vals, bins=bins, range=range_, color=color, alpha=0.8, edgecolor="white")
        ax.axvline(vals.mean(), color="black", linestyle="--", linewidth=1.2, label=f"mean = {vals.mean():.3g}")
        ax.legend(fontsize=9, loc="best")
    else:
        ax.text(
            0.5,
            0.5,
            "no defined values" + ("\n(ρ undefined: â or sim constant over M)" if n_undefined else ""),
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        if range_ is not None:
            ax.set_xlim(*range_)
    sub = f"n = {vals.size}" + (f", undefined = {n_undefined}" if n_undefined else "")
    ax.set_title(f"{title}\n({sub})", fontsize=10)
    ax.set_xlabel(xlabel, fontsize=10)
    ax.set_ylabel("instances", fontsize=10)
    if range_ is None:  # mean attention is small (≈ 1 / passage tokens): scientific tick labels
        ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 3), useMathText=True)
    ax.grid(alpha=0.3)


def _save(fig, path: Path) -> None:
    with atomic_file(path, "wb", encoding=None) as f:
        fig.savefig(f, format="png", dpi=110, bbox_inches="tight")


def reader_figure(
    instances: Sequence[InstanceMeasures], reader: str, group: str, path: Path, percentiles: Sequence[int] = (90, 95)
) -> Path:
    """Histograms of per-instance mean attention and Spearman for one reader and group."""
    plt = _plt()
    fig, axes = plt.subplots(len(percentiles), 2, figsize=(10, 3.6 * len(percentiles)), squeeze=False)
    for r, p in enumerate(percentiles):
        att = _values(instances, group, p, "mean_attention")
        rho = _values(instances, group, p, "spearman")
        n_meas = att.size
        _hist(axes[r][0], att, f"p{p}: mean attention on M", "mean â over selected tokens", "tab:blue")
        _hist(
            axes[r][1],
            rho,
            f"p{p}: Spearman ρ(â, sim) on M",
            "Spearman ρ",
            "tab:orange",
            n_undefined=n_meas - rho.size,
            range_=(-1.0, 1.0),
        )
    fig.suptitle(f"{reader} — {GROUP_TITLE[group]}", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def comparison_figure(per_reader: dict[str, Sequence[InstanceMeasures]], group: str, path: Path, p: int = 95) -> Path:
    """Overlaid p-th percentile lift and Spearman histograms of several readers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    lifts = {n: _values(v, group, p, "lift") for n, v in per_reader.items()}
    hi = max([float(np.percentile(x, 99)) for x in lifts.values() if x.size] + [2.0])
    for i, (name, inst) in enumerate(per_reader.items()):
        c = colors[i % len(colors)]
        lift, rho = lifts[name], _values(inst, group, p, "spearman")
        if lift.size:
            axes[0].hist(
                lift,
                bins=30,
                range=(0, hi),
                histtype="step",
                linewidth=1.8,
                color=c,
                label=f"{name} (mean {lift.mean():.2f})",
            )
        if rho.size:
            axes[1].hist(
                rho,
                bins=30,
                range=(-1, 1),
                histtype="step",
                linewidth=1.8,
                color=c,
                label=f"{name} (mean {rho.mean():.3f})",
            )
    axes[0].axvline(1.0, color="grey", linestyle=":", label="uniform (lift 1)")
    axes[0].set_xlabel("lift = mean â on M × passage tokens")
    axes[1].set_xlabel("Spearman ρ(â, sim)")
    for ax, t in zip(axes, ("lift", "Spearman")):
        ax.set_ylabel("instances")
        ax.set_title(f"p{p} {t}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"Readers compared — {GROUP_TITLE[group]}", fontsize=12)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def write_figures(
    per_reader: dict[str, Sequence[InstanceMeasures]], out_dir: str | Path, percentiles: Sequence[int] = (90, 95)
) -> list[str]:
    """Write every figure under `out_dir`; returns their paths relative to out_dir's parent ("figures/...")."""
    out_dir = Path(out_dir)
    written: list[str] = []
    for name, inst in per_reader.items():
        for g in GROUPS:
            p = reader_figure(inst, name, g, out_dir / f"{slug(name)}_{g}.png", percentiles)
            written.append(f"{out_dir.name}/{p.name}")
    if len(per_reader) > 1:
        for g in GROUPS:
            p = comparison_figure(per_reader, g, out_dir / f"compare_{g}_p{max(percentiles)}.png", max(percentiles))
            written.append(f"{out_dir.name}/{p.name}")
    return written
