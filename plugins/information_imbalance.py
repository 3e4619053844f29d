"""Estimators ``ii`` and ``ii-reverse``: the Information Imbalance between a cut and the target.

Gerace et al. 2023 ("Representation similarity and transferability", Fig. 6) compares the source network's
representation with the target network's by Δ(source → target) = 2/N² Σ_i r_i (Glielmo et al.
2022): how well neighbourhoods in the source space predict neighbourhoods in the target space.
``ii`` reports Δ(cut → reference) (lower is better: the cut carries the target's information),
``ii-reverse`` the other direction Δ(reference → cut). Above 2,000 probe points a seeded subset of
2,000 is used (exact ranks need O(N²) work). Formula: :func:`advisor.numeric.information_imbalance.information_imbalance`.
"""

from advisor.numeric.checks import as_matrix, require_variance
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl
from advisor.numeric.information_imbalance import MIN_POINTS, information_imbalance

MAX_POINTS = 2000


def _informative(features):
    """The cut's features as :func:`advisor.numeric.checks.as_matrix` gives them (float64 [N, D], N >= 4),
    refused with :class:`advisor.numeric.checks.EstimatorInputError` when constant: a constant cut has no
    neighbourhoods, every rank would be a tie-break artefact, not a score. (A constant reference
    is scored: anything predicts it, Δ = 2/N.)"""
    X = as_matrix(features, "features", min_rows=MIN_POINTS)
    require_variance(X, "the cut", "so there are no neighbourhoods to compare")
    return X


def _forward(features, labels=None, *, reference=None, **_):
    return information_imbalance(_informative(features), reference, k=1, max_points=MAX_POINTS)


def _reverse(features, labels=None, *, reference=None, **_):
    return information_imbalance(reference, _informative(features), k=1, max_points=MAX_POINTS)


@hookimpl
def register_estimators(register):
    register(Estimator(name="ii", fn=_forward, version="1", higher_is_better=False, needs=("reference",),
                       description="Information Imbalance Δ(cut → target reference), Gerace et al. 2023 (lower is better)"))
    register(Estimator(name="ii-reverse", fn=_reverse, version="1", higher_is_better=False, needs=("reference",),
                       description="Information Imbalance Δ(target reference → cut)"))
