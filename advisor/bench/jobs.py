"""``advisor bench``'s runs (jobs): every run of a (model, target) with its content-hash key
(:func:`cell_jobs`), and running them (:func:`run_job` in any process, :func:`execute` in this one or
in worker processes). A job touches no cache: only the parent stores what :func:`execute` yields."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from advisor.bench.config import BENCH_VERSION, DEFROST_LR, PROBE_RECIPE, Settings, model_name, target_name
from advisor.bench.identity import ModelInfo
from advisor.data.splits import TargetParts, target_parts
from advisor.errors import AdvisorError
from advisor.models.sources import ResolveContext, resolve_model
from advisor.ranking.features import PRE_LOGITS
from advisor.scale.executor import cpu_cores


def split_target(spec: str, s: Settings) -> TargetParts:
    """The benchmark's parts of ``spec`` (:func:`advisor.data.splits.target_parts`) under ``s``: split
    with the first seed, the training part capped at ``max_train``, ``val_fraction`` for lr selection."""
    return target_parts(spec, seed=s.seeds[0], max_train=s.max_train, val_fraction=s.val_fraction)


@dataclass(frozen=True)
class Job:
    """One run, everything a worker process needs (picklable; no cache access needed)."""

    key: str
    kind: str  # "finetune" | "defrost" | "probe"
    model_id: str
    target: str
    weights_dir: str | None
    settings: Settings
    img_override: int | None
    input_size: tuple[int, int, int]
    model_key: str
    part_keys: tuple[str, str, str]  # train, val, test (content hashes)
    protocol: dict
    lr: float | None = None
    cut: str | None = None
    seed: int | None = None
    batchnorm: str | None = None  # fine-tunes: the BatchNorm mode of the grid this run tries
    device: str = "cpu"


def protocol(backbone_lr: float, s: Settings, per_class: float, batchnorm: str | None = None):
    """Plested & Gedeon 2019's full fine-tune (nothing frozen): backbone at ``backbone_lr``, head at factor × that;
    the head starts at random or (``s.head_init == "probe"``, LP-FT, Kumar et al. 2022) as the linear probe;
    BatchNorm statistics ``batchnorm`` (default: the first setting of ``s.grid()``)."""
    from advisor.validation import finetune as ft

    return replace(ft.finetune(per_class, epochs=s.epochs, freeze=None, batch_size=s.batch_size),
                   lr=backbone_lr * s.head_lr_factor, lr_transferred=backbone_lr, head_init=s.head_init,
                   batchnorm=batchnorm or s.grid()[0][0])


def run_key(kind: str, model_key: str, part_keys, payload: dict) -> str:
    from advisor.validation.finetune import RECIPE_VERSION

    blob = json.dumps([BENCH_VERSION, RECIPE_VERSION, kind, model_key, list(part_keys), payload], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cell_jobs(info: ModelInfo, parts: TargetParts, s: Settings, part_keys, weights_dir, device: str) -> list[Job]:
    """Every run of one (model, target): its linear probe, the fine-tunes (``s.grid()`` × seed) and
    the defrost runs (cut × ``defrost_seed``), in that order."""
    from advisor.validation import finetune as ft

    per_class = len(parts.train) / max(parts.train.num_classes, 1)
    common = dict(model_id=info.model_id, target=parts.spec, weights_dir=str(weights_dir) if weights_dir else None, settings=s,
                  img_override=info.img_override, input_size=info.input_size, model_key=info.identity,
                  part_keys=tuple(part_keys), device=device)
    size = list(info.input_size)
    jobs = [Job(run_key("probe", info.identity, part_keys, {"recipe": PROBE_RECIPE, "input_size": size}), "probe",
                protocol={"recipe": PROBE_RECIPE}, seed=0, **common)]
    for mode, lr in s.grid():
        proto = protocol(lr, s, per_class, mode).as_dict()
        for seed in s.seeds:
            key = run_key("finetune", info.identity, part_keys, {"protocol": proto, "seed": seed, "input_size": size})
            jobs.append(Job(key, "finetune", protocol=proto, lr=lr, seed=seed, batchnorm=mode, **common))
    dproto = ft.defrost(epochs=s.epochs, lr=DEFROST_LR, batch_size=s.batch_size).as_dict()
    for cut in info.defrost_cuts:
        key = run_key("defrost", info.identity, part_keys, {"protocol": dproto, "cut": cut, "seed": s.defrost_seed, "input_size": size})
        jobs.append(Job(key, "defrost", protocol=dproto, cut=cut, seed=s.defrost_seed, **common))
    return jobs


# ---------------------------------------------------------------- running one job (any process)

_PREPARED: dict = {}  # the (model, target) this process prepared last: model, stages, tensors


def clear_prepared() -> None:
    """Forget this process's prepared cell (timing the in-process runner as a fresh worker would run)."""
    _PREPARED.clear()


