"""Benchmark: cost of DEPARA attributions for every cut vs one plain forward pass.

Run:  .venv/bin/python benchmarks/depara_cost.py [--images 64 128] [--out benchmarks/depara_cost.md]

Model: tf_efficientnet_lite0 (weights from the installed package, offline), random input batches of
32 at 224 px. Times (a) one plain forward pass over the images under ``torch.inference_mode`` and
(b) :func:`advisor.attributions.probe_attributions` for all cuts, interleaved, best of 2, and
reports (b)/(a) against the goal ``(b)/(a) <= cuts/2 + 1``. Also (c), for context, the naive
method (a fresh forward + backward per cut) and a per-stage breakdown of (b) on one batch.
Writes a markdown report with date, machine and command.
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
MODEL = "tf_efficientnet_lite0"
BATCH = 32
SIZE = 224


def _load():
    from advisor.loading import build_model
    from advisor.models import ResolveContext, resolve_model

    return build_model(resolve_model(MODEL, ResolveContext(offline=True))).module


def _naive(m, batches, grid=16):
    """What the shared forward avoids: one fresh forward pass per cut, then its backward."""
    import torch
    import torch.nn.functional as F

    from advisor.features import cut_names

    k_cuts = len(cut_names(m))
    for b in batches:
        for k in range(k_cuts):
            xg = b.clone().requires_grad_(True)
            final, inter = m.forward_intermediates(xg)
            out = inter[k] if k < len(inter) else m.forward_head(final, pre_logits=True)
            (g,) = torch.autograd.grad(out.pow(2).sum(), xg)
            F.adaptive_avg_pool2d((b * g).sum(1, keepdim=True), grid).flatten(1).numpy()


def _breakdown(m, x) -> list[tuple[str, float]]:
    """Seconds of the grad-enabled forward and of each cut's prefix backward on one chunk, laid
    out as :func:`advisor.attributions.cut_attributions` does it (NHWC), then a plain forward of
    the same images."""
    import torch

    from advisor.features import cut_names

    rows = []
    xg = x.clone(memory_format=torch.channels_last).requires_grad_(True)
    t0 = time.perf_counter()
    final, inter = m.forward_intermediates(xg)
    outs = list(inter) + [m.forward_head(final, pre_logits=True)]
    rows.append(("forward with grad (all cuts)", time.perf_counter() - t0))
    for i, (name, out) in enumerate(zip(cut_names(m), outs)):
        t0 = time.perf_counter()
        torch.autograd.grad(out.pow(2).sum(), xg, retain_graph=i < len(outs) - 1)
        rows.append((f"backward {name}", time.perf_counter() - t0))
    with torch.inference_mode():
        t0 = time.perf_counter()
        m(x)
        rows.append(("plain forward (inference_mode)", time.perf_counter() - t0))
    return rows


def flop_fractions(m) -> tuple[list[tuple[str, float]], float]:
    """Per cut: FLOPs of its prefix backward (input gradient only) / FLOPs of a plain forward
    (convolutions and matmuls, ``torch.utils.flop_counter``); and the full forward's GFLOPs."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from advisor.features import cut_names

    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        m(x)
    full = fc.get_total_flops()
    rows = []
    for k, name in enumerate(cut_names(m)):
        xg = x.clone().requires_grad_(True)
        final, inter = m.forward_intermediates(xg)
        out = inter[k] if k < len(inter) else m.forward_head(final, pre_logits=True)
        with FlopCounterMode(display=False) as fb:
            torch.autograd.grad(out.pow(2).sum(), xg)
        rows.append((name, fb.get_total_flops() / full))
    return rows, full / 1e9


def run(n_images: int, reps: int = 2, naive: bool = False) -> dict:
    import torch

    from advisor.attributions import probe_attributions
    from advisor.features import cut_names

    m = _load()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_images, 3, SIZE, SIZE, generator=g)
    batches = list(x.split(BATCH))

    def plain():
        with torch.inference_mode():
            for b in batches:
                m(b)

    def attributions():
        probe_attributions(m, batches)

    fns = {"plain": plain, "attr": attributions}
    if naive:
        fns["naive"] = lambda: _naive(m, batches)
    plain(), cut_attributions_warm(m, batches[0][:4])  # warm-up
    times = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(reps):  # interleaved so drift hits all alike
        for name, fn in fns.items():
            c0, t0 = time.process_time(), time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
            print(f"  n={n_images} {name}: {times[name][-1]:.2f} s", file=sys.stderr)
    best = {k: min(v) for k, v in times.items()}
    cpu_best = {k: min(v) for k, v in cpu.items()}
    cuts = len(cut_names(m))
    return {"n": n_images, "cuts": cuts, "goal": cuts / 2 + 1, **best, "ratio": best["attr"] / best["plain"],
            "cpu_ratio": cpu_best["attr"] / cpu_best["plain"],
            "naive_ratio": best["naive"] / best["plain"] if naive else None}


