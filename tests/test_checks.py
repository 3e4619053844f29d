"""advisor.numeric.checks, the estimators' input-check kit: what it accepts, what it refuses and how."""

import numpy as np
import pytest

from advisor.numeric.checks import (
    EstimatorInputError,
    as_labelled,
    as_labels,
    as_matrix,
    centred,
    check_same_rows,
    class_means,
    numerical_rank,
    require_variance,
    unit_rows,
)

X = np.arange(12, dtype=np.float64).reshape(4, 3) ** 1.5


def test_as_matrix_gives_c_contiguous_float64_without_copying_what_already_is():
    assert as_matrix(X) is X
    for given in (X.astype(np.float32), X.T.copy().T, [[1, 2], [3, 4]], np.array([[True], [False]])):
        out = as_matrix(given)
        assert out.dtype == np.float64 and out.flags.c_contiguous and out.ndim == 2
    frozen = X.view()
    frozen.flags.writeable = False
    assert not as_matrix(frozen).flags.writeable  # a read-only input stays read-only: never written into


@pytest.mark.parametrize("bad, match", [
    (X[:, 0], "2-D"), (X[None], "2-D"), (X[:1], "at least 2"), (np.empty((4, 0)), "no features"),
    (np.where(X > 20, np.nan, X), "non-finite"), (np.where(X > 20, -np.inf, X), "non-finite"),
    ([["a", "b"]] * 3, "numeric"), (X.astype(complex), "numeric"), ([[1.0, 2.0], [3.0]], "numeric"),
])
def test_as_matrix_refuses_with_one_error_naming_the_input(bad, match):
    with pytest.raises(EstimatorInputError, match=match) as info:
        as_matrix(bad, "logits")
    assert str(info.value).startswith("logits") and isinstance(info.value, ValueError)


def test_as_labels_reindexes_any_values_and_counts_classes():
    y, counts = as_labels(np.array(["b", "a", "b", "c"]), 4)
    assert y.tolist() == [1, 0, 1, 2] and y.dtype == np.int64 and counts.tolist() == [1, 2, 1]
    for bad, match in (([0, 1, 2], r"shape \(4,\)"), (np.array([0.0, np.nan, 1.0, 1.0]), "NaN"), (np.zeros((4, 1)), "shape")):
        with pytest.raises(EstimatorInputError, match=match):
            as_labels(bad, 4)
    with pytest.raises(EstimatorInputError, match="SFDA needs at least 2 classes"):
        as_labelled(X, np.zeros(4), what="SFDA")
    F, y, counts = as_labelled(X, [3, 3, 7, 7])
    assert F is X and y.tolist() == [0, 0, 1, 1] and counts.tolist() == [2, 2]


def test_check_same_rows_names_every_shape():
    check_same_rows({"a": X, "b": X[:, :1]})
    with pytest.raises(EstimatorInputError, match=r"a and b must describe the same points \(same N\).*\(3, 3\)"):
        check_same_rows({"a": X, "b": X[:3]})


def test_centred_zeroes_constant_columns_exactly():
    F = np.hstack([X, np.full((4, 1), 0.1), np.full((4, 1), 1234.5678)])
    plain = F - F.mean(axis=0)
    out = centred(F)
    assert np.array_equal(out[:, :3], plain[:, :3])  # other columns bit for bit
    assert not out[:, 3:].any()
    assert not centred(np.tile(F[:1], (5, 1))).any()
    with pytest.raises(EstimatorInputError, match="zero variance.*so nothing"):
        require_variance(np.tile(F[:1], (5, 1)), "the cut", "so nothing")
    require_variance(F)


def test_class_means_counts_and_absent_classes():
    means, counts = class_means(X, np.array([0, 2, 0, 2]), n_classes=4)
    assert counts.tolist() == [2, 0, 2, 0]
    assert np.allclose(means[0], X[[0, 2]].mean(axis=0)) and np.allclose(means[2], X[[1, 3]].mean(axis=0))
    assert not means[[1, 3]].any()


def test_numerical_rank_and_unit_rows():
    s = np.linalg.svd(np.hstack([X, X[:, :1]]), compute_uv=False)  # a duplicated column: rank 3, not 4
    assert numerical_rank(s, (4, 4)) == np.linalg.matrix_rank(np.hstack([X, X[:, :1]])) and numerical_rank(np.zeros(3), (4, 3)) == 0
    u = unit_rows(np.vstack([X[1:], np.zeros(3)]))
    assert np.allclose(np.linalg.norm(u[:3], axis=1), 1.0) and not u[3].any()
    assert not unit_rows(np.array([[1.0, 0.0], [1e-15, 0.0]]), rtol=1e-12)[1].any()
