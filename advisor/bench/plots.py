"""The report's PNGs: weighted τ per estimator, and score vs ground-truth accuracy per target.

Both take the analysis of :func:`advisor.bench.report.analyse` (plain dicts) and write one PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fmt(v, digits: int = 3) -> str:
    """A number for the report's tables and titles ("–" for None)."""
    return "–" if v is None else f"{v:.{digits}f}"


def mean_or_none(vals) -> float | None:
    """Mean of the values that are not None (None when none are)."""
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else None


def plot_scatter(a: dict, target: str, path: Path) -> None:
    """Score (best cut, oriented) vs test accuracy, one panel per estimator, one point per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ests = list(a["tau_best"])
    cols = min(5, len(ests))
    rows = int(np.ceil(len(ests) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    acc, std = a["acc"][target], a["std"][target]
    for ax, e in zip(axes.flat, ests):
        pts = [(m, a["best"][e][target].get(m), acc[m], std.get(m) or 0.0) for m in acc if a["best"][e][target].get(m) is not None]
        if pts:
            ax.errorbar([p[1] for p in pts], [p[2] for p in pts], yerr=[p[3] for p in pts], fmt="o", capsize=2, markersize=4)
            for m, x, y, _ in pts:
                ax.annotate(m[:14], (x, y), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_title(f"{e} (τ {fmt(a['tau_best'][e][target], 2)})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(ests):]:
        ax.axis("off")
    fig.suptitle(f"{target}: score (best cut) vs test accuracy", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_tau(a: dict, path: Path) -> None:
    """Mean weighted τ per estimator (bar) with each target's τ (dots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = a["tau_best"]
    ests = sorted(tau, key=lambda e: (mean_or_none(tau[e].values()) is None, mean_or_none(tau[e].values()) or 0.0))
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(ests) + 1.5))
    ax.barh(range(len(ests)), [mean_or_none(tau[e].values()) or 0.0 for e in ests], color="tab:blue", alpha=0.5, label="mean")
    for i, e in enumerate(ests):
        vals = [v for v in tau[e].values() if v is not None]
        ax.plot(vals, [i] * len(vals), "k.", markersize=5)
    ax.set_yticks(range(len(ests)), ests, fontsize=8)
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("weighted Kendall τ vs test accuracy (dots: targets)")
    ax.set_xlim(-1.05, 1.05)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
