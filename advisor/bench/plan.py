"""``advisor bench --plan``: every run with its key and whether it is done (:func:`make_plan`, also the
first step of a benchmark), a few timed SGD steps per model (:func:`time_model`), and from them the
estimated CPU and wall time (:func:`estimate`, :func:`plan_report`). Trains and writes nothing."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from advisor.bench.config import DEFROST_LR, RUNS_CSV, SCORES_CSV, Config, Settings, model_name, setting_label, target_name
from advisor.bench.identity import ModelInfo, model_info, part_identity, score_key
from advisor.bench.jobs import Job, cell_jobs, split_target
from advisor.bench.units import finished_runs, read_runs, read_scores
from advisor.data.splits import TargetParts
from advisor.models.sources import ResolveContext
from advisor.ranking.features import PRE_LOGITS
from advisor.scale.executor import cpu_cores

@dataclass
class CellPlan:
    info: ModelInfo
    parts: TargetParts
    jobs: list[Job]


@dataclass
class Plan:
    cfg: Config
    infos: dict[str, ModelInfo]
    parts: dict[str, TargetParts]
    cells: list[CellPlan]
    device: str
    done: dict[str, dict] = field(default_factory=dict)  # run key → stored record (DuckDB or CSV)
    scored: set[tuple[str, str]] = field(default_factory=set)  # (target, model) pairs whose scores the scores CSV holds

    @property
    def jobs(self) -> list[Job]:
        return [j for c in self.cells for j in c.jobs]


def make_plan(cfg: Config, device: str, log=lambda m: None, csv_path: str | Path | None = None) -> Plan:
    """Every run of the benchmark with its key, and which are already done (DuckDB, or the CSV when
    given, read only). Builds each model once (no training) for its input size and cuts."""
    s = cfg.settings
    ctx = ResolveContext(weights_dir=cfg.weights_dir)
    infos = {m: model_info(m, ctx, s) for m in cfg.models}
    parts = {t: split_target(t, s) for t in cfg.targets}
    cells = []
    for t in cfg.targets:
        p = parts[t]
        keys = tuple(part_identity(getattr(p, name), t) for name in ("train", "val", "test"))
        for m in cfg.models:
            cells.append(CellPlan(infos[m], p, cell_jobs(infos[m], p, s, keys, cfg.weights_dir, device)))
    plan = Plan(cfg, infos, parts, cells, device)
    keys = [j.key for j in plan.jobs]
    plan.done = finished_runs(keys)
    if csv_path is not None:
        want = set(keys)
        plan.done.update({r["run_key"]: r for r in read_runs(csv_path) if r["run_key"] in want and r["run_key"] not in plan.done})
    return plan


def time_model(info: ModelInfo, s: Settings, threads: int, n_classes: int = 10, n_score: int = 0) -> dict:
    """Seconds per SGD step of a full fine-tune (batch ``batch_size`` at the model's benchmark input
    size; 1 warm-up step, then 2 timed), per image of an inference forward pass, and per SGD step of
    the defrost suffix at each defrost cut (1 warm-up, 1 timed), with ``threads`` torch threads.
    With ``n_score``, also the scoring: per image of DEPARA's attribution pass (one batch, when an
    estimator of ``s`` needs it) and the estimators' own arithmetic on ``n_score`` random rows at
    the model's ``pre_logits`` width, once each, times the number of cuts (``score_target``: seconds
    per target, an upper bound: earlier cuts are narrower).
    Random inputs: the cost does not depend on the pixels. Two readings of each: ``wall`` (what this
    machine does now) and ``idle`` (process CPU time / threads: what it would do without other jobs)."""
    import torch

    from advisor.validation import finetune as ft
    from advisor.models.loading import build_model
    from advisor.validation.stages import stages

    def timed(fn, n=1):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        return (time.perf_counter() - w0) / n, (time.process_time() - c0) / threads / n

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        loaded = build_model(info.resolved, img_size=info.img_override)
        module = loaded.module
        module.reset_classifier(n_classes)
        size = loaded.data_config["input_size"]
        st = stages(module, torch.randn(2, *size))
        theta = {k: v.detach().clone() for k, v in module.state_dict().items()}
        b = s.batch_size
        gen = torch.Generator().manual_seed(0)
        xb = torch.randn(3 * b, *size, generator=gen)
        yb = torch.arange(3 * b) % n_classes
        proto = replace(ft.finetune(50, epochs=1, batch_size=b), decay_epochs=1)
        ft.train(st, PRE_LOGITS, proto, xb[:b], yb[:b], xb[:2], yb[:2], seed=0)  # warm-up
        module.load_state_dict(theta)
        step = timed(lambda: ft.train(st, PRE_LOGITS, proto, xb[b:], yb[b:], xb[:2], yb[:2], seed=0), 2)
        module.to("cpu").load_state_dict(theta)
        module.eval()
        x_eval = xb[:b].contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            module(x_eval)
            infer = timed(lambda: module(x_eval), b)
        defrost = {}
        dproto = ft.defrost(epochs=1, lr=DEFROST_LR, batch_size=b)
        for cut in info.defrost_cuts:
            module.to("cpu").load_state_dict(theta)
            h = ft.prefix_activations(st, xb[: 2 * b], cut)
            ft.train(st, cut, dproto, h[:b], yb[:b], h[:2], yb[:2], seed=0)
            module.to("cpu").load_state_dict(theta)
            defrost[cut] = timed(lambda cut=cut, h=h: ft.train(st, cut, dproto, h[b:], yb[b: 2 * b], h[:2], yb[:2], seed=0))
        attr, arith = (0.0, 0.0), (0.0, 0.0)
        if n_score:
            attr, arith = _time_scoring(module, x_eval, s, n_score, n_classes, len(info.cuts), timed)
        return {reading: {"step": step[i], "infer": infer[i], "defrost_step": {c: v[i] for c, v in defrost.items()},
                          "attr": attr[i], "score_target": arith[i]}
                for i, reading in enumerate(("wall", "idle"))}
    finally:
        torch.set_num_threads(before)


def _time_scoring(module, x, s: Settings, n_score: int, n_classes: int, n_cuts: int, timed) -> tuple:
    """(attribution seconds per image, estimator arithmetic seconds per target), each as (wall, idle)."""
    import torch

    from advisor.ranking.attributions import probe_attributions
    from advisor.estimators import get_estimator, safe_score
    from advisor.ranking.features import forward_all_cuts

    ests = [get_estimator(e) for e in s.estimators]
    attr = (0.0, 0.0)
    if any("attributions" in e.needs for e in ests):
        attr = timed(lambda: probe_attributions(module, [x], grid=16), len(x))
    with torch.inference_mode():
        pooled, logits = forward_all_cuts(module, x[:2])
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((n_score, pooled[-1].shape[1])).astype(np.float32)
    labels = np.arange(n_score) % n_classes
    inputs = {"logits": None if logits is None else rng.standard_normal((n_score, logits.shape[1])).astype(np.float32),
              "reference": np.eye(n_classes, dtype=np.float32)[labels], "reference_attributions": None,
              "attributions": rng.standard_normal((n_score, 256)).astype(np.float32)}
    arith = timed(lambda: [safe_score(e, feats, labels, **inputs) for e in ests])
    return attr, (arith[0] * n_cuts, arith[1] * n_cuts)


def estimate(plan: Plan, timings: dict[str, dict], workers: int) -> dict:
    """Seconds of each run kind per model (to do, i.e. not already done), from the step timings:
    fine-tune = epochs × steps × step + (epochs × val + test) images × inference; defrost = the prefix
    pass over all images + epochs × steps × suffix step; probe = one inference pass over train, val,
    test; scoring = one extraction pass over the score part, plus the attribution pass when an
    estimator needs attributions (timed per image; taken as cuts / 2 + 1 forward passes when it was
    not timed), plus the estimators' own arithmetic (``score_target``, timed)."""
    from advisor.estimators import get_estimator

    s = plan.cfg.settings
    needs_attr = any("attributions" in get_estimator(e).needs for e in s.estimators)
    per_model: dict[str, dict] = {}
    for cell in plan.cells:
        m = cell.info.model_id
        t = timings[m]
        p = cell.parts
        n_tr, n_va, n_te, n_sc = len(p.train), len(p.val), len(p.test), len(p.score)
        steps = math.ceil(n_tr / s.batch_size)
        row = per_model.setdefault(m, {k: 0 for k in ("finetune", "defrost", "probe", "scoring", "n_finetune", "n_defrost", "n_probe",
                                                      "n_scoring", "done_finetune", "done_defrost", "done_probe", "done_scoring")})
        for j in cell.jobs:
            row[f"n_{j.kind}"] += 1
            if j.key in plan.done:
                row[f"done_{j.kind}"] += 1
                continue
            if j.kind == "finetune":
                row["finetune"] += s.epochs * steps * t["step"] + (s.epochs * n_va + n_te) * t["infer"]
            elif j.kind == "defrost":
                row["defrost"] += (n_tr + n_va + n_te) * t["infer"] + s.epochs * steps * t["defrost_step"][j.cut]
            else:
                row["probe"] += (n_tr + n_va + n_te) * t["infer"] + 1.0
        row["n_scoring"] += len(s.estimators) * len(cell.info.cuts)
        if (p.spec, m) in plan.scored:
            row["done_scoring"] += len(s.estimators) * len(cell.info.cuts)
            continue
        attr = (t.get("attr") or t["infer"] * (len(cell.info.cuts) / 2 + 1)) if needs_attr else 0.0
        row["scoring"] += n_sc * (t["infer"] + attr) + t.get("score_target", 0.0)
    total = {k: sum(r[k] for r in per_model.values()) for k in next(iter(per_model.values()))}
    train_s = total["finetune"] + total["defrost"] + total["probe"]
    # the scoring thread runs beside the workers on the same cores: the CPU time is shared out over
    # them, unless the scoring alone (one thread) takes longer
    cores = max(1, min(max(workers, 1), cpu_cores()))
    return {"per_model": per_model, "total": total, "cpu_seconds": train_s + total["scoring"],
            "wall_seconds": max((train_s + total["scoring"]) / cores, total["scoring"]), "workers": workers}


