"""``advisor.rank``: every candidate model, every cut, every estimator — cached end to end.

The pipeline per model: resolve the id (cheap) → features from the cache, or build the model and
extract all cuts in one pass (one transaction) → scores from the cache, or compute the missing
ones (one transaction) → the best cut per estimator. A warm rerun does no forward pass and does
not import torch.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from advisor.ranking import advisor_score

from advisor.store import cache
from advisor.errors import AdvisorError
from advisor.estimators import Estimator, get_estimator, safe_score
from advisor.ranking.features import PRE_LOGITS, preproc_hash
from advisor.models.models import ResolveContext, Resolved, default_models, resolve_model
from advisor.data.probe import DECODE_SIDE, Probe, decode_all, load_probe

DEFAULT_ESTIMATORS = ("advisor-score",)  # advisor.ranking.advisor_score: the evidence-chosen combination (registry/advisor_score.toml)
LOGITS = "__logits__"  # features-table key of the source head's logits
KEEP_DECODED_BYTES = 1 << 30  # decoded images kept for the run: at most 1 GiB (the rest are decoded per model)


@dataclass
class ModelFeatures:
    model_id: str
    resolved: Resolved
    cuts: list[str]
    features: dict[str, np.ndarray]
    logits: np.ndarray | None
    extract_seconds: float
    from_cache: bool
    preproc_hash: str
    build: Callable | None = None  # how to rebuild the module when its weights are not a file (scratch)
    inputs: dict | None = field(default=None, repr=False)  # what its estimators got besides the features (advisor.ranking.decision re-scores half-samples)


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress; the API default is silent."""

    start_model: Callable[[str, int], None] = lambda model_id, total: None
    advance: Callable[[int], None] = lambda n: None
    end_model: Callable[[str, bool], None] = lambda model_id, cached: None
    warn: Callable[[str], None] = lambda msg: print(f"warning: {msg}", file=sys.stderr)
    plan: Callable[[list[str]], None] = lambda model_ids: None  # the models about to be processed, in order
    resolved: Callable[[str, Resolved], None] = lambda model_id, resolved: None  # where a model's weights were found


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
        return (f"RankResult({len(self)} models on {self.probe.source!r} ({len(self.probe)} images), "
                f"by {self.estimator}, best={pick})")

    def to_frame(self):
        """The rows as a pandas DataFrame (``cut_scores`` left out; see :attr:`cut_scores`)."""
        try:
            import pandas as pd
        except ImportError:
            raise AdvisorError("RankResult.to_frame() needs pandas, which is not installed",
                               "pip install pandas, or read result.rows (a list of dicts)") from None
        return pd.DataFrame([{k: v for k, v in r.items() if k != "cut_scores"} for r in self.rows])


class ModelFailed(AdvisorError):
    """One model could not be resolved, built or run on the probe (missing weights, an architecture
    that rejects --img-size, a crash in its forward pass). In a ranking of several candidates it is
    that model's rows' error and the run goes on; errors of the probe or the cache still stop it."""


