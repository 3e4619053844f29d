"""The ``advisor`` command line. The app, its global options and ``main`` are in ``app.py``; each
command lives in its own module here: ``rank.py`` (model selection), ``layers.py`` (freeze depth),
``validate.py`` (short fine-tunes that measure), ``domain.py`` (Chen et al. 2022's domain forecast),
``bench.py`` (estimators vs ground truth), ``models.py`` (what can be ranked), ``plugins.py`` (what is
installed), ``runs.py`` (past commands), ``cache.py`` (the DuckDB cache). ``common.py`` holds what
several commands parse alike, ``options.py`` their shared options, ``output.py`` what they print.

Importing this package registers every command on :data:`advisor.cli.app.app`.
"""

from __future__ import annotations

from advisor.cli import bench, cache, domain, layers, models, plugins, rank, runs, validate  # noqa: F401 - register the commands
from advisor.cli.app import app as _app
from advisor.cli.app import main

_app.add_typer(cache.cache_app, name="cache")
_app.add_typer(domain.domain_app, name="domain")

__all__ = ["main"]
