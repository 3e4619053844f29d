"""Domain gap G and width W of Chen et al. 2022, pure numpy.

- :func:`mmd` — the domain gap G: the unbiased squared Maximum Mean Discrepancy (Gretton et al.
  2012, MMD²_u) between the target's and the source's feature distributions, after standardising
  both with the *source reference's* mean and standard deviation (unit: source standard
  deviations). Kernel for G: linear, k(x, y) = x·y, so G is the squared distance between the two
  standardised mean feature vectors (bias-corrected); no bandwidth. Why linear: on the one
  dataset both we and Chen et al. 2022 measured (flowers17 = Table 2's Flowers) it lands on Table 2's
  scale (1.63 vs 1.64), and Table 2's gaps reach 13.1, beyond any Gaussian-kernel MMD² (≤ 2).
  Reported next to it, ``G_rbf``: the same with a Gaussian kernel exp(−||x − y||² / (2 h²)), h =
  the median pairwise distance within the standardised source reference (fixed per source), which
  also sees differences in spread and shape.
- :func:`width` — the domain width W: the largest eigenvalue of the covariance of the target's
  features (standardised with the source reference's statistics, as for G).
- :func:`gap_width` — both (and ``G_rbf``) of a target against a source reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from advisor.domain.references import DomainReference

MIN_IMAGES = 2


def check_rows(X: np.ndarray, what: str) -> np.ndarray:
    """X as float64 [N, D] with at least :data:`MIN_IMAGES` finite rows (ValueError otherwise)."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N, D], got shape {X.shape}")
    if X.shape[0] < MIN_IMAGES:
        raise ValueError(f"{what} needs at least {MIN_IMAGES} rows, got {X.shape[0]}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} has non-finite values")
    return X


def median_bandwidth(X: np.ndarray) -> float:
    """The median pairwise Euclidean distance between the rows of X (distinct pairs)."""
    X = check_rows(X, "X")
    d2 = _sq_dists(X, X)
    iu = np.triu_indices(len(X), k=1)
    h = float(np.sqrt(np.median(d2[iu])))
    return h if h > 0 else 1.0


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d2, 0.0)


def mmd(X: np.ndarray, Y: np.ndarray, kernel: str = "linear", bandwidth: float | None = None) -> float:
    """Unbiased squared Maximum Mean Discrepancy, MMD²_u (Gretton et al. 2012, eq. 3), between the
    samples X [m, D] and Y [n, D]:

        mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j).

    ``kernel="linear"`` (k(x, y) = x·y): the squared distance between the two mean vectors, minus
    its small-sample bias (tr Σ_X / m + tr Σ_Y / n for the plain ``||x̄ − ȳ||²``); unbounded.
    ``kernel="rbf"``: k(x, y) = exp(−||x − y||² / (2 h²)) with ``bandwidth`` h (default: the median
    pairwise distance within Y, the source side by convention here); in [−, 2], sensitive to every
    moment. Both are 0 in expectation when X and Y come from one distribution (a finite sample can
    come out slightly negative)."""
    X, Y = check_rows(X, "X"), check_rows(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, Y has {Y.shape[1]}")
    m, n = len(X), len(Y)
    if kernel == "linear":
        sx, sy = X.sum(axis=0), Y.sum(axis=0)
        xx = (sx @ sx - np.einsum("ij,ij->", X, X)) / (m * (m - 1))
        yy = (sy @ sy - np.einsum("ij,ij->", Y, Y)) / (n * (n - 1))
        return float(xx + yy - 2.0 * (sx @ sy) / (m * n))
    if kernel != "rbf":
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    h = median_bandwidth(Y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {h}")
    g = 1.0 / (2.0 * h * h)
    kxx = np.exp(-g * _sq_dists(X, X))
    kyy = np.exp(-g * _sq_dists(Y, Y))
    kxy = np.exp(-g * _sq_dists(X, Y))
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def width(X: np.ndarray) -> float:
    """The largest eigenvalue of the sample covariance (ddof = 1) of the rows of X."""
    X = check_rows(X, "X")
    return float(np.linalg.eigvalsh(np.cov(X, rowvar=False)).max())


def gap_width(features: np.ndarray, ref: DomainReference) -> tuple[float, float, float]:
    """(G, W, G_rbf) of a target's features against a source reference, both standardised with the
    reference's mean and standard deviation (see :mod:`advisor.domain.stats`)."""
    Z, S = ref.standardise(check_rows(features, "target features")), ref.standardise(ref.features)
    return mmd(Z, S, "linear"), width(Z), mmd(Z, S, "rbf", ref.bandwidth)
