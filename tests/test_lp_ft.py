"""LP-FT (Kumar et al. 2022) and frozen BatchNorm statistics: the fine-tune options the benchmark uses
against fine-tunes that end below their own linear probe."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs

from advisor.errors import AdvisorError


@pytest.mark.parametrize("classes", [2, 4])
def test_probe_head_reproduces_the_probes_predictions(classes):
    from advisor.validation.linear_probe import fit_linear_probe, probe_head

    x, y = blobs(120, 12, classes, sep=1.5, seed=3)
    x = x * np.linspace(0.1, 30, 12) + 5  # standardisation matters: scales and offsets differ per column
    clf = fit_linear_probe(x, y)
    w, b = probe_head(x, y, classes)
    assert w.shape == (classes, 12) and b.shape == (classes,) and w.dtype == np.float32
    logits = x @ w.T.astype(np.float64) + b
    np.testing.assert_array_equal(logits.argmax(1), clf.predict(x))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs / probs.sum(1, keepdims=True), clf.predict_proba(x), atol=1e-4)


def test_probe_head_gives_a_class_absent_from_training_no_chance():
    from advisor.validation.linear_probe import probe_head

    x, y = blobs(60, 5, 3, sep=2.0)
    y = np.where(y == 1, 2, y)  # classes 0 and 2 only, of 3
    w, b = probe_head(x, y, 3)
    assert not w[1].any() and b[1] < min(b[0], b[2])
    assert set((x @ w.T + b).argmax(1)) <= {0, 2}


def _tiny_model(classes=3):
    import timm
    import torch

    from advisor.validation.stages import stages

    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=classes)  # random init: plumbing only
    return model, stages(model, torch.randn(2, 3, 32, 32))


def _pre_logits(model, x):
    import torch

    model.eval()
    with torch.inference_mode():
        return model.forward_head(model.forward_features(x), pre_logits=True).numpy()


def test_lp_ft_starts_from_the_probe():
    import torch

    from advisor.ranking.features import PRE_LOGITS
    from advisor.validation import finetune as ft
    from advisor.validation.linear_probe import fit_linear_probe, probe_head

    model, st = _tiny_model()
    x, y = torch.randn(24, 3, 32, 32), torch.arange(24) % 3
    f = _pre_logits(model, x)
    head = probe_head(f, y.numpy(), 3)
    # a learning rate too small to move anything: the test accuracy is the probe's own
    proto = ft.Protocol("finetune", epochs=1, lr=1e-12, lr_transferred=1e-12, head_init="probe", batchnorm="frozen", weight_decay=0.0)
    res = ft.train(st, PRE_LOGITS, proto, x, y, x, y, seed=0, test_h=x, test_y=y, head=head)
    assert res.test_acc == pytest.approx(fit_linear_probe(f, y.numpy()).score(f, y.numpy()))
    random_head = ft.train(st, PRE_LOGITS, ft.Protocol("finetune", epochs=1, lr=1e-12, lr_transferred=1e-12, batchnorm="frozen"),
                           x, y, x, y, seed=0, test_h=x, test_y=y)
    assert random_head.history[0]["loss"] > res.history[0]["loss"]


def test_frozen_batchnorm_keeps_the_pretrained_statistics():
    import torch

    from advisor.ranking.features import PRE_LOGITS
    from advisor.validation import finetune as ft

    x, y = torch.randn(16, 3, 32, 32) * 3 + 1, torch.arange(16) % 3
    stats = {}
    for mode in ("train", "frozen"):
        model, st = _tiny_model()
        before = {k: v.clone() for k, v in model.state_dict().items() if k.endswith("running_mean")}
        ft.train(st, PRE_LOGITS, ft.Protocol("finetune", epochs=1, lr=0.01, lr_transferred=0.001, batchnorm=mode), x, y, x, y, seed=0)
        after = model.state_dict()
        stats[mode] = max(float((after[k] - v).abs().max()) for k, v in before.items())
    assert stats["frozen"] == 0.0 and stats["train"] > 0.0


def test_new_options_leave_earlier_protocols_and_their_run_keys_unchanged():
    from advisor.validation import finetune as ft

    v1 = {"name", "epochs", "lr", "lr_transferred", "decay_epochs", "batch_size", "momentum", "weight_decay", "freeze"}
    assert set(ft.finetune(10).as_dict()) == v1 and set(ft.defrost().as_dict()) == v1
    d = ft.Protocol("finetune", head_init="probe", batchnorm="frozen").as_dict()
    assert d["head_init"] == "probe" and d["batchnorm"] == "frozen"
    assert ft.Protocol(**d) == ft.Protocol("finetune", head_init="probe", batchnorm="frozen")


@pytest.mark.parametrize("proto, head, message", [
    ({"head_init": "warm"}, None, "unknown head_init 'warm'"),
    ({"batchnorm": "off"}, None, "unknown batchnorm mode 'off'"),
    ({"head_init": "probe"}, None, "needs the fine-tune protocol and the probe's head"),
])
def test_bad_options_raise_one_clear_error(proto, head, message):
    import torch

    from advisor.ranking.features import PRE_LOGITS
    from advisor.validation import finetune as ft

    model, st = _tiny_model()
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4) % 3
    with pytest.raises(AdvisorError, match=message):
        ft.train(st, PRE_LOGITS, ft.Protocol("finetune", **proto), x, y, x, y, seed=0, head=head)


def test_a_head_of_the_wrong_shape_is_refused():
    import torch

    from advisor.ranking.features import PRE_LOGITS
    from advisor.validation import finetune as ft

    model, st = _tiny_model()
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4) % 3
    head = (np.zeros((5, 7), np.float32), np.zeros(5, np.float32))
    with pytest.raises(AdvisorError, match="needs a linear classifier of shape"):
        ft.train(st, PRE_LOGITS, ft.Protocol("finetune", head_init="probe"), x, y, x, y, seed=0, head=head)
