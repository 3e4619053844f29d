"""Short fine-tunes that measure what the estimators predict: the two validation protocols.
Size: one training loop serves both protocols and their options (LP-FT head, frozen BatchNorm).

``defrost`` (Gerace et al. 2023, "Layer-wise defrosting"): the stages up to the cut keep their pretrained
values and stay frozen; everything after it is re-initialised and trained on the target. Accuracy
as a function of the cut is the *defrosting profile*. Gerace et al. 2023 train with SGD (momentum 0.9,
weight decay 5e-4, cosine-annealed lr from 0.1) for 200 epochs; a validation here is a short
version of that recipe (``epochs`` defaults to 10), so profiles compare cuts, not final accuracy.

``finetune`` (Plested & Gedeon 2019, Table 2): the stages up to the cut are transferred (pretrained values as the
start point), the rest re-initialised; stages up to ``freeze`` stay frozen; transferred trainable
stages learn at ``lr_transferred`` (0.001) and the re-initialised ones at ``lr`` (0.01) for the
first ``decay_epochs`` epochs, after which both decay by 0.1 (Plested & Gedeon 2019 §3.2–3.4). ``decay_epochs``
defaults from the target size by Plested & Gedeon 2019 Table 2 (:func:`decay_epochs_for`).

Both train only what lies after the last frozen stage: the frozen prefix's activations are
computed once per image (:func:`prefix_activations`, reused across repeats and protocols) and the
suffix trains on them, as Gerace et al. 2023 suggests. No data augmentation (it would invalidate the cached
prefix); the same holds for every cut, so profiles stay comparable.

This module needs torch; callers import it lazily.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from advisor.models.conv_safety import guard_channels_last
from advisor.ranking.features import PRE_LOGITS, to_nhwc
from advisor.validation.stages import Stages

RECIPE_VERSION = "1"  # bump when training code changes the numbers: validation and bench run keys include it

# Plested & Gedeon 2019, Table 2: training examples per class -> epochs at the initial high learning rate.
TABLE2_PER_CLASS = (10, 25, 50, 100, 250, 500, 1300)  # "Full" ILSVRC2012 subset: ~1,300 per class
TABLE2_DECAY_EPOCHS = (10, 5, 3, 3, 3, 0, 30)


def decay_epochs_for(per_class: float) -> int:
    """Plested & Gedeon 2019, Table 2's initial-decay epochs for the column nearest ``per_class`` (log scale)."""
    i = int(np.argmin([abs(math.log(max(per_class, 1)) - math.log(c)) for c in TABLE2_PER_CLASS]))
    return TABLE2_DECAY_EPOCHS[i]


@dataclass(frozen=True)
class Protocol:
    """Hyperparameters of one validation run (all recorded with it)."""

    name: str = "defrost"  # or "finetune"
    epochs: int = 10
    lr: float = 0.1  # re-initialised layers (defrost: everything trained)
    lr_transferred: float = 0.0  # finetune: transferred trainable layers
    decay_epochs: int = 0  # finetune: epochs before lr decays by 0.1 (0 = from the start); defrost: cosine
    batch_size: int = 32
    momentum: float = 0.9
    weight_decay: float = 5e-4
    freeze: str | None = None  # finetune: freeze stages up to this cut (None: nothing frozen)
    head_init: str = "random"  # finetune: "random", or "probe" = LP-FT (Kumar et al. 2022): the new head starts as the linear probe
    batchnorm: str = "train"  # "train": trained BatchNorm layers update their statistics; "frozen": they keep the pretrained ones

    def as_dict(self) -> dict:
        """Every field, except the ones added after :data:`RECIPE_VERSION` 1 while they hold their
        default: the recorded protocols (and the run keys hashed from them) of earlier runs stay valid."""
        d = asdict(self)
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d


_LATER_FIELDS = {"head_init": "random", "batchnorm": "train"}
HEAD_INITS = ("random", "probe")
BATCHNORM_MODES = ("train", "frozen")


