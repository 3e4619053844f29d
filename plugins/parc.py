"""PARC: Pairwise Annotation Representation Comparison.

Reference: Daniel Bolya, Rohit Mittapalli, Judy Hoffman, "Scalable Diverse Model Selection for Accessible
Transfer Learning", NeurIPS 2021 (Sec. 4: PARC, the Spearman correlation of two dissimilarity matrices).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from advisor.numeric.checks import as_labelled, centred, unit_rows
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

PCA_DIMS = 32  # the paper reduces features to 32 dimensions with PCA first


def _row_correlations(X: np.ndarray) -> np.ndarray:
    """Pearson correlation between the rows of ``X`` [N, D] -> [N, N]; a constant row correlates 0."""
    Xn = unit_rows(X - X.mean(axis=1, keepdims=True), rtol=1e-12)
    return Xn @ Xn.T


def parc(features: np.ndarray, labels: np.ndarray, pca_dims: int | None = PCA_DIMS) -> float:
    """PARC (Bolya et al. 2021): Spearman correlation of the upper triangles of two dissimilarity
    matrices, ``1 - pearson(f_i, f_j)`` of the features and ``1 - pearson(e_{y_i}, e_{y_j})`` of the
    one-hot labels. Higher is better; in [-1, 1] (the reference code reports it x 100).

    ``features``: float[N, D] (float64), PCA-reduced to ``min(32, N, D)`` dimensions with an exact
    SVD (scikit-learn ``svd_solver="full"``, its ``svd_flip`` signs; ``pca_dims=None``: as given;
    the default solver is randomized above 500 rows or columns, an approximation the paper's
    reduction does not make), then each column standardised (as the reference code);
    ``labels``: [N] with >= 2 classes. The label dissimilarity takes two values (0 within a class,
    ``1 + 1/(C - 1)`` across classes), so its Spearman correlation with the feature dissimilarities is
    the Pearson correlation of the latter's (tie-averaged) ranks with the "different class" indicator,
    which is how it is computed. A constant feature row correlates 0 with every other row; when every
    feature dissimilarity is equal the score is 0 (no information).

    Any real dtype (float64 inside); invariant to rescaling the features (columns are
    standardised). Known limitation, kept so that scores stay comparable: when the centred
    features have rank below ``min(32, N, D)`` (N <= 32 images, constant or duplicated columns),
    the PCA components past the rank are rounding noise and the standardisation gives them unit
    variance like the others (at N = 30, D = 80: -0.038 instead of -0.060 without them). Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses (here N >= 3).
    """
    F, y, _ = as_labelled(features, labels, min_rows=3, what="PARC")
    n = F.shape[0]
    F = centred(F)  # constant columns exactly 0: identical rows skip the PCA (no variance to divide by)
    if pca_dims is not None and np.any(F):
        from sklearn.decomposition import PCA

        F = PCA(n_components=min(int(pca_dims), *F.shape), svd_solver="full").fit_transform(F)
    std = F.std(axis=0)
    F = np.divide(F - F.mean(axis=0), std, out=np.zeros_like(F), where=std > 0)
    iu = np.triu_indices(n, 1)
    dissim = 1.0 - _row_correlations(F)[iu]
    different = (y[iu[0]] != y[iu[1]]).astype(np.float64)
    ranks = rankdata(dissim)
    if np.ptp(ranks) == 0 or np.ptp(different) == 0:
        return 0.0
    return float(np.corrcoef(ranks, different)[0, 1])


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="parc", fn=lambda features, labels, **_: parc(features, labels),
        version="2",  # 2: exact PCA (was randomized above 500 rows or columns)
        needs=("labels",),
        description="PARC (Bolya et al., NeurIPS 2021): Spearman correlation of feature and label dissimilarities, PCA-32",
    ))
