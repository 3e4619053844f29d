"""``--report out.md``: one shareable markdown file per command — the result table, the settings,
the versions and weights fingerprints (:mod:`advisor.store.repro`), the warnings, and the command's plot
as a PNG next to the markdown (``out.<plot>.png``, linked relatively, so the folder can be shared).

Every file is written to a temporary file in the same folder and renamed over the target
(``os.replace``), so a reader never sees half a report and an interrupted write leaves the old one;
a path that cannot be written is one :class:`AdvisorError` line.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import tempfile
from pathlib import Path
from typing import Callable

from advisor.errors import AdvisorError


# ---------------------------------------------------------------- writing


def plot_path(report: Path, name: str) -> Path:
    """Where the plot ``name`` of the report at ``report`` goes: ``<stem>.<name>.png`` beside it."""
    report = Path(report)
    return report.with_name(f"{report.stem}.{name}.png")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """``write(tmp_path)`` then rename it to ``path``; the temporary file is removed on any failure."""
    path = Path(path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
        os.close(fd)
    except OSError as exc:
        raise AdvisorError(f"cannot write {path}: {exc.strerror or exc}", "write the report somewhere you can write") from None
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make a shared report unreadable to others
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise AdvisorError(f"cannot write {path}: {exc.strerror or exc}", "write the report somewhere with room that you can write") from None
        raise


def write_report(path: Path, markdown: str, plots: dict[str, Callable[[str], None]] | None = None) -> list[Path]:
    """Write the plots (``{name: draw(png_path)}``) then the markdown, each atomically; returns the
    paths written, the markdown first."""
    path = Path(path).expanduser()
    written = []
    for name, draw in (plots or {}).items():
        png = plot_path(path, name)
        atomic_write(png, draw)
        written.append(png)

    def text(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(markdown)
            fh.flush()
            os.fsync(fh.fileno())

    atomic_write(path, text)
    return [path, *written]


# ---------------------------------------------------------------- markdown pieces


def _cell(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _settings(settings: dict) -> str:
    shown = {k: v for k, v in settings.items() if v not in (None, False, [], (), "")}
    return table(["setting", "value"], [[k, ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else v] for k, v in shown.items()])


def _repro(versions: dict | None, weights: dict, run_id: str | None) -> str:
    v = versions or {}
    out = ["## Reproducibility\n",
           f"advisor {v.get('advisor') or '?'}, timm {v.get('timm') or '?'}, torch {v.get('torch') or '?'}"
           + (f"; run `{run_id}` in the cache (`advisor runs`)" if run_id else "") + "\n"]
    if weights:
        out.append(table(["model", "weights sha256", "model identity"],
                         [[m, (w or {}).get("weights_sha256") or "– (no weights file)", (w or {}).get("model_identity")]
                          for m, w in weights.items()]))
    return "\n".join(out) + "\n"


def _warnings(warnings: list[str]) -> str:
    if not warnings:
        return ""
    return "## Warnings\n\n" + "\n".join(f"- {w}" for w in warnings) + "\n"


def _doc(title: str, subtitle: str, sections: list[str]) -> str:
    stamp = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    return f"# {title}\n\n{subtitle}\n\n_Written by advisor on {stamp}._\n\n" + "\n".join(s for s in sections if s)


def _img(report: Path, name: str, alt: str) -> str:
    return f"![{alt}]({plot_path(report, name).name})\n"


# ---------------------------------------------------------------- per command


def _decision(lines: list[str] | None) -> str:
    """The recommendation as the command printed it (:mod:`advisor.ranking.decision`), one paragraph a line."""
    return "## Recommendation\n\n" + "\n\n".join(lines) + "\n" if lines else ""


def rank_report(path: Path, result, settings: dict, decision_lines: list[str] | None = None) -> list[Path]:
    """``advisor rank --report``: the ranking by every estimator (best cut each), a bar chart of the
    first estimator's scores, the recommendation (``decision_lines``), settings, warnings, versions
    and weights."""
    rows = result.rows
    ests = list(dict.fromkeys(r["estimator"] for r in rows))
    by = {(r["model"], r["estimator"]): r for r in rows}
    order = [r["model"] for r in rows if r["estimator"] == ests[0]] if ests else []
    body = []
    for m in order:
        first = by[(m, ests[0])]
        cells = [first["rank"], m, first["cut"]]
        for e in ests:
            r = by[(m, e)]
            cells.append(r["score"] if r["score"] is not None else ("failed" if r["error"] and not r["error"].startswith("skipped") else "skipped"))
        body.append(cells)
    arrows = {e: "↑" if by[(order[0], e)]["higher_is_better"] else "↓" for e in ests} if order else {}
    p = result.probe
    weights = dict(result.weights) or {m: {k: by[(m, ests[0])].get(k) for k in ("weights_sha256", "model_identity")} for m in order}
    plots = {}
    sections = ["## Ranking\n", table(["#", "model", f"best cut ({ests[0] if ests else ''})", *[f"{e} {arrows.get(e, '')}" for e in ests]], body)]
    if any(r["score"] is not None for r in rows if r["estimator"] == (ests[0] if ests else None)):
        plots["scores"] = lambda png: _rank_plot(result, png)
        sections.append(_img(path, "scores", f"{ests[0]} score per model"))
    if result.failed:
        sections.append("Not ranked:\n\n" + "\n".join(f"- {m}: {why}" for m, why in result.failed.items()) + "\n")
    sections += [_decision(decision_lines), "## Settings\n", _settings(settings), _warnings(list(result.warnings)),
                 _repro(next((r.get("versions") for r in rows), None), weights, result.run_id)]
    md = _doc(f"advisor rank: {p.spec}", f"{p.summary()}" + (f", {len(p.skipped)} unreadable skipped" if p.skipped else "")
              + (f"; reference: {result.reference}" if result.reference else ""), sections)
    return write_report(path, md, plots)


def _rank_plot(result, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ranked = result.top(len(result))
    names = [r["model"].split("/")[-1][:40] for r in ranked][::-1]
    scores = [r["score"] for r in ranked][::-1]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.5))
    ax.plot(scores, range(len(names)), "o", color="tab:blue")  # dots: scores need not start at 0 (LogME is often < 0)
    for i, sc in enumerate(scores):
        ax.annotate(f"{sc:.4g}", (sc, i), textcoords="offset points", xytext=(6, -3), fontsize=8)
    ax.margins(x=0.15, y=0.3)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    est = result.estimator
    ax.set_xlabel(f"{est} at each model's best cut ({'higher' if ranked and ranked[0]['higher_is_better'] else 'lower'} is better)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110, format="png")
    plt.close(fig)


def layers_report(path: Path, profile, settings: dict, measured: dict | None = None, decision_lines: list[str] | None = None) -> list[Path]:
    """``advisor layers --report``: the score per cut of every estimator, the recommendation and its
    rule, the profile plot (the same as ``--plot``), settings, warnings, versions and weights."""
    from advisor.data.small_samples import spread

    header = ["cut", *[f"{e} {'↑' if profile.higher_is_better[e] else '↓'}" for e in profile.estimators]]
    if measured is not None:
        header.append("measured acc (defrost)")
    rec = profile.recommendation
    body = []
    for i, cut in enumerate(profile.cuts):
        cells = [cut + (" ◀ freeze up to here" if rec is not None and cut == rec.cut else "")]
        cells += [profile.scores[e][i] for e in profile.estimators]
        if measured is not None:
            m = measured.get(cut)
            cells.append("–" if m is None else f"{m[0]:.4f} ± {'–' if spread(m[1], m[2]) is None else f'{m[1]:.4f}'} ({m[2]} runs)")
        body.append(cells)
    data = profile.to_json()
    p = profile.result.probe
    sections = ["## Score per cut\n", table(header, body),
                (f"**Recommendation:** freeze up to `{rec.cut}` (it and every cut before it); fine-tune the rest.\n\n"
                 f"Rule: {rec.rule}\n") if rec is not None else f"No recommendation: {profile.estimators[0]} produced no score.\n",
                _img(path, "profile", "score per cut"), _decision(decision_lines),
                "## Settings\n", _settings(settings), _warnings(data.get("warnings") or []),
                _repro(data.get("versions"), data.get("weights") or {}, profile.result.run_id)]

    def draw(png: str) -> None:
        from advisor.ranking.layers import plot

        plot(profile, png, measured)

    md = _doc(f"advisor layers: {profile.model} on {p.spec}", f"{p.summary()}; reference: {profile.result.reference}", sections)
    return write_report(path, md, {"profile": draw})


def validate_report(path: Path, result, settings: dict) -> list[Path]:
    """``advisor validate --report``: measured accuracy per model and cut (mean ± std over runs, "–"
    for a single run), the best cut and its range, the estimators' weighted τ, the defrosting
    profile plot, settings, warnings, versions and weights."""
    from advisor.data.small_samples import spread

    body = [[model, cut + (" ★" if is_best else ""), mean, spread(std, n), f"{n}/{len(mine)}", tfb]
            for model, cut, is_best, mean, std, n, mine, tfb in result.cut_summaries()]
    models = list(dict.fromkeys(r.model for r in result.rows))
    sections = ["## Measured accuracy\n", table(["model", "cut", "val acc (mean)", "± std", "runs", "T_FB"], body)]
    if result.agreement:
        sections += ["## Estimators vs measured accuracy (weighted Kendall τ)\n",
                     table(["scope", "estimator", "n", "weighted τ"], [[a["scope"], a["estimator"], a["n"], a["weighted_tau"]] for a in result.agreement])]
    plots = {}
    if any(result.profile(m) for m in models):
        from advisor.validation.plots import plot_profiles

        plots["profile"] = lambda png: plot_profiles(result, png)
        sections.append(_img(path, "profile", "defrosting profile"))
    sections += ["## Settings\n", _settings(settings), _warnings(result.warnings), _repro(result.versions, result.weights, result.run_id)]
    md = _doc(f"advisor validate: {result.train.spec}", f"{result.split_note}; device {result.device}", sections)
    return write_report(path, md, plots)
