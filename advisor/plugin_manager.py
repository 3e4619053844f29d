"""The pluggy plugin manager: built-ins first, then third-party entry points.

Built-in plugins live in the repository's top-level ``plugins/`` folder, installed as
``advisor.plugins``; they use the same ``@hookimpl`` as anyone else's.

A broken third-party plugin never takes a command down: an entry point that fails to import, a
``register_*`` hook that raises (or calls ``sys.exit``), a registration that breaks the contract, or
one whose name is already taken is recorded in :data:`problems`, warned about once on stderr and
listed by ``advisor plugins``; everything else keeps working. Each plugin's hook implementation is
called on its own (:func:`collect_registrations`), built-ins first, so a built-in's name (an
estimator, a model-source prefix, an architecture) cannot be taken over: the later registration is
reported as a conflict and ignored. Only ``KeyboardInterrupt`` gets through.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Callable

import pluggy

from advisor import hookspecs

ENTRY_POINT_GROUP = "advisor"

DEFAULT_PLUGINS = (
    "advisor.plugins.logme",
    "advisor.plugins.knn",
    "advisor.plugins.cka",
    "advisor.plugins.information_imbalance",
    "advisor.plugins.depara",
    "advisor.plugins.leep",
    "advisor.plugins.hscore",
    "advisor.plugins.sfda",
    "advisor.plugins.gbc",
    "advisor.plugins.transrate",
    "advisor.plugins.parc",
    "advisor.plugins.linear",
    "advisor.plugins.timm_models",
    "advisor.plugins.hf_hub_models",
    "advisor.plugins.file_models",
    "advisor.plugins.cifar_resnet",
    "advisor.plugins.small_archs",
)

pm = pluggy.PluginManager("advisor")
pm.add_hookspecs(hookspecs)

_loaded = False
# Entry points that failed to import: (name, error). Shown by `advisor plugins`, never fatal.
load_errors: list[tuple[str, str]] = []


@dataclass(frozen=True)
class PluginProblem:
    """Something a plugin did that was refused: ``hook`` is ``"load"`` or the hook's name."""

    plugin: str
    hook: str
    error: str


# Problems of loading (per process) and of the latest collection of each register_* hook; warned
# once per process on stderr, listed by `advisor plugins` (plugin_problems()).
_load_problems: list[PluginProblem] = []
_hook_problems: dict[str, list[PluginProblem]] = {}
_warned: set[PluginProblem] = set()
_collecting: list[list[PluginProblem]] = []


def report_problem(plugin: str, hook: str, error: str) -> None:
    """Record a plugin problem and warn about it on stderr (once per process)."""
    problem = PluginProblem(plugin, hook, error)
    target = _collecting[-1] if _collecting and hook != "load" else _load_problems
    if problem not in target:
        target.append(problem)
    if problem not in _warned:
        _warned.add(problem)
        print(f"warning: plugin '{plugin}' ({hook}): {error}", file=sys.stderr)


def plugin_problems() -> list[PluginProblem]:
    """What was refused: failed loads, then each hook's latest collection (see ``advisor plugins``)."""
    return _load_problems + [p for hook in sorted(_hook_problems) for p in _hook_problems[hook]]


def describe_exception(exc: BaseException) -> str:
    """One line for an exception raised by plugin code (``sys.exit(3)`` reads as such)."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})" if exc.code is not None else "called sys.exit()"
    text = "; ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


@contextlib.contextmanager
def stdout_to_stderr():
    """Plugin code's ``print()`` goes to stderr: stdout carries results (``--json``, ``--csv``)."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def is_builtin(plugin_name: str | None) -> bool:
    return plugin_name in DEFAULT_PLUGINS


def _load_order(plugin_name: str) -> tuple:
    """Built-ins first (in DEFAULT_PLUGINS order), then third-party plugins by name."""
    if is_builtin(plugin_name):
        return (0, DEFAULT_PLUGINS.index(plugin_name), "")
    return (1, 0, plugin_name or "")


def collect_registrations(hook: str, kind: str, make: Callable[..., tuple[str, Any]]) -> dict[str, tuple[Any, str]]:
    """Call every plugin's implementation of the ``register_*`` hook ``hook`` on its own.

    Each implementation gets a ``register`` that only records its arguments; a hook that raises
    (or exits) registers nothing and is reported. Then ``make(*args, **kwargs) -> (key, item)``
    checks each registration (raising ``ValueError``/``TypeError`` with the reason to refuse it).
    A key already taken — by a built-in, or by a plugin earlier in load order — is reported as a
    conflict and ignored. Returns ``{key: (item, plugin name)}``; ``kind`` names the key in messages
    (e.g. ``"estimator"``).
    """
    _collecting.append([])
    try:
        return _collect(hook, kind, make)
    finally:
        _hook_problems[hook] = _collecting.pop()


