"""`advisor validate`: real (tiny, CPU, few-step) fine-tunes end to end, T_FB from the actual
parameters, caching/resume, divergence, and one-line errors for bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import file_id, kill_minus_9_when

REPO = Path(__file__).resolve().parents[1]


def _runs(home: Path) -> list[tuple]:
    import duckdb

    db = home / "advisor.duckdb"
    if not db.exists():
        return []
    for _ in range(50):
        try:
            with duckdb.connect(str(db), read_only=True) as con:
                return con.execute("SELECT cut, seed, status, reason, val_acc, tfb_mean, tfb_layers, history FROM validation_runs").fetchall()
        except duckdb.IOException:  # another process holds the write lock for a moment
            time.sleep(0.1)
    raise RuntimeError("cache stayed locked")


@pytest.fixture
def resnet_id(tiny_weights):
    return file_id(tiny_weights["test_resnet"], "test_resnet")


def test_defrost_end_to_end_records_every_run(run_cli, image_folder, resnet_id, advisor_home):
    code, out, err = run_cli("validate", str(image_folder), "--models", resnet_id, "--cuts", "layer4,pre_logits",
                             "--epochs", "2", "--repeats", "2", "--json", "-e", "logme")
    assert code == 0, err
    data = json.loads(out)
    assert [(r["cut"], r["seed"]) for r in data["runs"]] == [("layer4", 0), ("layer4", 1), ("pre_logits", 0), ("pre_logits", 1)]
    for r in data["runs"]:
        assert r["status"] == "done" and 0.0 <= r["val_acc"] <= 1.0
        assert [h["epoch"] for h in r["history"]] == [1, 2]
        assert r["tfb_mean"] is None  # defrost: transferred layers are frozen, T_FB undefined
    assert "hold-out" in data["split"]
    best = next(iter(data["best"].values()))
    assert best["best"] in ("layer4", "pre_logits") and {best["from"], best["to"]} == {"layer4", "pre_logits"}
    stored = _runs(advisor_home)
    assert len(stored) == 4 and all(len(json.loads(h)) == 2 for *_, h in stored)


def test_rerun_skips_finished_runs(run_cli, image_folder, resnet_id, advisor_home):
    args = ("validate", str(image_folder), "--models", resnet_id, "--cuts", "pre_logits", "--epochs", "1", "--repeats", "2", "--json", "-e", "knn")
    code, out, _ = run_cli(*args)
    first = json.loads(out)["runs"]
    code, out, _ = run_cli(*args)
    second = json.loads(out)["runs"]
    assert code == 0 and all(r["cached"] for r in second) and not any(r["cached"] for r in first)
    assert [r["val_acc"] for r in first] == [r["val_acc"] for r in second]
    assert len(_runs(advisor_home)) == 2


def test_same_seed_gives_the_same_run(image_folder, resnet_id, tmp_path, monkeypatch):
    from advisor.validation.validate import validate

    accs = []
    for home in ("a", "b"):
        monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / home))
        res = validate(str(image_folder), [resnet_id], cuts=["layer4"], epochs=2, estimators=["knn"])
        accs.append([h["loss"] for h in res.rows[0].history])
    assert accs[0] == accs[1]


def test_tfb_is_one_when_pretrained_equals_random_init(image_folder, tmp_path, advisor_home):
    """θ_A = θ_r (the 'pretrained' file is the seeded random init itself) → every layer's
    D(θ_r, θ_FB) / D(θ_A, θ_FB) = 1 exactly; other weights give something else."""
    import timm
    import torch
    from safetensors.torch import save_file

    from advisor.validation.validate import validate

    torch.manual_seed(0)
    m = timm.create_model("test_resnet", num_classes=3)
    same = tmp_path / "seeded.safetensors"
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(same))
    torch.manual_seed(123)
    other = tmp_path / "other.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet", num_classes=3).state_dict().items()}, str(other))
    res = validate(str(image_folder), [f"file:{same}?arch=test_resnet&num_classes=3", f"file:{other}?arch=test_resnet&num_classes=3"],
                   cuts=["layer4"], protocol="finetune", freeze="layer2", epochs=1, seed=0, estimators=["knn"])
    by_model = {r.model.split("/")[-1].split("?")[0]: r for r in res.rows}
    assert by_model["seeded.safetensors"].status == "done"
    assert by_model["seeded.safetensors"].tfb_mean == pytest.approx(1.0, abs=1e-9)
    assert by_model["other.safetensors"].tfb_mean != pytest.approx(1.0, abs=1e-3)
    layers = {json.dumps(sorted(json.loads(t).values())) for *_, t, _h in _runs(advisor_home) if t}
    assert any(set(json.loads(v)) == {1.0} for v in layers)  # every trained transferred layer: exactly 1
    # only layers after the frozen stage (layer3, layer4) are transferred-and-trained
    keys = [k for *_, t, _h in _runs(advisor_home) if t for k in json.loads(t)]
    assert keys and all(k.startswith(("layer3.", "layer4.")) for k in keys)


def test_layer_transferability_by_hand():
    from advisor.numeric.transferability import layer_transferability, network_transferability

    r = {"l.weight": np.zeros((2, 1)), "l.bias": np.zeros(1), "m.weight": np.ones((1, 1))}
    a = {"l.weight": np.ones((2, 1)), "l.bias": np.ones(1), "m.weight": np.ones((1, 1))}
    fb = {"l.weight": np.array([[2.0], [4.0]]), "l.bias": np.array([2.0]), "m.weight": np.ones((1, 1))}
    t = layer_transferability(r, a, fb, ["l", "m"])
    # l: D(r, fb) = (2 + 4 + 2) / 3 = 8/3; D(a, fb) = (1 + 3 + 1) / 3 = 5/3 → 8/5; m did not move → inf
    assert t["l"] == pytest.approx(1.6) and t["m"] == float("inf")
    assert network_transferability(t) == pytest.approx(1.6)


def test_divergence_is_recorded_as_failed_not_a_crash(run_cli, image_folder, resnet_id, advisor_home):
    code, out, err = run_cli("validate", str(image_folder), "--models", resnet_id, "--cuts", "layer4", "--epochs", "6",
                             "--lr", "1e30", "--json", "-e", "knn")
    assert code == 0, err
    run = json.loads(out)["runs"][0]
    assert run["status"] == "failed" and "loss became" in run["reason"] and "lower --lr" in run["reason"]
    assert _runs(advisor_home)[0][2] == "failed"


def test_finetune_uses_plested_gedeon_2019_table2_decay_epochs():
    from advisor.validation.finetune import decay_epochs_for, finetune

    assert [decay_epochs_for(n) for n in (10, 25, 50, 100, 250, 500, 1300)] == [10, 5, 3, 3, 3, 0, 30]
    assert decay_epochs_for(8) == 10 and decay_epochs_for(5000) == 30
    p = finetune(per_class=60, epochs=6)
    assert (p.lr, p.lr_transferred, p.decay_epochs, p.epochs) == (0.01, 0.001, 3, 6)


def test_weighted_tau_limits():
    from advisor.validation.agreement import weighted_tau

    acc = [0.9, 0.7, 0.5, 0.3]
    assert weighted_tau(acc, [4, 3, 2, 1]) == pytest.approx(1.0)
    assert weighted_tau(acc, [1, 2, 3, 4]) == pytest.approx(-1.0)
    assert weighted_tau([0.5], [1.0]) is None


def test_top_validates_the_best_of_the_last_rank(run_cli, image_folder, tiny_weights):
    ids = [file_id(tiny_weights["test_resnet"], "test_resnet"), file_id(tiny_weights["test_efficientnet"], "test_efficientnet")]
    code, out, err = run_cli("rank", str(image_folder), "--models", ",".join(ids), "-e", "knn", "--json")
    assert code == 0, err
    best = next(r["model"] for r in json.loads(out) if r["rank"] == 1)
    code, out, err = run_cli("validate", str(image_folder), "--top", "1", "--cuts", "pre_logits", "--epochs", "1", "--json", "-e", "knn")
    assert code == 0, err
    assert {r["model"] for r in json.loads(out)["runs"]} == {best}


def test_vit_cannot_be_split_and_says_what_to_do(tiny_weights, image_folder, run_cli, advisor_home):
    vit = file_id(tiny_weights["test_vit"], "test_vit")
    code, out, err = run_cli("validate", str(image_folder), "--models", vit, "--cuts", "blocks.2", "--epochs", "1")
    assert code == 2 and "cannot be split" in err and len(err.strip().splitlines()) == 1
    assert _runs(advisor_home) == []


@pytest.mark.parametrize("args, message", [
    (["--top", "2"], "no finished `advisor rank`"),
    ([], "nothing to validate"),
    (["--models", "{m}", "--cuts", "layer9"], "has no cut layer9"),
    (["--models", "{m}", "--protocol", "warp"], "unknown protocol"),
    (["--models", "{m}", "--repeats", "0"], "--repeats must be at least 1, got 0"),
    (["--models", "{m}", "--lr", "-1"], "--lr must be a positive finite number"),
    (["--models", "{m}", "--freeze", "layer2"], "--freeze applies to --protocol finetune"),
    (["--models", "{m}", "--protocol", "finetune", "--freeze", "nope"], "no cut 'nope'"),
    (["--models", "no-such-model-xyz"], "no-such-model-xyz"),
])
def test_bad_inputs_exit_2_with_one_line(run_cli, image_folder, resnet_id, advisor_home, args, message):
    code, out, err = run_cli("validate", str(image_folder), *[a.replace("{m}", resnet_id) for a in args], "--epochs", "1")
    assert code == 2, (out, err)
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert _runs(advisor_home) == []


def test_a_class_with_one_image_is_a_clear_error(run_cli, tmp_path, resnet_id):
    from conftest import write_images

    probe = write_images(tmp_path / "p", {"a": 5, "b": 1})
    code, _, err = run_cli("validate", str(probe), "--models", resnet_id)
    assert code == 2 and "at least 2 images per class" in err


@pytest.mark.skipif(sys.platform == "win32", reason="kill -9")
def test_kill_minus_9_loses_at_most_the_run_in_progress(image_folder, resnet_id, tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ADVISOR_HOME": str(home), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "advisor", "validate", str(image_folder), "--models", resnet_id, "--cuts", "layer3",
           "--epochs", "20", "--repeats", "12", "-e", "knn"]  # runs long enough that a loaded machine's poll sees one mid-way
    kill_minus_9_when(cmd, env, REPO, lambda: len(_runs(home)) >= 2)
    before = _runs(home)
    assert 2 <= len(before) < 12, "the process should be killed mid-way"
    assert all(r[2] == "done" for r in before)  # only whole runs
    result = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)["runs"]
    assert len(runs) == 12 and sum(r["cached"] for r in runs) == len(before)
    assert len(_runs(home)) == 12


def test_layers_validate_shows_the_measured_profile(run_cli, image_folder, resnet_id, tmp_path):
    png = tmp_path / "layers.png"
    code, out, err = run_cli("layers", resnet_id, str(image_folder), "-e", "cka", "--validate", "--epochs", "1",
                             "--json", "--plot", str(png))
    assert code == 0, err
    data = json.loads(out)
    measured = data["measured"]
    assert set(measured) == {"layer1", "layer2", "layer3", "layer4", "pre_logits"}  # Gerace et al. 2023's default cut range
    assert all(0 <= m["mean"] <= 1 and m["runs"] == 1 for m in measured.values())
    assert png.stat().st_size > 10_000
    code, out, err = run_cli("layers", resnet_id, str(image_folder), "-e", "cka", "--validate", "--epochs", "1")
    assert code == 0 and "measured acc (defrost)" in out and "★" in out


def test_rank_and_layers_show_the_domain_forecast(run_cli, image_folder, resnet_id):
    code, out, err = run_cli("rank", str(image_folder), "--models", resnet_id, "-e", "knn", "--domain")
    assert code == 0, err
    assert "domain forecast vs imagenet" in out and "predicted T_FB" in out and "freezing:" in out
    code, out, err = run_cli("layers", resnet_id, str(image_folder), "-e", "cka", "--domain", "--json")
    assert code == 0, err
    dom = json.loads(out)["domain"]
    assert dom["source"] == "imagenet" and dom["N"] == 24 and dom["forecast"]["T_FB"] > 0


def test_top_picks_add_the_cut_rank_chose(resnet_id):
    from advisor.validation.finetune import defrost
    from advisor.models.sources import ResolveContext, resolve_model
    from advisor.validation.validate import prepare_model

    resolved = resolve_model(resnet_id, ResolveContext(offline=True))
    _, _, default = prepare_model(resnet_id, resolved, None, defrost())
    _, _, with_ranked = prepare_model(resnet_id, resolved, None, defrost(), ranked_cut="act1")
    _, _, explicit = prepare_model(resnet_id, resolved, ["layer4"], defrost(), ranked_cut="act1")
    assert "act1" not in default and with_ranked == ["act1"] + default and explicit == ["layer4"]


def test_best_cut_prefers_the_deepest_of_equal_accuracies():
    from advisor.validation.result import best_cut

    assert best_cut({"a": (0.5, 0, 1), "b": (0.7, 0, 1), "c": (0.7, 0, 1), "d": (0.6, 0, 1)}) == "c"
    assert best_cut({"a": (0.9, 0, 1), "b": (0.7, 0, 1)}) == "a"
    assert best_cut({}) is None


def test_nan_weights_are_named_not_blamed_on_the_split(run_cli, image_folder, tmp_path):
    import timm
    import torch
    from safetensors.torch import save_file
    from conftest import assert_one_line_error

    state = timm.create_model("test_resnet", num_classes=5).state_dict()
    state = {k: (torch.full_like(v, float("nan")) if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    path = tmp_path / "nan.safetensors"
    save_file(state, str(path))
    result = run_cli("validate", str(image_folder), "-m", file_id(path, "test_resnet"), "--epochs", "1")
    assert_one_line_error(result, "produces non-finite features (NaN/inf)", "check the weights file")
