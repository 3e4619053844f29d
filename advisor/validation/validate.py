"""``advisor validate``: measure what the estimators predict with short fine-tunes.
Size: ~315 lines; validate() and its per-model loop (cache, device, seeds, the closing of the loop) are one unit.

For each model and cut, :mod:`advisor.validation.finetune` trains what lies after the frozen prefix on the
probe's training part and measures accuracy on its held-out part; repeats use seeds ``seed, seed+1,
...``. Every finished run is one row of ``validation_runs`` in the DuckDB cache, written in its own
transaction when the run ends, keyed by everything that determines it (model fingerprint, the two
probe hashes, cut, protocol and hyperparameters, seed): an interrupted validation loses at most the
run in progress, and a rerun skips finished runs. Then the loop is closed: each estimator's weighted
Kendall τ (``scipy.stats.weightedtau``) between its scores and the measured accuracies, across
models and across the cuts of each model, printed and stored in ``estimator_agreement``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from advisor.data.probe import Probe
from advisor.data.splits import train_val_split
from advisor.errors import AdvisorError
from advisor.models.sources import ResolveContext, resolve_model
from advisor.ranking.decoding import MIN_IMAGES
from advisor.ranking.features import PRE_LOGITS
from advisor.store.artifacts import dumps
from advisor.store.runs import VALIDATION_RUNS, finished_commands
from advisor.validation.agreement import close_the_loop, too_small_note
from advisor.validation.finetune import RECIPE_VERSION
from advisor.validation.result import ValidationResult, ValidationRow


def top_models_from_last_rank(spec: str, k: int) -> list[tuple[str, str | None]]:
    """``[(model, best cut)]`` of the ``k`` best models of the latest finished ``advisor rank`` on
    ``spec`` (by its first estimator), from the cache."""
    if k < 1:
        raise AdvisorError(f"--top must be at least 1, got {k}", "e.g. --top 3")
    want = str(Path(spec).expanduser().resolve()) if not spec.startswith("builtin:") else spec
    for a, rows in finished_commands("rank"):
        src = a.get("probe", "")
        src = src if src.startswith("builtin:") else str(Path(src).expanduser().resolve())
        if src != want:
            continue
        primary = a["estimators"][0]
        ranked = sorted((r for r in rows if r["estimator"] == primary and r["rank"]), key=lambda r: r["rank"])
        return [(r["model"], r["cut"]) for r in ranked[:k]]
    raise AdvisorError(f"no finished `advisor rank` on '{spec}' in the cache",
                       f"run `advisor rank {spec}` first, or name the models with --models")


def default_cuts(module, names: list[str]) -> list[str]:
    """Gerace et al. 2023's suggestion: cuts from after the first down-sampling to the last (``pre_logits``).
    "After the first down-sampling" = the first cut whose reduction exceeds the smallest one."""
    info = getattr(module, "feature_info", None)
    reductions = [fi.get("reduction", 1) if isinstance(fi, dict) else 1 for fi in (info or [])]
    if not reductions:
        return [PRE_LOGITS]
    lowest = min(reductions)
    start = next((i for i, r in enumerate(reductions) if r > lowest), len(reductions) - 1)
    return names[start:-1] + [PRE_LOGITS]


def run_key(model_fp: str, train: Probe, val: Probe, cut: str, protocol, seed: int) -> str:
    payload = json.dumps([RECIPE_VERSION, model_fp, train.hash, val.hash, cut, protocol.as_dict(), seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def pick_device(device: str | None = None) -> str:
    import torch

    if device:
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
            raise AdvisorError(f"--device '{device}' is not a device advisor trains on", "use cpu, cuda or cuda:N (or omit it)")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise AdvisorError(f"--device {device}, but no CUDA GPU is available", "omit --device to use the CPU")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def validate(
    spec: str,
    models: list[str] | None = None,
    *,
    top: int | None = None,
    cuts: list[str] | None = None,
    protocol: str = "defrost",
    epochs: int = 10,
    lr: float | None = None,
    freeze: str | None = None,
    repeats: int = 1,
    seed: int = 0,
    max_images: int | None = None,
    batch_size: int = 32,
    estimators: list[str] | None = None,
    weights_dir: str | Path | None = None,
    offline: bool | None = None,
    device: str | None = None,
    log=lambda msg: None,
    warn=None,
    progress=None,
    executor=None,
) -> ValidationResult:
    """Validate ``models`` (or the ``top`` picks of the last ``rank``) at ``cuts`` on ``spec``.

    ``log(msg)`` gets progress lines, ``warn(msg)`` warnings (default: ``log("warning: ...")``); the
    warnings are also kept in the result's ``warnings``. ``progress`` (an :class:`advisor.ranking.progress.Progress`)
    is told where each model's weights were found and follows the fine-tunes (one step per run).
    ``executor``: a started :class:`advisor.scale.executor.RayExecutor` runs each uncached run as a Ray
    task (a GPU each when the cluster has GPUs and ``device`` is cuda); this process stores them."""
    from advisor.validation import finetune as ft
    from advisor.data.small_samples import held_out_note, taken_note, top_note

    notes: list[str] = []
    pending: list[str] = []  # warned once every input is checked: a bad input stays one error line

    def _warn(msg: str) -> None:
        notes.append(msg)
        (warn or (lambda m: log(f"warning: {m}")))(msg)

    if protocol not in ("defrost", "finetune"):
        raise AdvisorError(f"unknown protocol '{protocol}'", "use --protocol defrost or --protocol finetune")
    for flag, value, least in (("--repeats", repeats, 1), ("--epochs", epochs, 1), ("--batch-size", batch_size, 2)):
        if value < least:
            raise AdvisorError(f"{flag} must be at least {least}, got {value}", "e.g. --repeats 2 --epochs 10 --batch-size 32")
    if lr is not None and not (lr > 0 and math.isfinite(lr)):
        raise AdvisorError(f"--lr must be a positive finite number, got {lr}", "e.g. --lr 0.01")
    if protocol == "defrost" and freeze:
        raise AdvisorError("--freeze applies to --protocol finetune", "defrost freezes exactly up to the cut; drop --freeze")
    if models and top:
        raise AdvisorError("--models and --top both given", "pass --models a,b to validate those, or --top K for the best K of the last rank")
    if not models and not top:
        raise AdvisorError("nothing to validate", "pass --models a,b or --top K (the best K of the last `advisor rank` on this probe)")
    picks = [(m, None) for m in models] if models else top_models_from_last_rank(spec, top)
    if top and (note := top_note(top, len(picks), spec)):
        pending.append(note)
    ctx = ResolveContext(weights_dir=Path(weights_dir).expanduser() if weights_dir else None, offline=offline)
    resolved = {m: resolve_model(m, ctx) for m, _ in picks}  # fail fast on a typo, before any work
    if progress is None:
        from advisor.ranking.progress import Progress

        progress = Progress()
    for m, r in resolved.items():
        progress.resolved(m, r)
    progress.plan([m for m, _ in picks])
    train, val, split_note = train_val_split(spec, max_images=max_images, seed=seed)
    _check_estimators(estimators)
    pending += [n for n in (taken_note(max_images, train), held_out_note(val)) if n]
    if len(train) < MIN_IMAGES:  # say so before training: the measurements are still made and printed
        log(f"note: {too_small_note(train)}")
    dev = pick_device(device)
    per_class = len(train) / max(train.num_classes, 1)
    proto = ft.defrost(epochs=epochs, lr=lr or 0.1, batch_size=batch_size) if protocol == "defrost" else \
        replace(ft.finetune(per_class, epochs=epochs, freeze=freeze, batch_size=batch_size), **({"lr": lr} if lr else {}))
    # Build every model and check its cuts and split before any training: bad input fails fast.
    prepared = {m: prepare_model(m, resolved[m], cuts, proto, best_cut) for m, best_cut in picks}
    for note in pending:
        _warn(note)
    log(f"probe: {split_note}; protocol {proto.name} {proto.as_dict()}; device {dev}")
    from advisor.store.repro import finish_run, start_run, versions, weights_record

    run_id = start_run("validate", {"probe": spec, "train_hash": train.hash, "val_hash": val.hash, "models": [m for m, _ in picks],
                                    "top": top, "cuts": cuts, "protocol": proto.name, "hyperparams": proto.as_dict(),
                                    "repeats": repeats, "seed": seed, "max_images": max_images, "estimators": estimators, "device": dev})
    try:
        rows: list[ValidationRow] = []
        for model_id, _best_cut in picks:
            rows += _validate_model(model_id, resolved[model_id], *prepared[model_id], train, val, proto, repeats, seed, dev, log,
                                    progress=progress, executor=executor)
        agreement = close_the_loop(spec, train, rows, estimators, ctx, log, _warn, progress=progress)
        weights = {m: weights_record(resolved[m]) for m, _ in picks}
        result = ValidationResult(rows, train, val, split_note, agreement, dev, notes, versions(), weights, run_id)
    except BaseException as exc:
        finish_run(run_id, error=exc)
        raise
    finish_run(run_id, {"profiles": {m: result.profile(m) for m, _ in picks}, "best": {m: result.best_range(m) for m, _ in picks},
                        "agreement": agreement, "warnings": notes}, weights)
    return result


def prepare_model(model_id, resolved, cuts, proto, ranked_cut: str | None = None):
    """(loaded model, its stages, the cuts to validate), or a one-line error. Without ``cuts``, the
    default range plus the cut the last ``rank`` picked for this model (``ranked_cut``)."""
    import torch

    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.validation.stages import stages

    loaded = build_model(resolved)
    module = loaded.module
    names = cut_names(module)
    wanted = cuts or default_cuts(module, names)
    if not cuts and ranked_cut in names and ranked_cut not in wanted:
        wanted = [c for c in names if c in wanted or c == ranked_cut]
    bad = [c for c in wanted if c not in names]
    if bad:
        raise AdvisorError(f"{model_id} has no cut {', '.join(bad)}", f"use cuts from: {', '.join(names)}")
    if proto.freeze and proto.freeze not in names:
        raise AdvisorError(f"{model_id} has no cut '{proto.freeze}' to freeze up to", f"use one of: {', '.join(names)}")
    st = stages(module, torch.randn(2, *loaded.data_config["input_size"]))
    return loaded, st, wanted


def preprocess_all(loaded, probe: Probe, what: str, needed_by: str):
    """Every image of ``probe`` decoded and preprocessed for ``loaded``: ``float[N, 3, H, W]``. Training
    needs every image, so an unreadable one is a one-line error naming ``what`` and ``needed_by``."""
    import torch

    from advisor.ranking.features import probe_batches
    from advisor.data.probe import decode_all

    images, unreadable = decode_all(probe)
    if unreadable:
        raise AdvisorError(f"{len(unreadable)} unreadable image(s) in {what}, e.g. {next(iter(unreadable.values()))}",
                           f"remove or fix them; {needed_by} needs every image")
    return torch.cat(list(probe_batches(loaded, probe, batch_size=64, images=images)))


def _validate_model(model_id, resolved, loaded, st, wanted, train, val, proto, repeats, seed, dev, log, progress=None,
                    executor=None) -> list[ValidationRow]:
    keys = {(c, seed + r): run_key(resolved.fingerprint, train, val, c, proto, seed + r) for c in wanted for r in range(repeats)}
    done = VALIDATION_RUNS.finished(list(keys.values()), _CACHED_FIELDS)
    rows = [_row_from_cache(model_id, c, s, done[k]) for (c, s), k in keys.items() if k in done]
    todo = [(c, s) for (c, s), k in keys.items() if k not in done]
    if not todo:
        log(f"{model_id}: all {len(keys)} runs cached")
        return _ordered(rows, wanted)
    if executor is not None:  # one Ray task per run; this process stores each as it finishes
        from advisor.scale.validate import validate_on_ray

        return _ordered(rows + validate_on_ray(executor, model_id, resolved, todo, keys, train, val, proto, dev, log, progress), wanted)
    step = f"{model_id} (fine-tunes)"
    if progress is not None:
        progress.start_model(step, len(todo))
    for (c, s), res, prefix_s in train_runs(loaded, st, resolved, todo, train, val, proto, dev):
        store_run(keys[(c, s)], model_id, resolved, train, val, c, proto, s, res, prefix_s, dev)
        log(f"{model_id} @ {c} seed {s}: {res.status}" + (f", val acc {res.val_acc:.3f} ({res.seconds:.1f} s)" if res.val_acc is not None else f": {res.reason}"))
        rows.append(ValidationRow(model_id, c, proto.name, s, res.status, res.val_acc, res.best_val_acc, res.seconds,
                                  res.tfb_mean, res.reason, False, res.history))
        if progress is not None:
            progress.advance(1)
    if progress is not None:
        progress.end_model(step, False)
    return _ordered(rows, wanted)


def train_runs(loaded, st, resolved, todo: list[tuple[str, int]], train: Probe, val: Probe, proto, dev: str):
    """Train every ``(cut, seed)`` of ``todo`` on ``loaded`` (its stages ``st``), each from the pretrained
    weights θ_a; yields ``((cut, seed), RunResult, prefix seconds)`` as each finishes. The frozen prefix's
    activations are computed once per cut and shared by that cut's seeds; a fine-tune also gets θ_r, the
    random init under its own seed (Chen et al. 2022). Touches no cache; the model ends at θ_a again."""
    import torch

    from advisor.validation import finetune as ft

    module = loaded.module
    module.reset_classifier(train.num_classes)
    x = {part: preprocess_all(loaded, p, f"the {part} split", "validation") for part, p in (("train", train), ("val", val))}
    y = {"train": torch.as_tensor(train.labels), "val": torch.as_tensor(val.labels)}
    theta_a = {k: v.detach().clone() for k, v in module.state_dict().items()}
    theta_r = {}
    try:
        for cut in dict.fromkeys(c for c, _ in todo):
            frozen = proto.freeze if proto.name == "finetune" else cut
            t0 = time.perf_counter()
            module.load_state_dict(theta_a)
            h = {part: (ft.prefix_activations(st, x[part], frozen) if frozen else x[part]) for part in x}
            prefix_s = time.perf_counter() - t0
            for c, s in [t for t in todo if t[0] == cut]:
                if proto.name == "finetune" and s not in theta_r:
                    theta_r[s] = random_init(resolved, train.num_classes, s)
                module.load_state_dict(theta_a)
                res = ft.train(st, cut, proto, h["train"], y["train"], h["val"], y["val"], seed=s,
                               theta_a=theta_a, theta_r=theta_r.get(s), device=dev)
                yield (c, s), res, prefix_s
    finally:
        module.load_state_dict(theta_a)


def train_run(model_id, resolved, cut, seed, train, val, proto, dev):
    """One validation run from scratch (build, then :func:`train_runs`): what a Ray task does
    (:mod:`advisor.scale.validate`). Returns ``(RunResult, prefix seconds)``; touches no cache."""
    loaded, st, _ = prepare_model(model_id, resolved, [cut], proto)
    (_, res, prefix_s), = train_runs(loaded, st, resolved, [(cut, seed)], train, val, proto, dev)
    return res, prefix_s


def _ordered(rows, cuts):
    return sorted(rows, key=lambda r: (cuts.index(r.cut), r.seed))


def random_init(resolved, num_classes: int, seed: int) -> dict:
    """θ_r of Chen et al. 2022: the architecture's own random initialisation under ``seed``."""
    import timm
    import torch

    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in resolved.kwargs.items() if k != "num_classes"}
    m = timm.create_model(resolved.arch, pretrained=False, num_classes=num_classes, **kwargs)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


