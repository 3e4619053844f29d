"""Parameter-distance transferability (Chen et al. 2022, eq. 1-2), a pure function of parameter arrays.

For one layer with parameters ``θ`` (all its tensors, flattened; ``K`` numbers in total)::

    D(θ_a, θ_b) = Σ_i |θ_a^i − θ_b^i| / K                      (mean absolute difference)
    T_FB(θ_A)   = D(θ_r, θ_FB) / D(θ_A, θ_FB)                  (eq. 1)

with ``θ_A`` the pretrained start point, ``θ_FB`` the same layer after fine-tuning on the target and
``θ_r`` a random initialisation of the architecture (seed recorded with the run). Values above 1
mean pre-training shortened the way to the target's solution. The network's transferability is the
mean over layers (eq. 2), which removes the scale difference between layers; the last FC layer is
excluded (it is re-initialised for the target's classes).
"""

from __future__ import annotations

import math

import numpy as np


def mean_abs_distance(a, b) -> float:
    """``D`` of Chen et al. 2022: mean absolute difference of two equally shaped parameter arrays (float64)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"parameter shapes differ: {a.shape} vs {b.shape}")
    return float(np.abs(a - b).mean()) if a.size else 0.0


def layer_transferability(theta_r: dict, theta_a: dict, theta_fb: dict, layers: list[str]) -> dict[str, float | None]:
    """Eq. 1 per layer. ``theta_*``: state dicts ``{name: array}`` (torch tensors or numpy);
    ``layers``: module prefixes (e.g. ``blocks.2.0.conv_pw``); each layer's parameters are the
    entries ``<prefix>.<param>`` (weight, bias) present in all three. Returns ``{layer: T}``;
    ``inf`` when the layer did not move (``D(θ_A, θ_FB) = 0``), None when it has no parameters."""
    out: dict[str, float | None] = {}
    for layer in layers:
        keys = [k for k in theta_a if k.startswith(layer + ".") and k.count(".") == layer.count(".") + 1
                and k.rsplit(".", 1)[1] in ("weight", "bias") and k in theta_r and k in theta_fb]
        if not keys:
            out[layer] = None
            continue
        flat = {name: np.concatenate([_np(t[k]).ravel() for k in keys]) for name, t in
                (("r", theta_r), ("a", theta_a), ("fb", theta_fb))}
        num = mean_abs_distance(flat["r"], flat["fb"])
        den = mean_abs_distance(flat["a"], flat["fb"])
        out[layer] = math.inf if den == 0 else num / den
    return out


def network_transferability(per_layer: dict[str, float | None]) -> float | None:
    """Eq. 2: the mean of the finite per-layer values (None if there are none)."""
    vals = [v for v in per_layer.values() if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
