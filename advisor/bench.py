"""``advisor bench``: measure every estimator against fine-tuned ground truth, model × target.

Why: an estimator is only worth its default slot in ``advisor rank`` if it orders models the way
fine-tuning does, on targets it was not tuned on. This module produces the evidence:

1. **Ground truth** per (model, target), with the validation machinery (:mod:`advisor.finetune`):
   a full fine-tune (cut ``pre_logits``, nothing frozen; seed 004's schedule) for every backbone lr
   of the grid × every seed. The target's own ``train``/``test`` splits are used when present
   (otherwise :func:`advisor.validate.train_val_split`'s stratified hold-out is the test part); a
   stratified, seeded ``val_fraction`` of the training pool is carved out to choose the lr (by mean
   validation accuracy over seeds), and the test accuracy at that lr (mean ± std over seeds) is the
   model's ground truth. The test part never influences a choice.
2. **Best defrost cut** per (model, target): :func:`advisor.validate.validate` with seed 002's
   defrost protocol and its default cuts; the best measured cut is what a freeze-depth
   recommendation should hit.
3. **Scores**: :func:`advisor.ranking.rank` with every registered estimator on the training part
   (capped like the validation runs, so all three share cached features).

Each fine-tune is one ``bench_runs`` row written in its own transaction when it ends, keyed by a hash
of everything that determines it: a killed benchmark loses at most the run in progress and a rerun
skips finished runs. Each finished (model, target) is one ``bench_cells`` row (its evidence as
JSON) from which ``advisor bench --report-only`` rebuilds the report without any computation.
Metrics live in :mod:`advisor.bench_metrics`, the report in :mod:`advisor.bench_report`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tomllib

from advisor import cache
from advisor.errors import AdvisorError
from advisor.features import PRE_LOGITS
from advisor.models import ResolveContext, resolve_model
from advisor.probe import Probe, load_probe

BENCH_VERSION = "1"  # bump when the protocol code changes the numbers: run keys include it
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "registry" / "bench.toml"


def _packaged_config() -> Path:
    """``registry/bench.toml`` in a source checkout, else the installed ``advisor.registry`` copy."""
    if DEFAULT_CONFIG.is_file():
        return DEFAULT_CONFIG
    from importlib.resources import files

    return Path(str(files("advisor.registry") / "bench.toml"))


def shared_root() -> Path:
    """``$ADVISOR_SHARED``, else ``<repo>/../shared`` (the workplace's checkpoints and datasets)."""
    if os.environ.get("ADVISOR_SHARED"):
        return Path(os.environ["ADVISOR_SHARED"]).expanduser()
    return Path(__file__).resolve().parents[2] / "shared"


@dataclass(frozen=True)
class Settings:
    """The ground-truth protocol (every field is part of the run and evidence keys)."""

    backbone_lrs: tuple[float, ...] = (0.01, 0.001)
    head_lr_factor: float = 10.0  # new head lr = factor × backbone lr (seed 004: 0.01 vs 0.001)
    epochs: int = 10
    seeds: tuple[int, ...] = (0, 1)
    max_train: int | None = 1000
    val_fraction: float = 0.2
    batch_size: int = 32
    estimators: tuple[str, ...] = ()

    def as_dict(self) -> dict:
        return asdict(self)

    def key(self) -> str:
        return hashlib.sha256(json.dumps([BENCH_VERSION, self.as_dict()], sort_keys=True).encode()).hexdigest()[:20]


@dataclass
class Config:
    models: list[str]
    targets: list[str]
    settings: Settings
    weights_dir: Path | None
    source: str  # the config file read


def load_config(path: str | Path | None = None, *, models: list[str] | None = None, targets: list[str] | None = None,
                epochs: int | None = None, seeds: list[int] | None = None, max_train: int | None = None,
                lrs: list[float] | None = None, estimators: list[str] | None = None,
                weights_dir: str | Path | None = None) -> Config:
    """The benchmark to run: ``path`` (default ``registry/bench.toml``) overridden by the arguments.
    Checks everything cheap before any work: unknown models, missing or unlabelled targets, empty
    seed or lr lists, non-positive settings, unknown estimators all raise :class:`AdvisorError`."""
    from advisor.estimators import get_estimator, list_estimators

    cfg_path = Path(path).expanduser() if path else _packaged_config()
    if not cfg_path.is_file():
        raise AdvisorError(f"bench config '{cfg_path}' does not exist", "pass a TOML file like registry/bench.toml to --config")
    try:
        raw = tomllib.loads(cfg_path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AdvisorError(f"bench config '{cfg_path}' is not valid TOML: {exc}", "fix the file (see registry/bench.toml)") from None
    proto = raw.get("protocol", {})
    root = shared_root()
    if seeds is not None and not seeds:
        raise AdvisorError("--seeds is empty", "give at least one seed, e.g. --seeds 0,1")
    if lrs is not None and not lrs:
        raise AdvisorError("--lrs is empty", "give at least one backbone learning rate, e.g. --lrs 0.01,0.001")
    s = Settings(
        backbone_lrs=tuple(float(v) for v in (lrs if lrs is not None else proto.get("backbone_lrs", Settings.backbone_lrs))),
        head_lr_factor=float(proto.get("head_lr_factor", Settings.head_lr_factor)),
        epochs=int(epochs if epochs is not None else proto.get("epochs", Settings.epochs)),
        seeds=tuple(int(v) for v in (seeds if seeds is not None else proto.get("seeds", Settings.seeds))),
        max_train=max_train if max_train is not None else proto.get("max_train", Settings.max_train),
        val_fraction=float(proto.get("val_fraction", Settings.val_fraction)),
        batch_size=int(proto.get("batch_size", Settings.batch_size)),
        estimators=tuple(estimators) if estimators else tuple(e.name for e in list_estimators()),
    )
    _check_settings(s)
    for name in s.estimators:
        get_estimator(name)
    models = list(dict.fromkeys(models if models else raw.get("models", [])))
    if not models:
        raise AdvisorError("no models to benchmark", "pass --models a,b or list them under `models` in the config")
    if targets:
        target_paths = [str(Path(t).expanduser()) for t in targets]
    else:
        target_paths = [str(root / t) for t in raw.get("targets", [])]
    if not target_paths:
        raise AdvisorError("no targets to benchmark", "pass --targets path1,path2 or list them under `targets` in the config")
    if weights_dir is None and not any(m.startswith(("file:", "local-dir:", "hf-hub:")) for m in models):
        candidate = root / raw.get("models_dir", "models")
        weights_dir = candidate if candidate.is_dir() else None
    wd = Path(weights_dir).expanduser() if weights_dir else None
    if wd is not None and not wd.is_dir():
        raise AdvisorError(f"weights dir '{wd}' is not a folder", "pass a folder of weight files to --weights-dir")
    ctx = ResolveContext(weights_dir=wd)
    for m in models:
        resolve_model(m, ctx)  # an unknown model or missing weights fails here, before any training
    for t in dict.fromkeys(target_paths):
        check_target(t)
    return Config(models, list(dict.fromkeys(target_paths)), s, wd, str(cfg_path))


def _check_settings(s: Settings) -> None:
    if s.epochs < 1:
        raise AdvisorError(f"--epochs must be at least 1, got {s.epochs}", "e.g. --epochs 10")
    if not all(lr > 0 and math.isfinite(lr) for lr in s.backbone_lrs) or not s.head_lr_factor > 0:
        raise AdvisorError(f"learning rates must be positive: backbone {list(s.backbone_lrs)}, head factor {s.head_lr_factor}",
                           "e.g. --lrs 0.01,0.001")
    if s.max_train is not None and s.max_train < 2:
        raise AdvisorError(f"--max-train must be at least 2, got {s.max_train}", "e.g. --max-train 1000")
    if not 0 < s.val_fraction < 1:
        raise AdvisorError(f"val_fraction must lie in (0, 1), got {s.val_fraction}", "e.g. val_fraction = 0.2 in the config")
    if s.batch_size < 2:
        raise AdvisorError(f"batch_size must be at least 2, got {s.batch_size}", "e.g. batch_size = 32 in the config")
    if len(set(s.seeds)) != len(s.seeds):
        raise AdvisorError(f"--seeds repeats a seed: {list(s.seeds)}", "give distinct seeds, e.g. --seeds 0,1")


def check_target(spec: str) -> None:
    """A target must exist and be labelled (any folder, .csv or .npz a user has)."""
    if not Path(spec).exists():
        raise AdvisorError(f"target '{spec}' does not exist", "pass existing folders or .npz files to --targets (or set ADVISOR_SHARED)")
    probe = load_probe(spec, split="train")
    if probe.labels is None:
        raise AdvisorError(f"target '{spec}' has no labels", "fine-tuning needs labels: one sub-folder per class, a path,label CSV or npz labels")


def target_name(spec: str) -> str:
    p = Path(spec)
    return p.stem if p.suffix.lower() in (".npz", ".csv") else p.name


def model_name(model_id: str) -> str:
    """A short display name: the file stem for ``file:`` ids, the repo for hub ids, else the id."""
    if model_id.startswith("file:"):
        return Path(model_id[5:].split("?")[0]).stem
    return model_id.split("/")[-1] if model_id.startswith(("hf-hub:", "local-dir:")) else model_id


# ---------------------------------------------------------------- splits


@dataclass
class TargetParts:
    """``train``/``val``: the fine-tunes' training part and the lr-selection part (disjoint, both from
    the training pool); ``test``: held out from every choice; ``score``: what the estimators see
    (the training pool capped at ``max_train``, the same probe ``advisor validate`` trains on)."""

    spec: str
    train: Probe
    val: Probe
    test: Probe
    score: Probe
    note: str


def _own_test_split(spec: str) -> bool:
    path = Path(spec)
    if path.is_dir():
        return (path / "train").is_dir() and (path / "test").is_dir()
    if path.suffix.lower() == ".npz" and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            return {"train_images", "test_images"} <= set(data.files)
    return False


def split_target(spec: str, s: Settings) -> TargetParts:
    """Pool/test from the target's own ``train``/``test`` splits when it has both (an npz's ``val``
    split is not used as the test set), otherwise ``train_val_split``'s stratified hold-out; then a
    stratified ``val_fraction`` of the pool for lr selection. With ``max_train`` the pool is first
    capped at ``max_train / (1 − val_fraction)`` so the training part is about ``max_train``."""
    from sklearn.model_selection import StratifiedShuffleSplit

    from advisor.validate import _stratified_take, _sub, train_val_split

    seed = s.seeds[0]
    if _own_test_split(spec):
        pool = load_probe(spec, split="train", seed=seed)
        test = load_probe(spec, split="test", seed=seed)
        if pool.class_names != test.class_names:
            raise AdvisorError(f"target '{spec}': the train and test splits have different classes", "give both splits the same classes")
        note = f"own splits: train pool {len(pool)} / test {len(test)}"
    else:
        pool, test, note = train_val_split(spec, seed=seed)
    cap = None if s.max_train is None else math.ceil(s.max_train / (1 - s.val_fraction))
    if cap is not None and len(pool) > cap:
        pool = _sub(pool, _stratified_take(pool.labels, cap, seed), "bench-pool")
    counts = np.bincount(pool.labels, minlength=pool.num_classes)
    if counts.min() < 2:
        raise AdvisorError(f"target '{spec}' has a class with {counts.min()} training image(s)",
                           "the lr-selection split needs at least 2 training images per class")
    n_val = max(pool.num_classes, round(s.val_fraction * len(pool)))
    if n_val >= len(pool):
        raise AdvisorError(f"target '{spec}' is too small to carve a validation part ({len(pool)} training images)",
                           "use a larger target or a smaller val_fraction")
    tr, va = next(StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed).split(np.zeros(len(pool)), pool.labels))
    train, val = _sub(pool, np.sort(tr), "bench-train"), _sub(pool, np.sort(va), "bench-val")
    score, _, _ = train_val_split(spec, max_images=s.max_train, seed=seed)
    return TargetParts(spec, train, val, test, score, f"{note}; fine-tune train {len(train)} / lr-selection val {len(val)} / test {len(test)}")


# ---------------------------------------------------------------- ground truth


def protocol(backbone_lr: float, s: Settings, per_class: float):
    """Seed 004's full fine-tune (nothing frozen): backbone at ``backbone_lr``, head at factor × that."""
    from advisor import finetune as ft

    return replace(ft.finetune(per_class, epochs=s.epochs, freeze=None, batch_size=s.batch_size),
                   lr=backbone_lr * s.head_lr_factor, lr_transferred=backbone_lr)


def run_key(model_fp: str, parts: TargetParts, proto, seed: int) -> str:
    from advisor.validate import RECIPE_VERSION

    payload = json.dumps([BENCH_VERSION, RECIPE_VERSION, model_fp, parts.train.hash, parts.val.hash, parts.test.hash,
                          proto.as_dict(), seed], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _finished(keys: list[str]) -> dict[str, dict]:
    if not keys or not cache.cache_path().exists():
        return {}
    with cache.transaction(read_only=True) as con:
        got = con.execute("SELECT run_key, status, reason, val_acc, test_acc, seconds FROM bench_runs WHERE list_contains(?, run_key)",
                          [keys]).fetchall()
    return {k: {"status": st, "reason": r or "", "val_acc": v, "test_acc": t, "seconds": sec, "cached": True}
            for k, st, r, v, t, sec in got}


def _tensors(loaded, parts: TargetParts) -> dict:
    import torch

    from advisor.validate import preprocess_all

    out = {}
    for name in ("train", "val", "test"):
        p = getattr(parts, name)
        out[name] = (preprocess_all(loaded, p, f"the {name} part of '{parts.spec}'", "the benchmark"), torch.as_tensor(p.labels))
    return out


def ground_truth(model_id: str, parts: TargetParts, s: Settings, ctx: ResolveContext, device: str, log=lambda m: None) -> list[dict]:
    """Every lr × seed full fine-tune of one model on one target (cached runs are read back).
    One dict per run: ``lr``, ``seed``, ``status``, ``val_acc``, ``test_acc``, ``seconds``, ``cached``."""
    import torch

    from advisor import finetune as ft
    from advisor.loading import build_model
    from advisor.split import stages

    resolved = resolve_model(model_id, ctx)
    per_class = len(parts.train) / max(parts.train.num_classes, 1)
    protos = {lr: protocol(lr, s, per_class) for lr in s.backbone_lrs}
    keys = {(lr, seed): run_key(resolved.fingerprint, parts, protos[lr], seed) for lr in s.backbone_lrs for seed in s.seeds}
    done = _finished(list(keys.values()))
    todo = [ls for ls, k in keys.items() if k not in done]
    if todo:
        loaded = build_model(resolved)
        module = loaded.module
        module.reset_classifier(parts.train.num_classes)
        st = stages(module, torch.randn(2, *loaded.data_config["input_size"]))
        x = _tensors(loaded, parts)
        theta_a = {k: v.detach().clone() for k, v in module.state_dict().items()}
        for lr, seed in todo:
            module.load_state_dict(theta_a)  # every run starts from the pretrained weights
            res = ft.train(st, PRE_LOGITS, protos[lr], *x["train"], *x["val"], seed=seed, device=device,
                           test_h=x["test"][0], test_y=x["test"][1])
            _store(keys[(lr, seed)], model_id, resolved.fingerprint, parts, protos[lr], seed, res, device)
            done[keys[(lr, seed)]] = {"status": res.status, "reason": res.reason, "val_acc": res.val_acc,
                                      "test_acc": res.test_acc, "seconds": res.seconds, "cached": False}
            log(f"{model_name(model_id)} on {target_name(parts.spec)}: lr {lr:g} seed {seed}: {res.status}"
                + (f", val {res.val_acc:.3f}, test {res.test_acc:.3f} ({res.seconds:.1f} s)" if res.test_acc is not None else f" ({res.reason})"))
    else:
        log(f"{model_name(model_id)} on {target_name(parts.spec)}: all {len(keys)} fine-tunes cached")
    return [{"lr": lr, "seed": seed, **done[keys[(lr, seed)]]} for lr, seed in keys]


def _store(key, model_id, model_fp, parts: TargetParts, proto, seed, res, device) -> None:
    with cache.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO bench_runs (run_key, model_id, model_fp, target, train_hash, val_hash, test_hash, lr_backbone, "
            "lr_head, seed, hyperparams, status, reason, history, val_acc, best_val_acc, test_acc, n_train, n_val, n_test, seconds, "
            "device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [key, model_id, model_fp, parts.spec, parts.train.hash, parts.val.hash, parts.test.hash, proto.lr_transferred, proto.lr,
             seed, cache.dumps(proto.as_dict()), res.status, res.reason, cache.dumps(res.history), res.val_acc, res.best_val_acc,
             res.test_acc, len(parts.train), len(parts.val), len(parts.test), res.seconds, device])


def summarise_runs(runs: list[dict], lrs, head_lr_factor: float) -> dict:
    """Choose the lr by mean validation accuracy over seeds (ties: the first lr of the grid) and report
    the test accuracy there (mean ± population std over seeds). ``lr`` is None if every run failed."""
    per_lr = {}
    for lr in lrs:
        ok = [r for r in runs if r["lr"] == lr and r["status"] == "done" and r["test_acc"] is not None]
        per_lr[lr] = {"val_mean": float(np.mean([r["val_acc"] for r in ok])) if ok else None,
                      "test_mean": float(np.mean([r["test_acc"] for r in ok])) if ok else None,
                      "test_std": float(np.std([r["test_acc"] for r in ok])) if ok else None,
                      "done": len(ok), "failed": sum(r["lr"] == lr and r["status"] != "done" for r in runs)}
    ranked = [lr for lr in lrs if per_lr[lr]["done"]]
    best = max(ranked, key=lambda lr: per_lr[lr]["val_mean"]) if ranked else None
    pl = per_lr.get(best, {})
    return {"lr_backbone": best, "lr_head": None if best is None else best * head_lr_factor,
            "val_mean": pl.get("val_mean"), "test_mean": pl.get("test_mean"), "test_std": pl.get("test_std"),
            "seeds_done": pl.get("done", 0), "per_lr": {str(lr): v for lr, v in per_lr.items()},
            "seconds": float(sum(r["seconds"] or 0.0 for r in runs))}


# ---------------------------------------------------------------- one target


def run_target(spec: str, cfg: Config, device: str, log=lambda m: None) -> list[dict]:
    """Scores, ground truth and defrost profile of every model on one target: one evidence cell per
    model, stored in ``bench_cells`` (one transaction) and returned."""
    from advisor.ranking import rank
    from advisor.validate import validate

    s = cfg.settings
    ctx = ResolveContext(weights_dir=cfg.weights_dir)
    parts = split_target(spec, s)
    log(f"{target_name(spec)}: {parts.note}")
    t0 = time.perf_counter()
    ranked = rank(parts.score, cfg.models, list(s.estimators), weights_dir=cfg.weights_dir, command="bench-scores")
    log(f"{target_name(spec)}: scores of {len(s.estimators)} estimators ({time.perf_counter() - t0:.1f} s)")
    seeds = sorted(s.seeds)
    defrost = validate(spec, cfg.models, protocol="defrost", epochs=s.epochs, repeats=len(seeds), seed=seeds[0],
                       max_images=s.max_train, batch_size=s.batch_size, estimators=list(s.estimators),
                       weights_dir=cfg.weights_dir, device=device, log=log)
    by = {(r["model"], r["estimator"], r["cut"]): r for r in ranked.cut_scores}
    hib = {r["estimator"]: r["higher_is_better"] for r in ranked.rows}
    cells = []
    for mf in ranked.models:
        runs = ground_truth(mf.model_id, parts, s, ctx, device, log)
        prof = defrost.profile(mf.model_id)
        best = defrost.best_range(mf.model_id)
        scores = {}
        for est in s.estimators:
            rows = [by[(mf.model_id, est, c)] for c in mf.cuts]
            errors = sorted({r["error"] for r in rows if r["error"]})
            scores[est] = {"cuts": [r["score"] for r in rows], "higher_is_better": hib[est],
                           "seconds": float(sum(r["seconds"] for r in rows)), "error": "; ".join(errors) or None}
        cells.append({
            "model": mf.model_id, "model_name": model_name(mf.model_id), "target": spec, "target_name": target_name(spec),
            "split": parts.note, "n_train": len(parts.train), "n_val": len(parts.val), "n_test": len(parts.test),
            "n_score": len(ranked.probe), "n_classes": ranked.probe.num_classes, "cuts": list(mf.cuts),
            "ground_truth": summarise_runs(runs, s.backbone_lrs, s.head_lr_factor),
            "defrost": {"profile": {c: list(v) for c, v in prof.items()}, "best_cut": best[0] if best else None},
            "scores": scores, "extract_seconds": mf.extract_seconds,
        })
    _store_cells(cells, s)
    return cells


def _cell_key(s: Settings, model_id: str, target: str) -> str:
    return hashlib.sha256(json.dumps([s.key(), model_id, str(Path(target).resolve())]).encode()).hexdigest()[:24]


def _store_cells(cells: list[dict], s: Settings) -> None:
    with cache.transaction() as con:
        for c in cells:
            con.execute("INSERT OR REPLACE INTO bench_cells (cell_key, settings_hash, model_id, target, payload) VALUES (?, ?, ?, ?, ?)",
                        [_cell_key(s, c["model"], c["target"]), s.key(), c["model"], c["target"], cache.dumps(c)])


def load_cells(cfg: Config) -> list[dict]:
    """The stored evidence of every (model, target) of ``cfg`` under its settings; an error naming
    what is missing otherwise (``--report-only`` computes nothing)."""
    want = [(t, m) for t in cfg.targets for m in cfg.models]
    got = {}
    if cache.cache_path().exists():
        with cache.transaction(read_only=True) as con:
            keys = [_cell_key(cfg.settings, m, t) for t, m in want]
            got = dict(con.execute("SELECT cell_key, payload FROM bench_cells WHERE list_contains(?, cell_key)", [keys]).fetchall())
    missing = [(t, m) for t, m in want if _cell_key(cfg.settings, m, t) not in got]
    if missing:
        t, m = missing[0]
        raise AdvisorError(f"--report-only: {len(missing)} of {len(want)} (model, target) pairs are not in the cache under these settings, "
                           f"e.g. {model_name(m)} on {target_name(t)}", "run `advisor bench` with the same options without --report-only first")
    return [json.loads(got[_cell_key(cfg.settings, m, t)]) for t, m in want]


def bench(cfg: Config, *, report_only: bool = False, device: str | None = None, log=lambda m: None) -> list[dict]:
    """All evidence cells of ``cfg``: computed (cached parts reused) or, with ``report_only``, read back."""
    if report_only:
        return load_cells(cfg)
    from advisor.validate import pick_device

    dev = pick_device(device)
    cells = []
    for spec in cfg.targets:
        cells += run_target(spec, cfg, dev, log)
    return cells


GROUND_TRUTH_COLUMNS = ("target", "model", "lr_backbone", "lr_head", "val_acc_mean", "test_acc_mean", "test_acc_std", "seeds_done",
                        "epochs", "n_train", "n_val", "n_test", "best_defrost_cut", "defrost_acc_mean", "val_acc_by_lr", "test_acc_by_lr",
                        "model_id", "target_path")


def write_ground_truth(cells: list[dict], s: Settings, path: str | Path) -> Path:
    """The ground-truth table: one row per (model, target), the chosen lr and its test accuracy."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)

    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(GROUND_TRUTH_COLUMNS)
        for c in cells:
            g, d = c["ground_truth"], c["defrost"]
            best = d["best_cut"]
            w.writerow([c["target_name"], c["model_name"], fmt(g["lr_backbone"]), fmt(g["lr_head"]), fmt(g["val_mean"]),
                        fmt(g["test_mean"]), fmt(g["test_std"]), g["seeds_done"], s.epochs, c["n_train"], c["n_val"], c["n_test"],
                        best or "", fmt(d["profile"][best][0]) if best else "",
                        ";".join(f"{lr}:{fmt(v['val_mean'])}" for lr, v in g["per_lr"].items()),
                        ";".join(f"{lr}:{fmt(v['test_mean'])}" for lr, v in g["per_lr"].items()),
                        c["model"], c["target"]])
    return path
