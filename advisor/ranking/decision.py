"""``advisor.ranking.decision``: the plain-language recommendation that ends ``advisor rank`` and ``advisor layers``,
and the ready-to-run fine-tuning code behind ``--snippet``.

A table of scores is not a decision. This module turns one into four statements:

1. **What to do**: which model, which cut to freeze up to, and what that means on the real model —
   which modules keep their pretrained weights frozen and how many parameters are frozen / trainable,
   counted on the model built from the same weights (:func:`model_anatomy`). The cut is the rule of
   :func:`advisor.ranking.layers.recommend` (the first estimator's argmax over the cuts, moderated by the
   probe's size), so ``rank`` and ``layers`` pick cuts the same way. At ``pre_logits`` it means
   *train only a new head*.
2. **How sure**: the margin to the runner-up (model for ``rank``, cut for ``layers``) against the
   estimator's own noise on this probe. The noise is measured by **half-sampling**: the estimator is
   re-run on ``HALF_SAMPLES`` (20) random halves of the probe images (stratified by class, seeded),
   both candidates on the same halves, and the *spread* is the standard deviation of the margin over
   those halves. For a statistic that is a mean over images, the variance over half-samples drawn
   without replacement is σ²(1/(n/2) − 1/n) = σ²/n, i.e. the variance of the statistic on the whole
   probe, so the spread estimates the margin's standard error directly. Candidates are **within
   noise** when the margin is below ``NOISE_Z`` (2) × that spread. ``layers`` also reports how often
   the rule picks the same cut on the halves. Half-sampling costs ``HALF_SAMPLES`` × candidates
   estimator calls (BLAS on one thread); halves are scored until ``NOISE_BUDGET_S`` seconds are
   spent, and with fewer than ``MIN_HALF_SAMPLES`` the spread is reported as not measured (with the
   reason) and the margin is put against the score range over the candidates instead. Complete
   half-sample scores are stored beside the anatomy, so a warm rerun re-scores nothing.
3. **Do the estimators agree**: each estimator's own top model (``rank``) or rule-picked cut
   (``layers``); a disagreement is named.
4. **Domain forecast vs layers** (with ``--domain``): the forecast of Chen et al. 2022 (a tier of
   "freeze most / the lower half / nothing", from the probe's colour-texture gap G, width W and size
   N) compared with the cut, whose depth is mapped onto the same tiers (share of the traced stages
   frozen: ≥ 2/3 → freeze most, ≥ 1/3 → the lower half, less → nearly everything trains). When they
   differ, the evidence of each is named and one is preferred (:func:`domain_vs_layers`).

The learning rates are Plested & Gedeon 2019's (new layers 0.01, transferred layers 0.001, both × 0.1
after Table 2's initial epochs for the probe's examples per class), taken from
:func:`advisor.validation.finetune.finetune`, not restated here.

Model anatomy (the frozen / trainable counts, the stage order, how the snippet loads the weights) needs
torch and a model build; it is stored as a small JSON file per weights fingerprint under
``$ADVISOR_HOME/decisions/`` so that a warm ``rank`` stays torch-free. Everything else is numpy on the
features ``advisor.rank`` already holds.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS

HALF_SAMPLES = 20  # half-samples of the probe per candidate
MIN_HALF_SAMPLES = 8  # fewer scored halves than this: no spread is reported
NOISE_Z = 2.0  # within noise: |margin| < NOISE_Z x spread
NOISE_BUDGET_S = 20.0  # estimator seconds the half-samples may take (from the measured full-probe time)
ANATOMY_VERSION = "2"  # bump when Anatomy's content changes: stored files carry it in their name
DEEP, SHALLOW = 2 / 3, 1 / 3  # share of stages frozen → the domain forecast's tiers
STABLE_SHARE = 0.8  # a cut pick is "beyond noise" when the rule picks it on ≥ 80 % of the half-samples (and its margin is not within noise)


# ---------------------------------------------------------------- what freezing at a cut means


@dataclass
class Anatomy:
    """One model with a new ``num_classes``-way head, as the snippet builds it.

    ``frozen[cut]``: parameters frozen when freezing up to ``cut`` (it and every stage before it; at
    ``pre_logits`` everything but the new head). ``frozen_prefixes[cut]`` / ``trainable_prefixes[cut]``:
    the shortest module names covering exactly the frozen / the trainable pretrained parameters (the
    new head excluded). ``depth[cut]``: share of the stages frozen (1.0 at ``pre_logits``).
    ``traced``: the stage order was traced by :func:`advisor.validation.split.stages`; otherwise it is the
    modules' registration order (e.g. a ViT). ``load``: how the snippet loads the weights
    (:func:`_load_plan`). ``data_config``: the preprocessing advisor used."""

    model: str
    arch: str
    num_classes: int
    source_classes: int
    total: int
    head: int
    cuts: list[str]
    traced: bool
    frozen: dict[str, int]
    frozen_prefixes: dict[str, list[str]]
    trainable_prefixes: dict[str, list[str]]
    depth: dict[str, float]
    data_config: dict
    load: dict

    def trainable(self, cut: str) -> int:
        return self.total - self.frozen[cut]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def cover(chosen: set[str], names: list[str]) -> list[str]:
    """The shortest dotted prefixes that cover exactly the ``chosen`` names among ``names`` (parameter
    names, in model order), in that order: ``{"a.0.w", "a.1.w"}`` of ``["a.0.w", "a.1.w", "b.w"]``
    → ``["a"]``."""
    out: list[str] = []
    for n in names:
        if n not in chosen or any(_under(n, p) for p in out):
            continue
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            if all(m in chosen for m in names if _under(m, p)):
                out.append(p)
                break
    return out


def span(prefixes: list[str]) -> str:
    """Module names for a sentence, runs of numbered siblings shortened: ``blocks.0, blocks.1,
    blocks.2`` → ``blocks.0–2``."""
    groups: list[list] = []
    for p in prefixes:
        head, _, tail = p.rpartition(".")
        if head and tail.isdigit() and groups and groups[-1][0] == head and groups[-1][2] == int(tail) - 1:
            groups[-1][2] = int(tail)
            continue
        groups.append([head, int(tail), int(tail)] if head and tail.isdigit() else [p, None, None])
    parts = []
    for head, lo, hi in groups:
        parts.append(head if lo is None else f"{head}.{lo}" if lo == hi else f"{head}.{lo}–{hi}")
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def _anatomy_file(fingerprint: str, img_size: int | None, num_classes: int) -> Path:
    from advisor.store.cache import default_home

    return default_home() / "decisions" / f"{fingerprint}-{img_size or 'native'}-{num_classes}-v{ANATOMY_VERSION}.json"


def model_anatomy(resolved, *, num_classes: int, img_size: int | None = None, model_id: str | None = None) -> Anatomy:
    """Build ``resolved`` (an :class:`advisor.models.models.Resolved`) with a ``num_classes``-way head and
    count what each cut freezes (see :class:`Anatomy`); stored per weights fingerprint, so the next
    call reads a small JSON file instead of importing torch. Raises :class:`AdvisorError` when the
    model cannot be built or has no ``reset_classifier``."""
    path = _anatomy_file(resolved.fingerprint, img_size, num_classes)
    if path.is_file():
        try:
            return Anatomy(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged or foreign file: compute it again
    anatomy = _compute_anatomy(resolved, num_classes=num_classes, img_size=img_size, model_id=model_id or resolved.ref.raw)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(anatomy)))
        tmp.replace(path)
    except OSError:
        pass  # read-only home: it is computed again next time
    return anatomy


def _compute_anatomy(resolved, *, num_classes: int, img_size: int | None, model_id: str) -> Anatomy:
    import torch

    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.validation.split import stages

    loaded = build_model(resolved, img_size=img_size)
    model = loaded.module
    native = loaded.native_config or loaded.data_config
    rebuilt = bool(img_size and native.get("fixed_input_size") and tuple(native["input_size"][1:]) != (img_size, img_size))
    load = _load_plan(resolved, model, rebuilt, img_size)
    source_classes = int(getattr(model, "num_classes", 0) or 0)
    if not hasattr(model, "reset_classifier"):
        raise AdvisorError(f"model '{model_id}' has no reset_classifier(), so no new head can be fitted", "use a timm architecture")
    model.reset_classifier(num_classes)
    cuts = cut_names(model)
    params = list(model.named_parameters())
    names = [n for n, _ in params]
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head_names = {n for n, p in params if id(p) in head_ids}
    numel = {n: p.numel() for n, p in params}
    id_to_name = {id(p): n for n, p in params}
    c, h, w = loaded.data_config["input_size"]
    try:
        st = stages(model, torch.zeros(2, c, h, w))
        traced = True
    except AdvisorError:
        st, traced = None, False
    frozen_sets: dict[str, set[str]] = {}
    depth: dict[str, float] = {}
    if traced:
        for cut in cuts:
            if cut == PRE_LOGITS:
                frozen_sets[cut] = set(names) - head_names
                depth[cut] = 1.0
                continue
            k = st.index(cut)
            frozen_sets[cut] = {id_to_name[id(p)] for m in st.modules[:k + 1] for p in m.parameters() if id(p) in id_to_name}
            depth[cut] = (k + 1) / len(st.modules)
    else:  # registration order: a parameter is frozen when its module comes no later than the cut's last submodule
        order = [n for n, _ in model.named_modules()]
        pos = {n: i for i, n in enumerate(order)}
        for i, cut in enumerate(cuts):
            if cut == PRE_LOGITS:
                frozen_sets[cut] = set(names) - head_names
            else:
                end = max(j for j, n in enumerate(order) if _under(n, cut))
                frozen_sets[cut] = {n for n in names if pos.get(n.rpartition(".")[0], 0) <= end} - head_names
            depth[cut] = (i + 1) / len(cuts)
    pretrained = [n for n in names if n not in head_names]
    return Anatomy(
        model=model_id, arch=resolved.arch, num_classes=num_classes, source_classes=source_classes,
        total=sum(numel.values()), head=sum(numel[n] for n in head_names), cuts=cuts, traced=traced,
        frozen={cut: sum(numel[n] for n in s) for cut, s in frozen_sets.items()},
        frozen_prefixes={cut: cover(s, names) for cut, s in frozen_sets.items()},
        trainable_prefixes={cut: cover(set(pretrained) - s, names) for cut, s in frozen_sets.items()},
        depth=depth,
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()
                     if k in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")},
        load=load,
    )


def _fits(sd: dict, target: dict, plain: bool) -> bool:
    """The checkpoint loads strictly as it is: same keys and shapes; a missing BatchNorm counter is
    allowed for a plain (safetensors) dict, which torch fills in."""
    missing = [k for k in target if k not in sd]
    if any(not (plain and k.endswith("num_batches_tracked")) for k in missing):
        return False
    return all(k in target and tuple(v.shape) == tuple(target[k].shape) for k, v in sd.items())


def _load_plan(resolved, model, rebuilt: bool, img_size: int | None) -> dict:
    """How the snippet loads the same weights, the plainest way timm supports:

    - ``pretrained``: hub-cache files, as advisor loads them: ``timm.create_model(arch, pretrained=True,
      pretrained_cfg_overlay=dict(file=...))`` (timm applies its own checkpoint filters);
    - ``checkpoint_path``: a file whose keys fit the architecture: ``timm.create_model(arch, checkpoint_path=...)``;
    - ``filter_fn``: a file the architecture module's ``checkpoint_filter_fn`` maps (timm's convention):
      ``timm.models.load_checkpoint(model, path, filter_fn=...)``;
    - ``advisor``: anything else (keys matched by position, a first convolution adapted to other input
      channels, position embeddings resampled, a fixed-size model rebuilt for ``--img-size``):
      advisor's own loader, :func:`advisor.models.loading.build_model`, on the same recipe."""
    import sys

    from advisor.models.loading import default_cfgs, read_state_dict

    plan = {"how": "advisor", "arch": resolved.arch, "kwargs": dict(resolved.kwargs),
            "weights": None if resolved.weights is None else str(Path(resolved.weights).expanduser().resolve()),
            "plugin_arch": resolved.arch in default_cfgs, "remap_keys": bool(resolved.remap_keys),
            "img_size": img_size if rebuilt else None, "filter_module": None, "why": ""}
    if resolved.weights is None:
        plan["why"] = "the weights are not a file"
        return plan
    if resolved.timm_pretrained:
        plan["how"] = "pretrained"
        return plan
    if resolved.remap_keys or rebuilt:
        plan["why"] = "keys matched by position" if resolved.remap_keys else f"rebuilt at {img_size} px"
        return plan
    sd = read_state_dict(Path(resolved.weights))
    target = model.state_dict()
    plain = str(resolved.weights).endswith(".safetensors")
    if _fits(sd, target, plain):
        plan["how"] = "checkpoint_path"
        return plan
    module = type(model).__module__
    filt = getattr(sys.modules.get(module), "checkpoint_filter_fn", None)
    if filt is not None:
        try:
            mapped = filt(dict(sd), model)
        except Exception:
            mapped = None
        if mapped is not None and _fits(mapped, target, plain):
            plan.update(how="filter_fn", filter_module=module)
            return plan
    plan["why"] = "the file needs advisor's key and input-channel fitting"
    return plan


