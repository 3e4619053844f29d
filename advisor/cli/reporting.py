"""``--report out.md`` for ``rank``, ``layers`` and ``validate``: the CLI side of :mod:`advisor.report`
(the settings come from the command line as parsed; the path was checked before the work by
``options.check_params``, and the report is written last, after the results are printed)."""

from __future__ import annotations

from pathlib import Path


def command_settings() -> dict:
    """The current command's parameters as given (``command`` first), for the report's settings table."""
    ctx = None
    for module in ("typer._click.globals", "click.globals"):  # Typer >= 0.29 vendors its own click
        try:
            import importlib

            ctx = importlib.import_module(module).get_current_context(silent=True)
        except ImportError:
            continue
        if ctx is not None:
            break
    if ctx is None:
        return {}
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in ctx.params.items() if k != "report"}
    return {"command": ctx.command_path, **params}


def write(kind: str, path: Path | None, *args, **kwargs) -> None:
    """Write the ``kind`` report (rank, layers, validate) to ``path`` when given, and say where."""
    if path is None:
        return
    from advisor import report
    from advisor.cli import output

    # output.info: dim, and silent with --quiet; a plain dim line where that helper is absent
    info = getattr(output, "info", None) or (lambda msg: output.err.print(msg, style="dim", markup=False, highlight=False))

    writer = {"rank": report.rank_report, "layers": report.layers_report, "validate": report.validate_report}[kind]
    written = writer(Path(path).expanduser(), *args, command_settings(), **kwargs)
    info(f"report written to {written[0]}" + (f" (+ {', '.join(p.name for p in written[1:])})" if written[1:] else ""))
