"""Centred kernel alignment (CKA) between two representations (Kornblith et al. 2019), as Neyshabur
et al. 2020 and Gerace et al. 2023 use it.

Pure numeric module (numpy only; no torch). :func:`cka` takes two representations of the *same* N
probe points, ``X`` [N, D1] and ``Y`` [N, D2] (rows aligned), and returns a float: the
feature-similarity measure of Neyshabur et al. 2020 ("What is being transferred in transfer
learning?", §3.2 "Feature Similarity", Table 1) and of Gerace et al. 2023 ("Optimal transfer protocol
by incremental layer defrosting", App. C / Fig. 9, ref. [23]). Both cite Kornblith et al. 2019,
"Similarity of Neural Network Representations Revisited" (ICML), which is the reference implemented
here (its eqs. 1-3 and §3 "Comparing Similarity Structures", and its public reference code
``gram_linear``/``gram_rbf``/``center_gram``/``cka``/``feature_space_linear_cka``); the two papers
themselves give no formula. The Information Imbalance, the other similarity measure, is
:mod:`advisor.numeric.information_imbalance`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from advisor.numeric.checks import EstimatorInputError, as_pair, centred, require_variance

__all__ = ["MIN_POINTS", "cka"]

# Every CKA needs at least this many points (the debiased HSIC divides by N - 3).
MIN_POINTS = 4
# RBF CKA needs the N x N kernel matrices. Up to this N they are computed in float64; above it the
# squared distances and kernel values are float32 (half the memory: 2 x 400 MB at N = 10,000) while
# every mean, centring and sum is still accumulated in float64 (relative error ~1e-6, see tests).
_RBF_FLOAT64_MAX_N = 4096
# Row-chunk budget (number of float64 elements per temporary block) for N x N work.
_CHUNK_ELEMS = 1 << 21
# A debiased self-HSIC below this fraction of the magnitude of the terms it is computed from is
# indistinguishable from zero (cancellation): CKA is then undefined, see ``cka``.
_REL_TOL = 1e-10


def _centre(name: str, arr: np.ndarray) -> np.ndarray:
    """Column-centre ``arr`` (constant columns exactly 0: :func:`advisor.numeric.checks.centred`) and scale it
    to unit Frobenius norm (CKA is invariant to both; the scaling only
    protects the 4th powers in HSIC from overflow). Raises if every feature is constant (zero
    total variance)."""
    require_variance(arr, name, "so its centred kernel is zero and CKA is undefined (0/0)")
    centred_arr = centred(arr)
    return centred_arr / np.linalg.norm(centred_arr)


def _finish_cka(hsic_xy: float, hsic_xx: float, hsic_yy: float, debiased: bool, scale_x: float, scale_y: float) -> float:
    """CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) (Kornblith et al. 2019, eq. 3), guarded.

    ``scale_*`` is the magnitude of the terms each self-HSIC was computed from; a self-HSIC not
    clearly above rounding noise of that magnitude (in particular a negative debiased estimate)
    means the similarity is undefined, and 0.0 is returned with a RuntimeWarning instead of NaN.
    """
    if not (hsic_xx > _REL_TOL * scale_x and hsic_yy > _REL_TOL * scale_y):
        warnings.warn(
            f"CKA undefined: {'debiased ' if debiased else ''}self-HSIC estimates are "
            f"HSIC(K,K) = {hsic_xx:.3g}, HSIC(L,L) = {hsic_yy:.3g} (not > 0 beyond rounding); "
            "returning 0.0 (too few points or degenerate features)",
            RuntimeWarning,
            stacklevel=4,
        )
        return 0.0
    value = hsic_xy / math.sqrt(hsic_xx * hsic_yy)
    # Exact values lie in [0, 1] (biased: <HKH, HLH> of two PSD matrices is >= 0) and in [-1, 1]
    # (debiased: a cosine between the unbiased-centred Gram matrices); clip rounding overshoot.
    return float(min(max(value, -1.0 if debiased else 0.0), 1.0))


def _debiased_dot(xty: float, rows_x: np.ndarray, rows_y: np.ndarray, sq_x: float, sq_y: float, n: int) -> float:
    """Kornblith et al.'s ``_debiased_dot_product_similarity_helper``: the unbiased HSIC of Song
    et al. 2012, times n(n-3), for linear kernels of centred features, computed in
    feature space: ||Y^T X||_F^2 - n/(n-2) <rowsq_X, rowsq_Y> + ||X||_F^2 ||Y||_F^2 / ((n-1)(n-2))."""
    return xty - n / (n - 2.0) * float(rows_x @ rows_y) + sq_x * sq_y / ((n - 1.0) * (n - 2.0))


def _linear_cka_feature_space(xc: np.ndarray, yc: np.ndarray, debiased: bool) -> float:
    """Kornblith et al. 2019, eq. 1 and the linear-CKA form given after eq. 3: for linear
    kernels and centred X, Y, HSIC(XX^T, YY^T) is proportional to ||Y^T X||_F^2 and CKA = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F).
    No N x N matrix is formed (memory O(D1 D2))."""
    n = xc.shape[0]
    xty = float(np.linalg.norm(yc.T @ xc) ** 2)
    xtx = float(np.linalg.norm(xc.T @ xc) ** 2)
    yty = float(np.linalg.norm(yc.T @ yc) ** 2)
    if not debiased:
        return _finish_cka(xty, xtx, yty, False, xtx, yty)
    rows_x = np.einsum("ij,ij->i", xc, xc)
    rows_y = np.einsum("ij,ij->i", yc, yc)
    sq_x, sq_y = float(rows_x.sum()), float(rows_y.sum())
    hxy = _debiased_dot(xty, rows_x, rows_y, sq_x, sq_y, n)
    hxx = _debiased_dot(xtx, rows_x, rows_x, sq_x, sq_x, n)
    hyy = _debiased_dot(yty, rows_y, rows_y, sq_y, sq_y, n)
    scale_x = max(xtx, n / (n - 2.0) * float(rows_x @ rows_x))
    scale_y = max(yty, n / (n - 2.0) * float(rows_y @ rows_y))
    return _finish_cka(hxy, hxx, hyy, True, scale_x, scale_y)


def _centring_means(gram: np.ndarray, debiased: bool) -> np.ndarray:
    """Per-row offsets of Kornblith et al.'s ``center_gram`` so that the centred matrix is
    ``gram[i, j] - m[i] - m[j]`` (+ zeroed diagonal when debiased).

    Biased: HKH = K - 1 mean^T - mean 1^T + mean(K), i.e. m = colmean - mean(colmean)/2.
    Debiased (Song et al. 2012 / Kornblith ``unbiased=True``): diagonal set to 0, then
    m = colsum/(n-2) - sum(colsum/(n-2)) / (2(n-1)).
    """
    n = gram.shape[0]
    colsum = np.sum(gram, axis=0, dtype=np.float64)
    if debiased:
        colsum = colsum - np.diagonal(gram).astype(np.float64)
        means = colsum / (n - 2.0)
        means -= means.sum() / (2.0 * (n - 1.0))
    else:
        means = colsum / n
        means -= means.mean() / 2.0
    return means


def _gram_hsics(gx: np.ndarray, gy: np.ndarray, debiased: bool) -> tuple[float, float, float, float, float]:
    """<Kc, Lc>, ||Kc||^2, ||Lc||^2 (float64) for the (unbiased-)centred symmetric Gram matrices,
    in row chunks so that only O(chunk x N) float64 temporaries exist beside gx, gy. Also returns
    ||K||^2, ||L||^2 (the scales the self-terms are compared with)."""
    n = gx.shape[0]
    mx = _centring_means(gx, debiased)
    my = _centring_means(gy, debiased)
    step = max(1, _CHUNK_ELEMS // n)
    sxy = sxx = syy = kx = ky = 0.0
    for start in range(0, n, step):
        stop = min(n, start + step)
        bx = gx[start:stop].astype(np.float64)
        by = gy[start:stop].astype(np.float64)
        kx += float(np.vdot(bx, bx))
        ky += float(np.vdot(by, by))
        bx -= mx[start:stop, None]
        bx -= mx[None, :]
        by -= my[start:stop, None]
        by -= my[None, :]
        if debiased:
            idx = np.arange(stop - start)
            bx[idx, idx + start] = 0.0
            by[idx, idx + start] = 0.0
        sxy += float(np.vdot(bx, by))
        sxx += float(np.vdot(bx, bx))
        syy += float(np.vdot(by, by))
    return sxy, sxx, syy, kx, ky


def _cka_from_grams(gx: np.ndarray, gy: np.ndarray, debiased: bool) -> float:
    sxy, sxx, syy, kx, ky = _gram_hsics(gx, gy, debiased)
    return _finish_cka(sxy, sxx, syy, debiased, kx, ky)


def _rbf_gram(z: np.ndarray, threshold: float, name: str) -> np.ndarray:
    """Kornblith et al.'s ``gram_rbf``: K_ij = exp(-||z_i - z_j||^2 / (2 sigma^2)) with
    sigma^2 = threshold^2 * median of the N x N matrix of squared distances (all N^2 entries,
    diagonal zeros included, exactly as the reference code), i.e. sigma = threshold x the median
    pairwise Euclidean distance. Computed in place in one N x N buffer (float32 above
    ``_RBF_FLOAT64_MAX_N`` points, float64 otherwise)."""
    n = z.shape[0]
    dtype = np.float64 if n <= _RBF_FLOAT64_MAX_N else np.float32
    zt = np.ascontiguousarray(z, dtype=dtype)
    sq = zt @ zt.T  # symmetric (numpy uses syrk for a @ a.T)
    norms = np.diagonal(sq).copy()
    sq *= -2.0
    sq += norms[:, None]
    sq += norms[None, :]
    np.maximum(sq, 0.0, out=sq)
    np.fill_diagonal(sq, 0.0)
    median = float(np.median(sq))
    if not median > 0.0:
        raise EstimatorInputError(
            f"{name}: the median pairwise distance is zero (more than half of the point pairs "
            "coincide), so the RBF bandwidth threshold x median is zero; use kernel='linear'"
        )
    sq *= dtype(-1.0 / (2.0 * threshold**2 * median))
    np.exp(sq, out=sq)
    return sq


def cka(X, Y, kernel: str = "linear", threshold: float = 1.0, debiased: bool = False) -> float:
    """Centred kernel alignment between two representations of the same N points.

    Definition (Kornblith et al. 2019, eqs. 1-3; used by Neyshabur et al. 2020 §3.2 / Table 1 and Gerace et al. 2023
    App. C / Fig. 9):  ``CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))`` with ``K``, ``L``
    the N x N kernel (Gram) matrices of the rows of ``X`` and ``Y``.

    * ``debiased=False``: HSIC(K, L) = tr(K H L H) / (N-1)^2 with H = I - 11^T/N (Gretton et al.
      2005; Kornblith eq. 2); the (N-1)^2 cancels in the ratio. Result in [0, 1].
    * ``debiased=True``: the unbiased HSIC estimator of Song et al. 2012 (JMLR, "HSIC_1"),
      HSIC_1 = [tr(K~L~) + 1^T K~ 1 1^T L~ 1 / ((N-1)(N-2)) - 2/(N-2) 1^T K~ L~ 1] / (N(N-3)),
      K~ = K with zero diagonal; as Kornblith's reference ``cka(..., debiased=True)``. Result in
      [-1, 1] (it estimates the population CKA, so it is ~0 for independent data).

    Kernels: ``"linear"`` K = X X^T; ``"rbf"`` K_ij = exp(-d_ij^2 / (2 sigma^2)) with
    sigma = ``threshold`` x median pairwise Euclidean distance (reference ``gram_rbf``: sigma^2 =
    threshold^2 x median of all N^2 squared distances, diagonal included).

    Computation: features are column-centred (and scaled to unit norm -- CKA is invariant).
    Linear with max(D1, D2) <= N uses the feature-space identities of Kornblith's
    ``feature_space_linear_cka`` (||Y^T X||_F^2 etc.; debiased via
    ``_debiased_dot_product_similarity_helper``), memory O(D^2), no N x N matrix. Linear with
    wider features, and RBF, build the N x N Gram matrices (RBF: float32 entries above N = 4096,
    float64 otherwise) and accumulate the centred inner products in float64 row chunks.

    Guard: a debiased self-HSIC is mathematically >= 0 but is a difference of large terms; when
    HSIC(K,K) or HSIC(L,L) is not > 1e-10 x the magnitude of its terms (<= 0 included) the
    similarity is undefined -- 0.0 is returned with a ``RuntimeWarning`` (never NaN). The final
    value is clipped to [0, 1] (biased) or [-1, 1] (debiased) to absorb rounding.

    ``X`` float[N, D1] and ``Y`` float[N, D2] (any real dtype; float64 inside, so float32 and float64
    input give the same value; invariant to rescaling either, to translations and rotations, and to
    appending constant features).

    Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for non-numeric, non-2-D or
    non-finite inputs, N < 4, different N, a representation whose features are *all* constant
    (zero total variance: CKA is 0/0), or (RBF) a zero median distance; ValueError for an unknown
    kernel or a non-positive threshold. Individual constant features (e.g. dead ReLU channels) are fine.
    """
    x, y = as_pair(X, Y, ("X", "Y"), min_rows=MIN_POINTS)
    if kernel not in ("linear", "rbf"):
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    if kernel == "rbf":
        try:
            threshold = float(threshold)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"threshold must be a positive number, got {threshold!r}") from exc
        if not (math.isfinite(threshold) and threshold > 0):
            raise ValueError(f"threshold must be a positive finite number, got {threshold!r}")
    debiased = bool(debiased)
    xc = _centre("X", x)
    yc = _centre("Y", y)
    n = xc.shape[0]
    if kernel == "linear":
        if max(xc.shape[1], yc.shape[1]) <= n:
            return _linear_cka_feature_space(xc, yc, debiased)
        return _cka_from_grams(xc @ xc.T, yc @ yc.T, debiased)
    gx = _rbf_gram(xc, threshold, "X")
    gy = _rbf_gram(yc, threshold, "Y")
    return _cka_from_grams(gx, gy, debiased)