def cut_attributions_warm(m, x):
    from advisor.attributions import cut_attributions

    cut_attributions(m, x)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "depara_cost.md"))
    args = ap.parse_args()
    import torch

    from advisor.attributions import CHUNK_PIXELS

    t_start = time.perf_counter()
    rows = [run(n, naive=(i == 0)) for i, n in enumerate(args.images)]
    m = _load()
    fr, gflops = flop_fractions(m)
    floor = 1 + sum(f for _, f in fr)
    chunk = max(1, CHUNK_PIXELS // (SIZE * SIZE))
    x = torch.randn(chunk, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))
    _breakdown(m, x)  # warm-up
    bd = min((_breakdown(m, x) for _ in range(3)), key=lambda r: sum(s for _, s in r))
    plain_s = bd[-1][1]
    cuts = rows[0]["cuts"]
    goal = cuts / 2 + 1
    lines = [
        "# DEPARA attribution cost",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        (f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs while this ran), "
        f"{platform.system()} {platform.release()}, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}"),
        (f"- command: `.venv/bin/python benchmarks/depara_cost.py --images {' '.join(map(str, args.images))}` "
        f"({time.perf_counter() - t_start:.0f} s)"),
        (f"- model: {MODEL} (offline package weights, {gflops:.2f} GFLOPs per image at {SIZE} px), {cuts} cuts "
        f"(feature_info + pre_logits), random input, batches of {BATCH} at {SIZE} px, grid 16"),
        "",
        f"## Attributions for all cuts vs one plain forward (goal: ratio ≤ cuts/2 + 1 = {goal:g})",
        "",
        "Best of 2 interleaved repeats (wall clock; CPU-time ratio alongside). *plain* is `model(x)` on the",
        "batches of 32 under `torch.inference_mode`; *attributions* is `probe_attributions` with its defaults",
        f"(chunks of {chunk} images, NHWC; per chunk one grad-enabled `forward_intermediates` + `forward_head`,",
        "then one `autograd.grad` of ‖F_k‖² per cut, each through the prefix up to that cut only). *naive*",
        "(first row only, for context) is a fresh forward + backward per cut on the batches of 32.",
        "",
        "| images | plain forward | attributions (all cuts) | ratio | CPU-time ratio | goal | met | naive | naive ratio |",
        "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|",
    ]
    for r in rows:
        nv = f"{r['naive']:.2f} s | {r['naive_ratio']:.2f}" if r["naive_ratio"] else "– | –"
        lines.append(f"| {r['n']} | {r['plain']:.2f} s | {r['attr']:.2f} s | {r['ratio']:.2f} | {r['cpu_ratio']:.2f} | "
                     f"{r['goal']:g} | {'yes' if r['ratio'] <= r['goal'] else 'no'} | {nv} |")
    lines += [
        "",
        "## The floor set by the method (FLOPs)",
        "",
        "Exact per-cut attributions need one vector-Jacobian product per cut through that cut's prefix;",
        "nothing can be shared between cuts (different cotangents). Counting convolution/matmul FLOPs",
        "(`torch.utils.flop_counter`, input gradient only, relative to one plain forward):",
        "",
        "| cut | prefix backward FLOPs / forward FLOPs |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {f:.3f} |" for name, f in fr]
    lines += [
        f"| **1 forward + Σ backward = FLOP floor of the ratio** | **{floor:.2f}** |",
        "",
        f"The goal {goal:g} assumes the cuts split the network's cost evenly (Σ_k prefix fraction ≈ cuts/2);",
        (f"here Σ = {floor - 1:.2f} because {sum(f >= 0.5 for _, f in fr)} of the {cuts} cuts sit past half of the FLOPs "
        f"(≥ {min(f for _, f in fr if f >= 0.5):.0%}). So in FLOPs the"),
        f"goal is out of reach for this model ({floor:.2f} > {goal:g}) whatever the implementation; a measured",
        "wall-clock ratio below the floor means the plain batch-of-32 forward itself runs below its FLOP",
        "rate on this CPU (large activations), while the chunked attribution pass does not.",
        "",
        f"## Where the time goes (one chunk of {chunk} images, NHWC, best of 3, in units of a plain forward of the same images)",
        "",
        "| step | seconds | × plain forward |",
        "|---|---:|---:|",
    ]
    for name, sec in bd:
        lines.append(f"| {name} | {sec:.3f} | {sec / plain_s:.2f} |")
    total = sum(sec for _, sec in bd[:-1])
    lines.append(f"| **total attributions** | {total:.3f} | {total / plain_s:.2f} |")
    lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