# ---------------------------------------------------------------- how sure: half-samples


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

    from advisor.store.cache import default_home

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


# ---------------------------------------------------------------- sentences (pure)


def count(n: int) -> str:
    return f"{n:,}"


def _share(part: int, total: int) -> str:
    """A percentage that does not round 99.97 % up to 100 % (or 0.02 % down to 0 %)."""
    if not total:
        return "–"
    s = part / total
    text = f"{s:.0%}"
    return f"{s:.2%}" if text in ("0%", "100%") and 0 < s < 1 else text


def describe_freeze(anatomy: Anatomy, cut: str) -> str:
    """What freezing up to ``cut`` means on this model, with exact parameter counts."""
    a, c = anatomy, anatomy.num_classes
    frozen, trainable = a.frozen[cut], a.trainable(cut)
    share = _share(frozen, a.total)
    if cut == PRE_LOGITS:
        return (f"train only a new {c}-way head on its pre_logits features ({count(a.head)} trainable parameters); "
                f"all {count(frozen)} pretrained parameters stay frozen ({share} of the model)")
    order = "" if a.traced else " (in parameter registration order: this architecture's stages could not be traced)"
    rest = span(a.trainable_prefixes[cut])
    return (f"keep {span(a.frozen_prefixes[cut])} frozen{order} ({count(frozen)} parameters, {share}); "
            f"fine-tune {rest + ', plus ' if rest else ''}a new {c}-way head ({count(trainable)} trainable parameters)")


