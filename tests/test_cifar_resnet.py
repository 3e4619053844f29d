"""CIFAR ResNet architecture plugin: timm feature-API plumbing, and the real checkpoints' accuracy."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = SHARED / "models"
CIFAR_TEST = SHARED / "data" / "cifar10_small" / "test"

# CIFAR-10 label order (batches.meta `label_names` of the original dataset; the checkpoints' output
# indices follow it). Folders are mapped by NAME onto these indices, never by ImageFolder's order.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

# README: "81.0-83.2% on the JPEG-q75 CIFAR-10 export" for depths 20..56; we allow +-1.5 points.
ACC_LOW, ACC_HIGH = 81.0 - 1.5, 83.2 + 1.5

from timm.models._features import feature_take_indices

from advisor.plugins import cifar_resnet_arch as arch


def _net(depth=20, **kw):
    torch.manual_seed(0)
    return arch.CifarResNet(depth, **kw).eval()


# ------------------------------------------------------------------------------------- plumbing
def test_feature_info_matches_intermediates_at_32px():
    net = _net(20)
    assert net.num_features == 64 and net.num_classes == 10
    assert [(f["module"], f["num_chs"], f["reduction"]) for f in net.feature_info] == [
        ("act1", 16, 1), ("layer1", 16, 1), ("layer2", 32, 2), ("layer3", 64, 4)]
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        final, inter = net.forward_intermediates(x)
        only = net.forward_intermediates(x, intermediates_only=True)
        feats = net.forward_features(x)
    assert len(inter) == len(net.feature_info) == len(only)
    for t, o, info in zip(inter, only, net.feature_info):
        r = info["reduction"]
        assert tuple(t.shape) == (2, info["num_chs"], 32 // r, 32 // r)
        assert torch.equal(t, o)
    assert torch.equal(final, feats) and torch.equal(final, inter[-1])
    assert tuple(feats.shape) == (2, 64, 8, 8)


def test_feature_info_modules_are_real_paths_producing_the_intermediates():
    net = _net(20)
    modules = dict(net.named_modules())
    captured = {}
    for info in net.feature_info:
        name = info["module"]
        assert name in modules
        modules[name].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o.clone()))
    with torch.inference_mode():
        inter = net.forward_intermediates(torch.randn(2, 3, 32, 32), intermediates_only=True)
    for info, t in zip(net.feature_info, inter):
        assert torch.equal(captured[info["module"]], t)


@pytest.mark.parametrize("indices", [None, 1, 2, 4, [0, 2], [-1], (1, -2), [3, 0]])
def test_indices_select_like_timm(indices):
    net = _net(20)
    x = torch.randn(1, 3, 32, 32)
    take, max_index = feature_take_indices(4, indices)
    with torch.inference_mode():
        inter = net.forward_intermediates(x, indices=indices, intermediates_only=True)
        _, early = net.forward_intermediates(x, indices=indices, stop_early=True)
    # timm appends in network order, whatever order the indices were given in
    expected = [net.feature_info[i]["num_chs"] for i in sorted(take)]
    assert [t.shape[1] for t in inter] == expected
    assert [t.shape[1] for t in early] == expected
    if indices == 2:  # int = last n levels
        assert [t.shape[1] for t in inter] == [32, 64]


@pytest.mark.parametrize("indices", [0, 5, [4], [-5]])
def test_out_of_range_indices_raise_like_timm(indices):
    net = _net(20)
    with pytest.raises(AssertionError):
        net.forward_intermediates(torch.randn(1, 3, 32, 32), indices=indices)


def test_stop_early_returns_last_requested_level():
    net = _net(20)
    with torch.inference_mode():
        final, inter = net.forward_intermediates(torch.randn(1, 3, 32, 32), indices=[1], stop_early=True)
    assert tuple(final.shape) == (1, 16, 32, 32) and torch.equal(final, inter[0])


def test_forward_equals_head_of_features_and_classifier_api():
    net = _net(20)
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        out = net(x)
        feats = net.forward_features(x)
        assert torch.equal(out, net.forward_head(feats))
        pre = net.forward_head(feats, pre_logits=True)
    assert tuple(out.shape) == (3, 10) and tuple(pre.shape) == (3, 64)
    assert net.get_classifier() is net.linear
    net.reset_classifier(5)
    assert net.num_classes == 5 and tuple(net(x).shape) == (3, 5)
    net.reset_classifier(0)
    assert tuple(net(x).shape) == (3, 64)
    with pytest.raises(ValueError):
        net.reset_classifier(10, global_pool="max")
    # any input size works (global pooling), and in_chans is honoured
    assert tuple(_net(20, in_chans=1, num_classes=7)(torch.randn(1, 1, 40, 48)).shape) == (1, 7)


@pytest.mark.parametrize("depth", [0, 2, 18, 21, 57, "20", 20.0])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        arch.CifarResNet(depth)


def test_unknown_kwargs_and_pretrained_flag_raise():
    with pytest.raises(TypeError, match="unsupported"):
        arch.CifarResNet(20, features_only=True)
    with pytest.raises(RuntimeError, match="no hub weights"):
        arch.resnet20_cifar(pretrained=True)


def test_factories_cfg_and_state_dict_keys():
    depths = {"resnet20_cifar": 20, "resnet32_cifar": 32, "resnet44_cifar": 44,
              "resnet56_cifar": 56, "resnet110_cifar": 110}
    cfg = arch.CIFAR_RESNET_CFG
    assert cfg["input_size"] == (3, 32, 32) and cfg["num_classes"] == 10
    assert cfg["mean"] == (0.485, 0.456, 0.406) and cfg["std"] == (0.229, 0.224, 0.225)
    assert (cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"]) == ("bilinear", 1.0, "center")
    assert (cfg["first_conv"], cfg["classifier"]) == ("conv1", "linear")
    for name, depth in depths.items():
        net = getattr(arch, name)()
        assert net.depth == depth and net.pretrained_cfg["architecture"] == name
        assert net.default_cfg is net.pretrained_cfg
        n = (depth - 2) // 6
        expected = {"conv1.weight", "linear.weight", "linear.bias"}
        bn = ("weight", "bias", "running_mean", "running_var")
        expected |= {f"bn1.{s}" for s in bn}
        for stage in (1, 2, 3):
            for j in range(n):
                for k in (1, 2):
                    expected.add(f"layer{stage}.{j}.conv{k}.weight")
                    expected |= {f"layer{stage}.{j}.bn{k}.{s}" for s in bn}
        keys = {k for k in net.state_dict() if not k.endswith("num_batches_tracked")}
        assert keys == expected
        if depth == 20:
            assert len(keys) == 97  # README: 97 tensors for depth 20


def test_strict_load_without_num_batches_tracked_even_with_versioned_metadata():
    src = _net(20)
    sd = src.state_dict()  # carries _metadata with BatchNorm version 2
    stripped = type(sd)((k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    stripped._metadata = sd._metadata
    dst = arch.CifarResNet(20)
    assert not dst.load_state_dict(stripped, strict=True).missing_keys
    assert not any(k.endswith("num_batches_tracked") for k in stripped)  # caller's dict untouched
    for k, v in src.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, dst.state_dict()[k])
    # a checkpoint that lacks a BN's statistics altogether still fails strict loading
    del stripped["layer2.0.bn1.running_mean"]
    with pytest.raises(RuntimeError, match="layer2.0.bn1.running_mean"):
        arch.CifarResNet(20).load_state_dict(stripped, strict=True)


def test_plugin_registers_all_archs():
    from advisor.plugins import cifar_resnet

    got = []
    cifar_resnet.register_architectures(register=lambda *a: got.append(a))
    assert [g[0] for g in got] == list(cifar_resnet.ARCHS)
    for name, factory, cfg in got:
        assert cfg is arch.CIFAR_RESNET_CFG
        assert type(factory(num_classes=3)) is arch.CifarResNet and factory(num_classes=3).num_classes == 3


def test_plugin_module_does_not_import_torch():
    code = "import sys, advisor.plugins.cifar_resnet\nassert 'torch' not in sys.modules, 'torch imported'\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


# --------------------------------------------------------------------------------- real weights
@pytest.fixture(scope="module")
def cifar_test_batch():
    if not MODELS.is_dir() or not CIFAR_TEST.is_dir():
        pytest.skip(f"shared checkpoints/data not found under {SHARED} (needs ../shared next to the repo)")
    from PIL import Image
    from torchvision import transforms

    cfg = arch.CIFAR_RESNET_CFG
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"])])
    folders = sorted(p.name for p in CIFAR_TEST.iterdir() if p.is_dir())
    assert set(folders) == set(CIFAR10_CLASSES), folders
    xs, ys = [], []
    for name in folders:
        for f in sorted((CIFAR_TEST / name).iterdir()):
            with Image.open(f) as im:
                xs.append(tf(im.convert("RGB")))
            ys.append(CIFAR10_CLASSES.index(name))
    x, y = torch.stack(xs).contiguous(memory_format=torch.channels_last), torch.tensor(ys)
    assert tuple(x.shape) == (1000, 3, 32, 32)
    return x, y


@pytest.mark.parametrize("depth", [20, 32, 44, 56])
def test_real_checkpoint_strict_load_and_accuracy(depth, cifar_test_batch):
    from safetensors.torch import load_file

    path = MODELS / f"resnet{depth}_cifar10.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    sd = load_file(str(path))
    assert not any(k.endswith("num_batches_tracked") for k in sd)
    net = getattr(arch, f"resnet{depth}_cifar")()
    res = net.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    # channels_last: same numbers, ~25% faster oneDNN convolutions on CPU (keeps the test < 20 s)
    net.eval().to(memory_format=torch.channels_last)
    x, y = cifar_test_batch
    t0 = time.perf_counter()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), 250):
            correct += (net(x[i:i + 250]).argmax(1) == y[i:i + 250]).sum().item()
    acc = 100.0 * correct / len(x)
    print(f"resnet{depth}_cifar: top-1 {acc:.1f}% on {len(x)} images ({time.perf_counter() - t0:.2f}s)")
    assert ACC_LOW <= acc <= ACC_HIGH, f"resnet{depth}_cifar top-1 {acc:.1f}% outside [{ACC_LOW}, {ACC_HIGH}]"
