"""Estimators ``ii`` and ``ii-reverse``: the Information Imbalance between a cut and the target.

Seed 002 ("Representation similarity and transferability", Fig. 6) compares the source network's
representation with the target network's by Δ(source → target) = 2/N² Σ_i r_i (Glielmo et al.
2022): how well neighbourhoods in the source space predict neighbourhoods in the target space.
``ii`` reports Δ(cut → reference) (lower is better: the cut carries the target's information),
``ii-reverse`` the other direction Δ(reference → cut). Above 2,000 probe points a seeded subset of
2,000 is used (exact ranks need O(N²) work). Formula: :func:`advisor.similarity.information_imbalance`.
"""

from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl
from advisor.similarity import information_imbalance

MAX_POINTS = 2000


def _forward(features, labels=None, *, reference=None, **_):
    return information_imbalance(features, reference, k=1, max_points=MAX_POINTS)


def _reverse(features, labels=None, *, reference=None, **_):
    return information_imbalance(reference, features, k=1, max_points=MAX_POINTS)


@hookimpl
def register_estimators(register):
    register(Estimator(name="ii", fn=_forward, version="1", higher_is_better=False, needs=("reference",),
                       description="Information Imbalance Δ(cut → target reference), seed 002 (lower is better)"))
    register(Estimator(name="ii-reverse", fn=_reverse, version="1", higher_is_better=False, needs=("reference",),
                       description="Information Imbalance Δ(target reference → cut)"))
