"""``advisor bench``: measure every estimator against fine-tuned ground truth, model × target.

Why: an estimator is only worth its default slot in ``advisor rank`` if it orders models the way
fine-tuning does, on targets it was not tuned on. This module produces the evidence, in units of
work called *runs*, each keyed by a content hash of everything that determines its numbers:

1. **Fine-tunes** (ground truth) per (model, target), with the validation machinery
   (:mod:`advisor.validation.finetune`): a full fine-tune (cut ``pre_logits``, nothing frozen; the schedule of
   Plested & Gedeon 2019) for every backbone lr of the grid × every seed. The target's own
   ``train``/``test`` splits are used when present (otherwise :func:`advisor.validation.validate.train_val_split`'s
   stratified hold-out is the test part); a stratified, seeded ``val_fraction`` of the training pool
   is carved out to choose the lr (by mean validation accuracy over seeds), and the test accuracy at
   that lr (mean ± std over seeds) is the model's ground truth. The test part never influences a choice.
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
Metrics live in :mod:`advisor.bench.bench_metrics`, the report in :mod:`advisor.bench.bench_report`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import tomllib

from advisor.store import cache
from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS
from advisor.models.models import ResolveContext, Resolved, resolve_model
from advisor.data.probe import Probe, load_probe

BENCH_VERSION = "2"  # bump when the protocol code changes the numbers: run keys include it
DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "registry" / "bench.toml"
RUNS_CSV = Path("benchmarks/bench_runs.csv")
SCORES_CSV = Path("benchmarks/bench_scores.csv")  # beside the runs CSV: the estimators' scores, portable the same way
MIN_IMG_SIZE = 32  # the ImageNet models downsample by 32
DEFROST_LR = 0.1  # Gerace et al. 2023's recipe (SGD, cosine-annealed from 0.1)
PROBE_RECIPE = "standardise + logistic regression (L2, C=1, lbfgs, 1000 iterations) on pre_logits, fit on train, scored on test"


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
    return Path(__file__).resolve().parents[3] / "shared"


def cpu_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    """The benchmark protocol. Every field is part of the evidence keys; the run keys hold what
    determines each run (its protocol, seed, effective input size and data), so a change re-runs
    exactly the runs it affects."""

    backbone_lrs: tuple[float, ...] = (0.01, 0.001)
    head_lr_factor: float = 10.0  # new head lr = factor × backbone lr (Plested & Gedeon 2019: 0.01 vs 0.001)
    epochs: int = 10
    seeds: tuple[int, ...] = (0, 1)
    max_train: int | None = 1000
    val_fraction: float = 0.2
    batch_size: int = 32
    img_size: int | None = None  # input-size cap: each model gets min(its own size, img_size); None = own size
    defrost_cuts: int | tuple[str, ...] = 3  # a count spread over the default cuts, or cut names
    defrost_seed: int = 0
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


def parse_img_size(value) -> int | None:
    """``--img-size``: a whole number of pixels (>= 32) or ``native`` (no cap); else a one-line error."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("native", "none", "")):
        return None
    try:
        size = int(str(value).strip())
    except ValueError:
        raise AdvisorError(f"--img-size '{value}' is not a whole number of pixels", "e.g. --img-size 128, or --img-size native for each model's own size") from None
    if size < MIN_IMG_SIZE:
        raise AdvisorError(f"--img-size must be at least {MIN_IMG_SIZE} px, got {size}", "e.g. --img-size 128 (the ImageNet models downsample by 32)")
    return size


def parse_defrost_cuts(value) -> int | tuple[str, ...]:
    """``--defrost-cuts``: a count (>= 1) of cuts spread over the default range, or cut names."""
    if isinstance(value, int) and not isinstance(value, bool):
        count = value
    elif isinstance(value, (list, tuple)):
        names = tuple(str(v).strip() for v in value if str(v).strip())
        if not names:
            raise AdvisorError("--defrost-cuts is empty", "give a count (e.g. 3) or cut names (e.g. blocks.2,pre_logits)")
        return names
    else:
        text = str(value).strip()
        if not text.lstrip("-").isdigit():
            return parse_defrost_cuts([t for t in text.split(",")])
        count = int(text)
    if count < 1:
        raise AdvisorError(f"--defrost-cuts must be at least 1, got {count}", "e.g. --defrost-cuts 3, or cut names")
    return count


