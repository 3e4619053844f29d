"""LEEP, NCE and N-LEEP: how well a source model's (pseudo-)label distribution predicts the target labels.

References:

* LEEP: Cuong V. Nguyen, Tal Hassner, Matthias Seeger, Cedric Archambeau, "LEEP: A New Measure to
  Evaluate Transferability of Learned Representations", ICML 2020 (eq. 1-2).
* NCE: Anh T. Tran, Cuong V. Nguyen, Tal Hassner, "Transferability and Hardness of Supervised
  Classification Tasks", ICCV 2019 (negative conditional entropy -H(Y|Z) of the empirical joint).
* N-LEEP: Yandong Li, Xuhui Jia, Ruoxin Sang, Yukun Zhu, Bradley Green, Liqiang Wang, Boqing Gong,
  "Ranking Neural Checkpoints", CVPR 2021 (Sec. 4: LEEP with a Gaussian mixture's posterior in
  place of the source head).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.special import softmax

from advisor.numeric.checks import as_labels, as_labelled, as_matrix, centred
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

NLEEP_COMPONENTS_PER_CLASS = 5  # N-LEEP's mixture size: 5 x number of target classes (capped by N)
NLEEP_VARIANCE = 0.8  # PCA keeps the leading components explaining 80 % of the variance (the paper's choice)
SEED = 0


def leep_from_probabilities(theta: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al. 2020, eq. 1-2) from dummy-label probabilities ``theta`` float[N, Z].

    Empirical joint ``P(y, z) = 1/N sum_i theta_z(x_i) [y_i = y]`` (eq. 1), conditional
    ``P(y | z) = P(y, z) / P(z)``, and ``LEEP = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i)`` (eq. 2).
    ``labels``: [N] class ids (any values). Higher is better; 0 is the maximum (every label predicted
    with certainty, a single class included). Raises :class:`advisor.numeric.checks.EstimatorInputError`
    (a ValueError) for input :func:`advisor.numeric.checks.as_matrix` / :func:`advisor.numeric.checks.as_labels` refuse.
    """
    theta = as_matrix(theta, "theta")
    y, counts = as_labels(labels, theta.shape[0])
    onehot = np.eye(len(counts))[y]  # [N, C]
    joint = onehot.T @ theta / len(y)  # [C, Z]
    marginal = joint.sum(axis=0)  # P(z) [Z]
    # A dummy label no sample gives any mass (a softmax underflow) contributes nothing either way.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)
    eep = np.sum(conditional[y] * theta, axis=1)  # sum_z P(y_i | z) theta_z(x_i) [N]
    return float(np.mean(np.log(np.maximum(eep, np.finfo(np.float64).tiny))))


def leep(logits: np.ndarray, labels: np.ndarray) -> float:
    """LEEP of the source head: ``theta = softmax(logits)``, ``logits`` float[N, C_s] (any real dtype,
    float64 inside); ``labels`` [N]. The features play no part. Errors: as :func:`leep_from_probabilities`."""
    return leep_from_probabilities(softmax(as_matrix(logits, "logits"), axis=1), labels)


def nce(logits: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy ``-H(Y | Z)`` (Tran et al. 2019), Z = argmax of the source ``logits``.

    ``logits``: float[N, C_s]; ``labels``: [N]. With the empirical joint ``P(y, z)`` of the pairs
    ``(y_i, z_i)``, ``H(Y | Z) = -sum_{y,z} P(y, z) log (P(y, z) / P(z))``. Higher is better; 0 when
    the source's hard prediction determines the target label. The features play no part.
    Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_matrix` / :func:`advisor.numeric.checks.as_labels` refuse.
    """
    logits = as_matrix(logits, "logits")
    y, counts = as_labels(labels, logits.shape[0])
    z, _ = as_labels(np.argmax(logits, axis=1), logits.shape[0])
    joint = np.zeros((len(counts), int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0 / len(y))
    conditional = joint / joint.sum(axis=0)  # every z that occurs has P(z) > 0
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log(conditional[nz])))


def nleep(features: np.ndarray, labels: np.ndarray, n_components: int | None = None,
          variance: float = NLEEP_VARIANCE, seed: int = SEED) -> float:
    """N-LEEP (Li et al. 2021): LEEP with a Gaussian mixture fitted to the features as the "source head".

    ``features``: float[N, D]; ``labels``: [N]. Steps: PCA keeping the leading components that explain
    ``variance`` (80 %) of the variance; a scikit-learn ``GaussianMixture`` with diagonal covariances
    and ``n_components`` components (default ``5 x C`` for C target classes, capped by N; fixed
    ``random_state``); its posterior ``P(v | x_i)`` [N, K] is ``theta`` in LEEP's eq. 1-2. Features with
    no variance at all give one component (``theta = 1``), i.e. ``sum_c P(c) log P(c)``.

    Any real dtype (float64 inside). Not invariant to rescaling the features: the mixture's
    covariance floor (scikit-learn's ``reg_covar = 1e-6``) is absolute, so features of magnitude
    ~1e-2 and below merge towards one component. Raises :class:`advisor.numeric.checks.EstimatorInputError`
    (a ValueError) for input :func:`advisor.numeric.checks.as_labelled` refuses.
    """
    F, y, counts = as_labelled(features, labels, min_classes=1)
    n = F.shape[0]
    k = min(n, NLEEP_COMPONENTS_PER_CLASS * len(counts)) if n_components is None else int(n_components)
    Fc = centred(F)
    if not np.any(np.abs(Fc) > np.finfo(np.float64).eps * max(1.0, float(np.abs(F).max()))):
        return leep_from_probabilities(np.ones((n, 1)), y)
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    reduced = PCA(n_components=variance, svd_solver="full").fit_transform(Fc)
    with warnings.catch_warnings():  # fewer distinct points than components: k-means init warns
        warnings.simplefilter("ignore")
        gmm = GaussianMixture(n_components=k, covariance_type="diag", random_state=seed).fit(reduced)
        theta = gmm.predict_proba(reduced)
    return leep_from_probabilities(theta, y)


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="leep", fn=lambda features, labels, logits=None, **_: leep(logits, labels), version="1",
        needs=("labels", "logits"),
        description="LEEP (Nguyen et al., ICML 2020): log expected empirical prediction of the source head's softmax",
    ))
    register(Estimator(
        name="nce", fn=lambda features, labels, logits=None, **_: nce(logits, labels), version="1",
        needs=("labels", "logits"),
        description="NCE (Tran et al., ICCV 2019): -H(target label | source head's argmax)",
    ))
    register(Estimator(
        name="nleep", fn=lambda features, labels, **_: nleep(features, labels), version="1",
        needs=("labels",),
        description="N-LEEP (Li et al., CVPR 2021): LEEP with a diagonal GMM (5 x classes) on PCA-80% features",
    ))
