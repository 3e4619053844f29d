"""How sure a margin is: **half-sampling**. The estimator is re-run on ``HALF_SAMPLES`` (20) random
halves of the probe images (stratified by class, seeded), every candidate on the same halves, and
the *spread* is the standard deviation of the margin over those halves (for a mean over images it
estimates the margin's standard error on the whole probe). Candidates are within noise when the
margin is below ``NOISE_Z`` × that spread. Halves are scored until ``NOISE_BUDGET_S`` seconds are
spent; with fewer than ``MIN_HALF_SAMPLES`` the spread is not measured. Complete half-sample scores
are stored under ``$ADVISOR_HOME/decisions/``, so a warm rerun re-scores nothing. See
:mod:`advisor.ranking.decision` for the reasoning.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

HALF_SAMPLES = 20  # half-samples of the probe per candidate
MIN_HALF_SAMPLES = 8  # fewer scored halves than this: no spread is reported
NOISE_Z = 2.0  # within noise: |margin| < NOISE_Z x spread
NOISE_BUDGET_S = 20.0  # estimator seconds the half-samples may take (from the measured full-probe time)


def half_samples(labels: np.ndarray | None, n: int, repeats: int = HALF_SAMPLES, seed: int = 0) -> list[np.ndarray]:
    """``repeats`` seeded random halves of ``n`` probe images (sorted indices), stratified by class:
    each class keeps half its images (at least one). Unlabelled: half of all images."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        if labels is None:
            idx = rng.choice(n, size=max(1, n // 2), replace=False)
        else:
            idx = np.concatenate([rng.choice(m, size=max(1, int(round(len(m) / 2))), replace=False)
                                  for m in (np.flatnonzero(labels == c) for c in np.unique(labels))])
        out.append(np.sort(idx))
    return out


def score_half(est, features: np.ndarray, labels: np.ndarray | None, inputs: dict, idx: np.ndarray) -> float:
    """``est`` (an :class:`advisor.Estimator`) on the images ``idx``: every per-image input (an array
    with one row per probe image: features, labels, logits, reference, attributions) is subset alike.
    NaN where the estimator fails or is skipped."""
    from advisor.estimators import safe_score

    n = len(features)
    sub = {k: v[idx] if isinstance(v, np.ndarray) and v.ndim >= 1 and len(v) == n else v for k, v in inputs.items()}
    score, _ = safe_score(est, features[idx], None if labels is None else labels[idx], **sub)
    return np.nan if score is None else float(score)


def within_budget(fn, halves: list[np.ndarray], budget: float) -> tuple[list, float]:
    """``fn(idx)`` for the halves in order while the time spent stays within ``budget`` seconds (it
    stops before a half that the mean time so far says would exceed it). BLAS runs on one thread
    meanwhile: on a busy machine OpenBLAS's spinning threads made one LogME call 40x slower
    (5.6 s vs 0.13 s, 200 x 1280 features, 2 cores under load). Returns (results, seconds)."""
    import time
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except Exception:  # noqa: BLE001 - an optional speed-up
        limit = nullcontext()
    out: list = []
    t0 = time.perf_counter()
    with limit:
        for idx in halves:
            spent = time.perf_counter() - t0
            if out and spent + spent / len(out) > budget:
                break
            out.append(fn(idx))
    return out, time.perf_counter() - t0


def _halves_file(est, mf, cut: str, probe, seed: int, repeats: int, inputs: dict) -> Path:
    """Where the half-sample scores of one (estimator, model, cut, probe) are kept: keyed by
    everything they depend on (the estimator's version, the weights and preprocessing, the probe's
    content, the seed, the reference's values)."""
    import hashlib

    from advisor.store.db import default_home

    h = hashlib.sha256(repr((est.name, est.version, mf.resolved.fingerprint, mf.preproc_hash, probe.hash, len(probe), cut,
                             seed, repeats)).encode())
    for k in ("reference", "reference_attributions"):
        v = inputs.get(k)
        if isinstance(v, np.ndarray):
            h.update(np.ascontiguousarray(v).tobytes())
    return default_home() / "decisions" / f"halves-{h.hexdigest()[:24]}.json"


def half_scores(est, candidates: list[tuple], probe, *, budget: float = NOISE_BUDGET_S, seed: int = 0,
                repeats: int = HALF_SAMPLES) -> tuple[np.ndarray, float]:
    """``est`` on ``repeats`` half-samples for each ``(ModelFeatures, cut)`` of ``candidates``:
    ``float[done, len(candidates)]`` (NaN where it failed), ``done`` ≤ ``repeats`` as the ``budget``
    allows, and the seconds spent. A complete set is stored (``$ADVISOR_HOME/decisions/``), so a warm
    rerun re-scores nothing."""
    ins = [(mf.features[cut], _inputs_at(mf, cut, probe)) for mf, cut in candidates]
    files = [_halves_file(est, mf, cut, probe, seed, repeats, i) for (mf, cut), (_, i) in zip(candidates, ins)]
    cached = []
    for f in files:
        try:
            cached.append(np.array(json.loads(f.read_text()), dtype=float))
        except (OSError, ValueError):
            break
    if len(cached) == len(files) and all(len(c) == repeats for c in cached):
        return np.stack(cached, axis=1) if cached else np.zeros((repeats, 0)), 0.0
    halves = half_samples(probe.labels, len(probe), repeats, seed)
    done, secs = within_budget(lambda idx: [score_half(est, f, probe.labels, i, idx) for f, i in ins], halves, budget)
    table = np.array(done, dtype=float).reshape(len(done), len(candidates))
    if len(done) == repeats:
        for j, f in enumerate(files):
            try:
                f.parent.mkdir(parents=True, exist_ok=True)
                f.write_text(json.dumps([None if not np.isfinite(v) else float(v) for v in table[:, j]]))
            except OSError:
                pass
    return table, secs


@dataclass
class Noise:
    """The margin of a first candidate over a second, against its half-sample spread.

    ``margin``: the full-probe score difference, oriented so that > 0 means the first is better;
    ``sd``: the standard deviation of that difference over the half-samples (None: not measured,
    ``reason`` says why); ``wins``: half-samples in which the first stays ahead, of ``valid``."""

    estimator: str
    margin: float | None
    sd: float | None = None
    wins: int = 0
    valid: int = 0
    repeats: int = 0
    n_images: int = 0
    reason: str = ""

    @property
    def ratio(self) -> float | None:
        if self.margin is None or self.sd is None:
            return None
        return math.inf if self.sd == 0 and self.margin != 0 else (0.0 if self.sd == 0 else abs(self.margin) / self.sd)

    @property
    def within_noise(self) -> bool | None:
        """True when |margin| < NOISE_Z × spread (a tie counts); None when not measured."""
        r = self.ratio
        return None if r is None else r < NOISE_Z

    def to_json(self) -> dict:
        return {**asdict(self), "ratio": self.ratio, "within_noise": self.within_noise, "noise_z": NOISE_Z,
                "definition": SPREAD_DEFINITION}


SPREAD_DEFINITION = (f"standard deviation of the margin over {HALF_SAMPLES} seeded half-samples of the probe images "
                     "(stratified by class; both candidates scored on the same halves)")


def _inputs_at(mf, cut: str, probe) -> dict:
    """What the estimators got for ``cut`` of a ranked model (:attr:`ModelFeatures.inputs`)."""
    inputs = dict(getattr(mf, "inputs", None) or {})
    if not inputs:  # an API caller's hand-made ModelFeatures: logits and the label reference
        inputs = {"logits": mf.logits, "attributions": None, "reference_attributions": None,
                  "reference": None if probe.labels is None else np.eye(probe.num_classes, dtype=np.float32)[probe.labels]}
    attrs = inputs.get("attributions")
    inputs["attributions"] = attrs.get(cut) if isinstance(attrs, dict) else attrs
    return inputs


def _short(reason_count: int, repeats: int, est: str, seconds: float, budget: float) -> str:
    return (f"only {reason_count} of {repeats} half-samples of {est} fit in the {budget:g} s budget "
            f"({seconds / max(reason_count, 1):.1f} s each)")


def paired_noise(est, first: tuple, second: tuple, probe, *, budget: float = NOISE_BUDGET_S, seed: int = 0,
                 repeats: int = HALF_SAMPLES) -> Noise:
    """The margin of ``first`` over ``second`` (each ``(ModelFeatures, cut, full-probe score)``) under
    ``est``, and its half-sample spread (see the module docstring); at most ``budget`` seconds."""
    sign = 1.0 if est.higher_is_better else -1.0
    noise = Noise(est.name, sign * (first[2] - second[2]), n_images=len(probe), repeats=repeats)
    table, secs = half_scores(est, [first[:2], second[:2]], probe, budget=budget, seed=seed, repeats=repeats)
    d = sign * (table[:, 0] - table[:, 1])
    d = d[np.isfinite(d)]
    noise.valid = len(d)
    if len(table) < MIN_HALF_SAMPLES:
        noise.reason = _short(len(table), repeats, est.name, secs, budget)
    elif len(d) < MIN_HALF_SAMPLES:
        noise.reason = f"{est.name} could be scored on only {len(d)} of {len(table)} half-samples"
    else:
        noise.sd, noise.wins = float(np.std(d, ddof=1)), int(np.sum(d > 0))
    return noise


def cut_stability(est, mf, probe, cuts: list[str], epc: float | None, *, budget: float = NOISE_BUDGET_S, seed: int = 0,
                  repeats: int = HALF_SAMPLES) -> tuple[dict[str, int], int, list[np.ndarray] | None, str]:
    """How often :func:`advisor.ranking.layers.recommend` picks each cut when ``est`` scores every cut on
    half-samples (the rule keeps the full probe's examples per class). Returns ``(picks, valid,
    per-half score rows over ``cuts``, reason)``; ``valid`` 0 with a ``reason`` when not measured."""
    from advisor.ranking.layers import recommend

    table, secs = half_scores(est, [(mf, c) for c in cuts], probe, budget=budget, seed=seed, repeats=repeats)
    if len(table) < MIN_HALF_SAMPLES:
        return {}, 0, None, _short(len(table), repeats, est.name, secs, budget)
    picks: dict[str, int] = {}
    valid = 0
    for row in table:
        rec = recommend(cuts, [None if not np.isfinite(v) else float(v) for v in row], est.higher_is_better, epc, est.name)
        if rec is not None:
            picks[rec.cut] = picks.get(rec.cut, 0) + 1
            valid += 1
    return dict(sorted(picks.items(), key=lambda kv: -kv[1])), valid, table, ""
