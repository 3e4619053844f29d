"""``advisor.rank``: every candidate model, every cut, every estimator — cached end to end.

The pipeline per model: resolve the id (cheap) → features from the cache, or build the model and
extract all cuts in one pass (one transaction) → scores from the cache, or compute the missing
ones (one transaction) → the best cut per estimator. A warm rerun does no forward pass and does
not import torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from advisor.data.probe import Probe
from advisor.errors import AdvisorError
from advisor.estimators import Estimator, get_estimator
from advisor.models.sources import ResolveContext, resolve_model
from advisor.models.weights import default_models
from advisor.ranking import advisor_score
from advisor.ranking.decoding import Decoded, Validated, prepare_probe, unreadable_example
from advisor.ranking.extraction import ModelFailed, ModelFeatures, model_attributions, model_features, model_step
from advisor.ranking.progress import Progress
from advisor.ranking.scores import best_rows, model_inputs, refreshed, score_model

DEFAULT_ESTIMATORS = ("advisor-score",)  # advisor.ranking.advisor_score: the evidence-chosen combination (registry/advisor_score.toml)


@dataclass
class RankResult:
    """What :func:`rank` returns. ``rows`` (one per model × estimator) are what ``advisor rank --json``
    prints; ``best``, ``top(k)``, ``len()`` and ``to_frame()`` read the ranking by the first estimator."""

    rows: list[dict]
    cut_scores: list[dict]
    probe: Probe
    models: list[ModelFeatures] = field(repr=False, default_factory=list)
    reference: str | None = None
    failed: dict[str, str] = field(default_factory=dict)  # model id -> why it was not ranked
    warnings: list[str] = field(default_factory=list)  # what was warned about (small samples, ...)
    run_id: str | None = None  # the row of the cache's runs table (`advisor runs`)
    weights: dict = field(default_factory=dict)  # model id (reference included) -> {weights_sha256, model_identity}

    @property
    def estimator(self) -> str | None:
        """The first estimator: the one that orders the ranking."""
        return self.rows[0]["estimator"] if self.rows else None

    def top(self, k: int = 5) -> list[dict]:
        """The ``k`` best-ranked rows of the first estimator (models without a score are left out)."""
        ranked = [r for r in self.rows if r["estimator"] == self.estimator and r["rank"] is not None]
        return sorted(ranked, key=lambda r: r["rank"])[:max(int(k), 0)]

    @property
    def best(self) -> dict | None:
        """The best row of the first estimator (``best["model"]``, ``best["cut"]``, ``best["score"]``), or None."""
        top = self.top(1)
        return top[0] if top else None

    def __len__(self) -> int:
        """The number of candidate models (ranked or not)."""
        return sum(1 for r in self.rows if r["estimator"] == self.estimator)

    def __repr__(self) -> str:
        best = self.best
        pick = "none" if best is None else f"{best['model']}@{best['cut']} ({best['score']:.4g})"
        return (f"RankResult({len(self)} models on {self.probe.spec!r} ({len(self.probe)} images), "
                f"by {self.estimator}, best={pick})")

    def to_frame(self):
        """The rows as a pandas DataFrame (``cut_scores`` left out; see :attr:`cut_scores`)."""
        try:
            import pandas as pd
        except ImportError:
            raise AdvisorError("RankResult.to_frame() needs pandas, which is not installed",
                               "pip install pandas, or read result.rows (a list of dicts)") from None
        return pd.DataFrame([{k: v for k, v in r.items() if k != "cut_scores"} for r in self.rows])


def rank(
    probe: Probe | str,
    models: list[str] | None = None,
    estimators: list[str] | None = None,
    *,
    reference: str | None = None,
    split: str | None = "train",
    max_images: int | None = None,
    seed: int = 0,
    img_size: int | None = None,
    batch_size: int = 32,
    weights_dir: str | Path | None = None,
    offline: bool | None = None,
    progress: Progress | None = None,
    command: str = "rank",
    refresh: list[str] | tuple[str, ...] = (),
    executor=None,
) -> RankResult:
    """Rank candidate ``models`` on ``probe`` with ``estimators``; the CLI's ``advisor rank``.

    ``reference`` is the target-side representation for CKA / II / DEPARA (``labels``, the default
    for labelled probes, or ``model:<id>[@cut]``; see :mod:`advisor.ranking.reference`).
    Returns a :class:`RankResult` whose ``rows`` (one per model × estimator, best cut first-ranked)
    are what ``advisor rank --json`` prints; ``cut_scores`` holds every (model, cut, estimator).
    ``refresh`` names models (their features, attributions and scores) and estimators (their scores)
    to recompute instead of reading from the cache, or ``all``; the new results replace the cached ones.
    ``executor``: None runs every model here; a started :class:`advisor.scale.executor.RayExecutor`
    runs each uncached model as a Ray task (:mod:`advisor.scale.rank`), with the same results.
    """
    from advisor.ranking.reference import label_reference, model_reference, parse_reference

    progress = progress or Progress()
    notes: list[str] = []  # every warning, also kept in the result (RankResult.warnings)
    progress = replace(progress, warn=lambda msg, _warn=progress.warn: (notes.append(msg), _warn(msg))[-1])
    models = list(models) if models else default_models()
    # None: the defaults, chosen once the probe is known (label-free ones on an unlabelled probe: advisor.data.label_free)
    score_spec, names = advisor_score.expand(list(estimators)) if estimators else (None, None)
    ests = [get_estimator(name) for name in names] if names else None
    if img_size is not None and img_size < 8:
        raise AdvisorError(f"--img-size {img_size} is too small", "use at least 8 pixels (e.g. 224)")
    if batch_size < 1:
        raise AdvisorError(f"--batch-size must be positive, got {batch_size}", "e.g. --batch-size 32")
    ctx = ResolveContext(weights_dir=Path(weights_dir).expanduser() if weights_dir else None, offline=offline)
    if ctx.weights_dir is not None and not ctx.weights_dir.is_dir():
        raise AdvisorError(f"weights dir '{ctx.weights_dir}' is not a folder", "pass a folder of weight files to --weights-dir")
    probe_arg, probe = probe, prepare_probe(probe, split=split, max_images=max_images, seed=seed)
    if probe.skipped:  # known unreadable from an earlier run: said again, as the first run said it
        progress.warn(f"skipped {len(probe.skipped)} unreadable image(s) of {len(probe) + len(probe.skipped)} "
                      f"(found by an earlier run): {unreadable_example(probe.skipped)}")
    ref_kind, ref_model, ref_cut = parse_reference(reference, probe)
    from advisor.data.label_free import check_runnable, default_estimators
    from advisor.data.small_samples import taken_note

    if ests is None:
        estimators = list(default_estimators(probe, ref_kind, DEFAULT_ESTIMATORS))
        score_spec, names = advisor_score.expand(estimators)
        ests = [get_estimator(n) for n in names]
    check_runnable(ests, probe, ref_kind, chosen=bool(estimators))
    if isinstance(probe_arg, str) and (note := taken_note(max_images, probe)):
        progress.warn(note)
    # Resolve every id before any work: the reference must resolve, and so must at least one candidate
    # (else nothing is written). A candidate that does not resolve is not ranked; the others are.
    models = list(dict.fromkeys(models))
    ref_label = ref_model or ("scratch" if ref_kind == "scratch" else None)
    refresh_models, refresh_ests = _refresh_sets(refresh, models, ref_label, ests)
    if ref_model:
        progress.resolved(ref_model, resolve_model(ref_model, ctx))
    failed: dict[str, str] = {}
    last_error: AdvisorError | None = None
    resolved = {}
    for model_id in models:
        try:
            resolved[model_id] = model_step(model_id, resolve_model, model_id, ctx)
            progress.resolved(model_id, resolved[model_id])
        except ModelFailed as exc:
            failed[model_id] = str(exc)
            last_error = exc
    if len(failed) == len(models):
        raise _none_ranked(models, failed, last_error)
    progress.plan(([ref_label] if ref_label else []) + [m for m in models if m not in failed])
    decoded = Decoded(progress, img_size)
    if not Validated.done(probe):  # decode (skipping unreadable images) and check the minimum before anything is written
        probe, _ = decoded.get(probe)
    needs = {n for e in ests for n in e.needs}
    args = {"probe": probe.spec, "probe_hash": probe.hash, "models": models, "estimators": [e.name for e in ests],
            "reference": reference, "split": split, "max_images": max_images, "seed": seed, "img_size": img_size}
    from advisor.store.repro import annotate_rows, finish_run, start_run

    run_id = start_run(command, args)  # a runs row with the versions (advisor.store.repro)
    feats, cut_scores = [], []
    opts = dict(img_size=img_size, batch_size=batch_size, progress=progress)
    try:
        ref = None
        if ref_kind in ("model", "scratch"):
            extra = {}
            if ref_kind == "scratch":
                from advisor.ranking.scratch import scratch_resolved, train_scratch

                resolved = scratch_resolved(probe, seed)
                extra = dict(resolved=resolved, build=_memo(lambda p, imgs: train_scratch(resolved, p, imgs)))
                ref_model = "scratch"
            fresh = ref_label in refresh_models
            rmf, probe = model_features(ref_model, probe, decoded, ctx=ctx, **opts, **extra, refresh=fresh)
            rattr = model_attributions(rmf, probe, decoded, **opts, refresh=fresh) if "attributions" in needs else None
            if fresh:  # scores against a recomputed reference are recomputed too
                refresh_ests |= {e.name for e in ests if "reference" in e.needs}
            ref = model_reference(ref_model, ref_cut, rmf.resolved.fingerprint, rmf.features, rmf.cuts, rattr)
            if ref_kind == "scratch":
                ref.label = f"scratch ({rmf.resolved.pretrain})"
        if executor is not None:
            from advisor.scale.rank import rank_models

            if ref_kind == "labels" and ref is None:
                ref = label_reference(probe)
            feats, cut_scores, lost, probe = rank_models(
                executor, [m for m in models if m not in failed], resolved, probe, decoded, estimators=ests, reference=ref,
                img_size=img_size, batch_size=batch_size, progress=progress, refresh_models=refresh_models,
                refresh_ests=refresh_ests, needs_attributions="attributions" in needs)
            for model_id, exc in lost.items():
                failed[model_id], last_error = str(exc), exc
        else:
            for model_id in models:
                if model_id in failed:
                    continue
                try:  # one model failing (weights, architecture, forward pass) loses only its own rows
                    fresh = model_id in refresh_models
                    mf, probe = model_features(model_id, probe, decoded, ctx=ctx, **opts, refresh=fresh)
                    if ref_kind == "labels" and ref is None:
                        ref = label_reference(probe)  # after the first model: unreadable images are dropped by then
                    attrs = model_attributions(mf, probe, decoded, **opts, refresh=fresh) if "attributions" in needs else None
                except ModelFailed as exc:
                    failed[model_id] = str(exc)
                    last_error = exc
                    continue
                mf.inputs = model_inputs(mf, ref, attrs)
                feats.append(mf)
                cut_scores += score_model(mf, probe, ests, mf.inputs, "" if ref is None else ref.key,
                                          refresh=refreshed(model_id, ests, refresh_models, refresh_ests))
        if not feats:
            raise _none_ranked(models, failed, last_error)
        failed = {m: failed[m] for m in models if m in failed}
        rows = best_rows(cut_scores, ests, feats, probe, failed)
        if score_spec is not None:
            rows = advisor_score.with_score_rows(rows, score_spec, list(estimators))
        from advisor.data.label_free import check_scored

        check_scored(cut_scores)  # every estimator skipped everywhere: an error, not an empty table
        # versions + weights fingerprint on every row; the runs row also records the reference model's
        weights = annotate_rows(rows, feats + ([rmf] if ref_kind in ("model", "scratch") else []))
    except BaseException as exc:
        finish_run(run_id, error=exc)
        raise
    finish_run(run_id, [{k: v for k, v in r.items() if k not in ("cut_scores", "versions")} for r in rows], weights)
    for model_id, reason in failed.items():  # one line each, after the work (stdout keeps the rows)
        progress.warn(f"not ranked: {model_id}: {reason}")
    return RankResult(rows=rows, cut_scores=cut_scores, probe=probe, models=feats, reference=None if ref is None else ref.label,
                      failed=failed, warnings=notes, run_id=run_id, weights=weights)



def _memo(build):
    """Build once per run: the scratch network is trained at most once even if features and
    attributions both need it."""
    made = {}

    def once(probe, images):
        if "m" not in made:
            made["m"] = build(probe, images)
        return made["m"]

    return once


def _refresh_sets(refresh, models: list[str], reference: str | None, ests: list[Estimator]) -> tuple[set[str], set[str]]:
    """``--refresh`` names: (model ids, estimator names) whose cached results are recomputed. A name
    that is neither a model of this command (its reference included) nor one of its estimators is an error."""
    names = [n.strip() for n in refresh or () if n and n.strip()]
    model_ids = set(models) | ({reference} if reference else set())
    est_names = {e.name for e in ests}
    if "all" in names:
        return model_ids, est_names
    unknown = [n for n in names if n not in model_ids and n not in est_names]
    if unknown:
        raise AdvisorError(f"--refresh {unknown[0]} names neither a model nor an estimator of this command",
                           f"use one of: {', '.join(dict.fromkeys([*models, *([reference] if reference else []), *(e.name for e in ests)]))}, or all")
    return {n for n in names if n in model_ids}, {n for n in names if n in est_names}


def _none_ranked(models: list[str], failed: dict[str, str], last: AdvisorError) -> AdvisorError:
    """No candidate could be ranked: one model's own error as it is, else one line naming each."""
    if len(models) == 1:
        return last
    return AdvisorError(f"none of the {len(models)} models could be ranked: " + "; ".join(f"{m}: {failed[m]}" for m in models if m in failed),
                        "fix or drop the models named above")
