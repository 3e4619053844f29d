"""Model ids, model sources and loading weights — the registry behind ``--models``.

A model id is ``prefix:rest`` where the prefix names a registered source (``timm``, ``hf-hub``,
``local-dir``, ``file``, or a plugin's); an id without a known prefix is a timm name. Resolving an
id is cheap (no torch, no weights read) and yields a fingerprint used as the cache key; loading
builds the module and reads the weights.
"""

from __future__ import annotations

import fnmatch
import hashlib
import importlib.util
import os
import socket
import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

from advisor.errors import AdvisorError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


@dataclass(frozen=True)
class ModelRef:
    """A parsed model id: ``prefix`` selects the source, ``name`` is the rest, ``raw`` what was typed."""

    raw: str
    prefix: str
    name: str


@dataclass
class ResolveContext:
    """Where weights may be found: a mirrored weights directory, and whether the hub is reachable."""

    weights_dir: Path | None = None
    offline: bool | None = None  # None: decided by HF_HUB_OFFLINE and a quick reachability check

    @property
    def is_offline(self) -> bool:
        return hub_offline() if self.offline is None else self.offline


@dataclass(frozen=True)
class Resolved:
    """Everything needed to build a model, found without loading it."""

    ref: ModelRef
    arch: str
    kwargs: dict = field(default_factory=dict)
    weights: Path | None = None  # None: built with timm's own pretrained loading (hub cache)
    weights_from: str = ""  # human-readable origin: 'weights-dir', 'hub cache', 'package ...'
    remap_keys: bool = False  # packaged state dicts have other key names, same order as timm's
    timm_pretrained: bool = False  # hub files: let timm load them (applies its checkpoint filters)
    data_config: dict = field(default_factory=dict)  # preprocessing overrides
    pretrained_cfg: dict | None = None  # from a hub/local-dir config.json
    pretrain: str = ""
    fingerprint: str = ""


@dataclass
class LoadedModel:
    """A built model in eval mode with timm's feature API, plus its preprocessing config."""

    resolved: Resolved
    module: Any  # torch.nn.Module with feature_info / forward_intermediates / forward_head
    data_config: dict  # input_size, mean, std, interpolation, crop_pct, crop_mode (after --img-size)
    native_config: dict | None = None  # the model's own preprocessing, before --img-size

    @property
    def id(self) -> str:
        return self.resolved.ref.raw


class ModelSource(Protocol):
    """What a model-source plugin registers (see the ``register_model_sources`` hook)."""

    prefix: str
    describe: str

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved: ...


# ---------------------------------------------------------------- registry of sources


def _collect_sources() -> dict[str, ModelSource]:
    from advisor.plugin_manager import load_plugins

    found: dict[str, ModelSource] = {}

    def register(source: ModelSource) -> None:
        if source.prefix in found:
            raise ValueError(f"model source prefix {source.prefix!r} registered twice")
        found[source.prefix] = source

    load_plugins().hook.register_model_sources(register=register)
    return found


def list_sources(pattern: str = "*") -> list[ModelSource]:
    """Registered model sources whose prefix matches the glob ``pattern``."""
    return [s for p, s in sorted(_collect_sources().items()) if fnmatch.fnmatch(p, pattern)]


def parse_model_id(model_id: str) -> ModelRef:
    model_id = model_id.strip()
    if not model_id:
        raise AdvisorError("empty model id", "pass ids like tf_efficientnet_lite0, hf-hub:org/repo or file:/path/w.safetensors?arch=NAME")
    prefix, sep, rest = model_id.partition(":")
    if sep and prefix in _collect_sources():
        return ModelRef(model_id, prefix, rest)
    return ModelRef(model_id, "timm", model_id)


def resolve_model(model_id: str, ctx: ResolveContext | None = None) -> Resolved:
    """Find a model's weights without loading them; raises :class:`AdvisorError` if there are none."""
    ref = parse_model_id(model_id)
    resolved = _collect_sources()[ref.prefix].resolve(ref, ctx or ResolveContext())
    return resolved


