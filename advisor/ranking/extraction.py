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
    extracted and stored.

    ``resolved``/``build(probe, images) -> LoadedModel`` replace resolving the id and loading its
    weights (the scratch reference trains its network instead)."""
    resolved = resolved or model_step(model_id, resolve_model, model_id, ctx)
    fp = resolved.fingerprint
    if not refresh and db.cache_path().exists() and Validated.done(probe):
        with db.connect(read_only=True) as con:
            meta = artifacts.cached_model(con, fp)
            if meta is not None:
                data_config, cuts, _ = meta
                ph = preproc_hash(_sized(data_config, img_size))
                seconds = artifacts.extraction_seconds(con, fp, probe.hash, ph, len(probe))
                if seconds is not None:
                    feats, logits = artifacts.load_features(con, fp, probe.hash, ph)
                    progress.end_model(model_id, True)
                    return ModelFeatures(model_id, resolved, cuts, feats, logits, seconds, True, ph, build), probe

    from advisor.ranking.features import cut_names, extract
    from advisor.models.loading import build_model

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
    with db.transaction() as con:
        artifacts.store_model(con, fp, model_id, resolved, loaded.native_config or loaded.data_config, cuts,
                              int(getattr(loaded.module, "num_classes", 0) or 0))
        artifacts.store_features(con, fp, probe.hash, ph, cuts, ex.features, ex.logits, loaded.data_config, len(probe), ex.seconds)
    progress.end_model(model_id, False)
    return ModelFeatures(model_id, resolved, cuts, ex.features, ex.logits, ex.seconds, False, ph, build), probe



ATTRIBUTION_GRID = 16  # node vectors: Gradient×Input summed over channels, pooled to 16×16


def model_attributions(mf: ModelFeatures, probe: Probe, decoded: Decoded, *, img_size: int | None, batch_size: int,
                       progress: Progress, refresh: bool = False) -> dict[str, np.ndarray]:
    """DEPARA node attributions of every cut (Song et al. 2020 eq. 3) on the probe: cached, else
    (or with ``refresh``) computed."""
    fp, ph = mf.resolved.fingerprint, mf.preproc_hash
    if not refresh:
        with db.connect(read_only=True) as con:
            if artifacts.attribution_images(con, fp, probe.hash, ph, ATTRIBUTION_GRID) == len(probe):
                return artifacts.load_attributions(con, fp, probe.hash, ph)
    from advisor.ranking.attributions import probe_attributions
    from advisor.ranking.features import probe_batches
    from advisor.models.loading import build_model

    _set_threads()
    probe, images = decoded.get(probe)
    loaded = model_step(mf.model_id, mf.build, probe, images) if mf.build else model_step(mf.model_id, build_model, mf.resolved, img_size=img_size)
    progress.start_model(f"{mf.model_id} (attributions)", len(probe))
    t0 = time.perf_counter()
    sized, images = decoded.for_model(probe, images, loaded.data_config)
    batches = probe_batches(loaded, sized, batch_size=batch_size, images=images)
    attrs = model_step(mf.model_id, probe_attributions, loaded.module, _counting(batches, progress.advance), grid=ATTRIBUTION_GRID)
    seconds = time.perf_counter() - t0
    with db.transaction() as con:
        artifacts.store_attributions(con, fp, probe.hash, ph, ATTRIBUTION_GRID, attrs, len(probe), seconds)
    progress.end_model(f"{mf.model_id} (attributions)", False)
    return attrs



def _counting(batches, advance):
    for batch in batches:
        yield batch
        advance(len(batch))