def describe_noise(noise: Noise, first: str, second: str, *, ranges: tuple[float, int] | None = None, what: str = "model") -> str:
    """How sure, in one sentence: the margin of ``first`` over ``second`` against the half-sample
    spread (``noise``); ``ranges`` = (score range over the candidates, number of candidates) for
    the sentence when the spread was not measured."""
    m = noise.margin
    if noise.sd is None:
        rel = ""
        if ranges and ranges[0] > 0 and m is not None:
            rel = f" = {abs(m) / ranges[0]:.0%} of the {noise.estimator} range over the {ranges[1]} {what}s"
        return (f"How sure: not measured ({noise.reason}); the {noise.estimator} margin of {first} over {second} is "
                f"{_num(m)}{rel}.")
    spread = f"{_num(noise.sd)}, the std over {noise.valid} stratified half-samples of the {noise.n_images} probe images"
    if noise.within_noise:
        return (f"How sure: within noise — the {noise.estimator} margin of {first} over the runner-up {what} {second} "
                f"({_num(m)}) is below {NOISE_Z:g} × its spread ({spread}): this probe cannot separate the two reliably "
                f"({first} leads in {noise.wins} of {noise.valid} half-samples).")
    return (f"How sure: clear — the {noise.estimator} margin of {first} over the runner-up {what} {second} is {_num(m)}, "
            f"{noise.ratio:.1f} × its spread ({spread}); {first} leads in {noise.wins} of {noise.valid}.")


