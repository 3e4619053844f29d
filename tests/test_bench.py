"""`advisor bench` end to end on tiny random-init models and tiny image folders (plumbing, not quality):
ground-truth CSV, report, full caching on rerun, --report-only; the metrics against hand-computed
facts; one-line errors for bad inputs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path
from dataclasses import replace

import pytest
from conftest import file_id, kill_minus_9_when, write_images

ESTIMATORS = "logme,knn,cka"


def _bench_rows(home) -> int:
    import duckdb

    if not (home / "advisor.duckdb").exists():
        return 0
    with duckdb.connect(str(home / "advisor.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM bench_runs").fetchone()[0]


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Relative default outputs (benchmarks/...) land in the test's folder, never in the repo."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def tiny(tiny_weights, tmp_path):
    models = [file_id(tiny_weights["test_resnet"], "test_resnet"), file_id(tiny_weights["test_efficientnet"], "test_efficientnet")]
    flat = write_images(tmp_path / "flat", {"cat": 8, "dog": 8, "eel": 8}, size=16)
    split = tmp_path / "split"
    write_images(split / "train", {"a": 8, "b": 8}, size=16, seed=1)
    write_images(split / "test", {"a": 4, "b": 4}, size=16, seed=2)
    return models, [flat, split]


def _args(models, targets, tmp_path, *extra, tag="a"):
    """A small benchmark: 1 epoch at 32 px (the tiny models' own size is 160), knn only, one BatchNorm mode
    unless ``extra`` names others."""
    bn = [] if "--batchnorm" in extra else ["--batchnorm", "train"]
    return ["bench", "--models", ",".join(models), "--targets", ",".join(map(str, targets)), "--epochs", "1", "--img-size", "32",
            "-e", "knn", "--out", str(tmp_path / f"out-{tag}"), "--ground-truth", str(tmp_path / f"gt-{tag}.csv"),
            "--runs-csv", str(tmp_path / f"runs-{tag}.csv"), "--workers", "1", *bn, *extra]


def _home(monkeypatch, tmp_path, name):
    home = tmp_path / name
    monkeypatch.setenv("ADVISOR_HOME", str(home))
    return home


def test_bench_end_to_end_csv_report_and_report_only(run_cli, tiny, tmp_path, advisor_home):
    from advisor.bench.units import read_runs

    models, targets = tiny
    out, gt, runs_csv = tmp_path / "out", tmp_path / "gt.csv", tmp_path / "runs.csv"
    args = ["bench", "--models", ",".join(models), "--targets", ",".join(map(str, targets)), "--epochs", "1", "--img-size", "32",
            "--seeds", "0,1", "--lrs", "0.01,0.001", "--batchnorm", "train,frozen", "--defrost-cuts", "2", "-e", ESTIMATORS, "--out", str(out),
            "--ground-truth", str(gt), "--runs-csv", str(runs_csv), "--workers", "1"]
    code, _, err = run_cli(*args)
    assert code == 0, err
    rows = list(csv.DictReader(gt.open()))
    assert sorted((r["target"], r["model"]) for r in rows) == sorted(
        (t, m) for t in ("flat", "split") for m in ("test_resnet", "test_efficientnet"))
    for r in rows:
        assert float(r["lr_backbone"]) in (0.01, 0.001)
        assert float(r["lr_head"]) == pytest.approx(10 * float(r["lr_backbone"]))
        assert 0.0 <= float(r["test_acc_mean"]) <= 1.0 and int(r["seeds_done"]) == 2
        assert r["best_defrost_cut"] and r["input_size"] == "32"
        assert 0.0 <= float(r["probe_test_acc"]) <= 1.0 and float(r["final_train_loss"]) > 0
        assert r["under_trained"] == str(float(r["test_acc_mean"]) < float(r["probe_test_acc"])).lower()
    split_rows = [r for r in rows if r["target"] == "split"]
    assert all(r["n_test"] == "8" for r in split_rows)  # the target's own test/ folder is the test set
    records = read_runs(runs_csv)
    kinds = [r["kind"] for r in records]
    # models x targets x (BatchNorm modes x lrs x seeds fine-tunes + 2 defrost cuts + 1 linear probe)
    assert (kinds.count("finetune"), kinds.count("defrost"), kinds.count("probe")) == (32, 8, 4)
    assert all(r["status"] == "done" and r["final_train_loss"] is not None and r["input_size"] == 32 for r in records)
    assert {r["cut"] for r in records if r["kind"] == "defrost"} == {"layer1", "pre_logits", "blocks.1"}  # first and last default cut
    runs = _bench_rows(advisor_home)
    assert runs == len(records) == 44
    report = (out / "bench_report.md").read_text()
    assert "## Weighted Kendall τ per target (score at each model's best cut)" in report
    assert "## Fine-tune vs frozen linear probe" in report and "seed 00" not in report
    for est in ESTIMATORS.split(","):
        assert f"\n| {est} | " in report
    assert "Leave-one-target-out mean τ" in report or "no leave-one-target-out" in report
    assert (out / "tau_per_estimator.png").stat().st_size > 5_000 and len(list(out.glob("scatter_*.png"))) == 2
    # on these tiny targets the frozen probe is perfect on every pair and validation prefers it, so the
    # ground truth ties every model: the report makes no choice and writes no advisor_score.toml
    # (test_report_writes_the_chosen_default covers the choice)
    assert {r["ground_truth_test_acc"] for r in rows} == {"1"} and "Choice on all these targets: **–**" in report
    assert not (out / "advisor_score.toml").exists()

    # a rerun that finds every run cached is test_runs_csv_makes_a_fresh_cache_skip_finished_runs_and_ignores_a_torn_line's;
    # --report-only rebuilds the same report and ground truth from the cache, computing nothing
    gt.unlink()
    (out / "bench_report.md").unlink()
    code, _, err = run_cli(*args, "--report-only")
    assert code == 0, err
    assert (out / "bench_report.md").read_text().split("## Protocol")[1] == report.split("## Protocol")[1]
    assert list(csv.DictReader(gt.open())) == rows  # the same table, columns in the same order, from the cache
    assert _bench_rows(advisor_home) == runs and len(read_runs(runs_csv)) == runs and "runs to do" not in err


def test_lp_ft_and_frozen_batchnorm_fine_tunes_end_to_end(run_cli, tiny, tmp_path):
    """--head-init probe --batchnorm frozen: the fine-tunes record both options, probes and defrost runs keep
    the keys they have without them, and with a learning rate too small to move anything an LP-FT run's
    test accuracy is its linear probe's (the head starts as that probe)."""
    from advisor.bench.units import read_runs

    models, targets = tiny
    args = _args(models[:1], targets[:1], tmp_path, "--seeds", "0", "--lrs", "1e-9", "--defrost-cuts", "1")
    code, _, err = run_cli(*args, "--head-init", "probe", "--batchnorm", "frozen")
    assert code == 0, err
    lpft = {r["kind"]: r for r in read_runs(tmp_path / "runs-a.csv")}
    assert lpft["finetune"]["protocol"]["head_init"] == "probe" and lpft["finetune"]["protocol"]["batchnorm"] == "frozen"
    assert lpft["finetune"]["test_acc"] == pytest.approx(lpft["probe"]["test_acc"])
    code, _, err = run_cli(*_args(models[:1], targets[:1], tmp_path, "--seeds", "0", "--lrs", "1e-9", "--defrost-cuts", "1", tag="b"))
    assert code == 0, err
    plain = {r["kind"]: r for r in read_runs(tmp_path / "runs-b.csv")}
    assert "imported" not in err and "1 runs to do" in err  # the probe and defrost runs came from the cache: same keys
    assert all(plain[k]["run_key"] == lpft[k]["run_key"] for k in ("probe", "defrost"))
    assert "head_init" not in plain["finetune"]["protocol"] and plain["finetune"]["run_key"] != lpft["finetune"]["run_key"]


def test_batchnorm_grid_end_to_end_records_the_chosen_mode(run_cli, tiny, tmp_path):
    """--batchnorm train,frozen: both modes' fine-tunes run (and land in the runs CSV), the ground-truth CSV
    names the mode validation chose, whose validation accuracy is the best of the grid, and the report
    counts the chosen modes."""
    from advisor.bench.units import read_runs

    models, targets = tiny
    args = _args(models, targets[:1], tmp_path, "--seeds", "0", "--lrs", "0.01", "--defrost-cuts", "1", "--batchnorm", "train,frozen")
    code, _, err = run_cli(*args)
    assert code == 0, err
    fts = [r for r in read_runs(tmp_path / "runs-a.csv") if r["kind"] == "finetune"]
    assert sorted(r["protocol"].get("batchnorm", "train") for r in fts) == ["frozen", "frozen", "train", "train"]
    rows = list(csv.DictReader((tmp_path / "gt-a.csv").open()))
    assert len(rows) == 2
    for row in rows:
        mine = {r["protocol"].get("batchnorm", "train"): r for r in fts if r["model_id"] == row["model_id"]}
        assert row["batchnorm"] in ("train", "frozen")
        assert float(row["val_acc_mean"]) == pytest.approx(max(r["val_acc"] for r in mine.values()))
        assert float(row["test_acc_mean"]) == pytest.approx(mine[row["batchnorm"]]["test_acc"])
        assert set(dict(kv.split(":") for kv in row["val_acc_by_setting"].split(";"))) == {"train@0.01", "frozen@0.01"}
    assert "BatchNorm mode chosen on validation: frozen statistics for" in (tmp_path / "out-a" / "bench_report.md").read_text()


def test_report_only_without_evidence_is_one_line(run_cli, tiny, tmp_path):
    models, targets = tiny
    code, _, err = run_cli("bench", "--models", models[0], "--targets", str(targets[0]), "--report-only", "--out", str(tmp_path / "o"),
                           "--ground-truth", str(tmp_path / "g.csv"), "-e", "knn")
    assert code == 2 and "not in the cache" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["--models", "no-such-model-xyz"], "no-such-model-xyz"),
    (["--targets", "/no/such/target"], "does not exist"),
    (["--targets", "{unlabelled}"], "has no labels"),
    (["--seeds", ""], "--seeds is empty"),
    (["--seeds", "0,x"], "not a comma-separated list"),
    (["--seeds", "1,1"], "repeats a seed"),
    (["--lrs", "-0.1"], "learning rates must be positive"),
    (["--epochs", "0"], "--epochs must be at least 1"),
    (["-e", "nope"], "unknown estimator 'nope'"),
    (["--config", "/no/such.toml"], "does not exist"),
    (["--workers", "0"], "--workers must lie in 1.."),
    (["--head-init", "warm"], "head_init 'warm' is not one of random, probe"),
    (["--batchnorm", "off"], "batchnorm 'off' is not one of train, frozen"),
    (["--workers", "999"], "--workers must lie in 1.."),
    (["--workers", "two"], "--workers 'two' is not a whole number"),
    (["--img-size", "8"], "--img-size must be at least 32 px"),
    (["--img-size", "big"], "--img-size 'big' is not a whole number"),
    (["--defrost-cuts", "0"], "--defrost-cuts must be at least 1"),
    (["--lrs", "0.01,0.01"], "--lrs repeats a learning rate: 0.01, 0.01"),
    (["--batchnorm", "@0.01"], "batchnorm '@0.01' is not one of train, frozen"),
    (["--targets", "{one_class}"], "has a single class ('only')"),
    (["--targets", "{same_name}"], "would both be 'flat' in the report"),
])
def test_bad_inputs_exit_2_with_one_line(run_cli, tiny, tmp_path, args, message):
    models, targets = tiny
    unlabelled = write_images(tmp_path / "unlabelled", {"x": 3}, size=16) / "x"  # a flat folder: no class sub-folders
    one_class = write_images(tmp_path / "one", {"only": 4}, size=16)
    same_name = f"{targets[0]},{write_images(tmp_path / 'elsewhere' / 'flat', {'a': 4, 'b': 4}, size=16)}"
    opts = {"--models": models[0], "--targets": str(targets[0]), "--epochs": "1", "--out": str(tmp_path / "o"),
            "--ground-truth": str(tmp_path / "g.csv"), "--runs-csv": str(tmp_path / "r.csv")}
    fill = {"{unlabelled}": str(unlabelled), "{one_class}": str(one_class), "{same_name}": same_name}
    opts.update({k: fill.get(v, v) for k, v in zip(args[::2], args[1::2])})
    code, out, err = run_cli("bench", *[x for kv in opts.items() for x in kv])
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "g.csv").exists() and not (tmp_path / "r.csv").exists()


