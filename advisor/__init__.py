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
from advisor.models import list_sources, resolve_model
from advisor.probe import load_probe
from advisor.layers import layers
from advisor.ranking import RankResult, rank

__version__ = "0.1.0"


def _callable_module(name: str, function: str) -> None:
    """Make the module ``advisor.<name>`` callable as its main function, so ``advisor.validate(...)``
    and ``advisor.domain(...)`` are the API calls while ``from advisor import domain`` and
    ``advisor.domain.analyse`` keep working (``advisor.layers`` is the function itself)."""
    import inspect
    import sys
    import types

    module = sys.modules[f"advisor.{name}"]

    class _CallableModule(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return getattr(self, function)(*args, **kwargs)  # looked up per call: a monkeypatch applies

    module.__class__ = _CallableModule
    module.__signature__ = inspect.signature(getattr(module, function))


import advisor.domain  # noqa: E402
import advisor.validate  # noqa: E402

_callable_module("validate", "validate")  # advisor.validate(probe, models, ...) -> ValidationResult
_callable_module("domain", "analyse")  # advisor.domain(probe, ...) -> dict (G, W, N, forecast, advice)
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
