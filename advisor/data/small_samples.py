"""Honest output on small samples: the notes the commands warn with when a number rests on little data.

Each function returns one line (or None): the caller sends it through its ``warn`` callback (the CLI
prints it on stderr as ``warning: ...``; library code never prints) and keeps it in the result's
``warnings``.
"""

from __future__ import annotations

import numpy as np

MIN_HELD_OUT_PER_CLASS = 5  # below this a held-out accuracy moves in big steps per image
MIN_TAU_MODELS = 4  # a weighted Kendall τ over fewer items swings with a single swap


def taken_note(max_images: int | None, probe) -> str | None:
    """``--max-images N`` keeps at least one image per class: say so when that took more than N."""
    if max_images is None:
        return None
    taken = len(probe) + len(getattr(probe, "skipped", ()) or ())
    if taken <= max_images:
        return None
    classes = f" for the {probe.num_classes} classes" if probe.labels is not None else ""
    return (f"--max-images {max_images} took {taken} images{classes} (the stratified sample keeps at least one "
            f"image per class); pass --max-images {taken} or more to silence this")


def held_out_note(val) -> str | None:
    """The held-out part of ``validate`` has fewer than :data:`MIN_HELD_OUT_PER_CLASS` images in a class."""
    if val.labels is None or len(val) == 0:
        return None
    counts = np.bincount(np.asarray(val.labels), minlength=max(val.num_classes, 1))
    least = int(counts.min())
    if least >= MIN_HELD_OUT_PER_CLASS:
        return None
    return (f"the held-out part has {len(val)} images, {least} in its smallest class (fewer than "
            f"{MIN_HELD_OUT_PER_CLASS} per class): one image moves the accuracy by {100 / len(val):.1f} points, "
            "so close cuts or models are not told apart; add images")


def tau_note(n_models: int, estimators: list[str]) -> str | None:
    """A weighted τ across models computed over fewer than :data:`MIN_TAU_MODELS` models."""
    if n_models >= MIN_TAU_MODELS or not estimators:
        return None
    return (f"the weighted τ across models ({', '.join(estimators)}) is over {n_models} models, fewer than "
            f"{MIN_TAU_MODELS}: one swapped pair changes it a lot; validate at least {MIN_TAU_MODELS} models for a τ to go by")


def top_note(k: int, available: int, spec: str) -> str | None:
    """``validate --top K`` when the last rank on the probe ranked fewer than K models."""
    if available >= k:
        return None
    return f"--top {k}: the last `advisor rank` on '{spec}' ranked only {available} model(s); validating those {available}"


def spread(std: float | None, runs: int) -> float | None:
    """The standard deviation to show: None for a single run (there is no spread to report)."""
    return None if runs < 2 or std is None else std
