"""A third-party estimator, written exactly as a plugin author would (see README)."""

import numpy as np

import advisor


def feature_variance(features, labels=None, **inputs):
    """Mean per-dimension variance of the features: float64[N, D] -> float."""
    return float(np.asarray(features, dtype=np.float64).var(axis=0).mean())


@advisor.hookimpl
def register_estimators(register):
    register(advisor.Estimator(name="fake-variance", fn=feature_variance, version="0.0.1", needs=(), description="mean feature variance"))
