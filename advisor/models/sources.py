"""Model sources: the plugins behind the prefixes of model ids, and what resolving an id yields.

A source (``register_model_sources`` hook, :class:`ModelSource`) turns a parsed id
(:class:`advisor.models.ids.ModelRef`) into a :class:`Resolved`: the architecture, its kwargs and the
weights file, found cheaply (no torch, no weights read), with a fingerprint used as the cache key.
:func:`advisor.models.loading.build_model` then builds it into a :class:`LoadedModel`. A source may
also offer the ids it serves without being told about them (:class:`Offer`), which ``advisor
models`` lists (:mod:`advisor.models.listing`).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from advisor.models.ids import ModelRef, parse_model_id
from advisor.models.weights import hub_offline


@dataclass
class ResolveContext:
    """Where weights may be found: a mirrored weights directory, and whether the hub is reachable."""

    weights_dir: Path | None = None
    offline: bool | None = None  # None: decided by HF_HUB_OFFLINE and a quick reachability check

    @property
    def is_offline(self) -> bool:
        return hub_offline() if self.offline is None else self.offline

    @property
    def mirror(self) -> Path | None:
        """The weights directory in effect: ``weights_dir``, else ``ADVISOR_WEIGHTS_DIR``, else None."""
        if self.weights_dir is not None:
            return self.weights_dir
        env = os.environ.get("ADVISOR_WEIGHTS_DIR", "").strip()
        return Path(env).expanduser() if env else None


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


@dataclass(frozen=True)
class Offer:
    """An id a model source serves without being told about it (its ``available(ctx)`` returns these).

    ``found_in`` says where it was found, in a word or two (``catalog``, ``weights dir``, ``hub
    cache``); ``pretrain`` the pre-training data where known. ``problem`` and ``fix``, when set, say
    why the id cannot be ranked although its weights are there, and what to write instead; such an
    offer is listed as not available and never resolved.
    """

    id: str
    found_in: str
    pretrain: str = ""
    problem: str = ""
    fix: str = ""


class ModelSource(Protocol):
    """What a model-source plugin registers (see the ``register_model_sources`` hook).

    A source may also have ``available(ctx) -> list[Offer]``: the ids it can
    serve without being told about them (catalog entries, weights-directory files, hub-cache repos),
    which ``advisor models`` lists and ``--models`` globs match. Sources without it list nothing."""

    prefix: str
    describe: str

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved: ...


# ---------------------------------------------------------------- registry of sources


def _check_source(source) -> tuple[str, ModelSource]:
    prefix = getattr(source, "prefix", None)
    if not isinstance(prefix, str) or not prefix or not all(c.isalnum() or c in "-_" for c in prefix):
        raise ValueError(f"a model source needs a prefix of letters, digits, '-' or '_', got {prefix!r}")
    if not callable(getattr(source, "resolve", None)):
        raise ValueError(f"model source '{prefix}' has no resolve(ref, ctx) method")
    return prefix, source


def registered_sources() -> dict[str, ModelSource]:
    """Registered model sources by prefix; each plugin's hook is called on its own, so a broken one
    is reported (``advisor plugins``) and a built-in prefix cannot be taken over."""
    from advisor.plugin_manager import collect_registrations

    found = collect_registrations("register_model_sources", "model source prefix", _check_source)
    return {prefix: source for prefix, (source, _) in found.items()}


def list_sources(pattern: str = "*") -> list[ModelSource]:
    """Registered model sources whose prefix matches the glob ``pattern``."""
    return [s for p, s in sorted(registered_sources().items()) if fnmatch.fnmatch(p, pattern)]


def resolve_model(model_id: str, ctx: ResolveContext | None = None) -> Resolved:
    """Find a model's weights without loading them; raises :class:`AdvisorError` for an id
    :func:`advisor.models.ids.parse_model_id` refuses and for weights that are nowhere."""
    ref = parse_model_id(model_id)
    return registered_sources()[ref.prefix].resolve(ref, ctx or ResolveContext())
