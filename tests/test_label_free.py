"""Label-free ranking: on an unlabelled probe, `advisor rank --reference model:<id>` uses the
label-free CKA and Information Imbalance by default; when nothing can run, exit 2 with the recipe."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import assert_one_line_error, file_id

import advisor
import advisor.store.repro
from advisor.errors import AdvisorError
from advisor.data.label_free import LABEL_FREE_ESTIMATORS, check_scored


@pytest.fixture
def flat(tmp_path):
    """A flat folder of images: no class sub-folders, so no labels."""
    from PIL import Image

    d = tmp_path / "flat"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(d / f"img_{i:02d}.png")
    return d


@pytest.fixture
def ids(tiny_weights):
    return {"resnet": file_id(tiny_weights["test_resnet"], "test_resnet"),
            "effnet": file_id(tiny_weights["test_efficientnet"], "test_efficientnet")}


def test_unlabelled_probe_without_reference_exits_2_with_the_recipe(run_cli, flat, ids, advisor_home):
    from advisor.ranking.advisor_score import load_spec

    first = load_spec().members[0]  # the default's estimators are named, whichever the benchmark chose
    line = assert_one_line_error(run_cli("rank", str(flat), "--models", ids["resnet"], "--img-size", "32"),
                                 "unlabelled", f"{first} needs a --reference", "--reference model:<id>", home=advisor_home)
    assert "label the images" in line


def test_unlabelled_probe_with_a_model_reference_ranks_label_free_by_default(run_cli, flat, ids):
    code, out, err = run_cli("rank", str(flat), "--models", ids["effnet"], "--reference", f"model:{ids['resnet']}",
                             "--img-size", "32", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["estimator"] for r in rows] == list(LABEL_FREE_ESTIMATORS)
    assert all(r["score"] is not None and r["rank"] == 1 for r in rows)
    # the API does the same
    res = advisor.rank(str(flat), [ids["effnet"]], reference=f"model:{ids['resnet']}", img_size=32)
    assert res.estimator == "cka" and res.best["score"] == rows[0]["score"] and res.probe.labels is None


def test_labelled_estimators_on_an_unlabelled_probe_say_what_to_use_instead(run_cli, flat, ids, advisor_home):
    assert_one_line_error(run_cli("rank", str(flat), "--models", ids["effnet"], "--reference", f"model:{ids['resnet']}",
                                  "-e", "logme", "--img-size", "32"),
                          "logme needs labels", "-e cka -e ii", home=advisor_home)


def test_layers_on_an_unlabelled_probe(run_cli, flat, ids, advisor_home):
    assert_one_line_error(run_cli("layers", ids["effnet"], str(flat), "--img-size", "32"),
                          "unlabelled", "--reference model:<id>", home=advisor_home)
    code, out, err = run_cli("layers", ids["effnet"], str(flat), "--reference", f"model:{ids['resnet']}", "-e", "cka", "-e", "ii",
                             "--img-size", "32", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["recommendation"]["cut"] and all(c["cka"] is not None for c in data["cuts"])
    assert set(data["weights"]) == {ids["effnet"], ids["resnet"]}  # the reference model's weights are recorded too


def test_nothing_scored_on_any_model_exits_2(run_cli, image_folder, ids):
    """depara-nodes finds out only while scoring that the labels reference has no attributions:
    every row skipped is exit 2 with the reason and what to choose, not an empty table and exit 0."""
    code, out, err = run_cli("rank", str(image_folder), "--models", ids["resnet"], "-e", "depara-nodes", "--img-size", "32")
    last = err.strip().splitlines()[-1]
    assert code == 2 and out == "" and "Traceback" not in err
    assert last.startswith("error: no estimator could score any model: depara-nodes needs reference attributions") and "--reference model:<id>" in last
    assert advisor.store.repro.list_runs(1)[0]["status"].startswith("failed")


def test_every_estimator_skipped_everywhere_is_an_error_not_an_empty_table():
    skipped = [{"model": "m", "cut": c, "estimator": "leep", "score": None, "error": "skipped: leep needs logits, which this model/probe lacks"}
               for c in ("a", "b")]
    with pytest.raises(AdvisorError, match="no estimator could score any model: leep needs logits"):
        check_scored(skipped)
    check_scored(skipped + [{"model": "m", "cut": "a", "estimator": "knn", "score": 0.5, "error": None}])  # one score: fine
    check_scored([{**skipped[0], "error": "ValueError: boom"}])  # failures are shown per row, not raised here
