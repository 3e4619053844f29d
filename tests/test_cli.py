"""The CLI surface: help with examples, cache commands, read-only SQL."""

import json

import pytest
from conftest import file_id

COMMANDS = [["rank"], ["plugins"], ["cache"], ["cache", "stats"], ["cache", "clear"], ["cache", "sql"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_help_shows_an_example(run_cli, command):
    code, out, _ = run_cli(*command, "--help")
    assert code == 0 and "Example" in out


def test_cache_stats_sql_and_clear(run_cli, image_folder, tiny_weights, advisor_home):
    code, out, _ = run_cli("cache", "stats")
    assert code == 0 and "no cache yet" in out
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    assert run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32")[0] == 0
    code, out, _ = run_cli("cache", "stats", "--json")
    stats = json.loads(out)
    assert stats["rows"]["extractions"] == 1 and stats["rows"]["runs"] == 1 and stats["rows"]["scores"] == 6  # 5 feature_info cuts + pre_logits
    code, out, _ = run_cli("cache", "sql", "SELECT model_id, cuts FROM models", "--json")
    assert json.loads(out)[0]["model_id"] == model
    code, _, err = run_cli("cache", "sql", "DELETE FROM scores")
    assert code == 2 and "read-only" in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli("cache", "sql", "SELEC nonsense")
    assert code == 2 and "query failed" in err
    assert run_cli("cache", "clear", "--yes")[0] == 0 and not (advisor_home / "advisor.duckdb").exists()


def test_plugins_lists_builtins_with_inputs_and_origin(run_cli):
    code, out, _ = run_cli("plugins", "--json")
    listing = json.loads(out)
    est = {e["name"]: e for e in listing["estimators"]}
    assert est["logme"]["needs"] == ["labels"] and est["logme"]["plugin"] == "advisor.plugins.logme"
    assert {s["prefix"] for s in listing["model_sources"]} >= {"timm", "hf-hub", "local-dir", "file"}
    assert "resnet56_cifar" in {a["name"] for a in listing["architectures"]}
