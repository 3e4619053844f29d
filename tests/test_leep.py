"""LEEP, NCE and N-LEEP (plugins/leep.py): hand-worked examples and properties."""

import math

import numpy as np
import pytest
from advisor.plugins.leep import leep, leep_from_probabilities, nce, nleep

from advisor.errors import EstimatorSkipped
from advisor.estimators import get_estimator, safe_score


def _task(n=400, c=4, cs=20, seed=0, signal=3.0):
    """Labels, source logits that carry label information, and features with class structure."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    logits = rng.standard_normal((n, cs))
    logits[np.arange(n), y * (cs // c)] += signal  # source class 5c fires for target class c
    x = rng.standard_normal((n, 8))
    x[:, :c] += 4.0 * np.eye(c)[y]
    return x, y, logits


def test_leep_hand_computed_example():
    # theta_1 = (0.8, 0.2) with y = 0, theta_2 = (0.4, 0.6) with y = 1, N = 2.
    # Joint P(y, z) = 1/2 [theta rows of class y]: P(0, .) = (0.4, 0.1), P(1, .) = (0.2, 0.3);
    # P(z) = (0.6, 0.4); P(0|0) = 2/3, P(0|1) = 1/4, P(1|0) = 1/3, P(1|1) = 3/4.
    # EEP_1 = 2/3 * 0.8 + 1/4 * 0.2 = 7/12;  EEP_2 = 1/3 * 0.4 + 3/4 * 0.6 = 7/12.
    theta = np.array([[0.8, 0.2], [0.4, 0.6]])
    y = np.array([0, 1])
    expected = math.log(7 / 12)
    assert leep_from_probabilities(theta, y) == pytest.approx(expected, abs=1e-12)
    # softmax(log theta) = theta, and a per-row shift of the logits changes nothing
    assert leep(np.log(theta), y) == pytest.approx(expected, abs=1e-12)
    assert leep(np.log(theta) + np.array([[5.0], [-3.0]]), y) == pytest.approx(expected, abs=1e-12)


def test_leep_is_zero_when_the_source_head_names_the_target_class():
    y = np.arange(30) % 3
    assert leep(60.0 * np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-12)


def test_nce_hand_computed_example():
    # z = argmax = (0, 0, 1, 1, 1), y = (0, 1, 1, 1, 0). P(z=0) = 2/5 with y split 1:1, so
    # H(Y|z=0) = ln 2; P(z=1) = 3/5 with y split 1:2, so H(Y|z=1) = -(1/3 ln 1/3 + 2/3 ln 2/3).
    z = np.array([0, 0, 1, 1, 1])
    y = np.array([0, 1, 1, 1, 0])
    h = 2 / 5 * math.log(2) + 3 / 5 * -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3))
    logits = np.eye(7)[z * 5] + 0.1  # 7 source classes, only 0 and 5 are ever the argmax
    assert nce(logits, y) == pytest.approx(-h, abs=1e-12)
    assert nce(logits, np.zeros(5)) == 0.0  # one target class: nothing left to know


def test_nleep_hand_computed_example():
    # Two tight clusters the 2-component mixture separates exactly (posteriors 0/1).
    # Cluster A (x ~ 0) has labels 0,0,0,1 and cluster B (x ~ 10) has 1,1,1,0, so
    # P(0|A) = P(1|B) = 3/4 and P(1|A) = P(0|B) = 1/4: six samples get 3/4, two get 1/4.
    rng = np.random.default_rng(0)
    x = np.r_[np.zeros(4), np.full(4, 10.0)] + 0.01 * rng.standard_normal(8)
    features = np.c_[x, 1e-3 * rng.standard_normal(8)]  # 2nd column: < 20 % of the variance
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    expected = (6 * math.log(3 / 4) + 2 * math.log(1 / 4)) / 8
    assert nleep(features, y, n_components=2) == pytest.approx(expected, abs=1e-9)


def test_nleep_with_one_component_is_minus_label_entropy():
    # theta = 1 for everyone: P(y | v) = P(y), so N-LEEP = 1/N sum_i ln P(y_i) = sum_c p_c ln p_c.
    x, _, _ = _task()
    y = np.r_[np.zeros(100), np.ones(300)].astype(int)
    assert nleep(x, y, n_components=1) == pytest.approx(0.25 * math.log(0.25) + 0.75 * math.log(0.75), abs=1e-12)


@pytest.mark.parametrize("score", [
    lambda x, y, lg: leep(lg, y), lambda x, y, lg: nce(lg, y), lambda x, y, lg: nleep(x, y)], ids=["leep", "nce", "nleep"])
def test_separable_beats_shuffled_and_renaming_classes_changes_nothing(score):
    x, y, logits = _task()
    shuffled = np.random.default_rng(1).permutation(y)
    assert score(x, y, logits) > score(x, shuffled, logits) + 0.1
    renamed = np.array([7, 3, 11, 5])[y]
    assert score(x, renamed, logits) == pytest.approx(score(x, y, logits), abs=1e-10)


def test_permuting_source_classes_changes_nothing():
    _, y, logits = _task()
    perm = np.random.default_rng(2).permutation(logits.shape[1])
    assert leep(logits[:, perm], y) == pytest.approx(leep(logits, y), abs=1e-12)
    assert nce(logits[:, perm], y) == pytest.approx(nce(logits, y), abs=1e-12)


def test_nleep_is_deterministic():
    x, y, _ = _task()
    assert nleep(x, y) == nleep(x, y)


@pytest.mark.parametrize("name", ["leep", "nce"])
def test_headless_model_is_skipped_with_the_reason(name):
    est = get_estimator(name)
    assert est.needs == ("labels", "logits") and est.higher_is_better and est.plugin == "advisor.plugins.leep"
    x, y, logits = _task()
    with pytest.raises(EstimatorSkipped, match=f"{name} needs logits, which this model/probe lacks"):
        est.score(x, y, logits=None)
    assert safe_score(est, x, y, logits=None) == (None, f"skipped: {name} needs logits, which this model/probe lacks")
    value, error = safe_score(est, x, y, logits=logits)
    assert error is None and value == pytest.approx(leep(logits, y) if name == "leep" else nce(logits, y))


def test_nleep_needs_only_labels():
    est = get_estimator("nleep")
    assert est.needs == ("labels",)
    x, y, _ = _task()
    assert est.score(x, y, logits=None) == pytest.approx(nleep(x, y))
