"""``advisor.ranking.layers``: per-cut profiles of one model and the freeze depth they recommend.

The recommendation (``recommend``) is the cut that maximises the primary estimator's similarity to
the target (Song et al. 2020 eq. 6, k = argmax_k s(G_k, G_e)), moderated by the probe size: small targets
favour deeper freezing (Gerace et al. 2023: with few target examples the optimal defrosting keeps more
pretrained layers; Plested & Gedeon 2019 Table 2: 10–50 examples per class → freeze 5–6 of 7 layers, 100–250 →
1, ≥ 500 → 0). Concretely, every cut whose score is within a tolerance of the best (after scaling
the profile to [0, 1]) is a candidate and the deepest candidate is chosen; the tolerance is 10 % of
the profile's range at ≤ 25 examples per class, 5 % at ≤ 100, and 0 (plain argmax) above.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advisor.ranking.ranking import RankResult, rank

DEFAULT_LAYER_ESTIMATORS = ("depara", "cka", "ii")


def tolerance(examples_per_class: float | None) -> float:
    """Share of the profile's range within which a deeper cut is preferred (see module docstring)."""
    if examples_per_class is None:
        return 0.0
    if examples_per_class <= 25:
        return 0.10
    if examples_per_class <= 100:
        return 0.05
    return 0.0


@dataclass
class Recommendation:
    cut: str
    argmax_cut: str
    estimator: str
    tolerance: float
    examples_per_class: float | None
    rule: str


def per_class(examples_per_class: float | None) -> str:
    """``"12 examples per class"`` (``"1 example"``; ``"an unknown number of ..."`` without labels)."""
    if examples_per_class is None:
        return "an unknown number of examples per class"
    n = round(examples_per_class)
    return f"{n} example per class" if n == 1 else f"{n} examples per class"


def within_words(tol: float) -> str:
    """The size rule of :func:`recommend` in words (one wording for layers, rank and the README)."""
    return f"the deepest cut within {tol:.0%} of the best (on the range of the scores over the cuts)"


def recommend(cuts: list[str], scores: list[float | None], higher_is_better: bool, examples_per_class: float | None,
              estimator: str = "") -> Recommendation | None:
    """The cut to freeze up to (it and every cut before it frozen), from one estimator's profile."""
    valid = [(i, s) for i, s in enumerate(scores) if s is not None]
    if not valid:
        return None
    idx = np.array([i for i, _ in valid])
    vals = np.array([s for _, s in valid], dtype=np.float64) * (1.0 if higher_is_better else -1.0)
    span = vals.max() - vals.min()
    norm = (vals - vals.min()) / span if span > 0 else np.ones_like(vals)
    tol = tolerance(examples_per_class)
    best = int(idx[int(np.argmax(vals))])
    pick = int(idx[norm >= 1.0 - tol - 1e-12].max())
    rule = (f"the best cut by {estimator} (DEPARA's layer selection, Song et al. 2020) is {cuts[best]}; with {per_class(examples_per_class)} "
            f"{within_words(tol)} is preferred (small targets favour deeper freezing, Gerace et al. 2023; Plested & Gedeon 2019)")
    return Recommendation(cut=cuts[pick], argmax_cut=cuts[best], estimator=estimator, tolerance=tol,
                          examples_per_class=examples_per_class, rule=rule)


@dataclass
class LayerProfile:
    model: str
    cuts: list[str]
    estimators: list[str]
    higher_is_better: dict[str, bool]
    scores: dict[str, list[float | None]]  # estimator -> score per cut
    errors: dict[str, list[str | None]]
    recommendation: Recommendation | None
    result: RankResult

    def to_json(self) -> dict:
        rec = self.recommendation
        return {
            "model": self.model,
            "probe": self.result.probe.spec,
            "n_images": len(self.result.probe),
            "reference": self.result.reference,
            "cuts": [{"cut": c, **{e: self.scores[e][i] for e in self.estimators}} for i, c in enumerate(self.cuts)],
            "higher_is_better": self.higher_is_better,
            "recommendation": None if rec is None else rec.__dict__,
            # the reproducibility record (advisor.store.repro): versions and the model's weights
            "versions": next((r.get("versions") for r in self.result.rows), None),
            "weights": dict(self.result.weights),  # the model's, and the reference model's when there is one
            "warnings": list(self.result.warnings),
        }


