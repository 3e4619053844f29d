"""SFDA: Self-challenging Fisher Discriminant Analysis.

Reference: Wenqi Shao, Xun Zhao, Yixiao Ge, Zhaoyang Zhang, Lei Yang, Xiaogang Wang, Ying Shan, Ping Luo,
"Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space",
ECCV 2022 (Sec. 3: regularised FDA with adaptive shrinkage, ConfMix, and the SFDA score), following the
authors' public reference implementation (github.com/TencentARC/SFDA) where the paper leaves details open.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import softmax

from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl
from advisor.similarity import as_labelled

SHRINKAGE_A = 5.0  # lambda = exp(-a * largest eigenvalue of S_W), a = 5 as in the reference code
MIN_SHRINKAGE = 1e-10  # lower bound on lambda, as in the reference code


def _largest_eigenvalue(S: np.ndarray) -> float:
    """Largest eigenvalue of the symmetric PSD matrix ``S`` (Lanczos from a fixed start: deterministic).

    The reference code takes 3 power-iteration steps, an approximation from below; this is the value
    the paper's formula asks for.
    """
    if S.shape[0] <= 64:
        return float(np.linalg.eigvalsh(S)[-1])
    from scipy.sparse.linalg import eigsh

    return float(eigsh(S, k=1, which="LA", v0=np.ones(S.shape[0]), return_eigenvectors=False)[0])


def _fda_posterior(X: np.ndarray, y: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
    """Posterior ``p(c | x_i)`` [N, C] of the regularised Fisher classifier, and the shrinkage used.

    ``X``: centred float64 [N, D]; ``y``: class ids 0..C-1. Within-class scatter
    ``S_W = sum_c pi_c cov_c`` (1/N_c covariances), shrunk towards ``mu I`` with ``mu = tr(S_W) / D``:
    ``S_W(lambda) = (1 - lambda) S_W + lambda mu I``, ``lambda = max(exp(-a sigma_max(S_W)), 1e-10)``
    unless given. The reference projects on all D generalised eigenvectors W of (S_B, S_W(lambda))
    and scores ``x^T W W^T m_c - m_c^T W W^T m_c / 2 + log pi_c``; as ``W^T S_W(lambda) W = I``,
    ``W W^T = S_W(lambda)^-1`` (so S_B drops out), which is solved for directly here.
    """
    n, d = X.shape
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((len(counts), d))
    np.add.at(means, y, X)
    means /= counts[:, None]
    Xw = X - means[y]
    Sw = Xw.T @ Xw / n
    if shrinkage is None:
        shrinkage = max(float(np.exp(-SHRINKAGE_A * _largest_eigenvalue(Sw))), MIN_SHRINKAGE)
    mu = np.trace(Sw) / d
    if mu <= 0:  # no within-class variance at all: any positive scale gives the same ranking
        mu = 1.0
    S = (1.0 - shrinkage) * Sw
    S.flat[:: d + 1] += shrinkage * mu
    try:
        coef = scipy.linalg.solve(S, means.T, assume_a="pos").T  # [C, D]
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        coef = np.linalg.lstsq(S, means.T, rcond=None)[0].T
    scores = X @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(counts / n)
    return softmax(scores, axis=1), shrinkage


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA score (Shao et al. 2022), higher is better; in (0, 1].

    ``features``: float[N, D] (float64 inside, centred: the Fisher classifier and ConfMix are
    translation-equivariant, so this only avoids cancellation); ``labels``: [N] with >= 2 classes.

    1. Regularised FDA posterior ``p(c | x)`` with the adaptive shrinkage ``lambda`` (``_fda_posterior``).
    2. Softened as in the reference: ``q = softmax(p)`` row-wise.
    3. ConfMix (self-challenge): each sample of class c moves towards the mean of the *other* class
       means, ``x_i <- q_{i,c} x_i + (1 - q_{i,c}) mean_{j != c} m_j`` (class means of step 1).
    4. The regularised FDA is refitted on the mixed samples with the same lambda; the score is the
       mean posterior of the true class, ``1/N sum_i p(y_i | x_i)`` (no log, as in the reference code).
    """
    X, y = as_labelled(features, labels, min_rows=2)
    n = X.shape[0]
    C = int(y.max()) + 1
    if C < 2:
        raise ValueError("SFDA needs at least 2 classes")
    X = X - X.mean(axis=0)
    prob, shrinkage = _fda_posterior(X, y, None)
    prob = softmax(prob, axis=1)
    counts = np.bincount(y).astype(np.float64)
    means = np.zeros((C, X.shape[1]))
    np.add.at(means, y, X)
    means /= counts[:, None]
    others = (means.sum(axis=0) - means) / (C - 1)  # mean of the other classes' means [C, D]
    q = prob[np.arange(n), y][:, None]
    mixed = q * X + (1.0 - q) * others[y]
    prob, _ = _fda_posterior(mixed, y, shrinkage)
    return float(np.mean(prob[np.arange(n), y]))


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="sfda", fn=lambda features, labels, **_: sfda(features, labels), version="1",
        needs=("labels",),
        description="SFDA (Shao et al., ECCV 2022): self-challenging regularised Fisher discriminant, mean true-class posterior",
    ))
