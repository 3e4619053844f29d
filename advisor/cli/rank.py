"""``advisor rank``: which pretrained model (and which cut of it) transfers best to my images."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from advisor.cli import reporting
from advisor.cli import decision as decision_cli
from advisor.cli import options as opt
from advisor.cli.app import app
from advisor.cli.common import split_models
from advisor.cli.output import ProgressBars, err, fmt, human_output_on_stderr, out, print_csv, print_json
from advisor.errors import AdvisorError
from advisor.models.listing import model_ids_option

EXAMPLE = """
Example (offline, weights mirrored in a folder):

  advisor rank ../shared/data/flowers17 --weights-dir ../shared/models \\
      --models tf_efficientnet_lite0,mobilenetv2_100_same_dogs19,resnet56_cifar10 \\
      --estimator logme --estimator knn

PROBE is an ImageFolder tree (class sub-folders; train/test split folders are recognised), a flat
folder (unlabelled), a path,label .csv, an .npz of images + labels, or builtin:digits.
Model ids: timm names (resnet50.a1_in1k), hf-hub:org/repo, local-dir:/path,
file:/path/w.safetensors?arch=NAME&num_classes=19, or catalog names (`advisor models` lists what you can rank).
"""


def _progress_callbacks():
    """(bars, callbacks): kept for callers of the old helper; the implementation is
    :class:`advisor.cli.output.ProgressBars`, shared by every command."""
    bars = ProgressBars()
    bars.stop = bars.close
    return bars, bars.callbacks()


@app.command(epilog=EXAMPLE)
def rank(
    probe: opt.Probe,
    models: list[str] = typer.Option([], "--models", "-m", help="Candidate model ids (repeat or comma-separate). Default: the embedded EfficientNet-Lites."),
    estimator: list[str] = typer.Option([], "--estimator", "-e", help="Estimator name (repeatable); the first one orders the table. Default: advisor-score, the ordering advisor bench chose (registry/advisor_score.toml), beside its members."),
    reference: opt.Reference = None,
    split: opt.Split = "train",
    max_images: opt.MaxImages = None,
    seed: opt.Seed = 0,
    img_size: opt.ImgSize = None,
    batch_size: opt.BatchSize = 32,
    weights_dir: opt.WeightsDir = None,
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON on stdout."),
    as_csv: bool = typer.Option(False, "--csv", help="Print the rows as CSV on stdout."),
    show_domain: bool = typer.Option(False, "--domain", help="Also print Chen et al. 2022's domain forecast per pre-training domain: from the domain gap, width and amount of data, T_FB (distance of the fine-tuned weights from a random init ÷ their distance from the pretrained start) and how much to freeze; `advisor domain` has the details."),
    top: int | None = typer.Option(None, "--top", metavar="K", callback=opt.at_least(1, "--top 3"),
                                      help="Show only the best K models (table, --json and --csv; ranked by the first estimator)."),
    refresh: opt.Refresh = [],  # noqa: B006 - Typer reads the default; never mutated
    report: Path | None = typer.Option(None, "--report", help="Also write the table, settings, versions and a score chart to this markdown file (PNG beside it)."),
    snippet: bool = decision_cli.SnippetOption,
    executor: opt.Executor = "serial",
    ray_address: opt.RayAddress = None,
) -> None:
    """Rank candidate models (and the best cut of each) by transferability to PROBE."""
    from advisor.ranking.ranking import rank as run_rank

    if as_json and as_csv:
        raise AdvisorError("--json and --csv cannot be combined (both print the rows on stdout)",
                           "pass one of them: --json for JSON, --csv for CSV")

    from advisor.scale.executor import started

    with started(executor, ray_address) as ex, ProgressBars() as bars:
        result = run_rank(probe, model_ids_option(models, weights_dir) or None, estimator or None, reference=reference, split=split, max_images=max_images,
                          seed=seed, img_size=img_size, batch_size=batch_size, weights_dir=weights_dir, progress=bars.callbacks(),
                          refresh=split_models(refresh), executor=ex)
    lines = []
    if show_domain:
        from advisor.cli.domain import forecast_lines

        lines = forecast_lines(probe, [m.model_id for m in result.models], split=split, max_images=max_images, seed=seed)
    # the recommendation (advisor.ranking.decision): which model, which cut, how sure; --json carries it on the first row.
    # Decided on every ranked model: --top trims what is shown, never the runner-up or the margin.
    decided = None if as_csv else decision_cli.decide("rank", result, split=split, img_size=img_size, domain=lines)
    if top is not None:
        result = _top(result, top)
    if as_json or as_csv:
        if as_json:
            print_json([{**r, **decision_cli.json_fields(decided)} if i == 0 else r for i, r in enumerate(result.rows)])
        else:
            print_csv(result.rows, ["rank", "model", "estimator", "cut", "score", "final_cut_score", "higher_is_better",
                                    "pretrain", "extract_seconds", "score_seconds", "n_images", "error"])
        for text, _ in lines:  # stdout stays machine-readable
            err.print(f"[dim]{text}[/dim]")
        reporting.write("rank", report, result, decision_lines=decision_cli.lines(decided))
        return
    with human_output_on_stderr(snippet):  # --snippet: stdout is the code alone (`> finetune.py`)
        _print_table(result)
        for text, _ in lines:
            out.print(text)
        decision_cli.show(decided, snippet)
    reporting.write("rank", report, result, decision_lines=decision_cli.lines(decided))


def _top(result, k: int):
    """``result`` with only the rows (every estimator's) of the best ``k`` models by the first estimator."""
    from dataclasses import replace

    primary = result.rows[0]["estimator"] if result.rows else None
    keep = {r["model"] for r in result.rows if r["estimator"] == primary and r["rank"] is not None and r["rank"] <= k}
    return replace(result, rows=[r for r in result.rows if r["model"] in keep],
                   cut_scores=[c for c in result.cut_scores if c["model"] in keep])


def _print_table(result) -> None:
    rows = result.rows
    estimators = list(dict.fromkeys(r["estimator"] for r in rows))
    primary = estimators[0]
    by = {(r["model"], r["estimator"]): r for r in rows}
    order = [r["model"] for r in rows if r["estimator"] == primary]
    p = result.probe
    title = f"{p.spec}: {p.summary()}" + (f", {len(p.skipped)} unreadable skipped" if p.skipped else "")
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("model", overflow="fold")  # an id to copy: wrapped, never cut with "…"
    table.add_column(f"best cut ({primary})")
    for est in estimators:
        arrow = "↑" if by[(order[0], est)]["higher_is_better"] else "↓"
        table.add_column(f"{est} {arrow}", justify="right")
    table.add_column("extract s", justify="right")
    for model in order:
        first = by[(model, primary)]
        cells = [fmt(first["rank"]), model, first["cut"] or "—"]
        for est in estimators:
            r = by[(model, est)]
            if r["score"] is None:
                cells.append("[red]failed[/red]" if r["error"] and not r["error"].startswith("skipped") else "skipped")
            elif est == primary:
                cells.append(fmt(r["score"]))
            else:
                cells.append(f"{fmt(r['score'])} [dim]@{r['cut']}[/dim]")
        if first.get("model_error"):  # not ranked: the reason is one line on stderr (advisor.ranking.ranking)
            cells.append("—")
        else:
            cells.append(f"{first['extract_seconds']:.1f}" + (" [dim](cached)[/dim]" if first["cached"] else ""))
        table.add_row(*cells)
    out.print(table)
    for r in rows:
        if r["error"] and not r.get("model_error"):
            err.print(f"[yellow]{r['estimator']} on {r['model']}:[/yellow] {r['error']}")
