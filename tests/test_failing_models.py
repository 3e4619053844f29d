"""One failing candidate never loses the whole run (issue 13, kind 6), and model ids that are not
ids (unknown prefixes, bare paths) are refused with a hint.

Each model succeeds or fails on its own rows with the reason; `advisor rank` exits 0 when at least
one model was ranked and prints one line per model that was not, exit 2 (one line) when none was.
Tiny random-init models only (plumbing, not quality): distilled DeiT and LeViT (two heads,
``get_classifier()`` is a tuple), ViTs at another ``--img-size`` (position embeddings resampled),
a flattened-head CNN that cannot take another size.
"""

import json

import pytest
from conftest import file_id

import advisor
from advisor.store import db
from advisor.errors import AdvisorError


@pytest.fixture(autouse=True)
def offline_empty_hub(tmp_path, monkeypatch):
    """No hub, and an empty hub cache: a timm name has no weights anywhere."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def odd_weights(tmp_path_factory):
    """Random-init weights of models with two heads and fixed input sizes, as file: ids."""
    import timm
    import torch
    from safetensors.torch import save_file

    from advisor.models.loading import register_plugin_architectures

    register_plugin_architectures()
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("odd-weights")
    specs = {
        # name: (arch, build kwargs, the id's kwargs)
        "deit_distilled": ("deit_tiny_distilled_patch16_224", dict(img_size=32, depth=2, num_classes=5), "img_size=32&depth=2&num_classes=5"),
        "levit": ("levit_128s", dict(img_size=64, num_classes=5), "img_size=64&num_classes=5"),
        "flat_cnn": ("ccexam_mnist_cnn", dict(), ""),
    }
    ids, modules = {}, {}
    for name, (arch, kwargs, query) in specs.items():
        model = timm.create_model(arch, **kwargs)
        path = d / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        ids[name] = f"file:{path}?arch={arch}" + (f"&{query}" if query else "")
        modules[name] = model
    return ids


def _rows(result_or_json, estimator="logme"):
    rows = result_or_json.rows if hasattr(result_or_json, "rows") else result_or_json
    return {r["model"]: r for r in rows if r["estimator"] == estimator}


def _one_line(err):
    lines = err.strip().splitlines()
    return len(lines) == 1 and "Traceback" not in err


# ---------------------------------------------------------------- one model fails, the others are ranked


def test_missing_weights_offline_fails_only_that_model(image_folder, tiny_weights, run_cli):
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("rank", str(image_folder), "--models", f"{good},resnet18.a1_in1k", "-e", "logme", "--img-size", "32", "--json")
    assert code == 0, err
    rows = _rows(json.loads(out))
    assert rows[good]["rank"] == 1 and rows[good]["score"] is not None and rows[good]["model_error"] is None
    bad = rows["resnet18.a1_in1k"]
    assert bad["score"] is None and bad["rank"] is None and bad["error"].startswith("no weights for model 'resnet18.a1_in1k'")
    assert bad["model_error"] == bad["error"]
    not_ranked = [line for line in err.splitlines() if "not ranked" in line]
    assert not_ranked == [line for line in not_ranked if line.startswith("warning: not ranked: resnet18.a1_in1k: no weights")]
    assert len(not_ranked) == 1 and "Traceback" not in err


def test_the_table_shows_the_failed_model_and_one_line_says_why(image_folder, tiny_weights, run_cli):
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("rank", str(image_folder), "--models", f"resnet18.a1_in1k,{good}", "--img-size", "32")
    assert code == 0, err
    assert "resnet18.a1_in1k" in out and "failed" in out
    assert sum("resnet18.a1_in1k" in line for line in err.splitlines()) == 1  # one line, not one per estimator


def test_api_reports_failed_models(image_folder, tiny_weights):
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    result = advisor.rank(str(image_folder), [good, "resnet18.a1_in1k", "file:/no/w.safetensors?arch=resnet18"], ["logme", "knn"], img_size=32)
    assert list(result.failed) == ["resnet18.a1_in1k", "file:/no/w.safetensors?arch=resnet18"]
    assert "does not exist" in result.failed["file:/no/w.safetensors?arch=resnet18"]
    assert [mf.model_id for mf in result.models] == [good]
    assert len(result.rows) == 6 and [r["rank"] for r in result.rows if r["model"] == good] == [1, 1]
    with db.connect(read_only=True) as con:  # the run is recorded as done, with the failures in its result
        status, stored = con.execute("SELECT status, result FROM runs").fetchone()
    assert status == "done" and sum(r["model_error"] is not None for r in json.loads(stored)) == 4


def test_none_ranked_exits_2_with_one_line(image_folder, run_cli):
    code, out, err = run_cli("rank", str(image_folder), "--models", "resnet18.a1_in1k,file:/no/w.safetensors?arch=resnet18")
    assert code == 2 and _one_line(err) and out == ""
    assert err.startswith("error: none of the 2 models could be ranked: resnet18.a1_in1k: no weights")
    assert "file:/no/w.safetensors?arch=resnet18: weights file '/no/w.safetensors' does not exist" in err


def test_a_single_failing_model_is_its_own_error(image_folder, run_cli, advisor_home):
    code, out, err = run_cli("rank", str(image_folder), "--models", "resnet18.a1_in1k")
    assert code == 2 and _one_line(err) and err.startswith("error: no weights for model 'resnet18.a1_in1k'")
    if (advisor_home / "advisor.duckdb").exists():
        with db.connect(read_only=True) as con:
            assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 0


def test_a_crash_inside_one_model_fails_its_row(image_folder, tiny_weights, monkeypatch):
    """An unexpected exception in one model's forward pass (a library bug, an odd architecture)."""
    import advisor.ranking.features

    real = advisor.ranking.features.extract

    def crashes_for_resnet(model, *a, **k):
        if model.resolved.arch == "test_resnet":
            raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (1x3 and 5x2)")
        return real(model, *a, **k)

    monkeypatch.setattr(advisor.ranking.features, "extract", crashes_for_resnet)
    models = [file_id(tiny_weights["test_resnet"], "test_resnet"), file_id(tiny_weights["test_efficientnet"], "test_efficientnet")]
    result = advisor.rank(str(image_folder), models, ["logme"], img_size=32)
    assert result.failed == {models[0]: f"model '{models[0]}' failed: RuntimeError: mat1 and mat2 shapes cannot be multiplied (1x3 and 5x2)"}
    assert _rows(result)[models[1]]["rank"] == 1
    monkeypatch.setattr(advisor.ranking.features, "extract", real)  # the fix: a rerun ranks both, the good one from the cache
    again = advisor.rank(str(image_folder), models, ["logme"], img_size=32)
    assert not again.failed and _rows(again)[models[1]]["cached"] and not _rows(again)[models[0]]["cached"]