def parse_workers(value) -> int:
    """``--workers``: 1 .. the number of CPU cores."""
    cores = cpu_cores()
    try:
        n = int(str(value).strip())
    except ValueError:
        raise AdvisorError(f"--workers '{value}' is not a whole number", f"e.g. --workers 2 (this machine has {cores} CPU cores)") from None
    if n < 1 or n > cores:
        raise AdvisorError(f"--workers must lie in 1..{cores} (the CPU cores here), got {n}",
                           "each worker trains with cores // workers threads; more workers than cores only adds contention")
    return n


def load_config(path: str | Path | None = None, *, models: list[str] | None = None, targets: list[str] | None = None,
                epochs: int | None = None, seeds: list[int] | None = None, max_train: int | None = None,
                lrs: list[float] | None = None, estimators: list[str] | None = None,
                img_size: int | str | None = None, defrost_cuts: int | str | list[str] | None = None,
                defrost_seed: int | None = None, weights_dir: str | Path | None = None) -> Config:
    """The benchmark to run: ``path`` (default ``registry/bench.toml``) overridden by the arguments.
    Checks everything cheap before any work: unknown models, missing or unlabelled targets, empty
    seed or lr lists, non-positive settings, unknown estimators all raise :class:`AdvisorError`.
    ``img_size``: ``"native"`` lifts the config's cap."""
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
        img_size=parse_img_size(img_size if img_size is not None else proto.get("img_size", Settings.img_size)),
        defrost_cuts=parse_defrost_cuts(defrost_cuts if defrost_cuts is not None else proto.get("defrost_cuts", Settings.defrost_cuts)),
        defrost_seed=int(defrost_seed if defrost_seed is not None else proto.get("defrost_seed", Settings.defrost_seed)),
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

    from advisor.validation.validate import _stratified_take, _sub, train_val_split

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


# ---------------------------------------------------------------- portable identities

_SHA: dict[tuple, str] = {}


def _file_sha(path: Path) -> str:
    st = path.stat()
    k = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if k not in _SHA:
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        _SHA[k] = h.hexdigest()
    return _SHA[k]


def model_identity(resolved: Resolved) -> str:
    """What determines a model's numbers, independent of where its files live: the build recipe
    and the bytes of its weights (the path-based fingerprint only when there is no weights file)."""
    weights = _file_sha(Path(resolved.weights)) if resolved.weights else resolved.fingerprint
    payload = [resolved.arch, resolved.kwargs, resolved.data_config, resolved.remap_keys, resolved.pretrained_cfg, weights]
    return hashlib.sha256(cache.dumps(payload).encode()).hexdigest()[:20]


def part_identity(probe: Probe, spec: str) -> str:
    """A probe part by content: item names relative to the target, image bytes, labels, classes."""
    base = Path(spec)
    base = base.parent if base.is_file() else base
    h = hashlib.sha256()
    for item in probe.items:
        if isinstance(item, str):
            h.update(os.path.relpath(item, base).replace(os.sep, "/").encode() + b"\0" + _file_sha(Path(item)).encode())
        else:
            h.update(f"#{item}\0".encode())
    if probe.arrays is not None:
        h.update(hashlib.sha256(np.ascontiguousarray(probe.arrays).tobytes()).digest())
    if probe.labels is not None:
        h.update(np.asarray(probe.labels, dtype=np.int64).tobytes())
    h.update("\0".join(probe.class_names or ()).encode())
    return h.hexdigest()[:20]


# ---------------------------------------------------------------- models: input size and cuts


@dataclass
class ModelInfo:
    """One model as the benchmark uses it: its own input size, the size it gets under the cap
    (``img_override`` is what :func:`advisor.models.loading.build_model` is given: None = its own), its
    cuts and the defrost cuts chosen among them."""

    model_id: str
    resolved: Resolved
    identity: str
    native_size: tuple[int, int, int]
    input_size: tuple[int, int, int]
    img_override: int | None
    fixed: bool
    cuts: list[str]
    defrost_cuts: list[str]


