"""The decision that ends ``advisor rank`` (:func:`decide_rank`) and ``advisor layers``
(:func:`decide_layers`): which model and cut, how sure, whether the estimators agree, the domain
forecast against the cut, and the training protocol with its snippet (:class:`Decision`).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

import numpy as np

from advisor.errors import AdvisorError
from advisor.ranking.decision.anatomy import Anatomy, model_anatomy
from advisor.ranking.decision.describe import (describe_disagreement, describe_freeze, describe_noise, describe_training,
                                               domain_vs_layers)
from advisor.ranking.decision.noise import MIN_HALF_SAMPLES, NOISE_BUDGET_S, Noise, cut_stability, paired_noise
from advisor.ranking.decision.snippet import snippet, training_protocol
from advisor.ranking.features import PRE_LOGITS

STABLE_SHARE = 0.8  # a cut pick is "beyond noise" when the rule picks it on ≥ 80 % of the half-samples (and its margin is not within noise)


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
    from advisor.domain.references import source_for_model

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
            dec.snippet = snippet(anatomy, dec.cut, protocol, probe=probe.spec, split=split, examples_per_class=epc, command=dec.command)
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
        debug = getattr(sys.modules.get("advisor.cli.app"), "state", {}).get("debug") or os.environ.get("ADVISOR_DEBUG", "") not in ("", "0")
        if debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return None, f"{type(exc).__name__}: {first}"
