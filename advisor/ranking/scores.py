"""Scoring: every estimator at every cut of one model (cached scores reused, new ones stored), and
the best cut per (model, estimator) with the models ranked."""

from __future__ import annotations

import time
from dataclasses import dataclass

from advisor.data.probe import Probe
from advisor.estimators import Estimator, safe_score
from advisor.ranking.extraction import ModelFeatures
from advisor.ranking.features import PRE_LOGITS
from advisor.store import artifacts, db


def cached_scores(mf: ModelFeatures, probe: Probe) -> dict:
    """The cached scores of one model on the probe: (estimator, version, reference key, cut) → (score, seconds)."""
    if not db.cache_path().exists():
        return {}
    with db.connect(read_only=True) as con:
        return artifacts.load_scores(con, mf.resolved.fingerprint, probe.hash, mf.preproc_hash)


def model_inputs(mf: ModelFeatures, reference, attributions: dict | None) -> dict:
    """What an estimator may need besides a cut's features (its ``needs``): the model's ``logits``, the
    target reference's features and DEPARA attributions (``reference``: a
    :class:`advisor.ranking.reference.TargetReference` or None) and the model's own attributions (cut → array)."""
    return {"logits": mf.logits, "reference": None if reference is None else reference.features,
            "reference_attributions": None if reference is None else reference.attributions, "attributions": attributions}


def refreshed(model_id: str, estimators: list[Estimator], refresh_models: set[str], refresh_ests: set[str]) -> frozenset[str]:
    """The estimators whose cached scores of ``model_id`` are recomputed: every one for a model named in
    ``--refresh``, else those named there."""
    return frozenset(e.name for e in estimators) if model_id in refresh_models else frozenset(refresh_ests)


@dataclass
class Scored:
    """:func:`compute_scores`' result: ``rows`` (one per estimator × cut, as :func:`score_model` returns
    them), and the cache rows to write (``new``) and to delete (``stale``) with :func:`store_scores`."""

    rows: list[dict]
    new: list[list]
    stale: list[list]


def compute_scores(mf: ModelFeatures, probe: Probe, estimators: list[Estimator], inputs: dict, reference_key: str,
                   cached: dict, refresh: set[str] | frozenset[str] = frozenset()) -> Scored:
    """Every estimator at every cut of one model, the ``cached`` ones (:func:`cached_scores`) reused
    unless named in ``refresh``; touches no cache (a Ray worker runs it: :mod:`advisor.scale`)."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
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
    return Scored(out, new, stale)


def store_scores(con, scored: Scored) -> None:
    """Write :func:`compute_scores`' new scores and delete its stale ones with the open transaction ``con``."""
    if scored.new or scored.stale:
        artifacts.store_scores(con, scored.new, scored.stale)


def score_model(mf: ModelFeatures, probe: Probe, estimators: list[Estimator], inputs: dict, reference_key: str,
                refresh: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Every estimator at every cut of one model; cached scores are reused (except the estimators
    named in ``refresh``, recomputed: their new scores replace the cached ones, and a cached score
    whose recomputation fails is deleted), new ones stored.

    ``inputs`` holds what estimators may need: ``logits``, ``reference``,
    ``reference_attributions`` and per-cut ``attributions`` (a dict cut → array)."""
    scored = compute_scores(mf, probe, estimators, inputs, reference_key, cached_scores(mf, probe), refresh)
    if scored.new or scored.stale:
        with db.transaction() as con:
            store_scores(con, scored)
    return scored.rows


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
