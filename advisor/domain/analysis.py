"""A probe end to end: its domain features (:func:`probe_features`), and :func:`analyse` — G, W, N
against a source reference, the eq. 3 forecast of T_FB (Chen et al. 2022) and the freezing advice.
``advisor.domain(probe, ...)`` is :func:`analyse`.
"""

from __future__ import annotations

import numpy as np

from advisor.domain.advice import advice, table2_scale
from advisor.domain.features import image_features
from advisor.domain.forecast import Fit, predict, published
from advisor.domain.references import DEFAULT_SOURCE, load_reference
from advisor.domain.stats import MIN_IMAGES, gap_width
from advisor.errors import AdvisorError


def probe_features(spec: str, *, split: str | None = "train", max_images: int | None = 1000, seed: int = 0, warn=None,
                   progress=None):
    """Load a probe (any format of ``advisor.data.probe``), decode a seeded sample of at most
    ``max_images`` images, and return ``(features [n, 22], n_total, n_unreadable)``; ``n_total`` is the
    number of images in the split, the data amount N by default. Labels are not needed: a one-class
    folder is fine. Images are decoded one at a time (reduced while decoding, see
    :data:`advisor.data.images.DECODE_SIDE`), so memory does not grow with the sample. ``progress`` (an
    :class:`advisor.ranking.progress.Progress`) follows the images, one step each."""
    from advisor.data.images import iter_images
    from advisor.data.probe import load_probe

    probe = load_probe(spec, split=split, min_classes=1)
    n_total = len(probe)
    if n_total < MIN_IMAGES:
        raise AdvisorError(f"'{spec}' holds {n_total} image; a domain gap and width need at least {MIN_IMAGES}",
                           "point at a folder (or split) with more images")
    idx = np.arange(n_total)
    if max_images is not None and max_images < n_total:
        if max_images < MIN_IMAGES:
            raise AdvisorError(f"--max-images {max_images} is below {MIN_IMAGES}", f"pass --max-images {MIN_IMAGES} or more (default 1000)")
        idx = np.sort(np.random.default_rng(seed).choice(n_total, size=max_images, replace=False))
    rows, bad = [], {}
    step = f"{spec} (domain features)"
    if progress is not None:
        progress.start_model(step, len(idx))
    for i, im, reason in iter_images(probe, [int(i) for i in idx]):
        if progress is not None:
            progress.advance(1)
        if im is None:
            bad[i] = reason
            continue
        if min(im.size) < 2:
            raise AdvisorError(f"image {probe.item_name(i)} is {im.size[0]}×{im.size[1]} pixels; texture features need at least 2×2",
                               "remove it or resize it")
        rows.append(image_features(im))
    if progress is not None:
        progress.end_model(step, False)
    if bad and warn:
        warn(f"{len(bad)} unreadable image(s) skipped, e.g. {probe.item_name(next(iter(bad)))}: {next(iter(bad.values()))}")
    if len(rows) < MIN_IMAGES:
        raise AdvisorError(f"'{spec}': only {len(rows)} of {len(idx)} images could be read; at least {MIN_IMAGES} are needed",
                           "replace the corrupt files (see the warning) or add images")
    return np.stack(rows), n_total, len(bad)


def analyse(spec: str, *, source: str = DEFAULT_SOURCE, split: str | None = "train", max_images: int | None = 1000, seed: int = 0,
            train_size: int | None = None, fit: Fit | None = None, level: float = 0.9, warn=None, progress=None) -> dict:
    """G, W, N of a probe against a source reference, the eq. 3 forecast of T_FB with its band, and
    the freezing advice. ``fit`` defaults to the published eq. 3 (see :func:`published`); a
    :func:`refit` on the user's own (G, W, N, T) history is used on the user's own scale (no
    Table-2 calibration)."""
    ref = load_reference(source)
    X, n_total, n_bad = probe_features(spec, split=split, max_images=max_images, seed=seed, warn=warn, progress=progress)
    if train_size is not None and train_size < 1:
        raise AdvisorError(f"--train-size must be at least 1, got {train_size}", "pass the number of training images")
    N = int(train_size or n_total)
    G, W, G_rbf = gap_width(X, ref)
    notes = []
    if fit is None or fit.label.startswith("Chen et al. 2022"):
        fit = fit or published()
        scale, note = table2_scale(ref)
        G_fit, W_fit = G * scale["G"], W * scale["W"]
        notes += [note] if note else []
    else:
        G_fit, W_fit = G, W
    fc = predict(G_fit, W_fit, N, fit, level)
    if fc.extrapolated:
        notes.append(f"{', '.join(fc.extrapolated)} beyond 3 standard deviations of the fitting data: the forecast extrapolates")
    adv = advice(fc, fc.z[0])
    return {
        "probe": spec, "source": ref.name, "n_features_images": len(X), "N": N,
        "G": G, "W": W, "G_rbf": G_rbf,
        "G_table2": G_fit if fit.label.startswith("Chen et al. 2022") else None,
        "W_table2": W_fit if fit.label.startswith("Chen et al. 2022") else None,
        "forecast": fc.to_json(), "fit": fit.to_json(), "advice": adv, "notes": notes,
        "skipped": n_bad,
    }
