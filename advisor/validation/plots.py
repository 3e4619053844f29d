"""The defrosting profile plot of ``advisor validate --plot`` (and of its ``--report``)."""

from __future__ import annotations

from advisor.validation.result import ValidationResult, best_cut


def plot_profiles(result: ValidationResult, path: str) -> None:
    """Defrosting profile(s): mean ± std validation accuracy per cut, one line per model, best cut starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in result.rows))
    fig, axes = plt.subplots(1, len(models), figsize=(max(5.0, 4.5 * len(models)), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        prof = result.profile(model)
        if not prof:
            ax.set_title(f"{model}: no finished run")
            continue
        cuts = list(prof)
        mean = [prof[c][0] for c in cuts]
        std = [prof[c][1] for c in cuts]
        ax.errorbar(range(len(cuts)), mean, yerr=std, marker="o", capsize=3)
        best = cuts.index(best_cut(prof))
        ax.plot([best], [mean[best]], marker="*", markersize=16, color="tab:red", linestyle="none", label=f"best: {cuts[best]}")
        ax.set_xticks(range(len(cuts)), cuts, rotation=30, ha="right")
        ax.set_xlabel("frozen up to (cut)")
        ax.set_ylabel("validation accuracy")
        ax.set_title(model.split("/")[-1][:40], fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
