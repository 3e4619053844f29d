"""advisor-score: the evidence-chosen default ordering of ``advisor rank`` (advisor.ranking.advisor_score)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import file_id

import advisor
from advisor.ranking import advisor_score as ascore
from advisor.errors import AdvisorError
from advisor.estimators import get_estimator


@pytest.fixture
def tiny_models(tiny_weights):
    return [file_id(tiny_weights["test_efficientnet"], "test_efficientnet"), file_id(tiny_weights["test_resnet"], "test_resnet")]


def _row(model, est, score, pre=None, hib=True, error=None, model_error=None, cut="blocks.1"):
    return {"model": model, "estimator": est, "score": score, "final_cut_score": pre, "higher_is_better": hib,
            "cut": cut if score is not None else None, "rank": None, "cut_scores": {}, "error": error, "model_error": model_error,
            "pretrain": "", "weights_from": "", "extract_seconds": 1.0, "score_seconds": 0.5, "cached": False, "n_images": 10}


def test_committed_spec_loads_and_names_cheap_installed_estimators():
    spec = ascore.load_spec()
    assert spec.kind in ascore.KINDS and spec.members and spec.evidence
    for name in spec.estimators:
        est = get_estimator(name)  # installed
        assert "attributions" not in est.needs  # the default never needs DEPARA's attribution pass


@pytest.mark.parametrize("text, needle", [
    ('kind = "mean"\nmembers = ["logme"]', "unknown kind"),
    ('kind = "single"\nmembers = []', "no members"),
    ('kind = "single"\nmembers = ["logme", "knn"]', "takes one member"),
    ('kind = "linear"\nmembers = ["logme", "knn"]\nweights = {logme = 1.0}', "one weight per member"),
    ('members = ["logme"]', "malformed"),
    ('kind = "single"\nmembers = ["logme"', "cannot be read"),
])
def test_bad_spec_is_one_clear_error(tmp_path, text, needle):
    p = tmp_path / "advisor_score.toml"
    p.write_text(text)
    with pytest.raises(AdvisorError) as e:
        ascore.load_spec(p)
    assert needle in e.value.message and "advisor bench" in e.value.hint or needle in e.value.message


def test_missing_spec_names_the_fix(tmp_path):
    with pytest.raises(AdvisorError) as e:
        ascore.load_spec(tmp_path / "nope.toml")
    assert "missing" in e.value.message and "advisor bench" in e.value.hint


def test_spec_round_trips_through_toml(tmp_path):
    spec = ascore.ScoreSpec("linear", ("logme", "knn@pre_logits"), {"logme": 0.75, "knn@pre_logits": -0.25}, 0.61, "a test")
    p = tmp_path / "s.toml"
    p.write_text(spec.to_toml())
    back = ascore.load_spec(p)
    assert back.kind == "linear" and back.members == spec.members and back.held_out_tau == pytest.approx(0.61)
    assert back.weights == pytest.approx(spec.weights) and back.estimators == ("logme", "knn")
    assert "+0.75·z(logme)" in back.describe()


def test_spec_from_choice_maps_each_kind():
    assert ascore.spec_from_choice(("logme",), None, 0.5, "e").kind == "single"
    assert ascore.spec_from_choice(("knn", "logme"), None, 0.5, "e").kind == "rank_average"
    lin = ascore.spec_from_choice(("learned",), {"logme": 0.5, "knn": 0.0, "nleep": -0.1}, 0.5, "e")
    assert lin.kind == "linear" and lin.members == ("logme", "nleep")  # a zero weight is no member


ROWS = [_row("a", "logme", 2.0, pre=1.0), _row("b", "logme", 1.0, pre=3.0), _row("c", "logme", 0.0, pre=2.0),
        _row("a", "ii", 0.1, pre=0.3, hib=False), _row("b", "ii", 0.3, pre=0.2, hib=False), _row("c", "ii", 0.2, pre=0.1, hib=False)]


def test_single_member_at_pre_logits_is_its_oriented_score():
    spec = ascore.ScoreSpec("single", ("ii@pre_logits",))
    rows = ascore.score_rows(ROWS, spec)
    assert [(r["model"], r["score"], r["rank"], r["cut"]) for r in rows] == [("c", -0.1, 1, "pre_logits"), ("b", -0.2, 2, "pre_logits"),
                                                                             ("a", -0.3, 3, "pre_logits")]


def test_rank_average_by_hand():
    # logme (best cut): a > b > c -> ranks 3, 2, 1; ii (lower is better, best cut): a 0.1 best -> a 3, c 2, b 1
    spec = ascore.ScoreSpec("rank_average", ("logme", "ii"))
    got = {r["model"]: r["score"] for r in ascore.score_rows(ROWS, spec)}
    assert got == {"a": 3.0, "b": 1.5, "c": 1.5}
    first = ascore.score_rows(ROWS, spec)[0]
    assert first["model"] == "a" and first["cut"] == "blocks.1" and first["members"] == {"logme": 2.0, "ii": -0.1}


def test_linear_combination_by_hand():
    spec = ascore.ScoreSpec("linear", ("logme", "logme@pre_logits"), {"logme": 1.0, "logme@pre_logits": 0.5})
    got = {r["model"]: r["score"] for r in ascore.score_rows(ROWS, spec)}
    z = lambda v: (np.array(v) - np.mean(v)) / np.std(v)  # noqa: E731
    want = z([2.0, 1.0, 0.0]) + 0.5 * z([1.0, 3.0, 2.0])
    assert [got[m] for m in "abc"] == pytest.approx(want.tolist())


def test_failed_model_and_unscored_member_rank_last_with_reason():
    rows = ROWS[:3] + [_row("d", "logme", None, error="boom", model_error="boom")]
    out = ascore.score_rows(rows, ascore.ScoreSpec("single", ("logme",)))
    assert [r["model"] for r in out] == ["a", "b", "c", "d"] and out[-1]["rank"] is None and out[-1]["error"] == "boom"
    rows = ROWS[:2] + [_row("c", "logme", None, error="skipped: too few images")]
    out = ascore.score_rows(rows, ascore.ScoreSpec("single", ("logme",)))
    assert out[-1]["model"] == "c" and out[-1]["score"] is None and "too few" in out[-1]["error"]


def test_expand_puts_members_in_place_once():
    spec, names = ascore.expand(["knn", "advisor-score", "logme"])
    assert spec is not None and names[0] == "knn" and set(spec.estimators) <= set(names) and len(names) == len(set(names))
    assert ascore.expand(["knn"]) == (None, ["knn"])


def test_rank_default_is_advisor_score_first(image_folder, tiny_models):
    spec = ascore.load_spec()
    result = advisor.rank(str(image_folder), tiny_models, img_size=32)
    names = list(dict.fromkeys(r["estimator"] for r in result.rows))
    assert names[0] == "advisor-score" and set(spec.estimators) <= set(names)
    ranked = [r for r in result.rows if r["estimator"] == "advisor-score"]
    assert len(ranked) == len(tiny_models) and sorted(r["rank"] for r in ranked) == list(range(1, len(tiny_models) + 1))
    # the combination is reproducible from the member rows it reports
    members = ascore.member_scores(result.rows, spec)
    again = ascore.combined(spec, members, [r["model"] for r in ranked])
    assert [again[r["model"]] for r in ranked] == pytest.approx([r["score"] for r in ranked])


def test_cli_default_shows_the_advisor_score_column_and_json_rows(image_folder, tiny_models, run_cli):
    args = ["rank", str(image_folder), "--models", ",".join(tiny_models), "--img-size", "32"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "advisor-score" in out
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    rows = json.loads(out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert rows[0]["estimator"] == "advisor-score" and rows[0]["rank"] == 1
    # named estimators only: no advisor-score unless asked for
    code, out, err = run_cli(*args, "-e", "knn", "--json")
    rows = json.loads(out)
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert {r["estimator"] for r in rows} == {"knn"}
