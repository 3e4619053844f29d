"""``advisor bench``'s configuration: the protocol :class:`Settings` (every field part of the evidence
keys), the :class:`Config` read from ``registry/bench.toml`` and the command line, and the checks that
fail before any work. How the benchmark runs is described in :mod:`advisor.bench.run`.
Size: ~320 lines; each setting, its parser and its check sit together, so a new setting is added in one place."""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import tomllib

from advisor.data.probe import load_probe
from advisor.errors import AdvisorError
from advisor.models.sources import ResolveContext, resolve_model
from advisor.scale.executor import cpu_cores

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
    head_init: str = "random"  # fine-tunes: "random" head, or "probe" = LP-FT (Kumar et al. 2022)
    # fine-tunes' BatchNorm modes: "train" updates the statistics, "frozen" keeps the pretrained ones. A mode alone
    # runs at every lr of backbone_lrs, "mode@lr" at that lr only; the (mode, lr) settings are chosen on validation
    batchnorm: tuple[str, ...] = ("train",)

    def as_dict(self) -> dict:
        return asdict(self)

    def grid(self) -> list[tuple[str, float]]:
        """The fine-tunes' settings, (BatchNorm mode, backbone lr) in order: each ``batchnorm`` entry expanded
        (a mode alone over ``backbone_lrs``, ``mode@lr`` as itself)."""
        out = []
        for entry in self.batchnorm:
            mode, _, lr = entry.partition("@")
            out += [(mode, float(lr))] if lr else [(mode, v) for v in self.backbone_lrs]
        return out

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


def setting_label(mode: str, lr: float) -> str:
    """A fine-tune setting as text: ``frozen@0.001``."""
    return f"{mode}@{lr:g}"


def parse_batchnorm(value) -> tuple[str, ...]:
    """``--batchnorm``: comma-separated entries (a TOML string or list in the config), each a mode, ``train``
    or ``frozen`` (run at every lr of the grid), or ``mode@lr`` (that one setting), lower-cased, in the order
    given. Empty entries lists, unknown modes, a bad lr and an entry that repeats a setting are a one-line error."""
    from advisor.validation.finetune import BATCHNORM_MODES

    items = value if isinstance(value, (list, tuple)) else str(value).split(",")
    entries = [str(v).strip().lower() for v in items if str(v).strip()]
    hint = '--batchnorm train,frozen@0.001 (or batchnorm = ["train", "frozen@0.001"] under [protocol] in the config)'
    if not entries:
        raise AdvisorError("--batchnorm (or batchnorm under [protocol] in the config) is empty", f"give modes ({', '.join(BATCHNORM_MODES)}), each alone or as mode@lr, e.g. {hint}")
    out = []
    for entry in entries:
        mode, at, lr = (p.strip() for p in entry.partition("@"))
        if mode not in BATCHNORM_MODES:
            raise AdvisorError(f"batchnorm '{mode or entry}' is not one of {', '.join(BATCHNORM_MODES)}", f"e.g. {hint}")
        if at:
            try:
                rate = float(lr)
            except ValueError:
                rate = math.nan
            if not (rate > 0 and math.isfinite(rate)):
                raise AdvisorError(f"--batchnorm '{entry}': '{lr}' is not a positive learning rate", f"e.g. {hint}")
            out.append(setting_label(mode, rate))
        else:
            out.append(mode)
    if len(set(out)) != len(out):
        raise AdvisorError(f"--batchnorm repeats an entry: {', '.join(out)}", f"give each once, e.g. {hint}")
    return tuple(out)


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
                defrost_seed: int | None = None, weights_dir: str | Path | None = None,
                head_init: str | None = None, batchnorm: str | None = None) -> Config:
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
        head_init=str(head_init if head_init is not None else proto.get("head_init", Settings.head_init)).strip().lower(),
        batchnorm=parse_batchnorm(batchnorm if batchnorm is not None else proto.get("batchnorm", Settings.batchnorm)),
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
    _distinct_names(list(dict.fromkeys(target_paths)), target_name, "targets", "a distinct folder or file name (e.g. a symlink: ln -s PATH site_b)")
    _distinct_names(models, model_name, "models", "weight files with distinct names")
    return Config(models, list(dict.fromkeys(target_paths)), s, wd, str(cfg_path))


