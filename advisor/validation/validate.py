"""``advisor validate``: measure what the estimators predict with short fine-tunes.

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
import math
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from advisor.store import cache
from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS
from advisor.models.models import ResolveContext, resolve_model
from advisor.data.probe import SPLIT_NAMES, Probe, load_probe, subsample_indices
from advisor.ranking.ranking import MIN_IMAGES

RECIPE_VERSION = "1"  # bump when training code changes the numbers: run keys include it
HELD_OUT_FRACTION = 0.3
HELD_OUT_SPLITS = ("val", "valid", "validation", "test")


@dataclass
class ValidationRow:
    model: str
    cut: str
    protocol: str
    seed: int
    status: str
    val_acc: float | None
    best_val_acc: float | None
    seconds: float
    tfb_mean: float | None
    reason: str = ""
    cached: bool = False
    history: list = field(default_factory=list)


@dataclass
class ValidationResult:
    rows: list[ValidationRow]
    train: Probe
    val: Probe
    split_note: str
    agreement: list[dict]  # {scope, estimator, n, weighted_tau}
    device: str
    warnings: list[str] = field(default_factory=list)  # small held-out part, τ over few models, --top short, ...
    versions: dict = field(default_factory=dict)  # advisor, timm, torch (advisor.store.repro)
    weights: dict = field(default_factory=dict)  # model id -> {weights_sha256, model_identity}
    run_id: str | None = None  # the row of the cache's runs table (`advisor runs`)

    def best_range(self, model: str) -> tuple[str, str, str] | None:
        """(best measured cut, shallower neighbour, deeper neighbour) among the sampled cuts: Gerace et al. 2023
        finds profiles regular enough that the optimum lies between the best sample's neighbours. Ties
        go to the deepest cut: the same accuracy with less to train (and small targets favour deeper
        freezing, Gerace et al. 2023; Plested & Gedeon 2019)."""
        prof = self.profile(model)
        if not prof:
            return None
        cuts = list(prof)
        i = cuts.index(best_cut(prof))
        return cuts[i], cuts[max(i - 1, 0)], cuts[min(i + 1, len(cuts) - 1)]

    def profile(self, model: str) -> dict[str, tuple[float, float, int]]:
        """``{cut: (mean, std, runs)}`` of final validation accuracy over finished repeats."""
        out = {}
        for cut in dict.fromkeys(r.cut for r in self.rows if r.model == model):
            accs = [r.val_acc for r in self.rows if r.model == model and r.cut == cut and r.status == "done"]
            if accs:
                out[cut] = (float(np.mean(accs)), float(np.std(accs)), len(accs))
        return out

    def cut_summaries(self):
        """Per (model, cut), in run order: ``(model, cut, is_best, mean, std, n, rows, tfb_mean)``:
        the profile entry (``mean``/``std`` None and ``n`` 0 when no repeat finished), whether it is the
        model's best measured cut, its rows, and the mean T_FB over them (None without one)."""
        for model in dict.fromkeys(r.model for r in self.rows):
            prof = self.profile(model)
            best = (self.best_range(model) or (None,))[0]
            for cut in dict.fromkeys(r.cut for r in self.rows if r.model == model):
                mine = [r for r in self.rows if r.model == model and r.cut == cut]
                mean, std, n = prof.get(cut, (None, None, 0))
                tfb = [r.tfb_mean for r in mine if r.tfb_mean is not None]
                yield model, cut, cut == best, mean, std, n, mine, (sum(tfb) / len(tfb) if tfb else None)


def best_cut(profile: dict[str, tuple]) -> str | None:
    """The cut with the highest mean accuracy in a ``{cut: (mean, ...)}`` profile (shallow to deep);
    ties go to the deepest: the same accuracy with less to train."""
    if not profile:
        return None
    top = max(v[0] for v in profile.values())
    return [c for c, v in profile.items() if v[0] == top][-1]


