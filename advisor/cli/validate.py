"""``advisor validate``: short defrost / fine-tune runs that measure what the estimators predict."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from advisor.cli import reporting
from advisor.cli import options as opt
from advisor.cli.app import app
from advisor.cli.output import ProgressBars, fmt, info, out, print_json, warn
from advisor.cli.common import split_models as _split
from advisor.models.listing import model_ids_option

EXAMPLE = """
Examples:

  advisor validate ../shared/data/pacs_art_painting --models tf_efficientnet_lite0 --repeats 2

  advisor rank my_images/ && advisor validate my_images/ --top 3

Runs are cached: rerunning skips finished runs; Ctrl-C loses at most the run in progress.
"""


@app.command(epilog=EXAMPLE)
def validate(
    probe: str = typer.Argument(..., help="Your labelled images: folder (train/ + test/ splits used when present), .csv, .npz."),
    models: list[str] = typer.Option([], "--models", "-m", help="Models to validate (comma-separated or repeated)."),
    top: int | None = typer.Option(None, help="Validate the best K models of the last `advisor rank` on this probe."),
    cuts: list[str] = typer.Option([], "--cuts", help="Cuts to validate (default: after the first down-sampling to pre_logits, as Gerace et al. 2023 suggest)."),
    protocol: str = typer.Option("defrost", help="defrost (Gerace et al. 2023: freeze up to the cut, re-initialise and train the rest) or finetune (Plested & Gedeon 2019)."),
    epochs: int = typer.Option(10, help="Training epochs per run."),
    lr: float | None = typer.Option(None, help="Learning rate of the re-initialised layers (default: defrost 0.1, finetune 0.01)."),
    freeze: str | None = typer.Option(None, help="finetune: keep the layers up to this cut frozen."),
    repeats: int = typer.Option(1, help="Runs per cut with seeds seed, seed+1, ... (mean ± std)."),
    seed: int = typer.Option(0, help="First seed (split, initialisation, batch order)."),
    max_images: int | None = typer.Option(None, help="Cap the training part at this many images (stratified, seeded)."),
    batch_size: int = typer.Option(32, help="Training batch size."),
    estimator: list[str] = typer.Option([], "--estimator", "-e", help="Estimators to check against the measurements (default: rank's)."),
    weights_dir: Path | None = typer.Option(None, envvar="ADVISOR_WEIGHTS_DIR", help="Folder mirroring model weights."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    executor: opt.Executor = "serial",
    ray_address: opt.RayAddress = None,
    plot: Path | None = typer.Option(None, help="Write the defrosting profile(s) to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print runs and agreement as JSON on stdout."),
    report: Path | None = typer.Option(None, "--report", help="Also write the table, settings, versions and the profile plot to this markdown file (PNG beside it)."),
) -> None:
    """Fine-tune the top picks briefly and report measured accuracy per cut, T_FB (distance of the fine-tuned weights from a random init ÷ their distance from the pretrained start; Chen et al. 2022) and each estimator's weighted τ."""
    from advisor.scale.executor import started
    from advisor.validation.validate import validate as run_validate

    with started(executor, ray_address) as ex, ProgressBars() as bars:
        result = run_validate(probe, model_ids_option(models, weights_dir) or None, top=top, cuts=_split(cuts) or None, protocol=protocol, epochs=epochs,
                              lr=lr, freeze=freeze, repeats=repeats, seed=seed, max_images=max_images, batch_size=batch_size,
                              estimators=estimator or None, weights_dir=weights_dir, device=device, log=info,
                              progress=bars.callbacks(), warn=warn, executor=ex)
    if plot is not None:
        from advisor.validation.plots import plot_profiles

        plot_profiles(result, str(plot))
        info(f"plot written to {plot}")
    if as_json:
        best = {m: dict(zip(("best", "from", "to"), result.best_range(m) or (None,) * 3))
                for m in dict.fromkeys(r.model for r in result.rows)}
        print_json({"probe": probe, "split": result.split_note, "device": result.device,
                    "runs": [vars(r) for r in result.rows], "best": best, "agreement": result.agreement,
                    "warnings": result.warnings, "versions": result.versions, "weights": result.weights, "run_id": result.run_id})
        reporting.write("validate", report, result)
        return
    t = Table(title=f"validation on {probe}: {result.split_note}, device {result.device}", title_justify="left")
    for col, just in (("model", "left"), ("cut", "left"), ("val acc (mean ± std)", "right"), ("runs", "right"),
                      ("T_FB", "right"), ("seconds", "right"), ("note", "left")):
        t.add_column(col, justify=just, overflow="fold" if col == "model" else "ellipsis")
    for model, cut, is_best, mean, std, n, mine, tfb in result.cut_summaries():
        failed = [r.reason for r in mine if r.status != "done"]
        note = ("best ◀ " if is_best else "") + (f"{len(failed)} failed: {failed[0]}" if failed else "") + \
            (" (cached)" if all(r.cached for r in mine) else "")
        acc = "–" if mean is None else f"{fmt(mean)} ± {fmt(std)}" if n > 1 else f"{fmt(mean)} ± –"  # one run: no spread
        t.add_row(model, cut, acc, f"{n}/{len(mine)}", "–" if tfb is None else fmt(tfb), f"{sum(r.seconds for r in mine):.1f}",
                  note.strip())
    out.print(t)
    for model in dict.fromkeys(r.model for r in result.rows):
        rng = result.best_range(model)
        if rng:
            where = "at the end of the sampled range" if rng[0] in (rng[1], rng[2]) else f"between {rng[1]} and {rng[2]}"
            out.print(f"{model}: best measured cut [bold]{rng[0]}[/bold]; the optimum lies {where} "
                      "(Gerace et al. 2023: profiles are regular; sample cuts there with --cuts to refine)")
    if result.agreement:
        a = Table(title="estimators vs measured accuracy (weighted Kendall τ, scipy.stats.weightedtau)", title_justify="left")
        for col in ("scope", "estimator", "n", "weighted τ"):
            a.add_column(col)
        for row in result.agreement:
            a.add_row(row["scope"], row["estimator"], str(row["n"]), fmt(row["weighted_tau"]))
        out.print(a)
    reporting.write("validate", report, result)
