"""Mathematical properties of advisor.numeric.cka (CKA) and advisor.numeric.information_imbalance on random data.

References: Kornblith et al. 2019 (CKA; Neyshabur et al. 2020 §3.2, Gerace et al. 2023 App. C) and Glielmo et al. 2022
(Information Imbalance; Gerace et al. 2023 "Representation similarity and transferability")."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import cdist

import advisor.numeric.cka as cka_module
import advisor.numeric.information_imbalance as ii_module
from advisor.numeric.cka import cka
from advisor.numeric.information_imbalance import information_imbalance, information_imbalance_pair


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _related(seed: int, n: int = 80, d1: int = 10, d2: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """X and a Y that shares part of its structure (non-trivial CKA, neither 0 nor 1)."""
    rng = _rng(seed)
    x = rng.normal(size=(n, d1))
    y = np.tanh(x[:, :3] @ rng.normal(size=(3, d2))) + 0.5 * rng.normal(size=(n, d2))
    return x, y


def _orthogonal(seed: int, d: int) -> np.ndarray:
    q, r = np.linalg.qr(_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


# ---------------------------------------------------------------------------------------------
# CKA: explicit N x N reference from the formulas (Kornblith et al. 2019 eqs. 1-3; Song et al.
# 2012 eq. 5 for the unbiased HSIC), written out by hand for small N.
# ---------------------------------------------------------------------------------------------
def _hsic_biased(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    return float(np.trace(k @ h @ l @ h)) / (n - 1) ** 2


def _hsic_unbiased(k: np.ndarray, l: np.ndarray) -> float:
    n = k.shape[0]
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0.0)
    np.fill_diagonal(lt, 0.0)
    one = np.ones(n)
    value = (
        np.trace(kt @ lt)
        + kt.sum() * lt.sum() / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * float(one @ kt @ lt @ one)
    )
    return float(value) / (n * (n - 3))


def _cka_reference(k: np.ndarray, l: np.ndarray, debiased: bool) -> float:
    hsic = _hsic_unbiased if debiased else _hsic_biased
    return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def _rbf_reference(x: np.ndarray, threshold: float) -> np.ndarray:
    sq = cdist(x, x, "sqeuclidean")
    # Kornblith's gram_rbf: sigma^2 = threshold^2 * median of all N^2 squared distances.
    return np.exp(-sq / (2.0 * threshold**2 * np.median(sq)))


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("shape", [(40, 6, 9), (15, 40, 25)])  # feature-space path; N x N path
def test_linear_cka_equals_explicit_gram_formula(shape, debiased):
    n, d1, d2 = shape
    x, y = _related(1, n, d1, d2)
    x = x + 3.0  # uncentred inputs: centring is the function's job
    expected = _cka_reference(x @ x.T, y @ y.T, debiased)
    assert cka(x, y, debiased=debiased) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("threshold", [0.5, 1.0, 2.0])
def test_rbf_cka_equals_explicit_gram_formula(threshold, debiased):
    x, y = _related(2, 30, 5, 4)
    expected = _cka_reference(_rbf_reference(x, threshold), _rbf_reference(y, threshold), debiased)
    assert cka(x, y, kernel="rbf", threshold=threshold, debiased=debiased) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_float32_path_is_accurate(monkeypatch, debiased):
    x, y = _related(3, 300, 20, 8)
    exact = cka(x, y, kernel="rbf", debiased=debiased)
    monkeypatch.setattr(cka_module, "_RBF_FLOAT64_MAX_N", 10)  # force float32 distances/kernel values
    assert cka(x, y, kernel="rbf", debiased=debiased) == pytest.approx(exact, abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_identical_inputs_is_one(kernel, debiased):
    x, _ = _related(4, 60, 12, 3)
    assert cka(x, x, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)
    wide = _rng(5).normal(size=(20, 50))  # D > N: Gram-matrix path for linear
    assert cka(wide, wide, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling(kernel, debiased):
    x, y = _related(6, 70, 8, 6)
    base = cka(x, y, kernel=kernel, debiased=debiased)
    q = _orthogonal(7, y.shape[1])
    assert 0.05 < abs(base) < 0.95  # a non-trivial value, so invariance means something
    assert cka(x, 3.7 * (y @ q), kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert cka(0.01 * (x @ _orthogonal(8, 8)), y, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)
    assert cka(x, y + 5.0, kernel=kernel, debiased=debiased) == pytest.approx(base, abs=1e-10)  # translation


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_not_invariant_to_invertible_linear_transform(debiased):
    x, y = _related(9, 80, 8, 6)
    rng = _rng(10)
    m = rng.normal(size=(6, 6)) @ np.diag([10.0, 3.0, 1.0, 0.3, 0.1, 0.03])
    assert abs(np.linalg.det(m)) > 1e-8  # invertible
    base = cka(x, y, debiased=debiased)
    assert abs(cka(x, y @ m, debiased=debiased) - base) > 0.02
    m2 = rng.normal(size=(8, 8)) @ np.diag(np.geomspace(10.0, 0.01, 8))
    assert cka(x, x @ m2, debiased=debiased) < 0.9  # CCA-like measures would give 1 here


def test_biased_cka_in_unit_interval():
    for seed in range(6):
        x, y = _related(seed, 30 + 10 * seed, 5, 4)
        for other in (y, -x[:, :3] + 0.1 * y[:, :3], _rng(seed + 100).normal(size=y.shape)):
            for kernel in ("linear", "rbf"):
                assert 0.0 <= cka(x, other, kernel=kernel) <= 1.0


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_of_independent_features_small_and_debiased_near_zero(kernel):
    rng = _rng(11)
    x, y = rng.normal(size=(50, 20)), rng.normal(size=(50, 20))
    biased = cka(x, y, kernel=kernel)
    debiased = cka(x, y, kernel=kernel, debiased=True)
    assert biased > 0.15  # the biased estimator is noticeably positive at small N ...
    assert abs(debiased) < 0.1  # ... the debiased one is centred on the population value 0
    assert abs(debiased) < biased / 3
    big_x, big_y = rng.normal(size=(2000, 20)), rng.normal(size=(2000, 20))
    assert cka(big_x, big_y) < 0.03  # the bias shrinks with N
    assert abs(cka(big_x, big_y, debiased=True)) < 0.01


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_large_n_fast_and_finite(debiased):
    rng = _rng(12)
    x = rng.normal(size=(10_000, 256)).astype(np.float32)
    y = x[:, :128] @ rng.normal(size=(128, 96)).astype(np.float32) + rng.normal(size=(10_000, 96)).astype(np.float32)
    t0 = time.perf_counter()
    value = cka(x, y, debiased=debiased)
    elapsed = time.perf_counter() - t0
    assert np.isfinite(value) and 0.0 < value <= 1.0
    assert elapsed < 5.0, f"linear CKA at N=10,000 took {elapsed:.1f} s"


def test_debiased_degenerate_self_hsic_returns_zero_not_nan():
    # x = (1, 1, 1, -1): its off-diagonal Gram entries are x_i x_j = u_i + u_j with
    # u = (1/2, 1/2, 1/2, -3/2), which the unbiased centring maps exactly to 0, so the debiased
    # HSIC(K, K) is 0 (0/0 CKA). The guard returns 0.0 with a RuntimeWarning instead of NaN.
    x = np.array([[1.0], [1.0], [1.0], [-1.0]])
    y = _rng(13).normal(size=(4, 3))
    with pytest.warns(RuntimeWarning, match="CKA undefined"):
        assert cka(x, y, debiased=True) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isfinite(cka(x, y))  # the biased form is well defined here


def test_cka_constant_features():
    rng = _rng(14)
    x = rng.normal(size=(20, 4))
    with pytest.raises(ValueError, match="zero variance"):
        cka(np.full((20, 3), 2.5), x)
    with pytest.raises(ValueError, match="zero variance"):
        cka(x, np.ones((20, 1)), kernel="rbf")
    # A single dead (constant) feature among others is fine and changes nothing.
    with_dead = np.hstack([x, np.full((20, 1), 7.0)])
    assert cka(with_dead, x) == pytest.approx(1.0, abs=1e-12)


def test_rbf_zero_median_distance_raises():
    x = np.zeros((10, 2))
    x[0, 0] = 1.0  # 9 of 10 points coincide: median pairwise distance 0
    with pytest.raises(ValueError, match="median pairwise distance is zero"):
        cka(x, _rng(15).normal(size=(10, 2)), kernel="rbf")


# ---------------------------------------------------------------------------------------------
# Input validation (both functions)
# ---------------------------------------------------------------------------------------------
_GOOD = np.arange(30, dtype=float).reshape(10, 3) ** 1.5


@pytest.mark.parametrize(
    "a, b, match",
    [
        (_GOOD, _GOOD[:9], "same N"),
        (_GOOD[:, 0], _GOOD, "2-D"),
        (_GOOD[None], _GOOD, "2-D"),
        (_GOOD[:3], _GOOD[:3], "at least 4"),
        (np.where(_GOOD > 10, np.nan, _GOOD), _GOOD, "non-finite"),
        (np.where(_GOOD > 10, np.inf, _GOOD), _GOOD, "non-finite"),
        (_GOOD, np.empty((10, 0)), "no features"),
        ([["a", "b"]] * 5, _GOOD[:5], "numeric"),
    ],
)
def test_invalid_inputs_raise(a, b, match):
    for fn in (cka, information_imbalance, information_imbalance_pair):
        with pytest.raises(ValueError, match=match):
            fn(a, b)


def test_invalid_options_raise():
    with pytest.raises(ValueError, match="kernel"):
        cka(_GOOD, _GOOD, kernel="poly")
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="threshold"):
            cka(_GOOD, _GOOD, kernel="rbf", threshold=bad)
    for bad_k in (0, 10, 2.0, True):
        with pytest.raises(ValueError, match="k must"):
            information_imbalance(_GOOD, _GOOD, k=bad_k)
    with pytest.raises(ValueError, match="max_points"):
        information_imbalance(_GOOD, _GOOD, max_points=3)
    with pytest.raises(ValueError, match="k must"):  # k checked against the subset size
        information_imbalance(_GOOD, _GOOD, k=5, max_points=5)


# ---------------------------------------------------------------------------------------------
# Information Imbalance
# ---------------------------------------------------------------------------------------------
def _ii_bruteforce(a: np.ndarray, b: np.ndarray, k: int) -> float:
    """Loop version of Glielmo et al.'s definition: 2/(N^2 k) sum_i sum_{j in kNN_A(i)} r^B_ij,
    r^B_ij = 1 + #{l != i: d^B_il < d^B_ij}; kNN by a stable sort (lowest index among ties)."""
    n = a.shape[0]
    total = 0
    for i in range(n):
        others = np.array([j for j in range(n) if j != i])
        da = np.sqrt(((a[others] - a[i]) ** 2).sum(axis=1))
        db = np.sqrt(((b[others] - b[i]) ** 2).sum(axis=1))
        for pos in np.argsort(da, kind="stable")[:k]:
            total += 1 + int(np.sum(db < db[pos]))
    return 2.0 * total / (n * n * k)


