"""The decision that ends `advisor rank` / `advisor layers` (advisor.ranking.decision): what freezing at a cut
means on a real model, how sure the pick is, estimator disagreement, domain forecast vs layers, and the
`--snippet` code, which is run for one epoch in a subprocess."""

from __future__ import annotations

import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, needs_shared

from advisor.ranking import decision
from advisor.ranking.decision import decide
from advisor.data.probe import Probe

WEIGHTS = SHARED / "models"
# resnet20_cifar10 (He et al. 2016, n = 3): parameters frozen when freezing up to each cut, by hand:
# conv1 3·16·9 = 432, bn1 32; layer1 3 × (2 · 16·16·9 + 2 · 32) = 14,016; layer2 (16·32·9 + 32·32·9 + 128)
# + 2 × (2 · 32·32·9 + 128) = 51,072; layer3 = the rest of the 269,072 backbone parameters (head 64·10 + 10 excluded)
RESNET20_FROZEN = {"act1": 464, "layer1": 14_480, "layer2": 65_552, "layer3": 269_072, "pre_logits": 269_072}
RESNET20_BACKBONE = 269_072


# ---------------------------------------------------------------- pure pieces


def test_cover_and_span():
    names = ["stem.w", "blocks.0.a.w", "blocks.0.b.w", "blocks.1.w", "blocks.2.w", "head.w"]
    assert decision.cover({"stem.w", "blocks.0.a.w", "blocks.0.b.w", "blocks.1.w"}, names) == ["stem", "blocks.0", "blocks.1"]
    assert decision.cover(set(names) - {"head.w"}, names) == ["stem", "blocks"]
    assert decision.span(["conv1", "bn1", "blocks.0", "blocks.1", "blocks.2", "norm"]) == "conv1, bn1, blocks.0–2 and norm"
    assert decision.span(["layer1"]) == "layer1"


def test_within_noise_and_clear_and_not_measured():
    tied = decision.Noise("logme", margin=0.01, sd=0.02, wins=13, valid=20, repeats=20, n_images=200)
    assert tied.within_noise is True
    text = decision.describe_noise(tied, "model_a", "model_b")
    assert "within noise" in text and "cannot separate" in text and "0.0200" in text and "13 of 20" in text
    clear = decision.Noise("logme", margin=0.1, sd=0.02, wins=20, valid=20, repeats=20, n_images=200)
    assert clear.within_noise is False and clear.ratio == pytest.approx(5.0)
    assert decision.describe_noise(clear, "model_a", "model_b").startswith("How sure: clear")
    unknown = decision.Noise("logme", margin=0.05, reason="only 3 of 20 half-samples fit")
    assert unknown.within_noise is None
    text = decision.describe_noise(unknown, "model_a", "model_b", ranges=(0.5, 4))
    assert "not measured (only 3 of 20" in text and "10% of the logme range over the 4 models" in text
    # a tie with no spread at all is within noise, not infinitely sure
    assert decision.Noise("knn", margin=0.0, sd=0.0).within_noise is True


def test_half_samples_are_stratified_and_seeded():
    labels = np.array([0] * 10 + [1] * 6 + [2] * 1)
    halves = decision.half_samples(labels, len(labels), repeats=5, seed=3)
    for idx in halves:
        assert list(np.bincount(labels[idx], minlength=3)) == [5, 3, 1]
    again = decision.half_samples(labels, len(labels), repeats=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(halves, again))


class _MF:
    """The part of a ranked model (advisor.ranking.extraction.ModelFeatures) the half-samples read."""

    def __init__(self, name, feats):
        from types import SimpleNamespace

        self.model_id, self.features, self.logits, self.inputs = name, {"pre_logits": feats}, None, None
        self.resolved, self.preproc_hash = SimpleNamespace(fingerprint=name), "p"


def _probe(labels) -> Probe:
    return Probe(spec="synthetic", items=tuple(range(len(labels))), labels=labels, class_names=("a", "b", "c"), hash="h")


