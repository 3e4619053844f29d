"""LogME (plugins/logme.py): the published iris value, and properties any evidence score must have."""


import numpy as np
import pytest
from advisor.plugins.logme import logme


def _blobs(n=200, d=16, c=4, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.standard_normal((n, d))
    x[:, :c] += sep * np.eye(c)[y]
    return x, y


def test_iris_matches_published_value():
    from sklearn.datasets import load_iris

    x, y = load_iris(return_X_y=True)
    assert logme(x, y) == pytest.approx(-0.16006, abs=1e-4)


def test_separable_labels_beat_shuffled_labels():
    x, y = _blobs()
    shuffled = np.random.default_rng(1).permutation(y)
    assert logme(x, y) > logme(x, shuffled) + 0.1


def test_invariant_to_renaming_classes():
    x, y = _blobs()
    renamed = np.array([2, 0, 3, 1])[y]
    assert logme(x, renamed) == pytest.approx(logme(x, y), abs=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: x[:20],  # d > n: 20 samples, 16 dims
        lambda x: np.random.default_rng(2).standard_normal((20, 500)),  # d >> n
        lambda x: np.hstack([x, x]),  # duplicated columns
        lambda x: np.hstack([x, np.ones((len(x), 3)), np.zeros((len(x), 2))]),  # constant columns
        lambda x: np.ones_like(x),  # rank one
        lambda x: np.zeros_like(x),  # rank zero
    ],
    ids=["d>n", "d>>n", "duplicated", "constant", "rank1", "zeros"],
)
def test_finite_on_degenerate_features(make):
    x, y = _blobs()
    f = make(x)
    score = logme(f, y[: len(f)])
    assert np.isfinite(score)


def test_duplicated_columns_barely_change_the_score():
    # Duplicating every column doubles the prior variance on the same directions: a small change.
    x, y = _blobs()
    assert logme(np.hstack([x, x]), y) == pytest.approx(logme(x, y), abs=0.01)


def test_float32_matches_float64():
    x, y = _blobs()
    assert logme(x.astype(np.float32), y) == pytest.approx(logme(x, y), abs=1e-6)


def test_bad_shapes_are_rejected():
    x, y = _blobs()
    with pytest.raises(ValueError):
        logme(x[:, 0], y)
    with pytest.raises(ValueError):
        logme(x, y[:-1])


def test_estimator_ignores_unknown_inputs():
    from advisor.plugins import logme as module
    found = []
    module.register_estimators(register=found.append)
    (est,) = found
    x, y = _blobs()
    assert est.name == "logme" and est.higher_is_better
    assert est.score(x, y, logits=None, something_else=1) == pytest.approx(logme(x, y))
