"""Portable identities of ``advisor bench``: a model by its build recipe and weight bytes, a probe part by
its image bytes and labels, the score key of a (model, target) pair; and :class:`ModelInfo`, a model as
the benchmark uses it (input size under the cap, cuts, defrost cuts). Content, not paths: a run key
made of these finds the same run on another machine (``benchmarks/bench_runs.csv``)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from advisor.bench.config import BENCH_VERSION, Settings, model_name
from advisor.data.probe import Probe
from advisor.errors import AdvisorError
from advisor.models.sources import ResolveContext, Resolved, resolve_model
from advisor.store.artifacts import dumps

_SHA: dict[tuple, str] = {}


def file_sha(path: Path) -> str:
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
    weights = file_sha(Path(resolved.weights)) if resolved.weights else resolved.fingerprint
    payload = [resolved.arch, resolved.kwargs, resolved.data_config, resolved.remap_keys, resolved.pretrained_cfg, weights]
    return hashlib.sha256(dumps(payload).encode()).hexdigest()[:20]


def part_identity(probe: Probe, spec: str) -> str:
    """A probe part by content: item names relative to the target, image bytes, labels, classes."""
    base = Path(spec)
    base = base.parent if base.is_file() else base
    h = hashlib.sha256()
    for item in probe.items:
        if isinstance(item, str):
            h.update(os.path.relpath(item, base).replace(os.sep, "/").encode() + b"\0" + file_sha(Path(item)).encode())
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


def score_key(info: ModelInfo, score_part_key: str, estimators: tuple[str, ...]) -> str:
    from advisor.estimators import get_estimator

    versions = [(e, str(get_estimator(e).version)) for e in sorted(estimators)]
    payload = [BENCH_VERSION, info.identity, score_part_key, versions, info.img_override]
    return hashlib.sha256(dumps(payload).encode()).hexdigest()[:24]
