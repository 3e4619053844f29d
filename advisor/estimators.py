"""The estimator registry: ``list_estimators(pattern)`` and ``get_estimator(name)``.

An estimator is a pure numeric function of arrays (no torch inside). Plugins register them with the
``register_estimators(register)`` hook; this module collects them and scores safely.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from advisor.errors import AdvisorError, EstimatorSkipped

# What an estimator may ask for besides the features. ``labels``: target labels [N];
# ``logits``: the source head's logits on the probe [N, C]; ``reference``: the target-side
# representation [N, D'] (``--reference``); ``attributions``: this cut's input attributions
# [N, G²] (DEPARA nodes); ``reference_attributions``: the reference's [N, G²], or None when the
# reference has none (labels). The runner passes what it has.
KNOWN_INPUTS = ("labels", "logits", "reference", "attributions", "reference_attributions")


@dataclass(frozen=True)
class Estimator:
    """A transferability estimator, the contract for plugin authors.

    ``fn(features, labels=None, **inputs) -> float`` scores one cut: ``features`` is
    ``float32/float64[N, D]`` (one row per probe image), ``labels`` is ``int[N]`` with classes
    ``0..C-1`` (or None for unlabelled probes). Raise :class:`advisor.EstimatorSkipped` when an
    input is missing; raise anything else or return NaN and the row is reported as failed.
    :mod:`advisor.numeric.checks` takes the arrays in (``as_matrix``, ``as_labelled``: float64, finite, enough
    rows and classes) and raises :class:`advisor.errors.EstimatorInputError` for input that cannot
    be scored; ``tests/test_estimator_contract.py`` holds every registered estimator to this.
    Bump ``version`` whenever the numbers it returns change: cached scores are keyed by it.

    An estimator is callable like its ``fn``: ``est(features, labels=None, **inputs) -> float``
    (``advisor.get_estimator("logme")(X, y)``), with the inputs it needs checked first.
    ``origin`` is the distribution that provides it, as ``"package version"`` (``"advisor 0.1.0"``
    for the built-ins), the same text ``advisor plugins`` shows; ``plugin`` the plugin's name.
    """

    name: str
    fn: Callable[..., float]
    version: str = "1"
    higher_is_better: bool = True
    needs: tuple[str, ...] = ("labels",)
    description: str = ""
    origin: str = field(default="", compare=False)
    plugin: str = field(default="", compare=False)

    def __call__(self, features: np.ndarray, labels: np.ndarray | None = None, **inputs) -> float:
        """``est(features [N, D], labels [N] or None, **inputs) -> float``: the same as :meth:`score`."""
        return self.score(features, labels, **inputs)

    def score(self, features: np.ndarray, labels: np.ndarray | None = None, **inputs) -> float:
        """Check the inputs this estimator needs, then call ``fn``."""
        if "labels" in self.needs and labels is None:
            raise EstimatorSkipped(f"{self.name} needs labels; the probe has none")
        for need in self.needs:
            if need != "labels" and inputs.get(need) is None:
                raise EstimatorSkipped(f"{self.name} needs {need}, which this model/probe lacks")
        return float(self.fn(features, labels, **inputs))


def _validate(est: Estimator) -> None:
    if not isinstance(est, Estimator):
        raise TypeError(f"register() takes an advisor.Estimator, got {type(est).__name__}")
    if not isinstance(est.name, str) or not est.name or not all(c.isalnum() or c in "-_" for c in est.name):
        raise ValueError(f"estimator name {est.name!r} must be letters, digits, '-' or '_'")
    if not callable(est.fn):
        raise ValueError(f"estimator {est.name!r}: fn must be callable, got {type(est.fn).__name__}")
    if not isinstance(est.needs, (tuple, list)):
        raise ValueError(f"estimator {est.name!r}: needs must be a tuple of input names, got {est.needs!r}")
    unknown = set(est.needs) - set(KNOWN_INPUTS)
    if unknown:
        raise ValueError(f"estimator {est.name!r} needs unknown inputs {sorted(unknown)}; known: {KNOWN_INPUTS}")


def _collect() -> dict[str, Estimator]:
    """Every registered estimator by name. Each plugin's ``register_estimators`` is called on its
    own (:func:`advisor.plugin_manager.collect_registrations`): a plugin that raises, breaks the
    contract or reuses a taken name (a built-in's above all) is reported, never fatal."""
    from advisor.plugin_manager import collect_registrations

    def make(*args, **kwargs) -> tuple[str, Estimator]:
        if len(args) + len(kwargs) != 1:
            raise TypeError(f"register() takes one advisor.Estimator, got {len(args) + len(kwargs)} arguments")
        est = (args or tuple(kwargs.values()))[0]
        _validate(est)
        return est.name, est

    found = collect_registrations("register_estimators", "estimator", make)
    # Normalised, so a plugin's `version=2` or `description=None` cannot break a cache key or a table.
    from advisor.plugin_manager import package_origin

    return {name: Estimator(**{**est.__dict__, "needs": tuple(est.needs), "version": str(est.version),
                               "higher_is_better": bool(est.higher_is_better), "description": str(est.description or ""),
                               "origin": package_origin(plugin), "plugin": plugin})
            for name, (est, plugin) in found.items()}


def list_estimators(pattern: str = "*") -> list[Estimator]:
    """Registered estimators whose name matches the glob ``pattern``, sorted by name."""
    return [e for n, e in sorted(_collect().items()) if fnmatch.fnmatch(n, pattern)]


COMBINED = "advisor-score"  # rank's default: a combination of registered estimators (advisor.ranking.advisor_score), not one itself


def get_estimator(name: str) -> Estimator:
    """The estimator called ``name``; an :class:`AdvisorError` naming the choices otherwise."""
    registry = _collect()
    if name not in registry:
        import difflib

        close = difflib.get_close_matches(name, [*registry, COMBINED], n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise AdvisorError(
            f"unknown estimator '{name}'",
            f"{hint}choose from: {COMBINED} (rank's default combination), {', '.join(sorted(registry))} (see `advisor plugins`)",
        )
    return registry[name]


def _read_only(value):
    """A read-only view of an array input: an estimator that writes into its inputs in place
    would change them for every estimator scored after it on the same cut."""
    if isinstance(value, np.ndarray):
        view = value.view()
        view.flags.writeable = False
        return view
    return value


def safe_score(est: Estimator, features: np.ndarray, labels, **inputs) -> tuple[float | None, str | None]:
    """Score without letting a plugin take the run down: ``(score, None)`` or ``(None, reason)``.

    Anything the estimator raises becomes its row's reason, ``sys.exit()`` included ("estimator
    called sys.exit(3)"); only ``KeyboardInterrupt`` (Ctrl-C) propagates. Array inputs are passed
    read-only, and what it prints goes to stderr."""
    from advisor.plugin_manager import describe_exception, stdout_to_stderr

    try:
        with stdout_to_stderr():  # a plugin's print() must not corrupt `--json` / `--csv` on stdout
            value = est.score(_read_only(features), _read_only(labels), **{k: _read_only(v) for k, v in inputs.items()})
    except EstimatorSkipped as exc:
        return None, f"skipped: {exc}"
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # third-party code: report per row, never fatal
        if isinstance(exc, SystemExit):
            return None, f"estimator {describe_exception(exc)}"
        return None, describe_exception(exc)
    if not math.isfinite(value):
        return None, f"returned {value}"
    return value, None
