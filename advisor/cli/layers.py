"""``advisor layers``: how many layers of MODEL to freeze for PROBE — per-cut profiles and a pick."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from advisor.cli import reporting
from advisor.cli import decision as decision_cli
from advisor.cli import options as opt
from advisor.cli.app import app
from advisor.cli.common import split_models
from advisor.cli.output import ProgressBars, err, fmt, human_output_on_stderr, info, out, print_json

EXAMPLE = """
Example:

  advisor layers tf_efficientnet_lite0 ../shared/data/pacs_photo -e depara -e cka -e ii --plot layers.png

The first estimator drives the recommendation: the cut where it scores best, as DEPARA
(Song et al. 2020) selects layers, moderated by the probe size: small targets favour deeper
freezing (Gerace et al. 2023; Plested & Gedeon 2019). --reference model:<id>[@cut]
compares with a model trained on the target instead of the labels.
"""


@app.command(epilog=EXAMPLE)
def layers(
    model: Annotated[str, typer.Argument(help="The pretrained model id (as in `advisor rank --models`).")],
    probe: opt.Probe,
    estimator: list[str] = typer.Option([], "--estimator", "-e", help="Estimators (repeatable); the first drives the pick. Default: depara, cka, ii."),
    reference: opt.Reference = None,
    split: opt.Split = "train",
    max_images: opt.MaxImages = None,
    seed: opt.Seed = 0,
    img_size: opt.ImgSize = None,
    batch_size: opt.BatchSize = 32,
    weights_dir: opt.WeightsDir = None,
    plot: Optional[Path] = typer.Option(None, help="Write the profiles with the pick marked to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as JSON on stdout."),
    validate: bool = typer.Option(False, "--validate", help="Also measure the defrosting profile (short fine-tunes, `advisor validate`) and show it alongside."),
    epochs: int = typer.Option(10, callback=opt.at_least(1, "--epochs 10"), help="--validate: training epochs per run."),
    repeats: int = typer.Option(1, callback=opt.at_least(1, "--repeats 2"), help="--validate: seeds per cut."),
    show_domain: bool = typer.Option(False, "--domain", help="Also print the domain forecast of Chen et al. 2022 for the model's pre-training domain (`advisor domain` has the details)."),
    refresh: opt.Refresh = [],  # noqa: B006 - Typer reads the default; never mutated
    report: Optional[Path] = typer.Option(None, "--report", help="Also write the table, settings, versions and the profile plot to this markdown file (PNG beside it)."),
    snippet: bool = decision_cli.SnippetOption,
    executor: opt.Executor = "serial",
    ray_address: opt.RayAddress = None,
) -> None:
    """Score every cut of MODEL on PROBE and recommend the cut to freeze up to."""
    from advisor.ranking.layers import layers as run_layers
    from advisor.ranking.layers import plot as draw
    from advisor.models.listing import expand_model_id

    from advisor.scale.executor import started

    model = expand_model_id(model, weights_dir)  # a glob matching one available model is that model
    measured = None
    with started(executor, ray_address) as ex:
        with ProgressBars() as bars:
            profile = run_layers(model, probe, estimator or None, reference=reference, split=split, max_images=max_images,
                                 seed=seed, img_size=img_size, batch_size=batch_size, weights_dir=weights_dir, progress=bars.callbacks(),
                                 refresh=split_models(refresh), executor=ex)
        if validate:
            from advisor.validation.validate import validate as run_validate

            with ProgressBars() as bars:
                res = run_validate(probe, [model], epochs=epochs, repeats=repeats, seed=seed, max_images=max_images,
                                   estimators=profile.estimators, weights_dir=weights_dir, log=info, progress=bars.callbacks(),
                                   warn=bars.callbacks().warn, executor=ex)
            measured = res.profile(model)
    lines = []
    if show_domain:
        from advisor.cli.domain import forecast_lines

        lines = forecast_lines(probe, [model], split=split, max_images=max_images, seed=seed)
    # the recommendation in plain language, how sure, domain vs layers (advisor.ranking.decision)
    decided = decision_cli.decide("layers", profile, split=split, img_size=img_size, domain=lines)
    if as_json:
        data = {**profile.to_json(), **decision_cli.json_fields(decided)}
        if measured is not None:
            data["measured"] = {c: {"mean": m, "std": s if n > 1 else None, "runs": n} for c, (m, s, n) in measured.items()}
        if show_domain:
            data["domain"] = lines[0][1] if lines else None
        print_json(data)
        _write_plot(draw, profile, plot, measured)
        reporting.write("layers", report, profile, measured=measured, decision_lines=decision_cli.lines(decided))
        return
    with human_output_on_stderr(snippet):  # --snippet: stdout is the code alone (`> finetune.py`)
        p = profile.result.probe
        t = Table(title=f"{model} on {p.spec}: {p.summary()}, reference: {profile.result.reference}", title_justify="left")
        t.add_column("cut")
        for est in profile.estimators:
            t.add_column(f"{est} {'↑' if profile.higher_is_better[est] else '↓'}", justify="right")
        if measured is not None:
            t.add_column("measured acc (defrost)", justify="right")
            from advisor.validation.result import best_cut

            best_measured = best_cut(measured)
        rec = profile.recommendation
        for i, cut in enumerate(profile.cuts):
            mark = " ◀ freeze up to here" if rec is not None and cut == rec.cut else ""
            cells = []
            for est in profile.estimators:
                s, e = profile.scores[est][i], profile.errors[est][i]
                cells.append(fmt(s) if s is not None else ("skipped" if e and e.startswith("skipped") else "[red]failed[/red]"))
            if measured is not None:
                m = measured.get(cut)
                cells.append("–" if m is None else f"{fmt(m[0])} ± {fmt(m[1]) if m[2] > 1 else '–'}" + (" ★" if cut == best_measured else ""))
            t.add_row(cut + mark, *cells)
        out.print(t)
        if rec is None:
            out.print(f"no recommendation: {profile.estimators[0]} produced no score")
        else:
            out.print(f"recommendation: freeze up to [bold]{rec.cut}[/bold] (it and every cut before it); fine-tune the rest.")
            out.print(f"rule: {rec.rule}")
        for text, _ in lines:
            out.print(text)
        for est in profile.estimators:
            errs = sorted({e for e in profile.errors[est] if e})
            if errs:
                err.print(f"[yellow]{est}:[/yellow] {errs[0]}")
        decision_cli.show(decided, snippet)
    _write_plot(draw, profile, plot, measured)
    reporting.write("layers", report, profile, measured=measured, decision_lines=decision_cli.lines(decided))


def _write_plot(draw, profile, plot: Optional[Path], measured) -> None:
    """Last, after the results are printed: a failure here (disk full) cannot lose them. The path was
    checked before the work (options.check_params)."""
    if plot is not None:
        draw(profile, str(plot), measured)
        info(f"plot written to {plot}")