def train_val_split(spec: str, *, max_images: int | None = None, seed: int = 0) -> tuple[Probe, Probe, str]:
    """The probe's own train and held-out splits when it has them (ImageFolder ``train/`` +
    ``val|test/``, or ``.npz`` ``train_*`` + ``test_*`` arrays); otherwise a stratified, seeded
    ``HELD_OUT_FRACTION`` hold-out of the whole probe. ``max_images`` caps the training part."""
    held = _held_out_split_name(spec)
    if held:
        train = load_probe(spec, split="train", max_images=max_images, seed=seed)
        val = load_probe(spec, split=held, seed=seed)
        if train.class_names != val.class_names:
            raise AdvisorError(f"probe '{spec}': the train and {held} splits have different classes",
                               "give both splits the same class folders")
        return train, val, f"the probe's own splits: train ({len(train)}) / {held} ({len(val)})"
    full = load_probe(spec, split=None, seed=seed)
    if full.labels is None:
        raise AdvisorError(f"probe '{spec}' has no labels", "validation trains a classifier: use one sub-folder per class")
    counts = np.bincount(full.labels)
    if counts.min() < 2:
        raise AdvisorError(f"probe '{spec}' has a class with {counts.min()} image(s)", "validation needs at least 2 images per class (one to train, one to test)")
    from sklearn.model_selection import StratifiedShuffleSplit

    n_val = max(len(counts), int(round(HELD_OUT_FRACTION * len(full))))
    sss = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
    tr, va = next(sss.split(np.zeros(len(full)), full.labels))
    if max_images is not None and len(tr) > max_images:
        tr = tr[_stratified_take(full.labels[tr], max_images, seed)]
    train, val = _sub(full, np.sort(tr), "train"), _sub(full, np.sort(va), "held-out")
    return train, val, f"stratified seeded hold-out (seed {seed}): train {len(train)} / held-out {len(val)}"


def _held_out_split_name(spec: str) -> str | None:
    if spec.startswith("builtin:"):
        return None
    path = Path(spec).expanduser()
    if path.is_dir():
        names = {p.name for p in path.iterdir() if p.is_dir()}
        if "train" in names and not names - set(SPLIT_NAMES):
            return next((s for s in HELD_OUT_SPLITS if s in names), None)
        return None
    if path.suffix.lower() == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
        if "train_images" in keys:
            return next((s for s in HELD_OUT_SPLITS if f"{s}_images" in keys), None)
    return None


def _stratified_take(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded, stratified sample of ``n`` of ``labels`` (every class kept).

    scikit-learn's stratified split where it can make one (what every cached validation and bench
    run was keyed on); when what is left over would hold fewer images than there are classes, which
    it refuses, the probe loader's quota rule (each class its share, at least one)."""
    from sklearn.model_selection import train_test_split

    n_classes = len(np.unique(labels))
    if n < n_classes:
        raise AdvisorError(f"a cap of {n} training images is fewer than the {n_classes} classes",
                           f"raise --max-images / --max-train to at least {n_classes}")
    if len(labels) - n < n_classes:
        return subsample_indices(labels, len(labels), n, seed)
    idx = np.arange(len(labels))
    keep, _ = train_test_split(idx, train_size=n, stratify=labels, random_state=seed)
    return np.sort(keep)


def _sub(p: Probe, idx: np.ndarray, part: str) -> Probe:
    h = hashlib.sha256(f"{p.hash}|{part}|".encode() + idx.astype(np.int64).tobytes()).hexdigest()[:20]
    return replace(p, items=tuple(p.items[i] for i in idx), labels=p.labels[idx], hash=h)


def top_models_from_last_rank(spec: str, k: int) -> list[tuple[str, str | None]]:
    """``[(model, best cut)]`` of the ``k`` best models of the latest finished ``advisor rank`` on
    ``spec`` (by its first estimator), from the cache."""
    if k < 1:
        raise AdvisorError(f"--top must be at least 1, got {k}", "e.g. --top 3")
    runs = []
    if cache.cache_path().exists():
        with cache.transaction(read_only=True) as con:
            runs = con.execute("SELECT args, result FROM runs WHERE command = 'rank' AND status = 'done' "
                               "ORDER BY finished_at DESC").fetchall()
    want = str(Path(spec).expanduser().resolve()) if not spec.startswith("builtin:") else spec
    for args, result in runs:
        a = json.loads(args)
        src = a.get("probe", "")
        src = src if src.startswith("builtin:") else str(Path(src).expanduser().resolve())
        if src != want:
            continue
        rows = json.loads(result or "[]")
        primary = a["estimators"][0]
        ranked = sorted((r for r in rows if r["estimator"] == primary and r["rank"]), key=lambda r: r["rank"])
        return [(r["model"], r["cut"]) for r in ranked[:k]]
    raise AdvisorError(f"no finished `advisor rank` on '{spec}' in the cache",
                       f"run `advisor rank {spec}` first, or name the models with --models")


