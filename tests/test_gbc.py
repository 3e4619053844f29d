"""GBC (plugins/gbc.py): hand-computed Bhattacharyya coefficients and properties."""

import math

import numpy as np
import pytest
from advisor.plugins.gbc import gbc
from conftest import blobs

# class 0: (0, 0), (2, 2) -> mean (1, 1), population variances (1, 1)
# class 1: (3, 1), (7, 3) -> mean (5, 2), population variances (4, 1)
X = np.array([[0.0, 0.0], [2.0, 2.0], [3.0, 1.0], [7.0, 3.0]])
Y = np.array([0, 0, 1, 1])


def _blobs(n=300, d=100, c=4, sep=1.5, seed=0):
    return blobs(n, d, c, sep, seed)


def test_diagonal_hand_computed_example():
    # Sigma = ((1 + 4) / 2, (1 + 1) / 2) = (2.5, 1); mean difference (4, 1).
    # D_B = 1/8 (16 / 2.5 + 1 / 1) + 1/2 (ln(2.5 / sqrt(1 * 4)) + ln(1 / sqrt(1 * 1))) = 0.925 + 0.5 ln 1.25
    db = 0.125 * (16 / 2.5 + 1.0) + 0.5 * (math.log(2.5 / 2.0) + 0.0)
    assert gbc(X, Y, "diagonal", pca_dims=None) == pytest.approx(-2 * math.exp(-db), abs=1e-12)


def test_spherical_hand_computed_example():
    # sigma_0 = mean(1, 1) = 1, sigma_1 = mean(4, 1) = 2.5, sigma = 1.75; ||mean difference||^2 = 17.
    # D_B = 1/8 * 17 / 1.75 + D/2 ln(1.75 / sqrt(1 * 2.5)) with D = 2.
    db = 0.125 * 17 / 1.75 + 1.0 * math.log(1.75 / math.sqrt(2.5))
    expected = -2 * math.exp(-db)
    assert gbc(X, Y, "spherical", pca_dims=None) == pytest.approx(expected, abs=1e-12)
    # Spherical Gaussians are rotation-invariant, so the default PCA (a rotation here: 2 of 2 dims) agrees.
    assert gbc(X, Y, "spherical") == pytest.approx(expected, abs=1e-10)


def test_identical_classes_overlap_fully():
    # Two classes with the same mean and variance: BC = 1 for both ordered pairs.
    x = np.array([[0.0], [2.0], [0.0], [2.0]])
    for kind in ("diagonal", "spherical"):
        assert gbc(x, np.array([0, 0, 1, 1]), kind) == pytest.approx(-2.0, abs=1e-12)


@pytest.mark.parametrize("kind", ["diagonal", "spherical"])
def test_separable_beats_shuffled_and_renaming_changes_nothing(kind):
    x, y = _blobs()
    assert gbc(x, y, kind) > gbc(x, np.random.default_rng(1).permutation(y), kind) + 0.5
    assert gbc(x, np.array([3, 8, 1, 0])[y], kind) == pytest.approx(gbc(x, y, kind), abs=1e-10)


def test_score_is_between_minus_c_times_c_minus_1_and_zero():
    x, y = _blobs(c=5)
    for kind in ("diagonal", "spherical"):
        assert -20.0 <= gbc(x, y, kind) <= 0.0


def test_unknown_gaussian_type_is_rejected():
    with pytest.raises(ValueError, match="diagonal"):
        gbc(X, Y, "full")