def effective_size(native: tuple[int, int, int], fixed: bool, cap: int | None) -> int | None:
    """The ``img_size`` to build the model with under ``cap``: None (its own size) when there is no
    cap, when its own size is already within the cap (a cap never enlarges an image) or when the
    model takes only its own size; else the cap."""
    _, h, w = native
    if cap is None or fixed or max(h, w) <= cap:
        return None
    return cap


def pick_defrost_cuts(default: list[str], all_cuts: list[str], spec: int | tuple[str, ...], model_id: str) -> list[str]:
    """``spec`` cuts spread evenly over ``default`` (first and last included), or the named cuts the
    model has (in its order); a model with none of the named cuts is a one-line error."""
    if isinstance(spec, int):
        if spec >= len(default):
            return list(default)
        idx = sorted({int(round(i)) for i in np.linspace(0, len(default) - 1, spec)})
        return [default[i] for i in idx]
    have = [c for c in all_cuts if c in spec]
    if not have:
        raise AdvisorError(f"{model_name(model_id)} has none of the --defrost-cuts {', '.join(spec)}",
                           f"its cuts: {', '.join(all_cuts)}; or give a count, e.g. --defrost-cuts 3")
    return have


def model_info(model_id: str, ctx: ResolveContext, s: Settings) -> ModelInfo:
    """Build the model once (CPU, no training) for its input size and cut names."""
    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.validation.validate import default_cuts

    resolved = resolve_model(model_id, ctx)
    loaded = build_model(resolved)
    native = tuple(int(v) for v in loaded.data_config["input_size"])
    fixed = bool(loaded.data_config.get("fixed_input_size"))
    override = effective_size(native, fixed, s.img_size)
    size = native if override is None else (native[0], override, override)
    names = cut_names(loaded.module)
    chosen = pick_defrost_cuts(default_cuts(loaded.module, names), names, s.defrost_cuts, model_id)
    return ModelInfo(model_id, resolved, model_identity(resolved), native, size, override, fixed, names, chosen)


# ---------------------------------------------------------------- runs (jobs) and their keys


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
    device: str = "cpu"


def protocol(backbone_lr: float, s: Settings, per_class: float):
    """Plested & Gedeon 2019's full fine-tune (nothing frozen): backbone at ``backbone_lr``, head at factor × that."""
    from advisor.validation import finetune as ft

    return replace(ft.finetune(per_class, epochs=s.epochs, freeze=None, batch_size=s.batch_size),
                   lr=backbone_lr * s.head_lr_factor, lr_transferred=backbone_lr)


