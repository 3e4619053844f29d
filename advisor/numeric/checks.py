"""One input-check kit for the estimators, in the manner of scikit-learn's ``check_array`` /
``check_X_y``: numpy only (no torch), every failure one :class:`EstimatorInputError` naming the input.

Every estimator plugin (``plugins/*.py``) and the numeric modules of the papers
(:mod:`advisor.numeric.cka`, :mod:`advisor.numeric.information_imbalance`,
:mod:`advisor.numeric.depara`) take their arrays through these functions, so that the same inputs are
refused everywhere with the same words, and the arithmetic they all repeat is done one way:

* :func:`as_matrix` -- any array-like -> ``float64[N, D]``, C-contiguous, finite, ``N >= min_rows``.
* :func:`as_labels` -- labels ``[N]`` of any values -> class ids ``int64[N]`` in ``0..C-1`` and the
  class counts ``int64[C]``.
* :func:`as_labelled` -- both of the above for a ``(features, labels)`` pair, at least 2 classes.
* :func:`check_same_rows` -- several arrays describe the same N points.
* :func:`as_pair` -- two representations of the same N points (:func:`as_matrix` each, same N).
* :func:`centred` -- column-centred copy whose constant columns are exactly zero (not rounding
  noise), so "no variance" is an exact test (:func:`require_variance`).
* :func:`class_means` -- per-class means and counts.
* :func:`numerical_rank` -- how many singular values are above rounding noise (``matrix_rank``'s rule).
* :func:`unit_rows` -- rows scaled to unit L2 norm, zero rows left zero.

An estimator raises :class:`EstimatorInputError` (a ``ValueError``) for input it cannot score; the
runner (:func:`advisor.estimators.safe_score`) reports it on the row, as any other failure.
:class:`advisor.EstimatorSkipped` stays the signal for an input that is *absent* (no logits, no
reference).
"""

from __future__ import annotations

import numpy as np

from advisor.errors import EstimatorInputError

__all__ = [
    "EstimatorInputError",
    "as_matrix",
    "as_labels",
    "as_labelled",
    "check_same_rows",
    "as_pair",
    "centred",
    "require_variance",
    "class_means",
    "numerical_rank",
    "unit_rows",
]

# dtype kinds that are numbers: bool, signed / unsigned int, float, and object (tried, e.g. a list of
# Python floats or Decimals). Complex, strings, bytes, datetimes and records are refused.
_NUMERIC_KINDS = "biufO"


def as_matrix(x, name: str = "features", *, min_rows: int = 2) -> np.ndarray:
    """``x`` as a ``float64[N, D]`` C-contiguous array, finite, with ``N >= min_rows`` and ``D >= 1``.

    ``x``: any 2-D array-like of numbers (float32, ints, bools, nested lists). No copy is made when
    ``x`` already is a C-contiguous float64 array: the result may be ``x`` itself (and read-only when
    ``x`` is), so callers never write into it.

    Raises :class:`EstimatorInputError` (a ``ValueError``) naming ``name`` when ``x`` is not numeric
    (strings, complex), not 2-D, has fewer than ``min_rows`` rows or no column, or holds NaN or inf.
    """
    try:
        arr = np.asarray(x)
        if arr.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"dtype {arr.dtype}")
        arr = arr.astype(np.float64, copy=False)
    except (TypeError, ValueError) as exc:
        raise EstimatorInputError(f"{name} must be a numeric array, got {type(x).__name__}: {exc}") from exc
    if arr.ndim != 2:
        raise EstimatorInputError(f"{name} must be 2-D [N, D] (one row per point), got shape {arr.shape}")
    if arr.shape[0] < min_rows:
        raise EstimatorInputError(f"{name} has N = {arr.shape[0]} points; at least {min_rows} are needed")
    if arr.shape[1] < 1:
        raise EstimatorInputError(f"{name} has no features (shape {arr.shape})")
    finite = np.isfinite(arr)
    if not finite.all():
        bad = int(finite.size - np.count_nonzero(finite))
        raise EstimatorInputError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return np.ascontiguousarray(arr)


def as_labels(labels, n: int, *, min_classes: int = 1, what: str = "this score") -> tuple[np.ndarray, np.ndarray]:
    """``(y, counts)``: ``labels`` ``[n]`` (any values; each distinct value is a class, in sorted
    order) recoded to class ids ``y`` ``int64[n]`` in ``0..C-1``, and ``counts`` ``int64[C]``
    (every count >= 1).

    Raises :class:`EstimatorInputError` when ``labels`` is not of shape ``(n,)``, holds NaN or inf, or
    has fewer than ``min_classes`` distinct values (the message says ``what`` needs them).
    """
    lab = np.asarray(labels)
    if lab.shape != (n,):
        raise EstimatorInputError(f"labels must have shape ({n},), got {lab.shape}")
    if lab.dtype.kind in "fc" and not np.all(np.isfinite(lab)):
        raise EstimatorInputError("labels contain NaN or inf")
    try:
        y = np.unique(lab, return_inverse=True)[1].reshape(n).astype(np.int64, copy=False)
    except TypeError as exc:  # e.g. an object array mixing str and int: no order to sort classes by
        raise EstimatorInputError(f"labels cannot be sorted into classes: {exc}") from exc
    counts = np.bincount(y)
    if len(counts) < min_classes:
        raise EstimatorInputError(f"{what} needs at least {min_classes} classes; the labels have {len(counts)}")
    return y, counts


