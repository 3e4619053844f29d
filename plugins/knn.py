"""Leave-one-out k-nearest-neighbour accuracy with cosine similarity."""

from __future__ import annotations

import numpy as np

from advisor.numeric.checks import as_labelled, unit_rows
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl

# Similarities held at once per chunk of query rows (plus int64 neighbour indices of the same
# count): 4M entries is ~64 MB, never an N x N matrix.
CHUNK_ENTRIES = 1 << 22


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Fraction of samples whose leave-one-out k-NN vote (cosine similarity) equals their label.

    ``features``: ``float[N, D]`` (any real dtype, N >= 2); ``labels``: ``[N]`` class ids (any values;
    one class gives 1.0). Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input
    :func:`advisor.numeric.checks.as_labelled` refuses, ValueError for a ``k`` that is not a positive
    integer. Invariant to rescaling the features (cosine). Rows are L2-normalised (a zero row
    stays zero: similarity 0 to everything); a sample is never its own neighbour. The prediction is
    the majority label among the ``min(k, N - 1)`` most similar samples; a tied vote goes to the
    tied label with the larger summed similarity (then to the smaller label).

    Similarities are computed in float64. Cosine similarities of features that share a large common
    component (e.g. post-ReLU activations with a big mean) all lie within ~1/ratio² of 1, and float32
    (eps 6e-8) cannot rank them: with a per-coordinate offset 2,000x the class signal, float32 gives
    0.84 where the exact answer is 1.0, at 10,000x chance level. Cost, measured at N = 1000, D = 1280
    on one core: 0.070 s per call in float64 against 0.038 s in float32 (1.8x; the similarity product
    alone 0.068 s vs 0.023 s), a few percent of a forward pass over the same 1000 images.
    """
    # float64 before the norms too: a float32 norm alone shifts a row's similarities by ~6e-8
    F, y, counts = as_labelled(features, labels, min_classes=1)
    N, C = F.shape[0], len(counts)
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    k = min(int(k), N - 1)

    Z = unit_rows(F)
    chunk = max(1, CHUNK_ENTRIES // N)
    correct = 0
    for start in range(0, N, chunk):
        S = Z[start : start + chunk] @ Z.T  # [b, N] cosine similarities
        b = S.shape[0]
        rows = np.arange(b)
        S[rows, start + rows] = -np.inf  # leave one out
        nbr = np.argpartition(S, N - k, axis=1)[:, N - k :]  # the k largest, unordered [b, k]
        sim = np.take_along_axis(S, nbr, axis=1)
        # Per (query, class): vote count and summed similarity, via one bincount each.
        cell = (rows[:, None] * C + y[nbr]).ravel()
        votes = np.bincount(cell, minlength=b * C).reshape(b, C)
        sims = np.bincount(cell, weights=sim.ravel(), minlength=b * C).reshape(b, C)
        # Among the classes with the most votes, the largest summed similarity wins.
        pred = np.argmax(np.where(votes == votes.max(axis=1, keepdims=True), sims, -np.inf), axis=1)
        correct += int(np.sum(pred == y[start : start + b]))
    return correct / N


def _score(features, labels, k: int = 5, **_inputs) -> float:
    return knn_accuracy(features, labels, k=k)


@hookimpl
def register_estimators(register):
    register(
        Estimator(
            name="knn",
            fn=_score,
            version="2",  # 2: float64 similarities
            higher_is_better=True,
            needs=("labels",),
            description="leave-one-out k-nearest-neighbour accuracy (cosine similarity, k=5)",
        )
    )