def layers(model: str, probe, estimators: list[str] | None = None, **kwargs) -> LayerProfile:
    """Score every cut of ``model`` with every estimator and recommend a freeze depth.

    ``kwargs`` go to :func:`advisor.rank` (reference, max_images, img_size, weights_dir, ...).
    The first estimator drives the recommendation."""
    from advisor.estimators import list_estimators

    if estimators is None:
        known = {e.name for e in list_estimators()}
        estimators = [e for e in DEFAULT_LAYER_ESTIMATORS if e in known]
    result = rank(probe, [model], estimators, command="layers", **kwargs)
    mf = result.models[0]
    by = {(r["estimator"], r["cut"]): r for r in result.cut_scores}
    scores = {e: [by[(e, c)]["score"] for c in mf.cuts] for e in estimators}
    errors = {e: [by[(e, c)]["error"] for c in mf.cuts] for e in estimators}
    hib = {r["estimator"]: r["higher_is_better"] for r in result.rows}
    probe_ = result.probe
    epc = len(probe_) / probe_.num_classes if probe_.labels is not None else None
    primary = estimators[0]
    rec = recommend(mf.cuts, scores[primary], hib[primary], epc, primary)
    return LayerProfile(model=model, cuts=mf.cuts, estimators=list(estimators), higher_is_better=hib, scores=scores,
                        errors=errors, recommendation=rec, result=result)


def plot(profile: LayerProfile, path: str, measured: dict[str, tuple[float, float, int]] | None = None) -> None:
    """Draw every estimator's profile over the cuts (each scaled to [0, 1], better = up) and mark the
    pick; ``measured`` (``{cut: (mean, std, runs)}`` from ``advisor validate``) adds the measured
    defrosting profile in accuracy units on a second axis, its best cut starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(profile.cuts))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(x) + 3), 4.2))
    for est in profile.estimators:
        vals = np.array([np.nan if s is None else s for s in profile.scores[est]], dtype=float)
        if np.all(np.isnan(vals)):
            continue
        signed = vals if profile.higher_is_better[est] else -vals
        lo, hi = np.nanmin(signed), np.nanmax(signed)
        norm = (signed - lo) / (hi - lo) if hi > lo else np.ones_like(signed)
        arrow = "" if profile.higher_is_better[est] else " (inverted: lower raw is better)"
        ax.plot(x, norm, marker="o", label=f"{est}{arrow}  [{np.nanmin(vals):.3g} … {np.nanmax(vals):.3g}]")
    rec = profile.recommendation
    if rec is not None:
        k = profile.cuts.index(rec.cut)
        ax.axvline(k, color="crimson", linestyle="--", linewidth=1.2)
        ha = "right" if k == len(x) - 1 else ("left" if k == 0 else "center")
        ax.annotate(f"freeze up to {rec.cut}", (k, 1.03), color="crimson", ha=ha, fontsize=9)
    ax.set_xticks(x, profile.cuts, rotation=35, ha="right")
    ax.set_xlabel("cut point (shallow → deep)")
    ax.set_ylabel("score scaled to [0, 1] (better ↑)")
    ax.set_ylim(-0.05, 1.12)
    p = profile.result.probe
    where = Path(p.spec).name or p.spec  # the folder's name, not the whole path
    ax.set_title(f"{profile.model} on {where} ({len(p)} images), reference: {profile.result.reference}", fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if measured:
        ax2 = ax.twinx()
        cuts = [c for c in profile.cuts if c in measured]
        xs = [profile.cuts.index(c) for c in cuts]
        mean = [measured[c][0] for c in cuts]
        ax2.errorbar(xs, mean, yerr=[measured[c][1] for c in cuts], color="black", marker="s", linewidth=2, capsize=3,
                     label="measured defrost accuracy (right axis)")
        from advisor.validation.result import best_cut

        best = cuts.index(best_cut({c: measured[c] for c in cuts}))
        ax2.plot([xs[best]], [mean[best]], marker="*", markersize=16, color="gold", markeredgecolor="black", linestyle="none",
                 label=f"measured best: {cuts[best]}")
        ax2.set_ylabel("measured validation accuracy")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
