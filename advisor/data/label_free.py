"""Which estimators can run on a probe, and the defaults when the probe has no labels.

An unlabelled probe (a flat folder of images) cannot feed LogME, kNN or any other estimator that
needs labels. What needs no labels is a *target reference*: ``--reference model:<id>[@cut]``, a model
already trained on the target images (Song et al. 2020's target network F_e). CKA (Kornblith et al.
2019; used to compare representations by Neyshabur et al. 2020) and the Information Imbalance
(Glielmo et al. 2022; used between layers by Gerace et al. 2023) then compare each cut of each
candidate with that model's representation of the same images, label-free. So:

- on an unlabelled probe with a model reference, ``rank`` defaults to :data:`LABEL_FREE_ESTIMATORS`;
- when no chosen estimator can get its inputs (no labels and no reference, say), the command stops
  before any work with one line naming what is missing and the flag that supplies it;
- when every estimator was skipped on every model (e.g. all need source logits the models lack),
  the run is an error too, not an empty table with exit 0.
"""

from __future__ import annotations

from advisor.errors import AdvisorError

LABEL_FREE_ESTIMATORS = ("cka", "ii")
REFERENCE_RECIPE = "--reference model:<id> (a model trained on these images; cka and ii compare each cut with it, no labels needed)"


def default_estimators(probe, ref_kind: str, labelled_defaults: tuple[str, ...]) -> tuple[str, ...]:
    """The estimators ``rank`` uses when none are named: ``labelled_defaults`` on a labelled probe,
    the label-free ones on an unlabelled probe that has a model reference."""
    if probe.labels is None and ref_kind in ("model", "scratch"):
        return LABEL_FREE_ESTIMATORS
    return labelled_defaults


def missing_input(est, probe, ref_kind: str) -> str | None:
    """Why ``est`` cannot run on this probe with this reference (None: it can, as far as the probe
    and reference decide; source logits and attributions depend on the model)."""
    if "labels" in est.needs and probe.labels is None:
        return "needs labels"
    if "reference" in est.needs and ref_kind == "none":
        return "needs a --reference"
    if "reference_attributions" in est.needs and ref_kind == "labels":
        return "needs a model reference (labels have no attributions)"
    return None


def check_runnable(ests: list, probe, ref_kind: str, chosen: bool) -> None:
    """Raise the one-line recipe when none of ``ests`` can run; ``chosen``: the user named them."""
    why = {e.name: missing_input(e, probe, ref_kind) for e in ests}
    if not ests or any(w is None for w in why.values()):
        return
    names = ", ".join(f"{n} {w}" for n, w in why.items())
    src = probe.spec
    if probe.labels is None and ref_kind == "none":
        raise AdvisorError(f"probe '{src}' is unlabelled and no --reference is given, so no estimator can run ({names})",
                           f"add {REFERENCE_RECIPE}, or label the images (one sub-folder per class)")
    if probe.labels is None:
        raise AdvisorError(f"probe '{src}' is unlabelled, so none of the chosen estimators can run ({names})",
                           "drop --estimator to use the label-free defaults, or pass " + " ".join(f"-e {n}" for n in LABEL_FREE_ESTIMATORS)
                           + " (they compare with --reference), or label the images (one sub-folder per class)")
    if ref_kind in ("none", "labels"):
        raise AdvisorError(f"none of the chosen estimators can run on '{src}' ({names})",
                           "add --reference model:<id> (a model trained on the target)" + ("" if chosen else ", or choose estimators with -e"))
    raise AdvisorError(f"none of the chosen estimators can run on '{src}' ({names})", "choose others with -e (see `advisor plugins`)")


def check_scored(cut_scores: list[dict]) -> None:
    """Raise when every estimator was skipped for every model and cut: nothing was measured."""
    if not cut_scores or any(r["score"] is not None for r in cut_scores):
        return
    if not all((r.get("error") or "").startswith("skipped") for r in cut_scores):
        return  # failures are shown per row; only "nothing could run" is an error here
    reasons = list(dict.fromkeys(r["error"].removeprefix("skipped: ") for r in cut_scores))
    more = f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else ""
    raise AdvisorError(f"no estimator could score any model: {'; '.join(reasons[:2])}{more}",
                       "choose estimators these models and this probe can feed (`advisor plugins` lists what each needs), "
                       "e.g. -e logme -e knn on labelled images, or -e cka -e ii with --reference model:<id>")
