"""How well an estimator's ranking matches measured accuracy: the metrics of ``advisor bench``.

Pure functions on plain dicts (model → accuracy, model → score), kept apart from the training and
the report so each can be checked by hand. Scores are *oriented* before they arrive here (higher =
better; a lower-is-better estimator is negated), so every metric reads the same way.

- :func:`weighted_tau`: ``scipy.stats.weightedtau`` with its defaults (hyperbolic weigher, top-heavy:
  swapping the two best models costs more than swapping the two worst), as ``advisor validate`` uses.
- :func:`top1_hit` / :func:`regret`: what a user loses by trusting the estimator's single pick.
- :func:`noise_band`: ground-truth noise from the seeds; a target whose models all lie within
  2 × the mean seed std cannot rank anything and is flagged.
- :func:`rank_average`: a combination of estimators (mean of per-estimator ranks).
- :func:`leave_one_target_out`: choose the default estimator (or combination) on all targets but
  one and score the choice on the held-out one, so the reported number is not tuned on itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from advisor.validate import weighted_tau as _weighted_tau


def _common(acc: Mapping[str, float], score: Mapping[str, float | None]) -> list[str]:
    return [m for m in acc if acc[m] is not None and score.get(m) is not None and np.isfinite(score[m])]


def weighted_tau(acc: Mapping[str, float], score: Mapping[str, float | None]) -> float | None:
    """Weighted Kendall τ between accuracy and score over the models both have (None: < 2 models
    or a constant side)."""
    ms = _common(acc, score)
    return _weighted_tau([acc[m] for m in ms], [score[m] for m in ms])


def pick(score: Mapping[str, float | None]) -> str | None:
    """The model the estimator ranks first (ties: the first in order)."""
    ok = [m for m, s in score.items() if s is not None and np.isfinite(s)]
    return max(ok, key=lambda m: score[m]) if ok else None


def top1_hit(acc: Mapping[str, float], score: Mapping[str, float | None]) -> bool | None:
    """Whether the estimator's pick is a most accurate model (a tie for best counts as a hit)."""
    m = pick({k: score.get(k) for k in _common(acc, score)})
    return None if m is None else bool(acc[m] >= max(acc[k] for k in _common(acc, score)))


def regret(acc: Mapping[str, float], score: Mapping[str, float | None]) -> float | None:
    """Accuracy lost by taking the estimator's pick instead of the best measured model."""
    ms = _common(acc, score)
    m = pick({k: score[k] for k in ms})
    return None if m is None else float(max(acc[k] for k in ms) - acc[m])


def noise_band(std: Mapping[str, float], acc: Mapping[str, float]) -> dict:
    """``noise`` = mean over models of the seed std of test accuracy; ``flagged`` when the spread of
    the models' accuracies (max − min) is below 2 × noise, or zero (all tied): the ground truth
    cannot order them."""
    noise = float(np.mean([s for s in std.values() if s is not None])) if std else 0.0
    vals = [a for a in acc.values() if a is not None]
    spread = float(max(vals) - min(vals)) if vals else 0.0
    return {"noise": noise, "spread": spread, "flagged": bool(spread < 2 * noise or spread == 0)}


def rank_average(scores: list[Mapping[str, float | None]]) -> dict[str, float]:
    """Mean rank (1 = worst) of each model over several estimators' oriented scores; models any
    estimator could not score are left out (their rank would be undefined)."""
    from scipy.stats import rankdata

    models = [m for m in scores[0] if all(s.get(m) is not None and np.isfinite(s[m]) for s in scores)]
    if not models:
        return {}
    ranks = np.mean([rankdata([s[m] for m in models]) for s in scores], axis=0)
    return dict(zip(models, ranks.tolist()))


def layer_distance(cuts: list[str], picked: str | None, best: str | None) -> int | None:
    """How many cut positions the recommended freeze cut lies from the best measured defrost cut."""
    if picked is None or best is None or picked not in cuts or best not in cuts:
        return None
    return abs(cuts.index(picked) - cuts.index(best))


Combo = tuple[str, ...]


def choose(tau_of: Callable[[Combo, str], float | None], estimators: list[str], targets: list[str],
           k_values=(1, 2, 3)) -> dict | None:
    """The candidate with the best mean τ over ``targets``: the top-k single estimators (by their own
    mean τ there) rank-averaged, for each k in ``k_values`` (k = 1: the best single estimator). Ties
    go to the smaller k. Returns ``{combo, mean_tau, k, singles}`` (``singles``: the estimators by mean τ)."""
    def mean_tau(combo: Combo) -> float | None:
        vals = [t for t in (tau_of(combo, g) for g in targets) if t is not None]
        return float(np.mean(vals)) if vals else None

    singles = [(e, mean_tau((e,))) for e in estimators]
    singles = sorted([(e, t) for e, t in singles if t is not None], key=lambda et: (-et[1], et[0]))
    best = None
    for k in k_values:
        if k > len(singles):
            break
        combo = tuple(sorted(e for e, _ in singles[:k]))
        t = mean_tau(combo)
        if t is not None and (best is None or t > best["mean_tau"]):
            best = {"combo": combo, "mean_tau": t, "k": k, "singles": [e for e, _ in singles]}
    return best


def leave_one_target_out(tau_of: Callable[[Combo, str], float | None], estimators: list[str], targets: list[str],
                         k_values=(1, 2, 3)) -> dict:
    """For each target: :func:`choose` on the other targets, then the choice's τ on the held-out one.
    ``mean_tau`` is the selection procedure's out-of-sample mean; ``final`` is the choice on all
    targets (what ``advisor rank`` should default to)."""
    folds = []
    for held in targets:
        c = choose(tau_of, estimators, [t for t in targets if t != held], k_values)
        folds.append({"held_out": held, "combo": None if c is None else c["combo"],
                      "train_mean_tau": None if c is None else c["mean_tau"],
                      "held_out_tau": None if c is None else tau_of(c["combo"], held)})
    vals = [f["held_out_tau"] for f in folds if f["held_out_tau"] is not None]
    return {"folds": folds, "mean_tau": float(np.mean(vals)) if vals else None,
            "final": choose(tau_of, estimators, targets, k_values)}