def test_default_config_lists_the_shared_models_and_targets():
    import tomllib

    from advisor.bench.config import DEFAULT_CONFIG, load_config
    from advisor.models.weights import catalog

    raw = tomllib.loads(DEFAULT_CONFIG.read_text())
    new = {"lcnet_100_text_orientation4", "ccexam_mnist", "ccexam_usps", "ccexam_svhn", "kerascnn_cifar10", "mini_xception_fer2013"}
    assert len(raw["models"]) == 14 and new <= set(raw["models"])
    assert set(raw["models"]) - new <= set(catalog())
    assert "data/pneumoniamnist/pneumoniamnist.npz" in raw["targets"] and len(raw["targets"]) == 6
    proto = raw["protocol"]
    assert {"img_size", "max_train", "epochs", "seeds", "backbone_lrs", "defrost_cuts", "defrost_seed"} <= set(proto)
    assert proto["img_size"] >= 32 and isinstance(proto["defrost_cuts"], int) and proto["defrost_cuts"] <= 4
    assert 1 <= raw["run"]["workers"]


# ---------------------------------------------------------------- protocol settings and run keys


def test_input_size_cap_never_enlarges_and_leaves_fixed_models_alone():
    from advisor.bench.identity import effective_size

    assert effective_size((3, 240, 240), False, 128) == 128
    assert effective_size((3, 240, 240), False, None) is None
    assert effective_size((3, 32, 32), False, 128) is None  # a small model keeps its own size
    assert effective_size((1, 28, 28), True, 128) is None
    assert effective_size((3, 224, 224), True, 128) is None  # a fixed-size model is never resized