def _num(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.4f}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def describe_disagreement(picks: dict[str, str | None], primary: str, what: str = "top model") -> tuple[str | None, dict[str, str]]:
    """``picks``: estimator → its pick (its top model, or its rule-picked cut). Returns the sentence
    (None with a single estimator) and the estimators whose pick differs from ``primary``'s."""
    others = {e: p for e, p in picks.items() if e != primary and p is not None}
    if not others:
        return None, {}
    mine = picks.get(primary)
    differ = {e: p for e, p in others.items() if p != mine}
    if not differ:
        return f"Estimators agree: {', '.join(others)} also {'pick' if len(others) > 1 else 'picks'} {mine} as the {what}.", {}
    listed = "; ".join(f"{e} → {p}" for e, p in differ.items())
    agree = [e for e in others if e not in differ]
    return (f"Estimators disagree on the {what}: {primary} → {mine}, but {listed}"
            + (f" ({', '.join(agree)} {'agree' if len(agree) > 1 else 'agrees'} with {primary})" if agree else "")
            + f"; the recommendation follows {primary}, the first estimator — check the alternatives before committing "
              "(`advisor validate` fine-tunes them briefly).", differ)


def layers_tier(depth: float) -> str:
    """The domain forecast's tier that a cut freezing ``depth`` of the stages corresponds to."""
    return "high" if depth >= DEEP else "medium" if depth >= SHALLOW else "low"


def domain_vs_layers(forecast: dict, *, model: str, cut: str, depth: float, estimator: str, n_images: int,
                     layers_sure: bool | None) -> dict:
    """Compare Chen et al. 2022's freezing forecast (``forecast``: :func:`advisor.domain.domain.analyse`'s
    result) with the cut picked from ``estimator``'s profile (``depth``: share of stages it freezes;
    ``layers_sure``: whether that pick was beyond the half-sample noise, None if not measured).

    Returns ``{"agree", "forecast_tier", "layers_tier", "prefer", "text"}``; ``prefer`` is
    ``layers``, ``domain`` or ``validate`` (neither is decisive: measure it)."""
    adv, fc = forecast["advice"], forecast["forecast"]
    tier, band = adv["tier"], adv.get("tiers_in_band") or [adv["tier"]]
    zg = fc.get("z", {}).get("G", 0.0)
    lt = layers_tier(depth)
    stem = zg > 1.0  # the forecast also says: unfreeze the stem
    agree = lt in band and not stem
    words = {"high": "freeze most of the backbone", "medium": "freeze the lower half", "low": "fine-tune (nearly) all layers"}
    frozen = "only the new head trains" if cut == PRE_LOGITS else f"{depth:.0%} of the stages stay frozen"
    head = (f"Domain forecast vs layers: the forecast for {forecast['source']} pre-training (T_FB {fc['T_FB']:.1f}, "
            f"{fc['level']:.0%} band {fc['low']:.1f}–{fc['high']:.1f}) says {tier}: {words[tier]}"
            + (" and unfreeze the stem (large gap)" if stem else "")
            + f"; the cut {cut} ({frozen}) corresponds to {lt}: {words[lt]}.")
    if agree:
        return {"agree": True, "forecast_tier": tier, "layers_tier": lt, "prefer": None,
                "text": head + (" They agree." if len(band) == 1 else f" They agree (the cut lies within the forecast's band, {band[0]}–{band[-1]}).")}
    evidence = (f" They differ. The cut rests on {estimator} scores of {model}'s own features at each cut on your {n_images} "
                f"labelled images (this model, your labels; a proxy, nothing trained); the forecast rests on 22 colour/texture "
                f"statistics of the images (gap G, width W) and their number N, through Chen et al. 2022's eq. 3 fitted on "
                f"{forecast['fit']['n']} datasets (the same for every model pre-trained on {forecast['source']}, blind to labels).")
    if layers_sure:
        prefer, why = "layers", " Prefer the cut: it is specific to this model and task, and its pick is beyond the half-sample noise."
    elif layers_sure is False and len(band) == 1:
        prefer, why = "domain", " Prefer the forecast: the layer profile cannot separate its top cuts on this probe (within noise), and the forecast's band stays in one tier."
    else:
        prefer, why = "validate", (" Neither is decisive (" + ("the layer pick is within noise" if layers_sure is False else "the layer pick's noise was not measured")
                                   + ("" if len(band) == 1 else f", the forecast's band spans {band[0]}–{band[-1]}") + "): measure it with "
                                   f"`advisor layers {model} {forecast.get('probe') or 'PROBE'} --validate` (a defrosting profile, Gerace et al. 2023).")
    return {"agree": False, "forecast_tier": tier, "layers_tier": lt, "prefer": prefer, "text": head + evidence + why}


# ---------------------------------------------------------------- learning rates and the snippet


def training_protocol(examples_per_class: float, cut: str):
    """Plested & Gedeon 2019's fine-tuning protocol for the probe's size (:func:`advisor.validation.finetune.finetune`,
    whose rule this reuses): new layers at ``lr``, transferred trainable layers at ``lr_transferred``,
    both × 0.1 after ``decay_epochs``. ``epochs``: at least as many after the decay as before, and at
    least 10 (Plested & Gedeon 2019 fix the decay point, not the length; 10 is ``advisor validate``'s)."""
    from advisor.validation.finetune import decay_epochs_for, finetune

    return finetune(examples_per_class, epochs=max(10, 2 * decay_epochs_for(examples_per_class)), freeze=cut)


