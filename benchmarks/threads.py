"""Benchmark: torch intra-op threads for feature extraction on this machine (picks advisor's default).

Run:  .venv/bin/python benchmarks/threads.py [--out benchmarks/threads.md]
Each configuration runs in a fresh subprocess (OMP settings are read at start-up), interleaved over
3 rounds; the table reports the best round. Needs ../shared for the real models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
CASES = [("tf_efficientnet_lite0", None, 64), ("resnet20_cifar10", None, 256), ("tf_efficientnet_lite0", 64, 256)]
CONFIGS = {"1 thread": {"ADVISOR_BENCH_THREADS": "1"}, "2 threads": {"ADVISOR_BENCH_THREADS": "2"},
           "2 threads, OMP_WAIT_POLICY=PASSIVE": {"ADVISOR_BENCH_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"}}

CHILD = """
import json, os, sys, time
from pathlib import Path
import torch
torch.set_num_threads(int(os.environ["ADVISOR_BENCH_THREADS"]))
from advisor.ranking.features import forward_all_cuts
from advisor.models.loading import build_model
from advisor.models.sources import ResolveContext, resolve_model
model_id, img, n = sys.argv[1], (int(sys.argv[2]) if sys.argv[2] != "None" else None), int(sys.argv[3])
m = build_model(resolve_model(model_id, ResolveContext(weights_dir=Path(sys.argv[4]), offline=True)), img_size=img)
size = m.data_config["input_size"][-1]
x = torch.randn(n, 3, size, size)
with torch.inference_mode():
    forward_all_cuts(m.module, x[:32])
    t0 = time.perf_counter()
    for b in x.split(32):
        forward_all_cuts(m.module, b)
    print(json.dumps({"seconds": time.perf_counter() - t0, "size": size}))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "threads.md"))
    args = ap.parse_args()
    results: dict = {}
    for _ in range(3):
        for case in CASES:
            for name, env in CONFIGS.items():
                out = subprocess.run([sys.executable, "-c", CHILD, case[0], str(case[1]), str(case[2]), str(SHARED / "models")],
                                     env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
                r = json.loads(out)
                key = (case, name)
                results[key] = {"seconds": min(r["seconds"], results.get(key, {"seconds": 1e9})["seconds"]), "size": r["size"]}
    lines = ["# Threads for feature extraction", "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
             "- command: `.venv/bin/python benchmarks/threads.py`",
             "- what: all-cut extraction (batches of 32, random input), best of 3 interleaved rounds, fresh process per run", "",
             "| model | input px | images | " + " | ".join(CONFIGS) + " |", "|---|---:|---:|" + "---:|" * len(CONFIGS)]
    for case in CASES:
        cells = [f"{results[(case, n)]['seconds']:.2f} s" for n in CONFIGS]
        lines.append(f"| {case[0]} | {results[(case, next(iter(CONFIGS)))]['size']} | {case[2]} | " + " | ".join(cells) + " |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