def run_key(kind: str, model_key: str, part_keys, payload: dict) -> str:
    from advisor.validation.validate import RECIPE_VERSION

    blob = json.dumps([BENCH_VERSION, RECIPE_VERSION, kind, model_key, list(part_keys), payload], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def cell_jobs(info: ModelInfo, parts: TargetParts, s: Settings, part_keys, weights_dir, device: str) -> list[Job]:
    """Every run of one (model, target): its linear probe, the fine-tunes (lr × seed) and the defrost
    runs (cut × ``defrost_seed``), in that order."""
    from advisor.validation import finetune as ft

    per_class = len(parts.train) / max(parts.train.num_classes, 1)
    common = dict(model_id=info.model_id, target=parts.spec, weights_dir=str(weights_dir) if weights_dir else None, settings=s,
                  img_override=info.img_override, input_size=info.input_size, model_key=info.identity,
                  part_keys=tuple(part_keys), device=device)
    size = list(info.input_size)
    jobs = [Job(run_key("probe", info.identity, part_keys, {"recipe": PROBE_RECIPE, "input_size": size}), "probe",
                protocol={"recipe": PROBE_RECIPE}, seed=0, **common)]
    for lr in s.backbone_lrs:
        proto = protocol(lr, s, per_class).as_dict()
        for seed in s.seeds:
            key = run_key("finetune", info.identity, part_keys, {"protocol": proto, "seed": seed, "input_size": size})
            jobs.append(Job(key, "finetune", protocol=proto, lr=lr, seed=seed, **common))
    dproto = ft.defrost(epochs=s.epochs, lr=DEFROST_LR, batch_size=s.batch_size).as_dict()
    for cut in info.defrost_cuts:
        key = run_key("defrost", info.identity, part_keys, {"protocol": dproto, "cut": cut, "seed": s.defrost_seed, "input_size": size})
        jobs.append(Job(key, "defrost", protocol=dproto, cut=cut, seed=s.defrost_seed, **common))
    return jobs


# ---------------------------------------------------------------- running one job (any process)

_PREPARED: dict = {}  # the (model, target) this process prepared last: model, stages, tensors


def _prepared(job: Job) -> dict:
    import torch

    from advisor.models.loading import build_model
    from advisor.validation.split import stages

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
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    f = {p: _pre_logits(module, x[p][0]) for p in ("train", "val", "test")}
    y = {p: x[p][1].numpy() for p in f}
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on separable data
        clf.fit(f["train"], y["train"])
    loss = float(log_loss(y["train"], clf.predict_proba(f["train"]), labels=clf.classes_))
    train_acc = float(clf.score(f["train"], y["train"]))
    return {"status": "done", "reason": "", "val_acc": float(clf.score(f["val"], y["val"])), "best_val_acc": None,
            "test_acc": float(clf.score(f["test"], y["test"])), "final_train_loss": loss, "final_train_acc": train_acc,
            "history": [{"loss": loss, "train_acc": train_acc}], "seconds": time.perf_counter() - start}


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
            res = ft.train(st, PRE_LOGITS, proto, *x["train"], *x["val"], seed=job.seed, device=job.device,
                           test_h=x["test"][0], test_y=x["test"][1])
            prefix_s = 0.0
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


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ["ADVISOR_THREADS"] = str(threads)


def execute(jobs: list[Job], workers: int = 1) -> Iterator[dict]:
    """Records of ``jobs`` as they finish: in this process for ``workers == 1``, else in ``workers``
    spawned processes with ``cores // workers`` torch threads each. Only the caller stores results."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(max(1, cpu_cores() // workers),))
    pending = {pool.submit(run_job, j) for j in jobs}
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
        pool.shutdown(wait=not pending, cancel_futures=True)


# ---------------------------------------------------------------- storing runs: CSV (portable) + DuckDB

RUN_COLUMNS = ("run_key", "kind", "model", "target", "lr_backbone", "lr_head", "seed", "cut", "epochs", "batch_size", "input_size",
               "img_size_cap", "max_train", "val_fraction", "head_lr_factor", "n_train", "n_val", "n_test", "status", "reason",
               "val_acc", "best_val_acc", "test_acc", "final_train_loss", "final_train_acc", "seconds", "device", "threads",
               "model_id", "model_key", "target_path", "train_key", "val_key", "test_key", "protocol", "history",
               "bench_version", "finished_at")
_INTS = {"seed", "epochs", "batch_size", "input_size", "img_size_cap", "max_train", "n_train", "n_val", "n_test", "threads"}
_FLOATS = {"lr_backbone", "lr_head", "val_fraction", "head_lr_factor", "val_acc", "best_val_acc", "test_acc", "final_train_loss",
           "final_train_acc", "seconds"}
_JSON = {"protocol", "history"}


def _csv_cell(k: str, v) -> str:
    if v is None:
        return ""
    if k in _JSON:
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if isinstance(v, float):
        return repr(v)
    return " ".join(str(v).split()) if k == "reason" else str(v)  # one physical line per record


def _typed(row: dict) -> dict:
    rec = {}
    for k in RUN_COLUMNS:
        v = row.get(k, "")
        v = "" if v is None else v
        if v == "":
            rec[k] = None if k not in ("reason",) else ""
        elif k in _INTS:
            rec[k] = int(float(v))
        elif k in _FLOATS:
            rec[k] = float(v)
        elif k in _JSON:
            rec[k] = json.loads(v) if isinstance(v, str) else v
        else:
            rec[k] = v
    return rec


def repair_tail(path: Path) -> int:
    """Cut a torn last line (no final newline: a write interrupted by a crash) so the next append
    starts on a fresh line. Returns the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        step, pos = 1 << 16, size
        while pos > 0:
            lo = max(0, pos - step)
            fh.seek(lo)
            chunk = fh.read(pos - lo)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = lo + i + 1
                break
            pos = lo
        else:
            keep = 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return size - keep


def _csv_records(path: str | Path, key: str) -> list[dict[str, str]]:
    """The complete lines of an append-only CSV as ``column -> text``. A last line without its
    newline (torn by a crash), a line of the wrong width and a file without ``key`` in its header
    are ignored."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or key not in header:
        return []
    return [dict(zip(header, fields)) for fields in reader if len(fields) == len(header)]


def _append_line(path: str | Path, columns: tuple[str, ...], cells: Callable[[list[str]], list[str]]) -> None:
    """Append one record as one line: write, flush, fsync (the header first for a new file; an
    existing file keeps its own column order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    header = list(columns)
    if not new:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), header)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if new:
        w.writerow(header)
    w.writerow(cells(header))
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def read_runs(path: str | Path) -> list[dict]:
    """Every complete record of the runs CSV. A last line without its newline (torn by a crash) and
    any line that does not parse are ignored."""
    rows = []
    for raw in _csv_records(path, "run_key"):
        try:
            rec = _typed(raw)
        except (ValueError, json.JSONDecodeError):
            continue
        if rec["run_key"] and rec["kind"] in ("finetune", "defrost", "probe"):
            rows.append(rec)
    return rows