def test_half_sample_spread_separates_a_real_gap_from_a_tie():
    from advisor.estimators import get_estimator
    from conftest import blobs

    knn = get_estimator("knn")
    x, y = blobs(240, 16, 3, sep=4.0, seed=0)
    rng = np.random.default_rng(1)
    probe = _probe(y)
    good, bad = _MF("good", x), _MF("bad", rng.standard_normal(x.shape))
    twin = _MF("twin", x.copy())  # the same features under another name: a tie
    score = lambda f: knn.score(f, y)  # noqa: E731
    clear = decision.paired_noise(knn, (good, "pre_logits", score(x)), (bad, "pre_logits", score(bad.features["pre_logits"])), probe)
    assert clear.sd is not None and clear.valid == decision.HALF_SAMPLES and clear.within_noise is False
    assert clear.wins == clear.valid
    tie = decision.paired_noise(knn, (good, "pre_logits", score(x)), (twin, "pre_logits", score(twin.features["pre_logits"])), probe)
    assert tie.within_noise is True
    # a budget that admits no half-sample: not measured, and said why
    slow = decision.paired_noise(knn, (good, "pre_logits", 1.0), (bad, "pre_logits", 0.5), probe, budget=0.0, seed=7)
    assert slow.sd is None and "budget" in slow.reason


def test_estimator_disagreement_is_named():
    text, differ = decision.describe_disagreement({"logme": "a", "knn": "b", "hscore": "a"}, "logme", "top model")
    assert differ == {"knn": "b"}
    assert "disagree" in text and "logme → a" in text and "knn → b" in text and "hscore agrees with logme" in text
    text, differ = decision.describe_disagreement({"logme": "a", "knn": "a"}, "logme", "top model")
    assert differ == {} and text.startswith("Estimators agree: knn also picks a")
    assert decision.describe_disagreement({"logme": "a"}, "logme") == (None, {})


def _forecast(tier, band=None, z_gap=0.0):
    return {"source": "imagenet", "advice": {"tier": tier, "tiers_in_band": band or [tier], "recommendation": "..."},
            "forecast": {"T_FB": 30.0, "low": 20.0, "high": 45.0, "level": 0.9, "z": {"G": z_gap}}, "fit": {"n": 10}}


def test_domain_vs_layers_conflict_names_the_evidence_and_prefers_one():
    args = dict(model="m", cut="blocks.1", depth=0.2, estimator="depara", n_images=140)
    sure = decision.domain_vs_layers(_forecast("high"), layers_sure=True, **args)
    assert sure["agree"] is False and sure["forecast_tier"] == "high" and sure["layers_tier"] == "low" and sure["prefer"] == "layers"
    t = sure["text"]
    assert "They differ" in t and "depara scores of m's own features" in t and "140 labelled images" in t
    assert "Chen et al. 2022's eq. 3 fitted on 10 datasets" in t and "blind to labels" in t and "Prefer the cut" in t
    noisy = decision.domain_vs_layers(_forecast("high"), layers_sure=False, **args)
    assert noisy["prefer"] == "domain" and "Prefer the forecast" in noisy["text"]
    wide = decision.domain_vs_layers(_forecast("high", ["medium", "high"]), layers_sure=False, **args)
    assert wide["prefer"] == "validate" and "--validate" in wide["text"]
    agree = decision.domain_vs_layers(_forecast("high"), layers_sure=None, **{**args, "cut": "pre_logits", "depth": 1.0})
    assert agree["agree"] is True and agree["prefer"] is None and "They agree" in agree["text"]
    # a large gap: the forecast also wants the stem unfrozen, which no cut does
    stem = decision.domain_vs_layers(_forecast("high", z_gap=1.5), layers_sure=True, **{**args, "cut": "pre_logits", "depth": 1.0})
    assert stem["agree"] is False and "unfreeze the stem" in stem["text"]


