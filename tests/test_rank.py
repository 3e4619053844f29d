"""`advisor rank` end to end on tiny random-init models (plumbing, not quality)."""

import json
import math

import numpy as np
import pytest
from conftest import file_id

import advisor
from advisor.store import db


@pytest.fixture
def tiny_models(tiny_weights):
    return [file_id(tiny_weights["test_efficientnet"], "test_efficientnet"), file_id(tiny_weights["test_vit"], "test_vit")]


def _rank(probe, models, **kw):
    kw.setdefault("img_size", 32)
    return advisor.rank(str(probe), models, ["logme", "knn"], **kw)


def test_every_cut_scored_and_best_cut_reported(image_folder, tiny_models):
    result = _rank(image_folder, tiny_models)
    cuts_eff = {r["cut"] for r in result.cut_scores if r["model"] == tiny_models[0]}
    assert cuts_eff == {"blocks.0", "blocks.1", "blocks.2", "blocks.3", "blocks.4", "pre_logits"}
    assert len({r["cut"] for r in result.cut_scores if r["model"] == tiny_models[1]}) == 7  # 6 blocks + pre_logits
    for row in result.rows:
        assert row["cut"] in row["cut_scores"] and math.isfinite(row["score"])
        assert row["score"] == max(v for v in row["cut_scores"].values() if v is not None)
    assert sorted(r["rank"] for r in result.rows if r["estimator"] == "logme") == [1, 2]
    mf = result.models[0]
    assert mf.logits.shape == (24, 5)  # source-head logits kept for LEEP/NCE
    assert all(f.shape[0] == 24 and f.dtype == np.float32 for f in mf.features.values())


def test_warm_rerun_does_no_forward_pass(image_folder, tiny_models, monkeypatch):
    first = _rank(image_folder, tiny_models)
    import advisor.ranking.features

    def boom(*a, **k):
        raise AssertionError("forward pass on a warm run")

    monkeypatch.setattr(advisor.ranking.features, "extract", boom)
    monkeypatch.setattr("advisor.models.loading.build_model", boom)
    second = _rank(image_folder, tiny_models)
    assert [(r["model"], r["cut"], r["score"]) for r in second.rows] == [(r["model"], r["cut"], r["score"]) for r in first.rows]
    assert all(r["cached"] for r in second.rows)


def test_img_size_is_part_of_the_feature_key(image_folder, tiny_models):
    _rank(image_folder, tiny_models[:1], img_size=32)
    _rank(image_folder, tiny_models[:1], img_size=48)
    with db.connect(read_only=True) as con:
        assert con.execute("SELECT count(DISTINCT preproc_hash) FROM extractions").fetchone()[0] == 2


