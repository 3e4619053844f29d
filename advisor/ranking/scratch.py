"""The ``scratch`` reference: a small network trained from scratch on the probe itself.

Gerace et al. 2023 compare a source network's representations with those of a network trained from scratch
on the target; ``--reference scratch`` does the same when the user has no target model. The network
is the CIFAR ResNet-20 (0.27 M parameters, ``plugins/cifar_resnet_arch.py``) at 32 px, trained on the
probe's images and labels with SGD (momentum 0.9, Nesterov, lr 0.05 cosine-annealed, weight decay
5e-4, batch 64, random crop with 4 px padding + horizontal flip) for ``EPOCHS`` epochs, seeded. Its
features and attributions are cached like any model's, keyed by the probe hash and these settings.
"""

from __future__ import annotations

import hashlib

from advisor.errors import AdvisorError
from advisor.models.ids import ModelRef
from advisor.models.sources import LoadedModel, Resolved
from advisor.data.probe import Probe

ARCH = "resnet20_cifar"
IMG = 32
EPOCHS = 30
BATCH = 64
LR = 0.05
RECIPE_VERSION = "1"  # bump when the recipe changes: the cache key includes it


def scratch_resolved(probe: Probe, seed: int = 0) -> Resolved:
    if probe.labels is None:
        raise AdvisorError("--reference scratch trains on the probe's labels, and this probe has none", "label the images or use --reference model:<id>")
    recipe = f"{ARCH}|{IMG}|{EPOCHS}|{BATCH}|{LR}|{seed}|{RECIPE_VERSION}"
    fp = hashlib.sha256(f"scratch|{probe.hash}|{len(probe)}|{recipe}".encode()).hexdigest()[:20]
    about = f"trained from scratch on the probe: {ARCH} (0.27M params), {EPOCHS} epochs, {IMG} px, seed {seed}"
    return Resolved(ref=ModelRef("scratch", "scratch", ARCH), arch=ARCH, kwargs={"num_classes": probe.num_classes, "seed": seed},
                    weights_from="trained on the probe", pretrain=about, fingerprint=fp)


def train_scratch(resolved: Resolved, probe: Probe, images: dict) -> LoadedModel:
    """Train the scratch network on the probe; returns it in eval mode (deterministic for a seed)."""
    import torch
    import torch.nn.functional as F
    import timm

    from advisor.ranking.features import probe_batches
    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    seed = resolved.kwargs["seed"]
    torch.manual_seed(seed)
    module = timm.create_model(ARCH, num_classes=probe.num_classes)
    cfg = dict(module.pretrained_cfg)
    data_config = {"input_size": (3, IMG, IMG), "mean": cfg["mean"], "std": cfg["std"], "interpolation": "bilinear",
                   "crop_pct": 1.0, "crop_mode": "center"}
    loaded = LoadedModel(resolved=resolved, module=module, data_config=data_config)
    x = torch.cat(list(probe_batches(loaded, probe, batch_size=256, images=images)))
    y = torch.as_tensor(probe.labels)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(module.parameters(), lr=LR, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = EPOCHS * ((len(x) + BATCH - 1) // BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    module.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for lo in range(0, len(x), BATCH):
            idx = order[lo:lo + BATCH]
            xb = F.pad(x[idx], (4, 4, 4, 4), mode="reflect")
            i, j = torch.randint(0, 9, (2,), generator=gen).tolist()
            xb = xb[:, :, i:i + IMG, j:j + IMG]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = xb.flip(3)
            loss = F.cross_entropy(module(xb), y[idx])
            if not torch.isfinite(loss):
                raise AdvisorError("the scratch reference diverged (loss is not finite)", "use --reference labels or model:<id>")
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    module.eval()
    return loaded
