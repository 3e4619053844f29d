"""H-score and its shrinkage (regularised) form.

References:

* H-score: Yajie Bao, Yang Li, Shao-Lun Huang, Lin Zhang, Lizhong Zheng, Amir Zamir, Leonidas Guibas,
  "An Information-Theoretic Approach to Transferability in Task Transfer Learning", ICIP 2019:
  ``H(f) = tr(cov(f)^-1 cov(E[f | y]))``.
* Shrinkage H-score: Shibal Ibrahim, Natalia Ponomareva, Rahul Mazumder, "Newer is not always better:
  Rethinking transferability metrics, their peculiarities, stability and performance", ECML-PKDD 2022:
  ``H_alpha(f) = tr(cov_alpha(f)^-1 (1 - alpha) cov(E[f | y]))`` with the Ledoit-Wolf estimate
  ``cov_alpha(f) = (1 - alpha) cov(f) + alpha sigma I``, ``sigma = tr(cov(f)) / D``.
"""

from __future__ import annotations

import numpy as np

from advisor.numeric.checks import as_labelled, centred, class_means, numerical_rank
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl


def _spectrum(features, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of the centred features ``F_c = U S V^T`` (float64): the nonzero singular values ``s``
    [r], ``||P u_k||^2`` [r] (P replaces each row by its class mean, so ``P F_c`` holds E[f | y]), and
    ``F_c`` [N, D] itself (constant columns exactly 0, :func:`advisor.numeric.checks.centred`: identical rows
    have rank 0, not a rank of rounding noise).

    With covariances ``cov(f) = F_c^T F_c / N`` and ``cov(E[f|y]) = F_c^T P F_c / N`` both live in
    span(V); in that basis ``cov(f)`` is ``diag(s^2) / N`` and the diagonal of ``cov(E[f|y])`` is
    ``s^2 ||P u_k||^2 / N``, which is all a trace against a function of ``cov(f)`` needs.
    """
    F, y, _ = as_labelled(features, labels, min_classes=1)  # one class: 0
    Fc = centred(F)
    u, s, _ = np.linalg.svd(Fc, full_matrices=False)
    # Same rank tolerance as np.linalg.matrix_rank: smaller singular values are rounding noise
    # (duplicated or constant columns), the pseudo-inverse's null space.
    rank = numerical_rank(s, Fc.shape)
    u, s = u[:, :rank], s[:rank]
    means, counts = class_means(u, y)
    pu2 = np.sum(counts[:, None] * means**2, axis=0)  # ||P u_k||^2 = sum_c n_c mean_c(u_k)^2
    return s, pu2, Fc


def hscore(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score (Bao et al. 2019): ``tr(pinv(cov(f)) cov(E[f | y]))``, higher is better.

    ``features``: float[N, D] (any real dtype, float64 inside); ``labels``: [N] (any values; one class
    gives 0). The pseudo-inverse keeps the directions above the ``matrix_rank`` tolerance, so
    duplicated or constant columns change nothing; the score lies in ``[0, C - 1]`` and reaches
    ``C - 1`` whenever D >= N - 1 (the features fit any labelling, the over-fitting the shrinkage
    form addresses); features with no variance (all rows identical) give 0. Invariant to rescaling
    the features. Computed as ``sum_k ||P u_k||^2`` (see ``_spectrum``). Raises
    :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses.
    """
    _, pu2, _ = _spectrum(features, labels)
    return float(np.sum(pu2))


def hscore_shrinkage(features: np.ndarray, labels: np.ndarray, alpha: float | None = None) -> float:
    """Shrinkage H-score (Ibrahim et al. 2022): ``tr(cov_alpha(f)^-1 (1 - alpha) cov(E[f | y]))``.

    ``features``: float[N, D]; ``labels``: [N]. ``cov_alpha(f) = (1 - alpha) cov(f) + alpha sigma I``
    with ``sigma = tr(cov(f)) / D`` and ``alpha`` from scikit-learn's Ledoit-Wolf estimate
    (``sklearn.covariance.ledoit_wolf_shrinkage``) unless given. Both covariances use 1/N (the
    Ledoit-Wolf convention; the reference code mixes 1/N and 1/(N-1)). In the eigenbasis of cov(f):

        H_alpha = (1 - alpha) sum_k (s_k^2 ||P u_k||^2 / N) / ((1 - alpha) s_k^2 / N + alpha sigma).

    Features with no variance (all rows identical) give 0. Any real dtype (float64 inside);
    invariant to rescaling the features (alpha too). Errors: as :func:`hscore`.
    """
    s, pu2, Fc = _spectrum(features, labels)
    n, d = Fc.shape
    if alpha is None:
        from sklearn.covariance import ledoit_wolf_shrinkage

        alpha = float(ledoit_wolf_shrinkage(Fc, assume_centered=True))
    lam = s**2 / n  # nonzero eigenvalues of cov(f)
    sigma = lam.sum() / d
    denom = (1.0 - alpha) * lam + alpha * sigma
    if not np.all(denom > 0):  # alpha = 0 is only reached with some variance, so this is all-zero features
        return 0.0
    return float((1.0 - alpha) * np.sum(lam * pu2 / denom))


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="hscore", fn=lambda features, labels, **_: hscore(features, labels), version="1",
        needs=("labels",),
        description="H-score (Bao et al., ICIP 2019): tr(pinv(cov f) cov(E[f|y]))",
    ))
    register(Estimator(
        name="hscore-shrinkage", fn=lambda features, labels, **_: hscore_shrinkage(features, labels), version="1",
        needs=("labels",),
        description="shrinkage H-score (Ibrahim et al., 2022): H-score with the Ledoit-Wolf covariance",
    ))
