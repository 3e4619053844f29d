"""All published estimators (plugins leep, hscore, sfda, gbc, transrate, parc, linear) together:
finite on rank-deficient features, registered as built-ins and listed by `advisor plugins`."""

import json

import numpy as np
import pytest

import advisor

# name -> plugin module; logits marks the estimators that read the source head instead of the features
PUBLISHED = {
    "leep": "leep", "nce": "leep", "nleep": "leep", "hscore": "hscore", "hscore-shrinkage": "hscore",
    "sfda": "sfda", "gbc-diagonal": "gbc", "gbc-spherical": "gbc", "transrate": "transrate",
    "parc": "parc", "linear": "linear",
}
NEED_LOGITS = {"leep", "nce"}


def _task(n=40, d=16, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.standard_normal((n, d))
    x[:, :c] += 3.0 * np.eye(c)[y]
    return x, y


DEGENERATE = {
    "d>n": lambda x: np.random.default_rng(1).standard_normal((len(x), 60)),
    "d>>n": lambda x: np.random.default_rng(2).standard_normal((len(x), 3000)),
    "duplicated": lambda x: np.hstack([x, x, x[:, :3]]),
    "constant": lambda x: np.hstack([x, np.ones((len(x), 3)), np.zeros((len(x), 2))]),
    "rank1": lambda x: np.outer(np.arange(len(x)) % 3 + 1.0, np.ones(x.shape[1])),
    "ones": lambda x: np.ones_like(x),
    "zeros": lambda x: np.zeros_like(x),
    "float32": lambda x: x.astype(np.float32),
    "huge_scale": lambda x: 1e6 * x,
}


@pytest.mark.parametrize("case", list(DEGENERATE))
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_finite_on_rank_deficient_features(name, case):
    x, y = _task()
    features = DEGENERATE[case](x)
    # the logits get the same treatment (a constant head, duplicated classes, ...)
    logits = DEGENERATE[case](x) if name in NEED_LOGITS else None
    value, error = advisor.estimators.safe_score(advisor.get_estimator(name), features, y, logits=logits)
    assert error is None and np.isfinite(value), (name, case, error)


# estimators whose numbers changed since their first release (cached scores are keyed by version):
# sfda 2 = held-out posteriors and Ledoit-Wolf-floored shrinkage; gbc/parc 2 = exact PCA
VERSIONS = {"sfda": "2", "gbc-diagonal": "2", "gbc-spherical": "2", "parc": "2"}


def test_all_registered_as_builtins_with_their_contract():
    found = {e.name: e for e in advisor.list_estimators()}
    for name, module in PUBLISHED.items():
        est = found[name]
        assert est.plugin == f"advisor.plugins.{module}" and est.version == VERSIONS.get(name, "1") and est.higher_is_better
        assert est.needs == (("labels", "logits") if name in NEED_LOGITS else ("labels",))
        assert est.description


def test_advisor_plugins_lists_them(run_cli):
    code, out, err = run_cli("plugins", "--json")
    assert code == 0, err
    listing = json.loads(out)
    rows = {e["name"]: e for e in listing["estimators"]}
    for name, module in PUBLISHED.items():
        assert rows[name]["plugin"] == f"advisor.plugins.{module}" and rows[name]["version"] == VERSIONS.get(name, "1")
        assert rows[name]["needs"] == (["labels", "logits"] if name in NEED_LOGITS else ["labels"])
    builtin = {p["name"] for p in listing["plugins"] if p["builtin"]}
    assert {f"advisor.plugins.{m}" for m in PUBLISHED.values()} <= builtin
    code, out, _ = run_cli("plugins")
    assert code == 0 and all(name in out for name in PUBLISHED)


@pytest.mark.parametrize("name", sorted(NEED_LOGITS))
def test_logit_estimators_skip_headless_models(name):
    x, y = _task()
    value, error = advisor.estimators.safe_score(advisor.get_estimator(name), x, y, logits=None)
    assert value is None and error == f"skipped: {name} needs logits, which this model/probe lacks"


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_unlabelled_probes_are_skipped(name):
    x, _ = _task()
    value, error = advisor.estimators.safe_score(advisor.get_estimator(name), x, None, logits=x)
    assert value is None and error == f"skipped: {name} needs labels; the probe has none"
