"""The linear probe: the benchmark's frozen-feature baseline and LP-FT's first stage (Kumar et al. 2022).

Pure numpy + scikit-learn (no torch): :func:`fit_linear_probe` fits the probe on classifier inputs,
:func:`probe_head` turns it into a linear classifier's weights."""

from __future__ import annotations

import numpy as np


def probe_head(features: np.ndarray, labels: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """The linear probe as a classifier's weights: LP-FT's first stage (Kumar et al. 2022, §4: "first
    train a linear probe, then fine-tune the entire model from there").

    ``features``: ``float[N, D]`` classifier inputs (``pre_logits``) of the training images with the
    pretrained weights; ``labels``: ``int[N]`` in ``0..num_classes-1``. Fits :func:`fit_linear_probe`
    (standardise + L2 logistic regression) and folds the standardisation into the weights, so
    ``features @ W.T + b`` gives the probe's logits. Returns ``(W float32[num_classes, D], b
    float32[num_classes])``. Two classes (one sklearn coefficient row ``w``) give logits ``∓ z/2``
    (the same softmax); a class absent from ``labels`` gets zero weights and a bias 10 below the lowest."""
    clf = fit_linear_probe(features, labels)
    scaler, lr = clf[0], clf[-1]
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    coef = lr.coef_ / scale  # [K or 1, D]: w · (x - μ) / σ = (w / σ) · x - (w / σ) · μ
    intercept = lr.intercept_ - coef @ scaler.mean_
    if len(lr.classes_) == 2 and coef.shape[0] == 1:
        coef = np.vstack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    w = np.zeros((num_classes, features.shape[1]))
    b = np.full(num_classes, float(intercept.min()) - 10.0)
    for row, c in enumerate(lr.classes_):
        w[int(c)], b[int(c)] = coef[row], intercept[row]
    return w.astype(np.float32), b.astype(np.float32)


def fit_linear_probe(features: np.ndarray, labels: np.ndarray):
    """The linear probe of :data:`advisor.bench.config.PROBE_RECIPE`: standardise, then L2 logistic regression
    (C = 1, lbfgs, 1,000 iterations) on ``features`` ``float[N, D]`` and ``labels`` ``int[N]``; a fitted
    sklearn pipeline. Convergence warnings (separable data) are silenced."""
    import warnings

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(np.asarray(features, dtype=np.float64), np.asarray(labels))
    return clf
