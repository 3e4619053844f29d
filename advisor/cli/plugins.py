"""``advisor plugins``: what is installed — plugins, estimators, model sources, architectures."""

from __future__ import annotations

import typer
from rich.table import Table

from advisor.cli.app import app
from advisor.cli.output import out, print_json

EXAMPLE = """
Example: advisor plugins --json | jq '.estimators[].name'
"""


def _architectures() -> list[tuple[str, str]]:
    from advisor.plugin_manager import collect_architectures

    return [(name, owner) for name, (_, owner) in collect_architectures().items()]


def _combined_line() -> str:
    """The one line on advisor-score, rank's default: a combination of the estimators above, not one of them."""
    from advisor.errors import AdvisorError
    from advisor.ranking import advisor_score

    try:
        spec = advisor_score.load_spec()
    except AdvisorError as exc:
        return f"{advisor_score.NAME} (rank's default): unavailable: {exc.message}"
    return (f"{advisor_score.NAME} (rank's default, -e {advisor_score.NAME}): {spec.kind} of {', '.join(spec.members)}"
            f" (registry/advisor_score.toml, chosen by `advisor bench`)")


@app.command(epilog=EXAMPLE)
def plugins(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List installed plugins, the estimators and model sources they register, and their origin."""
    from advisor.estimators import list_estimators
    from advisor.models.sources import list_sources
    from advisor.plugin_manager import is_builtin, load_errors, load_plugins, package_origin, plugin_origin, plugin_problems

    pm = load_plugins()
    plugin_rows = [{"name": pm.get_name(p), "origin": plugin_origin(p), "builtin": is_builtin(pm.get_name(p)),
                    "hooks": sorted(h.name for h in pm.get_hookcallers(p) or [])} for p in pm.get_plugins()]
    plugin_rows.sort(key=lambda r: (not r["builtin"], r["name"]))
    estimators = [{"name": e.name, "version": e.version, "needs": list(e.needs), "higher_is_better": e.higher_is_better,
                   "origin": e.origin, "plugin": e.plugin, "description": e.description} for e in list_estimators()]
    sources = [{"prefix": s.prefix, "describe": s.describe} for s in list_sources()]
    archs = [{"name": n, "origin": package_origin(o), "plugin": o} for n, o in _architectures()]
    problems = plugin_problems()  # after every hook was collected above
    if as_json:
        print_json({"plugins": plugin_rows, "estimators": estimators, "model_sources": sources,
                    "architectures": archs, "load_errors": [{"name": n, "error": e} for n, e in load_errors],
                    "problems": [{"plugin": p.plugin, "hook": p.hook, "error": p.error} for p in problems],
                    "default_estimator": _combined_line()})
        return
    t = Table(title="Estimators", title_justify="left")
    for col in ("name", "version", "needs", "better", "origin", "description"):
        t.add_column(col)
    for e in estimators:
        t.add_row(e["name"], e["version"], ", ".join(e["needs"]) or "—", "higher" if e["higher_is_better"] else "lower", e["origin"], e["description"])
    out.print(t)
    out.print(_combined_line(), highlight=False)
    t = Table(title="Model sources (model id prefix)", title_justify="left")
    t.add_column("prefix")
    t.add_column("what")
    for s in sources:
        t.add_row(s["prefix"] + ":", s["describe"])
    out.print(t)
    if archs:
        out.print("Extra architectures: " + ", ".join(f"{a['name']} ({a['origin']})" for a in archs))
    t = Table(title="Plugins", title_justify="left")
    for col in ("plugin", "origin", "hooks"):
        t.add_column(col)
    for p in plugin_rows:
        t.add_row(p["name"], p["origin"], ", ".join(p["hooks"]))
    out.print(t)
    if problems:
        t = Table(title="Plugin problems (refused; everything else works)", title_justify="left")
        for col in ("plugin", "hook", "problem"):
            t.add_column(col)
        for p in problems:
            t.add_row(p.plugin, p.hook, p.error)
        out.print(t)
