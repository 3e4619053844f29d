"""DEPARA: deep attribution graphs and their similarity (Song, Chen, Wang, Shen & Song 2020, CVPR,
"DEPARA: Deep Attribution Graph for Deep Knowledge Transferability", §3.3-3.5).

Pure numeric module (numpy + scipy; no torch). A DEPARA ``G = (V, E)`` of one layer ``F_k`` of a
model on ``n`` probe images ``x_1..x_n`` has

* nodes ``V = {v_1..v_n}`` (§3.3.1, eq. 3): ``v_m`` is the Gradient*Input attribution
  ``x_m ⊙ ∂‖F_k(x_m)‖²/∂x_m``. They are computed by :mod:`advisor.ranking.attributions` (torch), which
  pools each map to a fixed ``grid × grid`` so that models with different input sizes are
  comparable; here they are just rows of a ``[n, P]`` array.
* edges ``E = {e_pq}`` (§3.3.2, eq. 4): ``e_pq = cos(F_k(x_p), F_k(x_q))``; the graph is fully
  connected and undirected, so ``E`` is the upper triangle (``p < q``) of the cosine matrix, an
  edge vector of length ``n(n-1)/2`` (:func:`edges`).

The similarity of two graphs on the same probe (§3.4, eq. 5) is::

    s(G_i, G_j) = (1/n) Σ_m cos(v^i_m, v^j_m) + λ · Spearman(E_i, E_j)

(:func:`depara`). Layer selection (§3.5, eq. 6) picks ``k = argmax_k s(G^k_i, G^j_e)``: score every
cut of the source model against the reference graph (the target task's encoder, or the target
labels) and take the best. The paper's ``λ`` (§4.2, "Layer Transferability"): ``λ = 1`` when 10%
of the target data is available ("0.1-T"), ``λ = 10`` with only 1% ("0.01-T": accessibility, i.e.
the edge term, matters more when target data is scarce).

When the reference has no attribution maps (e.g. it is the probe's label structure,
:func:`label_edges`) only the edge term exists: :func:`depara_edges_only`.
"""

from __future__ import annotations

import numpy as np

from advisor.numeric.checks import EstimatorInputError, as_labels, as_matrix, check_same_rows, unit_rows

__all__ = ["edges", "label_edges", "depara", "depara_edges_only", "LAMBDA_10PCT", "LAMBDA_1PCT"]

# The paper's trade-off values (§4.2): 10% of the target data -> 1, 1% -> 10.
LAMBDA_10PCT = 1.0
LAMBDA_1PCT = 10.0


# The node similarity and the full graph need this many images (the edges alone: 2, Spearman: 3).
MIN_IMAGES = 4


def edges(features) -> np.ndarray:
    """DEPARA edges (eq. 4): cosine similarities between all pairs of probe images.

    ``features``: ``[N, D]`` (N >= 2), one row per image (a cut's pooled features; any real dtype,
    float64 inside). Returns
    ``float64[N(N-1)/2]``: the strict upper triangle (``p < q``, row-major, as
    ``np.triu_indices(N, k=1)``) of the symmetric matrix ``cos(F(x_p), F(x_q))``. The diagonal is
    left out (always 1) and so is the lower triangle (the graph is undirected). A zero row has
    cosine 0 with everything. Invariant to rescaling ``features``. Raises
    :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input :func:`advisor.numeric.checks.as_matrix` refuses.
    """
    u = unit_rows(as_matrix(features, "features", min_rows=2))
    iu = np.triu_indices(u.shape[0], k=1)
    return np.clip(u @ u.T, -1.0, 1.0)[iu]


