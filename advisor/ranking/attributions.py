"""Per-cut input attributions: the DEPARA nodes (Song et al. 2020, §3.3.1, eq. 3).

For every cut ``k`` of a timm model (the cuts of :func:`advisor.ranking.features.cut_names`: the
``feature_info`` modules, shallow to deep, then ``pre_logits``) and every probe image ``x`` this
computes the Gradient*Input attribution of eq. 3::

    v = x ⊙ ∂‖F_k(x)‖² / ∂x

where ``F_k`` is the cut's *unpooled* output: the full ``[C, h, w]`` intermediate map for a
feature cut (for ViTs timm returns the patch tokens as an NCHW map), the pre-logits vector for
``pre_logits``. (The pooled vectors of :mod:`advisor.ranking.features` are what the DEPARA *edges*,
eq. 4, are built from; the nodes need the maps themselves, so the two are computed separately.)

Departure from the paper: in DEPARA both networks see the *same* input tensor, so their
attribution maps are directly comparable pixel for pixel. Here models are compared on the same
probe *images* but each with its own preprocessing, so input sizes differ (224 px for one model,
240 px or 32 px for another). To make the node vectors comparable across models, each attribution
map is summed over the input (colour) channels and average-pooled (``adaptive_avg_pool2d``) to a
fixed ``grid × grid`` map, then flattened: one ``float32[grid²]`` vector per image and cut. The
cosine of eq. 5 is then taken between these coarse maps. With equal input sizes and
``grid = H = W`` nothing but the channel sum differs from eq. 3.

Cost: ONE forward pass with autograd enabled produces every intermediate (and the pre-logits);
then for each cut a single ``torch.autograd.grad`` call backpropagates ``‖F_k‖²`` to the input.
That backward only traverses the *prefix* of the network up to cut ``k`` (the graph of
``‖F_k‖²`` contains nothing deeper), and the forward work is shared by all cuts. Only the input
gradient is requested, so no weight gradients are computed either. Total cost: one forward with
grad + the sum over cuts of one prefix backward, instead of one full forward + backward per cut.
That sum is the floor for exact attributions: each cut needs its own vector-Jacobian product
through its prefix (they are different linear maps of different cotangents, nothing to share), so
the cost relative to a plain forward is about ``1 + Σ_k FLOPs(prefix_k) / FLOPs(network)``, which
depends on where the cuts sit (4.1 for EfficientNet-Lite0, whose cuts are mostly deep; see
``benchmarks/depara_cost.md``). Batches are processed in chunks of a few images
(:data:`CHUNK_PIXELS`), on an NHWC copy of the input. Measured on 2 CPU cores: 6.0x the
advisor's own (chunked, NHWC) forward for EfficientNet-Lite0 and 4.5x for ResNet-56-CIFAR,
against FLOP floors of 4.1 and 4.0, and 18x / 10x for a fresh forward + backward per cut.

This module needs torch; callers import it lazily.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from advisor.ranking.features import CHUNK_PIXELS, cut_names, micro_batches

__all__ = ["CHUNK_PIXELS", "cut_attributions", "probe_attributions"]


def _check_eval(module) -> None:
    # Per-image gradients from one batched backward are only correct if images in a batch do not
    # interact. In eval mode they do not: BatchNorm uses its running statistics, dropout and
    # drop-path are off. In train mode batch statistics would couple the images.
    training = [name or "<root>" for name, m in module.named_modules() if m.training]
    if training:
        raise ValueError(
            f"attributions need the model in eval mode (call module.eval()); in train mode: {', '.join(training[:3])}"
            f"{' ...' if len(training) > 3 else ''}"
        )


# Backward chunks: the grad-enabled pass of a whole batch of 32 at 224 px keeps gigabytes of
# activations alive and spends much of its time faulting in fresh memory; chunks of a few images
# (features.CHUNK_PIXELS) are much faster on CPU (EfficientNet-Lite0, 16 images at 224 px, 1 thread:
# 4.1 s CPU in one pass, 2.3-2.6 s in chunks of 1-4) and bound the memory. NHWC saves ~10% more.


def cut_attributions(module, x, grid: int = 16, *, micro_batch: int | None = None,
                     channels_last: bool = True) -> list[np.ndarray]:
    """Gradient*Input attributions of ``‖F_k(x)‖²`` (eq. 3) for every cut of ``module``.

    ``module``: a timm model (``forward_intermediates`` / ``forward_head``) in eval mode.
    ``x``: ``float[B, 3, H, W]``, already preprocessed. Returns one ``float32[B, grid * grid]``
    array per cut, in :func:`advisor.ranking.features.cut_names` order (feature cuts, then pre_logits):
    the attribution map ``x ⊙ ∂‖F_k(x)‖²/∂x`` summed over input channels and average-pooled to
    ``grid × grid`` (see the module docstring for why, and how this departs from the paper).

    ``micro_batch``: images per grad-enabled pass (default: about :data:`CHUNK_PIXELS` input
    pixels' worth). ``channels_last``: run the pass on an NHWC copy of the input (oneDNN's
    convolution backward avoids layout reorders; same numbers up to float rounding).

    Within a chunk ``‖F_k‖²`` is summed over the images before the backward: since images are
    independent in eval mode, the gradient of the sum w.r.t. image ``b`` is exactly the gradient
    of image ``b``'s own ``‖F_k(x_b)‖²``, so one backward per cut serves the whole chunk.
    """
    _check_eval(module)
    if x.ndim != 4:
        raise ValueError(f"x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if micro_batch is not None and micro_batch < 1:
        raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
    pixels = micro_batch * x.shape[-2] * x.shape[-1] if micro_batch else CHUNK_PIXELS
    names = cut_names(module)
    parts = [_chunk_attributions(module, c, grid, len(names)) for c in micro_batches(x, pixels, channels_last)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(names))]


def _chunk_attributions(module, x, grid: int, n_cuts: int) -> list[np.ndarray]:
    import torch
    import torch.nn.functional as F

    # Leave inference mode / no_grad if the caller is in one; copy so the caller's tensor (maybe an
    # inference tensor) is untouched and autograd gets a fresh leaf.
    with torch.inference_mode(False), torch.enable_grad():
        xg = x.detach().clone(memory_format=torch.preserve_format).requires_grad_(True)
        # ONE forward pass, autograd recording, produces all cuts (unpooled maps) and pre-logits.
        final, intermediates = module.forward_intermediates(xg)
        pre = module.forward_head(final, pre_logits=True)
        outputs = list(intermediates) + [pre]
        del final, intermediates, pre
        if len(outputs) != n_cuts:
            raise RuntimeError(f"{len(outputs)} intermediates but {n_cuts} cut names")
        result = []
        last = len(outputs) - 1
        for i in range(len(outputs)):
            energy = outputs[i].float().pow(2).sum()  # Σ_b ‖F_k(x_b)‖²
            outputs[i] = None  # drop our reference to this cut's output
            # The graph of `energy` ends at cut k: this backward walks only the prefix of the
            # network up to cut k, reusing the saved activations of the shared forward, and
            # computes no weight gradients (only x is asked for). The graph is kept for the deeper
            # cuts; the deepest (pre_logits, whose prefix is the whole graph) is last and frees it.
            (grad,) = torch.autograd.grad(energy, xg, retain_graph=i < last)
            attr = (xg.detach() * grad).sum(dim=1, keepdim=True)  # [B, 1, H, W], channels summed
            attr = F.adaptive_avg_pool2d(attr, (grid, grid)).flatten(1)  # [B, grid²]
            result.append(attr.float().cpu().numpy())
            del energy, grad, attr
        del outputs, xg
    return result


def probe_attributions(module, batches: Iterable, grid: int = 16, **options) -> dict[str, np.ndarray]:
    """:func:`cut_attributions` over an iterable of input batches, concatenated.

    ``batches`` yields ``float[B, 3, H, W]`` tensors (or tuples/lists whose first element is one,
    as a DataLoader yields). Returns ``{cut: float32[N, grid * grid]}`` in cut order, N = total
    number of images. ``options`` (``micro_batch``, ``channels_last``) go to :func:`cut_attributions`.
    """
    names = cut_names(module)
    chunks: list[list[np.ndarray]] = [[] for _ in names]
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        for store, a in zip(chunks, cut_attributions(module, batch, grid=grid, **options)):
            store.append(a)
    if not chunks[0]:
        return {name: np.zeros((0, grid * grid), np.float32) for name in names}
    return {name: np.concatenate(c) for name, c in zip(names, chunks)}