def append_run(path: str | Path, rec: dict) -> None:
    """Append one run record as one line of the runs CSV (crash-safe, see :func:`_append_line`)."""
    _append_line(path, RUN_COLUMNS, lambda header: [_csv_cell(k, rec.get(k)) for k in header])


# The estimators' scores of one (model, target), portable like the runs: keyed by content (model
# weights, the scored images, estimator versions, input size), so a fresh clone skips the scoring too.
SCORE_COLUMNS = ("score_key", "target", "model", "payload", "bench_version", "finished_at")


def score_key(info: "ModelInfo", score_part_key: str, estimators: tuple[str, ...]) -> str:
    from advisor.estimators import get_estimator

    versions = [(e, str(get_estimator(e).version)) for e in sorted(estimators)]
    payload = [BENCH_VERSION, info.identity, score_part_key, versions, info.img_override]
    return hashlib.sha256(cache.dumps(payload).encode()).hexdigest()[:24]


def read_scores(path: str | Path) -> dict[str, dict]:
    """``score_key -> payload`` of every complete line of the scores CSV."""
    out = {}
    for raw in _csv_records(path, "score_key"):
        try:
            out[raw["score_key"]] = json.loads(raw["payload"])
        except (KeyError, ValueError):
            continue
    return out


def append_score(path: str | Path, key: str, target: str, model: str, payload: dict) -> None:
    rec = {"score_key": key, "target": target, "model": model, "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
           "bench_version": str(BENCH_VERSION), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _append_line(path, SCORE_COLUMNS, lambda header: [rec.get(k, "") for k in header])


def _store(rec: dict) -> None:
    """One run into DuckDB's ``bench_runs``, in its own transaction; ``hyperparams`` holds the whole record."""
    with cache.transaction() as con:
        con.execute(
            "INSERT OR REPLACE INTO bench_runs (run_key, model_id, model_fp, target, train_hash, val_hash, test_hash, lr_backbone, "
            "lr_head, seed, hyperparams, status, reason, history, val_acc, best_val_acc, test_acc, n_train, n_val, n_test, seconds, "
            "device) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [rec["run_key"], rec["model_id"], rec["model_key"], rec["target_path"], rec["train_key"], rec["val_key"], rec["test_key"],
             rec["lr_backbone"], rec["lr_head"], rec["seed"], cache.dumps(rec), rec["status"], rec["reason"],
             cache.dumps(rec["history"]), rec["val_acc"], rec["best_val_acc"], rec["test_acc"], rec["n_train"], rec["n_val"],
             rec["n_test"], rec["seconds"], rec["device"]])


def _finished(keys: list[str]) -> dict[str, dict]:
    """Stored records by run key (DuckDB)."""
    if not keys or not cache.cache_path().exists():
        return {}
    with cache.transaction(read_only=True) as con:
        got = con.execute("SELECT run_key, hyperparams FROM bench_runs WHERE list_contains(?, run_key)", [keys]).fetchall()
    out = {}
    for k, payload in got:
        rec = json.loads(payload) if payload else {}
        if rec.get("kind"):
            out[k] = _typed(rec)
    return out