def _prepared(job: Job) -> dict:
    import torch

    from advisor.models.loading import build_model
    from advisor.validation.stages import stages

    k = (job.model_id, job.target, job.weights_dir, job.img_override, job.settings.key())
    if _PREPARED.get("key") == k:
        return _PREPARED
    _PREPARED.clear()  # one prepared cell per process: free the last one's tensors first
    ctx = ResolveContext(weights_dir=Path(job.weights_dir) if job.weights_dir else None)
    resolved = resolve_model(job.model_id, ctx)
    parts = split_target(job.target, job.settings)
    loaded = build_model(resolved, img_size=job.img_override)
    module = loaded.module
    module.reset_classifier(parts.train.num_classes)
    st = stages(module, torch.randn(2, *loaded.data_config["input_size"]))
    x = _tensors(loaded, parts)
    theta_a = {kk: v.detach().clone() for kk, v in module.state_dict().items()}
    _PREPARED.update(key=k, parts=parts, st=st, module=module, x=x, theta_a=theta_a)
    return _PREPARED


def _tensors(loaded, parts: TargetParts) -> dict:
    import torch

    from advisor.validation.validate import preprocess_all

    out = {}
    for name in ("train", "val", "test"):
        p = getattr(parts, name)
        out[name] = (preprocess_all(loaded, p, f"the {name} part of '{parts.spec}'", "the benchmark"), torch.as_tensor(p.labels))
    return out


def _pre_logits(module, x):
    import torch

    from advisor.ranking.features import micro_batches

    module.eval()
    with torch.inference_mode():
        return torch.cat([module.forward_head(module.forward_features(c), pre_logits=True).flatten(1) for c in micro_batches(x)]).float().numpy()


def _linear_probe(module, x) -> dict:
    from sklearn.metrics import log_loss

    from advisor.validation.linear_probe import fit_linear_probe

    start = time.perf_counter()
    f = {p: _pre_logits(module, x[p][0]) for p in ("train", "val", "test")}
    y = {p: x[p][1].numpy() for p in f}
    clf = fit_linear_probe(f["train"], y["train"])
    loss = float(log_loss(y["train"], clf.predict_proba(f["train"]), labels=clf.classes_))
    train_acc = float(clf.score(f["train"], y["train"]))
    return {"status": "done", "reason": "", "val_acc": float(clf.score(f["val"], y["val"])), "best_val_acc": None,
            "test_acc": float(clf.score(f["test"], y["test"])), "final_train_loss": loss, "final_train_acc": train_acc,
            "history": [{"loss": loss, "train_acc": train_acc}], "seconds": time.perf_counter() - start}


def _probe_head(c: dict, parts: TargetParts):
    """LP-FT's head for the prepared cell (fit once per process and cell: every lr and seed shares it),
    from the pretrained model's ``pre_logits`` on the training part."""
    if "probe_head" not in c:
        from advisor.validation.linear_probe import probe_head

        c["probe_head"] = probe_head(_pre_logits(c["module"], c["x"]["train"][0]), c["x"]["train"][1].numpy(),
                                     parts.train.num_classes)
    return c["probe_head"]


