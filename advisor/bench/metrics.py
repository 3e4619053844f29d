"""How well an estimator's ranking matches measured accuracy: the metrics of ``advisor bench``.

Pure functions on plain dicts (model → accuracy, model → score), kept apart from the training and
the report so each can be checked by hand. Scores are *oriented* before they arrive here (higher =
better; a lower-is-better estimator is negated), so every metric reads the same way.

- :func:`weighted_tau`: ``scipy.stats.weightedtau`` with its defaults (hyperbolic weigher, top-heavy:
  swapping the two best models costs more than swapping the two worst), as ``advisor validate`` uses.
- :func:`top1_hit` / :func:`regret`: what a user loses by trusting the estimator's single pick.
- :func:`transfer_accuracy`: the ground truth of one (model, target): the better, by validation
  accuracy, of the full fine-tune (at its chosen lr) and the frozen linear probe.
- :func:`noise_band`: ground-truth noise from the seeds; a target whose models all lie within
  2 × the mean seed std cannot rank anything and is flagged.
- :func:`rank_average`: a combination of estimators (mean of per-estimator ranks).
- :func:`fit_linear_combination` / :func:`apply_linear_combination`: a learned combination, a ridge
  regression of standardised accuracies on standardised estimator scores.
- :func:`leave_one_target_out`: choose the default estimator (or combination) on all targets but
  one and score the choice on the held-out one, so the reported number is not tuned on itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from advisor.ranking.advisor_score import apply_linear_combination, rank_average, zscores  # noqa: F401 - one implementation, shared with advisor rank
from advisor.validation.agreement import weighted_tau as _weighted_tau


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


TRUTHS = ("transfer", "fine-tune")  # what the report ranks by, and its robustness check


def transfer_accuracy(ground_truth: Mapping, probe: Mapping | None, truth: str = "transfer") -> dict:
    """The accuracy a practitioner gets from a model on a target, chosen without looking at the test part.

    ``ground_truth``: the fine-tune summary (``val_mean``, ``test_mean``, ``test_std`` at the lr chosen
    on validation); ``probe``: the frozen linear probe (``val_acc``, ``test_acc``). With ``truth =
    "transfer"`` the protocol with the higher validation accuracy wins (ties: the fine-tune) — freezing
    every layer is one of the transfer choices this tool recommends between, and a fine-tune that ends
    below its own frozen probe (too few steps, small batches for batch norm) otherwise reports a model
    as worse than its frozen features already are. ``truth = "fine-tune"`` takes the fine-tune alone.
    Returns ``{protocol, val, test, std}``: accuracies in [0, 1]; ``std`` the fine-tune's seed std (the
    noise of the target's ground truth, whichever protocol wins); ``test`` None when nothing finished."""
    if truth not in TRUTHS:
        raise ValueError(f"truth must be one of {TRUTHS}, not {truth!r}")
    ft = {"protocol": "fine-tune", "val": ground_truth.get("val_mean"), "test": ground_truth.get("test_mean"),
          "std": ground_truth.get("test_std")}
    pr = probe or {}
    if truth == "fine-tune" or pr.get("val_acc") is None or pr.get("test_acc") is None:
        return ft
    if ft["test"] is None or ft["val"] is None or pr["val_acc"] > ft["val"]:
        return {"protocol": "linear probe", "val": pr["val_acc"], "test": pr["test_acc"], "std": ft["std"]}
    return ft


def noise_band(std: Mapping[str, float], acc: Mapping[str, float]) -> dict:
    """``noise`` = mean over models of the seed std of test accuracy (None when no model has two seeds:
    one seed cannot measure it; pass only stds of ≥ 2 seeds); ``flagged`` when the spread of the
    models' accuracies (max − min) is below 2 × noise, or zero (all tied): the ground truth cannot
    order them."""
    stds = [s for s in std.values() if s is not None]
    noise = float(np.mean(stds)) if stds else None
    vals = [a for a in acc.values() if a is not None]
    spread = float(max(vals) - min(vals)) if vals else 0.0
    return {"noise": noise, "spread": spread, "flagged": bool(spread == 0 or (noise is not None and spread < 2 * noise))}


def layer_distance(cuts: list[str], picked: str | None, best: str | None) -> int | None:
    """How many cut positions the recommended freeze cut lies from the best measured defrost cut."""
    if picked is None or best is None or picked not in cuts or best not in cuts:
        return None
    return abs(cuts.index(picked) - cuts.index(best))


