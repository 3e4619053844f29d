"""Benchmark: what validation costs, measured side by side in one run.

Run:  .venv/bin/python benchmarks/validate_cost.py [--parts A B] [--epochs 10]
      (A writes benchmarks/validate_cost.md, B benchmarks/rank_vs_finetune.md)

A. A K-cut defrosting profile with prefix caching (``advisor.validation.finetune.prefix_activations`` once per
   cut, then the suffix trains on the cached activations: what ``advisor validate`` does) against K
   naive fine-tunes with the same schedule and seeds, where every step runs the frozen prefix again
   (same code, with the suffix's input recomputed from the images each step). Goal: ≤ 0.5× the time.
   The two must reach the same accuracies (same math), which is checked and reported.
B. ``advisor rank`` (cold: extraction + default estimators, empty cache) against fine-tuning every
   candidate (``finetune`` protocol of Plested & Gedeon 2019, all layers trainable, the new head at lr 0.01 and
   the transferred layers at 0.001), each timed for ``--ft-epochs`` epochs on the same images. Goal:
   rank ≥ 100× cheaper.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PROFILE_CASES = [  # (model, data, train images); cuts: advisor validate's default (Gerace et al. 2023's range)
    ("resnet56_cifar10", "cifar10_small", 500),
    ("tf_efficientnet_lite0", "pacs_art_painting", 140),
]
RANK_CANDIDATES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv2_100_same_dogs19",
                   "resnet20_cifar10", "resnet56_cifar10"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _setup(model_id: str, data: str, n_train: int):
    import torch

    from advisor.models.loading import build_model
    from advisor.models.sources import ResolveContext, resolve_model
    from advisor.data.probe import load_probe
    from advisor.validation.stages import stages
    from advisor.validation.validate import preprocess_all

    loaded = build_model(resolve_model(model_id, ResolveContext(weights_dir=SHARED / "models", offline=True)))
    spec = str(SHARED / "data" / data)
    train = load_probe(spec, split="train", max_images=n_train, seed=0)
    val = load_probe(spec, split="test", max_images=max(n_train // 2, train.num_classes * 2), seed=0)
    loaded.module.reset_classifier(train.num_classes)
    x = {part: preprocess_all(loaded, p, f"the {part} split", "this benchmark") for part, p in (("train", train), ("val", val))}
    y = {"train": torch.as_tensor(train.labels), "val": torch.as_tensor(val.labels)}
    st = stages(loaded.module, x["train"][:2])
    return loaded, st, x, y, train


def profile_case(model_id, data, n_train, epochs) -> dict:
    import torch

    from advisor.validation import finetune as ft
    from advisor.ranking.features import cut_names
    from advisor.validation.validate import default_cuts

    loaded, st, x, y, _ = _setup(model_id, data, n_train)
    cuts = default_cuts(loaded.module, cut_names(loaded.module))
    theta = {k: v.detach().clone() for k, v in loaded.module.state_dict().items()}
    proto = ft.defrost(epochs=epochs)
    real_forward = ft._forward

    def naive_forward(stages_, frozen_cut, images):  # recompute the frozen prefix from the images every step
        with torch.no_grad():
            was = [m.training for m in stages_.modules]
            for m in stages_.modules:
                m.eval()
            h = stages_.prefix(images, frozen_cut)
            for m, w in zip(stages_.modules, was):
                m.train(w)
        return stages_.suffix(h, frozen_cut)

    out = {"model": model_id, "data": data, "n": n_train, "epochs": epochs, "cuts": cuts, "cached": {}, "naive": {}}
    totals = {"cached": 0.0, "naive": 0.0}
    for cut in cuts:  # interleaved per cut, so drifting machine load hits both alike
        for variant in ("cached", "naive"):
            loaded.module.load_state_dict(theta)
            t0 = time.perf_counter()
            if variant == "cached":
                h = {p: ft.prefix_activations(st, x[p], cut) for p in x}
                ft._forward = real_forward
            else:
                h = x
                ft._forward = naive_forward
            try:
                res = ft.train(st, cut, proto, h["train"], y["train"], h["val"], y["val"], seed=0)
            finally:
                ft._forward = real_forward
            secs = time.perf_counter() - t0
            totals[variant] += secs
            out[variant][cut] = (secs, res.val_acc)
            log(f"{model_id} {variant} @ {cut}: {secs:.1f} s, val acc {res.val_acc:.3f}")
    for variant, total in totals.items():
        out[variant]["total"] = total
    loaded.module.load_state_dict(theta)
    return out


def rank_vs_finetune(data: str, n_train: int, ft_epochs: int) -> dict:
    from advisor.validation import finetune as ft
    from advisor.ranking.ranking import rank

    spec = str(SHARED / "data" / data)
    with tempfile.TemporaryDirectory() as home:
        os.environ["ADVISOR_HOME"] = home
        t0 = time.perf_counter()
        rank(spec, RANK_CANDIDATES, max_images=n_train, weights_dir=SHARED / "models", offline=True)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        rank(spec, RANK_CANDIDATES, max_images=n_train, weights_dir=SHARED / "models", offline=True)
        warm = time.perf_counter() - t0
    log(f"rank cold {cold:.1f} s, warm {warm:.2f} s")
    per_model = {}
    for model_id in RANK_CANDIDATES:
        loaded, st, x, y, train = _setup(model_id, data, n_train)
        proto = ft.finetune(len(train) / train.num_classes, epochs=ft_epochs)
        t0 = time.perf_counter()
        res = ft.train(st, "pre_logits", proto, x["train"], y["train"], x["val"], y["val"], seed=0)
        per_model[model_id] = (time.perf_counter() - t0, res.val_acc)
        log(f"fine-tune {model_id}: {per_model[model_id][0]:.1f} s for {ft_epochs} epochs, val acc {res.val_acc:.3f}")
    return {"data": data, "n": n_train, "cold": cold, "warm": warm, "ft_epochs": ft_epochs, "per_model": per_model}


def _header(title: str, t_start: float, load0, command: str) -> list[str]:
    import torch

    return [
        f"# {title}",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {(time.perf_counter() - t_start) / 60:.1f} min",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, CPU only, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}; load average start {' / '.join(f'{v:.2f}' for v in load0)}, end "
        f"{' / '.join(f'{v:.2f}' for v in os.getloadavg())}",
        f"- command: `{command}`",
        "",
    ]


def report_profiles(profiles, epochs, t_start, load0, command) -> str:
    lines = _header("Validation cost: a defrosting profile with prefix caching vs without", t_start, load0, command) + [
        "Same `advisor.validation.finetune.train` (defrost protocol, seed 0, same batches), the only difference being whether the",
        "frozen prefix's activations are computed once per cut (cached, what `advisor validate` does) or from the images",
        f"at every step (naive). {epochs} epochs (validate's default), at `advisor validate`'s default cuts (the range of",
        "Gerace et al. 2023: after the first down-sampling to pre_logits). Times include computing the cached activations.",
        "The math is the same, but the cached prefix runs in chunks of 64 and the naive one per batch of 32, so",
        "activations can differ in the last float bits; a suffix trained from scratch at lr 0.1 can amplify that into a",
        "different final accuracy (chaotic training), which is why not every cut needs to match exactly.",
        "",
        "| model | data (train images) | epochs | cuts | cached total | naive total | ratio (goal ≤ 0.5) | cuts with equal accuracy |",
        "|---|---|---:|---|---:|---:|---:|:---:|",
    ]
    for p in profiles:
        ratio = p["cached"]["total"] / p["naive"]["total"]
        same = sum(abs(p["cached"][c][1] - p["naive"][c][1]) < 1e-9 for c in p["cuts"])
        lines.append(f"| {p['model']} | {p['data']} ({p['n']}) | {p['epochs']} | {', '.join(p['cuts'])} | {p['cached']['total']:.1f} s | "
                     f"{p['naive']['total']:.1f} s | **{ratio:.2f}** | {same} of {len(p['cuts'])} |")
    lines += ["", "Per cut (seconds, validation accuracy):", "", "| model | cut | cached | naive | ratio |", "|---|---|---:|---:|---:|"]
    for p in profiles:
        for c in p["cuts"]:
            (sc, ac), (sn, an) = p["cached"][c], p["naive"][c]
            lines.append(f"| {p['model']} | {c} | {sc:.1f} s ({ac:.3f}) | {sn:.1f} s ({an:.3f}) | {sc / sn:.2f} |")
    return "\n".join(lines) + "\n"


def report_rank(rv, t_start, load0, command) -> str:
    ft_total = sum(s for s, _ in rv["per_model"].values())
    per_epoch = ft_total / rv["ft_epochs"]
    lines = _header(f"`advisor rank` vs fine-tuning every candidate ({len(RANK_CANDIDATES)} models, {rv['data']}, "
                    f"{rv['n']} training images)", t_start, load0, command) + [
        f"`rank` with the default estimators on an empty cache: **{rv['cold']:.1f} s** (warm rerun: {rv['warm']:.2f} s).",
        f"Fine-tuning every candidate (`finetune` protocol, all layers trainable) for {rv['ft_epochs']} epochs:",
        "",
        "| model | seconds | per epoch | val acc after the short run |",
        "|---|---:|---:|---:|",
    ]
    for m, (s, a) in rv["per_model"].items():
        lines.append(f"| {m} | {s:.1f} | {s / rv['ft_epochs']:.1f} | {a:.3f} |")
    lines += [
        f"| **all candidates** | **{ft_total:.1f}** | **{per_epoch:.1f}** | |",
        "",
        f"Measured: the {rv['ft_epochs']}-epoch fine-tunes cost **{ft_total / rv['cold']:.0f}×** a cold `rank` "
        f"(and {ft_total / rv['warm']:.0f}× a warm one). Fine-tune cost is linear in epochs (the same work per epoch), so "
        "with the epochs real recipes use the ratio is: "
        + ", ".join(f"{e} epochs → {per_epoch * e / rv['cold']:.0f}×" for e in (10, 30, 40, 200))
        + " (40 = `advisor bench`'s ground truth: 10 epochs × 2 learning rates × 2 seeds; the 'Full' setting of Plested & Gedeon 2019 "
        "trains 30 epochs before the first decay; Gerace et al. 2023 train 200). Goal ≥ 100×.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", nargs="+", default=["A", "B"], choices=["A", "B"])
    ap.add_argument("--epochs", type=int, default=10, help="A: epochs per defrost run")
    ap.add_argument("--rank-data", default="pacs_photo")
    ap.add_argument("--rank-images", type=int, default=420)
    ap.add_argument("--ft-epochs", type=int, default=2)
    args = ap.parse_args()
    command = (f".venv/bin/python benchmarks/validate_cost.py --parts {' '.join(args.parts)} --epochs {args.epochs} "
               f"--rank-data {args.rank_data} --rank-images {args.rank_images} --ft-epochs {args.ft_epochs}")
    if "A" in args.parts:
        t_start, load0 = time.perf_counter(), os.getloadavg()
        profiles = [profile_case(*case, args.epochs) for case in PROFILE_CASES]
        text = report_profiles(profiles, args.epochs, t_start, load0, command)
        (REPO / "benchmarks" / "validate_cost.md").write_text(text)
        print(text)
    if "B" in args.parts:
        t_start, load0 = time.perf_counter(), os.getloadavg()
        rv = rank_vs_finetune(args.rank_data, args.rank_images, args.ft_epochs)
        text = report_rank(rv, t_start, load0, command)
        (REPO / "benchmarks" / "rank_vs_finetune.md").write_text(text)
        print(text)


if __name__ == "__main__":
    main()