def test_ii_hand_worked_example():
    # Five points; point i sits at a[i] on a line in A and at b[i] on a line in B.
    a = np.array([0.0, 1.0, 3.0, 7.0, 15.0])[:, None]
    b = np.array([0.0, 10.0, 1.0, 3.0, 5.0])[:, None]
    # A -> B. Nearest neighbour in A, then the rank of that point among i's neighbours in B
    # (1 + number of points strictly closer to i in B):
    #   i=0 (a=0):  nn 1 (d=1).  In B from b=0:  d(2)=1, d(3)=3, d(4)=5 < d(1)=10      -> r=4
    #   i=1 (a=1):  nn 0 (d=1).  In B from b=10: d(4)=5, d(3)=7, d(2)=9 < d(0)=10      -> r=4
    #   i=2 (a=3):  nn 1 (d=2).  In B from b=1:  d(0)=1, d(3)=2, d(4)=4 < d(1)=9       -> r=4
    #   i=3 (a=7):  nn 2 (d=4).  In B from b=3:  d(2)=2, tie d(4)=2 is not closer      -> r=1
    #   i=4 (a=15): nn 3 (d=8).  In B from b=5:  d(3)=2 is the nearest                 -> r=1
    #   Delta(A->B) = 2/N^2 * (4+4+4+1+1) = 28/25 = 1.12   (> 1: A misleads about B)
    # B -> A:
    #   i=0 (b=0):  nn 2 (d=1).  In A from a=0:  d(1)=1 < d(2)=3                        -> r=2
    #   i=1 (b=10): nn 4 (d=5).  In A from a=1:  d(0)=1, d(2)=2, d(3)=6 < d(4)=14      -> r=4
    #   i=2 (b=1):  nn 0 (d=1).  In A from a=3:  d(1)=2 < d(0)=3                        -> r=2
    #   i=3 (b=3):  nn 2 or 4, both at d=2: tie -> lowest index, 2.  In A from a=7:
    #               d(2)=4 is the nearest                                               -> r=1
    #   i=4 (b=5):  nn 3 (d=2).  In A from a=15: d(3)=8 is the nearest                  -> r=1
    #   Delta(B->A) = 2/25 * (2+4+2+1+1) = 20/25 = 0.8
    # (Gerace et al. 2023's n_i = r - 1 convention would give (28 - 10)/25 and (20 - 10)/25, i.e. 2/N less.)
    pair = information_imbalance_pair(a, b)
    assert pair == {"a_to_b": pytest.approx(28 / 25, abs=1e-15), "b_to_a": pytest.approx(20 / 25, abs=1e-15), "n_used": 5}
    assert information_imbalance(a, b) == pytest.approx(28 / 25, abs=1e-15)
    assert information_imbalance(b, a) == pytest.approx(20 / 25, abs=1e-15)
    assert _ii_bruteforce(a, b, 1) == pytest.approx(28 / 25, abs=1e-15)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_ii_matches_bruteforce_definition(k):
    rng = _rng(20)
    a = rng.normal(size=(40, 3))
    b = a[:, :2] + 0.7 * rng.normal(size=(40, 2))
    pair = information_imbalance_pair(a, b, k=k)
    assert pair["a_to_b"] == pytest.approx(_ii_bruteforce(a, b, k), abs=1e-15)
    assert pair["b_to_a"] == pytest.approx(_ii_bruteforce(b, a, k), abs=1e-15)


