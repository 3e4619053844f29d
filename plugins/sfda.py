"""SFDA: Self-challenging Fisher Discriminant Analysis.

Reference: Wenqi Shao, Xun Zhao, Yixiao Ge, Zhaoyang Zhang, Lei Yang, Xiaogang Wang, Ying Shan, Ping Luo,
"Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher Space",
ECCV 2022 (Sec. 3: regularised FDA with adaptive shrinkage, ConfMix, and the SFDA score), following the
authors' public reference implementation (github.com/TencentARC/SFDA) where the paper leaves details open.

Two departures, both for probes with about as many (or more) feature dimensions as images, where the
paper's recipe returned exactly 1.0 for any labels, pure noise included (version 1 of this plugin):

- **Shrinkage that knows the sample size.** The paper's adaptive strength ``exp(-a sigma_max(S_W))``
  looks only at the scale of the within-class scatter, so for typical features (largest eigenvalue
  > 5) it sits at its floor of 1e-10. With D > N - C, ``S_W`` is singular (rank <= N - C) and the
  class means have components in its null space: the "Fisher space" gets directions of zero
  within-class variance, infinite Fisher ratio, and every sample is classified with posterior 1.
  The strength used here is the larger of the paper's and the Ledoit & Wolf (2004) estimate for the
  same shrinkage target (``mu I``), which is the amount of shrinkage the sample size calls for
  (close to 0 when N >> D and the scatter is well estimated, close to 1 when it is not).
- **Held-out posteriors.** The score is a mean posterior of the true class. Measured on the samples
  the discriminant was fitted on, it rewards any classifier with enough parameters: at D >= N even a
  nearest-class-mean rule separates random labels in-sample, whatever the shrinkage. Each sample's
  posterior (in both FDA passes) therefore comes from the discriminant fitted on the other folds of
  a stratified, deterministic 5-fold split (sample k of each class goes to fold k mod 5). For
  N >> D this changes little; for random labels it gives about chance (1/C), as it should.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
from scipy.special import softmax

from advisor.numeric.checks import as_labelled, centred, class_means
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

SHRINKAGE_A = 5.0  # lambda = exp(-a * largest eigenvalue of S_W), a = 5 as in the reference code
MIN_SHRINKAGE = 1e-10  # lower bound on lambda, as in the reference code
FOLDS = 5  # held-out posteriors: stratified folds


def _largest_eigenvalue(S: np.ndarray) -> float:
    """Largest eigenvalue of the symmetric PSD matrix ``S`` (Lanczos from a fixed start: deterministic).

    The reference code takes 3 power-iteration steps, an approximation from below; this is the value
    the paper's formula asks for.
    """
    if S.shape[0] <= 64:
        return float(np.linalg.eigvalsh(S)[-1])
    from scipy.sparse.linalg import eigsh

    return float(eigsh(S, k=1, which="LA", v0=np.ones(S.shape[0]), return_eigenvectors=False)[0])


def ledoit_wolf_shrinkage(Xw: np.ndarray, dim: int) -> float:
    """Ledoit & Wolf (2004) shrinkage intensity of the covariance ``Xw^T Xw / N`` of the centred rows
    ``Xw`` [N, r] towards ``mu I`` (``mu`` = trace / ``dim``), in ``dim`` dimensions. Only rotation
    invariants are used (Gram matrix, row norms), so ``Xw`` may be the data in any orthonormal basis of
    its span (``r`` < ``dim``), the missing dimensions being zero. Same formula as
    ``sklearn.covariance.ledoit_wolf_shrinkage(Xw, assume_centered=True)``."""
    n = Xw.shape[0]
    gram = Xw @ Xw.T
    sq = np.diag(gram)
    frob = float(np.sum(gram * gram)) / n**2  # ||S||_F^2
    mu = float(sq.sum()) / n / dim
    delta = (frob - mu * mu * dim) / dim  # ||S - mu I||_F^2 / dim
    beta = (float(np.sum(sq * sq)) / n - frob) / (dim * n)
    if delta <= 0:
        return 1.0  # S is already a multiple of the identity (or zero)
    return float(min(beta, delta) / delta)


def _shrinkage(X: np.ndarray, y: np.ndarray, n_classes: int, dim: int) -> float:
    """max(paper's ``exp(-a sigma_max(S_W))`` (floored at 1e-10), Ledoit–Wolf intensity of ``S_W``)."""
    means, _ = class_means(X, y, n_classes)
    Xw = X - means[y]
    Sw = Xw.T @ Xw / X.shape[0]
    paper = max(float(np.exp(-SHRINKAGE_A * _largest_eigenvalue(Sw))), MIN_SHRINKAGE)
    return max(paper, ledoit_wolf_shrinkage(Xw, dim))


def _fit(X: np.ndarray, y: np.ndarray, shrinkage: float, n_classes: int, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Regularised Fisher classifier ``(coef [C, D], intercept [C])``; an absent class gets
    intercept -inf (posterior 0). ``dim``: the feature dimension for ``mu`` when ``X`` holds the data
    in a basis of its span (default: ``X.shape[1]``)."""
    n, d = X.shape
    dim = dim or d
    means, counts = class_means(X, y, n_classes)
    Xw = X - means[y]
    Sw = Xw.T @ Xw / n
    mu = np.trace(Sw) / dim
    if mu <= 0:  # no within-class variance at all: any positive scale gives the same ranking
        mu = 1.0
    S = (1.0 - shrinkage) * Sw
    S.flat[:: d + 1] += shrinkage * mu
    try:
        coef = scipy.linalg.cho_solve(scipy.linalg.cho_factor(S, check_finite=False), means.T, check_finite=False).T  # [C, D]
    except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
        coef = np.linalg.lstsq(S, means.T, rcond=None)[0].T
    with np.errstate(divide="ignore"):
        intercept = -0.5 * np.sum(means * coef, axis=1) + np.log(counts / n)
    return coef, intercept


def _fda_posterior(X: np.ndarray, y: np.ndarray, shrinkage: float | None) -> tuple[np.ndarray, float]:
    """In-sample posterior ``p(c | x_i)`` [N, C] of the regularised Fisher classifier, and the shrinkage used.

    ``X``: centred float64 [N, D]; ``y``: class ids 0..C-1. Within-class scatter
    ``S_W = sum_c pi_c cov_c`` (1/N_c covariances), shrunk towards ``mu I`` with ``mu = tr(S_W) / D``:
    ``S_W(lambda) = (1 - lambda) S_W + lambda mu I`` (``lambda`` from :func:`_shrinkage` unless given).
    The reference projects on all D generalised eigenvectors W of (S_B, S_W(lambda)) and scores
    ``x^T W W^T m_c - m_c^T W W^T m_c / 2 + log pi_c``; as ``W^T S_W(lambda) W = I``,
    ``W W^T = S_W(lambda)^-1`` (so S_B drops out), which is solved for directly here.
    """
    C = int(y.max()) + 1
    if shrinkage is None:
        shrinkage = _shrinkage(X, y, C, X.shape[1])
    coef, intercept = _fit(X, y, shrinkage, C)
    return softmax(X @ coef.T + intercept, axis=1), shrinkage


def folds(y: np.ndarray, k: int = FOLDS) -> np.ndarray:
    """Fold id of each sample: the j-th sample (in order) of each class goes to fold ``j mod k``."""
    fold = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        fold[idx] = np.arange(len(idx)) % k
    return fold


def _confmix_weights(X: np.ndarray, y: np.ndarray, fold: np.ndarray, shrinkage: float, n_classes: int, dim: int) -> dict[int, np.ndarray]:
    """ConfMix weights ``q`` [N] for each outer fold f: for a sample of fold g != f, the softened
    posterior of its true class (``softmax(p)[y]``, as in the reference) from the discriminant fitted
    on the folds other than f and g, so that nothing fitted on fold f shapes the data fold f is scored
    against (entry f of the result is filled for every sample outside fold f). One fit per pair of folds.
    Where nothing is left to fit on -- a single fold (one sample per class), or two folds (at most two
    samples per class) for the pair -- there is no challenge: ``q = 1``."""
    ids = [int(f) for f in np.unique(fold)]
    q = {f: np.full(len(y), np.nan) for f in ids}
    for a in ids:
        for b in ids:
            if b <= a:
                continue
            train = (fold != a) & (fold != b)
            if not train.any():  # two folds only: a fit on nothing would be 0/0 (NaN posteriors)
                q[b][fold == a] = 1.0
                q[a][fold == b] = 1.0
                continue
            coef, intercept = _fit(X[train], y[train], shrinkage, n_classes, dim)
            for held, outer in ((a, b), (b, a)):
                rows = fold == held
                post = softmax(softmax(X[rows] @ coef.T + intercept, axis=1), axis=1)
                q[outer][rows] = post[np.arange(int(rows.sum())), y[rows]]
    if len(ids) == 1:  # a single fold (one sample per class): nothing to hold out from, no challenge
        q[ids[0]][:] = 1.0
    return q


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA score (Shao et al. 2022), higher is better; in [0, 1], about 1/C for labels unrelated to the features.

    ``features``: float[N, D] (any real dtype; float64 inside, centred: the Fisher classifier and
    ConfMix are translation-equivariant, so this only avoids cancellation); ``labels``: [N] with
    >= 2 classes. Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses. Not invariant to rescaling the features: the
    paper's shrinkage ``exp(-a sigma_max(S_W))`` depends on their scale (it can only decide while the
    largest within-class variance is below ~5; beyond, it sits at its 1e-10 floor and the
    scale-free Ledoit-Wolf term decides).

    Held out throughout (5 stratified folds, see the module docstring): sample i of fold f is scored
    by a discriminant fitted on the other folds, challenged with weights from fits that did not see
    fold f either.

    0. When D > N the features are expressed in an orthonormal basis of their span (N coordinates):
       every mean, scatter and posterior below lives in that span, so nothing changes but the cost.
    1. Regularised FDA posterior ``p(c | x)`` with the shrinkage ``lambda`` of :func:`_shrinkage`,
       softened as in the reference, ``q = softmax(p)`` row-wise (:func:`_confmix_weights`).
    2. ConfMix (self-challenge) of the training folds: each sample of class c moves towards the mean
       of the *other* class means, ``x_j <- q_j x_j + (1 - q_j) mean_{k != c} m_k`` (the training
       folds' class means).
    3. The regularised FDA is refitted on the mixed training folds with the same lambda; the score is
       the mean posterior of the true class of the held-out samples, ``1/N sum_i p(y_i | x_i)`` (no
       log, as in the reference code). Held-out samples are not mixed: the mixing uses the label.
    """
    X, y, counts = as_labelled(features, labels, what="SFDA")
    n, dim = X.shape
    C = len(counts)
    X = centred(X)
    if dim > n:  # coordinates in the span of the rows (from the Gram matrix): inner products unchanged
        ev, U = np.linalg.eigh(X @ X.T)
        keep = ev > ev[-1] * 1e-12
        X = U[:, keep] * np.sqrt(ev[keep])
    shrinkage = _shrinkage(X, y, C, dim)
    fold = folds(y)
    q = _confmix_weights(X, y, fold, shrinkage, C, dim)
    true_post = np.zeros(n)
    for f in np.unique(fold):
        test, train = fold == f, fold != f
        if not train.any():  # one fold only: score in-sample
            train = test
        means, counts = class_means(X[train], y[train], C)
        present = counts > 0
        others = (means[present].sum(axis=0) - means) / max(int(present.sum()) - 1, 1)  # mean of the other classes' means
        qf = q[int(f)][train][:, None]
        mixed = qf * X[train] + (1.0 - qf) * others[y[train]]
        coef, intercept = _fit(mixed, y[train], shrinkage, C, dim)
        post = softmax(X[test] @ coef.T + intercept, axis=1)
        true_post[test] = post[np.arange(int(test.sum())), y[test]]
    return float(np.mean(true_post))


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="sfda", fn=lambda features, labels, **_: sfda(features, labels), version="2",
        needs=("labels",),
        description="SFDA (Shao et al., ECCV 2022): self-challenging regularised Fisher discriminant, mean held-out true-class posterior",
    ))
