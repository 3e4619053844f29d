"""Model sources ``hf-hub:org/repo[@revision]`` and ``local-dir:/path`` — timm's own id forms.

Both read a timm ``config.json`` (``architecture``, ``num_classes``, ``model_args``,
``pretrained_cfg``) and ``model.safetensors`` (or ``pytorch_model.bin``, loaded weights-only).
Hub files come from the local cache when offline (``HF_HUB_OFFLINE=1`` or no network); no remote
code is ever run. ``hf-hub`` lists (``advisor models``) the timm-style repos of the hub cache, except
the ``timm/`` repos cached at ``main``, which the ``timm`` source lists by their timm names.
"""

from __future__ import annotations

import json
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.hookspecs import hookimpl
from advisor.models.ids import ModelRef
from advisor.models.sources import Offer, ResolveContext, Resolved
from advisor.models.weights import file_fingerprint, hub_cache_snapshots, hub_download_hint, missing_weights_error

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def _from_config(ref: ModelRef, config: Path, weights: Path, origin: str) -> Resolved:
    try:
        cfg = json.loads(config.read_text())
        arch = cfg["architecture"]
    except (json.JSONDecodeError, KeyError, OSError) as exc:
        raise AdvisorError(f"'{config}' is not a timm config.json ({type(exc).__name__}: {exc})", "it needs at least an 'architecture' key") from None
    kwargs = dict(cfg.get("model_args", {}))
    if "num_classes" in cfg:
        kwargs.setdefault("num_classes", cfg["num_classes"])
    pretrained_cfg = dict(cfg.get("pretrained_cfg", {}))
    return Resolved(
        ref=ref, arch=arch, kwargs=kwargs, weights=weights, weights_from=origin, pretrained_cfg=pretrained_cfg or None,
        fingerprint=file_fingerprint(arch, kwargs, str(config), path=weights),
    )


class HfHubSource:
    prefix = "hf-hub"
    describe = "Hugging Face hub repos with a timm config (hf-hub:timm/resnet18.a1_in1k[@revision]); cache-first"

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved:
        from huggingface_hub import hf_hub_download

        repo, _, revision = ref.name.partition("@")
        if repo.count("/") != 1:
            raise AdvisorError(f"hf-hub id '{ref.raw}' is not of the form hf-hub:org/repo", "e.g. hf-hub:timm/resnet18.a1_in1k")
        offline = ctx.is_offline
        files = {}
        for wanted in ("config.json",) + WEIGHT_FILES:
            try:
                files[wanted] = Path(hf_hub_download(repo, wanted, revision=revision or None, local_files_only=offline))
            except Exception as exc:  # not cached (offline), missing file, or no such repo
                files[wanted] = exc
            if wanted != "config.json" and isinstance(files[wanted], Path):
                break
        config = files["config.json"]
        weights = next((files[w] for w in WEIGHT_FILES if isinstance(files.get(w), Path)), None)
        if not isinstance(config, Path) or weights is None:
            where = "hub cache (offline)" if offline else "hub"
            raise missing_weights_error(ref.raw, [f"{where} for {repo}: {type(config if not isinstance(config, Path) else files[WEIGHT_FILES[-1]]).__name__}"],
                                        download=hub_download_hint(repo, ["config.json", WEIGHT_FILES[0]], revision or None),
                                        mirror="put config.json + model.safetensors in a folder and rank it as local-dir:/path")
        return _from_config(ref, config, weights, f"hub {'cache ' if offline else ''}{repo}")

    def available(self, ctx: ResolveContext) -> list[Offer]:
        """Cached revisions with a timm config.json: ``hf-hub:org/repo`` at ``main``, else ``@<commit>``."""
        offers = []
        for snap in hub_cache_snapshots():
            at_main = "main" in snap.refs
            if (snap.repo.startswith("timm/") and at_main and snap.files & set(WEIGHT_FILES)) or snap.timm_config() is None:
                continue
            offers.append(Offer(f"hf-hub:{snap.repo}" + ("" if at_main else f"@{snap.revision}"), "hub cache"))
        return offers


class LocalDirSource:
    prefix = "local-dir"
    describe = "a folder with timm's config.json + model.safetensors (local-dir:/path/to/model)"

    def resolve(self, ref: ModelRef, ctx: ResolveContext) -> Resolved:
        folder = Path(ref.name).expanduser()
        if not folder.is_dir():
            raise AdvisorError(f"local-dir '{folder}' is not a folder", "pass local-dir:/path/to/folder containing config.json and model.safetensors")
        config = folder / "config.json"
        weights = next((folder / w for w in WEIGHT_FILES if (folder / w).is_file()), None)
        if not config.is_file() or weights is None:
            raise AdvisorError(f"local-dir '{folder}' lacks config.json or model.safetensors", "save the model with timm.models.save_for_hf(model, folder)")
        return _from_config(ref, config, weights, f"local dir {folder}")


@hookimpl
def register_model_sources(register):
    register(HfHubSource())
    register(LocalDirSource())
