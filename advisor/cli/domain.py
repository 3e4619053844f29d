"""``advisor domain``: domain gap, width and data amount of PROBE, and Chen et al. 2022's forecast of T_FB.

``advisor domain PROBE`` is short for ``advisor domain show PROBE`` (a group whose first argument is
not a sub-command name runs ``show``); ``advisor domain build-ref NAME FOLDER`` builds a source
reference, ``advisor domain refs`` lists them.
"""

from __future__ import annotations

import csv
import datetime as _dt
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table
from typer.core import TyperGroup

from advisor.cli.output import ProgressBars, fmt, info, out, print_json, warn
from advisor.errors import AdvisorError

EXAMPLE = """
Example:

  advisor domain ../shared/data/pneumoniamnist/pneumoniamnist.npz
  advisor domain ../shared/data/flowers17 --json
  advisor domain my_images --model resnet56_cifar10      # source from the model's declared pre-training
  advisor domain build-ref places ~/data/places_sample   # then: advisor domain my_images --source places

G: linear-kernel MMD² to the source reference's 22 colour/GLCM features (standardised with the
source's statistics); W: largest eigenvalue of the target features' covariance; N: training images.
T_FB (distance of the fine-tuned weights from a random init ÷ their distance from the pretrained start):
predicted from G, W and ln N by the regression of Chen et al. 2022, with a 90 % prediction band.
"""


class _DefaultShow(TyperGroup):
    """`advisor domain PROBE ...` runs `show`: any first argument that is not a sub-command (or help)."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        with _usage_errors():
            return super().parse_args(ctx, args)

    def invoke(self, ctx):
        with _usage_errors():
            return super().invoke(ctx)


@contextmanager
def _usage_errors():
    """Typer's own click copy raises exceptions that ``advisor.cli.main`` does not catch (it catches the
    ``click`` package's): turn usage errors into the one-line AdvisorError here; help already printed → exit 0."""
    from typer._click import exceptions as tx

    try:
        yield
    except tx.NoArgsIsHelpError:
        raise SystemExit(0) from None
    except tx.UsageError as exc:
        raise AdvisorError(exc.format_message(), "see `advisor domain --help`") from None


domain_app = typer.Typer(cls=_DefaultShow, no_args_is_help=True, epilog=EXAMPLE,
                         help="Domain gap G, width W and data amount N of your images vs the pre-training domain, "
                              "and the transferability T_FB (distance of the fine-tuned weights from a random init ÷ their distance from the pretrained start; Chen et al. 2022) they predict."
                              " `advisor domain PROBE` = `advisor domain show PROBE`.")


def _read_history(path: Path) -> list[tuple[float, float, float, float]]:
    if not path.is_file():
        raise AdvisorError(f"--refit-from '{path}' does not exist", "pass a CSV with columns G,W,N,T (one row per validated dataset)")
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip(): c for c in (reader.fieldnames or [])}
        missing = [c for c in ("G", "W", "N", "T") if c not in cols]
        if missing:
            raise AdvisorError(f"--refit-from '{path}' lacks column(s) {', '.join(missing)} (has: {', '.join(cols) or 'none'})",
                               "write a header row G,W,N,T (G and W as `advisor domain --json` reports them, T measured)")
        rows = []
        for line, r in enumerate(reader, start=2):
            try:
                rows.append(tuple(float(r[cols[c]]) for c in ("G", "W", "N", "T")))
            except (TypeError, ValueError):
                raise AdvisorError(f"--refit-from '{path}' row {line} is not numeric: { {c: r[cols[c]] for c in ('G', 'W', 'N', 'T')} }",
                                   "every row needs numbers in G, W, N and T") from None
    return rows


