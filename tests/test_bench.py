"""`advisor bench` end to end on tiny random-init models and tiny image folders (plumbing, not quality):
ground-truth CSV, report, full caching on rerun, --report-only; the metrics against hand-computed
facts; one-line errors for bad inputs."""

from __future__ import annotations

import csv

import pytest
from conftest import file_id, write_images

ESTIMATORS = "logme,knn,cka"


def _bench_rows(home) -> int:
    import duckdb

    with duckdb.connect(str(home / "advisor.duckdb"), read_only=True) as con:
        return con.execute("SELECT count(*) FROM bench_runs").fetchone()[0]


@pytest.fixture
def tiny(tiny_weights, tmp_path):
    models = [file_id(tiny_weights["test_resnet"], "test_resnet"), file_id(tiny_weights["test_efficientnet"], "test_efficientnet")]
    flat = write_images(tmp_path / "flat", {"cat": 8, "dog": 8, "eel": 8}, size=16)
    split = tmp_path / "split"
    write_images(split / "train", {"a": 8, "b": 8}, size=16, seed=1)
    write_images(split / "test", {"a": 4, "b": 4}, size=16, seed=2)
    return models, [flat, split]


def test_bench_end_to_end_csv_report_and_full_cache(run_cli, tiny, tmp_path, advisor_home):
    models, targets = tiny
    out, gt = tmp_path / "out", tmp_path / "gt.csv"
    args = ["bench", "--models", ",".join(models), "--targets", ",".join(map(str, targets)), "--epochs", "1",
            "--seeds", "0,1", "--lrs", "0.01,0.001", "-e", ESTIMATORS, "--out", str(out), "--ground-truth", str(gt)]
    code, _, err = run_cli(*args)
    assert code == 0, err
    rows = list(csv.DictReader(gt.open()))
    assert sorted((r["target"], r["model"]) for r in rows) == sorted(
        (t, m) for t in ("flat", "split") for m in ("test_resnet", "test_efficientnet"))
    for r in rows:
        assert float(r["lr_backbone"]) in (0.01, 0.001)
        assert float(r["lr_head"]) == pytest.approx(10 * float(r["lr_backbone"]))
        assert 0.0 <= float(r["test_acc_mean"]) <= 1.0 and int(r["seeds_done"]) == 2
        assert r["best_defrost_cut"]
    split_rows = [r for r in rows if r["target"] == "split"]
    assert all(r["n_test"] == "8" for r in split_rows)  # the target's own test/ folder is the test set
    runs = _bench_rows(advisor_home)
    assert runs == 2 * 2 * 2 * 2  # models x targets x lrs x seeds
    report = (out / "bench_report.md").read_text()
    assert "## Weighted Kendall τ per target (score at each model's best cut)" in report
    for est in ESTIMATORS.split(","):
        assert f"\n| {est} | " in report
    assert "Leave-one-target-out mean τ" in report or "no leave-one-target-out" in report
    assert (out / "tau_per_estimator.png").stat().st_size > 5_000 and len(list(out.glob("scatter_*.png"))) == 2

    gt.unlink()
    code, _, err = run_cli(*args)  # rerun: every fine-tune cached
    assert code == 0, err
    assert _bench_rows(advisor_home) == runs and "all 4 fine-tunes cached" in err
    rerun = list(csv.DictReader(gt.open()))
    assert [r["test_acc_mean"] for r in rerun] == [r["test_acc_mean"] for r in rows]

    (out / "bench_report.md").unlink()
    code, _, err = run_cli(*args, "--report-only")
    assert code == 0, err
    assert (out / "bench_report.md").read_text().split("## Protocol")[1] == report.split("## Protocol")[1]
    assert _bench_rows(advisor_home) == runs


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
])
def test_bad_inputs_exit_2_with_one_line(run_cli, tiny, tmp_path, args, message):
    models, targets = tiny
    unlabelled = write_images(tmp_path / "unlabelled", {"x": 3}, size=16) / "x"  # a flat folder: no class sub-folders
    opts = {"--models": models[0], "--targets": str(targets[0]), "--epochs": "1", "--out": str(tmp_path / "o"),
            "--ground-truth": str(tmp_path / "g.csv")}
    opts.update({k: v.replace("{unlabelled}", str(unlabelled)) for k, v in zip(args[::2], args[1::2])})
    code, out, err = run_cli("bench", *[x for kv in opts.items() for x in kv])
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "g.csv").exists()


def test_default_config_lists_the_shared_models_and_targets():
    import tomllib

    from advisor.bench import DEFAULT_CONFIG
    from advisor.models import catalog

    raw = tomllib.loads(DEFAULT_CONFIG.read_text())
    assert len(raw["models"]) == 8 and set(raw["models"]) <= set(catalog())
    assert "data/pneumoniamnist/pneumoniamnist.npz" in raw["targets"] and len(raw["targets"]) == 6
    assert raw["protocol"]["backbone_lrs"] == [0.01, 0.001] and raw["protocol"]["seeds"] == [0, 1]


# ---------------------------------------------------------------- metrics by hand


def test_weighted_tau_top1_and_regret_by_hand():
    from advisor import bench_metrics as bm

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
    from advisor import bench_metrics as bm

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
    from advisor import bench_metrics as bm

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

    from advisor import finetune as ft
    from advisor.features import PRE_LOGITS
    from advisor.split import stages

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
