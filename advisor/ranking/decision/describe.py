"""The decision's sentences (pure): what freezing means in words, how sure, whether the estimators
agree, the domain forecast against the layer pick, and the training line.
"""

from __future__ import annotations

from advisor.ranking.decision.anatomy import Anatomy
from advisor.ranking.decision.noise import NOISE_Z, Noise
from advisor.ranking.features import PRE_LOGITS

DEEP, SHALLOW = 2 / 3, 1 / 3  # share of stages frozen → the domain forecast's tiers


def count(n: int) -> str:
    return f"{n:,}"


def _share(part: int, total: int) -> str:
    """A percentage that does not round 99.97 % up to 100 % (or 0.02 % down to 0 %)."""
    if not total:
        return "–"
    s = part / total
    text = f"{s:.0%}"
    return f"{s:.2%}" if text in ("0%", "100%") and 0 < s < 1 else text


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
    """Compare Chen et al. 2022's freezing forecast (``forecast``: :func:`advisor.domain.analyse`'s
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


def describe_training(protocol, examples_per_class: float, cut: str) -> str:
    rates = (f"new head lr {protocol.lr:g}" if cut == PRE_LOGITS else
             f"new head lr {protocol.lr:g}, unfrozen pretrained layers {protocol.lr_transferred:g}")
    decay = (f"both × 0.1 after {protocol.decay_epochs} epochs" if cut != PRE_LOGITS else f"× 0.1 after {protocol.decay_epochs} epochs") \
        if protocol.decay_epochs else "at 0.1 × from the start"
    return (f"Train with Plested & Gedeon 2019's rates for {examples_per_class:.0f} examples per class: {rates}, {decay} "
            f"(SGD, momentum {protocol.momentum:g}, weight decay {protocol.weight_decay:g}, {protocol.epochs} epochs); "
            "`--snippet` prints the code.")