def describe_training(protocol, examples_per_class: float, cut: str) -> str:
    rates = (f"new head lr {protocol.lr:g}" if cut == PRE_LOGITS else
             f"new head lr {protocol.lr:g}, unfrozen pretrained layers {protocol.lr_transferred:g}")
    decay = (f"both × 0.1 after {protocol.decay_epochs} epochs" if cut != PRE_LOGITS else f"× 0.1 after {protocol.decay_epochs} epochs") \
        if protocol.decay_epochs else "at 0.1 × from the start"
    return (f"Train with Plested & Gedeon 2019's rates for {examples_per_class:.0f} examples per class: {rates}, {decay} "
            f"(SGD, momentum {protocol.momentum:g}, weight decay {protocol.weight_decay:g}, {protocol.epochs} epochs); "
            "`--snippet` prints the code.")


def _kw(kwargs: dict) -> str:
    return "".join(f", {k}={v!r}" for k, v in kwargs.items())


def _load_code(load: dict) -> tuple[list[str], list[str]]:
    """(module-level lines, ``load_model`` body lines) that create the model with its source head."""
    top, body = [], []
    if load["plugin_arch"] and load["how"] != "advisor":
        top += ["from advisor.models.loading import register_plugin_architectures", "",
                f"register_plugin_architectures()  # {load['arch']} is one of advisor's architecture plugins: register it with timm"]
    arch, kw = load["arch"], _kw(load["kwargs"])
    if load["how"] == "pretrained":
        body += [f"model = timm.create_model({arch!r}, pretrained=True, pretrained_cfg_overlay=dict(file=WEIGHTS){kw})"]
    elif load["how"] == "checkpoint_path":
        body += [f"model = timm.create_model({arch!r}, checkpoint_path=WEIGHTS{kw})"]
    elif load["how"] == "filter_fn":
        body += ["from timm.models import load_checkpoint", "",
                 f"from {load['filter_module']} import checkpoint_filter_fn  # the architecture's key mapping (timm's convention)", "",
                 f"model = timm.create_model({arch!r}{kw})",
                 "load_checkpoint(model, WEIGHTS, filter_fn=checkpoint_filter_fn)"]
    else:
        body += [f"# these weights need advisor's own loader ({load['why']})",
                 "from pathlib import Path", "",
                 "from advisor.models.loading import build_model",
                 "from advisor.models.models import Resolved, parse_model_id", "",
                 f"resolved = Resolved(ref=parse_model_id(MODEL_ID), arch={arch!r}, kwargs={load['kwargs']!r}, "
                 f"weights=Path(WEIGHTS), remap_keys={load['remap_keys']!r})",
                 f"model = build_model(resolved, img_size={load['img_size']!r}).module"]
    return top, body


