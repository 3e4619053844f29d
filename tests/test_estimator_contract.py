"""The estimator contract (issue 15), checked on every registered estimator.

On degenerate features -- more dimensions than images, constant columns, duplicated rows, all rows
identical, two images per class, float32, features scaled by 1e6 -- an estimator returns a finite
float or raises the documented error (:class:`advisor.numeric.checks.EstimatorInputError`, or :class:`advisor.EstimatorSkipped`
for an absent input): never NaN or inf, another exception, or a warning. float32 input scores the
same as the same numbers in float64, and where the estimator's docstring says it is invariant to
rescaling the features, multiplying them by 1e6 changes nothing beyond rounding; where it says
constant columns do not count, appending some changes nothing either.

What each estimator documents is data (``CONTRACT``), not code; an estimator missing from it (a
third-party plugin's) is held to the common part only.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numpy as np
import pytest

import advisor
from advisor.numeric.checks import EstimatorInputError
from advisor.errors import EstimatorSkipped
from advisor.estimators import list_estimators

N, C = 48, 4  # 12 images per class: enough for every estimator's folds
RAISES = "raises EstimatorInputError"


class Documented(NamedTuple):
    """What an estimator's docstring states, checked below."""

    scale_free: bool = False  # multiplying the features by 1e6 changes nothing (beyond rounding)
    constant_columns_free: bool = False  # appending constant columns changes nothing
    identical_rows: object = None  # every row identical: RAISES, the documented score, or None (not documented)


# Not scale-free: logme (absolute EPS guards), transrate (absolute distortion eps), gbc-* (absolute
# variance floor 1e-4), nleep (the mixture's absolute reg_covar), sfda (the paper's exp(-5 sigma_max)
# shrinkage). Constant columns count for logme (a bias feature), knn and depara's edges (cosines of
# uncentred features), hscore-shrinkage and sfda (the shrinkage target's trace / D), gbc-spherical
# (the mean variance); parc keeps min(32, N, D) PCA components, and the ones past the rank -- noise,
# which the standardisation blows up to unit variance -- grow with D. leep and nce read the logits only.
CONTRACT = {
    "cka": Documented(True, True, RAISES),
    "cka-debiased": Documented(True, True, RAISES),
    "cka-rbf": Documented(True, True, RAISES),
    "depara": Documented(True, False, RAISES),
    "depara-edges": Documented(True, False, RAISES),
    "depara-nodes": Documented(True, True, RAISES),
    "gbc-diagonal": Documented(False, False, -C * (C - 1.0)),  # identical class Gaussians: every BC is 1
    "gbc-spherical": Documented(False, False, -C * (C - 1.0)),
    "hscore": Documented(True, True, 0.0),
    "hscore-shrinkage": Documented(True, False, 0.0),
    "ii": Documented(True, True, RAISES),
    "ii-reverse": Documented(True, True, RAISES),
    "knn": Documented(True, False),
    "leep": Documented(True, True),
    "linear": Documented(True, True),
    "logme": Documented(False, False),
    "nce": Documented(True, True),
    "nleep": Documented(False, False, math.log(1.0 / C)),  # one mixture component: sum_c P(c) log P(c), balanced classes
    "parc": Documented(True, False, 0.0),
    "sfda": Documented(False, False),
    "transrate": Documented(False, True, 0.0),
}

_rng = np.random.default_rng(15)
LABELS = np.arange(N) % C
BASE = _rng.standard_normal((N, 12)) + 2.0 * np.eye(C, 12)[LABELS]
WIDE = _rng.standard_normal((N, 300)) + 2.0 * np.eye(C, 300)[LABELS]
CASES = {
    "d>n": WIDE,
    # Means that are not the constant in floating point (48 x 0.1 does not average to 0.1 exactly):
    # plain centring leaves rounding noise, which an SVD relative to the largest value can take for signal.
    "constant columns": np.hstack([BASE, np.tile([0.1, 1234.5678, -3e3 / 7, 0.0], (N, 1))]),
    "duplicated rows": np.vstack([BASE[: N // 2], BASE[: N // 2]]),  # same labels: N // 2 is a multiple of C
    "identical rows": np.tile(BASE[:1], (N, 1)),
    "two images per class": BASE[: 2 * C],  # with the first 8 labels and rows of each input
    "float32": BASE.astype(np.float32),
    "scaled by 1e6": BASE * 1e6,
}
# What estimators may need besides the features (shapes as the runner passes them): the source
# head's logits [N, 10], a target model's reference features [N, 6] and both cuts' attributions [N, 16].
INPUTS = {
    "logits": _rng.standard_normal((N, 10)) + 3.0 * np.eye(C, 10)[LABELS],
    "reference": (_rng.standard_normal((N, 6)) + 2.0 * np.eye(C, 6)[LABELS]).astype(np.float32),
    "attributions": np.abs(_rng.standard_normal((N, 16))),
    "reference_attributions": np.abs(_rng.standard_normal((N, 16))),
}


def _frozen(a: np.ndarray) -> np.ndarray:
    """A read-only view, as the runner passes inputs: an estimator must not write into them."""
    view = a.view()
    view.flags.writeable = False
    return view


def _score(est, features: np.ndarray, case: str):
    """The estimator's finite score, or the documented exception it raised; fails on anything else."""
    n = len(features)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            value = est.score(_frozen(features), _frozen(LABELS[:n]), **{k: _frozen(v[:n]) for k, v in INPUTS.items()})
        except (EstimatorInputError, EstimatorSkipped) as exc:
            assert str(exc) and "\n" not in str(exc), f"{est.name} on {case}: an empty or multi-line reason {exc!r}"
            value = exc
    assert not caught, f"{est.name} on {case}: {len(caught)} warning(s), the first: {caught[0].category.__name__}: {caught[0].message}"
    if not isinstance(value, Exception):
        assert isinstance(value, float) and math.isfinite(value), f"{est.name} on {case} returned {value!r}"
    return value


@pytest.mark.parametrize("est", list_estimators(), ids=lambda e: e.name)
def test_estimator_contract(est):
    documented = CONTRACT.get(est.name, Documented())
    scores = {case: _score(est, features, case) for case, features in CASES.items()}

    if documented.identical_rows == RAISES:
        assert isinstance(scores["identical rows"], EstimatorInputError), (est.name, scores["identical rows"])
    elif documented.identical_rows is not None:
        assert scores["identical rows"] == pytest.approx(documented.identical_rows, abs=1e-9), est.name

    # float32 in, float64 inside: the same numbers in either dtype give the same score.
    as64 = _score(est, CASES["float32"].astype(np.float64), "float32 values in float64")
    assert type(scores["float32"]) is type(as64)
    if isinstance(as64, float):
        assert scores["float32"] == pytest.approx(as64, rel=1e-9, abs=1e-12), est.name

    if documented.scale_free or documented.constant_columns_free:
        plain = _score(est, BASE, "the plain features")
        assert isinstance(plain, float), (est.name, plain)
        if documented.scale_free:
            assert scores["scaled by 1e6"] == pytest.approx(plain, rel=1e-6, abs=1e-9), est.name
        if documented.constant_columns_free:
            assert scores["constant columns"] == pytest.approx(plain, rel=1e-6, abs=1e-9), est.name


def test_every_builtin_states_its_contract():
    builtins = {e.name for e in advisor.list_estimators() if e.fn.__module__.startswith("advisor.plugins.")}
    assert builtins == set(CONTRACT), "add the new estimator's documented behaviour to CONTRACT (or drop the stale entry)"
