"""H-score and shrinkage H-score (plugins/hscore.py): hand-worked examples, the matrix formulas, properties."""

import numpy as np
import pytest
from advisor.plugins.hscore import hscore, hscore_shrinkage

# 4 samples, 2 classes. Centred columns: f1 = (-3, -1, 1, 3), f2 = (1, -1, -1, 1).
# cov(f) (1/N) = diag(20/4, 4/4) = diag(5, 1) (the columns are orthogonal).
# E[f1 | y] = (-2, -2, 2, 2), E[f2 | y] = (0, 0, 0, 0): cov(E[f|y]) = diag(4, 0).
F = np.array([[0.0, 1.0], [2.0, -1.0], [4.0, -1.0], [6.0, 1.0]])
Y = np.array([0, 0, 1, 1])


def _blobs(n=300, d=10, c=3, sep=2.0, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
    x[:, :c] += sep * np.eye(c)[y]
    return x, y


def test_hscore_hand_computed_example():
    # tr(diag(1/5, 1) diag(4, 0)) = 4/5; the 1-column version is var(g) / var(f) = 4 / 5 too.
    assert hscore(F, Y) == pytest.approx(0.8, abs=1e-12)
    assert hscore(F[:, :1], Y) == pytest.approx(0.8, abs=1e-12)


def test_shrinkage_hscore_hand_computed_example():
    # Given alpha = 1/2: sigma = tr(S)/D = 3, cov_alpha = 0.5 diag(5, 1) + 1.5 I = diag(4, 2),
    # H = tr(diag(1/4, 1/2) 0.5 diag(4, 0)) = 0.5.
    assert hscore_shrinkage(F, Y, alpha=0.5) == pytest.approx(0.5, abs=1e-12)
    # Ledoit-Wolf alpha by hand: m = tr(S)/D = 3, d^2 = ||S - mI||_F^2 / D = (4 + 4) / 2 = 4;
    # b^2 = 1/N^2 sum_k ||x_k x_k^T - S||_F^2 / D with x_k the centred rows (-3,1), (-1,-1), (1,-1), (3,1):
    # ||.||^2 = 34, 18, 18, 34 -> 104 / 16 / 2 = 3.25; alpha = min(b^2, d^2) / d^2 = 0.8125.
    # cov_alpha = 0.1875 diag(5, 1) + 0.8125 * 3 I = diag(3.375, 2.625); (1 - alpha) cov(E[f|y]) = diag(0.75, 0)
    # H_alpha = 0.75 / 3.375 = 2/9.
    assert hscore_shrinkage(F, Y) == pytest.approx(2 / 9, abs=1e-12)


def test_matches_the_matrix_formulas():
    x, y = _blobs()
    xc = x - x.mean(axis=0)
    g = np.stack([xc[y == c].mean(axis=0) for c in y])
    cov_f, cov_g = xc.T @ xc / len(x), g.T @ g / len(x)
    assert hscore(x, y) == pytest.approx(np.trace(np.linalg.pinv(cov_f) @ cov_g), rel=1e-9)
    from sklearn.covariance import LedoitWolf

    lw = LedoitWolf().fit(x)
    expected = np.trace(np.linalg.inv(lw.covariance_) @ ((1 - lw.shrinkage_) * cov_g))
    assert hscore_shrinkage(x, y) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("score", [hscore, hscore_shrinkage])
def test_separable_beats_shuffled_and_renaming_changes_nothing(score):
    x, y = _blobs()
    assert score(x, y) > score(x, np.random.default_rng(1).permutation(y)) + 0.5
    assert score(x, np.array([5, 9, 2])[y]) == pytest.approx(score(x, y), abs=1e-10)


def test_hscore_saturates_at_c_minus_1_when_d_exceeds_n_and_shrinkage_does_not():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 100)), np.arange(40) % 4  # pure noise, D > N
    assert hscore(x, y) == pytest.approx(3.0, abs=1e-9)
    assert hscore_shrinkage(x, y) < 1.0
