"""Split a timm model at a cut into a frozen prefix and a trainable suffix.

Validation fine-tunes (Gerace et al. 2023's layer-wise defrosting, Plested & Gedeon 2019's transfer protocols) keep the
layers before a cut fixed and train the rest. To do that cheaply the prefix is run once per image
and only the suffix is trained (Gerace et al. 2023, "Efficient Defrosting Protocol"), which needs the model as
a sequence of stages. timm has no generic "forward from layer k" API, so the sequence is found by
watching ``forward_features``: the model's direct children are hooked (and, for cuts inside a
container such as ``blocks.2``, that container's children instead) and recorded in call order.
The sequence is accepted only if running it reproduces ``forward_features`` exactly; otherwise
(e.g. a ViT, which adds position embeddings between modules) the model cannot be split and the
caller gets a clear error. The head is always the model's own ``forward_head``.

This module needs torch; callers import it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS, cut_names


@dataclass
class Stages:
    """``names[i]``/``modules[i]``: the i-th stage of ``forward_features`` in call order."""

    model: object
    names: list[str]
    modules: list

    def index(self, cut: str) -> int:
        """Stage index that ends at ``cut`` (``len(modules)`` for ``pre_logits``: after the head pooling)."""
        if cut == PRE_LOGITS:
            return len(self.modules)
        if cut not in self.names:
            raise AdvisorError(f"cut '{cut}' is not a stage of this model", f"use one of: {', '.join(cut_names(self.model))}")
        return self.names.index(cut)

    def prefix(self, x, cut: str):
        """Activations at ``cut`` (unpooled maps; pre-logits vectors for ``pre_logits``)."""
        end = self.index(cut)
        for m in self.modules[: end + 1]:
            x = m(x)
        return self.model.forward_head(x, pre_logits=True) if cut == PRE_LOGITS else x

    def suffix_modules(self, cut: str) -> list:
        """Modules after ``cut``: the later stages plus every module outside ``forward_features`` (the
        head: pooling, classifier); only the classifier for ``pre_logits``."""
        if cut == PRE_LOGITS:
            return [self.model.get_classifier()]
        staged = {id(m) for s in self.modules for m in s.modules()}
        # children of the model that hold no stage (a container such as `blocks` holds stages)
        head = [m for _, m in self.model.named_children() if not any(id(sub) in staged for sub in m.modules())]
        return self.modules[self.index(cut) + 1:] + head

    def suffix(self, h, cut: str):
        """Logits from the activations at ``cut``."""
        if cut == PRE_LOGITS:
            return self.model.get_classifier()(h)
        for m in self.modules[self.index(cut) + 1:]:
            h = m(h)
        return self.model.forward_head(h)


def stages(model, sample) -> Stages:
    """Find ``model``'s stage sequence (see the module docstring). ``sample``: a small input batch."""
    import torch

    cuts = [c for c in cut_names(model) if c != PRE_LOGITS]
    containers = {c.rsplit(".", 1)[0] for c in cuts if "." in c}
    watch = []
    for name, child in model.named_children():
        if name in containers:
            watch += [(f"{name}.{sub}", m) for sub, m in child.named_children()]
        else:
            watch.append((name, child))
    calls: list[tuple[str, object]] = []
    handles = [m.register_forward_hook(lambda mod, i, o, n=n: calls.append((n, mod))) for n, m in watch]
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model.forward_features(sample)
    finally:
        for h in handles:
            h.remove()
    names = [n for n, _ in calls]
    arch = type(model).__name__
    if not torch.isfinite(expected).all():  # before the split check: NaN never reproduces itself
        model.train(was_training)
        raise AdvisorError(f"{arch} produces non-finite features (NaN/inf) on a test input",
                           "its weights hold NaN/inf or overflow: check the weights file")
    if len(set(names)) != len(names) or any(c not in names for c in cuts):
        model.train(was_training)
        raise AdvisorError(f"{arch} cannot be split at its cuts (its feature stages are not a simple sequence)",
                           "validate a CNN (EfficientNet, ResNet, MobileNet, ConvNeXt...) or use --protocol finetune with --cuts pre_logits")
    st = Stages(model, names, [m for _, m in calls])
    try:
        with torch.inference_mode():
            x = sample
            for m in st.modules:
                x = m(x)
    except (RuntimeError, ValueError, TypeError):  # shapes don't chain: work happens between the modules
        x = None
    model.train(was_training)
    if x is None or x.shape != expected.shape or not torch.allclose(x, expected, rtol=1e-4, atol=1e-5):
        raise AdvisorError(f"{arch} cannot be split at its cuts (running its stages in order does not reproduce forward_features)",
                           "validate a CNN (EfficientNet, ResNet, MobileNet, ConvNeXt...) or use --cuts pre_logits")
    return st
