"""The target-side reference representation that CKA, II and DEPARA compare each cut with.

``--reference`` takes:
- ``labels`` (default when the probe is labelled): the label structure itself — one-hot rows
  [N, C], so two images are neighbours exactly when they share a class (DEPARA: the same-class
  graph; there are no attributions, so only DEPARA's edge term applies);
- ``model:<id>[@cut]``: a model already trained on the target (DEPARA's F_e of the target task,
  Song et al. 2020 §3.5); ``cut`` defaults to ``pre_logits``. Its features (and attributions when an
  estimator needs them) come from the same cached pipeline as any candidate;
- ``scratch``: a small network trained from scratch on the probe (Gerace et al. 2023), see
  :mod:`advisor.ranking.scratch`; its pre-logits features serve as the target representation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from advisor.errors import AdvisorError
from advisor.ranking.features import PRE_LOGITS
from advisor.data.probe import Probe


@dataclass
class TargetReference:
    """The target-side representation each cut is compared with (not :mod:`advisor.domain`'s source-domain sample)."""

    key: str  # part of the score cache key
    label: str  # what the user is told
    features: np.ndarray  # [N, D']
    attributions: np.ndarray | None = None  # [N, G²]


def parse_reference(spec: str | None, probe: Probe) -> tuple[str, str | None, str | None]:
    """``(kind, model_id, cut)`` from the user's ``--reference``."""
    if spec is None:
        return ("labels", None, None) if probe.labels is not None else ("none", None, None)
    if spec == "labels":
        if probe.labels is None:
            raise AdvisorError("--reference labels needs a labelled probe", "label the images (class sub-folders) or pass --reference model:<id>")
        return "labels", None, None
    if spec == "scratch":
        if probe.labels is None:
            raise AdvisorError("--reference scratch trains on the probe's labels, and this probe has none", "label the images or use --reference model:<id>")
        return "scratch", None, PRE_LOGITS
    if spec.startswith("model:"):
        rest = spec[len("model:"):]
        # the last '@' names the cut, except the single '@' of an hf-hub revision (hf-hub:org/repo@rev)
        splits = "@" in rest and not (rest.startswith("hf-hub:") and rest.count("@") == 1)
        model_id, _, cut = rest.rpartition("@") if splits else (rest, "", "")
        if not model_id:
            raise AdvisorError(f"--reference '{spec}' names no model", "write --reference model:<model id>[@cut]")
        return "model", model_id, cut or PRE_LOGITS
    raise AdvisorError(f"unknown --reference '{spec}'", "use labels or model:<model id>[@cut]")


def label_reference(probe: Probe) -> TargetReference:
    onehot = np.eye(probe.num_classes, dtype=np.float32)[probe.labels]
    return TargetReference(key="labels", label="labels (one-hot)", features=onehot)


def model_reference(model_id: str, cut: str, fingerprint: str, features: dict, cuts: list[str], attributions: dict | None) -> TargetReference:
    if cut not in features:
        raise AdvisorError(f"reference model '{model_id}' has no cut '{cut}'", f"choose one of: {', '.join(cuts)}")
    return TargetReference(key=f"model:{fingerprint}@{cut}", label=f"{model_id}@{cut}", features=features[cut],
                     attributions=None if attributions is None else attributions[cut])