@pytest.mark.parametrize("k", [1, 4])
def test_ii_identical_and_isometric_spaces_near_zero(k):
    rng = _rng(21)
    a = rng.normal(size=(200, 8))
    n = a.shape[0]
    same = information_imbalance_pair(a, a, k=k)
    # Every one of the k nearest neighbours in A has rank <= k in B: Delta = (k+1)/N exactly.
    assert same["a_to_b"] == pytest.approx((k + 1) / n, abs=1e-15)
    assert same["b_to_a"] == pytest.approx((k + 1) / n, abs=1e-15)
    iso = 2.5 * (a @ _orthogonal(22, 8)) - 4.0  # rotation/reflection, scaling and translation
    moved = information_imbalance_pair(a, iso, k=k)
    assert moved["a_to_b"] < 0.05 and moved["b_to_a"] < 0.05
    assert moved["a_to_b"] == pytest.approx((k + 1) / n, abs=1e-15)


@pytest.mark.parametrize("k", [1, 10])
def test_ii_independent_spaces_near_one(k):
    rng = _rng(23)
    pair = information_imbalance_pair(rng.normal(size=(1000, 5)), rng.normal(size=(1000, 5)), k=k)
    assert abs(pair["a_to_b"] - 1.0) < 0.1
    assert abs(pair["b_to_a"] - 1.0) < 0.1


