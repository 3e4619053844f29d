"""Numerics on legal input (issue 13, kind 9): precision where it matters, exact reductions.

kNN's cosine similarities in float32 cannot rank features that share a large common component;
GBC and PARC reduced features with scikit-learn's default PCA solver, which is randomized above 500
rows or columns. Each reference value here is computed independently, in float64 with numpy's SVD.
"""

import ast

import numpy as np
import pytest
from conftest import REPO, blobs

from advisor.plugins.gbc import gbc
from advisor.plugins.knn import knn_accuracy
from advisor.plugins.parc import parc


def _offset_classes(n=200, d=8, c=4, offset=2000.0, noise=0.1, seed=0):
    """c well-separated classes (one-hot signal of size 1, noise 0.1) plus ``offset`` added to every
    coordinate: a shared component ``offset`` times the class signal."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    return np.eye(c, d)[y] + noise * rng.standard_normal((n, d)) + offset, y


def _knn_reference(F, y, k=5):
    """Brute-force leave-one-out cosine k-NN in float64 (ties: larger summed similarity)."""
    F = np.asarray(F, np.float64)
    Z = F / np.linalg.norm(F, axis=1, keepdims=True)
    S = Z @ Z.T
    np.fill_diagonal(S, -np.inf)
    correct = 0
    for i in range(len(y)):
        nbr = np.argsort(-S[i], kind="stable")[:k]
        votes = np.bincount(y[nbr], minlength=y.max() + 1)
        sims = np.bincount(y[nbr], weights=S[i, nbr], minlength=y.max() + 1)
        top = np.flatnonzero(votes == votes.max())
        correct += int(top[np.argmax(sims[top])] == y[i])
    return correct / len(y)


@pytest.mark.parametrize("offset", [2000.0, 10000.0])
def test_knn_with_a_large_shared_component_gives_the_float64_answer(offset):
    # The example: float32 similarities gave 0.84 at 2,000x and 0.24 at 10,000x.
    x, y = _offset_classes(offset=offset)
    assert _knn_reference(x, y) == 1.0
    assert knn_accuracy(x, y) == 1.0


def test_knn_on_float32_features_with_a_shared_component():
    # Features come out of the cache as float32: the offset is representable, the answer must hold.
    x, y = _offset_classes(offset=2000.0)
    assert knn_accuracy(x.astype(np.float32), y) == _knn_reference(x.astype(np.float32), y) == 1.0


@pytest.mark.parametrize("offset, d, noise", [(500.0, 64, 0.3), (3000.0, 32, 0.2), (20000.0, 16, 0.1)])
def test_knn_matches_a_float64_brute_force_along_a_random_shared_direction(offset, d, noise):
    rng = np.random.default_rng(3)
    x, y = _offset_classes(n=150, d=d, c=3, offset=0.0, noise=noise, seed=2)
    u = rng.standard_normal(d)
    x = x + offset * np.sqrt(d) * u / np.linalg.norm(u)  # shared component along a random direction
    assert knn_accuracy(x, y) == pytest.approx(_knn_reference(x, y))


def test_knn_on_huge_float32_features():
    # |x| ~ 1e30 squares past float32's range: norms taken in float32 overflowed to inf (every
    # similarity 0, neighbours arbitrary); in float64 the scale is irrelevant, as for cosine it must be.
    x, y = _offset_classes(offset=0.0, noise=0.3)
    assert knn_accuracy((x * 1e30).astype(np.float32), y) == knn_accuracy(x, y) == _knn_reference(x, y)
    assert knn_accuracy((x * 1e-30).astype(np.float32), y) == knn_accuracy(x, y)  # and tiny ones do not underflow


def _exact_pca(F, k):
    """PCA scores by numpy's SVD of the centred data, with scikit-learn's sign convention
    (``svd_flip(u_based_decision=False)``: each component's largest-magnitude loading positive)."""
    Fc = F - F.mean(axis=0)
    u, s, vt = np.linalg.svd(Fc, full_matrices=False)
    signs = np.sign(vt[np.arange(len(vt)), np.argmax(np.abs(vt), axis=1)])
    return (u[:, :k] * s[:k]) * signs[:k]


@pytest.mark.parametrize("n, d, c", [(300, 512, 5), (600, 100, 4), (120, 2048, 3)])
def test_gbc_reduces_with_exact_pca(n, d, c):
    # N = 300, D = 512 is the shape (randomized PCA gave -8.893 for -9.002 there).
    x, y = blobs(n, d, c, 1.5, seed=1)
    for kind in ("diagonal", "spherical"):
        expected = gbc(_exact_pca(x, 64), y, kind, pca_dims=None)
        assert gbc(x, y, kind) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("n, d, c", [(300, 512, 5), (600, 100, 4), (120, 2048, 3)])
def test_parc_reduces_with_exact_pca(n, d, c):
    x, y = blobs(n, d, c, 1.5, seed=1)
    assert parc(x, y) == pytest.approx(parc(_exact_pca(x, 32), y, pca_dims=None), abs=1e-9)


def test_every_pca_call_is_exact():
    """Every scikit-learn PCA in the package uses the exact solver (the default is randomized on
    inputs above 500 rows or columns), and no randomized SVD is used anywhere."""
    sources = [p for folder in ("advisor", "plugins") for p in (REPO / folder).rglob("*.py")]
    calls = 0
    for path in sources:
        text = path.read_text()
        assert "randomized_svd" not in text and "TruncatedSVD" not in text, path
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "PCA":
                calls += 1
                solver = {k.arg: k.value for k in node.keywords}.get("svd_solver")
                assert isinstance(solver, ast.Constant) and solver.value == "full", f"{path.name}:{node.lineno}"
    assert calls >= 3  # GBC, PARC, N-LEEP


def test_sfda_largest_eigenvalue_is_exact():
    # SFDA's Lanczos (scipy eigsh, fixed start vector) converges to machine precision.
    from advisor.plugins.sfda import _largest_eigenvalue

    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 200))
    S = a.T @ a / 300
    assert _largest_eigenvalue(S) == pytest.approx(np.linalg.eigvalsh(S)[-1], rel=1e-10)
