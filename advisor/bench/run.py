"""``advisor bench``: measure every estimator against fine-tuned ground truth, model × target.

Why: an estimator is only worth its default slot in ``advisor rank`` if it orders models the way
fine-tuning does, on targets it was not tuned on. This module produces the evidence, in units of
work called *runs*, each keyed by a content hash of everything that determines its numbers:

1. **Fine-tunes** (ground truth) per (model, target), with the validation machinery
   (:mod:`advisor.validation.finetune`): a full fine-tune (cut ``pre_logits``, nothing frozen; the schedule of
   Plested & Gedeon 2019) for every setting of the grid (BatchNorm mode × backbone lr) × every seed. The
   target's own ``train``/``test`` splits are used when present (otherwise
   :func:`advisor.data.splits.train_val_split`'s stratified hold-out is the test part); a stratified, seeded
   ``val_fraction`` of the training pool is carved out to choose the setting (by mean validation accuracy
   over seeds), and the test accuracy there (mean ± std over seeds) is the model's ground truth. The test
   part never influences a choice. BatchNorm statistics updated from batches of 32 small images hurt some
   models (the EfficientNet-Lites) and frozen ones hurt others (MobileNetV2), so the mode is chosen like the lr.
2. **Defrost runs** per (model, target): the layer-wise defrosting protocol of Gerace et al. 2023
   (frozen pretrained prefix up to a cut, the rest re-initialised and trained) at a few cuts spread
   over the default range (``defrost_cuts``), one seed; the cut with the best *validation* accuracy
   is what a freeze-depth recommendation should hit.
3. **Linear probe** per (model, target): a logistic regression on the frozen ``pre_logits`` features
   of the training part, scored on the test part. A fine-tune that ends below it was under-trained
   (too few epochs, a bad lr) and is flagged in the report: not evidence about the model.
4. **Scores**: :func:`advisor.ranking.ranking.rank` with every registered estimator on the training part
   (capped like the runs), at every cut, in the parent process.

**Input size.** ``img_size`` caps every model's input: a model gets ``min(its own size, img_size)``
(a cap never enlarges an image, and models with a fixed input size keep theirs). Compute scales with
the pixel count, so 128 px costs about a quarter of 240 px.

**Where results live.** Each finished run is written by the parent process only, (a) appended as one
line to a CSV (``benchmarks/bench_runs.csv`` by default: write, flush, fsync; a torn last line is
ignored when read) that is committed to git, and (b) stored in DuckDB's ``bench_runs`` in its own
transaction. A benchmark on a fresh machine imports the CSV first and skips those runs: the run keys
are content hashes (weights bytes, image bytes, labels, protocol), not paths. ``--workers N`` runs
independent runs in N processes, each with ``cores // N`` torch threads; workers never open the cache.
Each finished (model, target) is one ``bench_cells`` row (its evidence as JSON) from which
``advisor bench --report-only`` rebuilds the report without any computation. ``--plan`` counts the
runs and times a few SGD steps per model to estimate the wall time, training nothing.
The pieces: :mod:`~advisor.bench.config` (settings), :mod:`~advisor.bench.identity` (content keys),
:mod:`~advisor.bench.jobs` (runs), :mod:`~advisor.bench.units` (CSV + DuckDB records), :mod:`~advisor.bench.plan`
(``--plan``), this module (the benchmark and its evidence cells), :mod:`~advisor.bench.ground_truth`, :mod:`~advisor.bench.metrics`
and :mod:`~advisor.bench.report`; the splits are :func:`advisor.data.splits.target_parts`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path

from advisor.bench.config import RUNS_CSV, SCORES_CSV, Config, Settings, model_name, target_name
from advisor.bench.identity import part_identity, score_key
from advisor.bench.ground_truth import summarise_runs
from advisor.bench.jobs import execute
from advisor.bench.plan import CellPlan, Plan, make_plan
from advisor.bench.units import append_run, append_score, import_runs, read_scores, repair_tail, store_run, typed_record
from advisor.errors import AdvisorError
from advisor.store.artifacts import dumps
from advisor.store.runs import BENCH_CELLS


def run_batchnorm(rec: dict) -> str:
    """A fine-tune record's BatchNorm mode (its protocol leaves out the default, "train")."""
    return (rec.get("protocol") or {}).get("batchnorm", "train")


def _log_record(rec: dict, log) -> None:
    if rec["kind"] == "finetune":
        bn = run_batchnorm(rec)
        what = f"fine-tune lr {rec['lr_backbone']:g} seed {rec['seed']}" + ("" if bn == "train" else f", BatchNorm {bn}")
    else:
        what = f"defrost @ {rec['cut']} seed {rec['seed']}" if rec["kind"] == "defrost" else "linear probe"
    if rec["status"] == "done":
        loss = f", train loss {rec['final_train_loss']:.3f}" if rec.get("final_train_loss") is not None else ""
        log(f"{rec['model']} on {rec['target']}: {what}: val {rec['val_acc']:.3f}, test {rec['test_acc']:.3f}{loss} ({rec['seconds']:.1f} s)")
    else:
        log(f"{rec['model']} on {rec['target']}: {what}: {rec['status']} ({rec['reason']})")