def test_defrost_cuts_spread_or_named():
    from advisor.bench.identity import pick_defrost_cuts
    from advisor.errors import AdvisorError

    default = ["b1", "b2", "b3", "b4", "pre_logits"]
    assert pick_defrost_cuts(default, ["b0"] + default, 3, "m") == ["b1", "b3", "pre_logits"]
    assert pick_defrost_cuts(default, ["b0"] + default, 1, "m") == ["b1"]
    assert pick_defrost_cuts(default, ["b0"] + default, 9, "m") == default
    assert pick_defrost_cuts(default, ["b0"] + default, ("pre_logits", "b0", "zz"), "m") == ["b0", "pre_logits"]
    with pytest.raises(AdvisorError, match="has none of the --defrost-cuts"):
        pick_defrost_cuts(default, default, ("zz",), "m")


@pytest.mark.parametrize("change", [{"img_size": 64}, {"epochs": 2}, {"max_train": 10}, {"seeds": [1]}, {"lrs": [0.05]},
                                    {"defrost_cuts": 2}, {"defrost_seed": 3}, {"head_init": "probe"}, {"batchnorm": "frozen"},
                                    {"batchnorm": "train,frozen"}])
def test_every_setting_is_part_of_the_run_keys(tiny, change):
    from advisor.bench.config import load_config
    from advisor.bench.plan import make_plan

    models, targets = tiny
    base = dict(models=models[:1], targets=[str(targets[0])], epochs=1, seeds=[0], lrs=[0.01], max_train=None, img_size=32,
                defrost_cuts=1, defrost_seed=0, estimators=["knn"])
    grid = change.get("batchnorm") == "train,frozen"
    if "batchnorm" in change:  # from one mode: to the other (every fine-tune changes) or to the grid (new ones appear)
        base["batchnorm"] = "train"
    elif "head_init" in change:  # whatever registry/bench.toml sets, change it
        change = {"head_init": "random" if load_config(**base).settings.head_init == "probe" else "probe"}
    plans = [make_plan(load_config(**kw), "cpu") for kw in (base, {**base, **change})]
    keys = [{(j.kind, j.lr, j.seed, j.cut, j.batchnorm): j.key for j in p.jobs} for p in plans]
    assert plans[0].cfg.settings.key() != plans[1].cfg.settings.key()  # the evidence cells
    if "defrost_cuts" in change or grid:  # more cuts or modes: the old runs keep their keys, new ones appear
        assert set(keys[0].values()) < set(keys[1].values())
        if grid:
            assert {k[4] for k in keys[1] if k[0] == "finetune"} == {"train", "frozen"}
    elif "defrost_seed" in change or "head_init" in change or "batchnorm" in change:  # only one kind of run changes
        kind = "defrost" if "defrost_seed" in change else "finetune"
        strip = [{k[:4]: v for k, v in ks.items()} for ks in keys]  # a fine-tune's mode is part of what changed
        assert {k: v for k, v in strip[0].items() if k[0] != kind} == {k: v for k, v in strip[1].items() if k[0] != kind}
        assert {v for k, v in strip[0].items() if k[0] == kind}.isdisjoint(strip[1].values())
    else:
        changed = [k for k in keys[0] if keys[0][k] not in keys[1].values()]
        assert any(k[0] == "finetune" for k in changed), change
        if change.get("img_size") or change.get("max_train"):
            assert set(keys[0].values()).isdisjoint(keys[1].values())  # input and data change every run


