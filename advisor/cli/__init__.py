"""The ``advisor`` command line. Each command lives in its own module here:
``rank.py`` (model selection), ``layers.py`` (freeze depth), ``validate.py`` (short fine-tunes that
measure), ``domain.py`` (seed 000's domain forecast), ``bench.py`` (estimators vs ground truth),
``plugins.py`` (what is installed), ``cache.py`` (the DuckDB cache).

Errors become one line on stderr and exit code 2 here, at the edge, and nowhere else.
"""

from __future__ import annotations

import sys

import click
import typer

from advisor.errors import AdvisorError

app = typer.Typer(
    name="advisor",
    help="Which pretrained model, and how many of its layers, should I transfer to my data?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

from advisor.cli import bench as _bench  # noqa: F401
from advisor.cli import cache as _cache
from advisor.cli import domain as _domain
from advisor.cli import layers as _layers  # noqa: F401
from advisor.cli import plugins as _plugins  # noqa: F401
from advisor.cli import rank as _rank  # noqa: F401
from advisor.cli import validate as _validate  # noqa: F401

app.add_typer(_cache.cache_app, name="cache")
app.add_typer(_domain.domain_app, name="domain")

# Typer >= 0.29 vendors click (typer._click) and raises its own copies of click's exceptions.
_clicks = [click]
try:
    from typer import _click as _typer_click

    _clicks.append(_typer_click)
except ImportError:  # older Typer raises click's own
    pass
_EXIT = (click.exceptions.Exit, typer.Exit)
_USAGE = tuple(c.exceptions.ClickException for c in _clicks)
_ABORT = (click.exceptions.Abort, typer.Abort, KeyboardInterrupt)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning known errors into one-line messages."""
    try:
        app(args=argv, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _USAGE as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except _ABORT:
        print("interrupted: finished units of work are cached; rerun to resume", file=sys.stderr)
        sys.exit(130)