_CACHED_FIELDS = ("status", "val_acc", "best_val_acc", "seconds", "tfb_mean", "reason", "history")


def _row_from_cache(model_id, cut, seed, rec) -> ValidationRow:
    status, val_acc, best, seconds, tfb, reason, history = rec
    return ValidationRow(model_id, cut, "", seed, status, val_acc, best, seconds, tfb, reason or "", True, json.loads(history or "[]"))


def store_run(key, model_id, resolved, train, val, cut, proto, seed, res, prefix_s, dev) -> None:
    VALIDATION_RUNS.store({
        "run_key": key, "model_id": model_id, "model_fp": resolved.fingerprint, "probe": train.spec, "train_hash": train.hash,
        "val_hash": val.hash, "cut": cut, "protocol": proto.name, "hyperparams": dumps(proto.as_dict()), "seed": seed,
        "status": res.status, "reason": res.reason, "epochs": len(res.history), "history": dumps(res.history),
        "val_acc": res.val_acc, "best_val_acc": res.best_val_acc, "seconds": res.seconds, "prefix_seconds": prefix_s,
        "device": dev, "tfb_layers": dumps(_json_safe(res.tfb_layers)), "tfb_mean": res.tfb_mean, "tfb_note": res.tfb_note})


def _json_safe(d):
    if d is None:
        return None
    return {k: (None if v is None else (str(v) if not np.isfinite(v) else v)) for k, v in d.items()}


def _check_estimators(estimators) -> None:
    """Unknown estimator names fail before any training, not after it."""
    from advisor.estimators import get_estimator

    for name in estimators or ():
        get_estimator(name)
