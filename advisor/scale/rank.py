"""``advisor rank --executor ray``: one Ray task per candidate model whose features (or DEPARA
attributions) are not cached yet — build, extract every cut, attribute, score — and the driver
storing each model's results in one transaction as its task finishes.

A model whose inputs are all cached gets no task: the driver reads it and scores what is missing,
as a serial run does. The decoded probe and the reference go to Ray's object store once and every
task reads them from there. Workers touch no cache and need no hub: weights were resolved on the
driver (a weight file travels by path, so a multi-node cluster needs it on a shared filesystem)."""

from __future__ import annotations

from dataclasses import dataclass

from advisor.data.probe import Probe
from advisor.errors import AdvisorError
from advisor.estimators import Estimator
from advisor.models.sources import Resolved
from advisor.ranking.decoding import Decoded
from advisor.ranking.extraction import (
    Extracted,
    ModelFailed,
    ModelFeatures,
    cached_attributions,
    cached_features,
    compute_attributions,
    extract_features,
    store_attributions,
    store_features,
)
from advisor.ranking.progress import Progress
from advisor.ranking.scores import Scored, cached_scores, compute_scores, model_inputs, refreshed, score_model, store_scores
from advisor.scale.executor import RayExecutor, TaskLost
from advisor.store import db


@dataclass
class Unit:
    """One model's task: what a worker needs besides the shared probe and reference."""

    model_id: str
    resolved: Resolved
    features: ModelFeatures | None  # cached features (only their attributions are missing), else None
    cached: dict  # its cached scores (known only when its features are cached)
    refresh: frozenset[str]  # estimators whose cached scores are recomputed


@dataclass
class UnitResult:
    extracted: Extracted | None
    features: ModelFeatures
    probe: Probe
    attributions: dict | None
    attribution_seconds: float | None
    scored: Scored


def model_task(unit: Unit, shared: dict) -> UnitResult | ModelFailed | AdvisorError:
    """A worker's part for one model (no cache access): features unless given, attributions when an
    estimator needs them, then every score not in ``unit.cached``. A model's own failure is returned
    (as a serial run turns it into that model's error row), not raised."""
    progress = Progress(warn=lambda msg: None)
    decoded = Decoded(progress, shared["img_size"])
    decoded.images = shared["images"]
    probe = shared["probe"]
    try:
        extracted = None
        mf = unit.features
        if mf is None:
            extracted = extract_features(unit.model_id, unit.resolved, probe, decoded, img_size=shared["img_size"],
                                         batch_size=shared["batch_size"], progress=progress)
            mf, probe = extracted.features, extracted.probe
        attrs = seconds = None
        if shared["needs_attributions"]:
            attrs, seconds = compute_attributions(mf, probe, decoded, img_size=shared["img_size"], batch_size=shared["batch_size"],
                                                  progress=progress)
        reference = shared["reference"]
        scored = compute_scores(mf, probe, shared["estimators"], model_inputs(mf, reference, attrs),
                                "" if reference is None else reference.key, unit.cached, unit.refresh)
        return UnitResult(extracted, mf, probe, attrs, seconds, scored)
    except AdvisorError as exc:  # ModelFailed included: the driver tells them apart
        return exc


def rank_models(executor: RayExecutor, models: list[str], resolved: dict[str, Resolved], probe: Probe, decoded: Decoded, *,
                estimators: list[Estimator], reference, img_size: int | None, batch_size: int, progress: Progress,
                refresh_models: set[str], refresh_ests: set[str], needs_attributions: bool) -> tuple[list[ModelFeatures], list[dict], dict[str, ModelFailed], Probe]:
    """Features and scores of every model in ``models`` (all resolved), cached ones read here and the
    others computed as Ray tasks. Returns ``(features in model order, cut score rows, failed model →
    its error, probe)``, what the serial loop of :func:`advisor.ranking.ranking.rank` gathers."""
    ref_key = "" if reference is None else reference.key
    results: dict[str, tuple[ModelFeatures, list[dict]]] = {}
    failed: dict[str, ModelFailed] = {}
    units: list[Unit] = []
    for model_id in models:  # the driver reads the cache: a fully cached model is never sent
        mf = None if model_id in refresh_models else cached_features(model_id, resolved[model_id], probe, img_size)
        attrs = None
        if mf is not None and needs_attributions:
            attrs = cached_attributions(mf, probe)
        if mf is not None and (attrs is not None or not needs_attributions):
            progress.end_model(model_id, True)
            mf.inputs = model_inputs(mf, reference, attrs)
            results[model_id] = (mf, score_model(mf, probe, estimators, mf.inputs, ref_key, refresh=refresh_ests))
            continue
        units.append(Unit(model_id, resolved[model_id], mf, cached_scores(mf, probe) if mf is not None else {},
                          refreshed(model_id, estimators, refresh_models, refresh_ests)))
    if units:
        probe, images = decoded.get(probe)
        shared = executor.put({"probe": probe, "images": images, "img_size": img_size, "batch_size": batch_size,
                               "estimators": estimators, "reference": reference, "needs_attributions": needs_attributions})
        progress.units("models on Ray", len(units))
        by_id = {u.model_id: u for u in units}
        for model_id, out in executor.run(model_task, [(u.model_id, (u, shared)) for u in units]):
            if isinstance(out, TaskLost):
                out = ModelFailed(f"model '{model_id}' failed on Ray: {out.reason}", "rerun to retry it (finished models are cached)")
            if isinstance(out, ModelFailed):
                failed[model_id] = out
                progress.unit_done(model_id, None)
                continue
            if isinstance(out, AdvisorError):  # the probe or the setup, not this model: stop as a serial run does
                raise out
            results[model_id] = (out.features, _store(out, probe, estimators, reference, by_id[model_id]))
            progress.unit_done(model_id, False)
    feats, rows = [], []
    for model_id in models:  # model order, whatever order the tasks finished in
        if model_id in results:
            mf, mine = results[model_id]
            feats.append(mf)
            rows += mine
    return feats, rows, failed, probe


def _store(out: UnitResult, probe: Probe, estimators: list[Estimator], reference, unit: Unit) -> list[dict]:
    """One transaction per model: its features, attributions and scores. Scores cached under features
    this run recomputed (their cache was cleared since) are reconciled as a serial run would."""
    mf = out.features
    mf.inputs = model_inputs(mf, reference, out.attributions)
    scored = out.scored
    if out.extracted is not None and not unit.cached and (cached := cached_scores(mf, probe)):
        scored = compute_scores(mf, probe, estimators, {**mf.inputs}, "" if reference is None else reference.key, cached, unit.refresh)
    with db.transaction() as con:
        if out.extracted is not None:
            store_features(con, out.extracted)
        if out.attributions is not None:
            store_attributions(con, mf, probe, out.attributions, out.attribution_seconds)
        store_scores(con, scored)
    return scored.rows
