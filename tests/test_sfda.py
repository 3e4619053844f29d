"""SFDA (plugins/sfda.py): a 1-D example worked in plain Python, the reference's eigenvector route,
the shrinkage against scikit-learn's Ledoit–Wolf, noise at d > n, properties."""

import math

import numpy as np
import pytest
import scipy.linalg
from advisor.plugins.sfda import _fda_posterior, folds, ledoit_wolf_shrinkage, sfda
from conftest import blobs


def _blobs(n=300, d=10, c=3, sep=1.5, seed=0):
    return blobs(n, d, c, sep, seed)


def _posterior_1d(train, x):
    """Posterior [C=2] of the 1-D Fisher classifier fitted on ``train`` [(x, y)]: in 1-D the shrunk
    scatter (1 - l) v + l (v / 1) is v for any shrinkage l, so it is Gaussian LDA with pooled variance v."""
    m = [sum(a for a, b in train if b == c) / sum(1 for _, b in train if b == c) for c in (0, 1)]
    v = sum((a - m[b]) ** 2 for a, b in train) / len(train)
    pi = [sum(1 for _, b in train if b == c) / len(train) for c in (0, 1)]
    s = [x * m[c] / v - m[c] ** 2 / (2 * v) + math.log(pi[c]) for c in (0, 1)]
    e = [math.exp(t - max(s)) for t in s]
    return [t / sum(e) for t in e]


def test_one_dimensional_example_in_plain_python():
    # two classes of 4, interleaved; the j-th sample of each class is in fold j (of 5): folds 0-3
    xs = {0: [-2.0, -1.0, 0.5, -3.0], 1: [2.0, 0.0, 1.0, 3.0]}
    data = [(xs[c][j], c, j) for j in range(4) for c in (0, 1)]  # (x, label, fold)
    expected = []
    for f in range(4):  # the held-out fold
        train = [(x, c, g) for x, c, g in data if g != f]
        q = {}
        for x, c, g in train:  # ConfMix weight from the fit on the folds other than f and g
            p = _posterior_1d([(a, b) for a, b, h in data if h not in (f, g)], x)
            q[(x, c)] = math.exp(p[c]) / (math.exp(p[0]) + math.exp(p[1]))  # softened as in the reference
        mean = {c: sum(x for x, b, _ in train if b == c) / 3 for c in (0, 1)}
        mixed = [(q[(x, c)] * x + (1 - q[(x, c)]) * mean[1 - c], c) for x, c, _ in train]  # towards the other class
        expected += [_posterior_1d(mixed, x)[c] for x, c, g in data if g == f]
    x = np.array([[a] for a, _, _ in data])
    y = np.array([c for _, c, _ in data])
    assert list(folds(y)) == [g for _, _, g in data]
    assert sfda(x, y) == pytest.approx(sum(expected) / len(expected), abs=1e-12)


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


def test_ledoit_wolf_matches_scikit_learn_also_in_a_basis_of_the_span():
    from sklearn.covariance import ledoit_wolf_shrinkage as sk

    rng = np.random.default_rng(0)
    for n, d in ((200, 20), (30, 80)):
        x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
        x -= x.mean(axis=0)
        assert ledoit_wolf_shrinkage(x, d) == pytest.approx(sk(x, assume_centered=True), rel=1e-10)
    u, s, _ = np.linalg.svd(x, full_matrices=False)  # n = 30 coordinates of the 80-d rows
    assert ledoit_wolf_shrinkage(u * s, 80) == pytest.approx(sk(x, assume_centered=True), rel=1e-10)


def test_noise_with_more_dimensions_than_images_scores_near_chance():
    # Version 1 returned exactly 1.0 here: the paper's shrinkage sat at its 1e-10 floor (S_W singular
    # at d > n) and the posteriors were measured on the samples the discriminant was fitted on.
    rng = np.random.default_rng(0)
    n, d, c = 100, 512, 4
    noise = [sfda(rng.standard_normal((n, d)), rng.integers(0, c, n)) for _ in range(3)]
    assert max(noise) < 0.45 and abs(np.mean(noise) - 1 / c) < 0.1, noise  # chance is 1/4
    x = rng.standard_normal((n, d))
    y = np.arange(n) % c
    separable = x + 1.5 * np.eye(c, d)[y] * np.sqrt(d / 8)  # class signal in c of the 512 dimensions
    assert sfda(separable, y) > max(noise) + 0.4
    assert sfda(x, y) < 0.45  # the same features without the signal


def test_separable_beats_shuffled_and_renaming_changes_nothing():
    x, y = _blobs()
    shuffled = np.random.default_rng(1).permutation(y)
    assert sfda(x, y) > sfda(x, shuffled) + 0.1
    assert sfda(x, np.array([4, 0, 9])[y]) == pytest.approx(sfda(x, y), abs=1e-10)


def test_translation_rotation_and_input_dtype_change_nothing():
    x, y = _blobs()
    assert sfda(x + 1000.0, y) == pytest.approx(sfda(x, y), abs=1e-8)
    assert sfda(x.astype(np.float32), y) == pytest.approx(sfda(x, y), abs=1e-6)
    wide, yw = _blobs(n=40, d=90, c=3, sep=3.0)  # d > n: scored in a basis of the span of the rows
    q, _ = np.linalg.qr(np.random.default_rng(2).standard_normal((90, 90)))
    assert sfda(wide @ q, yw) == pytest.approx(sfda(wide, yw), abs=1e-8)


def test_needs_two_classes():
    x, _ = _blobs()
    with pytest.raises(ValueError, match="2 classes"):
        sfda(x, np.zeros(len(x)))


def test_two_samples_per_class_is_scored_not_nan():
    # Two folds: the ConfMix fit for the pair (0, 1) had no training sample left, 0/0 gave NaN
    # posteriors and a NaN score. There is nothing to challenge with then (q = 1, as with one fold).
    x, y = _blobs(n=300, d=10, c=4, sep=3.0)
    few = np.concatenate([np.flatnonzero(y == c)[:2] for c in range(4)])
    score = sfda(x[few], y[few])
    assert 0.0 <= score <= 1.0 and score > 0.5  # separable classes, scored held out
