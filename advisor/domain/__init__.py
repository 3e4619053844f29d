"""Domain gap, width and amount (Chen et al. 2022): image statistics, reference domains, the
regression that forecasts the best freeze depth, and its advice.

- :mod:`~advisor.domain.features` — the 22 colour/texture features per image;
- :mod:`~advisor.domain.stats` — the gap G (MMD) and the width W of a target against a source;
- :mod:`~advisor.domain.references` — source-domain references (:class:`DomainReference`), shipped or built;
- :mod:`~advisor.domain.forecast` — eq. 3 (published or refit) and its forecast of T_FB;
- :mod:`~advisor.domain.advice` — what the forecast means for freezing; calibration to Table 2's scale;
- :mod:`~advisor.domain.analysis` — a probe end to end (:func:`analyse`).

The package is callable: ``advisor.domain(probe, ...)`` is :func:`analyse` (a dict: G, W, N, the
forecast and the advice), while ``from advisor.domain import ...`` reaches its parts.
"""

import inspect
import sys
import types
import warnings

from advisor.domain.advice import advice, anchor_scale, t_tertiles, table2_scale
from advisor.domain.analysis import analyse, probe_features
from advisor.domain.features import (FEATURE_NAMES, FEATURES_VERSION, GLCM_LEVELS, MAX_SIDE, domain_features, glcm_features,
                                     image_features)
from advisor.domain.forecast import (PUBLISHED_COEF, Fit, Forecast, predict, published, refit, table2_design,
                                     table2_rows)
from advisor.domain.references import (DEFAULT_SOURCE, DomainReference, is_shipped, list_references, load_reference,
                                       model_source, save_reference, source_for_model, user_domains_dir, valid_name)
from advisor.domain.stats import MIN_IMAGES, gap_width, median_bandwidth, mmd, width

__all__ = [
    "DEFAULT_SOURCE", "FEATURE_NAMES", "FEATURES_VERSION", "GLCM_LEVELS", "MAX_SIDE", "MIN_IMAGES", "PUBLISHED_COEF",
    "DomainReference", "Fit", "Forecast", "advice", "analyse", "anchor_scale", "domain_features", "gap_width",
    "glcm_features", "image_features", "is_shipped", "list_references", "load_reference", "median_bandwidth", "mmd",
    "model_source", "predict", "probe_features", "published", "refit", "save_reference", "source_for_model",
    "t_tertiles", "table2_design", "table2_rows", "table2_scale", "user_domains_dir", "valid_name", "width",
]


def __getattr__(name):
    if name == "Reference":  # renamed: advisor.ranking.reference has a Reference (the target's representation) too
        warnings.warn("advisor.domain.Reference is now advisor.domain.DomainReference; the old name goes in the next release",
                      DeprecationWarning, stacklevel=2)
        return DomainReference
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return self.analyse(*args, **kwargs)  # looked up per call, so a monkeypatch applies


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(analyse)