def _model_step(model_id: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with any failure turned into :class:`ModelFailed` for ``model_id``
    (``--debug`` / ``ADVISOR_DEBUG=1`` let unexpected exceptions through, for their traceback)."""
    try:
        return fn(*args, **kwargs)
    except ModelFailed:
        raise
    except AdvisorError as exc:
        raise ModelFailed(exc.message, exc.hint) from exc
    except Exception as exc:
        cli_debug = getattr(sys.modules.get("advisor.cli"), "_state", {}).get("debug")
        if cli_debug or os.environ.get("ADVISOR_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off"):
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise ModelFailed(f"model '{model_id}' failed: {type(exc).__name__}: {first}" if first else
                          f"model '{model_id}' failed: {type(exc).__name__}") from exc


def _sized(data_config: dict, img_size: int | None) -> dict:
    """The preprocessing a model gets at ``--img-size`` (fixed-size models are rebuilt at that size
    by :func:`advisor.models.loading.build_model`, or refused there)."""
    if img_size is None:
        return data_config
    return {**data_config, "input_size": (data_config["input_size"][0], img_size, img_size)}


def _set_threads() -> None:
    # torch's default (one thread per core) won every case in benchmarks/threads.md;
    # ADVISOR_THREADS overrides (e.g. 1 on a machine shared with other jobs).
    import torch

    if os.environ.get("ADVISOR_THREADS"):
        torch.set_num_threads(int(os.environ["ADVISOR_THREADS"]))


def prepare_probe(probe: Probe | str, *, split: str | None = "train", max_images: int | None = None, seed: int = 0) -> Probe:
    """Load the probe and drop the images known (from the cache) to be unreadable."""
    if isinstance(probe, str):
        probe = load_probe(probe, split=split, max_images=max_images, seed=seed)
    if cache.cache_path().exists():
        with cache.connect(read_only=True) as con:
            row = con.execute("SELECT skipped FROM probes WHERE hash = ?", [probe.hash]).fetchone()
        if row is not None:
            skipped = dict(json.loads(row[0]))  # item name -> why it could not be read
            bad = {i: skipped[probe.item_name(i)] for i in range(len(probe)) if probe.item_name(i) in skipped}
            probe = _Validated.mark(probe.without(bad))
    return probe


class _Validated:
    """Remembers which probes were already checked for unreadable images in this process."""

    hashes: set[str] = set()

    @classmethod
    def mark(cls, probe: Probe) -> Probe:
        cls.hashes.add(probe.hash + str(len(probe)))
        return probe

    @classmethod
    def done(cls, probe: Probe) -> bool:
        return probe.hash + str(len(probe)) in cls.hashes


MIN_IMAGES = 4  # estimators need at least this many readable images


def needed_side(data_config: dict) -> int:
    """The shorter image side a model's eval transform resizes to (timm: ``input_size / crop_pct``)."""
    _, h, w = data_config["input_size"]
    return int(math.ceil(max(h, w) / float(data_config.get("crop_pct") or 1.0)))


class _Decoded:
    """Decodes the probe at most once per run, validating it the first time: unreadable images are
    skipped (with a warning) and only then is the minimum number of images checked. Decoded images
    are kept for the rest of the run up to ``KEEP_DECODED_BYTES`` (the rest are decoded again per
    model), each reduced while decoding to ``side`` (:data:`advisor.data.probe.DECODE_SIDE`, or 2 ×
    ``--img-size`` when larger), so memory is bounded whatever the probe's size and its camera."""

    def __init__(self, progress: Progress, img_size: int | None = None):
        self.progress = progress
        self.images: dict | None = None
        self.side = max(DECODE_SIDE, 2 * img_size) if img_size else DECODE_SIDE

    def get(self, probe: Probe) -> tuple[Probe, dict]:
        probe = replace(probe, decode_side=self.side)
        if self.images is not None:
            return probe, self.images
        n_files = len(probe)
        images, bad = decode_all(probe, keep_bytes=KEEP_DECODED_BYTES)
        example = "; ".join(f"{probe.item_name(i)} ({r})" for i, r in list(bad.items())[:3]) + (" ..." if len(bad) > 3 else "")
        if bad:
            kept = [i for i in range(len(probe)) if i not in bad]
            probe = probe.without(bad)
            images = {new: images[old] for new, old in enumerate(kept) if old in images}
        # checked on what could be read, before anything is written; one line that names the unreadable files
        if len(probe) == 0:
            raise AdvisorError(f"none of the images in probe '{probe.source}' could be read, e.g. {example}",
                               "check that the files are valid images")
        if len(probe) < MIN_IMAGES:
            unread = f" once {len(bad)} unreadable of {n_files} are skipped ({example})" if bad else ""
            raise AdvisorError(f"probe '{probe.source}' has {len(probe)} images{unread}",
                               f"estimators need at least {MIN_IMAGES} images: add images" + (" or fix the unreadable ones" if bad else ""))
        if probe.labels is not None and len(np.unique(probe.labels)) < 2:
            raise AdvisorError(f"probe '{probe.source}' has a single readable class" + (f" once {len(bad)} unreadable are skipped ({example})" if bad else ""),
                               "add readable images of at least 2 classes")
        if bad:
            self.progress.warn(f"skipped {len(bad)} unreadable image(s) of {n_files}: {example}")
        with cache.transaction() as con:
            con.execute(
                "INSERT OR REPLACE INTO probes (hash, source, n_images, n_classes, class_names, skipped) VALUES (?, ?, ?, ?, ?, ?)",
                [probe.hash, probe.source, len(probe), probe.num_classes, list(probe.class_names or []), json.dumps([list(s) for s in probe.skipped])],
            )
        self.images = images
        _Validated.mark(probe)
        return probe, images

    def for_model(self, probe: Probe, images: dict, data_config: dict) -> tuple[Probe, dict]:
        """The probe and kept images for one model: when its preprocessing resizes to a larger side
        than was decoded (``input_size / crop_pct``, e.g. 600 / 0.949 for EfficientNet-B7), its
        images are decoded again at that side, so no model sees upsampled pixels."""
        need = needed_side(data_config)
        if need <= self.side:
            return probe, images
        return replace(probe, decode_side=need), {}


def _cached_model(con, fp: str):
    row = con.execute("SELECT data_config, cuts, num_classes FROM models WHERE fingerprint = ?", [fp]).fetchone()
    return None if row is None else (json.loads(row[0]), list(row[1]), row[2])


def _load_features(con, fp: str, probe_hash: str, ph: str):
    rows = con.execute(
        "SELECT cut, kind, n, d, data FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? ORDER BY position",
        [fp, probe_hash, ph],
    ).fetchall()
    feats = {cut: cache.from_blob(data, n, d) for cut, kind, n, d, data in rows if kind == "features"}
    logits = next((cache.from_blob(data, n, d) for cut, kind, n, d, data in rows if kind == "logits"), None)
    return feats, logits


def model_features(
    model_id: str,
    probe: Probe,
    decoded: _Decoded,
    *,
    ctx: ResolveContext,
    img_size: int | None = None,
    batch_size: int = 32,
    progress: Progress,
    resolved: Resolved | None = None,
    build=None,
    refresh: bool = False,
) -> tuple[ModelFeatures, Probe]:
    """Features of every cut of one model on the probe: from the cache, else (or with ``refresh``)
    extracted and stored.

    ``resolved``/``build(probe, images) -> LoadedModel`` replace resolving the id and loading its
    weights (the scratch reference trains its network instead)."""
    resolved = resolved or _model_step(model_id, resolve_model, model_id, ctx)
    fp = resolved.fingerprint
    if not refresh and cache.cache_path().exists() and _Validated.done(probe):
        with cache.connect(read_only=True) as con:
            meta = _cached_model(con, fp)
            if meta is not None:
                data_config, cuts, _ = meta
                ph = preproc_hash(_sized(data_config, img_size))
                done = con.execute(
                    "SELECT seconds FROM extractions WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND n_images = ?",
                    [fp, probe.hash, ph, len(probe)],
                ).fetchone()
                if done is not None:
                    feats, logits = _load_features(con, fp, probe.hash, ph)
                    progress.end_model(model_id, True)
                    return ModelFeatures(model_id, resolved, cuts, feats, logits, done[0], True, ph, build), probe

    from advisor.ranking.features import cut_names, extract
    from advisor.models.loading import build_model

    _set_threads()
    probe, images = decoded.get(probe)
    loaded = _model_step(model_id, build, probe, images) if build else _model_step(model_id, build_model, resolved, img_size=img_size)
    cuts = _model_step(model_id, cut_names, loaded.module)
    progress.start_model(model_id, len(probe))
    sized, images = decoded.for_model(probe, images, loaded.data_config)
    ex = _model_step(model_id, extract, loaded, sized, batch_size=batch_size, images=images, progress=progress.advance)
    bad = [cut for cut, f in ex.features.items() if not np.isfinite(f).all()]
    if bad:  # nothing is stored: every estimator would fail on them, and a fixed model must not reuse them
        raise ModelFailed(f"model '{model_id}' produced non-finite features (NaN/inf) at {', '.join(bad[:3])}"
                          f"{' ...' if len(bad) > 3 else ''}",
                          "its weights hold NaN/inf or overflow on these inputs: check the weights file and its preprocessing")
    ph = preproc_hash(loaded.data_config)
    with cache.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO models (fingerprint, model_id, arch, kwargs, weights, weights_from, pretrain, data_config, cuts, num_classes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [fp, model_id, resolved.arch, cache.dumps(resolved.kwargs), str(resolved.weights or ""), resolved.weights_from,
             resolved.pretrain, cache.dumps(loaded.native_config or loaded.data_config), cuts, int(getattr(loaded.module, "num_classes", 0) or 0)],
        )
        con.execute("DELETE FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ?", [fp, probe.hash, ph])
        for pos, cut in enumerate(cuts):
            f = ex.features[cut]
            con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'features', ?, ?, ?)", [fp, probe.hash, ph, cut, pos, f.shape[0], f.shape[1], cache.to_blob(f)])
        if ex.logits is not None:
            con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'logits', ?, ?, ?)",
                        [fp, probe.hash, ph, LOGITS, len(cuts), ex.logits.shape[0], ex.logits.shape[1], cache.to_blob(ex.logits)])
        con.execute(
            "INSERT OR REPLACE INTO extractions (model_fp, probe_hash, preproc_hash, preproc, n_images, seconds, device) VALUES (?, ?, ?, ?, ?, ?, 'cpu')",
            [fp, probe.hash, ph, cache.dumps(loaded.data_config), len(probe), ex.seconds],
        )
    progress.end_model(model_id, False)
    return ModelFeatures(model_id, resolved, cuts, ex.features, ex.logits, ex.seconds, False, ph, build), probe


