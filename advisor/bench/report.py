"""``bench_report.md`` and its PNGs from ``advisor bench``'s evidence cells.
Size: ~320 lines; the analysis and the markdown that prints each of its tables read best side by side.

Why separate: the report is a pure function of the cached evidence (one cell per model × target,
see :mod:`advisor.bench.run`), so ``advisor bench --report-only`` regenerates it without training or
scoring anything, and the tables can be checked against the cells by hand.

Scores are oriented (higher = better) and taken at each model's best cut (what ``advisor rank``
ranks by) and at ``pre_logits``. The default-estimator choice is made leave-one-target-out over the
targets whose ground truth is above its seed noise (all targets when fewer than 2 are), see
:func:`advisor.bench.metrics.leave_one_target_out`.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from advisor.bench import metrics as bm
from advisor.bench.ground_truth import under_trained
from advisor.bench.plots import fmt, mean_or_none, plot_scatter, plot_tau


def _oriented(cell: dict, est: str) -> tuple[float | None, float | None]:
    """(best-cut score, pre_logits score), both oriented so that higher = better."""
    e = cell["scores"][est]
    sign = 1.0 if e["higher_is_better"] else -1.0
    vals = [None if v is None or not np.isfinite(v) else sign * v for v in e["cuts"]]
    ok = [v for v in vals if v is not None]
    return (max(ok) if ok else None), vals[-1]


# the estimators users know, compared with the evidence-chosen default in the report (held-out)
BASELINES = ("logme", "knn", "linear", "nleep")
bm_pre = "pre_logits"


def analyse(cells: list[dict], estimators: list[str], truth: str = "transfer") -> dict:
    """Every table of the report, as plain data (targets and models in the order of the cells).
    ``truth``: what an estimator is judged against (:func:`advisor.bench.metrics.transfer_accuracy`)."""
    from advisor.ranking.layers import recommend

    targets = list(dict.fromkeys(c["target_name"] for c in cells))
    models = list(dict.fromkeys(c["model_name"] for c in cells))
    cell = {(c["target_name"], c["model_name"]): c for c in cells}
    chosen = {k: bm.transfer_accuracy(c["ground_truth"], c.get("probe"), truth) for k, c in cell.items()}
    acc = {t: {m: chosen[t, m]["test"] for m in models if (t, m) in cell} for t in targets}
    std = {t: {m: chosen[t, m]["std"] for m in models if (t, m) in cell and cell[t, m]["ground_truth"].get("seeds_done", 0) >= 2}
           for t in targets}  # a std of one seed is 0, not a measurement
    acc = {t: {m: a for m, a in v.items() if a is not None} for t, v in acc.items()}
    best = {e: {t: {m: _oriented(cell[t, m], e)[0] for m in acc[t]} for t in targets} for e in estimators}
    pre = {e: {t: {m: _oriented(cell[t, m], e)[1] for m in acc[t]} for t in targets} for e in estimators}
    noise = {t: bm.noise_band({m: s for m, s in std[t].items() if s is not None}, acc[t]) for t in targets}
    tau_best = {e: {t: bm.weighted_tau(acc[t], best[e][t]) for t in targets} for e in estimators}
    tau_pre = {e: {t: bm.weighted_tau(acc[t], pre[e][t]) for t in targets} for e in estimators}
    per_est = {}
    for e in estimators:
        hits = [h for h in (bm.top1_hit(acc[t], best[e][t]) for t in targets) if h is not None]
        regrets = [r for r in (bm.regret(acc[t], best[e][t]) for t in targets) if r is not None]
        dists = []
        for c in cell.values():
            sc = c["scores"][e]
            rec = recommend(c["cuts"], sc["cuts"], sc["higher_is_better"], c["n_score"] / max(c["n_classes"], 1), e)
            d = bm.layer_distance(c["cuts"], rec.cut if rec else None, c["defrost"]["best_cut"])
            if d is not None:
                dists.append(d)
        secs = [sum(cell[t, m]["scores"][e]["seconds"] for m in models if (t, m) in cell) for t in targets]
        per_est[e] = {"top1_hit_rate": float(np.mean(hits)) if hits else None, "mean_regret": float(np.mean(regrets)) if regrets else None,
                      "max_regret": float(max(regrets)) if regrets else None, "layer_distance": float(np.mean(dists)) if dists else None,
                      "seconds_per_target": float(np.mean(secs)) if secs else None}

    cost = {e: _cost_ratio([c for c in cell.values()], e) for e in estimators}
    cheap = [e for e in estimators if cost[e] is not None and cost[e] <= COST_GOAL and not _needs_attributions(e)]

    def single(name: str, t: str) -> dict:
        """Scores of a candidate member: ``e`` at each model's best cut, ``e@pre_logits`` at pre_logits."""
        e, _, at = name.partition("@")
        return (pre if at == bm_pre else best)[e][t]

    @cache
    def weights(fit_targets: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
        return tuple(bm.fit_linear_combination(best, acc, cheap, list(fit_targets)).items())

    def scores_for(combo: tuple[str, ...], t: str, fit_targets: tuple[str, ...] = ()) -> dict:
        """What a candidate scores each model on ``t`` (a learned one fitted on ``fit_targets``)."""
        if combo == bm.LEARNED:
            return bm.apply_linear_combination(dict(weights(fit_targets)), {e: best[e][t] for e in cheap}, list(acc[t]))
        if len(combo) == 1:
            return single(combo[0], t)
        return bm.rank_average([single(e, t) for e in combo])

    @cache
    def tau_of(combo: tuple[str, ...], t: str) -> float | None:
        return bm.weighted_tau(acc[t], scores_for(combo, t))

    def learned(fit_targets: list[str]):
        return lambda t: bm.weighted_tau(acc[t], scores_for(bm.LEARNED, t, tuple(fit_targets)))

    candidates = list(cheap) + [f"{e}@{bm_pre}" for e in cheap]
    clean = [t for t in targets if not noise[t]["flagged"]]
    loto_targets = clean if len(clean) >= 2 else targets
    loto = bm.leave_one_target_out(tau_of, candidates, loto_targets, learned=learned) if len(loto_targets) >= 2 else None
    final = bm.choose(tau_of, candidates, loto_targets, learned=learned)
    if final and final["combo"] == bm.LEARNED:
        final["weights"] = dict(weights(tuple(loto_targets)))
    # the held-out comparison README states: the default (each fold's choice, refitted without the
    # held-out target) against the estimators users know, per target
    versus = {}
    for f in (loto or {}).get("folds", []):
        t, combo = f["held_out"], f["combo"]
        fit = tuple(x for x in loto_targets if x != t)
        rows = {"advisor default": scores_for(combo, t, fit) if combo else {}}
        rows.update({e: best[e][t] for e in BASELINES if e in best})
        versus[t] = {name: {"tau": bm.weighted_tau(acc[t], sc), "top1": bm.top1_hit(acc[t], sc), "regret": bm.regret(acc[t], sc)}
                     for name, sc in rows.items()}
    flags = {k: under_trained(c) for k, c in cell.items()}
    return {"truth": truth, "chosen": chosen, "under_trained": {k: v for k, v in flags.items() if v is not None}, "targets": targets, "models": models, "cell": cell, "acc": acc, "std": std, "best": best, "noise": noise,
            "tau_best": tau_best, "tau_pre": tau_pre, "per_estimator": per_est, "loto": loto, "loto_targets": loto_targets,
            "final": final, "versus": versus, "cost": cost, "cheap": cheap}


# advisor rank's default must stay cheap: its estimators' arithmetic at most this share of the
# feature-extraction forward pass (an estimator that needs DEPARA's attribution pass never is:
# that pass alone is about 7x the forward pass, benchmarks/estimator_cost.md)
COST_GOAL = 0.2


def _cost_ratio(cells: list[dict], est: str) -> float | None:
    """Median over (model, target) of the estimator's scoring seconds (all cuts) / the model's
    feature-extraction seconds on the same images; None without timings."""
    r = [c["scores"][est]["seconds"] / c["extract_seconds"] for c in cells
         if c.get("extract_seconds") and c["scores"].get(est) and c["scores"][est].get("seconds") is not None]
    return float(np.median(r)) if r else None


def _needs_attributions(est: str) -> bool:
    from advisor.estimators import get_estimator

    try:
        return "attributions" in get_estimator(est).needs
    except Exception:  # noqa: BLE001 - an estimator not installed here: its cost cannot be vouched for
        return True


def advisor_score_spec(a: dict, evidence: str):
    """The :class:`advisor.ranking.advisor_score.ScoreSpec` of the report's final choice (None without one)."""
    from advisor.ranking.advisor_score import spec_from_choice

    final = a["final"]
    if not final:
        return None
    tau = a["loto"]["mean_tau"] if a.get("loto") else None
    return spec_from_choice(tuple(final["combo"]), final.get("weights"), tau, evidence)


def _combo(c) -> str:
    return "–" if not c else (c[0] if len(c) == 1 else "rank-average(" + " + ".join(c) + ")")


def _provenance(prov: dict | None, command: str) -> list[str]:
    if not prov:
        return [f"Regenerate from the cache (no training, no scoring): `{command} --report-only`.", ""]
    lines = ["| | |", "|---|---|", f"| command | `{command}` (regenerate from the cache, training and scoring nothing: `{command} --report-only`) |"]
    lines += [f"| {k} | {v} |" for k, v in prov.items()]
    return lines + [""]


def markdown(a: dict, settings: dict, command: str, plots: dict[str, str], provenance: dict | None = None,
             robust: dict | None = None) -> str:
    T, M = a["targets"], a["models"]
    ests = list(a["tau_best"])
    lines = ["# `advisor bench` report", ""] + _provenance(provenance, command) + [
             "## Protocol", "",
             ("Per (model, target), on the target's train/test split (its own split folders or arrays, else a stratified hold-out; "
              "per target below): a full fine-tune (cut `pre_logits`, nothing frozen; "
              "the schedule of Plested & Gedeon 2019, `advisor.validation.finetune`) for each setting of the grid (BatchNorm mode and "
              "backbone lr, from `batchnorm` and `backbone_lrs`; new head at `head_lr_factor` × the lr) and each seed, at the model's own input size or the `img_size` cap, "
              "whichever is smaller, the setting chosen by mean accuracy over seeds on a stratified validation part of the training "
              "pool; and a frozen linear probe "
              "(a logistic regression on the `pre_logits` features of the same training part). **Ground truth** (the accuracy "
              "each estimator is judged against): the better of the two *by validation accuracy*, reported on the **test** part "
              "(`advisor.bench.metrics.transfer_accuracy`): freezing every layer is one of the transfer choices, and a fine-tune "
              "that ends below its own frozen probe (flagged *under-trained* below) would otherwise rank a model below what its "
              "frozen features already give. The same analysis against the fine-tune alone is at the end. Best defrost cut: the "
              "layer-wise defrosting protocol of Gerace et al. 2023 at `defrost_cuts` cuts, one seed, chosen by validation accuracy. "
              "Scores: every estimator on the training part (oriented so higher = better), at each model's best cut and at "
              "`pre_logits`. τ = `scipy.stats.weightedtau` (defaults)."), "",
             "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {', '.join(map(str, v)) if isinstance(v, (list, tuple)) else v} |" for k, v in settings.items()]
    splits = {t: next(c.get("split") for (tt, _), c in a["cell"].items() if tt == t) for t in T}
    lines += ["", "Targets and their splits:", ""] + [f"- {t}: {splits[t] or '–'}" for t in T]
    lines += ["", "## Ground truth: test accuracy of the protocol chosen on validation", "",
              ("`ft`: full fine-tune, mean ± std over seeds at the setting chosen on validation (backbone lr; `BN frozen`: "
               "pretrained BatchNorm statistics kept); `probe`: frozen linear probe."), "",
              "| model | " + " | ".join(T) + " |", "|---" * (len(T) + 1) + "|"]
    for m in M:
        row = []
        for t in T:
            c, ch = a["cell"].get((t, m)), a["chosen"].get((t, m))
            if not c or ch["test"] is None:
                row.append("–")
            elif ch["protocol"] == "linear probe":
                row.append(f"{ch['test']:.3f} (probe)")
            else:
                g = c["ground_truth"]
                bn = ", BN frozen" if g.get("batchnorm") == "frozen" else ""
                sd = f"{g['test_std']:.3f}" if g.get("seeds_done", 0) >= 2 else "–"  # one seed measures no spread
                row.append(f"{g['test_mean']:.3f} ± {sd} (ft, lr {g['lr_backbone']:g}{bn})")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines += ["", "## Fine-tune vs frozen linear probe", "",
              ("Per pair: the probe's and the fine-tune's (chosen setting, mean over seeds) validation and test accuracy, and the "
               "fine-tune's final train loss (mean over seeds, last epoch). **under-trained**: the fine-tune's test accuracy "
               "ended below the probe's; the ground truth column says which protocol validation chose."), "",
              "| target | model | input px | probe val / test | fine-tune val / test | final train loss | ground truth | flag |",
              "|---|---|---|---|---|---|---|---|"]
    for t in T:
        for m in M:
            c = a["cell"].get((t, m))
            if not c:
                continue
            g, pr = c["ground_truth"], (c.get("probe") or {})
            flag = "**under-trained**" if a["under_trained"].get((t, m)) else ""
            lines.append(f"| {t} | {m} | {c.get('input_size', '–')} | {fmt(pr.get('val_acc'))} / {fmt(pr.get('test_acc'))} | "
                         f"{fmt(g.get('val_mean'))} / {fmt(g['test_mean'])} | {fmt(g.get('train_loss'))} | {a['chosen'][t, m]['protocol']} | {flag} |")
    n_ut = sum(bool(v) for v in a["under_trained"].values())
    n_probe = sum(ch["protocol"] == "linear probe" for ch in a["chosen"].values())
    modes = [c["ground_truth"].get("batchnorm") for c in a["cell"].values() if c["ground_truth"].get("batchnorm")]
    n_frozen = sum(m == "frozen" for m in modes)
    bn_note = (f" The fine-tune's BatchNorm mode chosen on validation: frozen statistics for {n_frozen} of {len(modes)} pairs, "
               f"updated for {len(modes) - n_frozen}." if len({b.split("@")[0] for b in settings.get("batchnorm") or ()}) > 1 else "")
    lines += ["", (f"{n_ut} of {len(a['under_trained'])} pairs under-trained; validation chose the probe for {n_probe} of "
                   f"{len(a['chosen'])} pairs." + bn_note) if a["under_trained"] else "No pair has both a probe and a fine-tune.", ""]
    lines += ["", "Best defrost cut (Gerace et al. 2023's protocol, by validation accuracy) per model and target:", "",
              "| model | " + " | ".join(T) + " |", "|---" * (len(T) + 1) + "|"]
    for m in M:
        lines.append(f"| {m} | " + " | ".join((a["cell"][t, m]["defrost"]["best_cut"] or "–") if (t, m) in a["cell"] else "–" for t in T) + " |")
    lines += ["", "## Noise band", "",
              ("noise = mean over models of the seed std of test accuracy; a target is **flagged** when max − min accuracy "
              "over models is below 2 × noise, or zero (the ground truth cannot order its models)."), "",
              "| target | noise | spread (max − min) | flagged |", "|---|---|---|---|"]
    lines += [f"| {t} | {fmt(a['noise'][t]['noise']) if a['noise'][t]['noise'] is not None else 'not measurable (one seed)'} | "
              f"{fmt(a['noise'][t]['spread'])} | {'**yes**' if a['noise'][t]['flagged'] else 'no'} |" for t in T]
    clean = [t for t in T if not a["noise"][t]["flagged"]]
    for title, tau in (("Weighted Kendall τ per target (score at each model's best cut)", a["tau_best"]),
                       ("Weighted Kendall τ per target (score at pre_logits)", a["tau_pre"])):
        lines += ["", f"## {title}", "", "| estimator | " + " | ".join(T) + " | mean | mean (unflagged) |", "|---" * (len(T) + 3) + "|"]
        for e in sorted(ests, key=lambda e: -(mean_or_none(tau[e].values()) if mean_or_none(tau[e].values()) is not None else -9)):
            lines.append(f"| {e} | " + " | ".join(fmt(tau[e][t]) for t in T) + f" | {fmt(mean_or_none(tau[e].values()))} | "
                         f"{fmt(mean_or_none(tau[e][t] for t in clean))} |")
    lines += ["", "## Picks, regret, layer choice and cost", "",
              ("top-1 hit rate: share of targets where the estimator's first model is a most accurate one; regret: test accuracy "
              "lost by taking its pick; layer distance: cut positions between `advisor layers`' recommendation (this estimator) "
              "and the best defrost cut, mean over (model, target); seconds: scoring time for all models and cuts of one target."), "",
              "| estimator | top-1 hit rate | mean regret | max regret | layer distance | seconds per target |", "|---|---|---|---|---|---|"]
    for e in ests:
        p = a["per_estimator"][e]
        lines.append(f"| {e} | {fmt(p['top1_hit_rate'], 2)} | {fmt(p['mean_regret'])} | {fmt(p['max_regret'])} | "
                     f"{fmt(p['layer_distance'], 2)} | {fmt(p['seconds_per_target'], 4)} |")
    lines += ["", "## Default for `advisor rank`: leave-one-target-out", "",
              (f"Cost first: the default must cost at most {COST_GOAL:g}× the feature-extraction forward pass. Median ratio of "
               "scoring seconds (all cuts) to extraction seconds over the (model, target) pairs; estimators that need DEPARA's "
               "attribution pass are out whatever their own arithmetic costs (the pass is about 7× the forward pass, "
               "benchmarks/estimator_cost.md):"), "",
              "| estimator | cost ratio | candidate |", "|---|---|---|"]
    lines += [f"| {e} | {fmt(a['cost'][e])} | {'yes' if e in a['cheap'] else ('no: attribution pass' if _needs_attributions(e) else 'no: cost')} |"
              for e in ests]
    lines += ["",
              ("Candidates (the cheap estimators only): every single estimator at each model's best cut and at `pre_logits` (`name@pre_logits`), the "
               "rank-average of the top 2 and top 3 singles (by mean τ), and a learned combination (`learned`: ridge "
               "regression of each target's standardised accuracies on the candidates' standardised best-cut scores, "
               "judged by its own inner leave-one-target-out τ). The choice is made on all targets but one and scored on "
               f"the held-out one. Targets used: {', '.join(a['loto_targets'])}")
              + ("" if len(clean) >= 2 else " (fewer than 2 unflagged targets: all targets used)") + ".", ""]
    loto = a["loto"]
    if loto:
        lines += ["| held-out target | chosen on the others | mean τ on the others | τ on the held-out target |", "|---|---|---|---|"]
        lines += [f"| {f['held_out']} | {_combo(f['combo'])} | {fmt(f['train_mean_tau'])} | {fmt(f['held_out_tau'])} |" for f in loto["folds"]]
        lines += ["", f"Leave-one-target-out mean τ of the selection procedure: **{fmt(loto['mean_tau'])}**.", ""]
    else:
        lines += ["Fewer than 2 targets: no leave-one-target-out estimate.", ""]
    final = a["final"]
    lines += [(f"Choice on all these targets: **{_combo(final['combo']) if final else '–'}** "
               f"(mean τ {fmt(final['mean_tau']) if final else '–'})."), ""]
    if final and final.get("weights"):
        lines += ["Its weights (on standardised scores): " + ", ".join(f"{e} {w:+.3f}" for e, w in
                  sorted(final["weights"].items(), key=lambda ew: -abs(ew[1]))) + ".", ""]
    if a.get("versus"):
        names = list(next(iter(a["versus"].values())))
        lines += ["Held-out comparison per target (the default as chosen without that target; τ / top-1 hit / regret):", "",
                  "| target | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for t, row in a["versus"].items():
            lines.append(f"| {t} | " + " | ".join(
                f"{fmt(row[n]['tau'])} / {'–' if row[n]['top1'] is None else ('yes' if row[n]['top1'] else 'no')} / {fmt(row[n]['regret'])}"
                for n in names) + " |")
        lines.append("")
    if robust:
        lines += _robustness(robust)
    lines += ["## Plots", ""]
    lines += [f"![{name}]({path})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def _robustness(r: dict) -> list[str]:
    """The report's last section: the same selection judged against the fine-tune alone."""
    loto, final = r["loto"], r["final"]
    lines = ["## Against the fine-tune alone", "",
             ("The same analysis with the full fine-tune's test accuracy as ground truth (the frozen probe not considered; "
              "under-trained pairs count as measured). Mean weighted τ over targets, score at each model's best cut:"), "",
             "| estimator | mean τ (fine-tune only) |", "|---|---|"]
    tau = r["tau_best"]
    for e in sorted(tau, key=lambda e: -(mean_or_none(tau[e].values()) if mean_or_none(tau[e].values()) is not None else -9)):
        lines.append(f"| {e} | {fmt(mean_or_none(tau[e].values()))} |")
    lines += ["", (f"Leave-one-target-out mean τ of the selection procedure against the fine-tune alone: **{fmt(loto['mean_tau']) if loto else '–'}**; "
                   f"its choice on all targets: {_combo(final['combo']) if final else '–'} (mean τ {fmt(final['mean_tau']) if final else '–'})."), ""]
    return lines


def write_report(cells: list[dict], estimators: list[str], settings: dict, out_dir: str | Path, command: str,
                 provenance: dict | None = None) -> Path:
    """``out_dir/bench_report.md`` + ``tau_per_estimator.png`` + ``scatter_<target>.png`` per target
    + ``advisor_score.toml`` (the chosen default, :mod:`advisor.ranking.advisor_score`).
    ``provenance``: what the report's header states (date, machine, wall time), row label -> text."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    a = analyse(cells, estimators)
    robust = analyse(cells, estimators, truth="fine-tune")
    plots = {}
    plot_tau(a, out / "tau_per_estimator.png")
    plots["weighted τ per estimator"] = "tau_per_estimator.png"
    for i, t in enumerate(a["targets"]):
        name = f"scatter_{i:02d}_{''.join(ch if ch.isalnum() else '_' for ch in t)}.png"
        plot_scatter(a, t, out / name)
        plots[f"{t}: score vs accuracy"] = name
    how = ("leave-one-target-out" if a.get("loto") else
           "on a single target, so with no held-out estimate: not evidence for other data")
    spec = advisor_score_spec(a, f"chosen by `{command}`: {len(a['loto_targets'])} targets x {len(a['models'])} models, "
                                 f"{how} ({out / 'bench_report.md'})")
    if spec is not None:  # what registry/advisor_score.toml commits: advisor rank's default
        (out / "advisor_score.toml").write_text(spec.to_toml())
    path = out / "bench_report.md"
    path.write_text(markdown(a, settings, command, plots, provenance, robust))
    return path