def default_cuts(module, names: list[str]) -> list[str]:
    """Seed 002's suggestion: cuts from after the first down-sampling to the last (``pre_logits``).
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
) -> ValidationResult:
    """Validate ``models`` (or the ``top`` picks of the last ``rank``) at ``cuts`` on ``spec``.

    ``log(msg)`` gets progress lines, ``warn(msg)`` warnings (default: ``log("warning: ...")``); the
    warnings are also kept in the result's ``warnings``. ``progress`` (an :class:`advisor.ranking.ranking.Progress`)
    is told where each model's weights were found and follows the fine-tunes (one step per run)."""
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
        from advisor.ranking.ranking import Progress

        progress = Progress()
    for m, r in resolved.items():
        progress.resolved(m, r)
    progress.plan([m for m, _ in picks])
    train, val, split_note = train_val_split(spec, max_images=max_images, seed=seed)
    _check_estimators(estimators)
    pending += [n for n in (taken_note(max_images, train), held_out_note(val)) if n]
    if len(train) < MIN_IMAGES:  # say so before training: the measurements are still made and printed
        log(f"note: {_too_small_for_estimators(train)}")
    dev = pick_device(device)
    per_class = len(train) / max(train.num_classes, 1)
    proto = ft.defrost(epochs=epochs, lr=lr or 0.1, batch_size=batch_size) if protocol == "defrost" else \
        replace(ft.finetune(per_class, epochs=epochs, freeze=freeze, batch_size=batch_size), **({"lr": lr} if lr else {}))
    # Build every model and check its cuts and split before any training: bad input fails fast.
    prepared = {m: _prepare(m, resolved[m], cuts, proto, best_cut) for m, best_cut in picks}
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
                                    progress=progress)
        agreement = close_the_loop(spec, train, rows, estimators, ctx, log, _warn, progress=progress)
        weights = {m: weights_record(resolved[m]) for m, _ in picks}
        result = ValidationResult(rows, train, val, split_note, agreement, dev, notes, versions(), weights, run_id)
    except BaseException as exc:
        finish_run(run_id, error=exc)
        raise
    finish_run(run_id, {"profiles": {m: result.profile(m) for m, _ in picks}, "best": {m: result.best_range(m) for m, _ in picks},
                        "agreement": agreement, "warnings": notes}, weights)
    return result


def _prepare(model_id, resolved, cuts, proto, ranked_cut: str | None = None):
    """(loaded model, its stages, the cuts to validate), or a one-line error. Without ``cuts``, the
    default range plus the cut the last ``rank`` picked for this model (``ranked_cut``)."""
    import torch

    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.validation.split import stages

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


def _validate_model(model_id, resolved, loaded, st, wanted, train, val, proto, repeats, seed, dev, log, progress=None) -> list[ValidationRow]:
    import torch

    from advisor.validation import finetune as ft

    module = loaded.module
    keys = {(c, seed + r): run_key(resolved.fingerprint, train, val, c, proto, seed + r) for c in wanted for r in range(repeats)}
    done = _finished(list(keys.values()))
    rows = [_row_from_cache(model_id, c, s, done[k]) for (c, s), k in keys.items() if k in done]
    todo = [(c, s) for (c, s), k in keys.items() if k not in done]
    if not todo:
        log(f"{model_id}: all {len(keys)} runs cached")
        return _ordered(rows, wanted)
    step = f"{model_id} (fine-tunes)"
    if progress is not None:
        progress.start_model(step, len(todo))
    module.reset_classifier(train.num_classes)
    x = {part: preprocess_all(loaded, p, f"the {part} split", "validation") for part, p in (("train", train), ("val", val))}
    y = {"train": torch.as_tensor(train.labels), "val": torch.as_tensor(val.labels)}
    theta_a = {k: v.detach().clone() for k, v in module.state_dict().items()}
    theta_r = {}  # per seed: θ_r of Chen et al. 2022 is the random init with the run's own seed
    for cut in dict.fromkeys(c for c, _ in todo):
        frozen = proto.freeze if proto.name == "finetune" else cut
        t0 = time.perf_counter()
        module.load_state_dict(theta_a)
        h = {part: (ft.prefix_activations(st, x[part], frozen) if frozen else x[part]) for part in x}
        prefix_s = time.perf_counter() - t0
        for c, s in [t for t in todo if t[0] == cut]:
            if proto.name == "finetune" and s not in theta_r:
                theta_r[s] = _random_init(resolved, train.num_classes, s)
            module.load_state_dict(theta_a)  # every run starts from the pretrained weights
            res = ft.train(st, cut, proto, h["train"], y["train"], h["val"], y["val"], seed=s,
                           theta_a=theta_a, theta_r=theta_r.get(s), device=dev)
            _store(keys[(c, s)], model_id, resolved, train, val, c, proto, s, res, prefix_s, dev)
            log(f"{model_id} @ {c} seed {s}: {res.status}" + (f", val acc {res.val_acc:.3f} ({res.seconds:.1f} s)" if res.val_acc is not None else f": {res.reason}"))
            rows.append(ValidationRow(model_id, c, proto.name, s, res.status, res.val_acc, res.best_val_acc, res.seconds,
                                      res.tfb_mean, res.reason, False, res.history))
            if progress is not None:
                progress.advance(1)
    if progress is not None:
        progress.end_model(step, False)
    module.load_state_dict(theta_a)
    return _ordered(rows, wanted)


