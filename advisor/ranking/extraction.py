"""One candidate model's features (every cut, one forward pass) and DEPARA attributions on the probe:
read from the cache, else computed and stored in one transaction. A model that cannot be resolved,
built or run is :class:`ModelFailed`: that model's error, not the run's."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from advisor.data.probe import Probe
from advisor.errors import AdvisorError
from advisor.models.sources import ResolveContext, Resolved, resolve_model
from advisor.ranking.decoding import Decoded, Validated
from advisor.ranking.features import preproc_hash
from advisor.ranking.progress import Progress
from advisor.store import artifacts, db


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


class ModelFailed(AdvisorError):
    """One model could not be resolved, built or run on the probe (missing weights, an architecture
    that rejects --img-size, a crash in its forward pass). In a ranking of several candidates it is
    that model's rows' error and the run goes on; errors of the probe or the cache still stop it."""


def model_step(model_id: str, fn, *args, **kwargs):
    """``fn(*args, **kwargs)``, with any failure turned into :class:`ModelFailed` for ``model_id``
    (``--debug`` / ``ADVISOR_DEBUG=1`` let unexpected exceptions through, for their traceback)."""
    try:
        return fn(*args, **kwargs)
    except ModelFailed:
        raise
    except AdvisorError as exc:
        raise ModelFailed(exc.message, exc.hint) from exc
    except Exception as exc:
        cli_debug = getattr(sys.modules.get("advisor.cli.app"), "state", {}).get("debug")
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


def cached_features(model_id: str, resolved: Resolved, probe: Probe, img_size: int | None, build=None) -> ModelFeatures | None:
    """The model's features on the probe from the cache (every cut, from one earlier extraction), or None."""
    fp = resolved.fingerprint
    if not db.cache_path().exists() or not Validated.done(probe):
        return None
    with db.connect(read_only=True) as con:
        meta = artifacts.cached_model(con, fp)
        if meta is None:
            return None
        data_config, cuts, _ = meta
        ph = preproc_hash(_sized(data_config, img_size))
        seconds = artifacts.extraction_seconds(con, fp, probe.hash, ph, len(probe))
        if seconds is None:
            return None
        feats, logits = artifacts.load_features(con, fp, probe.hash, ph)
    return ModelFeatures(model_id, resolved, cuts, feats, logits, seconds, True, ph, build)


@dataclass
class Extracted:
    """What :func:`extract_features` computed and :func:`store_features` writes (the cache rows of one model)."""

    features: ModelFeatures
    probe: Probe
    model_config: dict  # the model's own preprocessing (stored with the model row)
    data_config: dict  # what the features were extracted with
    num_classes: int


def extract_features(model_id: str, resolved: Resolved, probe: Probe, decoded: Decoded, *, img_size: int | None = None,
                     batch_size: int = 32, progress: Progress, build=None) -> Extracted:
    """Build the model and extract every cut on the probe in one pass; touches no cache (a Ray worker
    runs it: :mod:`advisor.scale`). Raises :class:`ModelFailed` (non-finite features included)."""
    from advisor.models.loading import build_model
    from advisor.ranking.features import cut_names, extract

    _set_threads()
    probe, images = decoded.get(probe)
    loaded = model_step(model_id, build, probe, images) if build else model_step(model_id, build_model, resolved, img_size=img_size)
    cuts = model_step(model_id, cut_names, loaded.module)
    progress.start_model(model_id, len(probe))
    sized, images = decoded.for_model(probe, images, loaded.data_config)
    ex = model_step(model_id, extract, loaded, sized, batch_size=batch_size, images=images, progress=progress.advance)
    bad = [cut for cut, f in ex.features.items() if not np.isfinite(f).all()]
    if bad:  # nothing is stored: every estimator would fail on them, and a fixed model must not reuse them
        raise ModelFailed(f"model '{model_id}' produced non-finite features (NaN/inf) at {', '.join(bad[:3])}"
                          f"{' ...' if len(bad) > 3 else ''}",
                          "its weights hold NaN/inf or overflow on these inputs: check the weights file and its preprocessing")
    ph = preproc_hash(loaded.data_config)
    mf = ModelFeatures(model_id, resolved, cuts, ex.features, ex.logits, ex.seconds, False, ph, build)
    return Extracted(mf, probe, loaded.native_config or loaded.data_config, loaded.data_config,
                     int(getattr(loaded.module, "num_classes", 0) or 0))


