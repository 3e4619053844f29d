"""``advisor bench``: every estimator against fine-tuned ground truth; CSV + report (see advisor.bench.run)."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import typer

from advisor.cli import options as opt
from advisor.cli.app import app
from advisor.cli.output import ProgressBars, info, out
from advisor.cli.common import split_models as _split
from advisor.errors import AdvisorError
from advisor.models.listing import model_ids_option

EXAMPLE = """
Examples:

  advisor bench --plan                            # count the runs and estimate the wall time; trains nothing

  advisor bench                                   # registry/bench.toml: the shared models x targets

  advisor bench --models tf_efficientnet_lite0,resnet20_cifar10 --targets my_images/,data.npz --epochs 5 --img-size 128

  advisor bench --report-only                     # rebuild the report from the cache

Every finished run is appended to benchmarks/bench_runs.csv (--runs-csv) and cached: rerunning, on this machine or on a fresh one with that CSV, skips finished runs; Ctrl-C loses at most the runs in progress.
"""


_TODO = re.compile(r"^(\d+) runs to do\b")
_FINISHED = re.compile(r": (fine-tune lr \S+ seed \S+|defrost @ \S+ seed \S+|linear probe): ")


def _bench_log(bars: ProgressBars):
    """advisor.bench.run reports through ``log`` lines only: each is an info line, and the bar follows them
    ("N runs to do ..." sets the total, each finished run's line is one step)."""

    def log(msg: str) -> None:
        info(msg)
        todo = _TODO.match(msg)
        if todo:
            bars.start_counter("bench runs", int(todo.group(1)))
        elif _FINISHED.search(msg):
            bars.advance(1)

    return log


def _shown(path: str) -> str:
    """A path as the report shows it: relative to the working directory when under it (portable), else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _numbers(text: str | None, kind, option: str, example: str) -> list | None:
    if text is None:
        return None
    try:
        return [kind(v) for v in _split([text])]
    except ValueError:
        raise AdvisorError(f"{option} '{text}' is not a comma-separated list of numbers", f"e.g. {option} {example}") from None


@app.command(epilog=EXAMPLE)
def bench(
    models: list[str] = typer.Option([], "--models", "-m", help="Models (comma-separated or repeated). Default: the config's."),
    targets: list[str] = typer.Option([], "--targets", "-t", help="Labelled targets: folders, .csv or .npz (comma-separated or repeated). Default: the config's."),
    config: Path | None = typer.Option(None, help="Bench config TOML (default: registry/bench.toml, paths relative to $ADVISOR_SHARED or ../shared)."),
    epochs: int | None = typer.Option(None, help="Epochs per fine-tune and defrost run (default: the config's)."),
    seeds: str | None = typer.Option(None, help="Fine-tune seeds, comma-separated (default: the config's)."),
    lrs: str | None = typer.Option(None, help="Backbone learning-rate grid, comma-separated (default: the config's)."),
    max_train: int | None = typer.Option(None, help="Training images per run (stratified, seeded; default: the config's)."),
    img_size: str | None = typer.Option(None, "--img-size", help="Input-size cap in px: each model gets min(its own size, this); 'native' lifts the config's cap."),
    defrost_cuts: str | None = typer.Option(None, "--defrost-cuts", help="Defrost runs per (model, target): a count of cuts spread over the default range, or cut names (comma-separated)."),
    defrost_seed: int | None = typer.Option(None, "--defrost-seed", help="The one seed of the defrost runs (default: the config's)."),
    head_init: str | None = typer.Option(None, "--head-init", metavar="random|probe", help="Fine-tunes' new head: 'random', or 'probe' = LP-FT (Kumar et al. 2022), starting from the linear probe (default: the config's)."),
    batchnorm: str | None = typer.Option(None, "--batchnorm", metavar="MODES", help="Fine-tunes' BatchNorm statistics: 'train' (updated) or 'frozen' (pretrained kept), each at every lr or as mode@lr at one, comma-separated; every (mode, lr) runs and validation chooses, e.g. train,frozen@0.001. Default: the config's."),
    estimator: list[str] = typer.Option([], "--estimator", "-e", help="Estimators to score (default: every registered one)."),
    workers: str | None = typer.Option(None, "--workers", help="Processes for independent runs, each with cores // workers torch threads (default: the config's run.workers)."),
    plan: bool = typer.Option(False, "--plan", help="Print the runs of each kind per model and an estimated wall time from a few timed SGD steps per model; train nothing."),
    runs_csv: Path = typer.Option(Path("benchmarks/bench_runs.csv"), "--runs-csv", help="Portable record of every finished run (appended; imported on start)."),
    out_dir: Path = typer.Option(Path("benchmarks/bench"), "--out", help="Folder for bench_report.md and its PNGs."),
    ground_truth: Path = typer.Option(Path("benchmarks/bench_ground_truth.csv"), "--ground-truth", help="Where to write the ground-truth CSV."),
    report_only: bool = typer.Option(False, "--report-only", help="Rebuild the CSV and report from the cache; train and score nothing."),
    weights_dir: Path | None = typer.Option(None, envvar="ADVISOR_WEIGHTS_DIR", help="Folder mirroring model weights (default: <shared>/models)."),
    device: str | None = typer.Option(None, help="cpu or cuda (default: cuda when available)."),
    executor: opt.Executor = "serial",
    ray_address: opt.RayAddress = None,
) -> None:
    """Fine-tune every model on every target (BatchNorm mode x lr grid x seeds), defrost at a few cuts, probe linearly, score every estimator; write the ground-truth CSV and bench_report.md."""
    from advisor.bench.config import config_workers, load_config, parse_workers
    from advisor.bench.plan import run_plan
    from advisor.bench.report import write_report
    from advisor.bench.ground_truth import write_ground_truth
    from advisor.bench.run import bench as run_bench
    from advisor.bench.units import provenance

    n_workers = parse_workers(workers if workers is not None else config_workers(config))
    cfg = load_config(config, models=model_ids_option(models) or None, targets=_split(targets) or None, epochs=epochs,
                        seeds=_numbers(seeds, int, "--seeds", "0,1"), lrs=_numbers(lrs, float, "--lrs", "0.01,0.001"), max_train=max_train,
                        estimators=_split(estimator) or None, img_size=img_size, defrost_cuts=defrost_cuts,
                        defrost_seed=defrost_seed, weights_dir=weights_dir, head_init=head_init, batchnorm=batchnorm)
    from advisor.scale.executor import started

    ray_ctx = started("serial" if report_only else executor, None if report_only else ray_address)  # bad flags fail here, --plan too
    if plan:
        out.print(run_plan(cfg, workers=n_workers, device=device, runs_csv=runs_csv, log=info), highlight=False, soft_wrap=True)
        return
    with ray_ctx as ex, ProgressBars() as bars:
        cells = run_bench(cfg, report_only=report_only, device=device, workers=n_workers, runs_csv=runs_csv, log=_bench_log(bars),
                          executor=ex)
    csv_path = write_ground_truth(cells, cfg.settings, ground_truth)
    argv = [a for a in sys.argv[1:] if a != "--report-only"] if Path(sys.argv[0]).name == "advisor" else []
    command = "advisor " + " ".join(shlex.quote(a) for a in argv) if argv else "advisor bench (same options)"
    from advisor.validation.validate import pick_device

    report = write_report(cells, list(cfg.settings.estimators), {**cfg.settings.as_dict(), "config": _shown(cfg.source)},
                          out_dir, command, provenance(cells, runs_csv, n_workers, pick_device(device)))
    out.print(f"ground truth: {csv_path}\nreport: {report}\nruns: {runs_csv}")