Combo = tuple[str, ...]


LEARNED: Combo = ("learned",)


def choose(tau_of: Callable[[Combo, str], float | None], estimators: list[str], targets: list[str],
           k_values=(1, 2, 3), learned: Callable[[list[str]], Callable[[str], float | None]] | None = None) -> dict | None:
    """The candidate with the best mean τ over ``targets``: the top-k single estimators (by their own
    mean τ there) rank-averaged, for each k in ``k_values`` (k = 1: the best single estimator), and,
    when ``learned`` is given, a combination fitted on the targets (``learned(fit_targets)`` returns
    ``t -> τ`` of the fit on target ``t``). A learned combination is judged by its inner
    leave-one-target-out τ (fitted on all but one of ``targets``, scored on that one), never by its
    fit on the targets it is scored on. Ties go to the smaller k, then to the rank-averages.
    Returns ``{combo, mean_tau, k, singles}`` (``singles``: the estimators by mean τ; ``k`` 0 for
    the learned combination)."""
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
    if learned is not None and len(targets) >= 3:
        inner = [learned([g for g in targets if g != held])(held) for held in targets]
        inner = [t for t in inner if t is not None]
        if inner and (best is None or float(np.mean(inner)) > best["mean_tau"]):
            best = {"combo": LEARNED, "mean_tau": float(np.mean(inner)), "k": 0, "singles": [e for e, _ in singles]}
    return best


def leave_one_target_out(tau_of: Callable[[Combo, str], float | None], estimators: list[str], targets: list[str],
                         k_values=(1, 2, 3), learned: Callable[[list[str]], Callable[[str], float | None]] | None = None) -> dict:
    """For each target: :func:`choose` on the other targets, then the choice's τ on the held-out one
    (a learned combination is refitted on the other targets only). ``mean_tau`` is the selection
    procedure's out-of-sample mean; ``final`` is the choice on all targets (what ``advisor rank``
    should default to)."""
    folds = []
    for held in targets:
        train = [t for t in targets if t != held]
        c = choose(tau_of, estimators, train, k_values, learned)
        if c is None:
            held_tau = None
        elif c["combo"] == LEARNED:
            held_tau = learned(train)(held)
        else:
            held_tau = tau_of(c["combo"], held)
        folds.append({"held_out": held, "combo": None if c is None else c["combo"],
                      "train_mean_tau": None if c is None else c["mean_tau"], "held_out_tau": held_tau})
    vals = [f["held_out_tau"] for f in folds if f["held_out_tau"] is not None]
    return {"folds": folds, "mean_tau": float(np.mean(vals)) if vals else None,
            "final": choose(tau_of, estimators, targets, k_values, learned)}


def fit_linear_combination(scores: Mapping[str, Mapping[str, Mapping[str, float | None]]], acc: Mapping[str, Mapping[str, float]],
                           members: list[str], targets: list[str], alpha: float = 1.0) -> dict[str, float]:
    """Weights ``w`` of a ridge regression (penalty ``alpha``·‖w‖², no intercept) of each target's
    standardised accuracies on its standardised estimator scores, pooled over ``targets``.

    ``scores[e][t][m]``: estimator ``e``'s oriented score (higher = better) of model ``m`` on target
    ``t``; ``acc[t][m]``: its measured accuracy. Standardising within each target (:func:`zscores`)
    makes targets with different accuracy and score scales comparable, and the combination a pure
    ranking rule: a model's combined score on a new target is ``Σ_e w_e z_e(m)``
    (:func:`apply_linear_combination`). Closed form ``w = (ZᵀZ + αI)⁻¹ Zᵀ y`` in float64."""
    rows, ys = [], []
    for t in targets:
        models = [m for m in acc[t] if acc[t][m] is not None]
        if len(models) < 2:
            continue
        rows.append(np.stack([zscores(scores[e][t], models) for e in members], axis=1))
        ys.append(zscores(acc[t], models))
    if not rows:
        return {e: 0.0 for e in members}
    Z, y = np.concatenate(rows), np.concatenate(ys)
    w = np.linalg.solve(Z.T @ Z + alpha * np.eye(len(members)), Z.T @ y)
    return dict(zip(members, w.tolist()))
