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
import re
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


class ModelSource(Protocol):
    """What a model-source plugin registers (see the ``register_model_sources`` hook).

    A source may also have ``available(ctx) -> list[advisor.models.model_list.Offer]``: the ids it can
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


def _collect_sources() -> dict[str, ModelSource]:
    """Registered model sources by prefix; each plugin's hook is called on its own, so a broken one
    is reported (``advisor plugins``) and a built-in prefix cannot be taken over."""
    from advisor.plugin_manager import collect_registrations

    found = collect_registrations("register_model_sources", "model source prefix", _check_source)
    return {prefix: source for prefix, (source, _) in found.items()}


def list_sources(pattern: str = "*") -> list[ModelSource]:
    """Registered model sources whose prefix matches the glob ``pattern``."""
    return [s for p, s in sorted(_collect_sources().items()) if fnmatch.fnmatch(p, pattern)]


ID_FORMS = "timm names (resnet50.a1_in1k), hf-hub:org/repo, local-dir:/path or file:/path/w.safetensors?arch=NAME"
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_QUERY_KWARG = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def split_model_ids(values: list[str] | str) -> list[str]:
    """Model ids from ``--models`` values, each possibly a comma-separated list.

    A comma separates two ids, except where what follows cannot start an id:

    - inside an id's ``?query`` part, a comma followed by ``key=`` continues the query
      (``file:/w.safetensors?arch=mobilenetv2_100,pad_type=same``, the comma form of ``&``);
    - inside the path of a ``file:`` or ``local-dir:`` id (before its ``?``), a comma followed by
      text with a ``/`` or ``?`` and no ``prefix:`` continues the path (``file:/data/w,v2.pt?arch=x``).

    A model id never starts with ``key=``, and one without a prefix is a timm or catalog name, which
    has neither ``/`` nor ``?``; so ``file:/a?arch=x,k=1,resnet50`` is two ids, ``file:/a?arch=x,k=1``
    and ``resnet50``."""
    ids: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        current: str | None = None
        for piece in value.split(","):
            if current is not None and _continues(current, piece):
                current += "," + piece
                continue
            if current is not None and current.strip():
                ids.append(current.strip())
            current = piece
        if current is not None and current.strip():
            ids.append(current.strip())
    return ids


def model_ids_option(values: list[str], weights_dir: Path | None = None) -> list[str]:
    """``--models`` values → ids (:func:`split_model_ids`), each glob (``'tf_efficientnet_lite*'``)
    replaced by the models available offline that it matches, as ``advisor models`` lists them with
    ``weights_dir`` (:func:`advisor.models.model_list.expand_model_ids`). Raises :class:`AdvisorError` when
    the option is given but names no model (``-m ""``, ``-m ,``: not the same as leaving ``--models``
    out, the defaults) and when a glob matches no available model."""
    from advisor.models.model_list import expand_model_ids

    ids = split_model_ids(values)
    if values and not ids:
        raise AdvisorError(f"--models {', '.join(repr(v) for v in values)} names no model",
                           "pass ids like tf_efficientnet_lite0,resnet20_cifar10, or leave --models out for the defaults")
    return expand_model_ids(ids, weights_dir=weights_dir)


def _continues(current: str, piece: str) -> bool:
    """Whether ``piece`` (after a comma) belongs to the id ``current`` (see :func:`split_model_ids`)."""
    if "?" in current:
        return bool(_QUERY_KWARG.match(piece))
    in_path = current.strip().startswith(("file:", "local-dir:"))
    head, colon, _ = piece.strip().partition(":")
    has_prefix = bool(colon) and _PREFIX.fullmatch(head) is not None
    return in_path and not has_prefix and ("/" in piece or "?" in piece)


def parse_model_id(model_id: str) -> ModelRef:
    """``prefix:rest`` for a registered source prefix; an id without one is a timm name.

    Refused with a one-line :class:`AdvisorError` (never passed on to timm or the hub): an unknown
    prefix (``hf_hub:org/repo``: did you mean ``hf-hub:``), and a bare path (``/w/x.safetensors``,
    ``./my_model``: use ``file:`` for a weights file, ``local-dir:`` for a timm folder)."""
    model_id = model_id.strip()
    if not model_id:
        raise AdvisorError("empty model id", f"pass ids like {ID_FORMS}")
    sources = _collect_sources()
    prefix, sep, rest = model_id.partition(":")
    if sep and prefix in sources:
        if prefix == "timm":
            _refuse_paths(rest)
        return ModelRef(model_id, prefix, rest)
    if sep and _PREFIX.fullmatch(prefix) and len(prefix) > 1:
        import difflib

        known = sorted(sources)
        canon = {p.replace("_", "-").lower(): p for p in known}
        close = canon.get(prefix.replace("_", "-").lower()) or next(iter(difflib.get_close_matches(prefix, known, n=1)), None)
        raise AdvisorError(
            f"unknown model source prefix '{prefix}:' in model id '{model_id}'",
            (f"did you mean '{close}:{rest}'? " if close else "")
            + f"registered prefixes: {', '.join(p + ':' for p in known)} (a timm name needs no prefix)",
        )
    _refuse_paths(model_id)
    return ModelRef(model_id, "timm", model_id)


def _refuse_paths(model_id: str) -> None:
    """A model id that is a path on disk, or is written like one, is not a timm name."""
    path = Path(model_id).expanduser()
    folder_hint = "a folder with config.json + model.safetensors (timm's save_for_hf layout) is local-dir:{p}"
    file_hint = "a weights file is file:{p}?arch=NAME (NAME: the timm architecture it was trained with)"
    looks_like_path = "/" in model_id or "\\" in model_id or model_id.startswith((".", "~")) or path.suffix in WEIGHT_SUFFIXES
    if not looks_like_path:  # a bare word is a timm or catalog name, even if a file of that name is here
        return
    try:
        exists = path.exists()
    except OSError:  # e.g. a name too long for the file system
        exists = False
    if exists:
        p = str(path)
        if path.is_dir():
            hint = folder_hint.format(p=p) if (path / "config.json").is_file() else \
                f"{folder_hint.format(p=p)}; {file_hint.format(p=p + '/<weights>.safetensors')}"
        else:
            hint = file_hint.format(p=p)
        raise AdvisorError(f"model id '{model_id}' is a path, not a model id", f"say what it is: {hint}")
    if model_id.count("/") != 1 or model_id.startswith(("/", ".", "~")) or path.suffix in WEIGHT_SUFFIXES:
        how = f"file:{model_id}?arch=NAME" if path.suffix in WEIGHT_SUFFIXES else \
            f"file:{model_id}?arch=NAME (a weights file) or local-dir:{model_id} (a timm folder)"
        raise AdvisorError(f"model id '{model_id}' looks like a path, and nothing exists there",
                           f"fix the path and write it as {how}")
    raise AdvisorError(f"model id '{model_id}' looks like a Hugging Face hub repo, not a timm name",
                       f"write hf-hub:{model_id} (a repo with a timm config.json), or the timm name without its org")


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


def weights_manifest(weights_dir: Path) -> dict[str, dict]:
    """The entries of a weights directory's ``advisor-weights.toml`` (catalog format); {} without one.
    Raises :class:`AdvisorError` when it is not valid TOML."""
    manifest = weights_dir / "advisor-weights.toml"
    if not manifest.is_file():
        return {}
    try:
        entries = tomllib.loads(manifest.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise AdvisorError(f"weights manifest '{manifest}' is not valid TOML: {exc}", "fix the file or remove it") from None
    return {k: v for k, v in entries.items() if isinstance(v, dict)}


def weights_dir_entry(weights_dir: Path, name: str) -> tuple[Path, dict] | None:
    """Look ``name`` up in a mirrored weights directory: its ``advisor-weights.toml`` manifest,
    the catalog's file names, then ``name.safetensors`` / ``name.*.safetensors`` (and .pth/.bin)."""
    entries = weights_manifest(weights_dir)
    if entries:
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