def defrost(epochs: int = 10, lr: float = 0.1, batch_size: int = 32) -> Protocol:
    return Protocol("defrost", epochs=epochs, lr=lr, batch_size=batch_size)


def finetune(per_class: float, epochs: int = 10, freeze: str | None = None, batch_size: int = 32) -> Protocol:
    """Plested & Gedeon 2019's protocol; ``decay_epochs`` from Table 2 (capped at ``epochs``: a short run that ends
    before Table 2's decay point never decays)."""
    return Protocol("finetune", epochs=epochs, lr=0.01, lr_transferred=0.001, decay_epochs=min(decay_epochs_for(per_class), epochs),
                    batch_size=batch_size, freeze=freeze)


@dataclass
class RunResult:
    status: str  # "done" or "failed"
    reason: str = ""
    history: list[dict] = field(default_factory=list)  # per epoch: loss, train_acc, val_acc, lr
    val_acc: float | None = None  # at the last epoch
    best_val_acc: float | None = None
    seconds: float = 0.0
    tfb_layers: dict[str, float] | None = None
    tfb_mean: float | None = None
    tfb_note: str = ""
    test_acc: float | None = None  # only when train() got test_h/test_y (advisor bench's ground truth)


def prefix_activations(st: Stages, x, cut: str, batch_size: int = 64):
    """Frozen-prefix activations at ``cut`` for the preprocessed images ``x`` (``float[N, 3, H, W]``),
    in eval mode, chunked. Returns a tensor ``float[N, ...]`` on ``x``'s device."""
    import torch

    st.model.eval()
    with torch.inference_mode():
        return to_nhwc(torch.cat([st.prefix(c, cut) for c in x.split(batch_size)]).clone())


def _set_head(st: Stages, head: tuple[np.ndarray, np.ndarray]) -> None:
    import torch

    cls = st.model.get_classifier()
    w, b = (torch.as_tensor(np.asarray(a)) for a in head)
    if not isinstance(cls, torch.nn.Linear) or tuple(cls.weight.shape) != tuple(w.shape):
        from advisor.errors import AdvisorError

        raise AdvisorError(f"head_init 'probe' needs a linear classifier of shape {tuple(w.shape)}, this model has {cls!r}",
                           "use head_init = \"random\" for this model")
    with torch.no_grad():
        cls.weight.copy_(w.to(cls.weight.dtype))
        if cls.bias is not None:
            cls.bias.copy_(b.to(cls.bias.dtype))


def _reinit(modules, seed: int) -> None:
    import torch

    torch.manual_seed(seed)
    for m in modules:
        for sub in m.modules():
            if hasattr(sub, "reset_parameters"):
                sub.reset_parameters()


