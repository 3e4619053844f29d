"""Measured defrosting profiles on ../shared, next to what each estimator recommends.

Run:  .venv/bin/python benchmarks/validate_shared.py [--epochs 10] [--repeats 2]
      [--out docs/validate_shared.md]

1. EfficientNet-Lite0 on pacs_art_painting (its own train / test splits) at the default cuts
   (after the first down-sampling to pre_logits), and ResNet-56-CIFAR on cifar10_small at act1,
   layer1, layer2, layer3 (its pre_logits is layer3 plus the average pool: the same run), with the
   ``defrost`` protocol (Gerace et al. 2023), ``--repeats`` seeds each, via :func:`advisor.validation.validate.validate`
   (cached in DuckDB under $ADVISOR_HOME, so a rerun only redoes what is missing).
2. ``advisor layers`` on the training split with every label-based estimator: each one's
   recommended cut, and its distance (in cut positions) from the measured best cut; the weighted
   Kendall τ of each estimator's per-cut scores against the measured profile.
Writes the markdown table (date, machine, command) and a PNG of both profiles.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = [
    ("tf_efficientnet_lite0", "pacs_art_painting", None),
    ("resnet56_cifar10", "cifar10_small", ["act1", "layer1", "layer2", "layer3"]),
]
ESTIMATORS = ["depara", "cka", "ii", "logme", "knn"]


def _same_as_pre_logits(model_id: str) -> str | None:
    """The last feature cut if nothing with parameters lies between it and the classifier (then a
    defrost at that cut and at pre_logits train the same classifier on the same pooled features)."""
    import torch

    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.models.sources import ResolveContext, resolve_model
    from advisor.validation.stages import stages

    loaded = build_model(resolve_model(model_id, ResolveContext(weights_dir=SHARED / "models", offline=True)))
    last = cut_names(loaded.module)[-2]
    st = stages(loaded.module, torch.randn(2, *loaded.data_config["input_size"]))
    classifier = {id(p) for p in loaded.module.get_classifier().parameters()}
    between = [p for m in st.suffix_modules(last) for p in m.parameters() if id(p) not in classifier]
    return last if not between else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(REPO / "docs" / "validate_shared.md"))
    args = ap.parse_args()

    import numpy as np

    from advisor.estimators import list_estimators
    from advisor.ranking.layers import layers, recommend
    from advisor.validation.agreement import weighted_tau
    from advisor.validation.plots import plot_profiles
    from advisor.validation.result import ValidationResult, best_cut
    from advisor.validation.validate import validate

    known = {e.name for e in list_estimators()}
    estimators = [e for e in ESTIMATORS if e in known]
    t_start = time.perf_counter()
    sections, all_rows, results = [], [], []
    for model, data, cuts in CASES:
        probe = str(SHARED / "data" / data)
        t0 = time.perf_counter()
        res = validate(probe, [model], cuts=cuts, protocol="defrost", epochs=args.epochs, repeats=args.repeats,
                       weights_dir=SHARED / "models", offline=True, estimators=estimators,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
        wall = time.perf_counter() - t0
        results.append(res)
        all_rows += res.rows
        prof = res.profile(model)
        best = best_cut(prof)
        lp = layers(model, probe, estimators, weights_dir=SHARED / "models", offline=True)
        epc = len(lp.result.probe) / lp.result.probe.num_classes
        measured = list(prof)
        same = _same_as_pre_logits(model)
        position = {c: lp.cuts.index(same if c == "pre_logits" and same else c) for c in lp.cuts}
        lines = [
            f"## {model} on {data}",
            "",
            f"{res.split_note}; defrost, {args.epochs} epochs, {args.repeats} seeds per cut; training time of the runs "
            f"{sum(r.seconds for r in res.rows):.0f} s as recorded in the cache ({sum(r.cached for r in res.rows)} of "
            f"{len(res.rows)} runs were cached from an earlier invocation; this one took {wall / 60:.1f} min).",
            "",
            "| cut (frozen up to) | val accuracy (mean ± std) | runs | train seconds (mean) |",
            "|---|---:|---:|---:|",
        ]
        for c in measured:
            mean, std, n = prof[c]
            secs = np.mean([r.seconds for r in res.rows if r.cut == c])
            lines.append(f"| {c}{' **(best)**' if c == best else ''} | {mean:.3f} ± {std:.3f} | {n} | {secs:.1f} |")
        lines += [
            "",
            f"Measured best cut: **{best}**. Each estimator's pick on the same training split "
            f"(`advisor layers`, {epc:.0f} examples per class; distance = cut positions between its pick and {best} "
            f"in the model's cut list {', '.join(lp.cuts)}"
            + (f", where pre_logits counts as {same}: the model's head after {same} is only the average pool and the "
               "classifier, so freezing up to either trains the same layer on the same pooled features" if same else "")
            + "; τ = weighted Kendall τ of its scores vs the measured accuracy over the measured cuts):",
            "",
            "| estimator | recommended cut | argmax cut | distance | weighted τ over cuts |",
            "|---|---|---|---:|---:|",
        ]
        for est in estimators:
            rec = recommend(lp.cuts, lp.scores[est], lp.higher_is_better[est], epc, est)
            if rec is None:
                lines.append(f"| {est} | – | – | – | – |")
                continue
            dist = abs(position[rec.cut] - position[best])
            sign = 1 if lp.higher_is_better[est] else -1
            pairs = [(prof[c][0], sign * lp.scores[est][lp.cuts.index(c)]) for c in measured
                     if lp.scores[est][lp.cuts.index(c)] is not None]
            tau = weighted_tau([a for a, _ in pairs], [s for _, s in pairs])
            lines.append(f"| {est} | {rec.cut} | {rec.argmax_cut} | {dist} | {'–' if tau is None else f'{tau:.2f}'} |")
        lines.append("")
        sections += lines
    png = Path(args.out).with_suffix(".png")
    combined = ValidationResult(all_rows, results[0].train, results[0].val, "", [], results[0].device)
    plot_profiles(combined, str(png))
    head = [
        "# Measured defrosting profiles vs estimator picks",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; total {(time.perf_counter() - t_start) / 60:.1f} min",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, no GPU (device {results[0].device}), {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}; load average at end "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())} (other jobs shared the machine)",
        f"- command: `.venv/bin/python benchmarks/validate_shared.py --epochs {args.epochs} --repeats {args.repeats}`",
        "- protocol: `defrost` (Gerace et al. 2023): the model's layers up to the cut keep their pretrained values, frozen; "
        "everything after is re-initialised and trained (SGD momentum 0.9, weight decay 5e-4, lr 0.1 cosine-annealed, "
        "batch 32, no augmentation) on cached prefix activations; accuracy on the probe's test split at the last epoch.",
        f"- plot: [{png.name}]({png.name})",
        "",
    ]
    Path(args.out).write_text("\n".join(head + sections))
    print("\n".join(head + sections))


if __name__ == "__main__":
    main()
