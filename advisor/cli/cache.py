"""``advisor cache``: inspect (stats, sql) or clear the DuckDB cache."""

from __future__ import annotations

import re
import sys

import typer
from rich.table import Table

from advisor.cli.output import fmt, out, print_json
from advisor.errors import AdvisorError

cache_app = typer.Typer(help="Inspect or clear the DuckDB cache ($ADVISOR_HOME/advisor.duckdb).", no_args_is_help=True,
                        epilog="Example: advisor cache stats; advisor cache sql \"SELECT * FROM runs\"")


@cache_app.command(epilog="Example: advisor cache stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Where the cache is, its size and how many rows each table holds."""
    from advisor.store import artifacts

    info = artifacts.stats()
    if as_json:
        print_json(info)
        return
    if not info["exists"]:
        out.print(f"no cache yet at {info['path']}")
        return
    out.print(f"{info['path']}: {info['size_bytes'] / 1e6:.1f} MB ({info['feature_bytes'] / 1e6:.1f} MB of features)")
    for table, n in info["rows"].items():
        out.print(f"  {table:<12} {n:>8} rows")


@cache_app.command(epilog="Examples: advisor cache clear --yes; advisor cache clear --model resnet50.a1_in1k; "
                           "advisor cache clear --estimator logme --probe my_images/")
def clear(
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    model: list[str] = typer.Option([], "--model", "-m", help="Delete only this model's cached results (features, attributions, scores, validation runs); repeatable."),
    estimator: list[str] = typer.Option([], "--estimator", "-e", help="Delete only this estimator's scores (and its agreement with validation runs); repeatable."),
    probe: list[str] = typer.Option([], "--probe", help="Delete only what was computed on this probe (as given to rank, any subsample); repeatable."),
) -> None:
    """Delete the cache file (features, scores and runs), or with --model / --estimator / --probe only
    the rows matching all of them, in one transaction. Waits for running commands that use the file."""
    from advisor.store import db

    path = db.cache_path()
    if not path.exists():
        out.print(f"no cache at {path}")
        return
    if model or estimator or probe:
        _clear_rows(path, model, estimator, probe, yes)
        return
    if not yes and not _confirm(f"delete {path}? [y/N]: "):
        print(f"nothing was deleted: {path} is kept (answer y, or pass --yes)", file=sys.stderr)
        raise typer.Exit(1)
    db.clear()
    out.print(f"deleted {path}")


def _clear_rows(path, models: list[str], estimators: list[str], probes: list[str], yes: bool) -> None:
    from advisor.store import artifacts

    what = " and ".join(f"{flag} {', '.join(values)}" for flag, values in
                        (("model", models), ("estimator", estimators), ("probe", probes)) if values)
    if not yes and not _confirm(f"delete the cached results of {what} from {path}? [y/N]: "):
        print(f"nothing was deleted: the results of {what} are kept (answer y, or pass --yes)", file=sys.stderr)
        raise typer.Exit(1)
    deleted = artifacts.clear_rows(models=models, estimators=estimators, probes=probes)
    if not deleted:
        out.print(f"nothing cached for {what}")
        return
    total = sum(deleted.values())
    out.print(f"deleted {total} row{'s' if total != 1 else ''} of {what}: " + ", ".join(f"{t} {n}" for t, n in deleted.items()))


def _confirm(question: str) -> bool:
    """y/N (the question on stdout, like click's prompts; stderr keeps the one-line outcome). No answer
    (end of input) is a no; Ctrl-C is an interrupt (exit 130, nothing deleted)."""
    print(question, end="", flush=True)
    try:
        answer = sys.stdin.readline()
    except (OSError, ValueError):  # no usable stdin
        answer = ""
    if not answer.endswith("\n"):
        print()
    return answer.strip().lower() in ("y", "yes")


@cache_app.command(epilog="""Example: advisor cache sql "SELECT model_id, arch, weights_from FROM models" """)
def sql(
    query: str = typer.Argument(..., help="A SQL query, run on a read-only connection that cannot touch any other file."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> None:
    """Run a read-only SQL query against the cache (tables: probes, models, extractions, features, scores, runs).

    The connection is read-only and sandboxed: no COPY ... TO, EXPORT DATABASE, ATTACH, extensions,
    or reading files (read_csv('/etc/passwd')); the configuration is locked so the query cannot undo it."""
    from advisor.store import db

    if not _has_statement(query):
        raise AdvisorError("the query is empty", 'pass a SQL statement, e.g. advisor cache sql "SELECT * FROM runs"')
    cols, rows = db.sandboxed_query(query)
    if cols is None:
        return
    if as_json:
        print_json([dict(zip(cols, r)) for r in rows])
        return
    t = Table()
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"<{len(v)} bytes>" if isinstance(v, (bytes, bytearray)) else fmt(v) for v in r])
    out.print(t)


def _has_statement(query: str) -> bool:
    """False for text that is only whitespace, semicolons and SQL comments."""
    text = re.sub(r"--[^\n]*", " ", query)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return bool(text.replace(";", " ").strip())