# ---------------------------------------------------------------- catalog and weights directory


@lru_cache(maxsize=None)
def catalog() -> dict[str, dict]:
    """The model catalog shipped in ``registry/models.toml`` (see that file for the keys)."""
    text = resources.files("advisor.registry").joinpath("models.toml").read_text()
    return tomllib.loads(text)


def default_models() -> list[str]:
    return list(catalog()["defaults"]["models"])


def catalog_entry(name: str) -> dict | None:
    entry = catalog().get(name)
    return entry if entry is not None and name != "defaults" else None


def weights_dir_entry(weights_dir: Path, name: str) -> tuple[Path, dict] | None:
    """Look ``name`` up in a mirrored weights directory: its ``advisor-weights.toml`` manifest,
    the catalog's file names, then ``name.safetensors`` / ``name.*.safetensors`` (and .pth/.bin)."""
    manifest = weights_dir / "advisor-weights.toml"
    if manifest.is_file():
        try:
            entries = tomllib.loads(manifest.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise AdvisorError(f"weights manifest '{manifest}' is not valid TOML: {exc}", "fix the file or remove it") from None
        entry = entries.get(name)
        if entry is not None:
            for f in entry.get("files", []):
                if (weights_dir / f).is_file():
                    return weights_dir / f, entry
    entry = catalog_entry(name) or {}
    candidates = list(entry.get("files", []))
    candidates += [name + s for s in WEIGHT_SUFFIXES]
    for f in candidates:
        if (weights_dir / f).is_file():
            return weights_dir / f, entry
    tagged = sorted(p for s in WEIGHT_SUFFIXES for p in weights_dir.glob(f"{name}.*{s}"))
    if tagged:
        return tagged[0], entry
    return None


def packaged_weights(entry: dict) -> Path | None:
    """The weights file inside an installed package that ships them (see ``package`` in the catalog)."""
    package = entry.get("package")
    if not package:
        return None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / entry.get("package_file", "")
    return path if path.is_file() else None


def file_fingerprint(*parts: Any, path: Path | None = None) -> str:
    """A cheap, stable key for built weights: the build recipe plus the file's path, size and mtime."""
    h = hashlib.sha256(repr(parts).encode())
    if path is not None:
        st = path.stat()
        h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:20]


# ---------------------------------------------------------------- hub reachability


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def _hub_unreachable() -> bool:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = host.partition(":")
    try:  # one DNS lookup + TCP connect instead of the hub client's 20–50 s of retries
        socket.create_connection((host, int(port or 443)), timeout=1.5).close()
        return False
    except OSError:
        return True


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub cannot be reached within 1.5 s."""
    return _env_true("HF_HUB_OFFLINE") or _hub_unreachable()


def with_img_size(data_config: dict, img_size: int | None, model_id: str) -> dict:
    """``data_config`` with its input size set to ``img_size`` × ``img_size`` (channels kept).

    Raises :class:`AdvisorError` for a model with a fixed input size (``fixed_input_size`` in its
    preprocessing config: e.g. a classifier that reads a flattened map of a given size) when
    ``img_size`` is not that size."""
    if img_size is None:
        return data_config
    chans, h, w = data_config["input_size"]
    if data_config.get("fixed_input_size") and (h, w) != (img_size, img_size):
        raise AdvisorError(
            f"model '{model_id}' takes only {h}x{w} px input (its layers are sized for it), so --img-size {img_size} cannot apply to it",
            "drop --img-size, or rank that model in a separate run without it",
        )
    return {**data_config, "input_size": (chans, img_size, img_size)}


def missing_weights_error(model_id: str, looked: list[str]) -> AdvisorError:
    return AdvisorError(
        f"no weights for model '{model_id}' (looked in: {'; '.join(looked)})",
        "download them once while online (e.g. `hf download timm/<name>`) so the hub cache serves "
        "them with HF_HUB_OFFLINE=1, or mirror them in a folder and pass --weights-dir DIR "
        "(or set ADVISOR_WEIGHTS_DIR)",
    )
