"""What freezing at a cut means on the real model: the frozen / trainable parameter counts, the module
names on each side and the stage order, counted on the model built from the same weights with a new
head (:func:`model_anatomy`), and how the snippet loads those weights (:func:`load_plan`).

This needs torch and a model build; the result is stored as a small JSON file per weights
fingerprint under ``$ADVISOR_HOME/decisions/`` so that a warm ``rank`` stays torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS

ANATOMY_VERSION = "2"  # bump when Anatomy's content changes: stored files carry it in their name


@dataclass
class Anatomy:
    """One model with a new ``num_classes``-way head, as the snippet builds it.

    ``frozen[cut]``: parameters frozen when freezing up to ``cut`` (it and every stage before it; at
    ``pre_logits`` everything but the new head). ``frozen_prefixes[cut]`` / ``trainable_prefixes[cut]``:
    the shortest module names covering exactly the frozen / the trainable pretrained parameters (the
    new head excluded). ``depth[cut]``: share of the stages frozen (1.0 at ``pre_logits``).
    ``traced``: the stage order was traced by :func:`advisor.validation.stages.stages`; otherwise it is the
    modules' registration order (e.g. a ViT). ``load``: how the snippet loads the weights
    (:func:`load_plan`). ``data_config``: the preprocessing advisor used."""

    model: str
    arch: str
    num_classes: int
    source_classes: int
    total: int
    head: int
    cuts: list[str]
    traced: bool
    frozen: dict[str, int]
    frozen_prefixes: dict[str, list[str]]
    trainable_prefixes: dict[str, list[str]]
    depth: dict[str, float]
    data_config: dict
    load: dict

    def trainable(self, cut: str) -> int:
        return self.total - self.frozen[cut]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def cover(chosen: set[str], names: list[str]) -> list[str]:
    """The shortest dotted prefixes that cover exactly the ``chosen`` names among ``names`` (parameter
    names, in model order), in that order: ``{"a.0.w", "a.1.w"}`` of ``["a.0.w", "a.1.w", "b.w"]``
    → ``["a"]``."""
    out: list[str] = []
    for n in names:
        if n not in chosen or any(_under(n, p) for p in out):
            continue
        parts = n.split(".")
        for i in range(1, len(parts) + 1):
            p = ".".join(parts[:i])
            if all(m in chosen for m in names if _under(m, p)):
                out.append(p)
                break
    return out


def _anatomy_file(fingerprint: str, img_size: int | None, num_classes: int) -> Path:
    from advisor.store.db import default_home

    return default_home() / "decisions" / f"{fingerprint}-{img_size or 'native'}-{num_classes}-v{ANATOMY_VERSION}.json"


def model_anatomy(resolved, *, num_classes: int, img_size: int | None = None, model_id: str | None = None) -> Anatomy:
    """Build ``resolved`` (an :class:`advisor.models.sources.Resolved`) with a ``num_classes``-way head and
    count what each cut freezes (see :class:`Anatomy`); stored per weights fingerprint, so the next
    call reads a small JSON file instead of importing torch. Raises :class:`AdvisorError` when the
    model cannot be built or has no ``reset_classifier``."""
    path = _anatomy_file(resolved.fingerprint, img_size, num_classes)
    if path.is_file():
        try:
            return Anatomy(**json.loads(path.read_text()))
        except (ValueError, TypeError):
            pass  # a damaged or foreign file: compute it again
    anatomy = _compute_anatomy(resolved, num_classes=num_classes, img_size=img_size, model_id=model_id or resolved.ref.raw)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(asdict(anatomy)))
        tmp.replace(path)
    except OSError:
        pass  # read-only home: it is computed again next time
    return anatomy


def _compute_anatomy(resolved, *, num_classes: int, img_size: int | None, model_id: str) -> Anatomy:
    import torch

    from advisor.ranking.features import cut_names
    from advisor.models.loading import build_model
    from advisor.validation.stages import stages

    loaded = build_model(resolved, img_size=img_size)
    model = loaded.module
    native = loaded.native_config or loaded.data_config
    rebuilt = bool(img_size and native.get("fixed_input_size") and tuple(native["input_size"][1:]) != (img_size, img_size))
    load = load_plan(resolved, model, rebuilt, img_size)
    source_classes = int(getattr(model, "num_classes", 0) or 0)
    if not hasattr(model, "reset_classifier"):
        raise AdvisorError(f"model '{model_id}' has no reset_classifier(), so no new head can be fitted", "use a timm architecture")
    model.reset_classifier(num_classes)
    cuts = cut_names(model)
    params = list(model.named_parameters())
    names = [n for n, _ in params]
    head_ids = {id(p) for p in model.get_classifier().parameters()}
    head_names = {n for n, p in params if id(p) in head_ids}
    numel = {n: p.numel() for n, p in params}
    id_to_name = {id(p): n for n, p in params}
    c, h, w = loaded.data_config["input_size"]
    try:
        st = stages(model, torch.zeros(2, c, h, w))
        traced = True
    except AdvisorError:
        st, traced = None, False
    frozen_sets: dict[str, set[str]] = {}
    depth: dict[str, float] = {}
    if traced:
        for cut in cuts:
            if cut == PRE_LOGITS:
                frozen_sets[cut] = set(names) - head_names
                depth[cut] = 1.0
                continue
            k = st.index(cut)
            frozen_sets[cut] = {id_to_name[id(p)] for m in st.modules[:k + 1] for p in m.parameters() if id(p) in id_to_name}
            depth[cut] = (k + 1) / len(st.modules)
    else:  # registration order: a parameter is frozen when its module comes no later than the cut's last submodule
        order = [n for n, _ in model.named_modules()]
        pos = {n: i for i, n in enumerate(order)}
        for i, cut in enumerate(cuts):
            if cut == PRE_LOGITS:
                frozen_sets[cut] = set(names) - head_names
            else:
                end = max(j for j, n in enumerate(order) if _under(n, cut))
                frozen_sets[cut] = {n for n in names if pos.get(n.rpartition(".")[0], 0) <= end} - head_names
            depth[cut] = (i + 1) / len(cuts)
    pretrained = [n for n in names if n not in head_names]
    return Anatomy(
        model=model_id, arch=resolved.arch, num_classes=num_classes, source_classes=source_classes,
        total=sum(numel.values()), head=sum(numel[n] for n in head_names), cuts=cuts, traced=traced,
        frozen={cut: sum(numel[n] for n in s) for cut, s in frozen_sets.items()},
        frozen_prefixes={cut: cover(s, names) for cut, s in frozen_sets.items()},
        trainable_prefixes={cut: cover(set(pretrained) - s, names) for cut, s in frozen_sets.items()},
        depth=depth,
        data_config={k: list(v) if isinstance(v, tuple) else v for k, v in loaded.data_config.items()
                     if k in ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")},
        load=load,
    )


def _fits(sd: dict, target: dict, plain: bool) -> bool:
    """The checkpoint loads strictly as it is: same keys and shapes; a missing BatchNorm counter is
    allowed for a plain (safetensors) dict, which torch fills in."""
    missing = [k for k in target if k not in sd]
    if any(not (plain and k.endswith("num_batches_tracked")) for k in missing):
        return False
    return all(k in target and tuple(v.shape) == tuple(target[k].shape) for k, v in sd.items())


def load_plan(resolved, model, rebuilt: bool, img_size: int | None) -> dict:
    """How the snippet loads the same weights, the plainest way timm supports:

    - ``pretrained``: hub-cache files, as advisor loads them: ``timm.create_model(arch, pretrained=True,
      pretrained_cfg_overlay=dict(file=...))`` (timm applies its own checkpoint filters);
    - ``checkpoint_path``: a file whose keys fit the architecture: ``timm.create_model(arch, checkpoint_path=...)``;
    - ``filter_fn``: a file the architecture module's ``checkpoint_filter_fn`` maps (timm's convention):
      ``timm.models.load_checkpoint(model, path, filter_fn=...)``;
    - ``advisor``: anything else (keys matched by position, a first convolution adapted to other input
      channels, position embeddings resampled, a fixed-size model rebuilt for ``--img-size``):
      advisor's own loader, :func:`advisor.models.loading.build_model`, on the same recipe."""
    import sys

    from advisor.models.loading import default_cfgs, read_state_dict

    plan = {"how": "advisor", "arch": resolved.arch, "kwargs": dict(resolved.kwargs),
            "weights": None if resolved.weights is None else str(Path(resolved.weights).expanduser().resolve()),
            "plugin_arch": resolved.arch in default_cfgs, "remap_keys": bool(resolved.remap_keys),
            "img_size": img_size if rebuilt else None, "filter_module": None, "why": ""}
    if resolved.weights is None:
        plan["why"] = "the weights are not a file"
        return plan
    if resolved.timm_pretrained:
        plan["how"] = "pretrained"
        return plan
    if resolved.remap_keys or rebuilt:
        plan["why"] = "keys matched by position" if resolved.remap_keys else f"rebuilt at {img_size} px"
        return plan
    sd = read_state_dict(Path(resolved.weights))
    target = model.state_dict()
    plain = str(resolved.weights).endswith(".safetensors")
    if _fits(sd, target, plain):
        plan["how"] = "checkpoint_path"
        return plan
    module = type(model).__module__
    filt = getattr(sys.modules.get(module), "checkpoint_filter_fn", None)
    if filt is not None:
        try:
            mapped = filt(dict(sd), model)
        except Exception:
            mapped = None
        if mapped is not None and _fits(mapped, target, plain):
            plan.update(how="filter_fn", filter_module=module)
            return plan
    plan["why"] = "the file needs advisor's key and input-channel fitting"
    return plan
