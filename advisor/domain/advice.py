"""What a T_FB forecast means for freezing (the advice rule and its tertile thresholds), and the
one-point calibration that puts our G and W on Chen et al. 2022 Table 2's scale.
"""

from __future__ import annotations

import numpy as np

from advisor.domain.forecast import Forecast, table2_rows
from advisor.domain.references import DEFAULT_SOURCE, DomainReference, read_reference_file, shipped_path
from advisor.domain.stats import gap_width
from advisor.errors import AdvisorError


def t_tertiles() -> tuple[float, float]:
    """The lower and upper tertile of T_FB over Chen et al. 2022 Table 2: the thresholds of :func:`advice`."""
    t = np.array([r["T_FB"] for r in table2_rows()])
    lo, hi = np.quantile(t, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def advice(forecast: Forecast, z_gap: float) -> dict:
    """What the forecast implies for freezing. The rule (Chen et al. 2022; Gerace et al. 2023; Plested & Gedeon 2019):

    - predicted T_FB in the upper tertile of Table 2 → the pretrained parameters are already close
      to the target's optimum (Chen et al. 2022 eq. 1): freeze most of the backbone, fine-tune the top
      (small, narrow targets benefit most from pre-training: Chen et al. 2022 §Factors; few examples favour
      deeper freezing: Gerace et al. 2023; Plested & Gedeon 2019);
    - lower tertile → the parameters must move far: fine-tune all layers;
    - in between → fine-tune the upper half;
    - and whenever the gap is large (z(G) > 1, i.e. beyond one Table-2 standard deviation, like POCUS
      or DomainNet-clipart) also unfreeze the stem: the lowest layers are the most domain-sensitive
      (Chen et al. 2022 §Layer-wise Transferability).

    The band matters: when it straddles a threshold both neighbouring tiers are named.
    """
    lo, hi = t_tertiles()

    def tier(t):
        return "high" if t >= hi else "low" if t < lo else "medium"

    what = {"high": "freeze most of the backbone; fine-tune the last stage and the head",
            "medium": "freeze the lower half; fine-tune the upper half and the head",
            "low": "fine-tune all layers (the pretrained weights are a starting point, not features to keep)"}
    t = tier(forecast.T)
    tiers = sorted({tier(forecast.low), t, tier(forecast.high)}, key=["low", "medium", "high"].index)
    text = what[t]
    if z_gap > 1.0:
        text += "; the gap is large, so also unfreeze the first layers (the stem is the most domain-sensitive, Chen et al. 2022)"
    if len(tiers) > 1:
        text += f" (the {forecast.level:.0%} band spans the {' to '.join([tiers[0], tiers[-1]])} tiers: treat as indicative)"
    return {"tier": t, "tiers_in_band": tiers, "recommendation": text,
            "rule": (f"T_FB tiers are the tertiles of T_FB over the 12 datasets of Chen et al. 2022: low < {lo:.1f} ≤ medium < {hi:.1f} ≤ high; high → freeze most, "
                     "medium → fine-tune the upper half, low → fine-tune all; z(G) > 1 → also unfreeze the stem")}


# ---------------------------------------------------------------- on Table 2's scale


def anchor_scale(ref_features: np.ndarray, anchor_features: np.ndarray, anchor_row: str = "Flowers") -> dict:
    """Factors that put our G and W on Chen et al. 2022 Table 2's scale, from one dataset measured both
    ways: the shared flowers17 train split *is* Table 2's Flowers (Oxford 17 flowers, 1,088
    training images). k_G = 1.64 / G_ours(flowers17), k_W = 145.3 / W_ours(flowers17). Chen et al. 2022 do
    not publish its feature scaling, so this one-point calibration is what makes eq. 3's z-scores
    usable; docs/domain_shared.md checks it on CIFAR-10."""
    ref = DomainReference(name="anchor-source", features=ref_features, meta={})
    g, w = gap_width(anchor_features, ref)[:2]
    row = next(r for r in table2_rows() if r["dataset"] == anchor_row)
    return {"anchor": anchor_row, "G": row["G"] / g, "W": row["W"] / w, "measured_G": g, "measured_W": w,
            "table2_G": row["G"], "table2_W": row["W"], "n_anchor_images": len(anchor_features)}


def table2_scale(ref: DomainReference) -> tuple[dict, str]:
    """The reference's own Table-2 calibration, or ImageNet's (with a note) when it has none."""
    if ref.meta.get("table2_scale"):
        return ref.meta["table2_scale"], ""
    base = read_reference_file(shipped_path(DEFAULT_SOURCE).read_bytes(), DEFAULT_SOURCE, "shipped") if shipped_path(DEFAULT_SOURCE).is_file() else None
    if base is None or not base.meta.get("table2_scale"):
        raise AdvisorError("no calibration to the scale of Chen et al. 2022's datasets available (the shipped imagenet reference is missing)",
                           "reinstall advisor")
    return base.meta["table2_scale"], (f"source '{ref.name}' has no calibration to the scale of Chen et al. 2022's datasets: ImageNet's "
                                        "factors are used, and their regression was fitted on ImageNet pre-training only, so the T_FB "
                                        "forecast is a rough guide")
