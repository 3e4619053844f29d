"""`advisor rank --executor ray` vs a serial rank of 16 models, side by side on this machine, and what
N Ray nodes would take, from the measured cost of each model's task and of the driver's writes.

Each mode starts from an empty cache (every model is extracted and scored). The serial run is
instrumented in-process: the time of each model's work (build + extraction, DEPARA attributions,
estimator arithmetic: what one Ray task runs) and of every cache transaction (what the single
driver writes). The Ray run is timed as a user would see it (runtime start included, then the
rank). Order ABBA over ``--repeats`` rounds so a drift in the machine's load hits both modes alike.

    .venv/bin/python benchmarks/ray_scaling.py --out benchmarks/ray_scaling.md

The 16 models: the 14 of ``registry/bench.toml`` (real weights from ``../shared/models``) and two
random-init timm models (resnet18, mobilenetv3_large_100) saved as files: timing needs no trained
weights, and the catalog holds no more real ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]




def extra_models(folder: Path) -> list[str]:
    import timm
    import torch
    from safetensors.torch import save_file

    ids = []
    for arch in ("resnet18", "mobilenetv3_large_100"):
        torch.manual_seed(0)
        path = folder / f"{arch}_random.safetensors"
        save_file({k: v.contiguous() for k, v in timm.create_model(arch, num_classes=10).state_dict().items()}, str(path))
        ids.append(f"file:{path}?arch={arch}&num_classes=10")
    return ids


class Meter:
    """Exclusive seconds (a nested timed region is subtracted from the one around it) of the work a Ray
    task runs, per model (build + extraction, DEPARA attributions, scoring), of the probe's decoding and
    of each cache transaction (the driver's part in a Ray run)."""

    def __init__(self):
        self.work: dict[str, float] = {}
        self.writes: list[float] = []
        self.decode = 0.0
        self.stack: list[float] = []  # seconds of the timed children of each open region

    def _timed(self, fn, record):
        def wrapper(*a, **kw):
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                total = time.perf_counter() - t0
                own = total - self.stack.pop()
                if self.stack:
                    self.stack[-1] += total
                record(own, *a, **kw)
        return wrapper

    @contextmanager
    def installed(self, work: bool = True):
        from advisor.ranking import decoding, extraction, scores
        from advisor.store import db

        saved = (extraction.extract_features, extraction.compute_attributions, scores.compute_scores, db.transaction,
                 decoding.Decoded.get)

        def add_work(own, first, *a, **kw):
            key = first if isinstance(first, str) else first.model_id
            self.work[key] = self.work.get(key, 0.0) + own

        @contextmanager
        def transaction(*a, **kw):
            self.stack.append(0.0)
            t0 = time.perf_counter()
            try:
                with saved[3](*a, **kw) as con:
                    yield con
            finally:
                total = time.perf_counter() - t0
                self.writes.append(total - self.stack.pop())
                if self.stack:
                    self.stack[-1] += total

        def add_decode(own, *a, **kw):
            self.decode += own

        if work:  # in-process only: Ray's workers import their own, untimed copies
            extraction.extract_features = self._timed(saved[0], add_work)
            extraction.compute_attributions = self._timed(saved[1], add_work)
            scores.compute_scores = self._timed(saved[2], add_work)
        db.transaction = transaction
        decoding.Decoded.get = self._timed(saved[4], add_decode)
        try:
            yield self
        finally:
            (extraction.extract_features, extraction.compute_attributions, scores.compute_scores, db.transaction,
             decoding.Decoded.get) = saved


def run(mode: str, probe: str, models: list[str], estimators: list[str] | None, max_images: int, weights_dir: str) -> dict:
    os.environ["ADVISOR_HOME"] = tempfile.mkdtemp(prefix=f"ray-scaling-{mode}-")  # empty cache: every model runs
    from advisor.ranking.decoding import Validated
    from advisor.ranking.ranking import rank

    Validated.hashes.clear()  # the probe is decoded and checked again, as a fresh process would
    t0 = time.perf_counter()
    if mode == "serial":
        meter = Meter()
        with meter.installed():
            res = rank(probe, models, estimators, max_images=max_images, weights_dir=weights_dir)
        out = {"wall": time.perf_counter() - t0, "work": meter.work, "writes": meter.writes, "decode": meter.decode}
    else:
        import ray

        from advisor.scale.executor import RayExecutor

        meter = Meter()
        with RayExecutor() as ex, meter.installed(work=False):
            t_init = time.perf_counter() - t0
            res = rank(probe, models, estimators, max_images=max_images, weights_dir=weights_dir, executor=ex)
            t_rank = time.perf_counter() - t0 - t_init
        assert not ray.is_initialized()
        out = {"wall": time.perf_counter() - t0, "init": t_init, "rank": t_rank, "writes": meter.writes, "decode": meter.decode}
    out["failed"] = dict(res.failed)
    out["order"] = [r["model"] for r in res.top(len(models))]
    out["bytes"] = {m.model_id: sum(f.nbytes for f in m.features.values()) + (0 if m.logits is None else m.logits.nbytes) for m in res.models}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--probe", default=None, help="default: <shared>/data/flowers17")
    ap.add_argument("--max-images", type=int, default=200)
    ap.add_argument("--estimators", default=None, help="comma-separated; default: rank's default (advisor-score)")
    ap.add_argument("--repeats", type=int, default=1, help="ABBA rounds (serial, ray, ray, serial per round)")
    ap.add_argument("--nodes", default="1,2,4,8,16,32,64", help="node counts of the projection")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from advisor.bench import config as b

    root = b.shared_root()
    probe = args.probe or str(root / "data" / "flowers17")
    models = list(b.load_config().models) + extra_models(Path(tempfile.mkdtemp(prefix="ray-scaling-models-")))
    estimators = args.estimators.split(",") if args.estimators else None
    cores = b.cpu_cores()
    runs: dict[str, list[dict]] = {"serial": [], "ray": []}
    for _ in range(args.repeats):
        for mode in ("serial", "ray", "ray", "serial") if args.repeats > 1 else ("serial", "ray"):
            r = run(mode, probe, models, estimators, args.max_images, str(root / "models"))
            runs[mode].append(r)
            print(f"{mode}: {r['wall']:.1f} s" + (f" (Ray start {r['init']:.1f} s)" if mode == "ray" else ""), file=sys.stderr, flush=True)
    s0, r0 = runs["serial"][0], runs["ray"][0]
    assert s0["order"] == r0["order"], "Ray ranked differently from the serial run"
    assert not s0["failed"] and not r0["failed"], (s0["failed"], r0["failed"])
    serial = statistics.median(r["wall"] for r in runs["serial"])
    ray_wall = statistics.median(r["wall"] for r in runs["ray"])
    ray_init = statistics.median(r["init"] for r in runs["ray"])
    ray_rank = statistics.median(r["rank"] for r in runs["ray"])
    n_units = len(models)
    work = s0["work"]  # per model, in the serial run's process: what one Ray task runs
    c = sorted(work.values())
    sum_c, max_c = sum(c), max(c)
    w_serial = sum(s0["writes"])
    w_ray = sum(r0["writes"])  # one transaction per model (features, attributions and scores together), plus the run's own
    fixed = s0["wall"] - sum_c - w_serial  # resolve, decode and check the probe, reference, ranking: the driver's own work
    p1 = max(ray_rank - fixed - w_ray, 0.0)  # the tasks' work on one node of this machine, as Ray ran it
    mb = statistics.mean(s0["bytes"].values()) / 1e6
    n_star = p1 / w_ray if w_ray else float("inf")

    def projected(nodes: int) -> tuple[float, float]:
        low = ray_init + fixed + max(p1 / nodes, w_ray)
        return low, low + (max_c if nodes > 1 else 0.0)

    lines = [
        "# Ray scale-out: a 16-model rank, serial vs `--executor ray`, and a projection to N nodes",
        "",
        f"- Command: `.venv/bin/python benchmarks/ray_scaling.py{' --repeats ' + str(args.repeats) if args.repeats != 1 else ''}"
        f"{' --out ' + args.out if args.out else ''}`",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: {cpu_model()}, {cores} cores, "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}",
        f"- Probe: `{Path(probe).name}`, {args.max_images} images; estimators: {args.estimators or 'the default (advisor-score: cka, cka-debiased, depara-edges)'}; "
        f"an empty cache for every run; {args.repeats} round(s){' in ABBA order' if args.repeats > 1 else ''}.",
        f"- Models ({n_units}): " + ", ".join(f"`{m.split('?')[0].rsplit('/', 1)[-1]}`" for m in models),
        "",
        "## Measured, side by side",
        "",
        "| mode | wall time | notes |",
        "|---|---|---|",
        f"| serial (one process, {cores} torch threads) | {serial:.1f} s | |",
        f"| `--executor ray` (local runtime, {cores} CPUs, one single-threaded task per model) | {ray_wall:.1f} s | Ray start {ray_init:.1f} s, rank {ray_rank:.1f} s |",
        f"| ratio serial / Ray | {serial / ray_wall:.2f} | |",
        "",
        f"Both runs ranked the 16 models in the same order. On one machine Ray adds its start and runs the same {cores} cores as "
        f"{cores} single-threaded tasks instead of one {cores}-threaded process, so it is not meant to win here; the gain is "
        "across nodes, below.",
        "",
        "## Where the time goes",
        "",
        f"- The work that becomes Ray tasks (build + extraction, DEPARA attributions, scoring), per model in the serial run: "
        f"median {statistics.median(c):.1f} s, max {max_c:.1f} s, total {sum_c:.1f} s.",
        f"- The driver's cache writes: serial {len(s0['writes'])} transactions, {w_serial:.2f} s; Ray {len(r0['writes'])} transactions "
        f"(one per model), {w_ray:.2f} s, {w_ray / n_units * 1000:.0f} ms per model.",
        f"- The driver's own work (resolve the ids, decode and check the probe, the reference, best cuts and ranking): {fixed:.1f} s, "
        f"of which decoding the probe {s0['decode']:.1f} s.",
        f"- Task work on one node as Ray ran it: P1 = Ray's rank time − driver work − writes = {p1:.1f} s.",
        f"- Features shipped back to the driver per model: {mb:.1f} MB on average (every cut, float32, {args.max_images} images).",
        "",
        "## Projection to N nodes like this one",
        "",
        f"T(N) = Ray start + driver work + max(P1 / N, driver writes) = {ray_init:.1f} + {fixed:.1f} + max({p1:.0f} / N, {w_ray:.2f}) s, "
        f"plus at most one longest task ({max_c:.1f} s) when the last tasks straggle (list scheduling's bound). Measured for "
        f"N = 1 only; the rest is arithmetic on these measurements.",
        "",
        "| nodes | projected wall time | bound by |",
        "|---|---|---|",
    ]
    for n in [int(v) for v in args.nodes.split(",")]:
        low, high = projected(n)
        bound = "the single writer" if p1 / n <= w_ray else "the tasks"
        lines.append(f"| {n} | {low:.1f}–{high:.1f} s | {bound} |")
    lines += [
        "",
        f"The single writer becomes the bottleneck at N* = P1 / writes ≈ {n_star:.0f} nodes. N* does not depend on the number "
        f"of models (both grow with it), so a 200-model sweep reaches it at the same node count; long before that, the driver's "
        f"fixed work and Ray's start ({ray_init + fixed:.1f} s) and the longest task set the floor. Shipping {mb:.1f} MB per "
        f"model to the driver takes {mb * 8 / 10_000 * 1000:.0f} ms at 10 Gbit/s, small beside a task.",
        "",
    ]
    text = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
