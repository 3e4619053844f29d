"""Benchmark: all-cut extraction vs a raw forward pass, and cold vs warm `advisor rank`.

Run:  .venv/bin/python benchmarks/rank_speed.py [--images 500] [--out benchmarks/rank_speed.md]
Needs ../shared (real models and data). Writes a markdown table with machine, date and command.
Ratios are measured side by side in one run (the machines are noisy); absolute seconds are context.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "mobilenetv2_100_same_dogs19",
          "resnet20_cifar10", "resnet32_cifar10", "resnet44_cifar10", "resnet56_cifar10"]
PROBE = SHARED / "data" / "flowers17"


def forward_ratio(model_id: str, n_images: int, reps: int = 3, batch: int = 32) -> dict:
    import torch
    from timm.data import create_transform

    from advisor.ranking.features import forward_all_cuts
    from advisor.models.loading import build_model
    from advisor.models.sources import ResolveContext, resolve_model
    from advisor.data.probe import load_probe

    loaded = build_model(resolve_model(model_id, ResolveContext(weights_dir=SHARED / "models", offline=True)))
    probe = load_probe(str(PROBE), max_images=n_images)
    cfg = loaded.data_config
    tf = create_transform(input_size=cfg["input_size"], interpolation=cfg["interpolation"], mean=cfg["mean"], std=cfg["std"],
                          crop_pct=cfg["crop_pct"], crop_mode=cfg.get("crop_mode", "center"))
    x = torch.stack([tf(probe.load_image(i)) for i in range(len(probe))])
    batches = list(x.split(batch))
    m = loaded.module

    def raw():
        for b in batches:
            m(b)

    def all_cuts():
        for b in batches:
            pooled, logits = forward_all_cuts(m, b)
            [p.float().numpy() for p in pooled]
            if logits is not None:
                logits.float().numpy()

    times = {"raw": [], "all": [], "raw_cpu": [], "all_cpu": []}
    with torch.inference_mode():
        m(batches[0]), forward_all_cuts(m, batches[0])  # warm-up
        for _ in range(reps):  # interleaved so drift hits both alike
            for name, fn in (("raw", raw), ("all", all_cuts)):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                times[name].append(time.perf_counter() - t0)
                times[name + "_cpu"].append(time.process_time() - c0)
    r, a = min(times["raw"]), min(times["all"])
    rc, ac = min(times["raw_cpu"]), min(times["all_cpu"])
    return {"model": model_id, "n": len(probe), "size": cfg["input_size"][-1], "raw": r, "all": a, "ratio": a / r,
            "cpu_ratio": ac / rc}


def cold_warm(models: list[str], n_images: int) -> dict:
    home = Path(tempfile.mkdtemp(prefix="advisor-bench-"))
    env = {**os.environ, "ADVISOR_HOME": str(home)}
    cmd = [str(REPO / ".venv" / "bin" / "advisor"), "rank", str(PROBE), "--weights-dir", str(SHARED / "models"),
           "--models", ",".join(models), "-e", "logme", "-e", "knn", "--max-images", str(n_images), "--json"]
    out = {}
    for label in ("cold", "warm"):
        t0 = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        out[label] = time.perf_counter() - t0
    shutil.rmtree(home, ignore_errors=True)
    out["cmd"] = " ".join(cmd[1:]).replace(str(SHARED), "../shared")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "rank_speed.md"))
    args = ap.parse_args()
    if not PROBE.is_dir():
        sys.exit("../shared/data/flowers17 is absent: this benchmark needs the shared models and data")
    import torch

    load0 = f"{os.getloadavg()[0]:.1f}"
    rows = []
    for model_id in MODELS:
        rows.append(forward_ratio(model_id, args.images))
        print(f"{model_id}: ratio {rows[-1]['ratio']:.3f} (CPU time {rows[-1]['cpu_ratio']:.3f})", file=sys.stderr, flush=True)
    cw = cold_warm(MODELS, args.images)
    lines = [
        "# `advisor rank` speed",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), Python {platform.python_version()}",
        f"- command: `.venv/bin/python benchmarks/rank_speed.py --images {args.images}`",
        f"- probe: flowers17 train, {args.images} images (stratified subsample)",
        f"- load average at start / end: {load0} / {os.getloadavg()[0]:.1f} (the machine is shared; the CPU-time ratio is the less noisy one)",
        "",
        "## All-cut extraction vs raw forward (goal: ratio ≤ 1.10)",
        "",
        "Same preprocessed tensors, batches of 32, best of 3 interleaved repeats. *raw* is `model(x)`;",
        "*all cuts* is `forward_intermediates` + pooling of every cut + pre-logits + logits, copied to NumPy.",
        "",
        "| model | input px | raw forward s | all-cut extraction s | ratio (wall) | ratio (CPU time) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {r['model']} | {r['size']} | {r['raw']:.2f} | {r['all']:.2f} | {r['ratio']:.3f} | {r['cpu_ratio']:.3f} |" for r in rows]
    lines += [
        "",
        "## Cold vs warm `advisor rank` (goal: ≥ 20×)",
        "",
        "Whole CLI process, fresh cache; the warm run repeats the same command.",
        "",
        f"`advisor {cw['cmd']}`",
        "",
        "| cold s | warm s | speed-up |",
        "|---:|---:|---:|",
        f"| {cw['cold']:.1f} | {cw['warm']:.2f} | {cw['cold'] / cw['warm']:.0f}× |",
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