def _ordered(rows, cuts):
    return sorted(rows, key=lambda r: (cuts.index(r.cut), r.seed))


def _random_init(resolved, num_classes: int, seed: int) -> dict:
    """θ_r of Chen et al. 2022: the architecture's own random initialisation under ``seed``."""
    import timm
    import torch

    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    torch.manual_seed(seed)
    kwargs = {k: v for k, v in resolved.kwargs.items() if k != "num_classes"}
    m = timm.create_model(resolved.arch, pretrained=False, num_classes=num_classes, **kwargs)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _finished(keys: list[str]) -> dict[str, tuple]:
    if not keys or not cache.cache_path().exists():
        return {}
    with cache.transaction(read_only=True) as con:
        got = con.execute("SELECT run_key, status, val_acc, best_val_acc, seconds, tfb_mean, reason, history "
                          "FROM validation_runs WHERE list_contains(?, run_key)", [keys]).fetchall()
    return {r[0]: r[1:] for r in got}


def _row_from_cache(model_id, cut, seed, rec) -> ValidationRow:
    status, val_acc, best, seconds, tfb, reason, history = rec
    return ValidationRow(model_id, cut, "", seed, status, val_acc, best, seconds, tfb, reason or "", True, json.loads(history or "[]"))


def _store(key, model_id, resolved, train, val, cut, proto, seed, res, prefix_s, dev) -> None:
    with cache.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO validation_runs (run_key, model_id, model_fp, probe, train_hash, val_hash, cut, protocol, "
            "hyperparams, seed, status, reason, epochs, history, val_acc, best_val_acc, seconds, prefix_seconds, device, "
            "tfb_layers, tfb_mean, tfb_note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [key, model_id, resolved.fingerprint, train.spec, train.hash, val.hash, cut, proto.name, cache.dumps(proto.as_dict()),
             seed, res.status, res.reason, len(res.history), cache.dumps(res.history), res.val_acc, res.best_val_acc,
             res.seconds, prefix_s, dev, cache.dumps(_json_safe(res.tfb_layers)), res.tfb_mean, res.tfb_note])


def _json_safe(d):
    if d is None:
        return None
    return {k: (None if v is None else (str(v) if not np.isfinite(v) else v)) for k, v in d.items()}


def weighted_tau(measured: list[float], predicted: list[float]) -> float | None:
    """``scipy.stats.weightedtau`` (defaults: hyperbolic weigher, top-heavy) between measured
    accuracies and an estimator's scores (oriented so higher = better). None for < 2 items."""
    from scipy.stats import weightedtau

    if len(measured) < 2:
        return None
    tau = weightedtau(np.asarray(measured, float), np.asarray(predicted, float)).statistic
    return None if not np.isfinite(tau) else float(tau)