def import_runs(path: str | Path) -> int:
    """Store every record of the runs CSV that DuckDB lacks (one transaction); returns how many."""
    rows = {r["run_key"]: r for r in read_runs(path)}
    if not rows:
        return 0
    have = _finished(list(rows))
    new = [r for k, r in rows.items() if k not in have]
    for rec in new:
        _store(rec)
    return len(new)


# ---------------------------------------------------------------- planning


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
    plan.done = _finished(keys)
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
    from advisor.validation.split import stages

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
                                                      "n_scoring", "done_finetune", "done_defrost", "done_probe")})
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

        rows.append((model_name(m), px, f"{t['step']:.3f}" + (f" ({idle['per_model_step'][m]:.3f})" if idle else ""), runs("finetune"), runs("defrost"), runs("probe"), str(r["n_scoring"]),
                     _hours(r["finetune"] + r["defrost"] + r["probe"] + r["scoring"])))
    tot = est["total"]

    def truns(kind):
        return f"{tot[f'n_{kind}']}" + (f" ({tot[f'done_{kind}']} done)" if tot[f"done_{kind}"] else "")

    rows.append(("total", "", "", truns("finetune"), truns("defrost"), truns("probe"), str(tot["n_scoring"]), _hours(est["cpu_seconds"])))
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
    by_model = sorted(cfg.models, key=lambda m: -(pm[m]["finetune"] + pm[m]["defrost"] + pm[m]["probe"]))
    top = ", ".join(f"{model_name(m)} {(pm[m]['finetune'] + pm[m]['defrost'] + pm[m]['probe']) / cpu:.0%}" for m in by_model[:3])
    label = {"finetune": "the full fine-tunes", "defrost": "the defrost runs", "probe": "the linear probes", "scoring": "the scoring"}
    dom = max(share, key=share.get)
    pixels = "" if not s.img_size else (f"; img_size {s.img_size} gives the 224-260 px ImageNet models "
                                         f"{s.img_size ** 2 / 224 ** 2:.2f}-{s.img_size ** 2 / 260 ** 2:.2f} x their own pixels")
    lines.append(f"what dominates: {label[dom]} ({share[dom]:.0%}). Fine-tune time scales linearly with each of lrs ({len(s.backbone_lrs)}), "
                 f"seeds ({len(s.seeds)}), epochs ({s.epochs}) and max_train ({s.max_train}), and a step with the input pixels{pixels}; "
                 f"defrost time with defrost_cuts x epochs. Costliest models: {top}.")
    return "\n".join(lines)


# ---------------------------------------------------------------- the benchmark


def summarise_runs(runs: list[dict], lrs, head_lr_factor: float) -> dict:
    """Choose the lr by mean validation accuracy over seeds (ties: the first lr of the grid) and report
    the test accuracy there (mean ± population std over seeds) and the final train loss (mean over
    seeds). ``lr`` is None if every run failed."""
    per_lr = {}
    for lr in lrs:
        ok = [r for r in runs if r["lr"] == lr and r["status"] == "done" and r["test_acc"] is not None]
        losses = [r["final_train_loss"] for r in ok if r.get("final_train_loss") is not None]
        per_lr[lr] = {"val_mean": float(np.mean([r["val_acc"] for r in ok])) if ok else None,
                      "test_mean": float(np.mean([r["test_acc"] for r in ok])) if ok else None,
                      "test_std": float(np.std([r["test_acc"] for r in ok])) if ok else None,
                      "train_loss": float(np.mean(losses)) if losses else None,
                      "done": len(ok), "failed": sum(r["lr"] == lr and r["status"] != "done" for r in runs)}
    ranked = [lr for lr in lrs if per_lr[lr]["done"]]
    best = max(ranked, key=lambda lr: per_lr[lr]["val_mean"]) if ranked else None
    pl = per_lr.get(best, {})
    return {"lr_backbone": best, "lr_head": None if best is None else best * head_lr_factor,
            "val_mean": pl.get("val_mean"), "test_mean": pl.get("test_mean"), "test_std": pl.get("test_std"),
            "train_loss": pl.get("train_loss"), "seeds_done": pl.get("done", 0), "per_lr": {str(lr): v for lr, v in per_lr.items()},
            "seconds": float(sum(r["seconds"] or 0.0 for r in runs))}