def test_the_fine_tune_setting_is_chosen_on_validation_over_batchnorm_modes_and_lrs():
    """summarise_runs picks the (BatchNorm mode, lr) with the best mean validation accuracy over seeds and
    reports that setting's test accuracy; the test part never decides; failed runs count as failed."""
    from advisor.bench.ground_truth import summarise_runs

    def run(bn, lr, seed, val, test, status="done"):
        return {"batchnorm": bn, "lr": lr, "seed": seed, "val_acc": val, "test_acc": test, "status": status,
                "final_train_loss": 0.5, "seconds": 1.0}

    runs = [run("train", 0.01, 0, 0.60, 0.99), run("train", 0.01, 1, 0.62, 0.99),   # best test, worse validation
            run("train", 0.001, 0, 0.50, 0.50), run("train", 0.001, 1, 0.52, 0.50),
            run("frozen", 0.01, 0, 0.70, 0.80), run("frozen", 0.01, 1, 0.74, 0.84),  # best validation
            run("frozen", 0.001, 0, 0.90, 0.10, status="failed: diverged"), run("frozen", 0.001, 1, 0.40, 0.40)]
    grid = [("train", 0.01), ("train", 0.001), ("frozen", 0.01), ("frozen", 0.001)]
    g = summarise_runs(runs, grid, 10.0)
    assert (g["batchnorm"], g["lr_backbone"], g["lr_head"]) == ("frozen", 0.01, pytest.approx(0.1))
    assert g["val_mean"] == pytest.approx(0.72) and g["test_mean"] == pytest.approx(0.82) and g["test_std"] == pytest.approx(0.02)
    assert g["seeds_done"] == 2 and list(g["per_setting"]) == ["train@0.01", "train@0.001", "frozen@0.01", "frozen@0.001"]
    assert g["per_setting"]["frozen@0.001"]["done"] == 1 and g["per_setting"]["frozen@0.001"]["failed"] == 1
    # runs outside the grid do not count; ties go to the first setting of the grid
    assert summarise_runs(runs, grid[:2], 10.0)["batchnorm"] == "train"
    assert summarise_runs(runs, [("train", 0.01), ("frozen", 0.001)], 10.0)["lr_backbone"] == 0.01  # frozen@0.001: 0.40
    tie = [run("train", 0.01, 0, 0.5, 0.3), run("frozen", 0.01, 0, 0.5, 0.9)]
    assert summarise_runs(tie, [("train", 0.01), ("frozen", 0.01)], 10.0)["batchnorm"] == "train"
    assert summarise_runs([run("train", 0.01, 0, 0.5, 0.5, "failed: x")], [("train", 0.01)], 10.0)["batchnorm"] is None


@pytest.mark.parametrize("value, message", [("", "is empty"), ("train,train", "repeats an entry"),
                                            ("train,off", "batchnorm 'off' is not one of train, frozen"),
                                            ("frozen@abc", "'abc' is not a positive learning rate"),
                                            ("frozen@-1", "'-1' is not a positive learning rate"),
                                            ("frozen@1e-3,frozen@0.001", "repeats an entry"),
                                            (["frozen", " Train "], ("frozen", "train")),
                                            ("train, FROZEN@1e-3", ("train", "frozen@0.001"))])
def test_batchnorm_grid_parsing(value, message):
    from advisor.bench.config import parse_batchnorm
    from advisor.errors import AdvisorError

    if isinstance(message, tuple):
        assert parse_batchnorm(value) == message
    else:
        with pytest.raises(AdvisorError, match=message):
            parse_batchnorm(value)


def test_the_fine_tune_grid_expands_modes_over_the_lrs(tiny):
    from advisor.bench.config import Settings, load_config
    from advisor.errors import AdvisorError

    s = Settings(backbone_lrs=(0.01, 0.001), batchnorm=("train", "frozen@0.001"))
    assert s.grid() == [("train", 0.01), ("train", 0.001), ("frozen", 0.001)]
    assert Settings(backbone_lrs=(0.01,), batchnorm=("frozen",)).grid() == [("frozen", 0.01)]
    models, targets = tiny
    with pytest.raises(AdvisorError, match="the fine-tune grid has train@0.01 twice"):
        load_config(models=models[:1], targets=[str(targets[0])], lrs=[0.01, 0.001], batchnorm="train,train@0.01", estimators=["knn"])


def test_a_cap_above_the_model_size_changes_no_key(tiny):
    from advisor.bench.config import load_config
    from advisor.bench.plan import make_plan

    models, targets = tiny
    base = dict(models=models[:1], targets=[str(targets[0])], epochs=1, seeds=[0], lrs=[0.01], defrost_cuts=1, estimators=["knn"])
    native, capped = (make_plan(load_config(**base, img_size=v), "cpu") for v in ("native", 512))  # the tiny models take 160 px
    assert [j.key for j in native.jobs] == [j.key for j in capped.jobs]
    assert native.infos[models[0]].input_size == (3, 160, 160) and native.infos[models[0]].img_override is None


# ---------------------------------------------------------------- --plan, portable CSV, workers


def test_plan_counts_runs_and_trains_nothing(run_cli, tiny, tmp_path, advisor_home):
    models, targets = tiny
    code, out, err = run_cli(*_args(models, targets, tmp_path, "--seeds", "0,1", "--lrs", "0.01,0.001", "--defrost-cuts", "2", "--plan"))
    assert code == 0, err
    assert "nothing is trained" in out and "estimated wall time" in out and "what dominates" in out
    total = next(line for line in out.splitlines() if line.startswith("total"))
    # 2 models x 2 targets: 2 lrs x 2 seeds fine-tunes, 2 defrost cuts, 1 probe each; knn at 6 cuts
    assert total.split()[1:5] == ["16", "8", "4", str(2 * 2 * 6)]
    for m in ("test_resnet", "test_efficientnet"):
        row = next(line for line in out.splitlines() if line.startswith(m))
        assert row.split()[1] == "32 (own 160)".split()[0] and "own 160" in row
    assert _bench_rows(advisor_home) == 0 and not (tmp_path / "runs-a.csv").exists() and not (tmp_path / "gt-a.csv").exists()


