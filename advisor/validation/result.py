"""What ``advisor validate`` returns: one :class:`ValidationRow` per run, the :class:`ValidationResult`
with each model's profile over the cuts, and :func:`best_cut`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from advisor.data.probe import Probe


@dataclass
class ValidationRow:
    model: str
    cut: str
    protocol: str
    seed: int
    status: str
    val_acc: float | None
    best_val_acc: float | None
    seconds: float
    tfb_mean: float | None
    reason: str = ""
    cached: bool = False
    history: list = field(default_factory=list)


@dataclass
class ValidationResult:
    rows: list[ValidationRow]
    train: Probe
    val: Probe
    split_note: str
    agreement: list[dict]  # {scope, estimator, n, weighted_tau}
    device: str
    warnings: list[str] = field(default_factory=list)  # small held-out part, τ over few models, --top short, ...
    versions: dict = field(default_factory=dict)  # advisor, timm, torch (advisor.store.repro)
    weights: dict = field(default_factory=dict)  # model id -> {weights_sha256, model_identity}
    run_id: str | None = None  # the row of the cache's runs table (`advisor runs`)

    def best_range(self, model: str) -> tuple[str, str, str] | None:
        """(best measured cut, shallower neighbour, deeper neighbour) among the sampled cuts: Gerace et al. 2023
        finds profiles regular enough that the optimum lies between the best sample's neighbours. Ties
        go to the deepest cut: the same accuracy with less to train (and small targets favour deeper
        freezing, Gerace et al. 2023; Plested & Gedeon 2019)."""
        prof = self.profile(model)
        if not prof:
            return None
        cuts = list(prof)
        i = cuts.index(best_cut(prof))
        return cuts[i], cuts[max(i - 1, 0)], cuts[min(i + 1, len(cuts) - 1)]

    def profile(self, model: str) -> dict[str, tuple[float, float, int]]:
        """``{cut: (mean, std, runs)}`` of final validation accuracy over finished repeats."""
        out = {}
        for cut in dict.fromkeys(r.cut for r in self.rows if r.model == model):
            accs = [r.val_acc for r in self.rows if r.model == model and r.cut == cut and r.status == "done"]
            if accs:
                out[cut] = (float(np.mean(accs)), float(np.std(accs)), len(accs))
        return out

    def cut_summaries(self):
        """Per (model, cut), in run order: ``(model, cut, is_best, mean, std, n, rows, tfb_mean)``:
        the profile entry (``mean``/``std`` None and ``n`` 0 when no repeat finished), whether it is the
        model's best measured cut, its rows, and the mean T_FB over them (None without one)."""
        for model in dict.fromkeys(r.model for r in self.rows):
            prof = self.profile(model)
            best = (self.best_range(model) or (None,))[0]
            for cut in dict.fromkeys(r.cut for r in self.rows if r.model == model):
                mine = [r for r in self.rows if r.model == model and r.cut == cut]
                mean, std, n = prof.get(cut, (None, None, 0))
                tfb = [r.tfb_mean for r in mine if r.tfb_mean is not None]
                yield model, cut, cut == best, mean, std, n, mine, (sum(tfb) / len(tfb) if tfb else None)


def best_cut(profile: dict[str, tuple]) -> str | None:
    """The cut with the highest mean accuracy in a ``{cut: (mean, ...)}`` profile (shallow to deep);
    ties go to the deepest: the same accuracy with less to train."""
    if not profile:
        return None
    top = max(v[0] for v in profile.values())
    return [c for c, v in profile.items() if v[0] == top][-1]

