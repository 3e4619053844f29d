"""advisor.domain (Chen et al. 2022 domain gap / width / eq. 3) and `advisor domain`: the math against
hand-computed or independent facts, bad inputs as one-line errors, and the shared data sets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import SHARED, assert_one_line_error, write_images

import advisor.domain as domain
from advisor.domain.features import rgb_array
from advisor.errors import AdvisorError

DATA = SHARED / "data"
needs_data = pytest.mark.skipif(not (DATA / "imagenet_sample").is_dir(), reason="../shared/data is absent")


# ---------------------------------------------------------------- features


def test_glcm_features_of_a_4x4_image_match_hand_computation():
    # Haralick's 4-level example image; GLCM at distance 1, 0°, symmetric: counts
    # [[4,2,1,0],[2,4,0,0],[1,0,6,1],[0,0,1,2]] over 24 pairs (worked by hand).
    img = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]], dtype=np.uint8)
    f = domain.glcm_features(img, levels=4)
    asm, ent, con, idm = f[0], f[4], f[8], f[12]  # property-major, 0° first
    assert asm == pytest.approx(84 / 576)
    p = np.array([4, 4, 2, 2, 2, 1, 1, 1, 1, 6]) / 24
    assert ent == pytest.approx(-(p * np.log(p)).sum())
    assert con == pytest.approx(14 / 24)  # |i-j|=1: 2+2+1+1 pairs (×1), |i-j|=2: 1+1 pairs (×4) → 14 / 24
    assert idm == pytest.approx((16 + 6 / 2 + 2 / 5) / 24)
    # 90° (vertical neighbours) differs: the image is not isotropic
    assert f[10] != pytest.approx(con)


def test_constant_and_grey_images():
    red = np.zeros((28, 28, 3), np.uint8)
    red[..., 0] = 255
    f = domain.image_features(red)
    assert f.shape == (22,)
    np.testing.assert_allclose(f[:6], [1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(f[6:10], 1.0)  # ASM of a one-cell GLCM
    np.testing.assert_allclose(f[10:18], 0.0, atol=1e-12)  # entropy, contrast
    np.testing.assert_allclose(f[18:22], 1.0)  # IDM
    grey = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    g = domain.image_features(grey)
    assert g[0] == g[1] == g[2] and g[3] == g[4] == g[5]  # grey: equal channels
    np.testing.assert_allclose(domain.image_features(grey.astype(np.float64) / 255.0), g)  # floats in [0, 1] = uint8


def test_huge_images_are_downscaled_and_tiny_ones_work():
    big = np.tile(np.linspace(0, 255, 3000, dtype=np.uint8), (2000, 1))
    f = domain.image_features(big)
    assert np.all(np.isfinite(f)) and f[0] == pytest.approx(0.5, abs=0.01)
    assert rgb_array(big).shape[:2] == (341, 512)
    assert np.all(np.isfinite(domain.image_features(np.zeros((2, 2), np.uint8))))


# ---------------------------------------------------------------- gap and width


def test_mmd_identical_distributions_near_zero_and_shift_recovered():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(2000, 5)), rng.normal(size=(2000, 5))
    assert abs(domain.mmd(X, Y, "linear")) < 0.03
    assert abs(domain.mmd(X, Y, "rbf")) < 0.01
    shift = np.array([1.0, 0.0, 0.0, 0.0, 0.0])
    assert domain.mmd(X + shift, Y, "linear") == pytest.approx(1.0, abs=0.15)  # linear MMD² = ||Δμ||²
    # the linear estimator is unbiased: exactly ||x̄ - ȳ||² minus tr Σ̂x/m + tr Σ̂y/n (sample covariances)
    X2 = X + shift
    expected = np.sum((X2.mean(0) - Y.mean(0)) ** 2) - np.trace(np.cov(X2.T)) / 2000 - np.trace(np.cov(Y.T)) / 2000
    assert domain.mmd(X2, Y, "linear") == pytest.approx(expected)
    far = domain.mmd(1e-3 * X + 100.0, 1e-3 * Y, "rbf", bandwidth=1.0)
    assert far == pytest.approx(2.0, abs=0.01)  # two far-apart point masses: the Gaussian MMD² bound, 2
    with pytest.raises(ValueError):
        domain.mmd(X[:1], Y)


def test_mmd_rbf_matches_a_direct_double_loop():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(5, 3)) + 0.5
    h = 1.3

    def k(a, b):
        return math.exp(-np.sum((a - b) ** 2) / (2 * h * h))

    xx = sum(k(X[i], X[j]) for i in range(6) for j in range(6) if i != j) / 30
    yy = sum(k(Y[i], Y[j]) for i in range(5) for j in range(5) if i != j) / 20
    xy = sum(k(x, y) for x in X for y in Y) / 30
    assert domain.mmd(X, Y, "rbf", h) == pytest.approx(xx + yy - 2 * xy)


def test_width_is_the_top_covariance_eigenvalue():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 3)) * np.array([3.0, 1.0, 0.5])
    assert domain.width(X) == pytest.approx(9.0, rel=0.06)
    R = np.linalg.qr(rng.normal(size=(3, 3)))[0]  # rotation does not change the spectrum
    assert domain.width(X @ R) == pytest.approx(domain.width(X))


# ---------------------------------------------------------------- eq. 3


def test_refit_of_table2_reproduces_eq3():
    rows = domain.table2_design()
    fit = domain.refit(rows)
    T = np.array([r[3] for r in rows])
    assert fit.r >= 0.9
    assert fit.coef[3] == pytest.approx(np.log(T).mean())  # z-scored regressors: intercept = mean ln T
    assert fit.coef[2] == pytest.approx(-0.80, abs=0.05)  # ln N, the dominant term, as published
    assert fit.coef[3] == pytest.approx(2.86, abs=0.05)
    pub = domain.published()
    assert pub.r >= 0.9 and pub.coef == domain.PUBLISHED_COEF


def test_published_coefficients_only_fit_standardised_regressors():
    rows = np.array(domain.table2_design())
    b = np.array(domain.PUBLISHED_COEF)
    y = np.log(rows[:, 3])
    raw = np.column_stack([rows[:, 0], rows[:, 1], np.log(rows[:, 2]), np.ones(len(rows))]) @ b
    z = domain.published()
    zx = np.array([np.append(z.z(g, w, n), 1.0) for g, w, n, _ in rows]) @ b
    assert np.sqrt(np.mean((raw - y) ** 2)) > 20  # eq. 3 on raw G, W, ln N: nonsense (W ~ 100s)
    assert np.sqrt(np.mean((zx - y) ** 2)) < 0.5


def test_refit_recovers_exact_coefficients_and_rejects_bad_rows():
    rng = np.random.default_rng(0)
    G, W, N = rng.uniform(0, 10, 20), rng.uniform(50, 900, 20), rng.uniform(1e3, 1e5, 20)
    V = np.column_stack([G, W, np.log(N)])
    z = (V - V.mean(0)) / V.std(0)
    T = np.exp(z @ [0.1, -0.3, -0.7] + 2.0)
    fit = domain.refit(np.column_stack([G, W, N, T]))
    np.testing.assert_allclose(fit.coef, [0.1, -0.3, -0.7, 2.0], atol=1e-9)
    assert fit.r == pytest.approx(1.0)
    with pytest.raises(AdvisorError, match="at least 6"):
        domain.refit([(1, 2, 3, 4)] * 3)
    with pytest.raises(AdvisorError, match="T > 0"):
        domain.refit([(1, 2, 100, -1)] * 6)


def test_predict_band_and_advice():
    pub = domain.published()
    mid = math.exp(pub.mean[2])
    fc = domain.predict(pub.mean[0], pub.mean[1], mid, pub)
    assert fc.T == pytest.approx(math.exp(2.86))  # z = 0 → intercept
    assert fc.low < fc.T < fc.high
    far = domain.predict(pub.mean[0] + 20 * pub.std[0], pub.mean[1], mid, pub)
    assert far.extrapolated == ["G"] and (far.high / far.low) > (fc.high / fc.low)
    lo, hi = domain.t_tertiles()
    assert lo < hi
    small = domain.predict(pub.mean[0], pub.mean[1] - pub.std[1], 500, pub)  # narrow, few images → high T
    big = domain.predict(pub.mean[0], pub.mean[1] + pub.std[1], 2e5, pub)
    assert domain.advice(small, 0.0)["tier"] == "high" and domain.advice(big, 0.0)["tier"] == "low"
    assert "stem" in domain.advice(small, 1.5)["recommendation"]


# ---------------------------------------------------------------- shipped reference


def test_shipped_imagenet_reference():
    ref = domain.load_reference("imagenet")
    assert ref.features.shape == (1000, 22) and ref.meta["features_version"] == domain.FEATURES_VERSION
    scale = ref.meta["table2_scale"]
    assert scale["anchor"] == "Flowers" and scale["measured_G"] * scale["G"] == pytest.approx(1.64)
    assert "imagenet" in domain.list_references()


@needs_data
def test_shipped_reference_and_calibration_remeasure():
    X, n, bad = domain.probe_features(str(DATA / "imagenet_sample" / "images"), max_images=None)
    ref = domain.load_reference("imagenet")
    assert n == 1000 and bad == 0
    np.testing.assert_allclose(X, ref.features, rtol=1e-10)


@needs_data
def test_medical_and_cartoon_gaps_exceed_photo():
    ref = domain.load_reference("imagenet")

    def gap(rel):
        X, _, _ = domain.probe_features(str(DATA / rel), max_images=400)
        return domain.gap_width(X, ref)

    photo, cartoon, xray = gap("pacs_photo"), gap("pacs_cartoon"), gap("pneumoniamnist/pneumoniamnist.npz")
    for i in (0, 2):  # linear and Gaussian-kernel gaps
        assert cartoon[i] > photo[i] and xray[i] > photo[i]


# ---------------------------------------------------------------- CLI


def test_cli_default_command_and_show(run_cli, image_folder):
    code, out, err = run_cli("domain", str(image_folder), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["N"] == 24 and r["source"] == "imagenet" and r["forecast"]["low"] < r["forecast"]["T_FB"] < r["forecast"]["high"]
    assert r["fit"]["label"].startswith("Chen et al. 2022") and r["advice"]["tier"] in ("low", "medium", "high")
    code2, out2, _ = run_cli("domain", "show", str(image_folder), "--json")
    assert code2 == 0 and json.loads(out2)["G"] == pytest.approx(r["G"])
    code, out, _ = run_cli("domain", str(image_folder), "--train-size", "50000")
    assert code == 0 and "predicted T_FB" in out


@pytest.mark.parametrize("command", [["domain"], ["domain", "show"], ["domain", "build-ref"], ["domain", "refs"]], ids=" ".join)
def test_domain_help_shows_an_example(run_cli, command):
    code, out, _ = run_cli(*command, "--help")
    assert code == 0 and "Example" in out


def test_cli_grey_tiny_npz_and_huge_image(run_cli, tmp_path):
    rng = np.random.default_rng(0)
    npz = tmp_path / "xray.npz"
    np.savez(npz, train_images=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), train_labels=np.arange(30) % 2)
    code, out, err = run_cli("domain", str(npz), "--json")
    assert code == 0, err
    from PIL import Image

    big = tmp_path / "big"
    big.mkdir()
    for i in range(2):
        Image.fromarray(np.tile(np.linspace(0, 255, 2500, dtype=np.uint8), (1800, 1))).save(big / f"b{i}.png")
    code, out, err = run_cli("domain", str(big), "--json")
    assert code == 0, err
    assert json.loads(out)["N"] == 2




def test_cli_bad_inputs_are_one_line_errors(run_cli, tmp_path, image_folder):
    one = tmp_path / "one"
    one.mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(one / "a.png")
    assert_one_line_error(run_cli("domain", str(one)), "at least 2")
    assert_one_line_error(run_cli("domain", str(tmp_path / "nope")), "does not exist")
    assert_one_line_error(run_cli("domain", str(image_folder), "--source", "places"), "no source reference 'places'", "build-ref")
    assert_one_line_error(run_cli("domain", str(image_folder), "--model", "resnet56_cifar10"), "'cifar10'", "build-ref")
    assert_one_line_error(run_cli("domain", str(image_folder), "--max-images", "1"), "--max-images")
    assert_one_line_error(run_cli("domain", str(image_folder), "--fit", "mine"), "--fit")
    dots = tmp_path / "dots"
    dots.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(dots / f"d{i}.png")
    assert_one_line_error(run_cli("domain", str(dots)), "1×1", "at least 2×2")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert_one_line_error(run_cli("domain", "build-ref", "empty", str(empty)), "contains nothing")
    assert_one_line_error(run_cli("domain", "build-ref", "bad/name", str(image_folder)), "not allowed")


def test_corrupt_image_is_skipped_with_a_warning(run_cli, image_folder):
    (image_folder / "cat" / "broken.png").write_bytes(b"not a png")
    code, out, err = run_cli("domain", str(image_folder), "--json")
    assert code == 0 and "unreadable" in err and json.loads(out)["skipped"] == 1


def test_build_ref_then_use_it(run_cli, tmp_path, image_folder, advisor_home):
    src = write_images(tmp_path / "src", {"a": 6, "b": 6}, size=32, seed=3)
    code, out, err = run_cli("domain", "build-ref", "toys", str(src))
    assert code == 0, err
    assert (advisor_home / "domains" / "toys.npz").is_file()
    assert_one_line_error(run_cli("domain", "build-ref", "toys", str(src)), "already exists", "--force")
    assert run_cli("domain", "build-ref", "toys", str(src), "--force")[0] == 0
    code, out, err = run_cli("domain", str(image_folder), "--source", "toys", "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["source"] == "toys" and any("has no calibration" in n for n in r["notes"])
    code, out, _ = run_cli("domain", "refs", "--json")
    assert {x["name"] for x in json.loads(out)} >= {"imagenet", "toys"}
    # the same images as source and target: gap at the noise floor
    code, out, _ = run_cli("domain", str(src), "--source", "toys", "--json")
    assert abs(json.loads(out)["G_rbf"]) < 0.1


def test_refit_from_csv(run_cli, tmp_path, image_folder):
    rows = domain.table2_design()
    good = tmp_path / "history.csv"
    good.write_text("G,W,N,T\n" + "".join(f"{g},{w},{n},{t}\n" for g, w, n, t in rows))
    code, out, err = run_cli("domain", str(image_folder), "--refit-from", str(good), "--json")
    assert code == 0, err
    r = json.loads(out)
    assert r["fit"]["label"] == "refit on history.csv" and r["fit"]["n"] == 12 and r["G_table2"] is None
    assert r["fit"]["r"] == pytest.approx(domain.refit(rows).r)
    short = tmp_path / "short.csv"
    short.write_text("G,W,N,T\n1,2,300,4\n")
    assert_one_line_error(run_cli("domain", str(image_folder), "--refit-from", str(short)), "at least 6")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("G,W,T\n1,2,4\n")
    assert_one_line_error(run_cli("domain", str(image_folder), "--refit-from", str(nocol)), "lacks column(s) N")
    text = tmp_path / "text.csv"
    text.write_text("G,W,N,T\n1,2,x,4\n")
    assert_one_line_error(run_cli("domain", str(image_folder), "--refit-from", str(text)), "row 2 is not numeric")
    assert_one_line_error(run_cli("domain", str(image_folder), "--refit-from", str(tmp_path / "missing.csv")), "does not exist")


def test_usage_errors_are_one_line(run_cli, image_folder):
    assert_one_line_error(run_cli("domain", "show"), "Missing argument")
    assert_one_line_error(run_cli("domain", str(image_folder), "--bogus"), "No such option: --bogus")
    assert_one_line_error(run_cli("domain", str(image_folder), "--max-images", "many"), "--max-images")
    assert run_cli("domain")[0] == 0  # no arguments: help