def run_job(job: Job) -> dict:
    """Run one job and return its record (:data:`RUN_COLUMNS`); touches no cache, writes nothing."""
    import torch

    from advisor.validation import finetune as ft

    c = _prepared(job)
    st, module, x, theta_a, parts = c["st"], c["module"], c["x"], c["theta_a"], c["parts"]
    module.to("cpu")
    module.load_state_dict(theta_a)  # every run starts from the pretrained weights
    if job.kind == "probe":
        out = _linear_probe(module, x)
    else:
        proto = ft.Protocol(**job.protocol)
        if job.kind == "finetune":
            t0 = time.perf_counter()
            head = _probe_head(c, parts) if proto.head_init == "probe" else None
            prefix_s = time.perf_counter() - t0
            res = ft.train(st, PRE_LOGITS, proto, *x["train"], *x["val"], seed=job.seed, device=job.device,
                           test_h=x["test"][0], test_y=x["test"][1], head=head)
        else:
            t0 = time.perf_counter()
            h = {p: ft.prefix_activations(st, x[p][0], job.cut) for p in x}
            prefix_s = time.perf_counter() - t0
            res = ft.train(st, job.cut, proto, h["train"], x["train"][1], h["val"], x["val"][1], seed=job.seed,
                           device=job.device, test_h=h["test"], test_y=x["test"][1])
            del h
        last = res.history[-1] if res.history else {}
        out = {"status": res.status, "reason": res.reason, "val_acc": res.val_acc, "best_val_acc": res.best_val_acc,
               "test_acc": res.test_acc, "final_train_loss": last.get("loss"), "final_train_acc": last.get("train_acc"),
               "history": res.history, "seconds": res.seconds + prefix_s}
    module.to("cpu")
    module.load_state_dict(theta_a)
    s = job.settings
    return {
        "run_key": job.key, "kind": job.kind, "model": model_name(job.model_id), "target": target_name(job.target),
        "lr_backbone": job.lr, "lr_head": None if job.lr is None else job.lr * s.head_lr_factor, "seed": job.seed,
        "cut": job.cut or (PRE_LOGITS if job.kind != "defrost" else None), "epochs": job.protocol.get("epochs"),
        "batch_size": job.protocol.get("batch_size"), "input_size": job.input_size[-1], "img_size_cap": s.img_size,
        "max_train": s.max_train, "val_fraction": s.val_fraction, "head_lr_factor": s.head_lr_factor,
        "n_train": len(parts.train), "n_val": len(parts.val), "n_test": len(parts.test),
        **{k: out[k] for k in ("status", "reason", "val_acc", "best_val_acc", "test_acc", "final_train_loss", "final_train_acc", "seconds")},
        "device": job.device, "threads": torch.get_num_threads(),
        "model_id": job.model_id, "model_key": job.model_key, "target_path": job.target,
        "train_key": job.part_keys[0], "val_key": job.part_keys[1], "test_key": job.part_keys[2],
        "protocol": job.protocol, "history": out["history"], "bench_version": BENCH_VERSION,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _init_worker(threads: int, parent: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["ADVISOR_THREADS"] = str(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent is gone (kill -9, a crash) exits within a second instead of finishing its run
    as an orphan that holds its memory: nobody is left to store the result."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def execute(jobs: list[Job], workers: int = 1, executor=None, log=lambda m: None) -> Iterator[dict]:
    """Records of ``jobs`` as they finish: in this process for ``workers == 1``, else in ``workers``
    spawned processes with ``cores // workers`` torch threads each, or (``executor``, a started
    :class:`advisor.scale.executor.RayExecutor`) one Ray task per job, a GPU each for cuda jobs when the
    cluster has GPUs. A Ray job that fails or is lost is logged and left out (a rerun tries it again).
    Only the caller stores results."""
    if executor is not None and jobs:
        from advisor.scale.executor import TaskLost

        gpus = 1 if any(j.device.startswith("cuda") for j in jobs) and executor.gpus >= 1 else 0
        for key, rec in executor.run(run_job, [(j.key, (j,)) for j in jobs], num_gpus=gpus):
            if isinstance(rec, TaskLost):
                log(f"run {key} failed on Ray, left for a rerun: {rec.reason}")
                continue
            yield rec
        return
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # The workers ignore Ctrl-C (SIGINT reaches the whole process group): this process stops them. They are
    # started while SIGINT is ignored here, which a new Python process keeps; a handler set in the
    # initializer would come too late for a Ctrl-C during their imports (tracebacks from every worker). The
    # window in which this process ignores Ctrl-C is the milliseconds of starting them, not their imports.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if threading.current_thread() is threading.main_thread() else None
    try:
        pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                                   initargs=(max(1, cpu_cores() // workers), os.getpid()))
        pending = {pool.submit(run_job, j) for j in jobs}  # starts the workers
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    try:
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    yield f.result()
                except BrokenProcessPool:
                    raise AdvisorError("a bench worker process died (killed, out of memory or a crash in native code)",
                                       "finished runs are saved; rerun to resume, with --workers 1 to see the failing run") from None
    finally:
        if pending:  # an error or Ctrl-C: the runs in progress are lost anyway; their workers stop now
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
        pool.shutdown(wait=not pending, cancel_futures=True)
