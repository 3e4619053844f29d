"""The Information Imbalance between two representations (Glielmo et al. 2022; Gerace et al. 2023).

Pure numeric module (numpy only; no torch). :func:`information_imbalance` /
:func:`information_imbalance_pair` take two representations of the *same* N probe points, ``A``
[N, D1] and ``B`` [N, D2] (rows aligned): Delta(A->B), how well neighbourhoods in A predict those in
B, as Gerace et al. 2023 use it ("Optimal transfer protocol by incremental layer defrosting",
section "Representation similarity and transferability", Fig. 6, App. B Fig. 8), whose ref. [43] =
Glielmo et al. 2022, "Ranking the information content of distance measures" (PNAS Nexus 1(2)
pgac039), gives the definition implemented:
``Delta(A->B) = (2/N) <r^B | r^A = 1> = 2/N^2 * sum_{i,j: r^A_ij = 1} r^B_ij``.

The conventions, and the one discrepancy between the two papers (where ranks start), are
documented on :func:`information_imbalance_pair`.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from advisor.numeric.checks import as_pair

__all__ = ["MIN_POINTS", "information_imbalance", "information_imbalance_pair"]

# The fewest points a probe may have: the same as CKA's (advisor.numeric.cka.MIN_POINTS), so that
# one probe is refused by both measures alike.
MIN_POINTS = 4
# Row-chunk budget (number of float64 elements per temporary block) for N x N work.
_CHUNK_ELEMS = 1 << 21


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
    a, b = as_pair(A, B, ("A", "B"), min_rows=MIN_POINTS)
    idx = _subset(a.shape[0], max_points, seed)
    if idx is not None:
        a, b = a[idx], b[idx]
    n = a.shape[0]
    k = _check_k(k, n)
    total_ab, total_ba = _rank_sums(a, b, k, both=both)
    norm = 2.0 / (float(n) * n * k)
    return float(total_ab * norm), (float(total_ba * norm) if both else None), int(n)
