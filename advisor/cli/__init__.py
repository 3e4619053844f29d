"""The ``advisor`` command line. Each command lives in its own module here:
``rank.py`` (model selection), ``layers.py`` (freeze depth), ``plugins.py`` (what is installed), ``cache.py`` (the DuckDB cache).

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

from advisor.cli import cache as _cache  # noqa: E402  (commands register themselves on `app`)
from advisor.cli import rank as _rank  # noqa: E402,F401
from advisor.cli import layers as _layers  # noqa: E402,F401
from advisor.cli import plugins as _plugins  # noqa: E402,F401
from advisor.cli import domain as _domain  # noqa: E402

app.add_typer(_cache.cache_app, name="cache")
app.add_typer(_domain.domain_app, name="domain")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turning known errors into one-line messages."""
    try:
        app(args=argv, prog_name="advisor", standalone_mode=False)
    except AdvisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, KeyboardInterrupt):
        print("interrupted: finished units of work are cached; rerun to resume", file=sys.stderr)
        sys.exit(130)
