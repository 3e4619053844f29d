"""Chen et al. 2022 eq. 3, the regression of the parameter-distance transferability T_FB on the domain
gap G, width W and data amount N: ``ln T_FB = −0.02·z(G) − 0.14·z(W) − 0.80·z(ln N) + 2.86``,
where z(·) are z-scores over the 12 datasets of Chen et al. 2022 Table 2
(``registry/chen2022_table2.csv``). :func:`published` is eq. 3 as published, :func:`refit` a
least-squares fit on other (G, W, N, T) rows, :func:`predict` a forecast with its prediction band.
See docs/domain_shared.md for why the z-scores, the refit, and how our G and W are put on Table 2's
scale.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from advisor.errors import AdvisorError

TABLE2_FILE = "chen2022_table2.csv"  # in advisor.registry


def table2_rows() -> list[dict]:
    """Chen et al. 2022 Table 2 as shipped (registry/chen2022_table2.csv): dataset, G, W, N, T_FB, T_SB.
    N is the training-set size of Table 1 (Table 2 rounds it to '50k', '3.1k', ...)."""
    text = resources.files("advisor.registry").joinpath(TABLE2_FILE).read_text()
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
    """Table 2 as refit rows: [(G, W, N, T_FB), ...]."""
    rows = table2_rows()
    return [(r["G"], r["W"], r["N"], r["T_FB"]) for r in rows]


def published() -> Fit:
    """Eq. 3 with its published coefficients, on Table 2's z-scores; r, residual SE and LOO error are
    those of the published coefficients on Table 2 (LOO: of the refit, the published fit has none)."""
    X, y, mean, std = _design(table2_design())
    fit = _finish(X, y, np.array(PUBLISHED_COEF), mean, std, "Chen et al. 2022 (published coefficients)")
    loo = refit(table2_design()).loo_rmse
    return Fit(**{**fit.__dict__, "loo_rmse": loo})


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
