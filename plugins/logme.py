"""LogME: the maximum log evidence of a Bayesian linear model on frozen features.

Reference: Kaichao You, Yong Liu, Jianmin Wang, Mingsheng Long, "LogME: Practical Assessment of
Pre-trained Models for Transfer Learning", ICML 2021 (http://proceedings.mlr.press/v139/you21b.html).
"""

from __future__ import annotations

import numpy as np

from advisor.numeric.checks import as_labelled, numerical_rank
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

# Guards alpha = gamma / (m^T m + EPS) and beta = (N - gamma) / (||y - F m||^2 + EPS) against a
# zero denominator (an empty model, or an exact fit when D >= N); same value as the reference code.
# It caps alpha at gamma / EPS, so a class with no linear signal (whose evidence only approaches its
# supremum as alpha -> inf) scores slightly (~1e-3) below that limit, as in the reference.
EPS = 1e-5
TOL = 1e-6  # stop when lambda = alpha / beta changes by less than this, relatively
# Usually a handful of steps suffice, but with D > N the fixed point can crawl for hundreds
# (the reference's 11 steps leave scores off by up to ~0.03 there); iterations are cheap.
MAX_ITER = 1000


def logme(features: np.ndarray, labels: np.ndarray) -> float:
    """LogME score of ``features`` for the classification target ``labels`` (higher is better).

    ``features``: ``float[N, D]`` (any real dtype; float64 inside, so float32 and float64 input
    score the same); ``labels``: ``[N]`` class ids (any values; each distinct value is a class).
    Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses. For each class ``c`` the target is the indicator
    ``y = [labels == c]`` (float64, [N]) and the model is ``y ~ N(F w, 1/beta)``,
    ``w ~ N(0, 1/alpha)``. Its log evidence (paper eq. 2)

        L(alpha, beta) = N/2 log beta + D/2 log alpha - N/2 log 2pi
                         - beta/2 ||F m - y||^2 - alpha/2 m^T m - 1/2 log |A|,
        A = alpha I + beta F^T F,   m = beta A^-1 F^T y,

    is maximised by the paper's fixed-point iteration (Algorithms 1 and 2), with ``sigma_i`` the
    eigenvalues of ``F^T F`` (denominators get ``+ EPS``, as in the reference code):

        gamma = sum_i sigma_i / (sigma_i + alpha/beta),
        alpha = gamma / m^T m,   beta = (N - gamma) / ||y - F m||^2.

    Everything is computed from the thin SVD ``F = U S V^T`` (float64): with ``x = U^T y`` and
    ``t = alpha / beta``, ``m^T m = sum sigma x^2 / (sigma + t)^2`` and
    ``||y - F m||^2 = sum (x t / (sigma + t))^2 + ||y||^2 - ||x||^2``. The ``D - rank`` zero
    eigenvalues make ``log |A|`` include ``(D - rank) log alpha``, which cancels ``D/2 log alpha``:

        L = N/2 log beta - 1/2 sum_i log(1 + sigma_i / t) - beta/2 ||F m - y||^2 - alpha/2 m^T m
            - N/2 log 2pi   (sum over the nonzero sigma_i only),

    so the score is well defined when ``D > N`` or ``F`` is rank-deficient. (The reference code's
    default SVD path drops that term and returns large positive scores when ``D > N``.) Returns the
    mean over classes of ``L / N`` at the fixed point; iris (raw features) gives -0.16006.

    Not invariant to rescaling the features, although the maximum evidence itself is (alpha
    absorbs the scale): the ``+ EPS`` guards are absolute, as in the reference code, and as ``m^T m``
    falls towards EPS (large features) they pull the fixed point away. On 4 Gaussian classes in
    16-D: -0.6763 for features of magnitude 1, -0.6950 x 100, -0.844 x 1e3, -1.40 x 1e6.
    """
    F, y, counts = as_labelled(features, labels, min_classes=1)
    N = F.shape[0]

    u, s, _ = np.linalg.svd(F, full_matrices=False)
    # Directions with numerically zero singular values carry no signal: treat them as exactly 0
    # (same rank threshold as np.linalg.matrix_rank), so they only add to the residual.
    rank = numerical_rank(s, F.shape)
    sigma = s[:rank] ** 2
    Y = np.eye(len(counts))[y]  # one-hot targets [N, C]
    X = u[:, :rank].T @ Y  # projections of each target on the column space of F [rank, C]
    return float(np.mean(_max_evidence(X, Y.sum(axis=0), sigma[:, None], N)))


def _max_evidence(X: np.ndarray, yy: np.ndarray, sigma: np.ndarray, N: int) -> np.ndarray:
    """Maximum of L(alpha, beta) / N per target [C], given X = U^T Y [k, C], ||y||^2 [C], sigma [k, 1].

    All targets iterate together (vectorised), but each stops on its own criterion, so a score
    never depends on which other classes are present.
    """
    outside = np.maximum(yy - np.sum(X**2, axis=0), 0.0)  # part of y outside span(F): never fitted

    def fit(t, X, outside):  # gamma, m^T m, ||y - F m||^2 at lambda = alpha / beta = t
        return (
            np.sum(sigma / (sigma + t), axis=0),
            np.sum(sigma * X**2 / (sigma + t) ** 2, axis=0),
            np.sum((X * t / (sigma + t)) ** 2, axis=0) + outside,
        )

    alpha, beta = np.ones(X.shape[1]), np.ones(X.shape[1])
    active = np.arange(X.shape[1])
    for _ in range(MAX_ITER):
        t = alpha[active] / beta[active]
        gamma, m2, r2 = fit(t, X[:, active], outside[active])
        alpha[active], beta[active] = gamma / (m2 + EPS), (N - gamma) / (r2 + EPS)
        active = active[np.abs(alpha[active] / beta[active] - t) > TOL * t]
        if not active.size:
            break
    # Evaluate at the final (alpha, beta) with the posterior mean m that belongs to them.
    t = alpha / beta
    _, m2, r2 = fit(t, X, outside)
    log_det = np.sum(np.log1p(sigma / t), axis=0)  # log|A| - D log alpha
    L = 0.5 * N * np.log(beta) - 0.5 * log_det - 0.5 * beta * r2 - 0.5 * alpha * m2 - 0.5 * N * np.log(2 * np.pi)
    return L / N


def _score(features, labels, **_inputs) -> float:
    return logme(features, labels)


@hookimpl
def register_estimators(register):
    register(
        Estimator(
            name="logme",
            fn=_score,
            version="1",
            higher_is_better=True,
            needs=("labels",),
            description="LogME (You et al., ICML 2021): log evidence of a Bayesian linear model on the features, per sample",
        )
    )