def _collect(hook: str, kind: str, make: Callable[..., tuple[str, Any]]) -> dict[str, tuple[Any, str]]:
    found: dict[str, tuple[Any, str]] = {}
    impls = sorted(getattr(load_plugins().hook, hook).get_hookimpls(), key=lambda i: _load_order(i.plugin_name))
    for impl in impls:
        owner = impl.plugin_name
        calls: list[tuple[tuple, dict]] = []
        try:
            with stdout_to_stderr():
                impl.function(register=lambda *args, **kwargs: calls.append((args, kwargs)))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken plugin must not take the command down
            report_problem(owner, hook, f"{describe_exception(exc)}; nothing it registers is used")
            continue
        for args, kwargs in calls:
            try:
                key, item = make(*args, **kwargs)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:
                report_problem(owner, hook, f"registration refused: {describe_exception(exc)}")
                continue
            if key in found:
                holder = found[key][1]
                if holder == owner:
                    why = f"registers {kind} '{key}' twice: the first is used"
                elif is_builtin(holder):
                    why = f"registers {kind} '{key}', which the built-in plugin {holder} provides: ignored (a built-in cannot be replaced; choose another name)"
                else:
                    why = f"registers {kind} '{key}', already registered by plugin '{holder}': ignored"
                report_problem(owner, hook, why)
                continue
            found[key] = (item, owner)
    return found


def load_plugins() -> pluggy.PluginManager:
    """Register the built-ins and every ``advisor`` entry point (once per process).

    ``ADVISOR_LOAD_PLUGINS=name1,name2`` restricts third-party plugins to those entry-point names
    (empty string: none), which is how tests and reproducible runs pin the plugin set.
    """
    global _loaded
    if _loaded:
        return pm
    _loaded = True
    for name in DEFAULT_PLUGINS:
        pm.register(importlib.import_module(name), name=name)
    allowed = os.environ.get("ADVISOR_LOAD_PLUGINS")
    allowed_names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed_names is not None and ep.name not in allowed_names:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            with stdout_to_stderr():
                module = ep.load()
            pm.register(module, name=ep.name)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # a broken third-party plugin must not take the CLI down
            if pm.get_plugin(ep.name) is not None:  # pluggy keeps what it registered before the error
                pm.unregister(name=ep.name)
            error = describe_exception(exc)
            load_errors.append((ep.name, error))
            report_problem(ep.name, "load", f"failed to load: {error}")
            continue
        _check_hook_names(module, ep.name)
    return pm


def _check_architecture(name, factory=None, pretrained_cfg=None, *extra) -> tuple[str, tuple]:
    if extra:
        raise TypeError(f"register() takes (name, factory, pretrained_cfg), got {3 + len(extra)} arguments")
    if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"architecture name {name!r} must be letters, digits, '-', '_' or '.'")
    if not callable(factory):
        raise ValueError(f"architecture '{name}': factory must be callable, got {type(factory).__name__}")
    if not isinstance(pretrained_cfg, dict):
        raise ValueError(f"architecture '{name}': pretrained_cfg must be a dict, got {type(pretrained_cfg).__name__}")
    return name, (factory, pretrained_cfg)


def collect_architectures() -> dict[str, tuple[tuple, str]]:
    """``{name: ((factory, pretrained_cfg), plugin)}`` from every ``register_architectures`` hook,
    each plugin called on its own (see :func:`collect_registrations`)."""
    return collect_registrations("register_architectures", "architecture", _check_architecture)


def _check_hook_names(plugin, name: str) -> None:
    """A hook implementation whose name is no hook (e.g. ``register_estimator``) would never be
    called: say so instead of ignoring the plugin silently."""
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            import difflib

            close = difflib.get_close_matches(caller.name, [h for h in dir(hookspecs) if h.startswith("register_")], n=1)
            report_problem(name, "load", f"implements '{caller.name}', which is not an advisor hook"
                           + (f" (did you mean '{close[0]}'?)" if close else "") + "; it is never called")


def package_origin(name: str) -> str:
    """Where the plugin called ``name`` comes from, as ``"package version"``: ``"advisor 0.1.0"`` for
    DEFAULT_PLUGINS, else the distribution that provides its entry point; a plugin registered by
    hand (no distribution) keeps its name. ``advisor plugins`` and ``Estimator.origin`` both show it."""
    if name in DEFAULT_PLUGINS:
        from advisor import __version__

        return f"advisor {__version__}"
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        if ep.dist is not None:
            return f"{ep.dist.metadata['Name']} {ep.dist.version}"
    return name or "unknown"


def plugin_origin(plugin) -> str:
    """:func:`package_origin` of a registered plugin object."""
    return package_origin(pm.get_name(plugin) or "")