def test_wrong_architecture_and_unknown_architecture_fail_their_rows(image_folder, tiny_weights):
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    wrong = f"file:{tiny_weights['test_resnet']}?arch=test_efficientnet&num_classes=5"
    unknown = f"file:{tiny_weights['test_resnet']}?arch=no_such_arch_v9"
    result = advisor.rank(str(image_folder), [wrong, good, unknown], ["logme"], img_size=32)
    assert "do not fit arch 'test_efficientnet'" in result.failed[wrong]
    assert "unknown architecture 'no_such_arch_v9'" in result.failed[unknown]
    assert _rows(result)[good]["rank"] == 1


@pytest.mark.parametrize("content", [b"", b"\x00garbage" * 100, b"PK\x03\x04 not a state dict"])
def test_unreadable_weights_files_fail_their_rows(content, image_folder, tiny_weights, tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(content)
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    bad_id = f"file:{bad}?arch=test_resnet&num_classes=5"
    result = advisor.rank(str(image_folder), [bad_id, good], ["logme"], img_size=32)
    assert result.failed[bad_id].startswith(f"cannot read weights file '{bad}'")
    assert _rows(result)[good]["rank"] == 1


def test_hub_and_local_dir_ids_without_files_fail_their_rows(image_folder, tiny_weights, tmp_path):
    broken = tmp_path / "saved"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    (broken / "model.safetensors").write_bytes(b"")
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    ids = ["hf-hub:timm/resnet18.a1_in1k", f"local-dir:{broken}", good]
    result = advisor.rank(str(image_folder), ids, ["logme"], img_size=32)
    assert set(result.failed) == set(ids[:2]) and _rows(result)[good]["rank"] == 1
    assert "timm/resnet18.a1_in1k" in result.failed[ids[0]]
    assert "is not a timm config.json" in result.failed[ids[1]]


def test_a_failing_reference_model_still_stops_the_run(image_folder, tiny_weights, run_cli):
    """The reference is not a candidate: without it no CKA/II score means anything."""
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("rank", str(image_folder), "--models", good, "-e", "cka", "--reference", "model:resnet18.a1_in1k",
                             "--img-size", "32")
    assert code == 2 and _one_line(err) and "no weights for model 'resnet18.a1_in1k'" in err


def test_layers_on_a_failing_model_is_one_line(image_folder, run_cli):
    code, out, err = run_cli("layers", "resnet18.a1_in1k", str(image_folder))
    assert code == 2 and _one_line(err) and "no weights for model 'resnet18.a1_in1k'" in err


# ---------------------------------------------------------------- models with two heads


def test_distilled_deit_and_levit_are_ranked(image_folder, tiny_weights, odd_weights, run_cli):
    """get_classifier() is a (head, head_dist) pair: logits come from forward_head (eval: the mean
    of both heads), so extraction, LEEP (logits) and DEPARA (attributions) all work."""
    import timm

    assert isinstance(timm.create_model("levit_128s", img_size=64).get_classifier(), tuple)
    models = [odd_weights["deit_distilled"], odd_weights["levit"], file_id(tiny_weights["test_resnet"], "test_resnet")]
    code, out, err = run_cli("rank", str(image_folder), "--models", ",".join(models), "-e", "logme", "-e", "leep", "-e", "depara", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert all(r["score"] is not None and r["error"] is None for r in rows), [r for r in rows if r["error"]]
    assert {r["model"] for r in rows} == set(models)


def test_distilled_deit_layers(image_folder, odd_weights, run_cli):
    code, out, err = run_cli("layers", odd_weights["deit_distilled"], str(image_folder), "-e", "logme", "--json")
    assert code == 0, err
    profile = json.loads(out)
    assert [c["cut"] for c in profile["cuts"]] == ["blocks.0", "blocks.1", "pre_logits"]
    assert all(c["logme"] is not None for c in profile["cuts"]) and profile["recommendation"] is not None


# ---------------------------------------------------------------- --img-size on fixed-size models


def test_vit_at_another_img_size_gets_resampled_position_embeddings(tiny_weights):
    from safetensors.torch import load_file
    from timm.layers import resample_abs_pos_embed

    from advisor.models.loading import build_model
    from advisor.models.sources import resolve_model

    vit = file_id(tiny_weights["test_vit"], "test_vit")
    loaded = build_model(resolve_model(vit), img_size=64)
    assert loaded.data_config["input_size"] == (3, 64, 64) and loaded.native_config["input_size"] == (3, 160, 160)
    trained = load_file(str(tiny_weights["test_vit"]))["pos_embed"]  # 1 class token + 10 x 10 patches
    assert tuple(trained.shape[:2]) == (1, 101) and tuple(loaded.module.pos_embed.shape[:2]) == (1, 17)  # 1 + 4 x 4
    expected = resample_abs_pos_embed(trained, new_size=[4, 4], num_prefix_tokens=1)
    assert (loaded.module.pos_embed.detach() == expected).all()


def test_vits_rank_at_another_img_size_and_are_cached_per_size(image_folder, tiny_weights, odd_weights, run_cli):
    models = [file_id(tiny_weights["test_vit"], "test_vit"), odd_weights["deit_distilled"], file_id(tiny_weights["test_resnet"], "test_resnet")]
    for size in ("64", "48"):
        code, out, err = run_cli("rank", str(image_folder), "--models", ",".join(models), "--img-size", size, "--json")
        assert code == 0 and "not ranked" not in err, err
        assert all(r["score"] is not None for r in json.loads(out))
    code, out, err = run_cli("rank", str(image_folder), "--models", ",".join(models), "--img-size", "64", "--json")
    assert all(r["cached"] for r in json.loads(out))
    with db.connect(read_only=True) as con:  # 3 models x 2 sizes
        assert con.execute("SELECT count(*) FROM extractions").fetchone()[0] == 6


def test_a_model_that_cannot_take_another_size_fails_its_row_only(image_folder, tiny_weights, odd_weights, run_cli, capsys):
    """A flattened head (sized for 28 px) and LeViT (attention biases per resolution) are refused
    with the reason; in a multi-model rank that is their rows' error."""
    good = file_id(tiny_weights["test_vit"], "test_vit")
    flat, levit = odd_weights["flat_cnn"], odd_weights["levit"]
    result = advisor.rank(str(image_folder), [flat, good, levit], ["logme"], img_size=32)
    assert _rows(result)[good]["rank"] == 1
    assert f"model '{flat}' takes only 28x28 px input, and rebuilding it at --img-size 32 failed" in result.failed[flat]
    assert f"model '{levit}' takes only 64x64 px input" in result.failed[levit]
    assert "attention_biases" in result.failed[levit]
    assert capsys.readouterr().err.count("warning: not ranked: ") == 2  # the API warns too, one line each
    code, out, err = run_cli("rank", str(image_folder), "--models", flat, "--img-size", "32")
    assert code == 2 and _one_line(err) and "takes only 28x28 px" in err and "drop --img-size" in err


def test_a_fixed_size_model_at_its_own_size_needs_no_rebuild(image_folder, odd_weights):
    result = advisor.rank(str(image_folder), [odd_weights["flat_cnn"]], ["logme"], img_size=28)
    assert not result.failed and result.rows[0]["score"] is not None


# ---------------------------------------------------------------- ids that are not model ids


@pytest.mark.parametrize("model_id, message", [
    ("hf_hub:timm/resnet18.a1_in1k", "unknown model source prefix 'hf_hub:' in model id 'hf_hub:timm/resnet18.a1_in1k' — did you mean 'hf-hub:timm/resnet18.a1_in1k'?"),
    ("hfhub:timm/resnet18", "did you mean 'hf-hub:timm/resnet18'?"),
    ("tim:resnet18", "did you mean 'timm:resnet18'?"),
    ("Local-Dir:/x", "did you mean 'local-dir:/x'?"),
    ("s3:bucket/w.safetensors", "registered prefixes: file:, hf-hub:, local-dir:, timm:"),
    ("timm/resnet18.a1_in1k", "looks like a Hugging Face hub repo, not a timm name — write hf-hub:timm/resnet18.a1_in1k"),
    ("./nowhere/w.safetensors", "looks like a path, and nothing exists there — fix the path and write it as file:./nowhere/w.safetensors?arch=NAME"),
])
def test_ids_that_are_not_model_ids_are_refused_with_a_hint(model_id, message, image_folder, run_cli):
    code, out, err = run_cli("rank", str(image_folder), "--models", model_id)
    assert code == 2 and _one_line(err) and message in err, err


def test_a_bare_path_on_disk_is_refused_with_the_right_prefix(tmp_path, tiny_weights, run_cli, image_folder):
    from advisor.models.sources import resolve_model

    weights = str(tiny_weights["test_resnet"])
    with pytest.raises(AdvisorError, match=f"say what it is: a weights file is file:{weights}\\?arch=NAME"):
        resolve_model(weights)
    folder = tmp_path / "saved"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    code, out, err = run_cli("rank", str(image_folder), "--models", str(folder))
    assert code == 2 and _one_line(err) and "is a path, not a model id — say what it is: a folder with config.json" in err
    assert f"local-dir:{folder}" in err
    code, out, err = run_cli("rank", str(image_folder), "--models", f"timm:{weights}")
    assert code == 2 and _one_line(err) and f"file:{weights}?arch=NAME" in err


def test_a_bare_word_that_is_also_a_file_here_is_still_a_model_name(tmp_path, monkeypatch):
    from advisor.models.ids import parse_model_id

    monkeypatch.chdir(tmp_path)
    (tmp_path / "resnet18").mkdir()
    assert parse_model_id("resnet18").prefix == "timm"