def snippet(anatomy: Anatomy, cut: str, protocol, *, probe: str, split: str | None, examples_per_class: float,
            command: str) -> str:
    """Ready-to-run Python that fine-tunes the recommended model as recommended: the
    ``timm.create_model`` call that loads the same weights (see :func:`_load_plan`), a new
    ``num_classes``-way head, ``requires_grad = False`` for every parameter up to ``cut``, SGD with
    Plested & Gedeon 2019's parameter groups (``protocol``: :func:`training_protocol`), and a loop
    over the probe's images read by :mod:`advisor.data.probe` (same images and class order as advisor
    used), in advisor's preprocessing. ``python snippet.py [EPOCHS]``; importing it runs nothing
    (``load_model()``, ``prepare(model)``, ``training_data()``, ``main(epochs)``)."""
    a, load = anatomy, anatomy.load
    if load["weights"] is None:
        raise AdvisorError(f"model '{a.model}' has no weights file to load", "only file-backed models get a snippet")
    top, body = _load_code(load)
    cfg = a.data_config
    chans = int(cfg["input_size"][0])
    spec = probe if probe.startswith("builtin:") else str(Path(probe).expanduser().resolve())
    frozen = tuple(a.frozen_prefixes[cut])
    what = ("everything but the new head (train only the head)" if cut == PRE_LOGITS
            else f"everything up to and including `{cut}`")
    transform = (f"create_transform(input_size={tuple(cfg['input_size'])!r}, interpolation={cfg.get('interpolation', 'bilinear')!r}, "
                 f"mean={tuple(cfg['mean'])!r}, std={tuple(cfg['std'])!r}, crop_pct={cfg.get('crop_pct', 1.0)!r}, "
                 f"crop_mode={cfg.get('crop_mode', 'center')!r}, is_training=False)")
    lines = [
        f"# Fine-tune {a.model} on {probe}, as `advisor {command}` recommends: freeze up to {cut},",
        f"# {count(a.frozen[cut])} parameters frozen, {count(a.trainable(cut))} trainable (of {count(a.total)}).",
        f"# Learning rates: Plested & Gedeon 2019 for {examples_per_class:.0f} examples per class. Run: python this_file.py [EPOCHS]",
        "import sys", "", "import timm", "import torch",
    ]
    if top:
        lines += [""] + top
    lines += [
        "",
        f"MODEL_ID = {a.model!r}",
        f"WEIGHTS = {load['weights']!r}",
        f"PROBE = {spec!r}  # read with advisor.data.probe: the images and class order advisor scored",
        f"SPLIT = {split!r}",
        f"NUM_CLASSES = {a.num_classes}",
        f"# modules whose parameters stay frozen: {what}",
        f"FROZEN = {frozen!r}",
        f"LR_HEAD, LR_PRETRAINED = {protocol.lr!r}, {protocol.lr_transferred!r}  # Plested & Gedeon 2019: new layers, transferred layers",
        f"DECAY_EPOCHS = {protocol.decay_epochs}  # then both x 0.1 (Plested & Gedeon 2019, Table 2)",
        f"EPOCHS = {protocol.epochs}",
        f"BATCH_SIZE = {protocol.batch_size}",
        "", "",
        "def load_model():",
        '    """The pretrained weights advisor scored, with a new NUM_CLASSES-way head."""',
    ]
    lines += [("    " + s) if s else "" for s in body]
    lines += [
        "    model.reset_classifier(NUM_CLASSES)",
        "    return model",
        "", "",
        "def is_frozen(name):",
        '    return any(name == p or name.startswith(p + ".") for p in FROZEN)',
        "", "",
        "def prepare(model):",
        '    """Freeze FROZEN; parameter groups: the new head at LR_HEAD, the other trainable layers at LR_PRETRAINED."""',
        "    for name, p in model.named_parameters():",
        "        p.requires_grad = not is_frozen(name)",
        "    head = list(model.get_classifier().parameters())",
        "    rest = [p for p in model.parameters() if p.requires_grad and all(p is not h for h in head)]",
        '    groups = [{"params": head, "lr": LR_HEAD}]',
        "    if rest:",
        '        groups.append({"params": rest, "lr": LR_PRETRAINED})',
        "    return groups",
        "", "",
        "def training_data():",
        "    from timm.data import create_transform",
        "",
        "    from advisor.data.probe import load_probe",
        "",
        "    probe = load_probe(PROBE, split=SPLIT)",
        f"    transform = {transform}",
        "",
        "    class Images(torch.utils.data.Dataset):",
        "        def __len__(self):",
        "            return len(probe)",
        "",
        "        def __getitem__(self, i):",
        f"            return transform(probe.load_image(i).convert({'L' if chans == 1 else 'RGB'!r})), int(probe.labels[i])",
        "",
        "    return Images()",
        "", "",
        "def main(epochs=EPOCHS):",
        '    device = "cuda" if torch.cuda.is_available() else "cpu"',
        "    model = load_model().to(device)",
        f"    optimizer = torch.optim.SGD(prepare(model), momentum={protocol.momentum!r}, weight_decay={protocol.weight_decay!r})",
        "    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0 if epoch < DECAY_EPOCHS else 0.1)",
        "    data = training_data()",
        "    loader = torch.utils.data.DataLoader(data, batch_size=BATCH_SIZE, shuffle=True, drop_last=len(data) > BATCH_SIZE)",
        "    for epoch in range(epochs):",
        "        model.train()",
        "        for name, module in model.named_modules():",
        "            if name and is_frozen(name):",
        "                module.eval()  # frozen BatchNorm layers keep their pretrained statistics",
        "        seen, correct, total = 0, 0, 0.0",
        "        for x, y in loader:",
        "            x, y = x.to(device), y.to(device)",
        "            logits = model(x)",
        "            loss = torch.nn.functional.cross_entropy(logits, y)",
        "            optimizer.zero_grad()",
        "            loss.backward()",
        "            optimizer.step()",
        "            total += loss.item() * len(y)",
        "            correct += (logits.argmax(1) == y).sum().item()",
        "            seen += len(y)",
        "        scheduler.step()",
        '        print(f"epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, train accuracy {correct / seen:.3f}")',
        "    return model",
        "", "",
        'if __name__ == "__main__":',
        "    main(int(sys.argv[1]) if len(sys.argv) > 1 else EPOCHS)",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the decision


@dataclass
class Decision:
    """What ``advisor rank`` / ``advisor layers`` end with. ``lines``: the recommendation in plain
    language, one statement each; the other fields are the same in numbers (``--json``)."""

    command: str
    model: str
    cut: str
    lines: list[str]
    frozen: int | None = None
    trainable: int | None = None
    total: int | None = None
    noise: Noise | None = None
    cut_picks: dict[str, int] | None = None  # layers: rule picks over the half-samples
    disagreement: dict[str, str] = field(default_factory=dict)
    domain: dict | None = None
    protocol: dict | None = None
    snippet: str | None = None
    snippet_error: str | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k not in ("noise", "snippet")}
        d["noise"] = None if self.noise is None else self.noise.to_json()
        d["text"] = self.text
        return d


def _examples_per_class(probe) -> float | None:
    return len(probe) / probe.num_classes if probe.labels is not None and probe.num_classes else None


def _forecast_for(domain: list | None, model: str) -> dict | None:
    """The forecast (``advisor.cli.domain.forecast_lines``' results) for ``model``'s pre-training domain."""
    if not domain:
        return None
    from advisor.domain.domain import source_for_model

    src = source_for_model(model)
    return next((res for _, res in domain if res and res.get("source") == src), None)


def _registered(names: list[str]):
    """The first of ``names`` that is a registered estimator (a combined column such as advisor-score
    is not one: its noise is measured with the first estimator that is)."""
    from advisor.estimators import get_estimator

    for n in names:
        try:
            return get_estimator(n)
        except AdvisorError:
            continue
    return None


def _finish(dec: Decision, anatomy: Anatomy | None, probe, split: str | None, epc: float | None, with_snippet: bool) -> Decision:
    if anatomy is not None:
        dec.frozen, dec.trainable, dec.total = anatomy.frozen[dec.cut], anatomy.trainable(dec.cut), anatomy.total
    if epc is None:
        dec.lines.append("Training: the probe has no labels, so no learning rates or snippet (label it to fine-tune).")
        dec.snippet_error = "the probe has no labels"
        return dec
    protocol = training_protocol(epc, dec.cut)
    dec.protocol = protocol.as_dict()
    dec.lines.insert(-1 if dec.domain else len(dec.lines), describe_training(protocol, epc, dec.cut))
    if with_snippet and anatomy is not None:
        try:
            dec.snippet = snippet(anatomy, dec.cut, protocol, probe=probe.source, split=split, examples_per_class=epc, command=dec.command)
        except AdvisorError as exc:
            dec.snippet_error = exc.message
    return dec