def train(st: Stages, cut: str, protocol: Protocol, train_h, train_y, val_h, val_y, *, seed: int,
          theta_a: dict | None = None, theta_r: dict | None = None, device: str = "cpu",
          test_h=None, test_y=None, head: tuple[np.ndarray, np.ndarray] | None = None) -> RunResult:
    """Train ``st.model`` after its frozen prefix on cached activations and measure accuracy.

    ``cut``: the last transferred stage (defrost: also the last frozen one). ``train_h``/``val_h``:
    activations at the last *frozen* stage (``protocol.freeze`` for finetune, else ``cut``), from
    :func:`prefix_activations`; ``train_y``/``val_y``: ``int64[N]`` labels. The model is modified in
    place (suffix re-initialised with ``seed``, then trained). ``theta_a``/``theta_r``: pretrained and
    seeded random-init state dicts for Chen et al. 2022's T_FB (finetune only). A non-finite loss stops the
    run: the result is ``failed`` with the reason, nothing is raised. ``test_h``/``test_y`` (optional,
    like ``val_h``/``val_y``): a test set evaluated once after the last epoch into ``test_acc``, so a
    caller can pick hyperparameters on the validation part and report an untouched test accuracy.
    ``head``: ``(W float[C, D], b float[C])`` from :func:`advisor.validation.linear_probe.probe_head`, required by ``protocol.head_init ==
    "probe"`` (LP-FT, Kumar et al. 2022): the classifier starts there instead of at its seeded init.
    ``protocol.batchnorm == "frozen"`` keeps every BatchNorm layer's pretrained statistics (its affine
    parameters still train). Raises ``AdvisorError`` for an unknown ``head_init``/``batchnorm`` or a missing head.
    """
    import torch
    import torch.nn.functional as F

    frozen_cut = protocol.freeze if protocol.name == "finetune" else cut
    # NHWC: a training step of EfficientNet-Lite0 after blocks.1 (batch 32, CPU) took 3.1 s vs 4.7-5.3 s in NCHW
    model = st.model.to(device, memory_format=torch.channels_last)
    guard_channels_last(model)  # CPU: oneDNN's NHWC backward of 1x1 strided convs can crash (no-op off the CPU)
    transferred_trainable, new = _groups(st, cut, frozen_cut, protocol)
    _check_options(protocol, head)
    _reinit(new, seed)
    if protocol.head_init == "probe":
        _set_head(st, head)
    for p in model.parameters():
        p.requires_grad_(False)
    params_new = [p for m in new for p in m.parameters()]
    # a transferred module may hold the new classifier (a head container such as `classifier` whose
    # last layer is get_classifier()): its parameters train once, at the new layers' lr
    new_ids = {id(p) for p in params_new}
    params_tr = [p for m in transferred_trainable for p in m.parameters() if id(p) not in new_ids]
    for p in params_new + params_tr:
        p.requires_grad_(True)
    groups = [{"params": params_new, "lr": protocol.lr}]
    if params_tr:
        groups.append({"params": params_tr, "lr": protocol.lr_transferred})
    opt = torch.optim.SGD(groups, momentum=protocol.momentum, weight_decay=protocol.weight_decay)
    steps_per_epoch = max(1, math.ceil(len(train_h) / protocol.batch_size))
    if protocol.name == "defrost":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=protocol.epochs * steps_per_epoch)
    else:  # initial lr for decay_epochs, then 0.1x (Plested & Gedeon 2019; decay_epochs 0 = the low lr from the start)
        boundary = protocol.decay_epochs * steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 if step < boundary else 0.1)
    use_amp = device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda") if use_amp else None
    gen = torch.Generator().manual_seed(seed)
    result = RunResult(status="done")
    start = time.perf_counter()
    train_h, train_y = to_nhwc(train_h.to(device)), train_y.to(device)
    val_h, val_y = to_nhwc(val_h.to(device)), val_y.to(device)
    for epoch in range(protocol.epochs):
        _set_train(st, new + transferred_trainable, protocol.batchnorm == "frozen")
        order = torch.randperm(len(train_h), generator=gen).to(device)
        total_loss, correct, seen = 0.0, 0, 0
        for lo in range(0, len(order), protocol.batch_size):
            idx = order[lo:lo + protocol.batch_size]
            if len(idx) < 2 and protocol.name == "defrost" and cut != PRE_LOGITS:
                continue  # BatchNorm cannot train on a single image
            with torch.autocast("cuda", enabled=use_amp):
                logits = _forward(st, frozen_cut, train_h[idx])
                loss = F.cross_entropy(logits.float(), train_y[idx])
            if not torch.isfinite(loss):
                result.status = "failed"
                result.reason = (f"loss became {loss.item()} at epoch {epoch + 1}, step {lo // protocol.batch_size + 1} "
                                 f"(lr {protocol.lr:g}); try a lower --lr")
                result.seconds = time.perf_counter() - start
                return result
            opt.zero_grad(set_to_none=True)
            if scaler:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
            sched.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == train_y[idx]).sum())
            seen += len(idx)
        val_acc = evaluate(st, frozen_cut, val_h, val_y)
        result.history.append({"epoch": epoch + 1, "loss": total_loss / max(seen, 1), "train_acc": correct / max(seen, 1),
                               "val_acc": val_acc, "lr": opt.param_groups[0]["lr"]})
    result.seconds = time.perf_counter() - start
    result.val_acc = result.history[-1]["val_acc"] if result.history else None
    result.best_val_acc = max(h["val_acc"] for h in result.history) if result.history else None
    if test_h is not None and test_y is not None:
        result.test_acc = evaluate(st, frozen_cut, to_nhwc(test_h.to(device)), test_y.to(device))
    model.eval()
    if protocol.name == "finetune" and theta_a is not None and theta_r is not None:
        from advisor.numeric.transferability import (
            layer_transferability,
            network_transferability,
        )

        layers = [n for n, _ in _named_layers(st, transferred_trainable)]
        theta_fb = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        result.tfb_layers = layer_transferability(theta_r, theta_a, theta_fb, layers)
        result.tfb_mean = network_transferability(result.tfb_layers)
        result.tfb_note = f"eq. 1-2 over {len(layers)} transferred, trained layers (last FC excluded)"
    else:
        result.tfb_note = ("defrost: transferred layers are frozen (D(θ_A, θ_FB) = 0) and trained ones re-initialised, "
                           "so T_FB is undefined" if protocol.name == "defrost" else "no pretrained reference state")
    return result


