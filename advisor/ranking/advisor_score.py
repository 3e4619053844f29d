"""``advisor-score``: the ordering ``advisor rank`` uses when no estimator is named.

What it combines is not chosen here but by evidence: ``advisor bench`` fine-tunes every catalog
model on every shared target, scores each candidate ordering leave-one-target-out (every single
cheap estimator at each model's best cut and at ``pre_logits``, rank-averages of the best few, a
learned ridge combination) and writes the winner as a spec (``advisor_score.toml``), which is
committed as ``registry/advisor_score.toml`` with the report it came from
(``benchmarks/bench/bench_report.md``).

A spec has a ``kind`` and ``members``. A member is an estimator name (its score at each model's
best cut, what ``advisor rank`` ranks by) or ``name@pre_logits`` (its score at the last cut):

- ``single``: the one member's score, oriented so that higher = better;
- ``rank_average``: the mean over members of each model's rank among the candidates (1 = worst);
- ``linear``: ``Σ_e w_e z_e(m)``, with ``z_e`` the member's oriented scores standardised over the
  candidates (mean 0, std 1) and ``w_e`` the ridge weights fitted on the benchmark.

Every kind ranks the candidates of one call against each other: an advisor-score compares models
within one ranking and means nothing across probes. The combinations are pure functions on plain
dicts (:func:`rank_average`, :func:`zscores`, :func:`apply_linear_combination`), shared with the
benchmark's metrics (:mod:`advisor.bench.metrics`), which fits and judges them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError
from advisor.estimators import COMBINED

NAME = COMBINED  # "advisor-score"
PRE_LOGITS_SUFFIX = "@pre_logits"
KINDS = ("single", "rank_average", "linear")


def registry_path() -> Path:
    """The committed spec: ``registry/advisor_score.toml`` (installed as package data)."""
    from importlib import resources

    return Path(str(resources.files("advisor.registry").joinpath("advisor_score.toml")))


@dataclass(frozen=True)
class ScoreSpec:
    """How advisor-score combines estimators (see the module docstring).

    ``members``: ``"logme"`` (best cut) or ``"logme@pre_logits"``; ``weights``: member → ridge
    weight, for ``kind == "linear"`` only; ``held_out_tau``: the selection procedure's mean
    held-out weighted τ on the benchmark; ``evidence``: one line naming the report and its data."""

    kind: str
    members: tuple[str, ...]
    weights: Mapping[str, float] = field(default_factory=dict)
    held_out_tau: float | None = None
    evidence: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise AdvisorError(f"advisor-score spec: unknown kind {self.kind!r}", f"use one of {', '.join(KINDS)}")
        if not self.members:
            raise AdvisorError("advisor-score spec: no members", "name at least one estimator in members")
        if self.kind == "single" and len(self.members) != 1:
            raise AdvisorError(f"advisor-score spec: kind 'single' takes one member, got {len(self.members)}",
                               "use kind 'rank_average' or 'linear' for several")
        if self.kind == "linear" and set(self.weights) != set(self.members):
            raise AdvisorError("advisor-score spec: a linear combination needs one weight per member",
                               f"give weights for exactly {', '.join(self.members)}")

    @property
    def estimators(self) -> tuple[str, ...]:
        """The estimators to compute (members without their ``@pre_logits``), in order, once each."""
        return tuple(dict.fromkeys(m.removesuffix(PRE_LOGITS_SUFFIX) for m in self.members))

    def describe(self) -> str:
        """One line for help texts and reports, e.g. ``rank-average of logme, knn@pre_logits``."""
        if self.kind == "single":
            return self.members[0]
        if self.kind == "rank_average":
            return "rank-average of " + ", ".join(self.members)
        return "ridge combination " + " ".join(f"{self.weights[m]:+.2f}·z({m})" for m in self.members)

    def to_toml(self) -> str:
        lines = [f"# {NAME}: the ordering `advisor rank` uses when no estimator is named.",
                 f"# {self.evidence}" if self.evidence else "# chosen by `advisor bench` (benchmarks/bench/bench_report.md)",
                 f'kind = "{self.kind}"',
                 "members = [" + ", ".join(f'"{m}"' for m in self.members) + "]"]
        if self.kind == "linear":
            lines.append("weights = { " + ", ".join(f'"{m}" = {self.weights[m]:.6f}' for m in self.members) + " }")
        if self.held_out_tau is not None:
            lines.append(f"held_out_tau = {self.held_out_tau:.4f}")
        if self.evidence:
            lines.append(f'evidence = "{self.evidence}"')
        return "\n".join(lines) + "\n"


def spec_from_choice(combo: tuple[str, ...], weights: Mapping[str, float] | None, held_out_tau: float | None,
                     evidence: str) -> ScoreSpec:
    """The spec of ``advisor bench``'s final choice (:func:`advisor.bench.metrics.choose`'s ``combo``:
    one member, several to rank-average, or ``("learned",)`` with the fitted ``weights``)."""
    if combo == ("learned",):
        members = tuple(m for m, w in (weights or {}).items() if w != 0.0)
        return ScoreSpec("linear", members, {m: float(weights[m]) for m in members}, held_out_tau, evidence)
    return ScoreSpec("single" if len(combo) == 1 else "rank_average", tuple(combo), {}, held_out_tau, evidence)


def load_spec(path: str | Path | None = None) -> ScoreSpec:
    """The spec in ``path`` (default :func:`registry_path`). Raises :class:`AdvisorError` when the
    file is missing or malformed (the message names it and how to regenerate it)."""
    p = Path(path) if path else registry_path()
    fix = "regenerate it with `advisor bench` (it writes advisor_score.toml next to bench_report.md), or name estimators with -e"
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise AdvisorError(f"the advisor-score spec {p} is missing", fix) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise AdvisorError(f"the advisor-score spec {p} cannot be read: {exc}", fix) from None
    try:
        return ScoreSpec(str(raw["kind"]), tuple(str(m) for m in raw["members"]),
                         {str(k): float(v) for k, v in raw.get("weights", {}).items()},
                         None if raw.get("held_out_tau") is None else float(raw["held_out_tau"]), str(raw.get("evidence", "")))
    except (KeyError, TypeError, ValueError) as exc:
        raise AdvisorError(f"the advisor-score spec {p} is malformed ({type(exc).__name__}: {exc})", fix) from None


# ---------------------------------------------------------------- the combinations (pure)


def rank_average(scores: list[Mapping[str, float | None]]) -> dict[str, float]:
    """Mean rank (1 = worst) of each model over several estimators' oriented scores (higher =
    better, ``model -> score``); models any estimator could not score are left out (their rank
    would be undefined). Ties share their mean rank (``scipy.stats.rankdata``)."""
    from scipy.stats import rankdata

    models = [m for m in scores[0] if all(s.get(m) is not None and np.isfinite(s[m]) for s in scores)]
    if not models:
        return {}
    ranks = np.mean([rankdata([s[m] for m in models]) for s in scores], axis=0)
    return dict(zip(models, ranks.tolist()))


def zscores(score: Mapping[str, float | None], models: list[str]) -> np.ndarray:
    """``float64[len(models)]``: ``score`` standardised over ``models`` (mean 0, std 1); a missing or
    non-finite score, or a constant estimator, gives 0 (the mean: no information)."""
    v = np.array([score.get(m) if score.get(m) is not None and np.isfinite(score[m]) else np.nan for m in models], dtype=np.float64)
    ok = np.isfinite(v)
    if ok.sum() < 2 or np.std(v[ok]) == 0:
        return np.zeros(len(models))
    z = (v - np.mean(v[ok])) / np.std(v[ok])
    z[~ok] = 0.0
    return z


def apply_linear_combination(weights: Mapping[str, float], scores: Mapping[str, Mapping[str, float | None]], models: list[str]) -> dict[str, float]:
    """Combined score ``Σ_e w_e z_e(m)`` of each model (``scores[e][m]`` oriented, higher = better)."""
    total = np.zeros(len(models))
    for e, w in weights.items():
        total += w * zscores(scores.get(e, {}), models)
    return dict(zip(models, total.tolist()))


def combined(spec: ScoreSpec, member_scores: Mapping[str, Mapping[str, float | None]], models: list[str]) -> dict[str, float | None]:
    """advisor-score of each of ``models`` from ``member_scores[member][model]`` (oriented, higher =
    better; None where the member could not score the model). A model a rank-average or single
    member cannot score gets None; a linear combination treats the gap as the mean (z = 0)."""
    if spec.kind == "single":
        s = member_scores.get(spec.members[0], {})
        return {m: s.get(m) if s.get(m) is not None and np.isfinite(s[m]) else None for m in models}
    if spec.kind == "rank_average":
        avg = rank_average([{m: member_scores.get(e, {}).get(m) for m in models} for e in spec.members])
        return {m: avg.get(m) for m in models}
    if not models:
        return {}
    any_score = {m for e in spec.members for m, v in member_scores.get(e, {}).items() if v is not None and np.isfinite(v)}
    lin = apply_linear_combination(spec.weights, member_scores, models)
    return {m: lin[m] if m in any_score else None for m in models}


def member_scores(rows: list[dict], spec: ScoreSpec) -> dict[str, dict[str, float | None]]:
    """``member -> model -> oriented score`` from ``advisor.rank``'s best rows (one per model and
    estimator, with ``score`` at the best cut and ``final_cut_score`` at ``pre_logits``)."""
    out: dict[str, dict[str, float | None]] = {m: {} for m in spec.members}
    for r in rows:
        sign = 1.0 if r["higher_is_better"] else -1.0
        for member in spec.members:
            est, _, at = member.partition("@")
            if r["estimator"] != est:
                continue
            v = r["final_cut_score"] if at else r["score"]
            out[member][r["model"]] = None if v is None or not np.isfinite(v) else sign * float(v)
    return out


def score_rows(rows: list[dict], spec: ScoreSpec) -> list[dict]:
    """advisor-score rows (same fields as ``advisor.rank``'s rows, ``estimator`` = ``advisor-score``,
    ranked, failed models last) for the models of ``rows``. ``cut``: the best cut of the first
    member scored at its best cut (``pre_logits`` when every member is scored there);
    ``members``: each member's oriented score, so the combination can be checked by hand."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    ms = member_scores(rows, spec)
    score = combined(spec, ms, [m for m in models if not _row(rows, m, spec.estimators[0]).get("model_error")])
    lead = next((m for m in spec.members if PRE_LOGITS_SUFFIX not in m), None)
    out = []
    for m in models:
        base = _row(rows, m, spec.estimators[0])
        cut_row = _row(rows, m, lead) if lead else None
        s = score.get(m)
        errors = sorted({r["error"] for r in rows if r["model"] == m and r["estimator"] in spec.estimators and r["error"]})
        out.append({**base, "estimator": NAME, "higher_is_better": True, "score": s, "rank": None,
                    "cut": (cut_row["cut"] if cut_row else "pre_logits") if s is not None else None,
                    "final_cut_score": None, "cut_scores": {},
                    "score_seconds": None if base.get("model_error") else round(sum(
                        r["score_seconds"] or 0.0 for r in rows if r["model"] == m and r["estimator"] in spec.estimators), 4),
                    "error": base.get("model_error") or (None if s is not None else "; ".join(errors) or "a member estimator gave no score"),
                    "members": {k: v.get(m) for k, v in ms.items()}})
    ranked = sorted((r for r in out if r["score"] is not None), key=lambda r: -r["score"])
    for i, r in enumerate(ranked, start=1):
        r["rank"] = i
    return ranked + [r for r in out if r["score"] is None]


