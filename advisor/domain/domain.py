"""Domain forecast (Chen et al. 2022): how far the target images are from the pre-training domain, how wide
they are, and what that predicts for the parameter-distance transferability T_FB.

Pure numpy / scikit-image; no torch. The pieces:

- :func:`domain_features` — Chen et al. 2022's 22 hand-crafted, category-agnostic features per image
  ("Datasets and Metrics"): the mean and standard deviation of each RGB channel (pixel values in
  [0, 1]), and four grey-level co-occurrence (GLCM) properties — angular second moment, entropy,
  contrast, inverse difference moment (scikit-image's *homogeneity*) — at 4 directions
  (0°, 45°, 90°, 135°, distance 1 pixel, symmetric, normalised).
  Grey levels are quantised to :data:`GLCM_LEVELS` = 32 (a 32×32 co-occurrence matrix: 1,000
  images take a few seconds, most of it JPEG decoding; 256 levels gives a 256×256 matrix that is
  mostly empty on small images and 64× more work per property). Entropy is computed here with the
  natural log on the normalised GLCM (``-Σ p ln p``, zeros skipped) because ``graycoprops`` only
  has it from scikit-image 0.25. Images are read as RGB (grey images replicate one channel), and
  downscaled (area resampling) so the longer side is at most :data:`MAX_SIDE` pixels: texture is
  measured at the scale a network sees, and a 6,000-pixel photo does not take a minute.
- :func:`mmd` — the domain gap G: the unbiased squared Maximum Mean Discrepancy (Gretton et al.
  2012, MMD²_u) between the target's and the source's feature distributions, after standardising
  both with the *source reference's* mean and standard deviation (unit: source standard
  deviations). Kernel for G: linear, k(x, y) = x·y, so G is the squared distance between the two
  standardised mean feature vectors (bias-corrected); no bandwidth. Why linear: on the one
  dataset both we and Chen et al. 2022 measured (flowers17 = Table 2's Flowers) it lands on Table 2's
  scale (1.63 vs 1.64), and Table 2's gaps reach 13.1, beyond any Gaussian-kernel MMD² (≤ 2).
  Reported next to it, ``G_rbf``: the same with a Gaussian kernel exp(−||x − y||² / (2 h²)), h =
  the median pairwise distance within the standardised source reference (fixed per source), which
  also sees differences in spread and shape.
- :func:`width` — the domain width W: the largest eigenvalue of the covariance of the target's
  features (standardised with the source reference's statistics, as for G).
- :func:`refit` / :data:`PUBLISHED` / :func:`predict` — Chen et al. 2022 eq. 3,
  ``ln T_FB = −0.02·z(G) − 0.14·z(W) − 0.80·z(ln N) + 2.86``, where z(·) are z-scores over the 12
  datasets of Chen et al. 2022 Table 2 (``registry/seed000_table2.csv``). See docs/domain_shared.md for
  why the z-scores, the refit, and how our G and W are put on Table 2's scale.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError

GLCM_LEVELS = 32
MAX_SIDE = 512
ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
ANGLE_NAMES = ("0", "45", "90", "135")
GLCM_PROPS = ("asm", "entropy", "contrast", "idm")
FEATURE_NAMES = tuple(
    [f"mean_{c}" for c in "rgb"] + [f"std_{c}" for c in "rgb"]
    + [f"{p}_{a}" for p in GLCM_PROPS for a in ANGLE_NAMES]
)
FEATURES_VERSION = "1"  # bump when the feature definition changes: stored references carry it
DEFAULT_SOURCE = "imagenet"
MIN_IMAGES = 2


# ---------------------------------------------------------------- the 22 features


def _as_array(image) -> np.ndarray:
    """An image (PIL, or array [H, W] / [H, W, 1] / [H, W, 3]: uint8, uint16 or float in [0, 1], see
    :func:`advisor.data.probe.pixels_to_uint8`) as uint8 [H, W, 3], downscaled so the longer side is at most MAX_SIDE."""
    from PIL import Image

    if isinstance(image, Image.Image):
        im = image.convert("RGB")
    else:
        arr = np.asarray(image)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
            raise ValueError(f"an image must be [H, W] or [H, W, 3], got shape {arr.shape}")
        from advisor.data.probe import pixels_to_uint8

        im = Image.fromarray(pixels_to_uint8(arr, "an image")).convert("RGB")  # refuses NaN or floats outside [0, 1]
    if max(im.size) > MAX_SIDE:
        scale = MAX_SIDE / max(im.size)
        im = im.resize((max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale))), Image.Resampling.BOX)
    return np.asarray(im, dtype=np.uint8)


def glcm_features(grey_levels: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """The 16 texture features of one quantised grey image (ints in ``0..levels-1``), ordered
    property-major: ASM, entropy, contrast, IDM, each at 0°, 45°, 90°, 135°."""
    from skimage.feature import graycomatrix, graycoprops

    P = graycomatrix(grey_levels, distances=[1], angles=list(ANGLES), levels=levels, symmetric=True, normed=True)
    asm = graycoprops(P, "ASM")[0]
    contrast = graycoprops(P, "contrast")[0]
    idm = graycoprops(P, "homogeneity")[0]  # Σ p(i,j) / (1 + (i-j)²): the inverse difference moment
    logs = np.log(P, where=P > 0, out=np.zeros_like(P))
    entropy = -np.sum(P * logs, axis=(0, 1))[0]
    return np.concatenate([asm, entropy, contrast, idm])


def image_features(image) -> np.ndarray:
    """The 22 domain features of one image, ordered as :data:`FEATURE_NAMES`."""
    rgb = _as_array(image)
    px = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    grey = np.asarray(_grey(rgb), dtype=np.int64)
    q = (grey * GLCM_LEVELS) // 256  # 0..255 → 0..GLCM_LEVELS-1, equal-width bins
    return np.concatenate([px.mean(axis=0), px.std(axis=0), glcm_features(q.astype(np.uint8))])


def _grey(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma (PIL's "L"), uint8."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


def domain_features(images: Iterable) -> np.ndarray:
    """float64[N, 22]: :func:`image_features` of every image (PIL images or arrays)."""
    rows = [image_features(im) for im in images]
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)))
    return np.stack(rows)


# ---------------------------------------------------------------- gap and width


def _check(X: np.ndarray, what: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{what} must be 2-D [N, D], got shape {X.shape}")
    if X.shape[0] < MIN_IMAGES:
        raise ValueError(f"{what} needs at least {MIN_IMAGES} rows, got {X.shape[0]}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{what} has non-finite values")
    return X


def median_bandwidth(X: np.ndarray) -> float:
    """The median pairwise Euclidean distance between the rows of X (distinct pairs)."""
    X = _check(X, "X")
    d2 = _sq_dists(X, X)
    iu = np.triu_indices(len(X), k=1)
    h = float(np.sqrt(np.median(d2[iu])))
    return h if h > 0 else 1.0


def _sq_dists(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    d2 = (A * A).sum(1)[:, None] + (B * B).sum(1)[None, :] - 2.0 * A @ B.T
    return np.maximum(d2, 0.0)


def mmd(X: np.ndarray, Y: np.ndarray, kernel: str = "linear", bandwidth: float | None = None) -> float:
    """Unbiased squared Maximum Mean Discrepancy, MMD²_u (Gretton et al. 2012, eq. 3), between the
    samples X [m, D] and Y [n, D]:

        mean_{i≠j} k(x_i, x_j) + mean_{i≠j} k(y_i, y_j) − 2 mean_{i,j} k(x_i, y_j).

    ``kernel="linear"`` (k(x, y) = x·y): the squared distance between the two mean vectors, minus
    its small-sample bias (tr Σ_X / m + tr Σ_Y / n for the plain ``||x̄ − ȳ||²``); unbounded.
    ``kernel="rbf"``: k(x, y) = exp(−||x − y||² / (2 h²)) with ``bandwidth`` h (default: the median
    pairwise distance within Y, the source side by convention here); in [−, 2], sensitive to every
    moment. Both are 0 in expectation when X and Y come from one distribution (a finite sample can
    come out slightly negative)."""
    X, Y = _check(X, "X"), _check(Y, "Y")
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"X has {X.shape[1]} features, Y has {Y.shape[1]}")
    m, n = len(X), len(Y)
    if kernel == "linear":
        sx, sy = X.sum(axis=0), Y.sum(axis=0)
        xx = (sx @ sx - np.einsum("ij,ij->", X, X)) / (m * (m - 1))
        yy = (sy @ sy - np.einsum("ij,ij->", Y, Y)) / (n * (n - 1))
        return float(xx + yy - 2.0 * (sx @ sy) / (m * n))
    if kernel != "rbf":
        raise ValueError(f"kernel must be 'linear' or 'rbf', got {kernel!r}")
    h = median_bandwidth(Y) if bandwidth is None else float(bandwidth)
    if not h > 0:
        raise ValueError(f"bandwidth must be positive, got {h}")
    g = 1.0 / (2.0 * h * h)
    kxx = np.exp(-g * _sq_dists(X, X))
    kyy = np.exp(-g * _sq_dists(Y, Y))
    kxy = np.exp(-g * _sq_dists(X, Y))
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def width(X: np.ndarray) -> float:
    """The largest eigenvalue of the sample covariance (ddof = 1) of the rows of X."""
    X = _check(X, "X")
    return float(np.linalg.eigvalsh(np.cov(X, rowvar=False)).max())


# ---------------------------------------------------------------- source references


@dataclass
class Reference:
    """A source domain's feature sample and the statistics derived from it."""

    name: str
    features: np.ndarray  # float64[N, 22]
    meta: dict
    path: str = ""
    mean: np.ndarray = field(init=False)
    std: np.ndarray = field(init=False)
    bandwidth: float = field(init=False)

    def __post_init__(self):
        self.features = np.asarray(self.features, dtype=np.float64)
        self.mean = self.features.mean(axis=0)
        sd = self.features.std(axis=0, ddof=1)
        # a feature constant over the source (e.g. std of a grey-only source) gets unit scale
        self.std = np.where(sd > 1e-12, sd, 1.0)
        self.bandwidth = median_bandwidth(self.standardise(self.features))

    def standardise(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std


def user_domains_dir() -> Path:
    from advisor.store.cache import default_home

    return default_home() / "domains"


def _shipped(name: str):
    return resources.files("advisor.registry").joinpath("domains", f"{name}.npz")


def is_shipped(name: str) -> bool:
    """Whether ``name`` is a source reference shipped with advisor (e.g. ``imagenet``)."""
    return _shipped(name).is_file()


def list_references() -> list[str]:
    """Names of every usable source reference: shipped ones, then the user's ($ADVISOR_HOME/domains)."""
    names = set()
    folder = resources.files("advisor.registry").joinpath("domains")
    if folder.is_dir():
        names |= {p.name[:-4] for p in folder.iterdir() if p.name.endswith(".npz")}
    user = user_domains_dir()
    if user.is_dir():
        names |= {p.stem for p in user.glob("*.npz")}
    return sorted(names)


def _read_npz(data: bytes | Path, name: str, where: str) -> Reference:
    try:
        with np.load(io.BytesIO(data) if isinstance(data, bytes) else data, allow_pickle=False) as z:
            feats = z["features"]
            meta = json.loads(str(z["meta"]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise AdvisorError(f"source reference '{name}' at {where} is unreadable ({type(exc).__name__})",
                           f"rebuild it: advisor domain build-ref {name} FOLDER --force") from None
    if feats.ndim != 2 or feats.shape[1] != len(FEATURE_NAMES) or meta.get("features_version") != FEATURES_VERSION:
        raise AdvisorError(f"source reference '{name}' at {where} was built with another feature definition",
                           f"rebuild it: advisor domain build-ref {name} FOLDER --force")
    return Reference(name=name, features=feats, meta=meta, path=where)


def load_reference(name: str) -> Reference:
    """The source reference called ``name``: the user's ($ADVISOR_HOME/domains/NAME.npz) if any,
    else the one shipped in ``advisor.registry/domains``."""
    user = user_domains_dir() / f"{name}.npz"
    if user.is_file():
        return _read_npz(user, name, str(user))
    shipped = _shipped(name)
    if shipped.is_file():
        return _read_npz(shipped.read_bytes(), name, f"advisor.registry/domains/{name}.npz")
    known = list_references()
    raise AdvisorError(f"no source reference '{name}' (known: {', '.join(known) or 'none'})",
                       f"build one from a folder of source-domain images: advisor domain build-ref {name} FOLDER")


def save_reference(name: str, features: np.ndarray, meta: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**meta, "name": name, "features_version": FEATURES_VERSION, "feature_names": list(FEATURE_NAMES),
            "glcm_levels": GLCM_LEVELS, "max_side": MAX_SIDE, "n_images": len(features)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, features=np.asarray(features, dtype=np.float64), meta=np.array(json.dumps(meta, sort_keys=True)))
    os.replace(tmp, path)
    return path


def valid_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name):
        raise AdvisorError(f"reference name '{name}' is not allowed", "use letters, digits, '.', '_' or '-' (e.g. imagenet, places365)")
    return name


def source_for_model(model_id: str) -> str:
    """The source reference of the pre-training domain a model declares, read from a catalog entry's
    ``pretrain`` text or the timm tag: CIFAR-10/100 → ``cifar10``/``cifar100``; a catalog entry whose
    ``domain`` is not photos → its data set's name (``mnist``, ``svhn``, ``fer2013``, ...); otherwise
    imagenet (ImageNet tags ``.in1k``, ``.in22k``, ...; timm's default pre-training)."""
    from advisor.models.models import catalog_entry

    entry = catalog_entry(model_id) or {}
    text = (entry.get("pretrain") or model_id).lower()
    m = re.search(r"cifar-?(10|100)\b", text)
    if m:
        return f"cifar{m.group(1)}"
    # the catalog's `domain` is a description ("photos", "digits", "text images"), not a reference
    # name: photo models are ImageNet's; the others are named after their data set (mnist, svhn, ...)
    described = str(entry.get("domain", "")).split(" (")[0].strip()
    if described and described not in ("photos", "tiny photos"):
        m = re.match(r"[a-z0-9][a-z0-9-]*", text)
        if m:
            return m.group(0)
    return DEFAULT_SOURCE


def model_source(model_id: str) -> tuple[str, str | None]:
    """``advisor domain --model ID``: the model's pre-training domain and a note when it is assumed,
    or a one-line error (with a did-you-mean) for an id that names no known model. Catalog names and
    timm architectures (with or without a pretrained tag) are known; ids of another source
    (``hf-hub:``, ``file:``, ``local-dir:``, a plugin's) are accepted as given."""
    from advisor.models.models import catalog, catalog_entry, parse_model_id

    ref = parse_model_id(model_id)
    entry = catalog_entry(model_id)
    src = source_for_model(model_id)
    declared = bool(entry and entry.get("domain")) or src != DEFAULT_SOURCE or re.search(r"(in1k|in12k|in21k|in22k|imagenet)", model_id.lower())
    note = None if declared else (f"'{model_id}' declares no pre-training domain: the {DEFAULT_SOURCE} reference is assumed "
                                  "(pass --source NAME to choose another)")
    if entry is not None or ref.prefix != "timm":
        return src, note
    import timm

    if timm.is_model(ref.name):
        return src, note
    import difflib

    names = list(dict.fromkeys([n for n in catalog() if n != "defaults"] + timm.list_models() + timm.list_models(pretrained=True)))
    close = difflib.get_close_matches(ref.name, names, n=3, cutoff=0.6)
    hint = (f"did you mean {' or '.join(repr(c) for c in close)}? " if close else "") + \
        "pass a catalog name (registry/models.toml) or a timm model name, or name the domain with --source (see `advisor domain refs`)"
    raise AdvisorError(f"unknown model '{model_id}' for --model", hint)


# ---------------------------------------------------------------- eq. 3: the regression


def table2_rows() -> list[dict]:
    """Seed 000 Table 2 as shipped (registry/seed000_table2.csv): dataset, G, W, N, T_FB, T_SB.
    N is the training-set size of Table 1 (Table 2 rounds it to '50k', '3.1k', ...)."""
    text = resources.files("advisor.registry").joinpath("seed000_table2.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    return [{k: (v if k == "dataset" else float(v)) for k, v in r.items()} for r in rows]


@dataclass(frozen=True)
class Fit:
    """ln T = b_G·z(G) + b_W·z(W) + b_N·z(ln N) + b_0, with z(v) = (v - mean) / std (population std,
    ddof = 0) over the fitting rows. ``cov_unscaled`` is (XᵀX)⁻¹ of the fitting design (for the
    prediction band); ``resid_se`` the residual standard error on ``dof`` = n - 4 degrees of freedom."""

    coef: tuple[float, float, float, float]  # b_G, b_W, b_N, b_0
    mean: tuple[float, float, float]  # of G, W, ln N
    std: tuple[float, float, float]
    r: float  # correlation of fitted and observed ln T on the fitting rows
    resid_se: float
    dof: int
    loo_rmse: float  # leave-one-out prediction error of ln T
    n: int
    cov_unscaled: tuple
    label: str = ""

    def z(self, G: float, W: float, N: float) -> np.ndarray:
        v = np.array([G, W, math.log(N)])
        return (v - np.array(self.mean)) / np.array(self.std)

    def to_json(self) -> dict:
        return {"label": self.label, "coef": dict(zip(("G", "W", "lnN", "intercept"), self.coef)),
                "standardisation": {k: {"mean": m, "std": s} for k, m, s in zip(("G", "W", "lnN"), self.mean, self.std)},
                "r": self.r, "resid_se": self.resid_se, "dof": self.dof, "loo_rmse": self.loo_rmse, "n": self.n}


MIN_REFIT_ROWS = 6  # 4 coefficients + at least 2 residual degrees of freedom


def _design(rows: Sequence[Sequence[float]]):
    A = np.asarray(rows, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != 4:
        raise AdvisorError(f"refit needs rows of (G, W, N, T), got an array of shape {A.shape}", "one row per validated dataset: G,W,N,T")
    if len(A) < MIN_REFIT_ROWS:
        raise AdvisorError(f"refit needs at least {MIN_REFIT_ROWS} rows (G, W, N, T), got {len(A)}",
                           "collect more validation runs, or use the published regression of Chen et al. 2022 (omit --refit-from)")
    if not np.all(np.isfinite(A)) or np.any(A[:, 2] <= 0) or np.any(A[:, 3] <= 0):
        raise AdvisorError("refit rows must be finite with N > 0 and T > 0", "fix the offending rows (T is a ratio of distances, N an image count)")
    V = np.column_stack([A[:, 0], A[:, 1], np.log(A[:, 2])])
    mean, std = V.mean(axis=0), V.std(axis=0)
    if np.any(std == 0):
        name = ("G", "W", "N")[int(np.flatnonzero(std == 0)[0])]
        raise AdvisorError(f"refit rows all have the same {name}", "the rows must vary in G, W and N to fit their effects")
    X = np.column_stack([(V - mean) / std, np.ones(len(A))])
    return X, np.log(A[:, 3]), mean, std


def refit(rows: Sequence[Sequence[float]], label: str = "refit") -> Fit:
    """Least-squares fit of ln T on the z-scored (G, W, ln N) of ``rows`` = [(G, W, N, T), ...]."""
    X, y, mean, std = _design(rows)
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    return _finish(X, y, coef, mean, std, label)


def _finish(X, y, coef, mean, std, label) -> Fit:
    n = len(y)
    fitted = X @ coef
    resid = y - fitted
    dof = n - X.shape[1]
    cov = np.linalg.pinv(X.T @ X)
    hat = np.einsum("ij,jk,ik->i", X, cov, X)
    loo = resid / np.maximum(1.0 - hat, 1e-12)  # exact leave-one-out residuals of OLS
    r = float(np.corrcoef(y, fitted)[0, 1]) if np.std(fitted) > 0 else 0.0
    return Fit(coef=tuple(float(c) for c in coef), mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
               r=r, resid_se=float(np.sqrt(resid @ resid / dof)), dof=int(dof), loo_rmse=float(np.sqrt(np.mean(loo**2))),
               n=n, cov_unscaled=tuple(map(tuple, cov)), label=label)


PUBLISHED_COEF = (-0.02, -0.14, -0.80, 2.86)  # Chen et al. 2022 eq. 3


def table2_design():
    rows = table2_rows()
    return [(r["G"], r["W"], r["N"], r["T_FB"]) for r in rows]


def published() -> Fit:
    """Eq. 3 with its published coefficients, on Table 2's z-scores; r, residual SE and LOO error are
    those of the published coefficients on Table 2 (LOO: of the refit, the published fit has none)."""
    X, y, mean, std = _design(table2_design())
    fit = _finish(X, y, np.array(PUBLISHED_COEF), mean, std, "Chen et al. 2022 (published coefficients)")
    loo = refit(table2_design()).loo_rmse
    return Fit(**{**fit.__dict__, "loo_rmse": loo})


# ---------------------------------------------------------------- prediction and advice


@dataclass
class Forecast:
    T: float
    low: float
    high: float
    level: float
    z: tuple[float, float, float]
    fit: Fit
    extrapolated: list[str]

    def to_json(self) -> dict:
        return {"T_FB": self.T, "low": self.low, "high": self.high, "level": self.level,
                "z": dict(zip(("G", "W", "lnN"), self.z)), "extrapolated": self.extrapolated}


def predict(G: float, W: float, N: float, fit: Fit | None = None, level: float = 0.9) -> Forecast:
    """Predicted T_FB for (G, W, N) on ``fit``'s scale, with a ``level`` prediction interval:
    ln T ± t_{dof}·s·sqrt(1 + xᵀ(XᵀX)⁻¹x), s = max(residual SE, LOO RMSE) of the fit (the
    textbook OLS prediction band, widened to the leave-one-out error when that is larger)."""
    from scipy import stats

    fit = fit or published()
    if N <= 0:
        raise AdvisorError(f"data amount N must be positive, got {N}", "pass the number of training images (--train-size)")
    z = fit.z(G, W, N)
    x = np.append(z, 1.0)
    ln_t = float(x @ np.array(fit.coef))
    s = max(fit.resid_se, fit.loo_rmse)
    half = float(stats.t.ppf(0.5 + level / 2, fit.dof) * s * math.sqrt(1.0 + x @ np.array(fit.cov_unscaled) @ x))
    names = ("G", "W", "lnN")
    # outside the fitting rows' range (|z| beyond the largest |z| of the fitting rows, ~1.7-2.9 for Table 2)
    extrapolated = [n for n, v in zip(names, z) if abs(v) > 3.0]
    return Forecast(T=_exp(ln_t), low=_exp(ln_t - half), high=_exp(ln_t + half), level=level,
                    z=tuple(float(v) for v in z), fit=fit, extrapolated=extrapolated)


def _exp(v: float) -> float:
    """exp that saturates instead of overflowing (a far extrapolation can give ln T in the thousands)."""
    return math.exp(max(-700.0, min(700.0, v)))


def t_tertiles() -> tuple[float, float]:
    """The lower and upper tertile of T_FB over Chen et al. 2022 Table 2: the thresholds of :func:`advice`."""
    t = np.array([r["T_FB"] for r in table2_rows()])
    lo, hi = np.quantile(t, [1 / 3, 2 / 3])
    return float(lo), float(hi)


def advice(forecast: Forecast, z_gap: float) -> dict:
    """What the forecast implies for freezing. The rule (Chen et al. 2022; Gerace et al. 2023; Plested & Gedeon 2019):

    - predicted T_FB in the upper tertile of Table 2 → the pretrained parameters are already close
      to the target's optimum (Chen et al. 2022 eq. 1): freeze most of the backbone, fine-tune the top
      (small, narrow targets benefit most from pre-training: Chen et al. 2022 §Factors; few examples favour
      deeper freezing: Gerace et al. 2023; Plested & Gedeon 2019);
    - lower tertile → the parameters must move far: fine-tune all layers;
    - in between → fine-tune the upper half;
    - and whenever the gap is large (z(G) > 1, i.e. beyond one Table-2 standard deviation, like POCUS
      or DomainNet-clipart) also unfreeze the stem: the lowest layers are the most domain-sensitive
      (Chen et al. 2022 §Layer-wise Transferability).

    The band matters: when it straddles a threshold both neighbouring tiers are named.
    """
    lo, hi = t_tertiles()

    def tier(t):
        return "high" if t >= hi else "low" if t < lo else "medium"

    what = {"high": "freeze most of the backbone; fine-tune the last stage and the head",
            "medium": "freeze the lower half; fine-tune the upper half and the head",
            "low": "fine-tune all layers (the pretrained weights are a starting point, not features to keep)"}
    t = tier(forecast.T)
    tiers = sorted({tier(forecast.low), t, tier(forecast.high)}, key=["low", "medium", "high"].index)
    text = what[t]
    if z_gap > 1.0:
        text += "; the gap is large, so also unfreeze the first layers (the stem is the most domain-sensitive, Chen et al. 2022)"
    if len(tiers) > 1:
        text += f" (the {forecast.level:.0%} band spans the {' to '.join([tiers[0], tiers[-1]])} tiers: treat as indicative)"
    return {"tier": t, "tiers_in_band": tiers, "recommendation": text,
            "rule": (f"T_FB tiers are the tertiles of T_FB over the 12 datasets of Chen et al. 2022: low < {lo:.1f} ≤ medium < {hi:.1f} ≤ high; high → freeze most, "
                     "medium → fine-tune the upper half, low → fine-tune all; z(G) > 1 → also unfreeze the stem")}


# ---------------------------------------------------------------- on Table 2's scale


def anchor_scale(ref_features: np.ndarray, anchor_features: np.ndarray, anchor_row: str = "Flowers") -> dict:
    """Factors that put our G and W on Chen et al. 2022 Table 2's scale, from one dataset measured both
    ways: the shared flowers17 train split *is* Table 2's Flowers (Oxford 17 flowers, 1,088
    training images). k_G = 1.64 / G_ours(flowers17), k_W = 145.3 / W_ours(flowers17). Seed 000 does
    not publish its feature scaling, so this one-point calibration is what makes eq. 3's z-scores
    usable; docs/domain_shared.md checks it on CIFAR-10."""
    ref = Reference(name="anchor-source", features=ref_features, meta={})
    g, w = gap_width(anchor_features, ref)[:2]
    row = next(r for r in table2_rows() if r["dataset"] == anchor_row)
    return {"anchor": anchor_row, "G": row["G"] / g, "W": row["W"] / w, "measured_G": g, "measured_W": w,
            "table2_G": row["G"], "table2_W": row["W"], "n_anchor_images": len(anchor_features)}


def gap_width(features: np.ndarray, ref: Reference) -> tuple[float, float, float]:
    """(G, W, G_rbf) of a target's features against a source reference, both standardised with the
    reference's mean and standard deviation (see the module docstring)."""
    Z, S = ref.standardise(_check(features, "target features")), ref.standardise(ref.features)
    return mmd(Z, S, "linear"), width(Z), mmd(Z, S, "rbf", ref.bandwidth)


def table2_scale(ref: Reference) -> tuple[dict, str]:
    """The reference's own Table-2 calibration, or ImageNet's (with a note) when it has none."""
    if ref.meta.get("table2_scale"):
        return ref.meta["table2_scale"], ""
    base = _read_npz(_shipped(DEFAULT_SOURCE).read_bytes(), DEFAULT_SOURCE, "shipped") if _shipped(DEFAULT_SOURCE).is_file() else None
    if base is None or not base.meta.get("table2_scale"):
        raise AdvisorError("no calibration to the scale of Chen et al. 2022's datasets available (the shipped imagenet reference is missing)",
                           "reinstall advisor")
    return base.meta["table2_scale"], (f"source '{ref.name}' has no calibration to the scale of Chen et al. 2022's datasets: ImageNet's "
                                        "factors are used, and their regression was fitted on ImageNet pre-training only, so the T_FB "
                                        "forecast is a rough guide")


# ---------------------------------------------------------------- a probe, end to end


def probe_features(spec: str, *, split: str | None = "train", max_images: int | None = 1000, seed: int = 0, warn=None,
                   progress=None):
    """Load a probe (any format of ``advisor.data.probe``), decode a seeded sample of at most
    ``max_images`` images, and return ``(features [n, 22], n_total, n_unreadable)``; ``n_total`` is the
    number of images in the split, the data amount N by default. Labels are not needed: a one-class
    folder is fine. Images are decoded one at a time (reduced while decoding, see
    :data:`advisor.data.probe.DECODE_SIDE`), so memory does not grow with the sample. ``progress`` (an
    :class:`advisor.ranking.ranking.Progress`) follows the images, one step each."""
    from advisor.data.probe import iter_images, load_probe

    probe = load_probe(spec, split=split, min_classes=1)
    n_total = len(probe)
    if n_total < MIN_IMAGES:
        raise AdvisorError(f"'{spec}' holds {n_total} image; a domain gap and width need at least {MIN_IMAGES}",
                           "point at a folder (or split) with more images")
    idx = np.arange(n_total)
    if max_images is not None and max_images < n_total:
        if max_images < MIN_IMAGES:
            raise AdvisorError(f"--max-images {max_images} is below {MIN_IMAGES}", f"pass --max-images {MIN_IMAGES} or more (default 1000)")
        idx = np.sort(np.random.default_rng(seed).choice(n_total, size=max_images, replace=False))
    rows, bad = [], {}
    step = f"{spec} (domain features)"
    if progress is not None:
        progress.start_model(step, len(idx))
    for i, im, reason in iter_images(probe, [int(i) for i in idx]):
        if progress is not None:
            progress.advance(1)
        if im is None:
            bad[i] = reason
            continue
        if min(im.size) < 2:
            raise AdvisorError(f"image {probe.item_name(i)} is {im.size[0]}×{im.size[1]} pixels; texture features need at least 2×2",
                               "remove it or resize it")
        rows.append(image_features(im))
    if progress is not None:
        progress.end_model(step, False)
    if bad and warn:
        warn(f"{len(bad)} unreadable image(s) skipped, e.g. {probe.item_name(next(iter(bad)))}: {next(iter(bad.values()))}")
    if len(rows) < MIN_IMAGES:
        raise AdvisorError(f"'{spec}': only {len(rows)} of {len(idx)} images could be read; at least {MIN_IMAGES} are needed",
                           "replace the corrupt files (see the warning) or add images")
    return np.stack(rows), n_total, len(bad)


def analyse(spec: str, *, source: str = DEFAULT_SOURCE, split: str | None = "train", max_images: int | None = 1000, seed: int = 0,
            train_size: int | None = None, fit: Fit | None = None, level: float = 0.9, warn=None, progress=None) -> dict:
    """G, W, N of a probe against a source reference, the eq. 3 forecast of T_FB with its band, and
    the freezing advice. ``fit`` defaults to the published eq. 3 (see :func:`published`); a
    :func:`refit` on the user's own (G, W, N, T) history is used on the user's own scale (no
    Table-2 calibration)."""
    ref = load_reference(source)
    X, n_total, n_bad = probe_features(spec, split=split, max_images=max_images, seed=seed, warn=warn, progress=progress)
    if train_size is not None and train_size < 1:
        raise AdvisorError(f"--train-size must be at least 1, got {train_size}", "pass the number of training images")
    N = int(train_size or n_total)
    G, W, G_rbf = gap_width(X, ref)
    notes = []
    if fit is None or fit.label.startswith("Chen et al. 2022"):
        fit = fit or published()
        scale, note = table2_scale(ref)
        G_fit, W_fit = G * scale["G"], W * scale["W"]
        notes += [note] if note else []
    else:
        G_fit, W_fit = G, W
    fc = predict(G_fit, W_fit, N, fit, level)
    if fc.extrapolated:
        notes.append(f"{', '.join(fc.extrapolated)} beyond 3 standard deviations of the fitting data: the forecast extrapolates")
    adv = advice(fc, fc.z[0])
    return {
        "probe": spec, "source": ref.name, "n_features_images": len(X), "N": N,
        "G": G, "W": W, "G_rbf": G_rbf,
        "G_table2": G_fit if fit.label.startswith("Chen et al. 2022") else None,
        "W_table2": W_fit if fit.label.startswith("Chen et al. 2022") else None,
        "forecast": fc.to_json(), "fit": fit.to_json(), "advice": adv, "notes": notes,
        "skipped": n_bad,
    }
