"""PARC (plugins/parc.py): a 4-sample example worked by hand, scipy's spearmanr, properties."""

import math

import numpy as np
import pytest
from advisor.plugins.parc import parc
from conftest import blobs
from scipy.stats import spearmanr


def _blobs(n=200, d=64, c=4, sep=3.0, seed=0):
    return blobs(n, d, c, sep, seed)


def test_hand_computed_example():
    # Columns are +-1 with mean 0 and std 1, so standardising leaves them as they are.
    x = np.array([[1.0, 1, 1, -1], [1, -1, -1, 1], [-1, 1, -1, 1], [-1, -1, 1, -1]])
    y = np.array([0, 0, 1, 1])
    # Row correlations: rows 1 and 4 have means 1/2 and -1/2 (centred norms^2 = 3), rows 2, 3 mean 0 (norm^2 4).
    # r12 = r13 = r24 = r34 = -2 / sqrt(12), r14 = 1/3, r23 = 0.
    # Pairs (12, 13, 14, 23, 24, 34): D_f = (a, a, 2/3, 1, a, a) with a = 1 + 2/sqrt(12) ~ 1.58,
    # D_y = (0, 2, 2, 2, 2, 0). Ranks: D_f -> (4.5, 4.5, 1, 2, 4.5, 4.5), D_y -> (1.5, 4.5, 4.5, 4.5, 4.5, 1.5).
    # Centred ranks (1, 1, -2.5, -1.5, 1, 1) and (-2, 1, 1, 1, 1, -2): covariance sum -6,
    # norms^2 12.5 and 12 -> rho = -6 / sqrt(150).
    assert parc(x, y, pca_dims=None) == pytest.approx(-6 / math.sqrt(150), abs=1e-12)


def test_matches_scipy_spearman_of_the_two_dissimilarity_matrices():
    x, y = _blobs(n=80, d=10, c=3)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    iu = np.triu_indices(80, 1)
    # Rounded: corrcoef's last-bit noise would otherwise break the ties of the two-valued label matrix.
    label_dissim = np.round(1 - np.corrcoef(np.eye(3)[y]), 12)
    expected = spearmanr((1 - np.corrcoef(z))[iu], label_dissim[iu])[0]
    assert parc(x, y, pca_dims=None) == pytest.approx(expected, abs=1e-10)


def test_separable_beats_shuffled_and_renaming_changes_nothing():
    x, y = _blobs()
    assert parc(x, y) > parc(x, np.random.default_rng(1).permutation(y)) + 0.1
    assert parc(x, np.array([6, 1, 3, 0])[y]) == pytest.approx(parc(x, y), abs=1e-12)


def test_no_information_scores_zero():
    x, y = _blobs(n=20)
    assert parc(np.zeros_like(x), y) == 0.0