def decide_rank(result, *, split: str | None = "train", img_size: int | None = None, domain: list | None = None,
                budget: float = NOISE_BUDGET_S, seed: int = 0, with_snippet: bool = True) -> Decision:
    """The decision at the end of ``advisor rank``.

    ``result``: :func:`advisor.rank`'s :class:`RankResult`; ``split``/``img_size``: as ranked (the
    snippet reads the same split; the anatomy is built at the same size); ``domain``:
    ``advisor.cli.domain.forecast_lines``' ``[(text, result)]`` when ``--domain`` was given.
    The model is the first estimator's top model; the cut is :func:`advisor.ranking.layers.recommend` on
    its profile. Raises :class:`AdvisorError` when no model was ranked."""
    from advisor.ranking.layers import per_class, recommend, within_words

    rows, probe = result.rows, result.probe
    order = list(dict.fromkeys(r["estimator"] for r in rows))
    if not order:
        raise AdvisorError("nothing was ranked", "rank at least one model")
    primary = order[0]
    ranked = sorted((r for r in rows if r["estimator"] == primary and r["rank"] is not None), key=lambda r: r["rank"])
    if not ranked:
        raise AdvisorError(f"{primary} ranked no model", "see the errors above")
    top = ranked[0]
    mfs = {m.model_id: m for m in result.models}
    mf = mfs[top["model"]]
    epc = _examples_per_class(probe)
    est = _registered(order)
    # the cut: the rule of `advisor layers` on the top model's profile (the first estimator with per-cut scores)
    prof = next((r for e in order for r in rows if r["estimator"] == e and r["model"] == top["model"]
                 and any(isinstance(v, (int, float)) for v in (r.get("cut_scores") or {}).values())), None)
    if prof is not None:
        rec = recommend(mf.cuts, [prof["cut_scores"].get(c) for c in mf.cuts], prof["higher_is_better"], epc, prof["estimator"])
        cut = rec.cut
    else:
        rec, cut = None, top["cut"] or PRE_LOGITS
    anatomy = model_anatomy(mf.resolved, num_classes=probe.num_classes or 1, img_size=img_size, model_id=mf.model_id)
    how = describe_freeze(anatomy, cut)
    lines = [f"Recommendation: {mf.model_id} (best of {len(ranked)} by {primary}), frozen up to {cut}: {how}."]
    if rec is not None and rec.cut != rec.argmax_cut:
        lines[-1] = lines[-1][:-1] + (f" ({rec.estimator}'s best cut is {rec.argmax_cut}; with {per_class(epc)} {within_words(rec.tolerance)} "
                                      "is taken: small targets favour deeper freezing, Gerace et al. 2023; Plested & Gedeon 2019).")
    noise = None
    if est is not None and len(ranked) > 1:
        by = {r["model"]: r for r in rows if r["estimator"] == est.name}
        own = sorted((r for r in by.values() if r["rank"] is not None), key=lambda r: r["rank"])
        a, b = by.get(top["model"]), by.get(ranked[1]["model"])
        if a and b and a["score"] is not None and b["score"] is not None:
            noise = paired_noise(est, (mfs[a["model"]], a["cut"], a["score"]), (mfs[b["model"]], b["cut"], b["score"]), probe,
                                 budget=budget, seed=seed)
            vals = [r["score"] for r in own]
            line = describe_noise(noise, a["model"], b["model"], ranges=(max(vals) - min(vals), len(vals)))
            if est.name != primary:
                line += f" ({primary} cannot be re-scored on half-samples; measured with {est.name}.)"
            lines.append(line)
    elif len(ranked) == 1:
        lines.append("How sure: only one model was ranked; there is no runner-up to compare with.")
    else:
        lines.append(f"How sure: not measured (none of {', '.join(order)} is a registered estimator that can be re-scored on half-samples).")
    picks = {e: next((r["model"] for r in rows if r["estimator"] == e and r["rank"] == 1), None) for e in order}
    text, differ = describe_disagreement(picks, primary, "top model")
    # advisor-score's own members agreeing with it is no second opinion (one member: the same numbers)
    members = {m.partition("@")[0] for r in rows if r["estimator"] == primary for m in (r.get("members") or {})}
    if not differ and members:
        text, _ = describe_disagreement({e: p for e, p in picks.items() if e not in members}, primary, "top model")
    if text:
        lines.append(text)
    dec = Decision("rank", mf.model_id, cut, lines, noise=noise, disagreement=differ)
    forecast = _forecast_for(domain, mf.model_id)
    if forecast is not None and prof is not None:
        pest = _registered([prof["estimator"]])
        sure = None
        if pest is not None:
            picks_c, valid, _, _ = cut_stability(pest, mf, probe, mf.cuts, epc, budget=budget, seed=seed)
            sure = None if not valid else picks_c.get(cut, 0) / valid >= STABLE_SHARE
        dec.domain = domain_vs_layers(forecast, model=mf.model_id, cut=cut, depth=anatomy.depth[cut], estimator=prof["estimator"],
                                      n_images=len(probe), layers_sure=sure)
        lines.append(dec.domain["text"])
    return _finish(dec, anatomy, probe, split, epc, with_snippet)


