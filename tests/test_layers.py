"""`advisor layers`: the recommendation rule, the profile on a tiny model, the CLI and the plot."""

import json

import pytest
from conftest import file_id

import advisor
from advisor.ranking.layers import recommend, tolerance

CUTS = ["a", "b", "c", "d"]


def test_argmax_when_the_target_is_large():
    rec = recommend(CUTS, [0.1, 0.9, 0.85, 0.2], True, examples_per_class=500, estimator="x")
    assert rec.cut == rec.argmax_cut == "b" and rec.tolerance == 0


def test_small_targets_prefer_the_deepest_cut_within_tolerance():
    scores = [0.1, 0.9, 0.85, 0.2]  # c is within 10 % of the range of the best
    assert recommend(CUTS, scores, True, examples_per_class=10).cut == "c"
    assert recommend(CUTS, scores, True, examples_per_class=60).cut == "b"  # 0.85 < 0.9 - 0.05 × 0.8
    assert recommend(CUTS, [0.1, 0.9, 0.87, 0.2], True, examples_per_class=60).cut == "c"


def test_lower_is_better_and_missing_scores():
    assert recommend(CUTS, [0.5, None, 0.1, 0.3], False, None).cut == "c"
    assert recommend(CUTS, [None] * 4, True, 10) is None


def test_tolerance_follows_target_size():
    assert tolerance(10) > tolerance(60) > tolerance(1000) == tolerance(None) == 0


@pytest.fixture
def tiny(tiny_weights):
    return file_id(tiny_weights["test_efficientnet"], "test_efficientnet")


def test_profile_with_the_model_itself_as_reference(image_folder, tiny):
    """DEPARA of a model with itself is 1 + λ at the reference cut (Song et al. 2020 eq. 5, λ = 1)."""
    prof = advisor.layers(tiny, str(image_folder), ["depara", "depara-nodes", "depara-edges", "cka"], img_size=32,
                          reference=f"model:{tiny}@blocks.3")
    at = prof.cuts.index("blocks.3")
    assert prof.scores["depara"][at] == pytest.approx(2.0)
    assert prof.scores["depara-nodes"][at] == pytest.approx(1.0) and prof.scores["depara-edges"][at] == pytest.approx(1.0)
    assert prof.recommendation.argmax_cut == "blocks.3"


def test_labels_reference_uses_depara_edges_only(image_folder, tiny):
    prof = advisor.layers(tiny, str(image_folder), ["depara", "depara-nodes"], img_size=32)
    assert all(s is not None for s in prof.scores["depara"])
    assert all(e.startswith("skipped") for e in prof.errors["depara-nodes"])


def test_cli_table_json_and_plot(run_cli, image_folder, tiny, tmp_path):
    png = tmp_path / "layers.png"
    code, out, err = run_cli("layers", tiny, str(image_folder), "-e", "cka", "-e", "ii", "--img-size", "32", "--plot", str(png))
    assert code == 0, err
    assert "freeze up to here" in out and "recommendation: freeze up to" in out
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    code, out, _ = run_cli("layers", tiny, str(image_folder), "-e", "cka", "--img-size", "32", "--json")
    data = json.loads(out)
    assert [c["cut"] for c in data["cuts"]][-1] == "pre_logits" and data["recommendation"]["cut"] in [c["cut"] for c in data["cuts"]]


def test_cli_bad_model_is_one_line(run_cli, image_folder):
    code, _, err = run_cli("layers", "file:/no/such.safetensors?arch=test_resnet", str(image_folder))
    assert code == 2 and len(err.strip().splitlines()) == 1
