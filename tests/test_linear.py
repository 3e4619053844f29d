"""The linear-probe baseline (plugins/linear.py): hand-worked accuracies and properties."""

import numpy as np
import pytest
from advisor.plugins.linear import linear_probe_accuracy
from conftest import blobs


def _blobs(n=200, d=16, c=4, sep=2.0, seed=0):
    return blobs(n, d, c, sep, seed)


def test_featureless_probe_predicts_the_majority_class():
    # Class counts 6, 2, 2 -> k = min(5, 2) = 2 stratified folds of (3, 1, 1). With all-zero features
    # the model is its intercept, which predicts the training majority (class 0) for everyone: 3 of 5
    # right in each fold -> 0.6.
    y = np.array([0] * 6 + [1] * 2 + [2] * 2)
    assert linear_probe_accuracy(np.zeros((10, 3)), y) == pytest.approx(0.6, abs=1e-12)


def test_separated_classes_are_all_right():
    # 1-D, class c at 10 c +- 0.1 (10 of each): any held-out point lies in its class's interval.
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 10)
    x = (10.0 * y + 0.1 * rng.standard_normal(30))[:, None]
    assert linear_probe_accuracy(x, y) == 1.0


def test_separable_beats_shuffled_and_renaming_changes_nothing():
    x, y = _blobs()
    assert linear_probe_accuracy(x, y) > linear_probe_accuracy(x, np.random.default_rng(1).permutation(y)) + 0.3
    assert linear_probe_accuracy(x, np.array([3, 9, 4, 1])[y]) == pytest.approx(linear_probe_accuracy(x, y), abs=1e-12)


def test_a_class_with_one_example_cannot_be_cross_validated():
    x, y = _blobs(n=21)
    y[-1] = 7
    with pytest.raises(ValueError, match=">= 2 examples of every class"):
        linear_probe_accuracy(x, y)