def test_training_rates_come_from_the_finetune_rule():
    from advisor.validation.finetune import decay_epochs_for

    p = decision.training_protocol(25, "layer2")
    assert (p.lr, p.lr_transferred, p.decay_epochs, p.freeze) == (0.01, 0.001, decay_epochs_for(25), "layer2")
    assert p.epochs >= 2 * p.decay_epochs and p.epochs >= 10


# ---------------------------------------------------------------- a real small model


@pytest.fixture
def tiny_probe(tmp_path) -> Path:
    """20 real CIFAR-10 images, 10 of each of 2 classes."""
    src = SHARED / "data" / "cifar10_small" / "train"
    if not src.is_dir():
        pytest.skip("../shared/data/cifar10_small is absent")
    root = tmp_path / "tiny"
    for cls in ("airplane", "cat"):
        (root / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:10]:
            shutil.copy(f, root / cls / f.name)
    return root


@pytest.fixture
def resnet20():
    from advisor.models.sources import ResolveContext, resolve_model

    return resolve_model("resnet20_cifar10", ResolveContext(weights_dir=WEIGHTS, offline=True))


@needs_shared
def test_freezing_text_and_counts_on_resnet20(resnet20):
    a = decision.model_anatomy(resnet20, num_classes=2)
    assert a.traced and a.cuts == list(RESNET20_FROZEN)
    assert a.frozen == RESNET20_FROZEN and a.head == 64 * 2 + 2 and a.total == RESNET20_BACKBONE + a.head
    assert a.frozen_prefixes["layer2"] == ["conv1", "bn1", "layer1", "layer2"] and a.trainable_prefixes["layer2"] == ["layer3"]
    head = decision.describe_freeze(a, "pre_logits")
    assert head.startswith("train only a new 2-way head") and "(130 trainable parameters)" in head and "269,072 pretrained" in head
    middle = decision.describe_freeze(a, "layer2")
    assert "keep conv1, bn1, layer1 and layer2 frozen (65,552 parameters, 24%)" in middle
    assert f"fine-tune layer3, plus a new 2-way head ({RESNET20_BACKBONE - 65_552 + 130:,} trainable parameters)" in middle
    # stored: the second call reads the JSON file (no torch needed) and says the same
    assert decision.model_anatomy(resnet20, num_classes=2) == a


@needs_shared
def test_snippet_loads_the_same_weights_as_advisor(resnet20, tmp_path):
    import torch

    from advisor.models.loading import build_model

    a = decision.model_anatomy(resnet20, num_classes=2)
    code = decision.snippet(a, "layer2", decision.training_protocol(10, "layer2"), probe=str(tmp_path), split="train",
                            examples_per_class=10, command="layers")
    path = tmp_path / "finetune.py"
    path.write_text(code)
    g = runpy.run_path(str(path), run_name="not_main")  # importing it trains nothing
    model = g["load_model"]()
    ref = build_model(resnet20).module.state_dict()
    mine = model.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in ref.items() if not k.startswith("linear."))
    groups = g["prepare"](model)
    assert [gr["lr"] for gr in groups] == [0.01, 0.001]
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    assert frozen == RESNET20_FROZEN["layer2"]
    assert sum(p.numel() for gr in groups for p in gr["params"]) == a.trainable("layer2")


