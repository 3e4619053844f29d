"""Closing the loop of ``advisor validate``: each estimator's weighted Kendall τ
(``scipy.stats.weightedtau``) between its scores and the measured accuracies, across models and across
the cuts of each model, stored in ``estimator_agreement``. :func:`weighted_tau` is also the τ of
``advisor bench``'s metrics."""

from __future__ import annotations

import numpy as np

from advisor.data.probe import Probe
from advisor.ranking.decoding import MIN_IMAGES
from advisor.store.runs import store_agreement
from advisor.validation.result import ValidationRow


def weighted_tau(measured: list[float], predicted: list[float]) -> float | None:
    """``scipy.stats.weightedtau`` (defaults: hyperbolic weigher, top-heavy) between measured
    accuracies and an estimator's scores (oriented so higher = better). None for < 2 items."""
    from scipy.stats import weightedtau

    if len(measured) < 2:
        return None
    tau = weightedtau(np.asarray(measured, float), np.asarray(predicted, float)).statistic
    return None if not np.isfinite(tau) else float(tau)


def close_the_loop(spec, train: Probe, rows: list[ValidationRow], estimators, ctx, log, warn=None, progress=None) -> list[dict]:
    """Each estimator's weighted τ against the measured accuracies: across models (each model's
    best measured cut vs its best-cut score) and across the cuts of each model (≥ 3 cuts). ``warn``
    is told when the τ across models rests on fewer than 4 models."""
    from advisor.estimators import get_estimator
    from advisor.ranking.ranking import rank

    done = [r for r in rows if r.status == "done" and r.val_acc is not None]
    models = list(dict.fromkeys(r.model for r in done))
    if not done:
        return []
    if len(train) < MIN_IMAGES:
        log(f"note: {too_small_note(train)}")
        return []
    acc = {}
    for r in done:
        acc.setdefault((r.model, r.cut), []).append(r.val_acc)
    mean_acc = {k: float(np.mean(v)) for k, v in acc.items()}
    result = rank(train, models, estimators, weights_dir=ctx.weights_dir, offline=ctx.offline, command="validate-scores",
                  progress=progress)
    scores = {}
    for cs in result.cut_scores:
        if cs["score"] is not None and np.isfinite(cs["score"]):
            sign = 1 if get_estimator(cs["estimator"]).higher_is_better else -1
            scores[(cs["estimator"], cs["model"], cs["cut"])] = sign * cs["score"]
    agreement = []
    ests = list(dict.fromkeys(cs["estimator"] for cs in result.cut_scores))
    for est in ests:
        if len(models) >= 2:
            best_acc = [max(v for (m, _), v in mean_acc.items() if m == model) for model in models]
            best_score = [max((v for (e, m, _), v in scores.items() if e == est and m == model), default=np.nan) for model in models]
            ok = [i for i, s in enumerate(best_score) if np.isfinite(s)]
            tau = weighted_tau([best_acc[i] for i in ok], [best_score[i] for i in ok])
            agreement.append({"scope": "models", "estimator": est, "n": len(ok), "weighted_tau": tau})
        for model in models:
            cuts = [c for (m, c) in mean_acc if m == model and (est, m, c) in scores]
            if len(cuts) >= 3:
                tau = weighted_tau([mean_acc[(model, c)] for c in cuts], [scores[(est, model, c)] for c in cuts])
                agreement.append({"scope": f"cuts of {model}", "estimator": est, "n": len(cuts), "weighted_tau": tau})
    from advisor.data.small_samples import tau_note

    few = [a["estimator"] for a in agreement if a["scope"] == "models"]
    if warn is not None and few and (note := tau_note(len(models), few)):
        warn(note)
    store_agreement(spec, train.hash, agreement)
    return agreement


def too_small_note(train: Probe) -> str:
    """Why the estimator agreement is skipped for a training part below ``MIN_IMAGES``."""
    return (f"the training part has {len(train)} image(s) and estimators need at least {MIN_IMAGES}: "
            "the estimator agreement is skipped (the measured accuracies are not); add images to compare them")