def _distinct_names(specs: list[str], name, what: str, fix: str) -> None:
    """The report and the ground truth name each target and model by its short name: two with one name
    would merge there, so that is a one-line error."""
    seen: dict[str, str] = {}
    for spec in specs:
        other = seen.setdefault(name(spec), spec)
        if other != spec:
            raise AdvisorError(f"{what} '{other}' and '{spec}' would both be '{name(spec)}' in the report and the ground truth",
                               f"give each {fix}")


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
    from advisor.validation.finetune import HEAD_INITS

    if s.head_init not in HEAD_INITS:
        raise AdvisorError(f"head_init '{s.head_init}' is not one of {', '.join(HEAD_INITS)}",
                           '--head-init probe (LP-FT), or head_init = "probe" under [protocol] in the config')
    if len(set(s.backbone_lrs)) != len(s.backbone_lrs):
        raise AdvisorError(f"--lrs repeats a learning rate: {', '.join(f'{v:g}' for v in s.backbone_lrs)}",
                           "give each once, e.g. --lrs 0.01,0.001")
    grid = s.grid()
    if len(set(grid)) != len(grid):
        twice = next(g for g in grid if grid.count(g) > 1)
        raise AdvisorError(f"the fine-tune grid has {setting_label(*twice)} twice (--batchnorm {','.join(s.batchnorm)} with --lrs "
                           f"{','.join(f'{v:g}' for v in s.backbone_lrs)})", "give a mode alone (every lr) or as mode@lr, not both")
    if len(set(s.seeds)) != len(s.seeds):
        raise AdvisorError(f"--seeds repeats a seed: {list(s.seeds)}", "give distinct seeds, e.g. --seeds 0,1")


def check_target(spec: str) -> None:
    """A target must exist and be labelled (any folder, .csv or .npz a user has)."""
    if not Path(spec).exists():
        raise AdvisorError(f"target '{spec}' does not exist", "pass existing folders or .npz files to --targets (or set ADVISOR_SHARED)")
    probe = load_probe(spec, split="train", min_classes=1)
    if probe.labels is None:
        raise AdvisorError(f"target '{spec}' has no labels", "fine-tuning needs labels: one sub-folder per class, a path,label CSV or npz labels")
    if probe.num_classes < 2:
        raise AdvisorError(f"target '{spec}' has a single class ({(probe.class_names or ['?'])[0]!r})",
                           "a benchmark target needs at least 2 labelled classes: add a sub-folder per class")


def target_name(spec: str) -> str:
    p = Path(spec)
    return p.stem if p.suffix.lower() in (".npz", ".csv") else p.name


def model_name(model_id: str) -> str:
    """A short display name: the file stem for ``file:`` ids, the repo for hub ids, else the id."""
    if model_id.startswith("file:"):
        return Path(model_id[5:].split("?")[0]).stem
    return model_id.split("/")[-1] if model_id.startswith(("hf-hub:", "local-dir:")) else model_id


DEFAULT_WORKERS = 2  # capped at the cores; see benchmarks/bench_workers.md


def config_workers(path: str | Path | None = None) -> int:
    """``[run] workers`` of the config (default :data:`DEFAULT_WORKERS`), capped at the cores here."""
    cfg_path = Path(path).expanduser() if path else _packaged_config()
    try:
        raw = tomllib.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    except tomllib.TOMLDecodeError:
        raw = {}  # load_config reports the broken file
    return min(int(raw.get("run", {}).get("workers", DEFAULT_WORKERS)), cpu_cores())
