"""``advisor runs``: past commands from the cache's ``runs`` table, with their results and the
versions and weights that produced them (:mod:`advisor.store.repro`)."""

from __future__ import annotations

import typer
from rich.table import Table

from advisor.cli.app import app
from advisor.cli import options as opt
from advisor.cli.output import fmt, out, print_json

EXAMPLE = """
Examples:

  advisor runs                      # the latest 20 commands, newest first
  advisor runs --limit 5 --json     # with arguments, results, versions and weights fingerprints
  advisor runs --all                # also the scoring runs validate and bench start internally
"""

USER_COMMANDS = ("rank", "layers", "validate")


def _summary(run: dict) -> str:
    """One line of what the run found."""
    result = run.get("result")
    if run.get("status") != "done" or result is None:
        return ""
    if run["command"] == "validate" and isinstance(result, dict):
        profiles = result.get("profiles") or {}

        def acc(m, cut):
            v = (profiles.get(m) or {}).get(cut)
            return f" (acc {fmt(v[0])})" if v else ""

        best = [f"{m}@{b[0]}{acc(m, b[0])}" for m, b in (result.get("best") or {}).items() if b]
        return ("best measured: " + ", ".join(best)) if best else "no finished run"
    if isinstance(result, list) and result:
        primary = result[0].get("estimator")
        ranked = sorted((r for r in result if r.get("estimator") == primary and r.get("rank")), key=lambda r: r["rank"])
        if not ranked:
            return "nothing ranked"
        b = ranked[0]
        return f"{'best' if run['command'] != 'layers' else 'best cut'}: {b['model']}@{b['cut']} ({primary} {fmt(b['score'])})" + \
            (f" of {len(ranked)} models" if len(ranked) > 1 else "")
    return ""


def _what(run: dict) -> str:
    args = run.get("args") or {}
    if not isinstance(args, dict):
        return ""
    models = args.get("models") or []
    shown = ", ".join(models[:3]) + (f" +{len(models) - 3}" if len(models) > 3 else "")
    return f"{args.get('probe', '')}" + (f" · {shown}" if shown else "")


@app.command(epilog=EXAMPLE)
def runs(
    limit: int = typer.Option(20, "--limit", callback=opt.at_least(1, "--limit 20"), help="Show at most this many runs (newest first)."),
    show_all: bool = typer.Option(False, "--all", help="Also the scoring runs that validate and bench start internally."),
    as_json: bool = typer.Option(False, "--json", help="Print the runs as JSON (arguments, results, versions, weights)."),
) -> None:
    """List past rank / layers / validate commands with their results, versions and weights."""
    from advisor.store.repro import list_runs

    found = list_runs(limit, None if show_all else USER_COMMANDS)
    if as_json:
        print_json(found)
        return
    if not found:
        out.print("no runs recorded yet: `advisor rank PROBE` records one")
        return
    t = Table(title=f"latest {len(found)} run(s)", title_justify="left")
    for col in ("run", "started", "command", "probe · models", "status", "result", "advisor / timm / torch"):
        t.add_column(col)
    for r in found:
        v = r["versions"]
        t.add_row(r["run_id"], (r["started_at"] or "")[:19], r["command"], _what(r), r["status"] or "", _summary(r),
                  " / ".join(x or "?" for x in (v["advisor"], v["timm"], v["torch"])) if any(v.values()) else "–")
    out.print(t)