def decide_layers(profile, *, split: str | None = "train", img_size: int | None = None, domain: list | None = None,
                  budget: float = NOISE_BUDGET_S, seed: int = 0, with_snippet: bool = True) -> Decision:
    """The decision at the end of ``advisor layers`` (``profile``: :func:`advisor.ranking.layers`' result).

    How sure: the rule's pick on half-samples of the probe (how often each cut is picked), and the
    margin of the picked cut over the best other cut against its half-sample spread; the pick is
    called stable when it recurs in ≥ ``STABLE_SHARE`` of the halves and its margin is not within
    noise. Raises :class:`AdvisorError` when the first estimator produced no score."""
    from advisor.ranking.layers import recommend

    rec = profile.recommendation
    if rec is None:
        raise AdvisorError(f"{profile.estimators[0]} produced no score", "see the errors above")
    result, probe = profile.result, profile.result.probe
    mf = result.models[0]
    cut, primary = rec.cut, profile.estimators[0]
    epc = _examples_per_class(probe)
    anatomy = model_anatomy(mf.resolved, num_classes=probe.num_classes or 1, img_size=img_size, model_id=mf.model_id)
    lines = [f"Recommendation: freeze {mf.model_id} up to {cut}: {describe_freeze(anatomy, cut)}."]
    scores = profile.scores[primary]
    sign = 1.0 if profile.higher_is_better[primary] else -1.0
    # the runner-up: the best other cut that freezes a different set of parameters (layer3 and
    # pre_logits of a CIFAR ResNet freeze the same parameters: one decision, not two)
    others = [(c, s) for c, s in zip(profile.cuts, scores) if s is not None and anatomy.frozen.get(c) != anatomy.frozen[cut]]
    est = _registered([primary])
    noise, picks, sure = None, None, None
    if others and est is not None:
        mine = scores[profile.cuts.index(cut)]
        runner, rscore = max(others, key=lambda cs: sign * cs[1])
        picks, valid, table, reason = cut_stability(est, mf, probe, profile.cuts, epc, budget=budget, seed=seed)
        merged: dict[str, int] = {}
        for c, n in picks.items():  # cuts that freeze the same parameters are one pick
            merged[_same_as(anatomy, profile.cuts, c, cut)] = merged.get(_same_as(anatomy, profile.cuts, c, cut), 0) + n
        picks = dict(sorted(merged.items(), key=lambda kv: -kv[1]))
        noise = Noise(primary, sign * (mine - rscore), n_images=len(probe), repeats=0 if table is None else len(table), reason=reason)
        if table is not None:
            i, j = profile.cuts.index(cut), profile.cuts.index(runner)
            d = np.array([sign * (row[i] - row[j]) for row in table])
            d = d[np.isfinite(d)]
            noise.valid = len(d)
            if len(d) >= MIN_HALF_SAMPLES:
                noise.sd, noise.wins = float(np.std(d, ddof=1)), int(np.sum(d > 0))
            else:
                noise.reason = f"{primary} could be scored on only {len(d)} half-samples"
        valid_scores = [s for s in scores if s is not None]
        line = describe_noise(noise, cut, runner, what="cut", ranges=(max(valid_scores) - min(valid_scores), len(valid_scores)))
        if noise.margin is not None and noise.margin < 0:
            line += f" ({cut} is picked over the higher-scoring {runner} by the probe-size rule: it freezes more.)"
        if valid:
            shown = ", ".join(f"{c} {n}" for c, n in picks.items())
            line += f" On the half-samples the rule picks: {shown} (of {valid})."
            sure = picks.get(cut, 0) / valid >= STABLE_SHARE and not noise.within_noise
        lines.append(line)
    elif not others:
        lines.append("How sure: no other cut freezes a different set of parameters with a score; there is nothing to compare with.")
    per_est = {}
    for e in profile.estimators:
        r = recommend(profile.cuts, profile.scores[e], profile.higher_is_better[e], epc, e)
        per_est[e] = None if r is None else _same_as(anatomy, profile.cuts, r.cut, cut)
    text, differ = describe_disagreement(per_est, primary, "cut")
    if text:
        lines.append(text)
    dec = Decision("layers", mf.model_id, cut, lines, noise=noise, cut_picks=picks, disagreement=differ)
    forecast = _forecast_for(domain, mf.model_id)
    if forecast is not None:
        dec.domain = domain_vs_layers(forecast, model=mf.model_id, cut=cut, depth=anatomy.depth[cut], estimator=primary,
                                      n_images=len(probe), layers_sure=sure)
        lines.append(dec.domain["text"])
    return _finish(dec, anatomy, probe, split, epc, with_snippet)


def _same_as(anatomy: Anatomy, cuts: list[str], c: str, pick: str) -> str:
    """``pick`` when ``c`` freezes the same parameters as it (``layer3`` and ``pre_logits`` of a CIFAR
    ResNet), else ``c``."""
    return pick if anatomy.frozen.get(c) == anatomy.frozen.get(pick) else c


def safely(fn, *args, **kwargs) -> tuple[Decision | None, str | None]:
    """``(fn(*args, **kwargs), None)``, or ``(None, reason)``: a decision that cannot be made (a model
    that cannot be rebuilt, an estimator that fails on every half) never costs the user the table."""
    import sys

    try:
        return fn(*args, **kwargs), None
    except AdvisorError as exc:
        return None, exc.message
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - reported, the table stays
        debug = getattr(sys.modules.get("advisor.cli"), "_state", {}).get("debug") or os.environ.get("ADVISOR_DEBUG", "") not in ("", "0")
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return None, f"{type(exc).__name__}: {first}"

