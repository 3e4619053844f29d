"""advisor: which pretrained model, and how many of its layers, should I transfer to my data?

Public API (mirrors the CLI)::

    import advisor
    result = advisor.rank("path/to/images", ["tf_efficientnet_lite0", "resnet20_cifar10"],
                          estimators=["logme", "knn"], weights_dir="../shared/models")
    result.rows           # what `advisor rank --json` prints
    result.best, result.top(3), len(result), result.to_frame()   # by the first estimator
    advisor.layers("tf_efficientnet_lite0", "path/to/my_images")  # per-cut profile + freeze depth
    advisor.validate("path/to/my_images", ["tf_efficientnet_lite0"], epochs=3)  # short fine-tunes
    advisor.domain("path/to/my_images")                            # Chen et al. 2022 forecast (a dict)
    advisor.list_estimators("*"), advisor.get_estimator("logme")(features, labels)

Plugins implement the hooks in :mod:`advisor.hookspecs` with ``@advisor.hookimpl``.
"""

from advisor.errors import AdvisorError, EstimatorSkipped
from advisor.estimators import Estimator, get_estimator, list_estimators
from advisor.hookspecs import hookimpl
from advisor.models.sources import list_sources, resolve_model
from advisor.data.probe import load_probe
from advisor.ranking.layers import layers
from advisor.ranking.ranking import RankResult, rank
from advisor.validation.validate import validate
import advisor.domain as domain  # callable: advisor.domain(probe) -> dict

__version__ = "0.1.0"

__all__ = [
    "AdvisorError",
    "Estimator",
    "EstimatorSkipped",
    "RankResult",
    "domain",
    "get_estimator",
    "hookimpl",
    "layers",
    "list_estimators",
    "list_sources",
    "load_probe",
    "rank",
    "resolve_model",
    "validate",
]
