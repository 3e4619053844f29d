"""Benchmark: wall time of every registered estimator that needs only labels (and source logits).

Run:  .venv/bin/python benchmarks/published_estimators_cost.py [--sizes 1000 4000] [--dims 64 256 1280 2048]
                                                              [--reps 2] [--out benchmarks/published_estimators_cost.md]

Synthetic data, no models: 10 classes, N samples (balanced), D-dimensional features
``x = mu_y + noise`` with class means ``mu_c ~ N(0, 0.3^2 I)`` and unit Gaussian noise (float32, as the
feature cache stores them), and 1000-class source logits ``N(0, 1)`` with +3 on one source class per
target class (for the logit-based estimators). Each estimator is timed through ``Estimator.score``
(what ``advisor rank`` calls), best of ``--reps``, with the thread count left at its default (one
per core). Goal (issue "published estimators"): none slower than 5 s at N = 1000, D = 1280.
Writes a markdown report (date, machine, load, command, versions, the table). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from machine import cpu_model  # benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
GOAL_S, GOAL_N, GOAL_D = 5.0, 1000, 1280
CLASSES, SOURCE_CLASSES = 10, 1000
# What each estimator's cost is made of (N samples, D feature width, C classes, C_s source classes).
COMPLEXITY = {
    "gbc-diagonal": "PCA to 64 dims (randomized SVD, O(N·D·64)), then C² Bhattacharyya distances in 64 dims",
    "gbc-spherical": "as gbc-diagonal",
    "hscore": "thin SVD of the centred N×D features, O(N·D·min(N, D))",
    "hscore-shrinkage": "the same SVD + scikit-learn's Ledoit-Wolf shrinkage, O(N·D²)",
    "knn": "all N² cosine similarities in row chunks, O(N²·D)",
    "leep": "softmax of the N×C_s logits and a C×C_s joint, O(N·C·C_s); features unused",
    "linear": "5 fits of a multinomial logistic regression (lbfgs) on 4N/5 standardised rows, O(iterations·N·D·C)",
    "logme": "thin SVD of the N×D features, O(N·D·min(N, D)), + a fixed-point loop on the singular values",
    "nce": "argmax of the logits and a C×C_s count table, O(N·C_s)",
    "nleep": "full-SVD PCA keeping 80 % of the variance (with isotropic noise, a large share of D), then EM for a "
             "5C-component diagonal GMM (k-means init), O(iterations·N·5C·dims)",
    "parc": "PCA to 32 dims, N² row correlations and the rank of N(N-1)/2 dissimilarities, O(N²·32 + N² log N)",
    "sfda": "twice: D×D within-class scatter O(N·D²) + a D×D Cholesky solve O(D³); largest eigenvalue by Lanczos",
    "transrate": "singular values of the N×D features and of each class's rows, O(N·D·min(N, D))",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def synthetic(n: int, d: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % CLASSES
    means = 0.3 * rng.standard_normal((CLASSES, d))
    x = (means[y] + rng.standard_normal((n, d))).astype(np.float32)
    logits = rng.standard_normal((n, SOURCE_CLASSES)).astype(np.float32)
    logits[np.arange(n), y * (SOURCE_CLASSES // CLASSES)] += 3.0
    return x, y, logits


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000])
    ap.add_argument("--dims", type=int, nargs="+", default=[64, 256, 1280, 2048])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "published_estimators_cost.md")
    args = ap.parse_args()

    import scipy
    import sklearn

    import advisor

    ests = [e for e in advisor.list_estimators() if set(e.needs) <= {"labels", "logits"}]
    log(f"estimators: {', '.join(e.name for e in ests)}")
    cells = [(n, d) for n in args.sizes for d in args.dims]
    times: dict[tuple[str, int, int], float] = {}
    load_start = os.getloadavg()
    started = time.perf_counter()
    for n, d in cells:
        x, y, logits = synthetic(n, d)
        for est in ests:
            best = float("inf")
            for _ in range(args.reps):
                t0 = time.perf_counter()
                value = est.score(x, y, logits=logits)  # an estimator that raises stops the benchmark
                best = min(best, time.perf_counter() - t0)
            times[(est.name, n, d)] = best
            log(f"N={n} D={d} {est.name}: {best:.3f} s (score {value:.4g}, load {os.getloadavg()[0]:.2f})")
    total = time.perf_counter() - started
    load_end = os.getloadavg()

    def fmt(t: float) -> str:
        return f"{t:.3f}" if t < 10 else f"{t:.1f}"

    head = "| estimator | " + " | ".join(f"N={n} D={d}" for n, d in cells) + " |"
    lines = [
        "# Published estimators: cost on synthetic features",
        "",
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        (f"- machine: {cpu_model()}, {os.cpu_count()} cores (shared with other jobs), {platform.system()} {platform.release()}; "
        f"load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end"),
        f"- threads: default (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, one per core)",
        (f"- software: Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
        f"scikit-learn {sklearn.__version__}"),
        f"- command: `.venv/bin/python {shlex.join(sys.argv).replace(str(REPO) + '/', '')}`",
        (f"- data: {CLASSES} balanced classes, x = class mean (N(0, 0.3²I)) + N(0, I) noise, float32; "
        f"{SOURCE_CLASSES}-class source logits; best of {args.reps} per cell; whole run {total:.0f} s"),
        "",
        f"Wall seconds per call (`Estimator.score`). Goal: every estimator under {GOAL_S:.0f} s at N = {GOAL_N}, D = {GOAL_D}.",
        "",
        head,
        "|---|" + "---:|" * len(cells),
    ]
    for est in ests:
        lines.append(f"| `{est.name}` | " + " | ".join(fmt(times[(est.name, n, d)]) for n, d in cells) + " |")
    if (GOAL_N, GOAL_D) in cells:
        at_goal = {e.name: times[(e.name, GOAL_N, GOAL_D)] for e in ests}
        slow = [name for name, t in at_goal.items() if t > GOAL_S]
        slowest = max(at_goal, key=at_goal.get)
        lines += ["", (f"**Over the goal at N = {GOAL_N}, D = {GOAL_D}:** " + ", ".join(slow)) if slow else
                  f"All {len(ests)} estimators are under {GOAL_S:.0f} s at N = {GOAL_N}, D = {GOAL_D} "
                  f"(slowest: `{slowest}`, {fmt(at_goal[slowest])} s)."]
    else:
        lines += ["", f"(N = {GOAL_N}, D = {GOAL_D}, the goal's cell, was not measured in this run.)"]
    lines += ["", "What the cost is made of:", ""]
    lines += [f"- `{e.name}`: {COMPLEXITY.get(e.name, '—')}" for e in ests]
    args.out.write_text("\n".join(lines) + "\n")
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
