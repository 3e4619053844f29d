"""advisor.models.conv_safety: 1x1 strided convs routed around oneDNN's channels-last backward crash.

The crashing backward pass only ever runs in a subprocess (unguarded it kills the interpreter);
in-process tests use forward passes and guarded layers only."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from advisor.models.conv_safety import STANDARD_LAYOUT, SUBSAMPLE, guard_channels_last, guarded_layers  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4  # float32 vs float64, relative to the largest reference value

# Runs in a fresh interpreter: the exact crashing case (Conv2d(8, 16, 1, stride=2) on [4, 8, 60, 60]
# NHWC) and a tiny model with it (plus a padded 1x1 stride-2 conv, the standard-layout route), both
# guarded, trained one step in channels-last; every weight and input gradient is compared with a
# float64 copy of the unguarded layer/model run in the standard layout on the same inputs.
CHILD = textwrap.dedent("""
    import copy, json, torch
    from torch import nn
    from advisor.models.conv_safety import guard_channels_last
    torch.set_num_threads(1)

    def rel(a, b):
        return float((a.double() - b).abs().max() / (b.abs().max() + 1e-12))

    def check(model, shape, seed):
        torch.manual_seed(seed)
        ref = copy.deepcopy(model).double()
        x = torch.randn(shape)
        model = model.to(memory_format=torch.channels_last)
        changed = guard_channels_last(model)
        model = model.to(memory_format=torch.channels_last)  # again: the guard must survive it
        xc = x.clone().contiguous(memory_format=torch.channels_last).requires_grad_(True)
        y = model(xc)
        g = torch.randn(y.shape)
        y.backward(g)
        x64 = x.double().requires_grad_(True)
        y64 = ref(x64)
        y64.backward(g.double())
        errs = {"y": rel(y.detach(), y64.detach()), "x.grad": rel(xc.grad, x64.grad)}
        for (n, p), (_, p64) in zip(model.named_parameters(), ref.named_parameters()):
            errs[n + ".grad"] = rel(p.grad, p64.grad)
        return {"changed": changed, "errs": errs}

    torch.manual_seed(0)
    conv = nn.Conv2d(8, 16, 1, stride=2, bias=False)
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 1, stride=2, bias=False),
                         nn.BatchNorm2d(16), nn.ReLU(), nn.Conv2d(16, 4, 1, stride=2, padding=1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    print(json.dumps({"conv": check(conv, (4, 8, 60, 60), 1), "tiny": check(tiny, (4, 3, 60, 60), 2)}))
""")


def test_crashing_case_trains_through_guard_with_exact_gradients():
    proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, f"child exited {proc.returncode}: {proc.stderr[-2000:]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["conv"]["changed"] == [""]
    assert out["tiny"]["changed"] == ["2", "5"]
    for case in ("conv", "tiny"):
        errs = out[case]["errs"]
        assert "x.grad" in errs and any(k.endswith("weight.grad") for k in errs)
        bad = {k: v for k, v in errs.items() if not v < TOL}
        assert not bad, f"{case}: gradients off the float64 reference: {bad}"


LAYERS = [  # (module, input shape, route)
    (lambda: nn.Conv2d(8, 16, 1, stride=2, bias=False), (2, 8, 60, 60), SUBSAMPLE),
    (lambda: nn.Conv2d(4, 8, 1, stride=(2, 3)), (2, 4, 31, 45), SUBSAMPLE),
    (lambda: nn.Conv2d(8, 16, 1, stride=2, groups=2, dilation=2), (1, 8, 17, 18), SUBSAMPLE),
    (lambda: nn.Conv2d(64, 32, 1, stride=3), (1, 64, 20, 20), SUBSAMPLE),
    (lambda: nn.Conv2d(8, 16, 1, stride=2, padding=1), (2, 8, 30, 30), STANDARD_LAYOUT),
]


@pytest.mark.parametrize("make,shape,route", LAYERS)
@pytest.mark.parametrize("channels_last", [True, False])
def test_forward_outputs_unchanged(make, shape, route, channels_last):
    torch.manual_seed(0)
    conv = make()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    x = torch.randn(shape).contiguous(memory_format=fmt)
    with torch.no_grad():
        before = conv(x)
    assert guard_channels_last(conv) == [""]
    assert guarded_layers(conv) == {"": route}
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            after = conv(x)
        assert after.shape == before.shape
        if route == SUBSAMPLE and channels_last:  # the layout train() uses: bitwise equal
            assert torch.equal(after, before)
        else:  # NCHW input or the standard-layout route: oneDNN may pick another kernel (summation order)
            torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
        assert after.is_contiguous(memory_format=fmt)


def _model():
    return nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8),
                         nn.Sequential(nn.Conv2d(8, 16, 1, stride=2), nn.Conv2d(16, 16, 1, stride=(1, 2), padding=1)),
                         nn.Conv2d(16, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2))


def test_state_dict_keys_and_values_unchanged():
    torch.manual_seed(0)
    model = _model().to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert guard_channels_last(model) == ["2.0", "2.1"]
    after = model.state_dict()
    assert list(after) == list(before)
    for k in before:
        assert torch.equal(after[k], before[k]), k


def test_idempotent():
    torch.manual_seed(0)
    model = _model().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        ref = model(x)
    first = guard_channels_last(model)
    hooks = [(len(m._forward_pre_hooks), len(m._forward_hooks), getattr(m, "stride", None)) for m in model.modules()]
    assert first == ["2.0", "2.1"]
    assert guard_channels_last(model) == []
    assert guard_channels_last(model.to(memory_format=torch.channels_last)) == []
    assert [(len(m._forward_pre_hooks), len(m._forward_hooks), getattr(m, "stride", None)) for m in model.modules()] == hooks
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-5, atol=1e-6)


def test_unaffected_layers_left_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 4, (1, 3), stride=2),
                          nn.ConvTranspose2d(4, 4, 1, stride=2), nn.Flatten(), nn.Linear(4, 2))
    state = [(m.stride if hasattr(m, "stride") else None) for m in model.modules()]
    assert guard_channels_last(model) == []
    assert guarded_layers(model) == {}
    assert [(m.stride if hasattr(m, "stride") else None) for m in model.modules()] == state
    assert all(not m._forward_pre_hooks and not m._forward_hooks for m in model.modules())


def test_rejects_non_module():
    with pytest.raises(TypeError, match="nn.Module"):
        guard_channels_last({"weight": torch.zeros(1)})