def test_failed_model_leaves_earlier_models_whole_and_resumes(image_folder, tiny_models, monkeypatch):
    import advisor.ranking.features

    real = advisor.ranking.features.extract
    calls = []

    def dies_on_second(model, *a, **k):
        calls.append(model.id)
        if len(calls) == 2:
            raise KeyboardInterrupt  # like Ctrl-C in the middle of model 2
        return real(model, *a, **k)

    monkeypatch.setattr(advisor.ranking.features, "extract", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        _rank(image_folder, tiny_models)
    with db.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM extractions").fetchone()[0] == 1
        assert con.execute("SELECT count(DISTINCT model_fp) FROM features").fetchone()[0] == 1
        assert con.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"  # Ctrl-C, not a failure
    monkeypatch.setattr(advisor.ranking.features, "extract", real)
    calls.clear()
    result = _rank(image_folder, tiny_models)
    assert [r["cached"] for r in result.rows if r["estimator"] == "logme"].count(True) == 1


def test_corrupt_image_is_skipped_counted_and_remembered(image_folder, tiny_models):
    from PIL import Image

    bad = image_folder / "cat" / "cat_999.jpg"
    Image.new("RGB", (24, 24), "red").save(bad, quality=90)
    bad.write_bytes(bad.read_bytes()[:200])  # a truncated JPEG among good PNGs
    result = _rank(image_folder, tiny_models[:1])
    assert len(result.probe) == 24 and [s[0] for s in result.probe.skipped] == [str(bad)]
    again = _rank(image_folder, tiny_models[:1])
    assert again.rows[0]["cached"] and len(again.probe.skipped) == 1


def test_cli_table_json_and_csv(image_folder, tiny_models, run_cli):
    args = ["rank", str(image_folder), "--models", ",".join(tiny_models), "-e", "logme", "-e", "knn", "--img-size", "32"]
    code, out, err = run_cli(*args)
    assert code == 0, err
    assert "best cut (logme)" in out and "knn" in out
    code, out, _ = run_cli(*args, "--json")
    rows = json.loads(out)
    assert {"model", "cut", "estimator", "score", "rank"} <= set(rows[0]) and len(rows) == 4
    code, out, _ = run_cli(*args, "--csv")
    assert out.splitlines()[0].startswith("rank,model,estimator,cut,score") and len(out.splitlines()) == 5


def _bad_inputs(tmp, weights):
    from conftest import write_images

    (tmp / "empty").mkdir()
    (tmp / "texts").mkdir()
    (tmp / "texts" / "a.txt").write_text("not an image")
    write_images(tmp / "single", {"only": 5})
    (tmp / "p.csv").write_text("path,label\nmissing.jpg,a\n")
    tiny = file_id(weights["test_resnet"], "test_resnet")
    return {
        "missing-path": (["rank", str(tmp / "nope")], "does not exist"),
        "empty-folder": (["rank", str(tmp / "empty")], "contains nothing"),
        "non-images": (["rank", str(tmp / "texts")], "contains no image files"),
        "single-class": (["rank", str(tmp / "single")], "single class"),
        "csv-missing-file": (["rank", str(tmp / "p.csv")], "missing file 'missing.jpg'"),
        "unknown-model": (["rank", "builtin:digits", "--models", "resnet5O"], "unknown model id 'resnet5O'"),
        "unknown-estimator": (["rank", "builtin:digits", "--models", tiny, "-e", "logmee"], "unknown estimator 'logmee'"),
        "offline-no-weights": (["rank", "builtin:digits", "--models", "resnet18"], "no weights for model 'resnet18'"),
        "wrong-arch": (["rank", "builtin:digits", "--img-size", "32", "--max-images", "20", "--models",
                        f"file:{weights['test_resnet']}?arch=test_efficientnet&num_classes=5"], "do not fit arch 'test_efficientnet'"),
        "missing-weights-file": (["rank", "builtin:digits", "--models", "file:/no/w.safetensors?arch=resnet18"], "does not exist"),
        "no-weights-dir": (["rank", "builtin:digits", "--weights-dir", "/no/dir", "--models", "x"], "not a folder"),
        "bad-max-images": (["rank", "builtin:digits", "--max-images", "0"], "at least 1"),
    }


BAD_INPUTS = [
    "missing-path", "empty-folder", "non-images", "single-class", "csv-missing-file", "unknown-model",
    "unknown-estimator", "offline-no-weights", "wrong-arch", "missing-weights-file", "no-weights-dir", "bad-max-images"]


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_inputs_exit_2_with_one_line(case, run_cli, tmp_path, tiny_weights, advisor_home, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args, message = _bad_inputs(tmp_path, tiny_weights)[case]
    code, out, err = run_cli(*args)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    if (advisor_home / "advisor.duckdb").exists():  # nothing half-written: no features, no scores
        with db.connect(read_only=True) as con:
            assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 0
            assert con.execute("SELECT count(*) FROM scores").fetchone()[0] == 0


def test_locked_cache_is_a_clear_error(image_folder, tiny_models, run_cli, monkeypatch):
    import multiprocessing as mp

    _rank(image_folder, tiny_models[:1])
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(db.cache_path()), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "0.5")
        code, _, err = run_cli("rank", str(image_folder), "--models", tiny_models[0], "--img-size", "32")
        assert code == 2 and "locked by another advisor process" in err and "ADVISOR_HOME" in err
    finally:
        release.set()
        holder.join(30)


def _hold_lock(path, ready, release):
    import duckdb

    con = duckdb.connect(path)
    ready.set()
    release.wait(30)
    con.close()


KILL_CHILD = """
import sys, time
import advisor, advisor.ranking.features
from advisor.ranking.progress import Progress

real = advisor.ranking.features.extract
def extract(model, *a, **k):
    if model.id == sys.argv[3]:
        print("second model started", flush=True)
        time.sleep(120)  # killed here, mid-model
    return real(model, *a, **k)
advisor.ranking.features.extract = extract
advisor.rank(sys.argv[1], sys.argv[2:4], ["knn"], img_size=32)
"""


def test_kill_9_mid_run_leaves_whole_rows_and_resumes(image_folder, tiny_models, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(image_folder), *tiny_models],
                             stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        assert child.stdout.readline().strip() == "second model started"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    with db.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM extractions").fetchone()[0] == 1
        assert con.execute("SELECT count(DISTINCT model_fp) FROM features").fetchone()[0] == 1
        assert con.execute("SELECT count(DISTINCT model_fp) FROM scores").fetchone()[0] == 1
    result = advisor.rank(str(image_folder), tiny_models, ["knn"], img_size=32)
    assert [r["cached"] for r in result.rows] in ([True, False], [False, True])


def test_reference_estimators_and_reference_keyed_scores(image_folder, tiny_models):
    labels = advisor.rank(str(image_folder), tiny_models[:1], ["cka", "ii", "ii-reverse"], img_size=32)
    assert labels.reference == "labels (one-hot)"
    rows = {r["estimator"]: r for r in labels.rows}
    assert 0 <= rows["cka"]["score"] <= 1 and rows["ii"]["higher_is_better"] is False
    assert rows["ii"]["score"] == min(v for v in rows["ii"]["cut_scores"].values())
    # the same model as its own reference: CKA 1 and II ~0 at the reference cut
    own = advisor.rank(str(image_folder), tiny_models[:1], ["cka", "ii"], img_size=32, reference=f"model:{tiny_models[0]}@blocks.2")
    cut = {(r["estimator"], r["cut"]): r["score"] for r in own.cut_scores}
    assert cut[("cka", "blocks.2")] == pytest.approx(1.0) and cut[("ii", "blocks.2")] < 0.2
    assert cut[("cka", "blocks.2")] != labels.cut_scores[0]["score"]
    with db.connect(read_only=True) as con:
        refs = {r[0] for r in con.execute("SELECT DISTINCT reference FROM scores WHERE estimator = 'cka'").fetchall()}
    assert len(refs) == 2 and "labels" in refs


@pytest.mark.parametrize("reference, message", [
    ("model:file:/no/such.safetensors?arch=test_resnet", "does not exist"),
    ("nonsense", "unknown --reference"),
])
def test_bad_reference_is_one_line(run_cli, image_folder, tiny_models, reference, message):
    code, _, err = run_cli("rank", str(image_folder), "--models", tiny_models[0], "-e", "cka", "--img-size", "32", "--reference", reference)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_reference_cut_must_exist(image_folder, tiny_models):
    with pytest.raises(advisor.AdvisorError, match="has no cut 'nope'"):
        advisor.rank(str(image_folder), tiny_models[:1], ["cka"], img_size=32, reference=f"model:{tiny_models[0]}@nope")


def test_scratch_reference_is_trained_once_seeded_and_cached(image_folder, tiny_models, monkeypatch, tmp_path):
    from advisor.ranking import scratch

    assert scratch.EPOCHS == 30  # the recipe users get; 2 epochs here: caching and seeding do not depend on the length
    monkeypatch.setattr(scratch, "EPOCHS", 2)
    first = advisor.rank(str(image_folder), tiny_models[:1], ["cka"], img_size=32, reference="scratch")
    assert "2 epochs" in first.reference and "resnet20_cifar" in first.reference

    def boom(*a, **k):
        raise AssertionError("retrained a cached scratch reference")

    with monkeypatch.context() as patch:
        patch.setattr(scratch, "train_scratch", boom)
        again = advisor.rank(str(image_folder), tiny_models[:1], ["cka"], img_size=32, reference="scratch")
    assert [r["score"] for r in again.cut_scores] == [r["score"] for r in first.cut_scores]
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "other-home"))  # a fresh cache retrains: same seed, same numbers
    fresh = advisor.rank(str(image_folder), tiny_models[:1], ["cka"], img_size=32, reference="scratch")
    assert [r["score"] for r in fresh.cut_scores] == pytest.approx([r["score"] for r in first.cut_scores], abs=1e-5)


def test_scratch_reference_needs_labels(tmp_path, tiny_models):
    from conftest import write_images

    write_images(tmp_path / "flat", {"x": 6})
    with pytest.raises(advisor.AdvisorError, match="has none"):
        advisor.rank(str(tmp_path / "flat" / "x"), tiny_models[:1], ["cka"], img_size=32, reference="scratch")
