"""Representation-similarity measures of the seed papers: CKA and the Information Imbalance.

Pure numeric module (numpy only; no torch). Every function takes two representations of the
*same* N probe points, ``X`` [N, D1] and ``Y`` [N, D2] (rows aligned), and returns a float.

* :func:`cka` -- centred kernel alignment, the feature-similarity measure of Neyshabur et al. 2020
  (Neyshabur et al. 2020, "What is being transferred in transfer learning?", §3.2 "Feature
  Similarity", Table 1) and of Gerace et al. 2023's App. C / Fig. 9 (Gerace et al., "Optimal transfer
  protocol by incremental layer defrosting", ref. [23]). Both cite Kornblith et al. 2019,
  "Similarity of Neural Network Representations Revisited" (ICML), which is the reference
  implemented here (its eqs. 1-3 and §3 "Comparing Similarity Structures", and its public
  reference code ``gram_linear``/``gram_rbf``/``center_gram``/``cka``/
  ``feature_space_linear_cka``). The seed papers themselves give no formula.
* :func:`information_imbalance` / :func:`information_imbalance_pair` -- the Information
  Imbalance (II) of Gerace et al. 2023, section "Representation similarity and transferability" (Fig. 6,
  App. B Fig. 8), ref. [43] = Glielmo et al. 2022, "Ranking the information content of distance
  measures" (PNAS Nexus 1(2) pgac039), whose definition
  ``Delta(A->B) = (2/N) <r^B | r^A = 1> = 2/N^2 * sum_{i,j: r^A_ij = 1} r^B_ij`` is implemented.

Conventions, and the one discrepancy between the papers, are documented on each function.
"""

from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from advisor.numeric.checks import EstimatorInputError, as_matrix, centred, check_same_rows, require_variance

__all__ = ["cka", "information_imbalance", "information_imbalance_pair"]

# RBF CKA needs the N x N kernel matrices. Up to this N they are computed in float64; above it the
# squared distances and kernel values are float32 (half the memory: 2 x 400 MB at N = 10,000) while
# every mean, centring and sum is still accumulated in float64 (relative error ~1e-6, see tests).
_RBF_FLOAT64_MAX_N = 4096
# Row-chunk budget (number of float64 elements per temporary block) for N x N work.
_CHUNK_ELEMS = 1 << 21
# A debiased self-HSIC below this fraction of the magnitude of the terms it is computed from is
# indistinguishable from zero (cancellation): CKA is then undefined, see ``cka``.
_REL_TOL = 1e-10


# ----------------------------------------------------------------------------------------------
# validation (advisor.numeric.checks: the estimators' one input-check kit)
# ----------------------------------------------------------------------------------------------
# Every measure here needs at least this many points (the debiased HSIC divides by N - 3).
MIN_POINTS = 4


