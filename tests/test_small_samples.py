"""Honest output on small samples: what --max-images actually took, no "± 0.0000" for one run,
warnings for a small held-out part, a τ over fewer than 4 models and a --top larger than the ranking."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import file_id

import advisor
from advisor.data.probe import Probe
from advisor.data.small_samples import held_out_note, spread, tau_note, taken_note, top_note


@pytest.fixture
def ids(tiny_weights):
    return {"resnet": file_id(tiny_weights["test_resnet"], "test_resnet"),
            "effnet": file_id(tiny_weights["test_efficientnet"], "test_efficientnet")}


def _probe(labels, classes):
    labels = np.asarray(labels)
    return Probe(spec="p", items=tuple(range(len(labels))), labels=labels, class_names=tuple(classes), hash="h")


def test_notes_say_when_and_only_when_the_sample_is_small():
    seven = _probe(np.arange(7), "abcdefg")
    assert "--max-images 5 took 7 images for the 7 classes" in taken_note(5, seven)
    assert taken_note(7, seven) is None and taken_note(None, seven) is None
    assert "4 in its smallest class" in held_out_note(_probe([0] * 4 + [1] * 9, "ab"))
    assert held_out_note(_probe([0] * 5 + [1] * 5, "ab")) is None
    assert "over 3 models, fewer than 4" in tau_note(3, ["knn"]) and tau_note(4, ["knn"]) is None
    assert "ranked only 2 model(s)" in top_note(3, 2, "x") and top_note(2, 2, "x") is None
    assert spread(0.0, 1) is None and spread(0.01, 2) == 0.01


def test_max_images_below_the_classes_says_what_was_taken(run_cli, ids):
    """builtin:digits has 10 classes: --max-images 5 takes one image per class, 10, and says so."""
    code, out, err = run_cli("rank", "builtin:digits", "--models", ids["resnet"], "-e", "knn", "--img-size", "32",
                             "--max-images", "5", "--json")
    assert code == 0, err
    assert "warning: --max-images 5 took 10 images for the 10 classes" in err
    assert json.loads(out)[0]["n_images"] == 10
    res = advisor.rank("builtin:digits", [ids["resnet"]], ["knn"], img_size=32, max_images=5, progress=advisor.ranking.progress.Progress(warn=lambda m: None))
    assert any("took 10 images" in w for w in res.warnings)  # the library keeps it; it printed nothing itself
    code, _, err = run_cli("rank", "builtin:digits", "--models", ids["resnet"], "-e", "knn", "--img-size", "32", "--max-images", "20")
    assert code == 0 and "took" not in err


def test_validate_one_run_small_held_out_and_few_models(run_cli, image_folder, ids):
    """image_folder: 3 classes x 8 images -> a 7-image held-out part (2-3 per class); two models."""
    code, out, err = run_cli("validate", str(image_folder), "--models", f"{ids['resnet']},{ids['effnet']}", "--cuts", "pre_logits",
                             "--epochs", "1", "-e", "knn")
    assert code == 0, err
    assert "± 0.0000" not in out and "± –" in out  # one run: no spread to show
    assert "warning: the held-out part has 7 images, 2 in its smallest class" in err
    assert "warning: the weighted τ across models (knn) is over 2 models, fewer than 4" in err
    code, out, err = run_cli("validate", str(image_folder), "--models", ids["resnet"], "--cuts", "pre_logits", "--epochs", "1",
                             "-e", "knn", "--json")
    data = json.loads(out)
    assert code == 0 and any("held-out part" in w for w in data["warnings"])


def test_two_repeats_show_the_spread(run_cli, image_folder, ids):
    code, out, err = run_cli("validate", str(image_folder), "--models", ids["resnet"], "--cuts", "pre_logits", "--epochs", "1",
                             "--repeats", "2", "-e", "knn")
    assert code == 0, err
    assert "± –" not in out and "2/2" in out


def test_layers_validate_single_run_has_no_spread(run_cli, image_folder, ids):
    code, out, err = run_cli("layers", ids["resnet"], str(image_folder), "-e", "knn", "--img-size", "32", "--validate",
                             "--epochs", "1", "--json")
    assert code == 0, err
    measured = json.loads(out)["measured"]
    assert measured and all(m["std"] is None and m["runs"] == 1 for m in measured.values())


def test_validate_top_says_when_fewer_models_were_ranked(run_cli, image_folder, ids):
    assert run_cli("rank", str(image_folder), "--models", ids["resnet"], "-e", "knn", "--img-size", "32")[0] == 0
    code, out, err = run_cli("validate", str(image_folder), "--top", "3", "--cuts", "pre_logits", "--epochs", "1", "-e", "knn", "--json")
    assert code == 0, err
    assert "warning: --top 3: the last `advisor rank`" in err and "ranked only 1 model(s); validating those 1" in err
    assert {r["model"] for r in json.loads(out)["runs"]} == {ids["resnet"]}