def test_runs_csv_makes_a_fresh_cache_skip_finished_runs_and_ignores_a_torn_line(run_cli, tiny, tmp_path, monkeypatch):
    from advisor.bench.units import RUN_COLUMNS, read_runs

    models, targets = tiny
    args = _args(models[:1], targets[:1], tmp_path, "--seeds", "0", "--lrs", "0.01", "--defrost-cuts", "1")
    _home(monkeypatch, tmp_path, "home-1")
    code, _, err = run_cli(*args)
    assert code == 0, err
    csv_path = tmp_path / "runs-a.csv"
    records = read_runs(csv_path)
    assert len(records) == 3 and set(RUN_COLUMNS) <= set(records[0])
    ft = next(r for r in records if r["kind"] == "finetune")
    assert ft["lr_backbone"] == 0.01 and ft["seed"] == 0 and ft["epochs"] == 1 and ft["img_size_cap"] == 32 and ft["history"]
    assert ft["final_train_loss"] == ft["history"][-1]["loss"] and ft["device"] == "cpu" and ft["protocol"]["name"] == "finetune"
    gt = (tmp_path / "gt-a.csv").read_text()

    home = _home(monkeypatch, tmp_path, "home-2")  # a fresh machine: empty cache, the committed CSV
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert "imported 3 finished run(s)" in err and "all 3 runs cached" in err and "runs to do" not in err
    assert "1 from " in err and "bench_scores.csv" in err  # the scores travel too: nothing is re-scored
    from advisor.bench.units import read_scores

    assert len(read_scores(tmp_path / "bench_scores.csv")) == 1
    assert _bench_rows(home) == 3 and (tmp_path / "gt-a.csv").read_text() == gt and len(read_runs(csv_path)) == 3

    lines = csv_path.read_bytes().splitlines(keepends=True)
    csv_path.write_bytes(b"".join(lines[:-1]) + lines[-1][: len(lines[-1]) // 2])  # a crash in the middle of the last write
    assert len(read_runs(csv_path)) == 2
    home = _home(monkeypatch, tmp_path, "home-3")
    code, _, err = run_cli(*args)
    assert code == 0, err
    assert "dropped a torn last line" in err and "imported 2 finished run(s)" in err and "1 runs to do" in err
    assert len(read_runs(csv_path)) == 3 and csv_path.read_bytes().endswith(b"\n") and _bench_rows(home) == 3
    assert (tmp_path / "gt-a.csv").read_text() == gt  # the recomputed run gives the same numbers


def test_two_workers_store_what_one_worker_stores(run_cli, tiny, tmp_path, monkeypatch):
    from advisor.bench import config, jobs
    from advisor.bench.units import read_runs

    for module in (config, jobs):  # the check in this process; each worker gets 1 thread
        monkeypatch.setattr(module, "cpu_cores", lambda: 2)
    models, targets = tiny
    results = {}
    for n in (1, 2):
        home = _home(monkeypatch, tmp_path, f"home-w{n}")
        code, _, err = run_cli(*_args(models, targets[:1], tmp_path, "--seeds", "0,1", "--lrs", "0.01", "--defrost-cuts", "1",
                                      "--workers", str(n), tag=f"w{n}"))  # the last --workers wins
        assert code == 0, err
        assert _bench_rows(home) == 2 * (2 + 1 + 1)
        results[n] = {r["run_key"]: r for r in read_runs(tmp_path / f"runs-w{n}.csv")}
    assert results[1].keys() == results[2].keys()
    assert all(r["threads"] == 1 for r in results[2].values())  # ran in the workers, cores // workers threads each
    for k, r in results[1].items():
        q = results[2][k]
        assert (r["kind"], r["status"], r["val_acc"], r["test_acc"]) == (q["kind"], q["status"], q["val_acc"], q["test_acc"])
        assert r["final_train_loss"] == pytest.approx(q["final_train_loss"], rel=1e-4)
    assert (tmp_path / "gt-w1.csv").read_text() == (tmp_path / "gt-w2.csv").read_text()


def test_read_runs_ignores_torn_and_malformed_lines(tmp_path):
    from advisor.bench.units import RUN_COLUMNS, append_run, read_runs, repair_tail

    path = tmp_path / "r.csv"
    rec = {k: None for k in RUN_COLUMNS} | {"run_key": "k1", "kind": "probe", "status": "done", "reason": "a\nb, \"c\"",
                                            "test_acc": 0.5, "history": [{"loss": 1.0}], "protocol": {"recipe": "x"}}
    append_run(path, rec)
    append_run(path, rec | {"run_key": "k2"})
    got = read_runs(path)
    assert [r["run_key"] for r in got] == ["k1", "k2"] and got[0]["reason"] == 'a b, "c"' and got[0]["history"] == [{"loss": 1.0}]
    with path.open("a") as fh:
        fh.write("not,a,record\n" + "k3,probe,half a li")
    assert [r["run_key"] for r in read_runs(path)] == ["k1", "k2"]
    assert repair_tail(path) == len("k3,probe,half a li")
    append_run(path, rec | {"run_key": "k4"})
    assert [r["run_key"] for r in read_runs(path)] == ["k1", "k2", "k4"]


# ---------------------------------------------------------------- metrics by hand


def test_weighted_tau_top1_and_regret_by_hand():
    from advisor.bench import metrics as bm

    acc = {"a": 0.9, "b": 0.7, "c": 0.5, "d": 0.3}
    assert bm.weighted_tau(acc, {"a": 4, "b": 3, "c": 2, "d": 1}) == pytest.approx(1.0)
    assert bm.weighted_tau(acc, {"a": 1, "b": 2, "c": 3, "d": 4}) == pytest.approx(-1.0)
    wrong = {"a": 1, "b": 2, "c": 5, "d": 4}  # picks c
    assert bm.top1_hit(acc, wrong) is False and bm.regret(acc, wrong) == pytest.approx(0.9 - 0.5)
    right = {"a": 9, "b": 2, "c": 5, "d": 4}
    assert bm.top1_hit(acc, right) is True and bm.regret(acc, right) == 0.0
    assert bm.regret(acc, {"a": None, "b": 1.0, "c": 0.0, "d": None}) == pytest.approx(0.0)  # only b, c scored: b is best of them
    tied = {"a": 0.8, "b": 0.8, "c": 0.1}
    assert bm.top1_hit(tied, {"a": 0, "b": 1, "c": 0}) is True


def test_noise_band_rank_average_and_layer_distance_by_hand():
    from advisor.bench import metrics as bm

    band = bm.noise_band({"a": 0.02, "b": 0.04}, {"a": 0.60, "b": 0.65})
    assert band["noise"] == pytest.approx(0.03) and band["spread"] == pytest.approx(0.05) and band["flagged"]  # 0.05 < 0.06
    assert not bm.noise_band({"a": 0.01, "b": 0.01}, {"a": 0.60, "b": 0.65})["flagged"]
    assert bm.noise_band({"a": 0.0, "b": 0.0}, {"a": 0.5, "b": 0.5})["flagged"]  # all tied: nothing to order
    ra = bm.rank_average([{"x": 1.0, "y": 2.0, "z": 3.0}, {"x": 30.0, "y": 10.0, "z": 20.0}])
    assert ra == {"x": pytest.approx(2.0), "y": pytest.approx(1.5), "z": pytest.approx(2.5)}
    assert bm.layer_distance(["l1", "l2", "l3", "pre_logits"], "l1", "l3") == 2
    assert bm.layer_distance(["l1"], None, "l1") is None


def test_leave_one_target_out_picks_by_hand():
    """Three targets; singles a, b, c and their rank-averages with hand-set τ values."""
    from advisor.bench import metrics as bm

    tau = {
        "t1": {("a",): 0.9, ("b",): 0.5, ("c",): 0.0, ("a", "b"): 0.6, ("a", "b", "c"): 0.1},
        "t2": {("a",): 0.1, ("b",): 0.6, ("c",): 0.2, ("a", "b"): 0.9, ("a", "b", "c"): 0.3},
        "t3": {("a",): 0.8, ("b",): 0.4, ("c",): 0.9, ("a", "b"): 0.5, ("a", "b", "c"): 0.4, ("a", "c"): 1.0},
    }

    def tau_of(combo, t):
        return tau[t].get(combo)

    res = bm.leave_one_target_out(tau_of, ["a", "b", "c"], ["t1", "t2", "t3"])
    folds = {f["held_out"]: f for f in res["folds"]}
    # hold out t1: on t2, t3 singles a .45, b .50, c .55 → top2 = {b, c} (no τ: skipped), top3 mean .35 → c alone (.55)
    assert folds["t1"]["combo"] == ("c",) and folds["t1"]["held_out_tau"] == 0.0
    # hold out t2: on t1, t3 a .85, b .45, c .45 → a .85; (a, b) .55; (a, b, c) .25 → a
    assert folds["t2"]["combo"] == ("a",) and folds["t2"]["held_out_tau"] == pytest.approx(0.1)
    # hold out t3: on t1, t2 a .5, b .55, c .1 → b .55; (a, b) .75 → wins; (a, b, c) .2
    assert folds["t3"]["combo"] == ("a", "b") and folds["t3"]["train_mean_tau"] == pytest.approx(0.75)
    assert folds["t3"]["held_out_tau"] == pytest.approx(0.5)
    assert res["mean_tau"] == pytest.approx((0.0 + 0.1 + 0.5) / 3)
    # on all three: a .6, b .5, c .3667 → a .6; (a, b) .6667 → chosen; (a, b, c) .2667
    assert res["final"]["combo"] == ("a", "b") and res["final"]["k"] == 2


def test_finetune_reports_test_accuracy_only_when_asked(tiny_weights):
    import timm
    import torch

    from advisor.validation import finetune as ft
    from advisor.ranking.features import PRE_LOGITS
    from advisor.validation.stages import stages

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=2)
    st = stages(model, torch.randn(2, 3, 32, 32))
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1] * 4)
    proto = ft.finetune(4, epochs=1)
    plain = ft.train(st, PRE_LOGITS, proto, x, y, x, y, seed=0)
    assert plain.test_acc is None
    with_test = ft.train(st, PRE_LOGITS, proto, x, y, x, y, seed=0, test_h=x[:4], test_y=torch.tensor([0, 0, 0, 0]))
    preds = model(x[:4].contiguous()).argmax(1)
    assert with_test.test_acc == pytest.approx(float((preds == 0).float().mean()))


