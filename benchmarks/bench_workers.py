"""`advisor bench --workers`: N single-purpose processes vs one process, side by side, on this machine.

Times the benchmark's own job runner (``advisor.bench.jobs.execute``: spawned workers with
``cores // N`` torch threads each, model build and preprocessing included) on the same list of
fine-tunes for each worker count, in ABBA order (1, 2, 2, 1, ...) so that a drift in the load of a
shared machine hits both alike. Nothing is stored: the jobs run, their records are discarded.

    .venv/bin/python benchmarks/bench_workers.py --workers 1,2 --repeats 2 --out benchmarks/bench_workers.md
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tf_efficientnet_lite0,resnet20_cifar10")
    ap.add_argument("--target", default="data/pacs_photo")
    ap.add_argument("--max-train", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--img-size", default="128")
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--repeats", type=int, default=2, help="ABBA rounds")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    os.environ["ADVISOR_HOME"] = tempfile.mkdtemp(prefix="bench-workers-")  # an empty cache: every job runs
    import torch

    from advisor.bench import config as b
    from advisor.bench import jobs as bench_jobs
    from advisor.bench.plan import make_plan

    counts = [int(w) for w in args.workers.split(",")]
    root = b.shared_root()
    cfg = b.load_config(models=args.models.split(","), targets=[str(root / args.target)], epochs=args.epochs, seeds=[0, 1],
                        lrs=[0.01, 0.001], max_train=args.max_train, img_size=args.img_size, defrost_cuts=1, estimators=["knn"])
    plan = make_plan(cfg, "cpu")
    jobs = [j for j in plan.jobs if j.kind == "finetune"]
    cores = b.cpu_cores()
    order = []
    for r in range(args.repeats):
        order += counts if r % 2 == 0 else counts[::-1]
    results = []
    for w in order:
        bench_jobs.clear_prepared()  # the in-process runner must prepare its cells again, as workers do
        torch.set_num_threads(max(1, cores // w))
        load0 = os.getloadavg()
        c0, t0 = cpu_seconds(), time.perf_counter()
        recs = list(bench_jobs.execute(jobs, w))
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        load1 = os.getloadavg()
        train = sum(r["seconds"] for r in recs)
        results.append({"workers": w, "wall": wall, "cpu": cpu, "train": train, "load0": load0, "load1": load1})
        print(f"workers {w}: wall {wall:.1f} s, CPU {cpu:.1f} s, sum of in-run training seconds {train:.1f}, "
              f"load {load0[0]:.2f} -> {load1[0]:.2f}", flush=True)
    torch.set_num_threads(cores)

    by = {w: [r for r in results if r["workers"] == w] for w in counts}
    mean = {w: sum(r["wall"] for r in rs) / len(rs) for w, rs in by.items()}
    lines = ["# `advisor bench --workers`: processes vs threads", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {platform.machine()}, {cores} cores ({cpu_model()}), {platform.system()} {platform.release()}, "
             f"torch {torch.__version__}, Python {platform.python_version()}; shared with other jobs (load averages below)",
             f"- command: `.venv/bin/python benchmarks/bench_workers.py {' '.join(sys.argv[1:])}`",
             f"- jobs: the {len(jobs)} full fine-tunes of `advisor bench` for {', '.join(b.model_name(m) for m in cfg.models)} on "
             f"{b.target_name(cfg.targets[0])} (lrs 0.01, 0.001 x seeds 0, 1; {args.epochs} epoch(s); {len(plan.cells[0].parts.train)} "
             f"training / {len(plan.cells[0].parts.val)} val / {len(plan.cells[0].parts.test)} test images; input "
             + ", ".join(f"{b.model_name(m)} {i.input_size[1]} px" for m, i in plan.infos.items()) + "), run by `advisor.bench.jobs.execute`: "
             f"workers = 1 in-process with {cores} torch threads; workers = N in N spawned processes with {cores} // N threads each "
             "(process start, model build and image preprocessing included)",
             "- order ABBA, so that a drift in the machine's load hits both alike", "",
             "| round | workers | wall s | CPU s (all processes) | sum of in-run training s | load avg 1 min (start → end) |",
             "|---:|---:|---:|---:|---:|---|"]
    for i, r in enumerate(results):
        lines.append(f"| {i + 1} | {r['workers']} | {r['wall']:.1f} | {r['cpu']:.1f} | {r['train']:.1f} | "
                     f"{r['load0'][0]:.2f} → {r['load1'][0]:.2f} |")
    lines += ["", "Mean wall seconds: " + ", ".join(f"workers {w}: {mean[w]:.1f}" for w in counts) + "."]
    if 1 in mean:
        lines += ["", "Speed-up over one process: " + ", ".join(f"workers {w}: {mean[1] / mean[w]:.2f}x" for w in counts if w != 1) + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