def _hours(sec: float) -> str:
    return f"{sec / 3600:.1f} h" if sec >= 3600 else (f"{sec / 60:.0f} min" if sec >= 60 else f"{sec:.0f} s")


def plan_report(plan: Plan, timings: dict[str, dict], est: dict, threads: int, idle: dict | None = None,
                load: tuple[float, float] | None = None) -> str:
    """The ``--plan`` text: settings, targets, one row per model (input size, measured step, runs of
    each kind and estimated time), totals, the wall-time estimate and what dominates it."""
    s, cfg = plan.cfg.settings, plan.cfg
    w = est["workers"]
    lines = [f"advisor bench --plan: {len(cfg.models)} models x {len(cfg.targets)} targets, device {plan.device}; nothing is trained.",
             (f"settings: img_size cap {s.img_size or 'none (each model its own size)'}, max_train {s.max_train}, epochs {s.epochs}, "
              f"backbone lrs {', '.join(f'{v:g}' for v in s.backbone_lrs)}, seeds {', '.join(map(str, s.seeds))}, batch {s.batch_size}, "
              f"defrost cuts {s.defrost_cuts if isinstance(s.defrost_cuts, int) else ','.join(s.defrost_cuts)} x seed {s.defrost_seed}, "
              f"fine-tunes' head {s.head_init}{' (LP-FT)' if s.head_init == 'probe' else ''}, fine-tune grid (BatchNorm mode@backbone lr, "
              f"chosen on validation) {', '.join(setting_label(*g) for g in s.grid())}, "
              f"{len(s.estimators)} estimators"),
             "targets: " + "; ".join(f"{target_name(t)} (train {len(p.train)} / val {len(p.val)} / test {len(p.test)} / scored {len(p.score)})"
                                     for t, p in plan.parts.items()),
             f"timing: 2 SGD steps per model (after 1 warm-up) at batch {s.batch_size}, {threads} torch thread(s) = what each of "
             f"{w} worker(s) gets on {cpu_cores()} cores", ""]
    head = ("model", "input px", "s/step" + (" (idle)" if idle else ""), "fine-tunes", "defrost runs", "probes", "scorings", "est. CPU time")
    rows = []
    pm = est["per_model"]
    for m in cfg.models:
        r, info, t = pm[m], plan.infos[m], timings[m]
        px = f"{info.input_size[1]}" + ("" if info.img_override is None else f" (own {info.native_size[1]})")

        def runs(kind, r=r):
            done = r[f"done_{kind}"]
            return f"{r[f'n_{kind}']}" + (f" ({done} done)" if done else "")

        rows.append((model_name(m), px, f"{t['step']:.3f}" + (f" ({idle['per_model_step'][m]:.3f})" if idle else ""), runs("finetune"), runs("defrost"), runs("probe"), runs("scoring"),
                     _hours(r["finetune"] + r["defrost"] + r["probe"] + r["scoring"])))
    tot = est["total"]

    def truns(kind):
        return f"{tot[f'n_{kind}']}" + (f" ({tot[f'done_{kind}']} done)" if tot[f"done_{kind}"] else "")

    rows.append(("total", "", "", truns("finetune"), truns("defrost"), truns("probe"), truns("scoring"), _hours(est["cpu_seconds"])))
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt_row = lambda r: "  ".join(str(v).ljust(wd) if i == 0 else str(v).rjust(wd) for i, (v, wd) in enumerate(zip(r, widths)))  # noqa: E731
    lines += [fmt_row(head), fmt_row(tuple("-" * wd for wd in widths))] + [fmt_row(r) for r in rows]
    cpu = est["cpu_seconds"] or 1e-9
    share = {k: tot[k] / cpu for k in ("finetune", "defrost", "probe", "scoring")}
    lines += ["", (f"estimated wall time: {_hours(est['wall_seconds'])} with --workers {w} (runs split over {w} process(es), "
                   f"scoring in a thread of the parent beside them); CPU time {_hours(est['cpu_seconds'])}: fine-tunes {share['finetune']:.0%}, "
                   f"defrost runs {share['defrost']:.0%}, probes {share['probe']:.0%}, scoring {share['scoring']:.0%} (extraction, "
                   "the attribution pass and the estimators' arithmetic, each timed).")]
    if idle and load:
        lines.append(f"the machine's load average was {load[0]:.1f} -> {load[1]:.1f} on {cpu_cores()} cores while timing (other jobs share it); "
                     f"from the CPU time of the same steps, an idle machine would take about {_hours(idle['wall_seconds'])} "
                     f"(CPU time {_hours(idle['cpu_seconds'])}): the 'idle' column, seconds per step.")
    if est["cpu_seconds"] < 1:
        lines.append("nothing left to compute: every run is in the cache or the runs CSV and every score in the scores CSV; "
                     "`advisor bench` only imports them and writes the report (a minute or two).")
        return "\n".join(lines)
    by_model = sorted(cfg.models, key=lambda m: -(pm[m]["finetune"] + pm[m]["defrost"] + pm[m]["probe"]))
    top = ", ".join(f"{model_name(m)} {(pm[m]['finetune'] + pm[m]['defrost'] + pm[m]['probe']) / cpu:.0%}" for m in by_model[:3])
    label = {"finetune": "the full fine-tunes", "defrost": "the defrost runs", "probe": "the linear probes", "scoring": "the scoring"}
    dom = max(share, key=share.get)
    pixels = "" if not s.img_size else (f"; img_size {s.img_size} gives the 224-260 px ImageNet models "
                                         f"{s.img_size ** 2 / 224 ** 2:.2f}-{s.img_size ** 2 / 260 ** 2:.2f} x their own pixels")
    lines.append(f"what dominates: {label[dom]} ({share[dom]:.0%}). Fine-tune time scales linearly with each of the grid's settings "
                 f"({len(s.grid())}: BatchNorm modes x lrs), "
                 f"seeds ({len(s.seeds)}), epochs ({s.epochs}) and max_train ({s.max_train}), and a step with the input pixels{pixels}; "
                 f"defrost time with defrost_cuts x epochs. Costliest models: {top}.")
    return "\n".join(lines)


