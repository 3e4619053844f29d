"""``linear``: cross-validated logistic-regression accuracy on the cut's features, the honest baseline.

What every transferability estimator tries to predict cheaply is roughly this number: how well a
linear classifier on the frozen features does on held-out target data.
"""

from __future__ import annotations

import warnings

import numpy as np

from advisor.numeric.checks import EstimatorInputError, as_labelled
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

MAX_FOLDS = 5
SEED = 0
MAX_ITER = 1000


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, folds: int = MAX_FOLDS, seed: int = SEED) -> float:
    """Mean held-out accuracy of a logistic regression, over stratified k folds. Higher is better.

    ``features``: float[N, D] (float64); ``labels``: [N]. ``k = min(folds, smallest class count)``
    (>= 2 needed), scikit-learn ``StratifiedKFold(k, shuffle=True, random_state=seed)``; in each fold
    a ``StandardScaler`` (fitted on the training part; constant columns stay 0) feeds a default
    ``LogisticRegression`` (L2, C = 1, lbfgs, multinomial, up to 1000 iterations; a fold that stops
    short of convergence still counts).

    Any real dtype (float64 inside); invariant to rescaling the features (standardised). Raises
    :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses and when a class has fewer than 2 examples.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    F, y, counts = as_labelled(features, labels, what="the linear probe")
    k = min(int(folds), int(counts.min()))
    if k < 2:
        raise EstimatorInputError(f"the linear probe needs >= 2 examples of every class for cross-validation; the smallest class has {counts.min()}")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=MAX_ITER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning on separable folds
        scores = cross_val_score(model, F, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))
    return float(np.mean(scores))


@hookimpl
def register_estimators(register):
    register(Estimator(
        name="linear", fn=lambda features, labels, **_: linear_probe_accuracy(features, labels), version="1",
        needs=("labels",),
        description="linear probe: stratified k-fold (k <= 5) logistic-regression accuracy on standardised features",
    ))
