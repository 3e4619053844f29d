"""DEPARA (Song et al. 2020): attribution nodes (advisor.ranking.attributions) and graph similarity (advisor.numeric.depara)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from advisor.numeric.depara import depara, depara_edges_only, edges, label_edges

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from advisor.ranking.attributions import cut_attributions, probe_attributions
from advisor.ranking.features import cut_names

GRID = 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("test_efficientnet", num_classes=5).eval()


@pytest.fixture(scope="module")
def other_model():
    torch.manual_seed(1)
    return timm.create_model("test_efficientnet", num_classes=5).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(0)
    return torch.randn(12, 3, 32, 32, generator=g)


@pytest.fixture(scope="module")
def attrs(model, images):
    return probe_attributions(model, images.split(4), grid=GRID)


def _pooled_features(module, x):
    from advisor.ranking.features import forward_all_cuts

    with torch.inference_mode():
        pooled, _ = forward_all_cuts(module, x)
    return {n: p.numpy().astype(np.float64) for n, p in zip(cut_names(module), pooled)}


def _close(a, b, tol=1e-5):
    scale = max(float(np.abs(b).max()), 1e-30)
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------------------------------------
# attributions
# ---------------------------------------------------------------------------------------------
def test_shapes_and_order(model, images, attrs):
    names = cut_names(model)
    assert list(attrs) == names and names[-1] == "pre_logits"
    for a in attrs.values():
        assert a.shape == (12, GRID * GRID) and a.dtype == np.float32
        assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
    per_batch = cut_attributions(model, images[:4], grid=GRID)
    assert len(per_batch) == len(names)


def test_matches_naive_per_cut(model, images):
    x = images[:4]
    fast = cut_attributions(model, x, grid=GRID)
    for k, name in enumerate(cut_names(model)):
        xg = x.clone().requires_grad_(True)
        final, inter = model.forward_intermediates(xg)  # fresh full forward for this cut alone
        out = inter[k] if k < len(inter) else model.forward_head(final, pre_logits=True)
        (g,) = torch.autograd.grad(out.pow(2).sum(), xg)
        naive = torch.nn.functional.adaptive_avg_pool2d((x * g).sum(1, keepdim=True), GRID).flatten(1)
        _close(fast[k], naive.detach().numpy())


def test_per_image_independence(model, images):
    batch = cut_attributions(model, images[:4], grid=GRID)
    alone = cut_attributions(model, images[:1], grid=GRID)
    for b, a in zip(batch, alone):
        _close(b[:1], a)


def test_zero_input_zero_attribution(model):
    for a in cut_attributions(model, torch.zeros(2, 3, 32, 32), grid=GRID):
        assert np.all(a == 0)


def test_full_resolution_grid_and_inference_mode(model, images):
    x = images[:2]
    with torch.inference_mode():  # callers may be inside inference mode
        full = cut_attributions(model, x, grid=32)
    xg = x.clone().requires_grad_(True)
    _, inter = model.forward_intermediates(xg)
    (g,) = torch.autograd.grad(inter[1].pow(2).sum(), xg)
    _close(full[1], (x * g).sum(1).flatten(1).numpy())  # grid = H: eq. 3 summed over channels


def test_train_mode_rejected():
    m = timm.create_model("test_efficientnet", num_classes=5).train()
    with pytest.raises(ValueError, match="eval mode"):
        cut_attributions(m, torch.randn(2, 3, 32, 32))


# ---------------------------------------------------------------------------------------------
# DEPARA similarity
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lam", [1.0, 10.0])
def test_model_with_itself(model, images, attrs, lam):
    feats = _pooled_features(model, images)
    for name in cut_names(model):
        r = depara(attrs[name], feats[name], attrs[name], feats[name], lam=lam)
        assert r["nodes"] == pytest.approx(1.0, abs=1e-9)
        assert r["edges"] == pytest.approx(1.0, abs=1e-9)
        assert r["score"] == pytest.approx(1.0 + lam, abs=1e-9)


def test_two_models_by_hand(model, other_model, images, attrs):
    lam = 10.0
    attrs_b = probe_attributions(other_model, [images], grid=GRID)
    feats_a, feats_b = _pooled_features(model, images), _pooled_features(other_model, images)
    name = "blocks.2"
    va, vb = attrs[name].astype(np.float64), attrs_b[name].astype(np.float64)
    nodes = np.mean([va[m] @ vb[m] / np.linalg.norm(va[m]) / np.linalg.norm(vb[m]) for m in range(len(va))])
    iu = np.triu_indices(len(va), k=1)

    def cos_mat(f):
        u = f / np.linalg.norm(f, axis=1, keepdims=True)
        return (u @ u.T)[iu]

    rho = spearmanr(cos_mat(feats_a[name]), cos_mat(feats_b["blocks.4"])).statistic
    r = depara(va, feats_a[name], vb, feats_b["blocks.4"], lam=lam)
    assert r["nodes"] == pytest.approx(nodes, abs=1e-12)
    assert r["edges"] == pytest.approx(rho, abs=1e-12)
    assert r["score"] == pytest.approx(nodes + lam * rho, abs=1e-10)
    assert r["score"] < 1 + lam


def test_edges_three_points():
    f = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(edges(f), [0.0, s, s], atol=1e-15)  # pairs (0,1), (0,2), (1,2)
    # symmetric: permuting the points permutes the pairs, cos(p, q) == cos(q, p)
    np.testing.assert_allclose(edges(f[[1, 0, 2]]), [0.0, s, s], atol=1e-15)
    np.testing.assert_allclose(edges(f[[2, 1, 0]]), [s, s, 0.0], atol=1e-15)
    z = edges(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]))
    np.testing.assert_allclose(z, [0.0, 0.0, s])  # zero row: cosine 0, no NaN


def test_label_edges():
    np.testing.assert_array_equal(label_edges([0, 0, 1]), [1.0, 0.0, 0.0])
    assert label_edges(np.array(["a", "b", "a", "b"])).tolist() == [0, 1, 0, 0, 1, 0]


def test_nodes_scale_invariant_and_zero_safe():
    rng = np.random.default_rng(0)
    va, vb = rng.normal(size=(6, 16)), rng.normal(size=(6, 16))
    fa, fb = rng.normal(size=(6, 5)), rng.normal(size=(6, 7))
    base = depara(va, fa, vb, fb)
    scales = rng.uniform(0.01, 100, size=(6, 1))
    scaled = depara(va * scales, fa, vb * 3.5, fb)
    assert scaled["nodes"] == pytest.approx(base["nodes"], abs=1e-12)
    va0 = va.copy()
    va0[0] = 0
    r = depara(va0, fa, vb, fb)
    assert np.isfinite(r["nodes"])
    cos = [va[m] @ vb[m] / np.linalg.norm(va[m]) / np.linalg.norm(vb[m]) for m in range(1, 6)]
    assert r["nodes"] == pytest.approx(sum(cos) / 6, abs=1e-12)  # zero row contributes 0


def test_spearman_invariant_to_monotone_transform():
    rng = np.random.default_rng(1)
    fa, fb = rng.normal(size=(8, 4)), rng.normal(size=(8, 6))
    ea, eb = edges(fa), edges(fb)
    base = depara_edges_only(fa, eb, lam=2.0)
    assert base["edges"] == pytest.approx(spearmanr(ea, eb).statistic, abs=1e-12)
    assert base["score"] == pytest.approx(2.0 * base["edges"]) and base["nodes"] is None
    for f in (np.exp, lambda e: 5 * e**3 + 1, np.arctan):
        assert depara_edges_only(fa, f(eb), lam=2.0)["edges"] == pytest.approx(base["edges"], abs=1e-12)
    assert depara_edges_only(fa, fb, lam=2.0)["edges"] == pytest.approx(base["edges"], abs=1e-12)


def test_labels_as_reference_and_errors():
    rng = np.random.default_rng(2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    centres = np.array([[5.0, 0.0], [0.0, 5.0]])
    feats = centres[labels] + 0.1 * rng.normal(size=(6, 2))
    good = depara_edges_only(feats, label_edges(labels), lam=10.0)
    bad = depara_edges_only(rng.normal(size=(6, 2)), label_edges(labels), lam=10.0)
    assert good["edges"] > 0.8 and good["score"] > bad["score"]
    with pytest.raises(ValueError, match="constant"):
        depara_edges_only(feats, label_edges(np.zeros(6, int)))
    v = rng.normal(size=(6, 4))
    with pytest.raises(ValueError, match="constant"):
        depara(v, np.ones((6, 3)), v, feats)
    with pytest.raises(ValueError, match="same shape"):
        depara(v, feats, v[:, :3], feats)
    with pytest.raises(ValueError, match="length"):
        depara_edges_only(feats, np.ones(4))


def test_each_cut_backpropagates_only_its_prefix():
    torch.manual_seed(0)
    m = timm.create_model("test_efficientnet", num_classes=5).eval()
    calls = {}
    for name in ("blocks.0", "blocks.2", "blocks.4", "conv_head"):
        m.get_submodule(name).register_full_backward_hook(lambda mod, gi, go, name=name: calls.__setitem__(name, calls.get(name, 0) + 1))
    cut_attributions(m, torch.randn(2, 3, 32, 32), grid=GRID)
    # cuts: blocks.0..4 then pre_logits. A module is backpropagated once per cut at or after it.
    assert calls == {"blocks.0": 6, "blocks.2": 4, "blocks.4": 2, "conv_head": 1}


def test_chunking_and_layout_do_not_change_results(model, images):
    x = images[:6]
    ref = cut_attributions(model, x, grid=GRID, micro_batch=6, channels_last=False)
    for kw in ({"micro_batch": 1}, {"micro_batch": 4, "channels_last": True}, {}):
        for a, b in zip(cut_attributions(model, x, grid=GRID, **kw), ref):
            _close(a, b)


def test_probe_attributions_accepts_loader_tuples(model, images, attrs):
    out = probe_attributions(model, [(images[:5], None), (images[5:], None)], grid=GRID)
    for name in attrs:
        _close(out[name], attrs[name])
    assert probe_attributions(model, [], grid=GRID)["pre_logits"].shape == (0, GRID * GRID)
