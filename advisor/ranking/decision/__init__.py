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

The parts: :mod:`~advisor.ranking.decision.anatomy` (what freezing at a cut means on the model),
:mod:`~advisor.ranking.decision.noise` (half-sample spread and cut stability),
:mod:`~advisor.ranking.decision.describe` (the sentences), :mod:`~advisor.ranking.decision.snippet`
(learning rates and the fine-tuning code) and :mod:`~advisor.ranking.decision.decide`
(:func:`decide_rank`, :func:`decide_layers`, :class:`Decision`).
"""

from advisor.ranking.decision.anatomy import ANATOMY_VERSION, Anatomy, cover, load_plan, model_anatomy
from advisor.ranking.decision.decide import STABLE_SHARE, Decision, decide_layers, decide_rank, safely
from advisor.ranking.decision.describe import (DEEP, SHALLOW, count, describe_disagreement, describe_freeze, describe_noise,
                                               describe_training, domain_vs_layers, layers_tier, span)
from advisor.ranking.decision.noise import (HALF_SAMPLES, MIN_HALF_SAMPLES, NOISE_BUDGET_S, NOISE_Z, SPREAD_DEFINITION, Noise,
                                            cut_stability, half_samples, half_scores, paired_noise, score_half, within_budget)
from advisor.ranking.decision.snippet import snippet, training_protocol

__all__ = [
    "ANATOMY_VERSION", "DEEP", "HALF_SAMPLES", "MIN_HALF_SAMPLES", "NOISE_BUDGET_S", "NOISE_Z", "SHALLOW", "SPREAD_DEFINITION",
    "STABLE_SHARE", "Anatomy", "Decision", "Noise", "count", "cover", "cut_stability", "decide_layers", "decide_rank",
    "describe_disagreement", "describe_freeze", "describe_noise", "describe_training", "domain_vs_layers", "half_samples",
    "half_scores", "layers_tier", "load_plan", "model_anatomy", "paired_noise", "safely", "score_half", "snippet", "span",
    "training_protocol", "within_budget",
]