def missing_weights_error(model_id: str, looked: list[str], download: str = "", no_hub: str = "", mirror: str = "") -> AdvisorError:
    """The one-line error for a model whose weights are nowhere it looked. Its hint says exactly how
    to get them: ``download``, the command for its hub repo (:func:`hub_download_hint`), or
    ``no_hub``, why no hub has them; then ``mirror``, how to use a local copy (default: a mirrored
    weights directory)."""
    mirror = mirror or "mirror them in a folder and pass --weights-dir DIR (or set ADVISOR_WEIGHTS_DIR)"
    if download:
        hint = f"{download}; or {mirror}"
    elif no_hub:
        hint = f"{no_hub}: {mirror}"
    else:
        hint = f"download them once while online so the hub cache serves them with HF_HUB_OFFLINE=1, or {mirror}"
    return AdvisorError(f"no weights for model '{model_id}' (looked in: {'; '.join(looked)})", hint)


@lru_cache(maxsize=1)
def hub_cli() -> str:
    """The command-line tool the installed huggingface_hub ships: ``hf`` (1.0 and later), else
    ``huggingface-cli``."""
    from importlib import metadata

    try:
        scripts = {ep.name for ep in metadata.distribution("huggingface_hub").entry_points if ep.group == "console_scripts"}
    except metadata.PackageNotFoundError:
        scripts = set()
    return "hf" if "hf" in scripts or "huggingface-cli" not in scripts else "huggingface-cli"


def hub_download_hint(repo: str, files: tuple[str, ...] | list[str] = (), revision: str | None = None) -> str:
    """How to put a hub repo's files in the cache once, as the exact command of the installed
    huggingface_hub (:func:`hub_cli`), e.g. ``hf download timm/resnet50.a1_in1k model.safetensors``."""
    command = " ".join([hub_cli(), "download", repo, *files] + (["--revision", revision] if revision else []))
    return f"download them once while online: `{command}` (the hub cache then serves them, also with HF_HUB_OFFLINE=1)"