def run_plan(cfg: Config, *, workers: int = 1, device: str | None = None, runs_csv: str | Path | None = RUNS_CSV,
             log=lambda m: None) -> str:
    """``advisor bench --plan``: the run counts and the estimate; reads the cache and the runs CSV,
    times a few SGD steps per model, trains and writes nothing."""
    from advisor.validation.validate import pick_device

    plan = make_plan(cfg, pick_device(device), log, csv_path=runs_csv)
    if runs_csv is not None:  # scores the scores CSV beside the runs CSV holds are not computed again
        known = read_scores(Path(runs_csv).with_name(SCORES_CSV.name))
        part_keys = {t: part_identity(p.score, t) for t, p in plan.parts.items()}
        plan.scored = {(c.parts.spec, c.info.model_id) for c in plan.cells
                       if score_key(c.info, part_keys[c.parts.spec], tuple(cfg.settings.estimators)) in known}
    threads = max(1, cpu_cores() // workers)
    timings = {}
    load0 = os.getloadavg()
    for m, info in plan.infos.items():
        t0 = time.perf_counter()
        timings[m] = time_model(info, cfg.settings, threads, n_score=max(len(p.score) for p in plan.parts.values()))
        log(f"{model_name(m)}: {timings[m]['wall']['step']:.3f} s per SGD step at {info.input_size[1]} px "
            f"(idle {timings[m]['idle']['step']:.3f}; timed in {time.perf_counter() - t0:.1f} s)")
    load = (load0[0], os.getloadavg()[0])
    wall = {m: t["wall"] for m, t in timings.items()}
    idle = estimate(plan, {m: t["idle"] for m, t in timings.items()}, workers)
    idle["per_model_step"] = {m: t["idle"]["step"] for m, t in timings.items()}
    return plan_report(plan, wall, estimate(plan, wall, workers), threads, idle, load)