def test_ii_asymmetry_full_vs_partial_coordinates():
    # Glielmo et al. 2022: A = (x1, x2) contains all the information of B = (x1), not vice versa.
    x = _rng(24).normal(size=(1000, 2))
    pair = information_imbalance_pair(x, x[:, :1])
    assert pair["a_to_b"] < 0.1
    assert pair["b_to_a"] > 0.4
    assert pair["b_to_a"] > 5 * pair["a_to_b"]


def test_ii_ties_are_deterministic():
    rng = _rng(25)
    a = rng.normal(size=(30, 3))
    n = a.shape[0]
    # Constant B: nothing is ever strictly closer than the neighbour -> every rank is 1.
    assert information_imbalance(a, np.full((n, 2), 3.3)) == pytest.approx(2 / n, abs=1e-15)
    # Constant A: all distances tie; the lowest-index points are taken as neighbours.
    const = np.zeros((n, 1))
    assert information_imbalance(const, a, k=2) == pytest.approx(_ii_bruteforce(const, a, 2), abs=1e-15)
    # Duplicated points and a coarse integer grid (many exact ties).
    grid = rng.integers(0, 3, size=(n, 2)).astype(float)
    dup = np.vstack([a[:15], a[:15]])
    for k in (1, 3):
        assert information_imbalance(grid, a, k=k) == pytest.approx(_ii_bruteforce(grid, a, k), abs=1e-15)
        assert information_imbalance(a, grid, k=k) == pytest.approx(_ii_bruteforce(a, grid, k), abs=1e-15)
        assert information_imbalance(dup, grid, k=k) == pytest.approx(_ii_bruteforce(dup, grid, k), abs=1e-15)


