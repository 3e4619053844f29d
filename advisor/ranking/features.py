"""Cut points and pooled features for all of them in one forward pass per batch.

Cut points come from timm's feature API, so no architecture is special-cased:
``model.feature_info`` names them (``blocks.2``, ``layer3``, ...) and ``forward_intermediates``
returns their activations in the same pass that produces the final features. After them comes
``pre_logits``: the model's own head pooling (``forward_head(pre_logits=True)``; e.g. the class
token for a ViT with token pooling). Intermediate maps are pooled to one vector per image by a
global average over space (NCHW; for ViTs timm returns patch tokens as NCHW, so this is the mean
patch token, class token excluded). The source head's logits are kept when the model has one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from advisor.errors import AdvisorError
from advisor.models.sources import LoadedModel
from advisor.data.probe import Probe

PRE_LOGITS = "pre_logits"

# Images per forward chunk: about this many input pixels (4 images at 224 px, 196 at 32 px), in NHWC.
# On CPU a batch of 32 at 224 px allocates activations of tens of MB each, which glibc serves with
# fresh mmap()s and the kernel faults in page by page; that, not arithmetic, dominated the forward.
# Measured (EfficientNet-Lite0, 64 images, 2 threads, this 2-core machine): batches of 32 NCHW 2.6 s,
# NHWC 1.5 s; chunks of 4 NHWC 0.72 s. Images are independent in eval mode, so results are unchanged
# (up to float rounding).
CHUNK_PIXELS = 4 * 224 * 224


def micro_batches(x, chunk_pixels: int = CHUNK_PIXELS, channels_last: bool = True):
    """Split ``float[B, C, H, W]`` into chunks of about ``chunk_pixels`` input pixels (NHWC copies)."""
    size = max(1, chunk_pixels // max(1, x.shape[-2] * x.shape[-1]))
    for c in x.split(size):
        yield to_nhwc(c) if channels_last else c.contiguous()


def to_nhwc(t):
    """A 4-D tensor in NHWC (channels-last) memory; other tensors unchanged. On CPU oneDNN's
    convolutions avoid layout reorders in NHWC (forward and backward; see CHUNK_PIXELS)."""
    import torch

    return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t


def cut_names(module) -> list[str]:
    """Stable names of a model's cut points, shallow to deep, ending with ``pre_logits``."""
    info = getattr(module, "feature_info", None) or []
    names = [fi["module"] if isinstance(fi, dict) else str(fi) for fi in info]
    return [n or f"feature.{i}" for i, n in enumerate(names)] + [PRE_LOGITS]


def preproc_hash(data_config: dict) -> str:
    keys = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")
    canon = {k: list(v) if isinstance(v, tuple) else v for k, v in data_config.items() if k in keys}
    return hashlib.sha256(json.dumps(canon, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Extraction:
    """Features of one model on one probe: ``features[cut]`` is ``float32[N, D]``; ``logits``
    ``float32[N, C]`` or None (headless model)."""

    features: dict[str, np.ndarray]
    logits: np.ndarray | None
    seconds: float


def _pool(t):
    if t.ndim == 4:
        return t.mean(dim=(2, 3))
    if t.ndim == 3:  # tokens [B, L, C]
        return t.mean(dim=1)
    return t.flatten(1)


def forward_all_cuts(module, x):
    """One forward pass: pooled features of every cut, pre-logits and logits (or None).

    The logits are the model's own ``forward_head`` output, not ``classifier(pre_logits)``: the two
    agree for timm's linear heads, but not for a head that works on the unpooled map (e.g.
    mini-Xception's 3x3 convolution before its global pooling)."""
    final, intermediates = module.forward_intermediates(x)
    pooled = [_pool(t) for t in intermediates]
    pre = module.forward_head(final, pre_logits=True)
    pooled.append(pre.flatten(1))
    has_head = getattr(module, "num_classes", 0) > 0
    return pooled, (module.forward_head(final).flatten(1) if has_head else None)


def image_transform(data_config: dict):
    """PIL image → ``float[C, H, W]`` in a model's own preprocessing (timm's eval transform).

    ``C = data_config["input_size"][0]``: a 1-channel (grey) model gets colour images as their
    luma (PIL ``L``: 0.299 R + 0.587 G + 0.114 B), a 3-channel model gets grey images replicated
    to RGB. ``mean``/``std`` act on pixels scaled to [0, 1], so any per-channel affine
    preprocessing is one of them: raw 0-255 input is mean 0, std 1/255; [-1, 1] is mean = std = 0.5.
    """
    from timm.data import create_transform

    cfg = data_config
    chans = int(cfg["input_size"][0])
    mode = {1: "L", 3: "RGB"}.get(chans)
    if mode is None:
        raise AdvisorError(f"a model expects {chans} input channels", "advisor feeds images as 1 (grey) or 3 (RGB) channels")
    transform = create_transform(
        input_size=tuple(cfg["input_size"]), interpolation=cfg.get("interpolation", "bilinear"), mean=cfg["mean"],
        std=cfg["std"], crop_pct=cfg.get("crop_pct", 1.0), crop_mode=cfg.get("crop_mode", "center"), is_training=False,
    )
    return lambda im: transform(im if im.mode == mode else im.convert(mode))


def probe_batches(model: LoadedModel, probe: Probe, *, batch_size: int = 32, images: dict | None = None):
    """Yield the probe as preprocessed tensors ``[B, C, H, W]`` in the model's own preprocessing
    (:func:`image_transform`). ``images`` may hold already decoded PIL images by index (the probe
    is decoded once per run)."""
    import torch

    transform = image_transform(model.data_config)
    for lo in range(0, len(probe), batch_size):
        idx = range(lo, min(lo + batch_size, len(probe)))
        yield torch.stack([transform(images[i] if images and i in images else probe.load_image(i)) for i in idx])


def extract(
    model: LoadedModel,
    probe: Probe,
    *,
    batch_size: int = 32,
    images: dict | None = None,
    progress: Callable[[int], None] | None = None,
) -> Extraction:
    """Run ``model`` over every probe image once and pool every cut."""
    import torch

    names = cut_names(model.module)
    chunks: list[list] = [[] for _ in names]
    logit_chunks = []
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in probe_batches(model, probe, batch_size=batch_size, images=images):
            for part in micro_batches(batch):
                pooled, logits = forward_all_cuts(model.module, part)
                if len(pooled) != len(names):
                    raise RuntimeError(f"{model.id}: {len(pooled)} intermediates but {len(names)} cut names")
                for store, t in zip(chunks, pooled):
                    store.append(t.float().contiguous().numpy())
                if logits is not None:
                    logit_chunks.append(logits.float().contiguous().numpy())
            if progress:
                progress(len(batch))
    seconds = time.perf_counter() - start
    features = {name: np.concatenate(c) for name, c in zip(names, chunks)}
    logits = np.concatenate(logit_chunks) if logit_chunks else None
    return Extraction(features=features, logits=logits, seconds=seconds)
