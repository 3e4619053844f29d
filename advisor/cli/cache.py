"""``advisor cache``: inspect (stats, sql) or clear the DuckDB cache."""

from __future__ import annotations

import typer
from rich.table import Table

from advisor.cli.output import fmt, out, print_json
from advisor.errors import AdvisorError

cache_app = typer.Typer(help="Inspect or clear the DuckDB cache ($ADVISOR_HOME/advisor.duckdb).", no_args_is_help=True,
                        epilog="Example: advisor cache stats; advisor cache sql \"SELECT * FROM runs\"")


@cache_app.command(epilog="Example: advisor cache stats")
def stats(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Where the cache is, its size and how many rows each table holds."""
    from advisor import cache

    info = cache.stats()
    if as_json:
        print_json(info)
        return
    if not info["exists"]:
        out.print(f"no cache yet at {info['path']}")
        return
    out.print(f"{info['path']}: {info['size_bytes'] / 1e6:.1f} MB ({info['feature_bytes'] / 1e6:.1f} MB of features)")
    for table, n in info["rows"].items():
        out.print(f"  {table:<12} {n:>8} rows")


@cache_app.command(epilog="Example: advisor cache clear --yes")
def clear(yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation.")) -> None:
    """Delete the cache file (features, scores and runs)."""
    from advisor import cache

    path = cache.cache_path()
    if not path.exists():
        out.print(f"no cache at {path}")
        return
    if not yes and not typer.confirm(f"delete {path}?"):
        raise typer.Abort()
    cache.clear()
    out.print(f"deleted {path}")


@cache_app.command(epilog="""Example: advisor cache sql "SELECT model_id, arch, weights_from FROM models" """)
def sql(
    query: str = typer.Argument(..., help="A SQL query, run on a read-only connection."),
    as_json: bool = typer.Option(False, "--json", help="Print rows as JSON."),
) -> None:
    """Run a read-only SQL query against the cache (tables: probes, models, extractions, features, scores, runs)."""
    import duckdb

    from advisor import cache

    with cache.connect(read_only=True) as con:
        try:
            cur = con.execute(query)
        except duckdb.Error as exc:
            raise AdvisorError(f"query failed: {str(exc).splitlines()[0]}", "the cache is read-only here; tables: " + ", ".join(cache.TABLES)) from None
        if cur.description is None:
            return
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
    if as_json:
        print_json([dict(zip(cols, r)) for r in rows])
        return
    t = Table()
    for c in cols:
        t.add_column(c)
    for r in rows:
        t.add_row(*[f"<{len(v)} bytes>" if isinstance(v, (bytes, bytearray)) else fmt(v) for v in r])
    out.print(t)
