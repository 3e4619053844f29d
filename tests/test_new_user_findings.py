"""Faults a fresh user found by hand (a second round on issue 13's kinds): each is now a result or
one line with exit 2 (SIGTERM: one line, exit 143)."""

from __future__ import annotations

import json

import os
import signal

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, file_id, write_images




def test_validate_cap_near_the_training_size_and_below_the_classes(tmp_path, run_cli, tiny_weights):
    """--max-images just under the training part used to be an internal error from scikit-learn."""
    from advisor.data.splits import stratified_take

    labels = np.repeat(np.arange(10), 5)  # 50 images, 10 classes
    keep = stratified_take(labels, 45, 0)  # 5 left over < 10 classes: sklearn refuses, the quota rule serves
    assert len(keep) == 45 and set(labels[keep]) == set(range(10))
    assert stratified_take(labels, 20, 0).tolist() == stratified_take(labels, 20, 0).tolist()  # seeded
    from advisor.errors import AdvisorError

    with pytest.raises(AdvisorError, match="fewer than the 10 classes"):
        stratified_take(labels, 5, 0)


@pytest.mark.parametrize("device", ["tpu", "CPU", "meta", "cuda:x"])
def test_device_values_are_checked(tmp_path, run_cli, image_folder, tiny_weights, device):
    assert_one_line_error(run_cli("validate", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                                  "--epochs", "1", "--device", device), "--device")


@pytest.mark.parametrize("lr", ["inf", "-inf"])
def test_infinite_learning_rate_is_refused(run_cli, image_folder, tiny_weights, lr):
    assert_one_line_error(run_cli("validate", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"), "--epochs", "1", "--lr", lr), "--lr")


def test_top_and_models_together_are_refused(run_cli, image_folder, tiny_weights):
    assert_one_line_error(run_cli("validate", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"), "--top", "2"))


@pytest.mark.parametrize("value", ["", ",", " , "])
def test_empty_models_list_is_not_the_default_models(run_cli, image_folder, value):
    assert_one_line_error(run_cli("rank", str(image_folder), "--models", value, "-e", "knn"), "names no model")


def test_building_a_reference_cannot_take_a_shipped_name(tmp_path, run_cli, image_folder):
    assert_one_line_error(run_cli("domain", "build-ref", "imagenet", str(image_folder)), "shipped", "imagenet-mine")


def test_folder_mixing_loose_images_and_class_folders_is_refused(tmp_path, run_cli):
    root = write_images(tmp_path / "mixed", {"a": 3, "b": 3})
    (root / "a" / "a_000.png").rename(root / "loose.png")
    assert_one_line_error(run_cli("rank", str(root), "-e", "knn"), "mixes 1 loose image")


def test_csv_listing_an_image_twice_is_refused(tmp_path, run_cli):
    root = write_images(tmp_path / "p", {"a": 3, "b": 3})
    files = sorted(root.rglob("*.png"))
    rows = [f"{f},{f.parent.name}" for f in files]
    (tmp_path / "dup.csv").write_text("\n".join(rows + rows[:1]) + "\n")
    (tmp_path / "clash.csv").write_text("\n".join(rows + [f"{files[0]},b"]) + "\n")
    (tmp_path / "dir.csv").write_text("\n".join(rows + [f"{root / 'a'},a"]) + "\n")
    for name, words in (("dup.csv", "twice"), ("clash.csv", "different labels"), ("dir.csv", "names a folder")):
        assert_one_line_error(run_cli("rank", str(tmp_path / name), "-e", "knn"), words)


def test_nan_weights_fail_their_model_and_store_nothing(tmp_path, run_cli, image_folder, tiny_weights):
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_weights["test_resnet"]))
    sd = {k: (v * float("nan") if v.is_floating_point() and k.endswith("weight") else v) for k, v in sd.items()}
    bad = tmp_path / "nan.safetensors"
    save_file(sd, str(bad))
    assert_one_line_error(run_cli("rank", str(image_folder), "--models", file_id(bad, "test_resnet"), "-e", "knn"), "non-finite features")
    from advisor.store import db

    with db.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 0


def test_sigterm_ends_a_command_in_one_line_with_exit_143(monkeypatch, capsys):
    import advisor.cli.app as cli

    def invoke(argv):  # a command that gets SIGTERM mid-work
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the signal should have ended the command")

    monkeypatch.setattr(cli, "_invoke", invoke)
    old = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with pytest.raises(SystemExit) as exc:
            cli.main(["rank", "x"])
    finally:
        signal.signal(signal.SIGTERM, old)
    assert exc.value.code == 143
    err = capsys.readouterr().err
    assert err.strip() == cli.TERMINATED


def test_advisor_score_is_named_where_estimators_are_listed(run_cli):
    """rank's default is a combination, not a registered estimator: `advisor plugins` and the
    unknown-estimator hint still name it (a new user looked for it in both)."""
    code, out, _ = run_cli("plugins")
    assert code == 0 and "advisor-score (rank's default, -e advisor-score)" in out
    code, out, _ = run_cli("plugins", "--json")
    assert code == 0 and "advisor-score" in json.loads(out)["default_estimator"]
    code, _, err = run_cli("rank", "builtin:digits", "-e", "advisor-scor")
    assert code == 2 and "did you mean 'advisor-score'?" in err and "choose from: advisor-score (rank's default combination)" in err