def _validate_pair(x, y, names: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Both representations as finite float64 [N, D] matrices of the same N >= 4 points."""
    a = as_matrix(x, names[0], min_rows=MIN_POINTS)
    b = as_matrix(y, names[1], min_rows=MIN_POINTS)
    check_same_rows({names[0]: a, names[1]: b})
    return a, b


def _centre(name: str, arr: np.ndarray) -> np.ndarray:
    """Column-centre ``arr`` (constant columns exactly 0: :func:`advisor.numeric.checks.centred`) and scale it
    to unit Frobenius norm (CKA and distance *ranks* are invariant to both; the scaling only
    protects the 4th powers in HSIC from overflow). Raises if every feature is constant (zero
    total variance)."""
    require_variance(arr, name, "so its centred kernel is zero and CKA is undefined (0/0)")
    centred_arr = centred(arr)
    return centred_arr / np.linalg.norm(centred_arr)


# ----------------------------------------------------------------------------------------------
# CKA
# ----------------------------------------------------------------------------------------------
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
    x, y = _validate_pair(X, Y, ("X", "Y"))
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


# ----------------------------------------------------------------------------------------------
# Information Imbalance
# ----------------------------------------------------------------------------------------------
def _check_k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise ValueError(f"k must be an integer, got {k!r}")
    k = int(k)
    if not 1 <= k <= n - 1:
        raise ValueError(f"k must be between 1 and N-1 = {n - 1} (N = {n} points used), got {k}")
    return k


def _subset(n: int, max_points, seed) -> np.ndarray | None:
    if max_points is None:
        return None
    if isinstance(max_points, bool) or not isinstance(max_points, numbers.Integral):
        raise ValueError(f"max_points must be an integer or None, got {max_points!r}")
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    if n <= max_points:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_points), replace=False))


class _Space:
    """One representation prepared for distance computations: centred (distance-preserving) and
    scaled by a power of two (exact, rank-preserving, avoids overflow), with squared row norms and
    the relative rounding tolerance of Gram-expansion squared distances in this dimension."""

    def __init__(self, arr: np.ndarray):
        z = arr - arr.mean(axis=0, keepdims=True)
        peak = float(np.max(np.abs(z)))
        if peak > 0:
            z *= 2.0 ** -math.frexp(peak)[1]
        self.z = z
        self.norms = np.einsum("ij,ij->i", z, z)
        self.max_norm = float(self.norms.max())
        # |fl(n_i + n_l - 2 z_i.z_l) - d_il| <~ (D + 4) eps (n_i + n_l); generous factor 16.
        self.tau = 16.0 * (z.shape[1] + 4) * np.finfo(np.float64).eps

    def sq_dist_rows(self, start: int, stop: int) -> np.ndarray:
        """Squared Euclidean distances from points start..stop-1 to all points, [chunk, N], with
        the point itself at +inf so that it is never a neighbour and never 'closer'."""
        d = self.z[start:stop] @ self.z.T
        d *= -2.0
        d += self.norms[start:stop, None]
        d += self.norms[None, :]
        np.maximum(d, 0.0, out=d)
        idx = np.arange(stop - start)
        d[idx, idx + start] = np.inf
        return d


def _nearest(d: np.ndarray, space: _Space, rows: slice, k: int) -> np.ndarray:
    """Indices [chunk, k] of the k nearest neighbours of each row in ``d`` (squared distances).

    Distances within rounding tolerance of the k-th smallest one are ties; among tied candidates
    at the boundary the lowest indices are taken (deterministic, independent of BLAS rounding).
    The neighbour *set* is all that matters for the Information Imbalance, not its order.
    """
    kth = np.partition(d, k - 1, axis=1)[:, k - 1 : k]  # [chunk, 1]
    tol = space.tau * 2.0 * (space.norms[rows, None] + space.max_norm)
    sure = d < kth - tol
    band = np.abs(d - kth) <= tol
    need = k - np.count_nonzero(sure, axis=1)
    chosen = sure | band
    if np.any(np.count_nonzero(band, axis=1) > need):  # boundary ties: lowest indices first
        chosen = sure | (band & (np.cumsum(band, axis=1) <= need[:, None]))
    cols = np.nonzero(chosen)[1]  # row-major: k per row, in index order
    return cols.reshape(d.shape[0], k)


def _rank_sum(d_src: np.ndarray, s_src: _Space, d_tgt: np.ndarray, s_tgt: _Space, rows: slice, k: int) -> int:
    """sum_i sum_{j in kNN_src(i)} r^tgt_ij with r^tgt_ij = 1 + #{l != i : d^tgt_il < d^tgt_ij}
    (strictly closer, beyond rounding tolerance: equidistant points share the smaller rank)."""
    nn = _nearest(d_src, s_src, rows, k)
    target = np.take_along_axis(d_tgt, nn, axis=1)  # [chunk, k]
    tol = s_tgt.tau * (2.0 * s_tgt.norms[rows, None] + s_tgt.norms[nn] + s_tgt.max_norm)
    closer = d_tgt[:, None, :] < (target - tol)[:, :, None]  # [chunk, k, N] booleans
    return int(np.count_nonzero(closer)) + target.size


def _rank_sums(a: np.ndarray, b: np.ndarray, k: int, both: bool) -> tuple[int, int]:
    """Rank sums for A->B (and B->A when ``both``), in row chunks: memory O(chunk x k x N)."""
    n = a.shape[0]
    sa, sb = _Space(a), _Space(b)
    step = max(1, min(n, _CHUNK_ELEMS // (n * max(k, 4))))
    total_ab = total_ba = 0
    for start in range(0, n, step):
        stop = min(n, start + step)
        rows = slice(start, stop)
        da = sa.sq_dist_rows(start, stop)
        db = sb.sq_dist_rows(start, stop)
        total_ab += _rank_sum(da, sa, db, sb, rows, k)
        if both:
            total_ba += _rank_sum(db, sb, da, sa, rows, k)
    return total_ab, total_ba


def information_imbalance_pair(A, B, k: int = 1, max_points: int | None = None, seed: int = 0) -> dict:
    """Information Imbalance in both directions: ``{"a_to_b", "b_to_a", "n_used"}``.

    Definition (Gerace et al. 2023, section "Representation similarity and transferability", inline formula
    II = 2/N^2 sum_i n_i, citing [43] = Glielmo et al. 2022, whose definition of Delta(A->B) is
    used, with the k-neighbour average of their reference code DADApy ``_return_imbalance``)::

        Delta(A->B) = 2 / (N^2 k) * sum_i sum_{j in kNN_A(i)} r^B_ij  = mean rank / (N/2)

    r^B_ij is the rank of j among i's neighbours in space B (nearest = 1). k = 1 gives Glielmo's
    Delta(A->B) = (2/N) <r^B | r^A = 1> = 2/N^2 sum_i r^B_{i, nn_A(i)}. Limits: if A predicts
    B's neighbourhoods perfectly (identical spaces, isometries, rescalings) every rank is <= k,
    Delta = (k+1)/N ~ 0; if A carries no information on B the ranks are uniform on 1..N-1 with
    mean N/2, Delta ~ 1 for every k (the 1/k keeps this limit at 1). Values > 1 are possible
    (A's neighbours are systematically far in B).

    Discrepancy between the papers: Gerace et al. 2023 counts n_i = number of points *strictly closer* to i
    than j in B (i.e. n_i = r^B_ij - 1, the nearest neighbour gives 0) and writes
    II = 2/N^2 sum_i n_i, which is Glielmo's value minus exactly 2/N (so Gerace et al. 2023's II is exactly
    0 for identical spaces and (N-2)/N in the independent limit). Glielmo's convention (rank
    from 1) is returned; subtract 2/N (for any k) to get Gerace et al. 2023's II. The two agree as N grows.

    Details: Euclidean distances, squared, by the Gram expansion in float64 on centred copies
    (BLAS speed). Two squared distances that differ by less than the expansion's rounding bound
    (16 (D+4) eps x the squared norms involved, ~1e-13 relative) count as equal, so exact ties
    (duplicate points, symmetric configurations) stay ties whatever the rounding. Ties: in the
    source space the k nearest are the points within tolerance below the k-th distance, completed
    from those tied with it by lowest index first; in the target space
    r^B_ij = 1 + #{l != i: d^B_il < d^B_ij}, so points equidistant with j share its (smallest)
    rank -- exactly Gerace et al. 2023's "number of points whose distance from i is smaller" + 1. A constant
    B therefore gives Delta(A->B) = 2/N (anything predicts it); a constant A gives ~1.
    Memory O(chunk x k x N) booleans, chunks of rows; no N x N matrix.

    ``max_points``: when N > max_points, a random subset of ``max_points`` points drawn with
    ``numpy.random.default_rng(seed)`` (without replacement, same subset for both directions)
    is used; ``n_used`` reports the number of points actually used.

    ``A`` float[N, D1], ``B`` float[N, D2] (any real dtype, float64 inside). Invariant to rescaling
    either (ranks) and to appending constant features, up to the rounding tolerance.

    Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for non-numeric, non-2-D or
    non-finite inputs, N < 4 or different N; ValueError for k not an integer in [1, n_used - 1] or
    max_points < 4.
    """
    ab, ba, n = _imbalances(A, B, k, max_points, seed, both=True)
    return {"a_to_b": ab, "b_to_a": ba, "n_used": n}


def information_imbalance(A, B, k: int = 1, max_points: int | None = None, seed: int = 0) -> float:
    """Delta(A -> B): how well distances in A predict the neighbourhoods of B (0: perfectly,
    ~1: not at all). Same definition, conventions and arguments as
    :func:`information_imbalance_pair` (Glielmo et al. 2022; Gerace et al. 2023, "Representation
    similarity and transferability"), computing only this direction."""
    return _imbalances(A, B, k, max_points, seed, both=False)[0]


def _imbalances(A, B, k, max_points, seed, both: bool) -> tuple[float, float | None, int]:
    """Validate, subsample, and return (Delta(A->B), Delta(B->A) or None, points used)."""
    a, b = _validate_pair(A, B, ("A", "B"))
    idx = _subset(a.shape[0], max_points, seed)
    if idx is not None:
        a, b = a[idx], b[idx]
    n = a.shape[0]
    k = _check_k(k, n)
    total_ab, total_ba = _rank_sums(a, b, k, both=both)
    norm = 2.0 / (float(n) * n * k)
    return float(total_ab * norm), (float(total_ba * norm) if both else None), int(n)