def store_features(con, e: Extracted) -> None:
    """Write one model's extraction (its model row and features) with the open transaction ``con``."""
    mf = e.features
    artifacts.store_model(con, mf.resolved.fingerprint, mf.model_id, mf.resolved, e.model_config, mf.cuts, e.num_classes)
    artifacts.store_features(con, mf.resolved.fingerprint, e.probe.hash, mf.preproc_hash, mf.cuts, mf.features, mf.logits,
                             e.data_config, len(e.probe), mf.extract_seconds)


def model_features(
    model_id: str,
    probe: Probe,
    decoded: Decoded,
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
    extracted and stored (one transaction).

    ``resolved``/``build(probe, images) -> LoadedModel`` replace resolving the id and loading its
    weights (the scratch reference trains its network instead)."""
    resolved = resolved or model_step(model_id, resolve_model, model_id, ctx)
    if not refresh and (mf := cached_features(model_id, resolved, probe, img_size, build)) is not None:
        progress.end_model(model_id, True)
        return mf, probe
    e = extract_features(model_id, resolved, probe, decoded, img_size=img_size, batch_size=batch_size, progress=progress, build=build)
    with db.transaction() as con:
        store_features(con, e)
    progress.end_model(model_id, False)
    return e.features, e.probe


ATTRIBUTION_GRID = 16  # node vectors: Gradient×Input summed over channels, pooled to 16×16


def cached_attributions(mf: ModelFeatures, probe: Probe) -> dict[str, np.ndarray] | None:
    """The model's DEPARA attributions on the probe from the cache, or None."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
    if not db.cache_path().exists():
        return None
    with db.connect(read_only=True) as con:
        if artifacts.attribution_images(con, fp, probe.hash, ph, ATTRIBUTION_GRID) == len(probe):
            return artifacts.load_attributions(con, fp, probe.hash, ph)
    return None


def compute_attributions(mf: ModelFeatures, probe: Probe, decoded: Decoded, *, img_size: int | None, batch_size: int,
                         progress: Progress) -> tuple[dict[str, np.ndarray], float]:
    """DEPARA node attributions of every cut (Song et al. 2020 eq. 3) and their seconds; touches no cache."""
    from advisor.models.loading import build_model
    from advisor.ranking.attributions import probe_attributions
    from advisor.ranking.features import probe_batches

    _set_threads()
    probe, images = decoded.get(probe)
    loaded = model_step(mf.model_id, mf.build, probe, images) if mf.build else model_step(mf.model_id, build_model, mf.resolved, img_size=img_size)
    progress.start_model(f"{mf.model_id} (attributions)", len(probe))
    t0 = time.perf_counter()
    sized, images = decoded.for_model(probe, images, loaded.data_config)
    batches = probe_batches(loaded, sized, batch_size=batch_size, images=images)
    attrs = model_step(mf.model_id, probe_attributions, loaded.module, _counting(batches, progress.advance), grid=ATTRIBUTION_GRID)
    return attrs, time.perf_counter() - t0


def store_attributions(con, mf: ModelFeatures, probe: Probe, attrs: dict[str, np.ndarray], seconds: float) -> None:
    artifacts.store_attributions(con, mf.resolved.fingerprint, probe.hash, mf.preproc_hash, ATTRIBUTION_GRID, attrs, len(probe), seconds)


def model_attributions(mf: ModelFeatures, probe: Probe, decoded: Decoded, *, img_size: int | None, batch_size: int,
                       progress: Progress, refresh: bool = False) -> dict[str, np.ndarray]:
    """DEPARA node attributions of every cut (Song et al. 2020 eq. 3) on the probe: cached, else
    (or with ``refresh``) computed and stored."""
    if not refresh and (attrs := cached_attributions(mf, probe)) is not None:
        return attrs
    attrs, seconds = compute_attributions(mf, probe, decoded, img_size=img_size, batch_size=batch_size, progress=progress)
    with db.transaction() as con:
        store_attributions(con, mf, probe, attrs, seconds)
    progress.end_model(f"{mf.model_id} (attributions)", False)
    return attrs


def _counting(batches, advance):
    for batch in batches:
        yield batch
        advance(len(batch))
