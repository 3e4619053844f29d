"""Scoring: every estimator at every cut of one model (cached scores reused, new ones stored), and
the best cut per (model, estimator) with the models ranked."""

from __future__ import annotations

import time

from advisor.data.probe import Probe
from advisor.estimators import Estimator, safe_score
from advisor.ranking.extraction import ModelFeatures
from advisor.ranking.features import PRE_LOGITS
from advisor.store import artifacts, db


def score_model(mf: ModelFeatures, probe: Probe, estimators: list[Estimator], inputs: dict, reference_key: str,
                refresh: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Every estimator at every cut of one model; cached scores are reused (except the estimators
    named in ``refresh``, recomputed: their new scores replace the cached ones, and a cached score
    whose recomputation fails is deleted), new ones stored.

    ``inputs`` holds what estimators may need: ``logits``, ``reference``,
    ``reference_attributions`` and per-cut ``attributions`` (a dict cut → array)."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
    cached: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    if db.cache_path().exists():
        with db.connect(read_only=True) as con:
            cached = artifacts.load_scores(con, fp, probe.hash, ph)
    out, new, stale = [], [], []
    for est in estimators:
        ref_key = reference_key if "reference" in est.needs else ""
        for cut in mf.cuts:
            hit = None if est.name in refresh else cached.get((est.name, est.version, ref_key, cut))
            if hit is not None:
                score, secs, error = hit[0], hit[1], None
            else:
                attributions = inputs.get("attributions")
                cut_inputs = {**inputs, "attributions": None if attributions is None else attributions.get(cut)}
                t0 = time.perf_counter()
                score, error = safe_score(est, mf.features[cut], probe.labels, **cut_inputs)
                secs = time.perf_counter() - t0
                if error is None:
                    new.append([est.name, est.version, ref_key, fp, probe.hash, ph, cut, score, secs])
                elif (est.name, est.version, ref_key, cut) in cached:
                    stale.append([est.name, est.version, ref_key, fp, probe.hash, ph, cut])
            out.append({"model": mf.model_id, "cut": cut, "estimator": est.name, "score": score, "error": error, "seconds": secs})
    if new or stale:
        with db.transaction() as con:
            artifacts.store_scores(con, new, stale)
    return out



def best_rows(cut_scores: list[dict], estimators: list[Estimator], models: list[ModelFeatures], probe: Probe,
              failed: dict[str, str] | None = None) -> list[dict]:
    """One row per (model, estimator): the best cut, its score and the model's rank. A model in
    ``failed`` (id -> reason) gets rows with no score, ``error`` and ``model_error`` the reason."""
    rows = []
    failed = failed or {}
    for est in estimators:
        sign = 1.0 if est.higher_is_better else -1.0
        per_model = []
        for mf in models:
            mine = [r for r in cut_scores if r["model"] == mf.model_id and r["estimator"] == est.name]
            ok = [r for r in mine if r["score"] is not None]
            best = max(ok, key=lambda r: sign * r["score"]) if ok else None
            errors = sorted({r["error"] for r in mine if r["error"]})
            per_model.append({
                "model": mf.model_id,
                "estimator": est.name,
                "cut": best["cut"] if best else None,
                "score": best["score"] if best else None,
                "rank": None,
                "higher_is_better": est.higher_is_better,
                "final_cut_score": next((r["score"] for r in mine if r["cut"] == PRE_LOGITS), None),
                "cut_scores": {r["cut"]: r["score"] for r in mine},
                "error": "; ".join(errors) if errors and best is None else None,
                "pretrain": mf.resolved.pretrain,
                "weights_from": mf.resolved.weights_from,
                "extract_seconds": round(mf.extract_seconds, 3),
                "score_seconds": round(sum(r["seconds"] for r in mine), 4),
                "cached": mf.from_cache,
                "n_images": len(probe),
                "model_error": None,
            })
        for model_id, reason in failed.items():
            per_model.append({
                "model": model_id, "estimator": est.name, "cut": None, "score": None, "rank": None,
                "higher_is_better": est.higher_is_better, "final_cut_score": None, "cut_scores": {},
                "error": reason, "pretrain": "", "weights_from": "", "extract_seconds": None, "score_seconds": None,
                "cached": False, "n_images": len(probe), "model_error": reason,
            })
        ranked = sorted((r for r in per_model if r["score"] is not None), key=lambda r: -sign * r["score"])
        for i, r in enumerate(ranked, start=1):
            r["rank"] = i
        rows += ranked + [r for r in per_model if r["score"] is None]
    return rows