def test_ii_independent_of_chunk_size(monkeypatch):
    rng = _rng(26)
    a = rng.normal(size=(300, 6))
    b = np.round(a[:, :3] * 2)  # many ties in B
    ref = information_imbalance_pair(a, b, k=3)
    monkeypatch.setattr(ii_module, "_CHUNK_ELEMS", 5_000)  # a few rows per chunk
    assert information_imbalance_pair(a, b, k=3) == ref


def test_ii_subsampling():
    rng = _rng(27)
    a = rng.normal(size=(600, 4))
    b = a[:, :2] + 0.3 * rng.normal(size=(600, 2))
    first = information_imbalance_pair(a, b, max_points=150, seed=3)
    assert first["n_used"] == 150
    assert information_imbalance_pair(a, b, max_points=150, seed=3) == first  # deterministic
    assert information_imbalance(a, b, max_points=150, seed=3) == first["a_to_b"]
    assert isinstance(information_imbalance(a, b, max_points=150, seed=3), float)
    assert information_imbalance_pair(a, b, max_points=150, seed=4) != first  # seed matters
    # The documented subset: numpy default_rng(seed).choice(N, max_points, replace=False), sorted.
    idx = np.sort(np.random.default_rng(3).choice(600, size=150, replace=False))
    explicit = information_imbalance_pair(a[idx], b[idx])
    assert explicit["a_to_b"] == first["a_to_b"] and explicit["b_to_a"] == first["b_to_a"]
    # max_points >= N: no subsampling.
    full = information_imbalance_pair(a, b)
    assert full["n_used"] == 600
    assert information_imbalance_pair(a, b, max_points=600) == full