def _log_record(rec: dict, log) -> None:
    if rec["kind"] == "finetune":
        what = f"fine-tune lr {rec['lr_backbone']:g} seed {rec['seed']}"
    else:
        what = f"defrost @ {rec['cut']} seed {rec['seed']}" if rec["kind"] == "defrost" else "linear probe"
    if rec["status"] == "done":
        loss = f", train loss {rec['final_train_loss']:.3f}" if rec.get("final_train_loss") is not None else ""
        log(f"{rec['model']} on {rec['target']}: {what}: val {rec['val_acc']:.3f}, test {rec['test_acc']:.3f}{loss} ({rec['seconds']:.1f} s)")
    else:
        log(f"{rec['model']} on {rec['target']}: {what}: {rec['status']} ({rec['reason']})")


def _scores(plan: Plan, log, scores_csv: str | Path | None = None) -> dict:
    """``advisor.rank`` of every model on every target's score part, each model at its benchmark
    input size (its own or the cap): {(target, model): {"cuts", "scores", "n_score", "n_classes", "extract_seconds"}}.
    A pair already in ``scores_csv`` is read from it; a new one is appended to it as it is scored."""
    from advisor.ranking.ranking import rank

    s = plan.cfg.settings
    known = read_scores(scores_csv) if scores_csv is not None else {}
    out = {}
    for t, parts in plan.parts.items():
        t0 = time.perf_counter()
        part_key = part_identity(parts.score, t)
        reused = 0
        for m in plan.cfg.models:
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
    runs = [{"lr": j.lr, "seed": j.seed, **recs[j.key]} for j in cp.jobs if j.kind == "finetune"]
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
        "ground_truth": summarise_runs(runs, s.backbone_lrs, s.head_lr_factor),
        "probe": {"test_acc": probe["test_acc"], "val_acc": probe["val_acc"], "status": probe["status"]},
        "defrost": {"profile": {c: [v["val_acc"], v["test_acc"]] for c, v in defrost.items()}, "best_cut": best},
        "scores": sc["scores"], "extract_seconds": sc["extract_seconds"],
        "runs": [{"kind": recs[j.key]["kind"], "lr": j.lr, "cut": j.cut, "seed": j.seed, "status": recs[j.key]["status"],
                  "val_acc": recs[j.key]["val_acc"], "test_acc": recs[j.key]["test_acc"],
                  "final_train_loss": recs[j.key]["final_train_loss"], "seconds": recs[j.key]["seconds"]} for j in cp.jobs],
    }


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


