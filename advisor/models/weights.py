"""Where weights are found, without loading them: the model catalog (``registry/models.toml``), a
mirrored weights directory and its ``advisor-weights.toml`` manifest, packages that ship weights, the
Hugging Face hub cache, whether the hub is reachable, and the one error (with the exact download
command) for weights that are nowhere. The model sources (``plugins/timm_models.py``,
``plugins/hf_hub_models.py``, ``plugins/file_models.py``) are built from these pieces.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


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


# ---------------------------------------------------------------- hub cache and reachability


@dataclass(frozen=True)
class CachedSnapshot:
    """One cached revision of a model repo in the Hugging Face cache."""

    repo: str  # org/name
    revision: str  # commit hash
    refs: frozenset[str]  # e.g. {"main"}
    files: frozenset[str]  # file names in the snapshot
    path: Path

    def timm_config(self) -> dict | None:
        """The snapshot's timm ``config.json`` (one with an ``architecture``), else None."""
        try:
            cfg = json.loads((self.path / "config.json").read_text())
        except (OSError, ValueError):
            return None
        return cfg if isinstance(cfg, dict) and isinstance(cfg.get("architecture"), str) else None


def hub_cache_snapshots() -> list[CachedSnapshot]:
    """Every cached revision of every model repo in the Hugging Face cache (``HF_HUB_CACHE``, read
    when called), as huggingface_hub's ``scan_cache_dir`` reports them; [] when there is no cache.
    Repos the scan finds corrupted are left out (``hf cache scan`` shows them)."""
    from huggingface_hub import constants, scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, ValueError, OSError):
        return []
    snapshots = [CachedSnapshot(repo.repo_id, rev.commit_hash, frozenset(rev.refs), frozenset(f.file_name for f in rev.files),
                                Path(rev.snapshot_path))
                 for repo in info.repos if repo.repo_type == "model" for rev in repo.revisions]
    return sorted(snapshots, key=lambda s: (s.repo, "main" not in s.refs, s.revision))


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