@domain_app.command(epilog=EXAMPLE)
def show(
    probe: str = typer.Argument(..., help="Your images: folder, .csv, .npz or builtin:digits."),
    source: str | None = typer.Option(None, help="Pre-training domain (a source reference; default: the --model's, else imagenet)."),
    model: str | None = typer.Option(None, "--model", "-m", help="Take the source domain from this model's declared pre-training."),
    split: str = typer.Option("train", help="Split folder / npz prefix when the data has splits (N counts it)."),
    max_images: int | None = typer.Option(1000, help="Compute the features on a seeded sample of at most this many images."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    train_size: int | None = typer.Option(None, help="Data amount N (default: the number of images in the split)."),
    fit: str = typer.Option("published", help="Coefficients of the forecast: published (the regression of Chen et al. 2022) or table2 (our refit on the 12 datasets Chen et al. 2022 report)."),
    refit_from: Path | None = typer.Option(None, help="CSV of your own validation history (columns G,W,N,T): refit the forecast's regression on it."),  # noqa: B008
    level: float = typer.Option(0.9, help="Coverage of the prediction band."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """G, W, N of PROBE against the source domain, the predicted T_FB with its band, and what it means for freezing."""
    import advisor.domain as domain

    if not 0.5 <= level < 1.0:
        raise AdvisorError(f"--level must be in [0.5, 1), got {level}", "e.g. --level 0.9")
    if fit not in ("published", "table2"):
        raise AdvisorError(f"--fit must be 'published' or 'table2', got '{fit}'", "use --refit-from CSV for your own history")
    if source and model:
        raise AdvisorError("--source and --model both name the source domain", "pass one of them")
    src, model_note = domain.model_source(model) if model else (source or domain.DEFAULT_SOURCE, None)
    if refit_from is not None:
        chosen = domain.refit(_read_history(refit_from), label=f"refit on {refit_from.name}")
    elif fit == "table2":
        chosen = domain.refit(domain.table2_design(), label="Chen et al. 2022, refit on their 12 datasets")
    else:
        chosen = domain.published()
    with ProgressBars("probe") as bars:
        result = domain.analyse(probe, source=src, split=split, max_images=max_images, seed=seed, train_size=train_size,
                                fit=chosen, level=level, warn=warn, progress=bars.callbacks())
    if model:
        result["model"] = model
        result["notes"] += [model_note] if model_note else []
    if as_json:
        print_json(result)
        return
    fc, f, adv = result["forecast"], result["fit"], result["advice"]
    t = Table(title=f"{probe} vs {result['source']} ({result['n_features_images']} images measured)", title_justify="left", show_header=False)
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("meaning")
    t.add_row("G (gap)", fmt(result["G"], 3), "linear-kernel MMD² in source standard deviations; 0 = same colour/texture statistics")
    t.add_row("G_rbf", fmt(result["G_rbf"], 4), "Gaussian-kernel MMD² (≤ 2), sees spread and shape too")
    t.add_row("W (width)", fmt(result["W"], 2), "largest eigenvalue of the target feature covariance (source-standardised)")
    t.add_row("N (amount)", fmt(result["N"]), "training images" + (" (--train-size)" if train_size else " in the split"))
    if result["G_table2"] is not None:
        t.add_row("on the paper's scale", f"G {result['G_table2']:.2f}, W {result['W_table2']:.0f}", "in the units of Chen et al. 2022's datasets (Flowers anchor)")
    z = fc["z"]
    t.add_row("z(G), z(W), z(ln N)", f"{z['G']:+.2f}, {z['W']:+.2f}, {z['lnN']:+.2f}", f"standardised with {f['label']}'s constants")
    t.add_row("predicted T_FB", f"{fc['T_FB']:.1f}", f"{fc['level']:.0%} band {fc['low']:.1f} – {fc['high']:.1f} ({f['label']}, r = {f['r']:.2f} on {f['n']} datasets)")
    t.add_row("freezing", adv["tier"], adv["recommendation"])
    out.print(t)
    info(f"rule: {adv['rule']}")
    for note in result["notes"]:
        warn(note, label="note")


@domain_app.command("build-ref", epilog="Example: advisor domain build-ref places ~/data/places_sample --max-images 1000")
def build_ref(
    name: str = typer.Argument(..., help="Name of the source domain (used as --source NAME)."),
    folder: str = typer.Argument(..., help="Source-domain images: a folder (flat or ImageFolder), .csv or .npz."),
    split: str = typer.Option("train", help="Split folder / npz prefix when the data has splits."),
    max_images: int | None = typer.Option(1000, help="Use a seeded sample of at most this many images."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing reference of that name."),
) -> None:
    """Compute the 22 domain features of FOLDER and store them as the source reference NAME ($ADVISOR_HOME/domains/NAME.npz)."""
    import advisor.domain as domain

    domain.valid_name(name)
    if domain.is_shipped(name):  # a user file of that name would silently replace it everywhere it is named
        raise AdvisorError(f"'{name}' is a source reference shipped with advisor", f"choose another name, e.g. {name}-mine")
    path = domain.user_domains_dir() / f"{name}.npz"
    if path.exists() and not force:
        raise AdvisorError(f"source reference '{name}' already exists at {path}", "pass --force to overwrite it, or choose another name")
    with ProgressBars("folder") as bars:
        X, n_total, n_bad = domain.probe_features(folder, split=split, max_images=max_images, seed=seed, warn=warn,
                                                  progress=bars.callbacks())
    domain.save_reference(name, X, {"built_from": str(Path(folder).expanduser().resolve()) if ":" not in folder else folder,
                                     "n_in_folder": n_total, "unreadable": n_bad, "seed": seed,
                                     "built": _dt.date.today().isoformat()}, path)
    out.print(f"source reference '{name}': {len(X)} images → {path}")


@domain_app.command(epilog="Example: advisor domain refs --json")
def refs(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List the source references (shipped and your own)."""
    import advisor.domain as domain

    rows = []
    for name in domain.list_references():
        ref = domain.load_reference(name)
        rows.append({"name": name, "images": len(ref.features), "where": ref.path, "built_from": ref.meta.get("built_from", ""),
                     "table2_calibrated": bool(ref.meta.get("table2_scale"))})
    if as_json:
        print_json(rows)
        return
    t = Table()
    for c in ("name", "images", "where", "built_from", "table2_calibrated"):
        t.add_column(c)
    for r in rows:
        t.add_row(*[fmt(v) for v in r.values()])
    out.print(t)


def forecast_lines(probe: str, models: list[str], *, split: str | None, max_images: int | None, seed: int) -> list[tuple[str, dict | None]]:
    """``rank --domain`` / ``layers --domain``: one forecast line per pre-training domain among
    ``models`` (the forecast depends on the model only through that domain), as (text, result)."""
    import advisor.domain as domain

    lines = []
    by_source: dict[str, list[str]] = {}
    for m in models:
        by_source.setdefault(domain.source_for_model(m), []).append(m)
    for src, members in by_source.items():
        who = ", ".join(members) if len(members) <= 3 else f"{len(members)} models"
        if src not in domain.list_references():
            lines.append((f"domain forecast ({who}): no '{src}' reference — build one with "
                          f"`advisor domain build-ref {src} FOLDER`", None))
            continue
        res = domain.analyse(probe, source=src, split=split, max_images=max_images, seed=seed)
        fc, adv = res["forecast"], res["advice"]
        lines.append((f"domain forecast vs {src} ({who}): G {res['G']:.2f}, W {res['W']:.2f}, N {res['N']}; "
                      f"predicted T_FB {fc['T_FB']:.1f} ({fc['level']:.0%} band {fc['low']:.1f}–{fc['high']:.1f}); "
                      f"freezing: {adv['tier']} — {adv['recommendation']}", res))
    return lines