def test_linear_combination_by_hand():
    """Ridge on standardised scores: an estimator that orders models like accuracy gets a positive
    weight, one that orders them backwards a negative one; z-scores by hand."""
    from advisor.bench import metrics as bm

    assert bm.zscores({"a": 1.0, "b": 3.0}, ["a", "b"]).tolist() == [-1.0, 1.0]
    assert bm.zscores({"a": 1.0, "b": None, "c": 3.0}, ["a", "b", "c"]).tolist() == [-1.0, 0.0, 1.0]
    assert bm.zscores({"a": 2.0, "b": 2.0}, ["a", "b"]).tolist() == [0.0, 0.0]
    acc = {"t1": {"x": 0.9, "y": 0.5, "z": 0.1}, "t2": {"x": 0.2, "y": 0.6, "z": 0.4}}
    scores = {"good": {"t1": {"x": 3, "y": 2, "z": 1}, "t2": {"x": 1, "y": 3, "z": 2}},
              "bad": {"t1": {"x": 1, "y": 2, "z": 3}, "t2": {"x": 3, "y": 1, "z": 2}}}
    w = bm.fit_linear_combination(scores, acc, ["good", "bad"], ["t1", "t2"], alpha=0.0 + 1e-9)
    # good's z-scores equal accuracy's ranks here and bad = -good, so ZᵀZ is singular along (1, -1):
    # the ridge solution splits the signal evenly, w_good = -w_bad
    assert w["good"] > 0 > w["bad"] and w["good"] == pytest.approx(-w["bad"])
    combined = bm.apply_linear_combination(w, {"good": scores["good"]["t1"], "bad": scores["bad"]["t1"]}, ["x", "y", "z"])
    assert max(combined, key=combined.get) == "x"


def test_choose_takes_a_learned_combination_only_on_its_held_out_merit():
    from advisor.bench import metrics as bm

    tau = {("a",): {"t1": 0.5, "t2": 0.5, "t3": 0.5}}

    def tau_of(combo, t):
        return tau.get(combo, {}).get(t)

    fitted_on = []

    def learned(fit):  # in-sample it would be perfect; held out it scores 0.9 when fitted on 2 targets
        fitted_on.append(tuple(fit))
        return lambda t: 1.0 if t in fit else 0.9

    c = bm.choose(tau_of, ["a"], ["t1", "t2", "t3"], learned=learned)
    assert c["combo"] == bm.LEARNED and c["mean_tau"] == pytest.approx(0.9)  # inner leave-one-out, not 1.0
    assert all(len(f) == 2 for f in fitted_on)

    def weak(fit):
        return lambda t: 1.0 if t in fit else 0.2

    assert bm.choose(tau_of, ["a"], ["t1", "t2", "t3"], learned=weak)["combo"] == ("a",)
    res = bm.leave_one_target_out(tau_of, ["a"], ["t1", "t2", "t3", "t4"], learned=learned)
    # each fold refits on the 3 others only; its held-out τ is the 0.9 branch
    assert all(f["combo"] == bm.LEARNED and f["held_out_tau"] == pytest.approx(0.9) for f in res["folds"])


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_minus_9_resumes_from_the_runs_csv(tiny, tmp_path):
    """A bench killed with SIGKILL mid-way keeps every finished run (CSV and cache); the rerun does
    only the rest, and a fresh cache (another machine) resumes from the CSV alone."""
    from advisor.bench.units import read_runs

    models, targets = tiny
    runs_csv = tmp_path / "runs-k.csv"
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / "home-k"), "OMP_NUM_THREADS": "1"}
    args = _args(models[:1], targets[:1], tmp_path, "--seeds", "0,1,2", "--lrs", "0.01,0.001", "--defrost-cuts", "2",
                 "--epochs", "6", tag="k")  # its --runs-csv is runs_csv
    cmd = [sys.executable, "-m", "advisor", *args]
    kill_minus_9_when(cmd, env, tmp_path, lambda: len(read_runs(runs_csv)) >= 2)
    before = read_runs(runs_csv)
    total = 3 * 2 + 2 + 1  # seeds x lrs fine-tunes + defrost cuts + probe
    assert 2 <= len(before) < total, "the bench should be killed mid-way"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert f"{total - len(before)} runs to do" in done.stderr or f"{total - len(before) - 1} runs to do" in done.stderr
    assert len(read_runs(runs_csv)) == total
    fresh = subprocess.run(cmd, env={**env, "ADVISOR_HOME": str(tmp_path / "home-fresh")}, capture_output=True, text=True,
                           cwd=tmp_path, timeout=600)
    assert fresh.returncode == 0, fresh.stderr
    assert f"imported {total} finished run(s)" in fresh.stderr and "runs to do" not in fresh.stderr


