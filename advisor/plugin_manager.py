"""The pluggy plugin manager: built-ins first, then third-party entry points.

Built-in plugins live in the repository's top-level ``plugins/`` folder, installed as
``advisor.plugins``; they use the same ``@hookimpl`` as anyone else's.
"""

from __future__ import annotations

import importlib
import os
import sys
from importlib import metadata

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
            module = ep.load()
        except Exception as exc:  # a broken third-party plugin must not take the CLI down
            load_errors.append((ep.name, f"{type(exc).__name__}: {exc}"))
            print(f"warning: plugin {ep.name!r} failed to load: {exc}", file=sys.stderr)
            continue
        pm.register(module, name=ep.name)
    return pm


def plugin_origin(plugin) -> str:
    """'builtin' for DEFAULT_PLUGINS, else the distribution that provides the entry point."""
    name = pm.get_name(plugin) or ""
    if name in DEFAULT_PLUGINS:
        return "builtin"
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        if ep.dist is not None:
            return f"{ep.dist.metadata['Name']} {ep.dist.version}"
    return name or "unknown"