def bench(cfg: Config, *, report_only: bool = False, device: str | None = None, workers: int = 1,
          runs_csv: str | Path | None = RUNS_CSV, log=lambda m: None) -> list[dict]:
    """All evidence cells of ``cfg``: computed (finished runs reused) or, with ``report_only``, read back.

    Order: import the runs CSV into the cache; plan every run (models built once, no training);
    score every model on every target (a thread of this process) while the runs not done yet go to
    ``workers`` processes, each record stored as it arrives (CSV line, then its DuckDB transaction); assemble
    and store one evidence cell per (model, target)."""
    if report_only:
        return load_cells(cfg)
    from advisor.validation.validate import pick_device

    dev = pick_device(device)
    if runs_csv is not None:
        for path in (Path(runs_csv), Path(runs_csv).with_name(SCORES_CSV.name)):
            cut = repair_tail(path)
            if cut:
                log(f"{path}: dropped a torn last line ({cut} bytes) left by an interrupted write")
        n = import_runs(runs_csv)
        if n:
            log(f"imported {n} finished runs from {runs_csv}")
    plan = make_plan(cfg, dev, log)
    for t, p in plan.parts.items():
        log(f"{target_name(t)}: {p.note}")
    # Scoring (this process) overlaps the runs (worker processes): the cores are busy from the start.
    scored: dict = {}

    def score() -> None:
        try:
            scored["scores"] = _scores(plan, log, None if runs_csv is None else Path(runs_csv).with_name(SCORES_CSV.name))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
            scored["error"] = exc

    scorer = threading.Thread(target=score, name="bench-scores", daemon=True)
    scorer.start()
    recs = dict(plan.done)
    todo = [j for j in plan.jobs if j.key not in recs]
    for cp in plan.cells:
        if not any(j.key not in recs for j in cp.jobs):
            log(f"{model_name(cp.info.model_id)} on {target_name(cp.parts.spec)}: all {len(cp.jobs)} runs cached")
    if todo:
        log(f"{len(todo)} runs to do ({len(plan.jobs) - len(todo)} of {len(plan.jobs)} cached), {workers} worker(s)")
    for rec in execute(todo, workers):
        if runs_csv is not None:
            append_run(runs_csv, rec)  # first: a crash before the DuckDB commit still leaves the portable record
        _store(rec)
        recs[rec["run_key"]] = _typed(rec)
        _log_record(rec, log)
    scorer.join()
    if "error" in scored:
        raise scored["error"]
    scores = scored["scores"]
    s = cfg.settings
    cells = [_cell(cp, recs, scores[(cp.parts.spec, cp.info.model_id)], s) for cp in plan.cells]
    _store_cells(cells, s)
    return cells


GROUND_TRUTH_COLUMNS = ("target", "model", "lr_backbone", "lr_head", "val_acc_mean", "test_acc_mean", "test_acc_std", "seeds_done",
                        "final_train_loss", "probe_test_acc", "under_trained", "epochs", "input_size", "n_train", "n_val", "n_test",
                        "best_defrost_cut", "defrost_val_acc", "defrost_test_acc", "val_acc_by_lr", "test_acc_by_lr", "model_id", "target_path")


def under_trained(cell: dict) -> bool | None:
    """The fine-tuned test accuracy ended below the frozen linear probe's: the fine-tune, not the
    model, fell short (None when either is missing)."""
    g, p = cell["ground_truth"], cell.get("probe") or {}
    if g.get("test_mean") is None or p.get("test_acc") is None:
        return None
    return bool(g["test_mean"] < p["test_acc"])


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
            ut = under_trained(c)
            w.writerow([c["target_name"], c["model_name"], fmt(g["lr_backbone"]), fmt(g["lr_head"]), fmt(g["val_mean"]),
                        fmt(g["test_mean"]), fmt(g["test_std"]), g["seeds_done"], fmt(g.get("train_loss")),
                        fmt((c.get("probe") or {}).get("test_acc")), "" if ut is None else str(ut).lower(), s.epochs,
                        c.get("input_size", ""), c["n_train"], c["n_val"], c["n_test"],
                        best or "", fmt(d["profile"][best][0]) if best else "", fmt(d["profile"][best][1]) if best else "",
                        ";".join(f"{lr}:{fmt(v['val_mean'])}" for lr, v in g["per_lr"].items()),
                        ";".join(f"{lr}:{fmt(v['test_mean'])}" for lr, v in g["per_lr"].items()),
                        c["model"], c["target"]])
    return path


DEFAULT_WORKERS = 2  # capped at the cores; see benchmarks/bench_workers.md


def config_workers(path: str | Path | None = None) -> int:
    """``[run] workers`` of the config (default :data:`DEFAULT_WORKERS`), capped at the cores here."""
    cfg_path = Path(path).expanduser() if path else _packaged_config()
    try:
        raw = tomllib.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    except tomllib.TOMLDecodeError:
        raw = {}  # load_config reports the broken file
    return min(int(raw.get("run", {}).get("workers", DEFAULT_WORKERS)), cpu_cores())


def run_plan(cfg: Config, *, workers: int = 1, device: str | None = None, runs_csv: str | Path | None = RUNS_CSV,
             log=lambda m: None) -> str:
    """``advisor bench --plan``: the run counts and the estimate; reads the cache and the runs CSV,
    times a few SGD steps per model, trains and writes nothing."""
    from advisor.validation.validate import pick_device

    plan = make_plan(cfg, pick_device(device), log, csv_path=runs_csv)
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