def test_plan_times_the_scoring_too(tiny):
    """--plan's scoring estimate: extraction + the attribution pass (timed per image, when an
    estimator needs it) + the estimators' own arithmetic (timed), per target."""
    from advisor.bench.config import load_config
    from advisor.bench.plan import estimate, make_plan, time_model

    models, targets = tiny
    cfg = load_config(models=models[:1], targets=[str(targets[0])])
    cfg.settings = replace(cfg.settings, estimators=("knn", "depara", "linear"), img_size=32, seeds=(0,), backbone_lrs=(0.01,))
    plan = make_plan(cfg, "cpu")
    n_score = len(next(iter(plan.parts.values())).score)
    t = time_model(plan.infos[models[0]], cfg.settings, threads=1, n_score=n_score)
    assert t["wall"]["attr"] > 0 and t["wall"]["score_target"] > 0 and t["idle"]["score_target"] > 0
    est = estimate(plan, {m: v["wall"] for m, v in {models[0]: t}.items()}, workers=1)
    sc = est["per_model"][models[0]]["scoring"]
    assert sc == pytest.approx(n_score * (t["wall"]["infer"] + t["wall"]["attr"]) + t["wall"]["score_target"])
    assert est["wall_seconds"] >= est["total"]["scoring"]


def test_ground_truth_is_the_protocol_validation_prefers():
    from advisor.bench.metrics import transfer_accuracy

    ft = {"val_mean": 0.70, "test_mean": 0.68, "test_std": 0.02}
    # the probe wins on validation: its test accuracy is the ground truth, the noise stays the fine-tune's
    got = transfer_accuracy(ft, {"val_acc": 0.80, "test_acc": 0.75})
    assert got == {"protocol": "linear probe", "val": 0.80, "test": 0.75, "std": 0.02}
    # the fine-tune wins (ties too), or the probe is missing: the fine-tune
    assert transfer_accuracy(ft, {"val_acc": 0.70, "test_acc": 0.99})["test"] == 0.68
    assert transfer_accuracy(ft, None)["protocol"] == "fine-tune"
    # the test part never decides: a probe better on test but worse on validation loses
    assert transfer_accuracy(ft, {"val_acc": 0.60, "test_acc": 0.90})["protocol"] == "fine-tune"
    # the robustness check judges against the fine-tune alone
    assert transfer_accuracy(ft, {"val_acc": 0.80, "test_acc": 0.75}, truth="fine-tune")["test"] == 0.68
    with pytest.raises(ValueError, match="truth"):
        transfer_accuracy(ft, None, truth="test")


def _cell(target: str, model: str, acc: float, probe: float, knn: list, cka: list) -> dict:
    return {"target_name": target, "model_name": model, "target": target, "model": model, "input_size": 32,
            "ground_truth": {"test_mean": acc, "test_std": 0.01, "val_mean": acc, "lr_backbone": 0.01, "train_loss": 0.1},
            "probe": {"val_acc": probe, "test_acc": probe}, "cuts": ["layer1", "pre_logits"], "n_score": 100, "n_classes": 4,
            "defrost": {"best_cut": "pre_logits", "profile": {"pre_logits": [acc, acc]}}, "extract_seconds": 10.0,
            "scores": {"knn": {"cuts": knn, "higher_is_better": True, "seconds": 0.1},
                       "cka": {"cuts": cka, "higher_is_better": True, "seconds": 0.1}}}


def test_report_writes_the_chosen_default(tmp_path):
    from advisor.bench.report import write_report
    from advisor.ranking.advisor_score import load_spec

    cells = []
    for i, t in enumerate(("a", "b", "c")):
        for j, m in enumerate(("m1", "m2", "m3", "m4")):
            acc = 0.5 + 0.1 * j + 0.01 * i
            # knn orders the models as the ground truth does, cka backwards; m4's probe beats its fine-tune on validation
            cells.append(_cell(t, m, acc, 0.95 if m == "m4" else 0.2, [0.1 * j, 0.1 * j + 0.05], [1 - 0.1 * j, 0.9 - 0.1 * j]))
    path = write_report(cells, ["knn", "cka"], {"epochs": 1}, tmp_path, "advisor bench", {"date": "today"})
    report = path.read_text()
    assert "| date | today |" in report and "validation chose the probe for 3 of 12 pairs" in report
    spec = load_spec(tmp_path / "advisor_score.toml")
    assert spec.estimators == ("knn",) and "leave-one-target-out" in spec.evidence
    assert "## Against the fine-tune alone" in report


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc: a folder no one, root included, can write in")
@pytest.mark.parametrize("option", ["--out", "--runs-csv", "--ground-truth"])
def test_unwritable_outputs_fail_before_any_work(run_cli, tmp_path, option):
    # permission bits say nothing for root: the check writes a scratch file, so /proc fails even there
    target = "/proc/advisor_out" if option == "--out" else "/proc/advisor_out.csv"
    code, _, err = run_cli("bench", "--targets", str(tmp_path / "missing"), option, target)
    assert code == 2 and err.strip().count("\n") == 0 and option in err and "cannot write" in err


def test_one_seed_cannot_measure_the_noise():
    from advisor.bench import metrics as bm

    band = bm.noise_band({}, {"a": 0.60, "b": 0.65})  # no model has two seeds: no std was passed
    assert band["noise"] is None and not band["flagged"]
    assert bm.noise_band({}, {"a": 0.6, "b": 0.6})["flagged"]  # tied: still nothing to order