def _scores(plan: Plan, log, scores_csv: str | Path | None = None, stop: threading.Event | None = None) -> dict:
    """``advisor.rank`` of every model on every target's score part, each model at its benchmark
    input size (its own or the cap): {(target, model): {"cuts", "scores", "n_score", "n_classes", "extract_seconds"}}.
    A pair already in ``scores_csv`` is read from it; a new one is appended to it as it is scored. Once
    ``stop`` is set, returns before the next model (what it returns then is incomplete)."""
    from advisor.ranking.ranking import rank

    s = plan.cfg.settings
    known = read_scores(scores_csv) if scores_csv is not None else {}
    out = {}
    for t, parts in plan.parts.items():
        t0 = time.perf_counter()
        part_key = part_identity(parts.score, t)
        reused = 0
        for m in plan.cfg.models:
            if stop is not None and stop.is_set():
                return out
            info = plan.infos[m]
            key = score_key(info, part_key, tuple(s.estimators))
            if key in known:
                out[(t, m)] = known[key]
                reused += 1
                continue
            ranked = rank(parts.score, [m], list(s.estimators), img_size=info.img_override, weights_dir=plan.cfg.weights_dir,
                          command="bench-scores")
            mf = ranked.models[0]
            hib = {r["estimator"]: r["higher_is_better"] for r in ranked.rows}
            by = {(r["estimator"], r["cut"]): r for r in ranked.cut_scores}
            scores = {}
            for est in s.estimators:
                rows = [by[(est, c)] for c in mf.cuts]
                errors = sorted({r["error"] for r in rows if r["error"]})
                scores[est] = {"cuts": [r["score"] for r in rows], "higher_is_better": hib[est],
                               "seconds": float(sum(r["seconds"] for r in rows)), "error": "; ".join(errors) or None}
            out[(t, m)] = {"cuts": list(mf.cuts), "scores": scores, "n_score": len(ranked.probe),
                           "n_classes": ranked.probe.num_classes, "extract_seconds": mf.extract_seconds}
            if scores_csv is not None:
                append_score(scores_csv, key, target_name(t), model_name(m), out[(t, m)])
        log(f"{target_name(t)}: scores of {len(s.estimators)} estimators x {len(plan.cfg.models)} models ({time.perf_counter() - t0:.1f} s"
            + (f"; {reused} from {scores_csv}" if reused else "") + ")")
    return out


def _cell(cp: CellPlan, recs: dict[str, dict], sc: dict, s: Settings) -> dict:
    runs = [{"lr": j.lr, "seed": j.seed, "batchnorm": j.batchnorm, **recs[j.key]} for j in cp.jobs if j.kind == "finetune"]
    probe = next(recs[j.key] for j in cp.jobs if j.kind == "probe")
    defrost = {}
    for j in cp.jobs:
        if j.kind == "defrost":
            r = recs[j.key]
            defrost[j.cut] = {"val_acc": r["val_acc"], "test_acc": r["test_acc"], "status": r["status"], "final_train_loss": r["final_train_loss"]}
    ok = {c: v for c, v in defrost.items() if v["status"] == "done" and v["val_acc"] is not None}
    best = None
    if ok:
        top = max(v["val_acc"] for v in ok.values())
        best = [c for c in ok if ok[c]["val_acc"] == top][-1]  # ties go to the deepest cut, as advisor validate
    p, info = cp.parts, cp.info
    return {
        "model": info.model_id, "model_name": model_name(info.model_id), "target": p.spec, "target_name": target_name(p.spec),
        "split": p.note, "n_train": len(p.train), "n_val": len(p.val), "n_test": len(p.test),
        "n_score": sc["n_score"], "n_classes": sc["n_classes"], "cuts": sc["cuts"], "input_size": info.input_size[-1],
        "ground_truth": summarise_runs(runs, s.grid(), s.head_lr_factor),
        "probe": {"test_acc": probe["test_acc"], "val_acc": probe["val_acc"], "status": probe["status"]},
        "defrost": {"profile": {c: [v["val_acc"], v["test_acc"]] for c, v in defrost.items()}, "best_cut": best},
        "scores": sc["scores"], "extract_seconds": sc["extract_seconds"],
        "runs": [{"run_key": j.key, "kind": recs[j.key]["kind"], "lr": j.lr, "batchnorm": j.batchnorm, "cut": j.cut, "seed": j.seed,
                  "status": recs[j.key]["status"],
                  "val_acc": recs[j.key]["val_acc"], "test_acc": recs[j.key]["test_acc"],
                  "final_train_loss": recs[j.key]["final_train_loss"], "seconds": recs[j.key]["seconds"]} for j in cp.jobs],
    }


def _cell_key(s: Settings, model_id: str, target: str) -> str:
    return hashlib.sha256(json.dumps([s.key(), model_id, str(Path(target).resolve())]).encode()).hexdigest()[:24]