def close_the_loop(spec, train: Probe, rows: list[ValidationRow], estimators, ctx, log, warn=None, progress=None) -> list[dict]:
    """Each estimator's weighted τ against the measured accuracies: across models (each model's
    best measured cut vs its best-cut score) and across the cuts of each model (≥ 3 cuts). ``warn``
    is told when the τ across models rests on fewer than 4 models."""
    from advisor.estimators import get_estimator
    from advisor.ranking.ranking import rank

    done = [r for r in rows if r.status == "done" and r.val_acc is not None]
    models = list(dict.fromkeys(r.model for r in done))
    if not done:
        return []
    if len(train) < MIN_IMAGES:
        log(f"note: {_too_small_for_estimators(train)}")
        return []
    acc = {}
    for r in done:
        acc.setdefault((r.model, r.cut), []).append(r.val_acc)
    mean_acc = {k: float(np.mean(v)) for k, v in acc.items()}
    result = rank(train, models, estimators, weights_dir=ctx.weights_dir, offline=ctx.offline, command="validate-scores",
                  progress=progress)
    scores = {}
    for cs in result.cut_scores:
        if cs["score"] is not None and np.isfinite(cs["score"]):
            sign = 1 if get_estimator(cs["estimator"]).higher_is_better else -1
            scores[(cs["estimator"], cs["model"], cs["cut"])] = sign * cs["score"]
    agreement = []
    ests = list(dict.fromkeys(cs["estimator"] for cs in result.cut_scores))
    for est in ests:
        if len(models) >= 2:
            best_acc = [max(v for (m, _), v in mean_acc.items() if m == model) for model in models]
            best_score = [max((v for (e, m, _), v in scores.items() if e == est and m == model), default=np.nan) for model in models]
            ok = [i for i, s in enumerate(best_score) if np.isfinite(s)]
            tau = weighted_tau([best_acc[i] for i in ok], [best_score[i] for i in ok])
            agreement.append({"scope": "models", "estimator": est, "n": len(ok), "weighted_tau": tau})
        for model in models:
            cuts = [c for (m, c) in mean_acc if m == model and (est, m, c) in scores]
            if len(cuts) >= 3:
                tau = weighted_tau([mean_acc[(model, c)] for c in cuts], [scores[(est, model, c)] for c in cuts])
                agreement.append({"scope": f"cuts of {model}", "estimator": est, "n": len(cuts), "weighted_tau": tau})
    from advisor.data.small_samples import tau_note

    few = [a["estimator"] for a in agreement if a["scope"] == "models"]
    if warn is not None and few and (note := tau_note(len(models), few)):
        warn(note)
    with cache.transaction() as con:
        for a in agreement:
            con.execute("INSERT INTO estimator_agreement (probe, train_hash, scope, estimator, n, weighted_tau) VALUES (?, ?, ?, ?, ?, ?)",
                        [spec, train.hash, a["scope"], a["estimator"], a["n"], a["weighted_tau"]])
    return agreement


def _check_estimators(estimators) -> None:
    """Unknown estimator names fail before any training, not after it."""
    from advisor.estimators import get_estimator

    for name in estimators or ():
        get_estimator(name)


def _too_small_for_estimators(train: Probe) -> str:
    return (f"the training part has {len(train)} image(s) and estimators need at least {MIN_IMAGES}: "
            "the estimator agreement is skipped (the measured accuracies are not); add images to compare them")


def plot_profiles(result: ValidationResult, path: str) -> None:
    """Defrosting profile(s): mean ± std validation accuracy per cut, one line per model, best cut starred."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in result.rows))
    fig, axes = plt.subplots(1, len(models), figsize=(max(5.0, 4.5 * len(models)), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        prof = result.profile(model)
        if not prof:
            ax.set_title(f"{model}: no finished run")
            continue
        cuts = list(prof)
        mean = [prof[c][0] for c in cuts]
        std = [prof[c][1] for c in cuts]
        ax.errorbar(range(len(cuts)), mean, yerr=std, marker="o", capsize=3)
        best = cuts.index(best_cut(prof))
        ax.plot([best], [mean[best]], marker="*", markersize=16, color="tab:red", linestyle="none", label=f"best: {cuts[best]}")
        ax.set_xticks(range(len(cuts)), cuts, rotation=30, ha="right")
        ax.set_xlabel("frozen up to (cut)")
        ax.set_ylabel("validation accuracy")
        ax.set_title(model.split("/")[-1][:40], fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
