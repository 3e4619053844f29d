"""Estimators ``cka``, ``cka-debiased``, ``cka-rbf``: similarity of a cut to the target reference.

Centred kernel alignment (Kornblith et al. 2019; Neyshabur et al. 2020 §3.2 and Gerace et al. 2023 App. C use it to compare
representations) between the candidate's features at a cut [N, D] and the target-side reference
representation [N, D'] (``--reference``: the one-hot labels, a target model's features, or a
scratch-trained network's). Higher means the cut already organises the probe the way the target
task does. Formulas: :func:`advisor.numeric.cka.cka`.

Inputs: the cut's features and the reference, float[N, D] and float[N, D'] of any real dtype (float64
inside), N >= 4. Invariant to rescaling either. Raises :class:`advisor.numeric.checks.EstimatorInputError`
(a ValueError) for input the kit refuses, a different N, or features that are all constant.
"""

from advisor.estimators import Estimator
from advisor.hookspecs import hookimpl
from advisor.numeric.cka import cka


def _linear(features, labels=None, *, reference=None, **_):
    return cka(features, reference, kernel="linear")


def _debiased(features, labels=None, *, reference=None, **_):
    return cka(features, reference, kernel="linear", debiased=True)


def _rbf(features, labels=None, *, reference=None, **_):
    # bandwidth = 0.5 × median pairwise distance, the setting Kornblith et al. report
    return cka(features, reference, kernel="rbf", threshold=0.5)


@hookimpl
def register_estimators(register):
    needs = ("reference",)
    register(Estimator(name="cka", fn=_linear, version="1", needs=needs,
                       description="linear CKA (Kornblith et al. 2019) between the cut and the target reference"))
    register(Estimator(name="cka-debiased", fn=_debiased, version="1", needs=needs,
                       description="linear CKA with the unbiased HSIC estimator (Song et al. 2012)"))
    register(Estimator(name="cka-rbf", fn=_rbf, version="1", needs=needs,
                       description="RBF-kernel CKA, bandwidth 0.5 × median distance"))