def as_labelled(features, labels, *, min_rows: int = 2, min_classes: int = 2,
                what: str = "this score") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(X, y, counts)`` for a labelled probe, as :func:`as_matrix` and :func:`as_labels` give them:

    * ``X``: ``float64[N, D]`` C-contiguous, finite, ``N >= min_rows`` (read-only when the input was);
    * ``y``: ``int64[N]`` class ids ``0..C-1`` (the sorted distinct label values, re-indexed);
    * ``counts``: ``int64[C]``, samples per class (all >= 1), ``C >= min_classes`` (2 by default: no
      transferability score means anything on a single class).

    Raises :class:`EstimatorInputError` when either check fails or the lengths differ.
    """
    X = as_matrix(features, "features", min_rows=min_rows)
    y, counts = as_labels(labels, X.shape[0], min_classes=min_classes, what=what)
    return X, y, counts


def check_same_rows(arrays: dict, what: str = "points") -> None:
    """Raise :class:`EstimatorInputError` unless every array in ``{name: array}`` has the same number
    of rows (the same N probe ``what``; the message says "same N" and gives each shape)."""
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if len({s[0] if s else None for s in shapes.values()}) > 1:
        names = list(shapes)
        listed = ", ".join(f"{k} has shape {s}" for k, s in shapes.items())
        raise EstimatorInputError(f"{' and '.join(names)} must describe the same {what} (same N): {listed}")


def as_pair(x, y, names: tuple[str, str] = ("X", "Y"), *, min_rows: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Two representations of the same N points, each as :func:`as_matrix` gives it (``float64[N, D]``,
    finite, ``N >= min_rows``), ``names`` naming them in messages. Raises
    :class:`EstimatorInputError` when either check fails or their N differ (:func:`check_same_rows`)."""
    a = as_matrix(x, names[0], min_rows=min_rows)
    b = as_matrix(y, names[1], min_rows=min_rows)
    check_same_rows({names[0]: a, names[1]: b})
    return a, b


def centred(X: np.ndarray) -> np.ndarray:
    """``X - X.mean(axis=0)`` as a new ``float64[N, D]`` array, with every constant column exactly 0.

    The mean of a constant column is not always that constant in floating point (40 copies of 0.1
    sum to 4.000000000000001), so plain centring leaves rounding noise (~1e-17) where there is no
    variance at all; an SVD or PCA then treats that noise as signal (a rank, a component, a
    division by its variance). Here it is exactly zero, so ``not centred(X).any()`` means every
    feature is constant. Non-constant columns are unchanged (bit for bit).
    """
    X = np.asarray(X, dtype=np.float64)
    Xc = X - X.mean(axis=0)
    const = np.ptp(X, axis=0) == 0
    if const.any():
        Xc[:, const] = 0.0
    return Xc


def require_variance(X: np.ndarray, name: str = "features", why: str = "") -> None:
    """Raise :class:`EstimatorInputError` when every column of ``X`` [N, D] is constant (all rows
    identical: zero total variance). ``why`` completes the message (what is undefined then)."""
    if X.shape[1] == 0 or np.ptp(X, axis=0).max() == 0:
        raise EstimatorInputError(
            f"{name} has zero variance: all {X.shape[1]} feature(s) are constant over the {X.shape[0]} points"
            + (f", {why}" if why else "")
        )


def class_means(X: np.ndarray, y: np.ndarray, n_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(means, counts)``: the mean row of each class, ``float64[C, D]``, and the class sizes,
    ``float64[C]``, for ``X`` float[N, D] and class ids ``y`` int[N] in ``0..C-1``.

    ``C`` is ``n_classes`` (default ``y.max() + 1``); a class with no sample (possible in a subset,
    e.g. a cross-validation fold) has count 0 and a zero mean. Rows are summed in order
    (``np.add.at``), then divided by the count.
    """
    C = int(y.max()) + 1 if n_classes is None else int(n_classes)
    counts = np.bincount(y, minlength=C).astype(np.float64)
    means = np.zeros((C, X.shape[1]))
    np.add.at(means, y, X)
    means /= np.maximum(counts, 1.0)[:, None]
    return means, counts


def numerical_rank(s: np.ndarray, shape: tuple[int, ...]) -> int:
    """How many of the singular values ``s`` (descending) of a matrix of ``shape`` are above rounding
    noise: ``s > s_max * max(shape) * eps`` (float64 eps), the rule of ``np.linalg.matrix_rank``.
    Directions below it are duplicated or constant columns, or collinear rows: a null space."""
    s = np.asarray(s)
    return int(np.sum(s > s[:1].max(initial=0.0) * max(shape) * np.finfo(np.float64).eps))


def unit_rows(X: np.ndarray, rtol: float = 0.0) -> np.ndarray:
    """``X`` [N, D] with each row divided by its L2 norm, as a new float64 array.

    A row whose norm is ``<= rtol * max(1, largest row norm)`` (with ``rtol = 0``: an all-zero row)
    stays zero, so its cosine with any row is 0, not NaN.
    """
    X = np.asarray(X, dtype=np.float64)
    norms = np.linalg.norm(X, axis=1, keepdims=True)
    floor = rtol * max(1.0, float(norms.max(initial=0.0))) if rtol else 0.0
    return np.divide(X, norms, out=np.zeros_like(X), where=norms > floor)