def test_provenance_counts_only_the_cells_own_runs(tmp_path):
    from advisor.bench.units import RUN_COLUMNS, provenance

    runs = tmp_path / "runs.csv"
    rows = [("k1", "2026-01-01T10:00:00Z"), ("k2", "2026-01-01T12:00:00Z"),
            ("other", "2026-01-02T09:00:00Z")]  # same model and target, another lr grid: not these cells' run
    with runs.open("w", newline="") as fh:
        w = csv.DictWriter(fh, RUN_COLUMNS)
        w.writeheader()
        for key, at in rows:
            w.writerow({"run_key": key, "kind": "finetune", "model_id": "m", "target_path": "t", "finished_at": at})
    cell = {"model": "m", "target": "t", "runs": [{"run_key": "k1", "seconds": 60.0}, {"run_key": "k2", "seconds": 30.0}]}
    prov = provenance([cell], runs, workers=2, device="cpu")
    assert prov["runs finished"].startswith("2026-01-01T10:00:00Z to 2026-01-01T12:00:00Z")
    assert prov["run time"] == "90 s summed over runs; / 2 worker(s) = 45 s" and prov["runs"] == "2 (1 model x target pairs)"
    # a cell stored before cells carried their runs' keys: no span rather than a wrong one
    old = {**cell, "runs": [{"seconds": 60.0}]}
    assert "runs finished" not in provenance([old], runs, workers=2, device="cpu")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return "\tZ" not in next(line for line in fh if line.startswith("State:"))
    except (FileNotFoundError, StopIteration):
        return False


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _start_with_workers(tiny, tmp_path, tag: str):
    """A bench with 2 worker processes, long enough to be stopped mid-way; returns (process, its workers)."""
    import time

    models, targets = tiny
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / f"home-{tag}"), "OMP_NUM_THREADS": "1"}
    args = _args(models, targets[:1], tmp_path, "--seeds", "0,1,2", "--lrs", "0.01,0.001", "--epochs", "40", tag=tag)
    args[args.index("--workers") + 1] = "2"
    # output to a file, not a pipe: a worker left behind would hold a pipe open and hang the test
    proc = subprocess.Popen([sys.executable, "-m", "advisor", *args], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=(tmp_path / f"{tag}.err").open("w"), start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        workers = [c for c in _children(proc.pid) if "multiprocessing" in open(f"/proc/{c}/cmdline").read()
                   and "resource_tracker" not in open(f"/proc/{c}/cmdline").read()]
        if len(workers) == 2:
            return proc, workers
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no 2 workers started: {(tmp_path / f'{tag}.err').read_text()[-2000:]}")


def _gone(pids, seconds: float = 15) -> bool:
    import time

    deadline = time.time() + seconds
    while time.time() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return not any(_alive(p) for p in pids)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_stop_with_a_killed_or_interrupted_bench(tiny, tmp_path):
    """kill -9 of the bench leaves no worker running on as an orphan; Ctrl-C to the terminal's process group,
    even while the workers are still importing, is one line (exit 130), no worker traceback, no worker left."""
    import signal
    import time

    proc, workers = _start_with_workers(tiny, tmp_path, "kill")
    proc.kill()
    proc.wait()
    try:
        assert _gone(workers), "the workers outlived their killed parent"
        proc, workers = _start_with_workers(tiny, tmp_path, "int")
        time.sleep(0.5)  # the workers are importing torch (seconds); the parent is past the milliseconds it starts them in
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
        err = (tmp_path / "int.err").read_text()
        assert proc.returncode == 130, err
        assert "interrupted" in err.strip().splitlines()[-1] and "Traceback" not in err and "terminate called" not in err
        assert _gone(workers)
    finally:
        for pid in workers:  # never leave a worker behind, whatever failed
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_run_that_fails_early_exits_2_without_aborting(tiny, tmp_path):
    """An unreadable image stops the runs while the scoring thread is inside torch: the error is one line and
    the process exits 2 (it used to abort, exit 134, when the interpreter ended under that thread)."""
    models, _ = tiny
    target = write_images(tmp_path / "bad", {"a": 10, "b": 10}, size=16)
    for name in ("a_000.png", "a_001.png"):
        (target / "a" / name).write_bytes(b"not an image")
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / "home-bad")}
    args = _args(models[:1], [target], tmp_path, "--seeds", "0", "--lrs", "0.01", "--defrost-cuts", "1", "-e", "knn,logme,cka", tag="bad")
    done = subprocess.run([sys.executable, "-m", "advisor", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stderr
    assert "unreadable image(s)" in done.stderr.strip().splitlines()[-1]
    assert "terminate called" not in done.stderr and "Traceback" not in done.stderr


def test_a_new_runs_csv_gets_the_runs_the_cache_already_has(run_cli, tiny, tmp_path, monkeypatch):
    """The runs CSV is the portable record: pointed at a new file, a fully cached bench writes its runs
    there too, so a fresh machine resumes from that file alone."""
    from advisor.bench.units import read_runs

    models, targets = tiny
    _home(monkeypatch, tmp_path, "home-a")
    args = _args(models[:1], targets[:1], tmp_path, "--seeds", "0", "--lrs", "0.01", "--defrost-cuts", "1", tag="a")
    code, _, err = run_cli(*args)
    assert code == 0, err
    first = {r["run_key"] for r in read_runs(tmp_path / "runs-a.csv")}
    other = [*args[:args.index("--runs-csv")], "--runs-csv", str(tmp_path / "runs-b.csv"), *args[args.index("--runs-csv") + 2:]]
    code, _, err = run_cli(*other)
    assert code == 0, err
    assert "added 3 finished run(s) found in the cache" in err and "runs to do" not in err
    assert {r["run_key"] for r in read_runs(tmp_path / "runs-b.csv")} == first
    _home(monkeypatch, tmp_path, "home-fresh")
    code, _, err = run_cli(*other)
    assert code == 0, err
    assert "imported 3 finished run(s)" in err and "runs to do" not in err
    _home(monkeypatch, tmp_path, "home-plan")  # --plan on a fresh machine counts the CSVs' runs and scores as done
    code, out, err = run_cli(*other, "--plan")
    assert code == 0, err
    assert "nothing left to compute" in out and "(1 done)" in out