def _row(rows: list[dict], model: str, estimator: str) -> dict:
    return next(r for r in rows if r["model"] == model and r["estimator"] == estimator)


def expand(names: list[str]) -> tuple[ScoreSpec | None, list[str]]:
    """``(spec, estimators)`` for a list of estimator names that may include ``advisor-score``:
    the spec (None when it is not named) and the estimators to compute, in order, once each
    (advisor-score's members in its place)."""
    if NAME not in names:
        return None, list(dict.fromkeys(names))
    spec = load_spec()
    out: list[str] = []
    for n in names:
        out += list(spec.estimators) if n == NAME else [n]
    return spec, list(dict.fromkeys(out))


def with_score_rows(rows: list[dict], spec: ScoreSpec, names: list[str]) -> list[dict]:
    """``rows`` with advisor-score's rows added (:func:`score_rows`), all grouped per estimator in
    the order of ``names`` (advisor-score's members follow it where they were not named)."""
    order = expand_order(names, spec)
    every = score_rows(rows, spec) + rows
    return sorted(every, key=lambda r: order.index(r["estimator"]) if r["estimator"] in order else len(order))


def expand_order(names: list[str], spec: ScoreSpec) -> list[str]:
    out: list[str] = []
    for n in names:
        out += [NAME, *spec.estimators] if n == NAME else [n]
    return list(dict.fromkeys(out))