def score_model(mf: ModelFeatures, probe: Probe, estimators: list[Estimator], inputs: dict, reference_key: str,
                refresh: set[str] | frozenset[str] = frozenset()) -> list[dict]:
    """Every estimator at every cut of one model; cached scores are reused (except the estimators
    named in ``refresh``, recomputed: their new scores replace the cached ones, and a cached score
    whose recomputation fails is deleted), new ones stored.

    ``inputs`` holds what estimators may need: ``logits``, ``reference``,
    ``reference_attributions`` and per-cut ``attributions`` (a dict cut → array)."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
    cached: dict[tuple[str, str, str, str], tuple[float, float]] = {}
    if cache.cache_path().exists():
        with cache.connect(read_only=True) as con:
            for est, ver, ref, cut, score, secs in con.execute(
                "SELECT estimator, estimator_version, reference, cut, score, seconds FROM scores "
                "WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ?",
                [fp, probe.hash, ph],
            ).fetchall():
                cached[(est, ver, ref, cut)] = (score, secs)
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
        with cache.transaction() as con:
            if stale:
                con.executemany("DELETE FROM scores WHERE estimator = ? AND estimator_version = ? AND reference = ? AND model_fp = ? "
                                "AND probe_hash = ? AND preproc_hash = ? AND cut = ?", stale)
            if new:
                con.executemany(
                    "INSERT OR REPLACE INTO scores (estimator, estimator_version, reference, model_fp, probe_hash, preproc_hash, cut, score, seconds) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    new,
                )
    return out


ATTRIBUTION_GRID = 16  # node vectors: Gradient×Input summed over channels, pooled to 16×16


def model_attributions(mf: ModelFeatures, probe: Probe, decoded: "_Decoded", *, img_size: int | None, batch_size: int,
                       progress: Progress, refresh: bool = False) -> dict[str, np.ndarray]:
    """DEPARA node attributions of every cut (Song et al. 2020 eq. 3) on the probe: cached, else
    (or with ``refresh``) computed."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
    key = [fp, probe.hash, ph, ATTRIBUTION_GRID]
    with cache.connect(read_only=True) as con:
        done = con.execute("SELECT n_images FROM attribution_runs WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND grid = ?", key).fetchone()
        if done is not None and done[0] == len(probe) and not refresh:
            rows = con.execute("SELECT cut, n, d, data FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND kind = 'attributions'",
                               key[:3]).fetchall()
            return {cut.removeprefix("attr:"): cache.from_blob(data, n, d) for cut, n, d, data in rows}
    from advisor.ranking.attributions import probe_attributions
    from advisor.ranking.features import probe_batches
    from advisor.models.loading import build_model

    _set_threads()
    probe, images = decoded.get(probe)
    loaded = _model_step(mf.model_id, mf.build, probe, images) if mf.build else _model_step(mf.model_id, build_model, mf.resolved, img_size=img_size)
    progress.start_model(f"{mf.model_id} (attributions)", len(probe))
    t0 = time.perf_counter()
    sized, images = decoded.for_model(probe, images, loaded.data_config)
    batches = probe_batches(loaded, sized, batch_size=batch_size, images=images)
    attrs = _model_step(mf.model_id, probe_attributions, loaded.module, _counting(batches, progress.advance), grid=ATTRIBUTION_GRID)
    seconds = time.perf_counter() - t0
    with cache.transaction() as con:
        con.execute("DELETE FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND kind = 'attributions'", key[:3])
        for pos, (cut, a) in enumerate(attrs.items()):
            con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'attributions', ?, ?, ?)",
                        [fp, probe.hash, ph, f"attr:{cut}", pos, a.shape[0], a.shape[1], cache.to_blob(a)])
        con.execute("INSERT OR REPLACE INTO attribution_runs (model_fp, probe_hash, preproc_hash, grid, n_images, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                    key + [len(probe), seconds])
    progress.end_model(f"{mf.model_id} (attributions)", False)
    return attrs


def _memo(build):
    """Build once per run: the scratch network is trained at most once even if features and
    attributions both need it."""
    made = {}

    def once(probe, images):
        if "m" not in made:
            made["m"] = build(probe, images)
        return made["m"]

    return once


def _counting(batches, advance):
    for batch in batches:
        yield batch
        advance(len(batch))


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
) -> RankResult:
    """Rank candidate ``models`` on ``probe`` with ``estimators``; the CLI's ``advisor rank``.

    ``reference`` is the target-side representation for CKA / II / DEPARA (``labels``, the default
    for labelled probes, or ``model:<id>[@cut]``; see :mod:`advisor.ranking.reference`).
    Returns a :class:`RankResult` whose ``rows`` (one per model × estimator, best cut first-ranked)
    are what ``advisor rank --json`` prints; ``cut_scores`` holds every (model, cut, estimator).
    ``refresh`` names models (their features, attributions and scores) and estimators (their scores)
    to recompute instead of reading from the cache, or ``all``; the new results replace the cached ones.
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
    for model_id in models:
        try:
            progress.resolved(model_id, _model_step(model_id, resolve_model, model_id, ctx))
        except ModelFailed as exc:
            failed[model_id] = str(exc)
            last_error = exc
    if len(failed) == len(models):
        raise _none_ranked(models, failed, last_error)
    progress.plan(([ref_label] if ref_label else []) + [m for m in models if m not in failed])
    decoded = _Decoded(progress, img_size)
    if not _Validated.done(probe):  # decode (skipping unreadable images) and check the minimum before anything is written
        probe, _ = decoded.get(probe)
    needs = {n for e in ests for n in e.needs}
    args = {"probe": probe.source, "probe_hash": probe.hash, "models": models, "estimators": [e.name for e in ests],
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
            inputs = {"logits": mf.logits, "reference": None if ref is None else ref.features,
                      "reference_attributions": None if ref is None else ref.attributions, "attributions": attrs}
            mf.inputs = inputs
            feats.append(mf)
            cut_scores += score_model(mf, probe, ests, inputs, "" if ref is None else ref.key,
                                      refresh={e.name for e in ests} if model_id in refresh_models else refresh_ests)
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
