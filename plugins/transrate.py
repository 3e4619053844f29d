"""TransRate: coding rate of the features minus their coding rate given the labels.

Reference: Long-Kai Huang, Junzhou Huang, Yu Rong, Qiang Yang, Ying Wei, "Frustratingly Easy
Transferability Estimation", ICML 2022 (Sec. 3: TrR = R(Z, eps) - R(Z, eps | Y), and the paper's
code listing, whose conventions are followed here).
"""

from __future__ import annotations

import numpy as np

from advisor.numeric.checks import as_labelled, centred
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

EPS = 1e-4  # the distortion of the paper's code listing (eps = 1e-4)


def coding_rate(Z: np.ndarray, eps: float = EPS) -> float:
    """``R(Z, eps) = 1/2 logdet(I_D + Z^T Z / (n eps))`` for ``Z`` float[n, D].

    This is the rate-distortion form ``1/2 logdet(I + D / (n eps'^2) Z^T Z)`` with ``eps'^2 = D eps``
    (the paper's code scales by ``1 / (n eps)``). Computed from the singular values of Z
    (``logdet(I_D + Z^T Z c) = sum_k log(1 + c s_k^2)``), so D > n costs nothing extra.
    """
    n = Z.shape[0]
    s = np.linalg.svd(Z, compute_uv=False)
    return float(0.5 * np.sum(np.log1p(s**2 / (n * eps))))


def transrate(features: np.ndarray, labels: np.ndarray, eps: float = EPS) -> float:
    """TransRate (Huang et al. 2022): ``R(Z, eps) - 1/K sum_k R(Z_k, eps)``, higher is better.

    ``features``: float[N, D] (float64), centred over all samples (not per class); ``labels``: [N]
    with K classes; ``Z_k`` the rows of class k. The class term is the plain mean over classes, as in
    the paper's code (the rate-distortion literature weights class k by n_k / N; equal for balanced
    classes). Features with no variance give 0; constant columns change nothing.

    Any real dtype (float64 inside). Not invariant to rescaling the features: the distortion
    ``eps`` is absolute, as in the paper (features much smaller than sqrt(eps) = 1e-2 score ~0). Raises
    :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses.
    """
    Z, y, counts = as_labelled(features, labels, min_classes=1)
    Z = centred(Z)
    K = len(counts)
    return coding_rate(Z, eps) - sum(coding_rate(Z[y == k], eps) for k in range(K)) / K


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="transrate", fn=lambda features, labels, **_: transrate(features, labels), version="1",
        needs=("labels",),
        description="TransRate (Huang et al., ICML 2022): coding rate of the features minus that given the labels, eps 1e-4",
    ))
