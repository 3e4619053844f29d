"""The Python API in the manner of scikit-learn / timm: RankResult (best, top, len, repr, to_frame),
callable estimators, advisor.validation.validate / layers / domain as functions, and plugin origins as
"package version" everywhere."""

from __future__ import annotations

import inspect
import json
import sys

import numpy as np
import pytest
from conftest import blobs, file_id

import advisor
from advisor.errors import AdvisorError, EstimatorSkipped
from advisor.data.probe import Probe
from advisor.ranking.ranking import RankResult


def _row(model, est, score, rank, cut="pre_logits", hib=True):
    return {"model": model, "estimator": est, "cut": cut if score is not None else None, "score": score, "rank": rank,
            "higher_is_better": hib, "error": None if score is not None else "failed", "cut_scores": {cut: score}}


@pytest.fixture
def result():
    probe = Probe(spec="builtin:digits", items=tuple(range(12)), labels=np.arange(12) % 3, class_names=("a", "b", "c"), hash="h")
    rows = [_row("m1", "logme", 0.9, 1), _row("m3", "logme", 0.1, 3), _row("m2", "logme", 0.5, 2), _row("bad", "logme", None, None),
            _row("m2", "knn", 0.8, 1), _row("m1", "knn", 0.7, 2), _row("m3", "knn", 0.6, 3), _row("bad", "knn", None, None)]
    return RankResult(rows=rows, cut_scores=[], probe=probe)


def test_rank_result_reads_the_ranking_of_the_first_estimator(result):
    assert result.estimator == "logme"
    assert result.best["model"] == "m1" and result.best["cut"] == "pre_logits" and result.best["score"] == 0.9
    assert [r["model"] for r in result.top(2)] == ["m1", "m2"]
    assert [r["model"] for r in result.top(10)] == ["m1", "m2", "m3"]  # unranked (failed) models are left out
    assert result.top(0) == []
    assert len(result) == 4  # candidate models, ranked or not
    text = repr(result)
    assert text.startswith("RankResult(") and "\n" not in text and len(text) < 160
    assert "4 models" in text and "logme" in text and "m1@pre_logits" in text and "builtin:digits" in text


def test_empty_rank_result_is_falsy_and_has_no_best():
    probe = Probe(spec="x", items=(), labels=None, class_names=None, hash="h")
    empty = RankResult(rows=[], cut_scores=[], probe=probe)
    assert empty.best is None and empty.top(3) == [] and len(empty) == 0 and "best=none" in repr(empty)


def test_to_frame_without_pandas_is_one_advisor_error(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas -> ImportError
    with pytest.raises(AdvisorError) as info:
        result.to_frame()
    assert "pandas" in str(info.value) and "\n" not in str(info.value) and "pip install pandas" in info.value.hint


def test_to_frame_with_pandas(result):
    pd = pytest.importorskip("pandas")
    frame = result.to_frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 8 and "cut_scores" not in frame.columns


def test_rank_returns_a_rank_result_with_the_same_rows_as_json(image_folder, tiny_weights, run_cli):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    res = advisor.rank(str(image_folder), [model], ["knn"], img_size=32)
    assert isinstance(res, advisor.RankResult) and len(res) == 1 and res.best["model"] == model
    assert res.top(1) == [res.best] and res.run_id
    code, out, err = run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32", "--json")
    assert code == 0, err
    assert [(r["model"], r["cut"], r["score"]) for r in json.loads(out)] == [(r["model"], r["cut"], r["score"]) for r in res.rows]


def test_estimators_are_callable_with_the_documented_signature():
    x, y = blobs(60, 8, 3, sep=4.0)
    knn = advisor.get_estimator("knn")
    assert knn(x, y) == knn.score(x, y) and 0.0 <= knn(x, y) <= 1.0
    params = inspect.signature(advisor.Estimator.__call__).parameters
    assert list(params)[:3] == ["self", "features", "labels"] and params["labels"].default is None
    with pytest.raises(EstimatorSkipped, match="needs labels"):
        knn(x)  # the inputs it needs are checked first
    cka = advisor.get_estimator("cka")
    assert cka(x, reference=x) == pytest.approx(1.0)


def test_validate_layers_and_domain_are_functions_and_the_packages_still_work():
    for fn in (advisor.rank, advisor.layers, advisor.validate, advisor.domain):
        assert callable(fn)
    assert {"spec", "top"} <= set(inspect.signature(advisor.validate).parameters)
    assert "source" in inspect.signature(advisor.domain).parameters
    assert {"validate", "layers", "domain", "rank", "RankResult"} <= set(advisor.__all__)
    # advisor.domain is the callable package: its parts stay importable
    from advisor.domain import analyse

    assert advisor.domain.analyse is analyse
    with pytest.raises(AdvisorError, match="nothing to validate"):
        advisor.validate("builtin:digits")


def test_domain_as_a_function_returns_the_forecast():
    out = advisor.domain("builtin:digits", max_images=40)
    assert out["probe"] == "builtin:digits" and out["n_features_images"] == 40
    assert {"G", "W", "N", "forecast", "advice"} <= set(out)


def test_plugin_origins_read_package_version_everywhere(run_cli):
    version = f"advisor {advisor.__version__}"
    for est in advisor.list_estimators():
        assert est.origin == version and est.plugin.startswith("advisor.plugins.")
    code, out, err = run_cli("plugins", "--json")
    assert code == 0, err
    listing = json.loads(out)
    plugin_origin = {p["name"]: p["origin"] for p in listing["plugins"]}
    for e in listing["estimators"]:
        assert e["origin"] == plugin_origin[e["plugin"]] == version
    assert all(p["builtin"] for p in listing["plugins"])
    assert all(a["origin"] == version for a in listing["architectures"])
    code, out, _ = run_cli("plugins")
    assert version in out and "builtin" not in out.split("Plugins")[-1]
