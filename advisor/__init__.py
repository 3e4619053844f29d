"""advisor: which pretrained model, and how many of its layers, should I transfer to my data?

Public API (mirrors the CLI)::

    import advisor
    result = advisor.rank("path/to/images", ["tf_efficientnet_lite0", "resnet20_cifar10"],
                          estimators=["logme", "knn"], weights_dir="../shared/models")
    result.rows           # what `advisor rank --json` prints
    advisor.list_estimators("*"), advisor.get_estimator("logme")

Plugins implement the hooks in :mod:`advisor.hookspecs` with ``@advisor.hookimpl``.
"""

from advisor.errors import AdvisorError, EstimatorSkipped
from advisor.estimators import Estimator, get_estimator, list_estimators
from advisor.hookspecs import hookimpl
from advisor.models import list_sources, resolve_model
from advisor.probe import load_probe
from advisor.layers import layers
from advisor.ranking import rank

__version__ = "0.1.0"
__all__ = [
    "AdvisorError",
    "Estimator",
    "EstimatorSkipped",
    "get_estimator",
    "hookimpl",
    "layers",
    "list_estimators",
    "list_sources",
    "load_probe",
    "rank",
    "resolve_model",
]
