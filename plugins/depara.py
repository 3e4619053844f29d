"""Estimators ``depara``, ``depara-nodes``, ``depara-edges``: DEPARA graph similarity (Song et al. 2020).

A cut's deep attribution graph has one node per probe image — the Gradient×Input attribution of
‖F_k(x)‖² (eq. 3; :mod:`advisor.ranking.attributions`) — and edges = cosine similarities of the cut's
features between images (eq. 4). Its similarity to the target reference's graph is
s = mean node cosine + λ · Spearman(edges) (eq. 5); the layer to transfer is argmax_k s (eq. 6).
``depara`` uses λ = 1 (the paper's value with 10 % of the target data; 10 with 1 %). With
``--reference labels`` there are no reference attributions: only the edge term exists (the
same-class graph), so ``depara`` = λ · Spearman and ``depara-nodes`` is skipped.
Formulas: :mod:`advisor.numeric.depara`.

Inputs: the cut's features [N, D], the reference [N, D'], attributions [N, P] (any real dtype, float64
inside), N >= 4. Raises :class:`advisor.numeric.checks.EstimatorInputError` (a ValueError) for input the kit
refuses, mismatched N or shapes, or a constant edge vector (all rows identical, a single class).
"""

from advisor.numeric.depara import LAMBDA_10PCT, depara, depara_edges_only
from advisor.errors import EstimatorSkipped
from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl


def _graph(features, reference, attributions, reference_attributions, lam=LAMBDA_10PCT) -> dict:
    if reference_attributions is None:
        return depara_edges_only(features, reference, lam=lam)
    return depara(attributions, features, reference_attributions, reference, lam=lam)


def _score(features, labels=None, *, reference=None, attributions=None, reference_attributions=None, **_):
    return _graph(features, reference, attributions, reference_attributions)["score"]


def _nodes(features, labels=None, *, reference=None, attributions=None, reference_attributions=None, **_):
    if reference_attributions is None:
        raise EstimatorSkipped("depara-nodes needs reference attributions; the labels reference has none (use --reference model:<id>)")
    return _graph(features, reference, attributions, reference_attributions)["nodes"]


def _edges(features, labels=None, *, reference=None, **_):
    return depara_edges_only(features, reference, lam=1.0)["edges"]


@hookimpl
def register_estimators(register):
    register(Estimator(name="depara", fn=_score, version="1", needs=("reference", "attributions"),
                       description="DEPARA (Song et al. 2020, eq. 5): node cosine + λ·edge Spearman vs the target reference, λ = 1"))
    register(Estimator(name="depara-nodes", fn=_nodes, version="1", needs=("reference", "attributions"),
                       description="DEPARA node term: mean cosine of Gradient×Input attributions (eq. 3)"))
    register(Estimator(name="depara-edges", fn=_edges, version="1", needs=("reference",),
                       description="DEPARA edge term: Spearman of the cosine-similarity graphs (eq. 4)"))
