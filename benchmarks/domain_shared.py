"""Domain gap, width and data amount of the shared data sets against the ImageNet reference
(Chen et al. 2022 "Datasets and Metrics"), and the eq. 3 forecast for each; writes docs/domain_shared.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/domain_shared.py [--write-ref]

``--write-ref`` (re)builds the shipped reference ``registry/domains/imagenet.npz`` from
``../shared/data/imagenet_sample/images`` (all 1,000 images) together with its Table-2 calibration
(the flowers17 train split = Chen et al. 2022's Flowers; see ``advisor.domain.advice.anchor_scale``). Without it the
shipped reference is used as is (and its calibration is re-measured and compared).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SETS = [
    ("flowers17", "flowers17", "Flowers (same data)"),
    ("pacs_photo", "pacs_photo", "DomainNet-r (photos)"),
    ("pacs_art_painting", "pacs_art_painting", "DomainNet-p (paintings)"),
    ("pacs_cartoon", "pacs_cartoon", "DomainNet-c (clipart)"),
    ("cifar10_small", "cifar10_small", "CIFAR-10 (1,000-image subset)"),
    ("pneumoniamnist", "pneumoniamnist/pneumoniamnist.npz", "POCUS (medical, other modality)"),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-ref", action="store_true")
    ap.add_argument("--out", default=str(REPO / "docs" / "domain_shared.md"))
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent")
    import advisor.domain as domain

    t0 = time.perf_counter()
    ref_path = REPO / "registry" / "domains" / "imagenet.npz"
    flowers_X, _, _ = domain.probe_features(str(DATA / "flowers17"), max_images=None)
    if args.write_ref:
        X, _n, bad = domain.probe_features(str(DATA / "imagenet_sample" / "images"), max_images=None)
        scale = domain.anchor_scale(X, flowers_X)
        domain.save_reference("imagenet", X, {"built_from": "../shared/data/imagenet_sample/images (1,000 ImageNet-1k images, one per class)",
                                              "unreadable": bad, "built": dt.date.today().isoformat(), "table2_scale": scale}, ref_path)
    ref = domain.load_reference("imagenet")
    t_ref = time.perf_counter() - t0
    scale = ref.meta["table2_scale"]
    check = domain.anchor_scale(ref.features, flowers_X)
    assert abs(check["G"] - scale["G"]) < 1e-9 and abs(check["W"] - scale["W"]) < 1e-9, "shipped calibration differs from a re-measurement"

    pub, t2 = domain.published(), domain.refit(domain.table2_design(), label="Table 2 refit")
    rows = []
    # noise floor: two random halves of the reference against each other (same distribution)
    perm = np.random.default_rng(0).permutation(len(ref.features))
    half_a, half_b = ref.standardise(ref.features[perm[::2]]), ref.standardise(ref.features[perm[1::2]])
    self_G, self_rbf = domain.mmd(half_a, half_b, "linear"), domain.mmd(half_a, half_b, "rbf", ref.bandwidth)
    self_W = domain.width(ref.standardise(ref.features))
    for name, rel, analogue in SETS:
        t = time.perf_counter()
        r = domain.analyse(str(DATA / rel), max_images=None, fit=pub)
        r_t2 = domain.analyse(str(DATA / rel), max_images=None, fit=t2)
        rows.append((name, analogue, r, r_t2, time.perf_counter() - t))
        print(f"{name}: G={r['G']:.3f} W={r['W']:.2f} N={r['N']} T={r['forecast']['T_FB']:.1f}", flush=True)

    tab = {r["dataset"]: r for r in domain.table2_rows()}
    cpu = platform.processor() or platform.machine()
    lines = [
        "# Domain gap, width and amount of the shared data sets (Chen et al. 2022)",
        "",
        (f"Produced by `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/domain_shared.py{' --write-ref' if args.write_ref else ''}` on "
        f"{dt.date.today().isoformat()}, {platform.node()} ({cpu}, {os.cpu_count()} cores, Python {platform.python_version()}); "
        f"total {time.perf_counter() - t0:.0f} s."),
        "",
        ("Source reference: `registry/domains/imagenet.npz`, the 22 features of the 1,000 images of "
        f"`../shared/data/imagenet_sample/images` ({len(ref.features)} images; built on {ref.meta.get('built')}). "
        "Every image of each set's train split (pneumoniamnist: `train_images`) is measured. "
        "G = linear-kernel MMD²_u, G_rbf = Gaussian-kernel MMD²_u (h = median distance in the reference, "
        f"{ref.bandwidth:.3f}), W = largest covariance eigenvalue, all on features standardised with the reference's mean and std. "
        f"Noise floor, two random halves of the reference against each other: G = {self_G:.4f}, G_rbf = {self_rbf:.4f}; "
        f"the reference's own width W = {self_W:.2f}."),
        "",
        "| set | N | G | G_rbf | W | G (Table-2 units) | W (Table-2 units) | z(G) | z(W) | z(ln N) | T_FB eq. 3 (90 % band) | T_FB Table-2 refit | freezing tiers in band | Chen et al. 2022 analogue (its G, W, T_FB) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    analogue_row = {"flowers17": "Flowers", "pacs_photo": "DomainNet-r", "pacs_art_painting": "DomainNet-p", "pacs_cartoon": "DomainNet-c",
                    "cifar10_small": "CIFAR-10", "pneumoniamnist": "POCUS"}
    for name, analogue, r, r2, secs in rows:
        fc, z, a = r["forecast"], r["forecast"]["z"], tab[analogue_row[name]]
        lines.append(
            f"| {name} | {r['N']:,} | {r['G']:.3f} | {r['G_rbf']:.4f} | {r['W']:.2f} | {r['G_table2']:.2f} | {r['W_table2']:.0f} | "
            f"{z['G']:+.2f} | {z['W']:+.2f} | {z['lnN']:+.2f} | {fc['T_FB']:.3g} ({fc['low']:.3g}–{fc['high']:.3g}) | "
            f"{r2['forecast']['T_FB']:.3g} | {'–'.join(r['advice']['tiers_in_band'])} (point: {r['advice']['tier']}) | {analogue}: {a['G']:.2f}, {a['W']:.1f}, {a['T_FB']:.2f} |")
    ordered = sorted(rows, key=lambda x: x[2]["G"])
    lines += [
        "",
        "Gap order (G): " + " < ".join(f"{n} {r['G']:.2f}" for n, _, r, _, _ in ordered) + ".",
        "Gap order (G_rbf): " + " < ".join(f"{n} {r['G_rbf']:.3f}" for n, _, r, _, _ in sorted(rows, key=lambda x: x[2]["G_rbf"])) + ".",
        "",
        "## Table-2 calibration (the Flowers anchor)",
        "",
        (f"flowers17's train split is the Flowers of Chen et al. 2022 (Oxford 17 flowers, {scale['n_anchor_images']:,} training images). Measured here: "
        f"G = {scale['measured_G']:.3f}, W = {scale['measured_W']:.3f}; Table 2: G = {scale['table2_G']}, W = {scale['table2_W']}. "
        f"So k_G = {scale['G']:.4f} and k_W = {scale['W']:.3f} convert our G, W to Table 2's units before eq. 3's z-scores. "
        f"Check on a second shared dataset: cifar10_small (a 1,000-image CIFAR-10 subset) → W = "
        f"{rows[4][2]['W_table2']:.0f} in Table-2 units vs Table 2's CIFAR-10 {tab['CIFAR-10']['W']}; G = {rows[4][2]['G_table2']:.2f} vs {tab['CIFAR-10']['G']}."),
        "",
        "## Eq. 3 and the Table 2 refit",
        "",
        "z-scores over the 12 datasets of Table 2 (`registry/chen2022_table2.csv`, population std):",
        "",
        "| | mean | std |",
        "|---|---|---|",
    ]
    for k, m, s in zip(("G", "W", "ln N"), pub.mean, pub.std):
        lines.append(f"| {k} | {m:.4f} | {s:.4f} |")
    lines += [
        "",
        "| coefficients of ln T_FB on | z(G) | z(W) | z(ln N) | intercept | r | residual SE (ln) | LOO RMSE (ln) |",
        "|---|---|---|---|---|---|---|---|",
        f"| published (eq. 3) | {pub.coef[0]:+.2f} | {pub.coef[1]:+.2f} | {pub.coef[2]:+.2f} | {pub.coef[3]:.2f} | {pub.r:.3f} | {pub.resid_se:.3f} | — |",
        f"| refit on Table 2 | {t2.coef[0]:+.3f} | {t2.coef[1]:+.3f} | {t2.coef[2]:+.3f} | {t2.coef[3]:.3f} | {t2.r:.3f} | {t2.resid_se:.3f} | {t2.loo_rmse:.3f} |",
        "",
        f"Timing: reference load/build {t_ref:.1f} s; per set (two analyses, all images): "
        + ", ".join(f"{n} {s:.1f} s" for n, _, _, _, s in rows) + ".",
        "",
    ]
    by = {n: r for n, _, r, _, _ in rows}
    far = all(by[n]["G"] > by["pacs_photo"]["G"] and by[n]["G_rbf"] > by["pacs_photo"]["G_rbf"] for n in ("pneumoniamnist", "pacs_cartoon"))
    cart_X, _, _ = domain.probe_features(str(DATA / "pacs_cartoon"), max_images=None)
    diff = ref.standardise(cart_X).mean(axis=0) - ref.standardise(ref.features).mean(axis=0)
    top = np.argsort(-diff**2)[:4]
    share = float(np.sum(diff[top] ** 2) / np.sum(diff**2))
    resid = {r["dataset"]: np.log(r["T_FB"]) - float(np.append(pub.z(r["G"], r["W"], r["N"]), 1.0) @ np.array(pub.coef))
             for r in domain.table2_rows()}
    flowers_note = ("Flowers is eq. 3's largest under-prediction on its own data" if max(resid, key=resid.get) == "Flowers"
                    else f"eq. 3's residual for Flowers on its own data is {resid['Flowers']:+.2f} (ln)")
    same_order = [n for n, *_ in sorted(rows, key=lambda x: x[2]["G"])] == [n for n, *_ in sorted(rows, key=lambda x: x[2]["G_rbf"])]
    lines += [
        "## Reading it",
        "",
        (f"- **Medical and cartoon vs photo** (Chen et al. 2022: far domains have larger gaps): "
        f"{'holds' if far else 'DOES NOT hold'} for both kernels — pneumoniamnist {by['pneumoniamnist']['G']:.2f} and pacs_cartoon "
        f"{by['pacs_cartoon']['G']:.1f} vs pacs_photo {by['pacs_photo']['G']:.2f} (G_rbf {by['pneumoniamnist']['G_rbf']:.3f}, "
        f"{by['pacs_cartoon']['G_rbf']:.3f} vs {by['pacs_photo']['G_rbf']:.3f})."),
        f"- **pacs_cartoon is far beyond Table 2** (z(G) = {by['pacs_cartoon']['forecast']['z']['G']:+.1f}): "
        + ", ".join(f"{domain.FEATURE_NAMES[i]} {diff[i]:+.2f}" for i in top)
        + f" reference standard deviations ({share:.0%} of G) — flat colour fills on white make the co-occurrence matrix "
        "concentrated (high angular second moment, low entropy), and the four directions count the same property four times. "
        "Eq. 3 was fitted on gaps up to 13.1, so its forecast there is an extrapolation: the band spans every tier and the "
        "forecast says nothing beyond 'unfreeze the stem' (large gap).",
        (f"- **Every forecast is 'high'** because the shared sets are small: N = 420–2,428 sits at the bottom of Table 2's range "
        "(z(ln N) −0.8 to −1.9), and ln N carries eq. 3 (−0.80 per standard deviation, vs −0.14 for W and −0.02 for G). "
        f"For flowers17 = Flowers, eq. 3 predicts {by['flowers17']['forecast']['T_FB']:.1f} "
        f"({by['flowers17']['forecast']['low']:.1f}–{by['flowers17']['forecast']['high']:.1f}) where Table 2 measured "
        f"{tab['Flowers']['T_FB']}: {'inside' if by['flowers17']['forecast']['low'] <= tab['Flowers']['T_FB'] <= by['flowers17']['forecast']['high'] else 'OUTSIDE'} the band; {flowers_note} (residual {resid['Flowers']:+.2f} in ln T)."),
        (f"- **CIFAR gap**: cifar10_small comes out at G = {by['cifar10_small']['G_table2']:.2f} in Table-2 units vs Table 2's "
        f"CIFAR-10 {tab['CIFAR-10']['G']} (its width agrees: {by['cifar10_small']['W_table2']:.0f} vs {tab['CIFAR-10']['W']}). "
        "At native 32 px the GLCM sees every pixel edge (lower IDM, higher contrast than 160-px ImageNet images); Chen et al. 2022 do "
        "not say at which resolution it measured, and upsampling CIFAR to 64, 160 or 224 px before measuring moved it further "
        "from ImageNet, not closer. Only G is affected, whose eq. 3 weight is the smallest."),
        ("- **Kernel**: the linear kernel (difference of standardised means) lands flowers17 on Table 2's Flowers gap without "
        f"rescaling (k_G = {scale['G']:.3f}), which is why it is G; the Gaussian kernel orders the six sets "
        f"{'identically' if same_order else 'differently (see the two gap orders above)'}."),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
