"""``advisor models``: every model you can rank here, and where its weights would come from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from advisor.cli.app import app
from advisor.cli import options as opt
from advisor.cli.output import out, print_json
from advisor.errors import AdvisorError

EXAMPLE = """
Examples:

  advisor models --weights-dir ../shared/models

  advisor models 'tf_efficientnet_lite*' --json

  advisor rank builtin:digits --models 'tf_efficientnet_lite*'      # the same globs in --models

Lists the catalog (registry/models.toml), the other files of --weights-dir, the timm-style repos of
the Hugging Face cache (HF_HUB_CACHE) and the weights the `embedded` extra's packages ship. A model
is available offline when its weights are here; for one that is not, the row says how to get them.
"""


@app.command(epilog=EXAMPLE)
def models(
    pattern: Annotated[str, typer.Argument(help="Glob over model ids, e.g. 'tf_efficientnet_lite*' (quote it). Default: all.")] = "*",
    weights_dir: opt.WeightsDir = None,
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout."),
) -> None:
    """List the models you can rank here, whether their weights are available offline, and where from."""
    from advisor.models.listing import list_models

    rows = list_models(pattern, weights_dir=weights_dir)
    if not rows:
        everything = "advisor models" + (f" --weights-dir {weights_dir}" if weights_dir else "")
        raise AdvisorError(f"no model id matches '{pattern}'", f"`{everything}` lists them all")
    if as_json:
        print_json([r.to_json() for r in rows])
        return
    here = sum(r.offline for r in rows)
    title = f"{len(rows)} models, {here} available offline" + (f" (weights dir {weights_dir})" if weights_dir else "")
    table = Table(title=escape(title), title_justify="left")
    for column in ("model", "offline", "weights from (or how to get them)", "revision", "pre-trained on"):
        table.add_column(column, overflow="fold")  # ids and commands to copy: wrapped, never cut with "…"
    for r in rows:
        if r.offline:
            origin = r.weights_from + (f": {Path(r.weights).name}" if r.weights_from == "weights dir" and r.weights else "")
            cells = [escape(r.id), "yes", escape(origin)]
        else:
            cells = [escape(r.id), "[red]no[/red]", f"[dim]{escape(r.hint or r.missing)}[/dim]"]
        table.add_row(*cells, escape((r.revision or "—")[:12]), escape(r.pretrain or "—"))
    out.print(table)