def _groups(st: Stages, cut: str, frozen_cut: str | None, protocol: Protocol):
    """(transferred but trainable modules, re-initialised modules)."""
    new = st.suffix_modules(cut)
    if protocol.name == "defrost":
        return [], new
    first = 0 if frozen_cut is None else st.index(frozen_cut) + 1
    last = st.index(cut)
    if cut == PRE_LOGITS:
        # everything except the classifier is transferred
        transferred = st.modules[first:] + [m for m in st.suffix_modules(st.names[-1]) if m is not st.model.get_classifier()]
    else:
        transferred = st.modules[first:last + 1]
    return transferred, new


def _named_layers(st: Stages, modules) -> list[tuple[str, object]]:
    """Conv/linear-like layers (a weight with ≥ 2 dims) inside ``modules``, by state-dict prefix."""
    wanted = {id(sub) for m in modules for sub in m.modules()}
    classifier = st.model.get_classifier()
    return [(name, m) for name, m in st.model.named_modules()
            if id(m) in wanted and m is not classifier and getattr(m, "weight", None) is not None and m.weight.ndim >= 2]


def _check_options(protocol: Protocol, head) -> None:
    from advisor.errors import AdvisorError

    if protocol.head_init not in HEAD_INITS:
        raise AdvisorError(f"unknown head_init '{protocol.head_init}'", f"use one of: {', '.join(HEAD_INITS)}")
    if protocol.batchnorm not in BATCHNORM_MODES:
        raise AdvisorError(f"unknown batchnorm mode '{protocol.batchnorm}'", f"use one of: {', '.join(BATCHNORM_MODES)}")
    if protocol.head_init == "probe" and (protocol.name != "finetune" or head is None):
        raise AdvisorError("head_init 'probe' (LP-FT) needs the fine-tune protocol and the probe's head weights",
                           "pass head=linear_probe.probe_head(features, labels, num_classes) to train()")


def _set_train(st: Stages, trainable, freeze_batchnorm: bool = False) -> None:
    import torch

    st.model.eval()  # frozen BatchNorm keeps its pretrained statistics
    for m in trainable:
        m.train()
    if freeze_batchnorm:
        for m in st.model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d, torch.nn.SyncBatchNorm)):
                m.eval()  # timm's BatchNormAct2d is a BatchNorm2d


def _forward(st: Stages, frozen_cut: str | None, h):
    if frozen_cut is None:
        return st.model(h)
    return st.suffix(h, frozen_cut)


def evaluate(st: Stages, frozen_cut: str | None, h, y, batch_size: int = 128) -> float:
    import torch

    st.model.eval()
    correct = 0
    with torch.inference_mode():
        for lo in range(0, len(h), batch_size):
            correct += int((_forward(st, frozen_cut, h[lo:lo + batch_size]).argmax(1) == y[lo:lo + batch_size]).sum())
    return correct / max(len(h), 1)