def _store_cells(cells: list[dict], s: Settings) -> None:
    BENCH_CELLS.store(*({"cell_key": _cell_key(s, c["model"], c["target"]), "settings_hash": s.key(), "model_id": c["model"],
                         "target": c["target"], "payload": dumps(c)} for c in cells))


def load_cells(cfg: Config) -> list[dict]:
    """The stored evidence of every (model, target) of ``cfg`` under its settings; an error naming
    what is missing otherwise (``--report-only`` computes nothing)."""
    want = [(t, m) for t in cfg.targets for m in cfg.models]
    got = {k: v[0] for k, v in BENCH_CELLS.finished([_cell_key(cfg.settings, m, t) for t, m in want], ("payload",)).items()}
    missing = [(t, m) for t, m in want if _cell_key(cfg.settings, m, t) not in got]
    if missing:
        t, m = missing[0]
        raise AdvisorError(f"--report-only: {len(missing)} of {len(want)} (model, target) pairs are not in the cache under these settings, "
                           f"e.g. {model_name(m)} on {target_name(t)}", ("run `advisor bench` with the same options without --report-only: it imports the runs and scores "
                            "CSVs first and computes only what they lack"))
    return [json.loads(got[_cell_key(cfg.settings, m, t)]) for t, m in want]


def bench(cfg: Config, *, report_only: bool = False, device: str | None = None, workers: int = 1,
          runs_csv: str | Path | None = RUNS_CSV, log=lambda m: None, executor=None) -> list[dict]:
    """All evidence cells of ``cfg``: computed (finished runs reused) or, with ``report_only``, read back.

    Order: import the runs CSV into the cache; plan every run (models built once, no training);
    score every model on every target (a thread of this process) while the runs not done yet go to
    ``workers`` processes (or, with ``executor``, Ray tasks), each record stored as it arrives (CSV line, then
    its DuckDB transaction); assemble and store one evidence cell per (model, target)."""
    if report_only:
        return load_cells(cfg)
    from advisor.validation.validate import pick_device

    dev = pick_device(device)
    if runs_csv is not None:
        for path in (Path(runs_csv), Path(runs_csv).with_name(SCORES_CSV.name)):
            cut = repair_tail(path)
            if cut:
                log(f"{path}: dropped a torn last line ({cut} bytes) left by an interrupted write")
        n, in_csv = import_runs(runs_csv)
        if n:
            log(f"imported {n} finished run(s) from {runs_csv} that the cache lacked")
    plan = make_plan(cfg, dev, log)
    if runs_csv is not None:  # the CSV is the portable record: runs this cache has and it lacks go into it too
        missing = [rec for key, rec in plan.done.items() if key not in in_csv]
        for rec in missing:
            append_run(runs_csv, rec)
        if missing:
            log(f"{runs_csv}: added {len(missing)} finished run(s) found in the cache")
    for t, p in plan.parts.items():
        log(f"{target_name(t)}: {p.note}")
    # Scoring (this process) overlaps the runs (worker processes): the cores are busy from the start.
    scored: dict = {}
    stop = threading.Event()

    def score() -> None:
        try:
            scored["scores"] = _scores(plan, log, None if runs_csv is None else Path(runs_csv).with_name(SCORES_CSV.name), stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            scored["error"] = exc

    scorer = threading.Thread(target=score, name="bench-scores")
    scorer.start()
    try:
        recs = _run_jobs(plan, workers, executor, runs_csv, log)
    except BaseException:
        # an error or Ctrl-C: the scorer stops before its next model and is joined, never left inside torch
        # while the interpreter exits (that aborts the process)
        stop.set()
        if scorer.is_alive():
            log("stopping: the scoring thread finishes the model it is on first")
        scorer.join()
        raise
    scorer.join()
    if "error" in scored:
        raise scored["error"]
    scores = scored["scores"]
    s = cfg.settings
    cells = [_cell(cp, recs, scores[(cp.parts.spec, cp.info.model_id)], s) for cp in plan.cells]
    _store_cells(cells, s)
    return cells


def _run_jobs(plan: Plan, workers: int, executor, runs_csv, log) -> dict[str, dict]:
    """Every run's record by key: the finished ones from the plan, the rest run now (each stored as it
    arrives: its CSV line, then its DuckDB transaction)."""
    recs = dict(plan.done)
    todo = [j for j in plan.jobs if j.key not in recs]
    for cp in plan.cells:
        if not any(j.key not in recs for j in cp.jobs):
            log(f"{model_name(cp.info.model_id)} on {target_name(cp.parts.spec)}: all {len(cp.jobs)} runs cached")
    if todo:
        log(f"{len(todo)} runs to do ({len(plan.jobs) - len(todo)} of {len(plan.jobs)} cached), "
            + ("one Ray task each" if executor is not None else f"{workers} worker(s)"))
    for rec in execute(todo, workers, executor, log):
        if runs_csv is not None:
            append_run(runs_csv, rec)  # first: a crash before the DuckDB commit still leaves the portable record
        store_run(rec)
        recs[rec["run_key"]] = typed_record(rec)
        _log_record(rec, log)
    return recs
