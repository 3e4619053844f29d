"""Source-domain references: a sample of the 22 domain features of the pre-training domain
(:class:`DomainReference`), shipped (``advisor.registry/domains/NAME.npz``) or built by the user
(``$ADVISOR_HOME/domains/NAME.npz``, ``advisor domain build-ref``), and which one a model's
pre-training declares.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from advisor.domain.features import FEATURE_NAMES, FEATURES_VERSION, GLCM_LEVELS, MAX_SIDE
from advisor.domain.stats import median_bandwidth
from advisor.errors import AdvisorError

DEFAULT_SOURCE = "imagenet"


@dataclass
class DomainReference:
    """A source domain's feature sample and the statistics derived from it."""

    name: str
    features: np.ndarray  # float64[N, 22]
    meta: dict
    path: str = ""
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)
    bandwidth: float = field(init=False)

    def __post_init__(self):
        self.features = np.asarray(self.features, dtype=np.float64)
        self.mean = self.features.mean(axis=0)
        sd = self.features.std(axis=0, ddof=1)
        # a feature constant over the source (e.g. std of a grey-only source) gets unit scale
        self.std = np.where(sd > 1e-12, sd, 1.0)
        self.bandwidth = median_bandwidth(self.standardise(self.features))

    def standardise(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def user_domains_dir() -> Path:
    from advisor.store.db import default_home

    return default_home() / "domains"


def shipped_path(name: str):
    """The package resource of the shipped reference ``name`` (it may not exist)."""
    return resources.files("advisor.registry").joinpath("domains", f"{name}.npz")


def is_shipped(name: str) -> bool:
    """Whether ``name`` is a source reference shipped with advisor (e.g. ``imagenet``)."""
    return shipped_path(name).is_file()


def list_references() -> list[str]:
    """Names of every usable source reference: shipped ones, then the user's ($ADVISOR_HOME/domains)."""
    names = set()
    folder = resources.files("advisor.registry").joinpath("domains")
    if folder.is_dir():
        names |= {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npz")}
    user = user_domains_dir()
    if user.is_dir():
        names |= {p.stem for p in user.glob("*.npz")}
    return sorted(names)


def read_reference_file(data: bytes | Path, name: str, where: str) -> DomainReference:
    """A reference from .npz bytes or a file (``where``: how to name it in an error)."""
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as z:
            feats = z["features"]
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise AdvisorError(f"source reference '{name}' at {where} is unreadable ({type(exc).__name__})",
                           f"rebuild it: advisor domain build-ref {name} FOLDER --force") from None
    if feats.ndim != 2 or feats.shape[1] != len(FEATURE_NAMES) or meta.get("features_version") != FEATURES_VERSION:
        raise AdvisorError(f"source reference '{name}' at {where} was built with another feature definition",
                           f"rebuild it: advisor domain build-ref {name} FOLDER --force")
    return DomainReference(name=name, features=feats, meta=meta, path=where)


def load_reference(name: str) -> DomainReference:
    """The source reference called ``name``: the user's ($ADVISOR_HOME/domains/NAME.npz) if any,
    else the one shipped in ``advisor.registry/domains``."""
    user = user_domains_dir() / f"{name}.npz"
    if user.is_file():
        return read_reference_file(user, name, str(user))
    shipped = shipped_path(name)
    if shipped.is_file():
        return read_reference_file(shipped.read_bytes(), name, f"advisor.registry/domains/{name}.npz")
    known = list_references()
    raise AdvisorError(f"no source reference '{name}' (known: {', '.join(known) or 'none'})",
                       f"build one from a folder of source-domain images: advisor domain build-ref {name} FOLDER")


def save_reference(name: str, features: np.ndarray, meta: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "name": name, "features_version": FEATURES_VERSION, "feature_names": list(FEATURE_NAMES),
            "glcm_levels": GLCM_LEVELS, "max_side": MAX_SIDE, "n_images": len(features)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, features=np.asarray(features, dtype=np.float64), meta=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)
    return path


def valid_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise AdvisorError(f"reference name '{name}' is not allowed", "use letters, digits, '.', '_' or '-' (e.g. imagenet, places365)")
    return name


def source_for_model(model_id: str) -> str:
    """The source reference of the pre-training domain a model declares, read from a catalog entry's
    ``pretrain`` text or the timm tag: CIFAR-10/100 → ``cifar10``/``cifar100``; a catalog entry whose
    ``domain`` is not photos → its data set's name (``mnist``, ``svhn``, ``fer2013``, ...); otherwise
    imagenet (ImageNet tags ``.in1k``, ``.in22k``, ...; timm's default pre-training)."""
    from advisor.models.weights import catalog_entry

    entry = catalog_entry(model_id) or {}
    text = (entry.get("pretrain") or model_id).lower()
    m = re.search(r"cifar-?(10|100)\b", text)
    if m:
        return f"cifar{m.group(1)}"
    # the catalog's `domain` is a description ("photos", "digits", "text images"), not a reference
    # name: photo models are ImageNet's; the others are named after their data set (mnist, svhn, ...)
    described = str(entry.get("domain", "")).split(" (")[0].strip()
    if described and described not in ("photos", "tiny photos"):
        m = re.match(r"[a-z0-9][a-z0-9-]*", text)
        if m:
            return m.group(0)
    return DEFAULT_SOURCE


def model_source(model_id: str) -> tuple[str, str | None]:
    """``advisor domain --model ID``: the model's pre-training domain and a note when it is assumed,
    or a one-line error (with a did-you-mean) for an id that names no known model. Catalog names and
    timm architectures (with or without a pretrained tag) are known; ids of another source
    (``hf-hub:``, ``file:``, ``local-dir:``, a plugin's) are accepted as given."""
    from advisor.models.ids import parse_model_id
    from advisor.models.weights import catalog, catalog_entry

    ref = parse_model_id(model_id)
    entry = catalog_entry(model_id)
    src = source_for_model(model_id)
    declared = bool(entry and entry.get("domain")) or src != DEFAULT_SOURCE or re.search(r"(in1k|in12k|in21k|in22k|imagenet)", model_id.lower())
    note = None if declared else (f"'{model_id}' declares no pre-training domain: the {DEFAULT_SOURCE} reference is assumed "
                                  "(pass --source NAME to choose another)")
    if entry is not None or ref.prefix != "timm":
        return src, note
    import timm

    if timm.is_model(ref.name):
        return src, note
    import difflib

    names = list(dict.fromkeys([n for n in catalog() if n != "defaults"] + timm.list_models() + timm.list_models(pretrained=True)))
    close = difflib.get_close_matches(ref.name, names, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "") + \
        "pass a catalog name (registry/models.toml) or a timm model name, or name the domain with --source (see `advisor domain refs`)"
    raise AdvisorError(f"unknown model '{model_id}' for --model", hint)
