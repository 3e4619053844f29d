"""Options several commands share, declared once (Typer ``Annotated`` aliases) so help texts, defaults
and bounds cannot drift apart between ``rank``, ``layers`` and ``validate``; and the check of every
output path before any work (``check_output_paths``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from advisor.errors import AdvisorError

MIN_IMG_SIZE = 8
# 2048 px covers every pretrained input size in use (ViT-H/14 at 518, EfficientNet-B7 at 600, SAM at 1024)
# with room; memory grows with the square of the size (one 100,000 px image is 120 GB as float32,
# which is how `--img-size 100000` was OOM-killed after growing past 20 GB).
MAX_IMG_SIZE = 2048
MAX_SEED = 2**32 - 1  # numpy's legacy RandomState and most seeders accept [0, 2**32)


def _img_size(value: Optional[int]) -> Optional[int]:
    if value is None:
        return value
    if value < MIN_IMG_SIZE:
        raise typer.BadParameter(f"{value} px is too small: use at least {MIN_IMG_SIZE} px (e.g. 224), or omit it for each model's own size")
    if value > MAX_IMG_SIZE:
        gb = 3 * value * value * 4 / 1e9
        raise typer.BadParameter(f"{value} px is above the limit of {MAX_IMG_SIZE} px (memory grows with its square: one image alone "
                                 f"would be {gb:,.0f} GB as float32); omit it for each model's own size, or use at most {MAX_IMG_SIZE}")
    return value


def at_least(least: int, example: str):
    """A callback refusing values below ``least`` while the command line is parsed (before any work),
    in the words the library uses for the same check."""

    def check(ctx: typer.Context, param: typer.CallbackParam, value):
        if value is not None and value < least:
            raise AdvisorError(f"{param.opts[0]} must be at least {least}, got {value}", f"e.g. {example}")
        return value

    return check


Probe = Annotated[str, typer.Argument(help="Your images: folder, .csv, .npz or builtin:digits.")]
Reference = Annotated[Optional[str], typer.Option(
    help="Target reference for cka/ii/depara: labels (default when labelled), scratch (a ResNet-20 trained on the probe) or model:<id>\\[@cut].")]
Split = Annotated[str, typer.Option(help="Split folder / npz prefix to probe when the data has splits.")]
MaxImages = Annotated[Optional[int], typer.Option(help="Subsample to at most this many images (stratified, seeded).")]
Seed = Annotated[int, typer.Option(help="Seed of the subsample (0 to 2**32-1).")]
ImgSize = Annotated[Optional[int], typer.Option(callback=_img_size, help=f"Override the model's input size (pixels, {MIN_IMG_SIZE} to {MAX_IMG_SIZE}).")]
BatchSize = Annotated[int, typer.Option(help="Images per forward pass.")]
WeightsDir = Annotated[Optional[Path], typer.Option(envvar="ADVISOR_WEIGHTS_DIR", help="Folder mirroring model weights (see README).")]
Executor = Annotated[str, typer.Option("--executor", metavar="serial|ray",
    help="Where the independent units run: serial (this process) or ray (one Ray task each; pip install 'advisor\\[ray]').")]
RayAddress = Annotated[Optional[str], typer.Option("--ray-address", metavar="ADDR",
    help="Join the Ray cluster at ADDR (e.g. 10.0.0.5:6379; `ray status` on its head prints it). Default: a local Ray runtime with this machine's cores, or $RAY_ADDRESS.")]
Refresh = Annotated[list[str], typer.Option(
    "--refresh", metavar="ID|NAME",
    help="Recompute instead of reading the cache: a model id (its features and scores) or an estimator name (its scores); "
         "repeatable or comma-separated, or all. The new results replace the cached ones.")]


# ---------------------------------------------------------------- output paths, checked before the work

# Matplotlib's savefig formats that need no extra package (a subset of
# FigureCanvasBase.get_supported_filetypes(); tests/test_cli_robustness.py checks it).
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".eps", ".ps", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".pgf")

# Options, by parameter name in any command, that name something written at the END of the work:
# "image" a matplotlib figure (its folder must exist), "file" a file (missing folders are created),
# "dir" a folder (created if missing). A command that gains such an option only needs one of these names.
OUTPUT_OPTIONS = {"plot": "image", "ground_truth": "file", "runs_csv": "file", "out_dir": "dir", "report": "report",
                  "csv_path": "file", "json_path": "file"}


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output(path: Path, option: str, kind: str) -> None:
    """Raise a one-line AdvisorError unless ``path`` can be written as ``kind`` (see OUTPUT_OPTIONS)."""
    path = Path(path).expanduser()
    if kind == "dir":
        if path.exists() and not path.is_dir():
            raise AdvisorError(f"{option} {path} is a file, not a folder", "pass a folder (it is created if missing)")
    elif path.is_dir():
        raise AdvisorError(f"{option} {path} is a folder", f"pass a file name, e.g. {path / {'image': 'plot.png', 'report': 'report.md'}.get(kind, 'out.csv')}")
    if kind == "image":
        if path.suffix.lower() not in PLOT_SUFFIXES:
            raise AdvisorError(f"{option} {path}: cannot write a '{path.suffix or 'suffix-less'}' plot",
                               f"end the file name with one of {', '.join(PLOT_SUFFIXES)} (e.g. {path.with_suffix('.png').name})")
    if kind == "report" and not path.parent.exists():  # a report's folder is created, now, before any work
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AdvisorError(f"{option} {path}: cannot create the folder {path.parent} ({exc.strerror})",
                               "write the report somewhere you can write") from None
    if kind in ("image", "report"):  # written last (a report with a PNG beside it): its folder must be there now
        if path.parent.exists() and not path.parent.is_dir():
            raise AdvisorError(f"{option} {path}: {path.parent} is a file, not a folder", "pass a path inside a folder")
        if not path.parent.is_dir():
            raise AdvisorError(f"{option} {path}: the folder {path.parent} does not exist",
                               f"create it first (mkdir -p {path.parent}) or write the {'plot' if kind == 'image' else 'report'} elsewhere")
    base = _nearest_existing(path if kind == "dir" else path.parent)
    if not base.is_dir():
        raise AdvisorError(f"{option} {path}: {base} is a file, not a folder", "pass a path inside a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise AdvisorError(f"{option} {path}: the folder {base} is not writable", "write it somewhere you can write")
    if path.exists() and not os.access(path, os.W_OK):
        raise AdvisorError(f"{option} {path} exists and is not writable", "remove it or write elsewhere")
    if kind in ("dir", "file"):
        _try_writing(path if kind == "dir" else path.parent, option, path)


def _try_writing(folder: Path, option: str, path: Path) -> None:
    """Create ``folder`` (an output folder is created anyway) and a scratch file in it, now: permission
    bits say nothing for root, on a read-only mount or under /proc, and the work may take hours."""
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise AdvisorError(f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})",
                           "write it somewhere you can write") from None


def _check_seed(value, option: str) -> None:
    if isinstance(value, int) and not 0 <= value <= MAX_SEED:
        raise AdvisorError(f"{option} {value} is out of range", f"use a seed from 0 to {MAX_SEED} (2**32-1)")


def _wrap(param, check) -> None:
    inner = param.callback

    def callback(ctx, p, value):
        if inner is not None:
            value = inner(ctx, p, value)
        if value is not None and not (ctx is not None and ctx.resilient_parsing):
            check(value, p.opts[0] if p.opts else f"--{p.name}")
        return value

    param.callback = callback


def check_params(command) -> None:
    """Checks every command gets by parameter name, whichever module declares it, so that a new
    command cannot forget them: each output option (OUTPUT_OPTIONS) is checked while the command
    line is parsed, i.e. before any work; every ``seed`` / ``*_seed`` lies in [0, 2**32-1]."""
    for param in getattr(command, "params", []):
        if getattr(param, "_advisor_checked", False):
            continue
        name = param.name or ""
        kind = OUTPUT_OPTIONS.get(name)
        if kind is not None:
            _wrap(param, lambda value, option, kind=kind: check_output(Path(value), option, kind))
        elif name == "seed" or name.endswith("_seed"):
            _wrap(param, _check_seed)
        param._advisor_checked = True
    for sub in (getattr(command, "commands", None) or {}).values():
        check_params(sub)


# ---------------------------------------------------------------- help without type noise

# What to write for an option's value, by parameter name in any command (an option's own metavar wins):
# the usage line and option list say N, DIR, ID, not the Python type (<int>, <str>, <path>).
METAVARS = {
    "probe": "PROBE", "model": "ID", "models": "ID", "estimator": "NAME", "reference": "REF", "split": "NAME",
    "max_images": "N", "seed": "N", "img_size": "PX", "batch_size": "N", "weights_dir": "DIR", "epochs": "N",
    "repeats": "N", "top": "K", "cuts": "CUT", "protocol": "defrost|finetune", "lr": "LR", "freeze": "CUT",
    "device": "cpu|cuda", "config": "FILE", "seeds": "N,N", "lrs": "LR,LR", "max_train": "N", "defrost_cuts": "N|CUTS",
    "defrost_seed": "N", "workers": "N", "targets": "DATA", "source": "NAME", "train_size": "N",
    "fit": "published|table2", "refit_from": "CSV", "level": "P", "refresh": "ID|NAME",
}
_KIND_METAVARS = {"image": "FILE", "file": "FILE", "report": "FILE", "dir": "DIR"}
# Shown instead of a metavar, they are type noise (click's and Typer's type names).
TYPE_NOISE = ("TEXT", "INTEGER", "FLOAT", "PATH", "BOOLEAN", "FILENAME", "<str>", "<int>", "<float>", "<bool>", "<path>",
              "<list[str]>", "<file>", "<directory>")


def _metavar(param) -> str:
    name = param.name or ""
    if param.param_type_name == "argument":  # the docstrings call them so: "... to PROBE"
        return name.upper().replace("_", "-")
    if name in METAVARS:
        return METAVARS[name]
    if name in OUTPUT_OPTIONS:
        return _KIND_METAVARS[OUTPUT_OPTIONS[name]]
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    return {int: "N", float: "X"}.get(annotation, name.upper().replace("_", "-") or "VALUE")


def _no_type(ctx=None):
    return None


def tidy_help(command) -> None:
    """Help without type noise, for every command and group: flags show no metavar, values a word
    that says what to write (:data:`METAVARS`), arguments only their name (PROBE, not ``<str>``)."""
    for param in getattr(command, "params", []):
        if getattr(param, "_advisor_tidy", False):
            continue
        if getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = _metavar(param)
        if param.param_type_name == "argument":
            param.display_type_rich = _no_type  # the name column already says it (PROBE)
        param._advisor_tidy = True
    get_help = getattr(command, "get_help_option", None)
    if get_help is not None and not getattr(get_help, "_advisor_tidy", False):
        def get_help_option(ctx, _inner=get_help):
            option = _inner(ctx)
            if option is not None:
                option.metavar = ""
            return option

        get_help_option._advisor_tidy = True
        command.get_help_option = get_help_option
    for sub in (getattr(command, "commands", None) or {}).values():
        tidy_help(sub)
