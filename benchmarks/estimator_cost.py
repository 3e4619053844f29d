"""Benchmark: cost of every estimator over all cuts of one model vs the model's forward pass.

Run:  .venv/bin/python benchmarks/estimator_cost.py [--model tf_efficientnet_lite0] [--sizes 250 500 1000 2000]
                                                    [--out benchmarks/estimator_cost.md]

Needs ../shared (real weights in shared/models, the cifar10_small probe in shared/data). The probe is
a temporary ``path,label`` CSV listing both splits of cifar10_small (1000 train + 1000 test images),
loaded with ``load_probe(csv, max_images=n, seed=0)`` (stratified subsample), so n = 2000 is every
image. For each n, on CPU:

1. *forward*: one plain forward pass ``model.module(x)`` (NHWC chunks, as ``advisor.ranking.features.extract``) over the n images under
   ``torch.inference_mode`` (batches of 32, tensors preprocessed beforehand), best of ``--reps``
   per batch; interleaved batch by batch with one all-cut extraction (``forward_all_cuts`` + pooling
   to numpy, what ``advisor rank`` runs; it provides the features the estimators score) and the
   attribution pass (step 3), so that drift in machine load hits all of them alike.
2. every registered estimator on every cut with the default labels reference (one-hot labels;
   ``reference_attributions`` None, as ``advisor rank`` passes them), summed over cuts, each cut
   best of ``--est-reps``. For ``depara`` the attributions are computed beforehand (step 3) and
   only the estimator call is timed. With the labels reference ``depara-nodes`` is skipped (no
   reference attributions), so for context ``depara`` and ``depara-nodes`` are also timed with a
   model reference (this model's own ``pre_logits`` features and attributions).
3. ``probe_attributions`` for all cuts (the DEPARA attribution pass), once (batch by batch), at the sizes in
   ``--attr-sizes`` (default: every size; its cost is linear in n, so its ratio to the forward is not).

Goals (issue "seed estimators"): every estimator ≤ 0.2× the forward time over the same images;
the attribution pass ≤ (cuts / 2 + 1)× one forward pass. Writes a markdown report (date, machine,
load average, command, one table per n, scaling of the misses). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import shlex
import sys
import tempfile
import time
import warnings
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
DATA = SHARED / "data" / "cifar10_small"
ORDER = ["logme", "knn", "cka", "cka-debiased", "cka-rbf", "ii", "ii-reverse", "depara", "depara-nodes", "depara-edges"]
EST_GOAL = 0.2
try:
    from plugins.information_imbalance import MAX_POINTS as II_MAX_POINTS
except ImportError:  # pragma: no cover - plugin layout changed
    II_MAX_POINTS = 2000
# Why each estimator costs what it does (N images, D feature width of the cut, C classes).
COMPLEXITY = {
    "logme": "thin SVD of the N×D features, O(N·D·min(N, D)), + a fixed-point loop on the singular values",
    "knn": "all N² cosine similarities in row chunks, O(N²·D), + argpartition per row",
    "cka": "feature space when D ≤ N: O(N·D²); Gram matrices when D > N: O(N²·D)",
    "cka-debiased": "as cka",
    "cka-rbf": "two N×N RBF Gram matrices, O(N²·D), a median over N² distances, centring in N×N chunks",
    "ii": "Information Imbalance: N² distances in both spaces, O(N²·D), and a rank count over N² pairs (subset of 2,000 above)",
    "ii-reverse": "as ii",
    "depara": "edges: N×N cosine matrices of the cut and of the reference, O(N²·D), and N(N-1)/2 edges of each ranked "
              "by scipy's spearmanr, O(N² log N); the reference's edges and ranks are recomputed for every cut",
    "depara-nodes": "node cosines alone are O(N·G²), but the plugin computes them through depara(), so the edge term is built too",
    "depara-edges": "as depara (edges only)",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def write_csv(path: Path) -> int:
    """A ``path,label`` CSV listing both splits of cifar10_small (absolute paths)."""
    rows = []
    for split in ("train", "test"):
        for cls in sorted(p for p in (DATA / split).iterdir() if p.is_dir()):
            rows += [(str(f), cls.name) for f in sorted(cls.iterdir()) if f.is_file()]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label"])
        w.writerows(rows)
    return len(rows)


def timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def run_size(loaded, csv_path: Path, n: int, args, estimators) -> dict:
    import torch

    from advisor.ranking.attributions import probe_attributions
    from advisor.estimators import safe_score
    from advisor.ranking.features import cut_names, forward_all_cuts, micro_batches, probe_batches
    from advisor.data.probe import decode_all, load_probe

    m = loaded.module
    names = cut_names(m)
    load_start = os.getloadavg()
    probe = load_probe(str(csv_path), max_images=n, seed=0)
    t0 = time.perf_counter()
    images, bad = decode_all(probe)
    if bad:
        raise SystemExit(f"{len(bad)} unreadable images in the probe")
    batches = list(probe_batches(loaded, probe, batch_size=args.batch, images=images))
    prep_s = time.perf_counter() - t0
    del images
    log(f"n={len(probe)}: decoded + preprocessed in {prep_s:.1f} s ({len(batches)} batches of ≤{args.batch}, "
        f"{tuple(batches[0].shape[1:])})")

    do_attr = args.attr_sizes is None or n in args.attr_sizes

    def plain(b):  # as advisor.ranking.features.extract runs the model: NHWC chunks
        with torch.inference_mode():
            for part in micro_batches(b):
                m(part)

    chunks: list[list] = [[] for _ in names]
    attr_chunks: list[list] = [[] for _ in names]

    def all_cuts(b):
        with torch.inference_mode():
            for part in micro_batches(b):
                pooled, _ = forward_all_cuts(m, part)
                for store, t in zip(chunks, pooled):
                    store.append(t.float().contiguous().numpy())

    def attributions(b):
        for store, (cut, a) in zip(attr_chunks, probe_attributions(m, [b], grid=args.grid).items()):
            store.append(a)

    # Interleaved per batch: plain, all-cuts, attributions, plain (more plains with --reps > 2). The load
    # on this shared machine drifts within seconds to minutes, so interleaving at the batch level makes all
    # passes see the same conditions. forward = the sum over batches of the best plain repeat of that batch;
    # the other passes run once. The attribution pass calls probe_attributions one batch at a time (it only
    # loops over batches, so the sum is the same work as one call over all of them).
    rep_w = [0.0] * args.reps  # per-repeat totals, for the report
    batch_ratios = []  # attributions / best plain forward, per batch (robust to bursts of load: median)
    fwd = fwd_cpu = cuts_s = attr_s = attr_cpu = 0.0
    for i, b in enumerate(batches):
        reps = [timed(lambda: plain(b))]
        w, _ = timed(lambda: all_cuts(b))
        cuts_s += w
        if do_attr:
            w, c = timed(lambda: attributions(b))
            attr_s, attr_cpu = attr_s + w, attr_cpu + c
            attr_b = w
        reps += [timed(lambda: plain(b)) for _ in range(args.reps - 1)]
        for r, (w, _) in enumerate(reps):
            rep_w[r] += w
        w, c = min(reps)
        fwd, fwd_cpu = fwd + w, fwd_cpu + c
        if do_attr and len(b) == args.batch:  # full batches only
            batch_ratios.append(attr_b / w)
        if (i + 1) % 8 == 0 or i + 1 == len(batches):
            log(f"n={n}: batch {i + 1}/{len(batches)}: forward {fwd:.1f} s, all-cut {cuts_s:.1f} s"
                + (f", attributions {attr_s:.1f} s = {attr_s / fwd:.2f}× forward (CPU time {attr_cpu / fwd_cpu:.2f}×, "
                   f"per-batch median {np.median(batch_ratios):.2f}×)" if batch_ratios else "")
                + f" (load {fmt_load(os.getloadavg())})")
    feats = {c: np.concatenate(ch) for c, ch in zip(names, chunks)}
    if do_attr:
        attrs = {c: np.concatenate(ch) for c, ch in zip(names, attr_chunks)}
    else:
        # not timed at this n: the estimators get placeholder arrays of the real shape (their cost
        # does not depend on the values)
        rng = np.random.default_rng(0)
        attrs = {c: rng.standard_normal((len(probe), args.grid**2)).astype(np.float32) for c in names}
        attr_s = attr_cpu = None
        log(f"n={n}: attribution pass not timed (--attr-sizes); placeholder attributions for the estimators")
    del batches, chunks, attr_chunks

    labels = probe.labels
    onehot = np.eye(probe.num_classes, dtype=np.float32)[labels]
    label_inputs = {"logits": None, "reference": onehot, "reference_attributions": None}
    model_inputs = {"logits": None, "reference": feats[names[-1]], "reference_attributions": attrs[names[-1]]}
    runs = [(e, e.name, label_inputs) for e in estimators]
    runs += [(e, f"{e.name} (model ref)", model_inputs) for e in estimators if e.name in ("depara", "depara-nodes")]
    # warm-up: first calls import scipy etc.; keep that out of the timings
    few = np.linspace(0, len(labels) - 1, 40).astype(int)  # spread over the (class-sorted) probe
    for est, _, inputs in runs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            safe_score(est, feats[names[-1]][few], labels[few], **{k: None if v is None else v[few] for k, v in inputs.items()},
                       attributions=attrs[names[-1]][few])
    rows = []
    for est, label, inputs in runs:
        total, total_cpu, errors, per_cut = 0.0, 0.0, set(), {}
        for cut in names:
            cut_inputs = {**inputs, "attributions": attrs[cut]}
            times = []
            for _ in range(args.est_reps):
                err = []
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    times.append(timed(lambda: err.append(safe_score(est, feats[cut], labels, **cut_inputs)[1])))
                if err[0]:
                    errors.add(err[0])
                    break
            per_cut[cut], cpu = min(times)
            total += per_cut[cut]
            total_cpu += cpu
        slowest = max(per_cut, key=per_cut.get)
        skipped = bool(errors) and all(e.startswith("skipped") for e in errors)
        rows.append({"name": label, "seconds": total, "ratio": total / fwd, "cpu_ratio": total_cpu / fwd_cpu,
                     "errors": sorted(errors), "skipped": skipped,
                     "slowest": (slowest, per_cut[slowest], feats[slowest].shape[1]), "context": label.endswith("(model ref)")})
        log(f"n={n}: {label}: {total:.3f} s all cuts = {total / fwd:.3f}× forward" + (f" [{'; '.join(sorted(errors))}]" if errors else ""))
    return {"n": len(probe), "forward": fwd, "forward_cpu": fwd_cpu, "forward_all": rep_w,
            "all_cuts": cuts_s, "prep": prep_s, "attr": attr_s, "attr_cpu": attr_cpu, "batch_ratios": batch_ratios, "cuts": names, "dims": {c: feats[c].shape[1] for c in names}, "rows": rows,
            "load_start": load_start, "load_end": os.getloadavg(), "classes": probe.num_classes}


def fmt_load(la) -> str:
    return " / ".join(f"{x:.2f}" for x in la)


def report(results: list[dict], args, meta: dict) -> str:
    import torch

    cuts = results[0]["cuts"]
    attr_goal = len(cuts) / 2 + 1
    dims = ", ".join(f"{c} {d}" for c, d in results[0]["dims"].items())
    lines = [
        "# Estimator cost vs forward pass",
        "",
        f"- date: {meta['start']:%Y-%m-%d %H:%M} UTC (total runtime {meta['total'] / 60:.1f} min)",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs), {platform.system()} {platform.release()}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), numpy {np.__version__}, Python {platform.python_version()}",
        f"- load average (1 / 5 / 15 min): start {fmt_load(meta['load_start'])}, end {fmt_load(meta['load_end'])}; "
        "per size below (this benchmark's own 2 threads account for about 2; more means other jobs shared the cores)",
        f"- command: `{meta['command']}`",
        f"- model: {args.model}, {len(cuts)} cuts ({dims}); input {meta['input']} px (cifar10 32 px images upscaled), "
        f"batches of {args.batch}, CPU",
        f"- probe: cifar10_small train + test (2,000 images, 10 classes) as a temporary CSV, "
        "`load_probe(csv, max_images=n, seed=0)` (stratified)",
        f"- reference: labels (one-hot [N, {results[0]['classes']}]), as `advisor rank` passes it; rows marked *(model ref)* "
        f"use this model's own `{cuts[-1]}` features + attributions as the reference instead (context: the node term "
        "only exists with a model reference)",
        "",
        f"*forward*: `model.module(x)` on NHWC chunks of about 4 × 224² pixels (as `advisor.ranking.features.extract` runs it) under `torch.inference_mode`, tensors preprocessed beforehand. Per batch of {args.batch}, "
        "interleaved: plain forward, all-cut extraction, attribution pass, plain forward again; *forward* is the sum over "
        f"batches of the better of the {args.reps} plain repeats (the load on this machine drifts within minutes, so all "
        "passes are timed side by side, batch by batch). "
        "*CPU-time ratio*: the same ratio in process CPU time (all threads), less sensitive to other jobs on the machine. "
        f"Estimator seconds: the sum over all {len(cuts)} cuts, each cut best of {args.est_reps}; the estimator call "
        "only (`safe_score`; for depara the attributions are precomputed and timed separately). "
        f"Goals: estimators ≤ {EST_GOAL}× forward; the attribution pass (`probe_attributions`, all cuts, run once) "
        f"≤ cuts/2 + 1 = {attr_goal:g}× forward.",
        "",
    ]
    for r in results:
        lines += [
            f"## n = {r['n']}",
            "",
            f"forward {r['forward']:.2f} s (per-batch best of {args.reps}; repeat totals {', '.join(f'{t:.2f}' for t in r['forward_all'])} s); all-cut extraction "
            f"{r['all_cuts']:.2f} s ({r['all_cuts'] / r['forward']:.2f}× forward); decode + preprocess {r['prep']:.1f} s "
            f"(not in either); load average start {fmt_load(r['load_start'])}, end {fmt_load(r['load_end'])}",
            "",
            "| estimator | seconds (all cuts) | ratio to forward | goal | pass/fail | slowest cut (s, D) | CPU-time ratio |",
            "|---|---:|---:|---:|:---:|---|---:|",
        ]
        for row in r["rows"]:
            cpu = f"{row['cpu_ratio']:.3f}"
            if row["skipped"]:
                verdict, secs, ratio, cpu = "skipped", "–", "–", "–"
            elif row["errors"]:
                verdict, secs, ratio = "error", f"{row['seconds']:.3f}", f"{row['ratio']:.3f}"
            else:
                ok = row["ratio"] <= EST_GOAL
                verdict = "pass" if ok else f"**fail** ({row['ratio'] / EST_GOAL:.1f}× over)"
                secs, ratio = f"{row['seconds']:.3f}", f"{row['ratio']:.3f}"
            cut, cs, d = row["slowest"]
            name = f"*{row['name']}*" if row["context"] else row["name"]
            lines.append(f"| {name} | {secs} | {ratio} | ≤ {EST_GOAL} | {verdict} | {cut if not row['skipped'] else '–'}"
                         f"{f' ({cs:.3f} s, {d})' if not row['skipped'] else ''} | {cpu} |")
        lines.append("")
        if r["attr"] is None:
            lines.append(f"**DEPARA attribution pass**: not timed at this n (`--attr-sizes`); its cost is linear in n "
                         "(independent batches of 32), so its ratio to the forward pass does not depend on n. The depara "
                         "rows above used placeholder attribution arrays of the real shape.")
        else:
            ar = r["attr"] / r["forward"]
            lines.append(f"**DEPARA attribution pass** (all {len(cuts)} cuts): {r['attr']:.2f} s = {ar:.2f}× forward, goal ≤ "
                         f"{attr_goal:g}× → " + ("pass" if ar <= attr_goal else f"**fail** ({ar / attr_goal:.2f}× over)")
                         + f" (CPU-time ratio {r['attr_cpu'] / r['forward_cpu']:.2f}×)")
            br = np.asarray(r["batch_ratios"])
            if br.size:
                q1, med, q3 = np.percentile(br, [25, 50, 75])
                lines.append("")
                lines.append(f"Per batch of {args.batch} (attributions / best plain forward of the same batch, timed back to back; "
                             f"{br.size} full batches): median {med:.2f}×, quartiles {q1:.2f}–{q3:.2f}×, range {br.min():.2f}–"
                             f"{br.max():.2f}× → median " + ("pass" if med <= attr_goal else "**fail**") + " (the median is robust to "
                             "bursts of load from other jobs, which on this machine slow the allocation-heavy attribution pass "
                             "far more than the forward; the total above includes them).")
        lines.append("")
        for row in r["rows"]:
            if row["errors"] and not row["skipped"]:
                lines.append(f"- {row['name']} errors: {'; '.join(row['errors'])}")
    # scaling and misses
    lines += ["## Misses and scaling", ""]
    if len(results) > 1:
        lo, hi = results[0], results[-1]
        span = math.log(hi["n"] / lo["n"])
        lines += [
            f"Empirical exponent b in seconds ∝ n^b between n = {lo['n']} and n = {hi['n']} "
            f"(forward: {math.log(hi['forward'] / lo['forward']) / span:.2f}; an O(N²) estimator's ratio to the O(N) forward "
            "grows ∝ N, so it fails at some N whatever the constant):",
            "",
            "| estimator | b | ratio at smallest n | ratio at largest n | largest n meeting the goal | projected n at the goal | why |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        prev = results[-2]
        step = math.log(hi["n"] / prev["n"])
        fwd_step = math.log(hi["forward"] / prev["forward"]) / step
        for i, row in enumerate(hi["rows"]):
            if row["skipped"] or row["errors"]:
                continue
            first = lo["rows"][i]
            b = math.log(max(row["seconds"], 1e-9) / max(first["seconds"], 1e-9)) / span
            meeting = [r["n"] for r in results if r["rows"][i]["ratio"] <= EST_GOAL]
            base = row["name"].replace(" (model ref)", "")
            # ratio ∝ n^e, e fitted on the two largest sizes (where the N² terms dominate)
            e = math.log(max(row["seconds"], 1e-9) / max(prev["rows"][i]["seconds"], 1e-9)) / step - fwd_step
            if base in ("ii", "ii-reverse"):
                proj = f"never (cost capped at {II_MAX_POINTS:,} points)"
            elif row["ratio"] > EST_GOAL:
                proj = "missed"
            elif e > 0.05:
                proj = f"≈ {hi['n'] * (EST_GOAL / row['ratio']) ** (1 / e):,.0f}"
            else:
                proj = "– (ratio not growing)"
            lines.append(f"| {row['name']} | {b:.2f} | {first['ratio']:.3f} | {row['ratio']:.3f} | "
                         f"{max(meeting) if meeting else 'none'} | {proj} | {COMPLEXITY.get(base, '')} |")
        lines += [
            "",
            f"*Projected n at the goal*: where the ratio would reach {EST_GOAL}, extrapolating ratio ∝ n^e with e fitted "
            f"between n = {prev['n']} and n = {hi['n']} (a rough guide: constants, caches and memory change with n).",
            "",
        ]
    misses = [(r["n"], row) for r in results for row in r["rows"] if not row["skipped"] and not row["errors"] and row["ratio"] > EST_GOAL]
    if misses:
        lines.append("Misses (ratio / goal):")
        lines.append("")
        for n, row in misses:
            lines.append(f"- n = {n}: {row['name']} {row['ratio']:.3f}× forward = {row['ratio'] / EST_GOAL:.1f}× the goal "
                         f"(slowest cut {row['slowest'][0]}, D = {row['slowest'][2]})")
        lines.append("")
    else:
        lines += ["Every estimator met its goal at every size.", ""]
    timed_attr = [r for r in results if r["attr"] is not None]
    attr_miss = [r for r in timed_attr if r["attr"] / r["forward"] > attr_goal]
    lines.append("Attribution pass: " + ("not timed." if not timed_attr else
                 f"met at every timed size (n = {', '.join(str(r['n']) for r in timed_attr)})." if not attr_miss else
                 "missed at n = " + ", ".join(f"{r['n']} ({r['attr'] / r['forward']:.2f}×)" for r in attr_miss)
                 + f" of the timed sizes (n = {', '.join(str(r['n']) for r in timed_attr)})."))
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tf_efficientnet_lite0", help="catalog id")
    ap.add_argument("--sizes", type=int, nargs="+", default=[250, 500, 1000, 2000])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2, help="plain forward: best of this many")
    ap.add_argument("--est-reps", type=int, default=2, help="each estimator per cut: best of this many")
    ap.add_argument("--attr-sizes", type=int, nargs="*", default=None,
                    help="time the attribution pass only at these n (default: every size; it is linear in n)")
    ap.add_argument("--grid", type=int, default=16, help="attribution grid (advisor rank uses 16)")
    ap.add_argument("--weights-dir", default=str(SHARED / "models"))
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "estimator_cost.md"))
    args = ap.parse_args()
    argv = " ".join(shlex.quote(a) for a in sys.argv[1:])
    meta = {"start": datetime.now(timezone.utc), "load_start": os.getloadavg(),
            "command": f".venv/bin/python benchmarks/estimator_cost.py{' ' + argv if argv else ''}"}
    t_start = time.perf_counter()
    log(f"load average at start: {fmt_load(meta['load_start'])}")

    import torch

    from advisor.ranking.attributions import cut_attributions
    from advisor.estimators import list_estimators
    from advisor.models.loading import build_model
    from advisor.models.sources import ResolveContext, resolve_model

    registered = {e.name: e for e in list_estimators()}
    estimators = [registered[n] for n in ORDER if n in registered] + [e for n, e in registered.items() if n not in ORDER]
    loaded = build_model(resolve_model(args.model, ResolveContext(weights_dir=Path(args.weights_dir), offline=True)))
    meta["input"] = loaded.data_config["input_size"][-1]
    log(f"{args.model}: input {loaded.data_config['input_size']}, estimators: {', '.join(e.name for e in estimators)}")
    warm = torch.randn(8, *loaded.data_config["input_size"])
    with torch.inference_mode():
        loaded.module(warm)
    cut_attributions(loaded.module, warm[:2])  # warm-up

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "cifar10_small_all.csv"
        total = write_csv(csv_path)
        log(f"probe CSV: {total} images")
        for n in args.sizes:
            results.append(run_size(loaded, csv_path, n, args, estimators))
            meta["load_end"] = os.getloadavg()
            meta["total"] = time.perf_counter() - t_start
            text = report(results, args, meta)
            Path(args.out).write_text(text)  # after every size, so an interrupted run leaves what it measured
    print(text)
    log(f"done in {meta['total'] / 60:.1f} min; load average at end: {fmt_load(meta['load_end'])}; wrote {args.out}")


if __name__ == "__main__":
    main()