def label_edges(labels) -> np.ndarray:
    """The probe's label structure as a DEPARA edge vector: ``1.0`` where images ``p < q`` share a
    class, ``0.0`` otherwise; ``float64[N(N-1)/2]`` in the same order as :func:`edges`.

    This is the ideal target-side graph when the target task is classification on the probe's
    labels (same-class images maximally related): it can stand in for the reference graph in
    :func:`depara_edges_only`. ``labels``: ``[N]``, N >= 2, any values (each distinct value is a
    class); :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) otherwise.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise EstimatorInputError(f"labels must be 1-D [N], got shape {y.shape}")
    if y.shape[0] < 2:
        raise EstimatorInputError(f"labels has N = {y.shape[0]}; at least 2 are needed")
    y, _ = as_labels(y, y.shape[0])
    iu = np.triu_indices(y.shape[0], k=1)
    return (y[:, None] == y[None, :])[iu].astype(np.float64)


def _spearman(ea: np.ndarray, eb: np.ndarray, names: tuple[str, str]) -> float:
    """Spearman correlation of two edge vectors (eq. 5, second term).

    The paper writes the no-ties formula ``1 - 6 Σ d_k² / (n³ - n)``; ``scipy.stats.spearmanr``
    (Pearson correlation of average ranks) equals it without ties and handles ties correctly,
    which matters for a label graph (only 0s and 1s).
    """
    from scipy.stats import spearmanr

    if ea.shape != eb.shape:
        raise EstimatorInputError(f"edge vectors differ in length: {names[0]} {ea.shape}, {names[1]} {eb.shape} (same probe images?)")
    if ea.size < 2:
        raise EstimatorInputError(f"need at least 2 edges (3 probe images) for a Spearman correlation, got {ea.size}")
    for name, e in zip(names, (ea, eb)):
        if np.ptp(e) == 0:
            raise EstimatorInputError(
                f"the {name} edge vector is constant (all {e[0]:.6g}): Spearman correlation is undefined "
                "(all probe images equally related, e.g. a single class or collapsed features)"
            )
    rho = float(spearmanr(ea, eb).statistic)
    if not np.isfinite(rho):
        raise EstimatorInputError(f"Spearman correlation of the {names[0]} and {names[1]} edges is undefined ({rho})")
    return rho


def _nodes_similarity(nodes_a, nodes_b) -> float:
    va = as_matrix(nodes_a, "nodes_a", min_rows=MIN_IMAGES)
    vb = as_matrix(nodes_b, "nodes_b", min_rows=MIN_IMAGES)
    if va.shape != vb.shape:
        raise EstimatorInputError(
            f"nodes_a and nodes_b must have the same shape [N, P] (same images, same attribution grid): "
            f"{va.shape} vs {vb.shape}"
        )
    return float(np.mean(np.sum(unit_rows(va) * unit_rows(vb), axis=1)))


def depara(nodes_a, feats_a, nodes_b, feats_b, lam: float = LAMBDA_10PCT) -> dict:
    """DEPARA similarity of two graphs on the same N probe images (eq. 5).

    * ``nodes_a``, ``nodes_b``: ``[N, P]`` attribution vectors (eq. 3; e.g. from
      :func:`advisor.ranking.attributions.probe_attributions`, ``P = grid²``), row ``m`` = image ``m``.
    * ``feats_a`` ``[N, Da]``, ``feats_b`` ``[N, Db]``: the features the edges are built from
      (eq. 4); ``Da`` and ``Db`` may differ.
    * ``lam``: the trade-off ``λ``. The paper's values (§4.2): ``1.0`` with 10% of the target data
      (the default, :data:`LAMBDA_10PCT`), ``10.0`` with 1% (:data:`LAMBDA_1PCT`).

    Returns ``{"nodes": (1/N) Σ_m cos(v^a_m, v^b_m), "edges": Spearman(E_a, E_b),
    "score": nodes + lam * edges}`` (floats). A zero attribution vector has cosine 0 (not NaN).
    Both terms lie in [-1, 1], so a graph compared with itself scores ``1 + λ`` (when no
    attribution vector is zero). For layer selection (eq. 6) take the cut with the highest score.
    Any real dtype (float64 inside); invariant to rescaling any of the four arrays.
    Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) on mismatched shapes,
    non-numeric or non-finite values, fewer than 4 images, or a constant edge vector (Spearman
    undefined: every image equally related, e.g. identical rows).
    """
    lam = float(lam)
    nodes = _nodes_similarity(nodes_a, nodes_b)
    fa = as_matrix(feats_a, "feats_a", min_rows=MIN_IMAGES)
    fb = as_matrix(feats_b, "feats_b", min_rows=MIN_IMAGES)
    check_same_rows({"nodes": nodes_a, "feats_a": fa, "feats_b": fb}, "images")
    rho = _spearman(edges(fa), edges(fb), ("feats_a", "feats_b"))
    return {"nodes": nodes, "edges": rho, "score": nodes + lam * rho}


def depara_edges_only(feats_a, feats_b_or_label_graph, lam: float = LAMBDA_10PCT) -> dict:
    """The edge term of eq. 5 alone, for a reference without attribution maps.

    When the reference graph has no nodes -- e.g. it is the probe's label structure
    (:func:`label_edges`) rather than a network -- the node term of eq. 5 cannot be computed and
    only ``score = lam * Spearman(E_a, E_ref)`` remains. Across the cuts of one model (eq. 6) the
    ranking is then the same for every ``lam > 0``; ``lam`` only puts the number on the same scale
    as the edge part of :func:`depara` scores.

    * ``feats_a``: ``[N, D]`` features of the candidate cut (edges by eq. 4).
    * ``feats_b_or_label_graph``: either a 2-D ``[N, D']`` reference feature matrix (its edges are
      computed by eq. 4), or a 1-D reference edge vector of length ``N(N-1)/2`` in
      :func:`edges` order, e.g. ``label_edges(labels)``.

    Returns ``{"nodes": None, "edges": rho, "score": lam * rho}``. Any real dtype (float64
    inside); invariant to rescaling either input. Raises :class:`advisor.numeric.checks.EstimatorInputError`
    (a ValueError) on mismatched shapes, non-numeric or non-finite values, fewer than 4 images, or
    a constant edge vector.
    """
    lam = float(lam)
    fa = as_matrix(feats_a, "feats_a", min_rows=MIN_IMAGES)
    ea = edges(fa)
    ref = np.asarray(feats_b_or_label_graph)
    if ref.ndim == 2:
        fb = as_matrix(ref, "feats_b", min_rows=MIN_IMAGES)
        check_same_rows({"feats_a": fa, "feats_b": fb}, "images")
        eb = edges(fb)
    elif ref.ndim == 1:
        eb = as_matrix(ref[:, None], "the reference edge vector", min_rows=1)[:, 0]
        if eb.shape[0] != ea.shape[0]:
            n = fa.shape[0]
            raise EstimatorInputError(f"the reference edge vector has length {eb.shape[0]}; N = {n} images need N(N-1)/2 = {ea.shape[0]}")
    else:
        raise EstimatorInputError(f"the reference must be [N, D] features or an [N(N-1)/2] edge vector, got shape {ref.shape}")
    rho = _spearman(ea, eb, ("feats_a", "reference"))
    return {"nodes": None, "edges": rho, "score": lam * rho}
