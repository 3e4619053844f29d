"""Domain gap, width and amount (Chen et al. 2022): image statistics, reference domains, the
regression that forecasts the best freeze depth, and its advice.

The package is callable: ``advisor.domain(probe, ...)`` is :func:`analyse` (a dict: G, W, N, the
forecast and the advice), while ``from advisor.domain import ...`` reaches its parts.
"""

import inspect
import sys
import types

from advisor.domain.domain import analyse


class _CallablePackage(types.ModuleType):
    def __call__(self, *args, **kwargs):
        return self.analyse(*args, **kwargs)  # looked up per call, so a monkeypatch applies


sys.modules[__name__].__class__ = _CallablePackage
__signature__ = inspect.signature(analyse)