@needs_shared
def test_rank_json_carries_decision_and_snippet_and_the_snippet_trains(run_cli, tiny_probe, tmp_path):
    code, out, err = run_cli("rank", str(tiny_probe), "--models", "resnet20_cifar10,resnet32_cifar10", "--weights-dir", str(WEIGHTS),
                             "-e", "logme", "-e", "knn", "--json")
    assert code == 0, err
    rows = json.loads(out)
    first = rows[0]
    assert "snippet" in first and "decision" in first and all("snippet" not in r for r in rows[1:])
    dec = first["decision"]
    assert dec["model"] == first["model"] and dec["cut"] in RESNET20_FROZEN
    assert dec["noise"]["estimator"] == "logme" and dec["noise"]["valid"] == decision.HALF_SAMPLES
    assert dec["text"].startswith(f"Recommendation: {first['model']} (best of 2 by logme), frozen up to {dec['cut']}: ") and "How sure:" in dec["text"]
    assert "Plested & Gedeon 2019" in dec["text"] and dec["protocol"]["lr"] == 0.01
    snippet = first["snippet"]
    assert "timm.create_model(" in snippet and "checkpoint_path=WEIGHTS" in snippet and "register_plugin_architectures()" in snippet
    weights = WEIGHTS / f"{first['model']}.safetensors"
    assert "NUM_CLASSES = 2" in snippet and (str(weights) in snippet or str(weights.resolve()) in snippet)  # ../shared may be a link
    # the snippet is ready to run: one epoch on the 20 images, in a fresh interpreter
    path = tmp_path / "finetune.py"
    path.write_text(snippet)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(path), "1"], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "epoch 1/1: loss" in proc.stdout


@needs_shared
def test_layers_text_at_a_middle_cut_and_snippet_flag(run_cli, tiny_probe):
    # ii on these 20 images picks a middle cut of resnet20 (the same-class neighbours are kept best early)
    code, out, err = run_cli("layers", "resnet20_cifar10", str(tiny_probe), "--weights-dir", str(WEIGHTS), "-e", "ii", "-e", "knn", "--json")
    assert code == 0, err
    data = json.loads(out)
    dec, cut = data["decision"], data["recommendation"]["cut"]
    assert dec["cut"] == cut and cut not in ("pre_logits", "layer3")
    assert dec["frozen"] == RESNET20_FROZEN[cut] and dec["trainable"] == RESNET20_BACKBONE - RESNET20_FROZEN[cut] + 130
    assert f"Recommendation: freeze resnet20_cifar10 up to {cut}: keep conv1, bn1" in dec["text"]
    assert f"({RESNET20_FROZEN[cut]:,} parameters" in dec["text"] and "fine-tune " in dec["text"]
    assert "On the half-samples the rule picks" in dec["text"] and sum(dec["cut_picks"].values()) == decision.HALF_SAMPLES
    assert "FROZEN = (" in data["snippet"] and "LR_HEAD, LR_PRETRAINED = 0.01, 0.001" in data["snippet"]
    # the text form: the recommendation after the table, then the code
    code, out, err = run_cli("layers", "resnet20_cifar10", str(tiny_probe), "--weights-dir", str(WEIGHTS), "-e", "ii", "--snippet")
    assert code == 0, err
    assert f"Recommendation: freeze resnet20_cifar10 up to {cut}" in err and "How sure:" in err  # the human part: stderr
    assert "Recommendation" not in out and "def load_model():" in out and 'if __name__ == "__main__":' in out
    compile(out, "finetune.py", "exec")  # stdout alone is the program (`--snippet > finetune.py`)


@needs_shared
def test_a_failed_decision_keeps_the_table(run_cli, tiny_probe, monkeypatch):
    from advisor.errors import AdvisorError

    def broken(*args, **kwargs):
        raise AdvisorError("cannot rebuild it", "")

    monkeypatch.setattr(decide, "model_anatomy", broken)  # where decide_rank looks it up
    code, out, err = run_cli("rank", str(tiny_probe), "--models", "resnet20_cifar10", "--weights-dir", str(WEIGHTS), "-e", "knn")
    assert code == 0 and "resnet20_cifar10" in out and "no recommendation: cannot rebuild it" in err
    code, out, _ = run_cli("rank", str(tiny_probe), "--models", "resnet20_cifar10", "--weights-dir", str(WEIGHTS), "-e", "knn", "--csv")
    assert code == 0 and "snippet" not in out and "Recommendation" not in out
