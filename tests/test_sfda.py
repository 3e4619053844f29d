"""SFDA (plugins/sfda.py): a 1-D example worked by hand, the reference's eigenvector route, properties."""

import math

import numpy as np
import pytest
import scipy.linalg
from advisor.plugins.sfda import _fda_posterior, sfda
from conftest import blobs


def _blobs(n=300, d=10, c=3, sep=1.5, seed=0):
    return blobs(n, d, c, sep, seed)


def sigmoid(t):
    return 1.0 / (1.0 + math.exp(-t))


def test_hand_computed_1d_example():
    # x = (-2, 0 | 0, 2), classes 0 | 1. Class means -1, 1; within-class variance S_W = 1, and in 1-D
    # the shrunk S_W(lambda) = (1 - lambda) 1 + lambda * 1 = 1 whatever lambda is.
    # Score_c(x) = x m_c - m_c^2 / 2 + ln 1/2, so p(true) = sigmoid(4) at x = -2 and 2, 1/2 at the zeros.
    a = sigmoid(4.0)
    # Softened: softmax((p, 1 - p))[0] = 1 / (1 + exp(1 - 2p)).
    qa = 1.0 / (1.0 + math.exp(1.0 - 2.0 * a))
    # ConfMix towards the other class's mean (+1 for class 0, -1 for class 1):
    x1 = qa * -2.0 + (1.0 - qa) * 1.0  # class 0, was -2
    x2 = 0.5 * 0.0 + 0.5 * 1.0  # class 0, was 0
    # the class-1 samples mirror them: -x2 and -x1. Refit: m0 = (x1 + x2) / 2 = -m1,
    m0 = (x1 + x2) / 2.0
    var = ((x1 - x2) / 2.0) ** 2  # within-class variance (both classes alike)
    # log-odds of the true class at x (class 0): x (m0 - m1) / var = 2 x m0 / var; mirrored for class 1.
    expected = (sigmoid(2.0 * x1 * m0 / var) + sigmoid(2.0 * x2 * m0 / var)) / 2.0
    x = np.array([[-2.0], [0.0], [0.0], [2.0]])
    assert sfda(x, np.array([0, 0, 1, 1])) == pytest.approx(expected, abs=1e-12)


def test_posterior_matches_the_reference_generalised_eigenvector_route():
    # The reference projects on all generalised eigenvectors W of (S_B, S_W(lambda)) and scores
    # x^T W W^T m_c - m_c^T W W^T m_c / 2 + ln pi_c.
    x, y = _blobs(n=60, d=5, c=3)
    x = x - x.mean(axis=0)
    lam = 0.3
    prob, used = _fda_posterior(x, y, lam)
    assert used == lam
    counts = np.bincount(y)
    means = np.stack([x[y == c].mean(axis=0) for c in range(3)])
    sw = sum(counts[c] / len(y) * np.cov(x[y == c].T, bias=True) for c in range(3))
    st = np.cov(x.T, bias=True)
    shrink = lambda s: (1 - lam) * s + lam * np.trace(s) / 5 * np.eye(5)
    _, w = scipy.linalg.eigh(shrink(st) - shrink(sw), shrink(sw))
    coef = means @ w @ w.T
    scores = x @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(counts / len(y))
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(prob, expected, atol=1e-10)


def test_separable_beats_shuffled_and_renaming_changes_nothing():
    x, y = _blobs()
    shuffled = np.random.default_rng(1).permutation(y)
    assert sfda(x, y) > sfda(x, shuffled) + 0.1
    assert sfda(x, np.array([4, 0, 9])[y]) == pytest.approx(sfda(x, y), abs=1e-10)


def test_translation_and_input_dtype_change_nothing():
    x, y = _blobs()
    assert sfda(x + 1000.0, y) == pytest.approx(sfda(x, y), abs=1e-8)
    assert sfda(x.astype(np.float32), y) == pytest.approx(sfda(x, y), abs=1e-6)


def test_needs_two_classes():
    x, _ = _blobs()
    with pytest.raises(ValueError, match="2 classes"):
        sfda(x, np.zeros(len(x)))
