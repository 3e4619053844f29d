"""TransRate (plugins/transrate.py): a hand-computed example, the logdet formula, properties."""

import math

import numpy as np
import pytest
from advisor.plugins.transrate import coding_rate, transrate
from conftest import blobs


def _blobs(n=300, d=20, c=3, sep=4.0, seed=0):
    return blobs(n, d, c, sep, seed)


def test_hand_computed_example():
    # z = (0, 2, 4, 6) centred -> (-3, -1, 1, 3); eps = 1.
    # R(Z) = 1/2 ln(1 + (9 + 1 + 1 + 9) / 4) = 1/2 ln 6.
    # Class 0 = (-3): 1/2 ln(1 + 9 / 1) = 1/2 ln 10; class 1 = (-1, 1, 3): 1/2 ln(1 + 11 / 3).
    expected = 0.5 * math.log(6) - (0.5 * math.log(10) + 0.5 * math.log(1 + 11 / 3)) / 2
    z = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert transrate(z, np.array([0, 1, 1, 1]), eps=1.0) == pytest.approx(expected, abs=1e-12)


def test_matches_the_logdet_formula():
    # The paper's code: R = 1/2 logdet(I_D + Z^T Z / (n eps)), TrR = R(Z) - mean_k R(Z_k).
    x, y = _blobs(n=60, d=8)
    z = x - x.mean(axis=0)

    def rate(a):
        return 0.5 * np.linalg.slogdet(np.eye(a.shape[1]) + a.T @ a / (len(a) * 1e-4))[1]

    assert coding_rate(z) == pytest.approx(rate(z), rel=1e-12)
    expected = rate(z) - np.mean([rate(z[y == k]) for k in range(3)])
    assert transrate(x, y) == pytest.approx(expected, rel=1e-10)


def test_separable_beats_shuffled_and_renaming_or_shifting_changes_nothing():
    x, y = _blobs()
    assert transrate(x, y) > transrate(x, np.random.default_rng(1).permutation(y)) + 0.5
    assert transrate(x, np.array([2, 7, 0])[y]) == pytest.approx(transrate(x, y), abs=1e-9)
    assert transrate(x + 50.0, y) == pytest.approx(transrate(x, y), abs=1e-8)


def test_wide_features_cost_no_d_by_d_matrix():
    # D = 20000 > N: the singular values of the 30 x 20000 matrix are all it needs.
    rng = np.random.default_rng(0)
    assert np.isfinite(transrate(rng.standard_normal((30, 20000)), np.arange(30) % 3))
