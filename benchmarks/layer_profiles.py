"""Per-cut profiles of DEPARA, CKA and Information Imbalance for real models on pacs_photo.

Run:  .venv/bin/python benchmarks/layer_profiles.py [--target pacs_photo] [--max-images N]
Writes docs/layer_profiles.md and one PNG per model (docs/layers_<model>_<target>.png). Needs ../shared.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import advisor
from advisor.ranking.layers import plot, recommend

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MODELS = ["tf_efficientnet_lite0", "resnet56_cifar10"]
ESTIMATORS = ["depara", "cka", "ii"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="pacs_photo")
    ap.add_argument("--max-images", type=int, default=None)
    args = ap.parse_args()
    probe = str(SHARED / "data" / args.target)
    lines = [f"# Layer profiles on {args.target}", "",
             f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, {os.cpu_count()} cores",
             f"- command: `.venv/bin/python benchmarks/layer_profiles.py --target {args.target}"
             + (f" --max-images {args.max_images}`" if args.max_images else "`"),
             f"- estimators: {', '.join(ESTIMATORS)}; reference: the probe's labels (one-hot, so DEPARA is its edge term, λ = 1)",
             "- each estimator's own pick uses the same rule as `advisor layers` (argmax, moderated by probe size)", ""]
    for model in MODELS:
        t0 = time.perf_counter()
        prof = advisor.layers(model, probe, ESTIMATORS, weights_dir=SHARED / "models", offline=True, max_images=args.max_images)
        secs = time.perf_counter() - t0
        png = REPO / "docs" / f"layers_{model}_{args.target}.png"
        plot(prof, str(png))
        p = prof.result.probe
        epc = len(p) / p.num_classes
        picks = {e: recommend(prof.cuts, prof.scores[e], prof.higher_is_better[e], epc, e) for e in ESTIMATORS}
        lines += [f"## {model} ({len(p)} images, {p.num_classes} classes; {secs:.0f} s cold)", "",
                  "| cut | " + " | ".join(f"{e} {'↑' if prof.higher_is_better[e] else '↓'}" for e in ESTIMATORS) + " |",
                  "|---|" + "---:|" * len(ESTIMATORS)]
        for i, cut in enumerate(prof.cuts):
            cells = []
            for e in ESTIMATORS:
                s = prof.scores[e][i]
                mark = " **◀**" if picks[e] is not None and picks[e].cut == cut else ""
                cells.append(("—" if s is None else f"{s:.4f}") + mark)
            lines.append(f"| {cut} | " + " | ".join(cells) + " |")
        agree = len({picks[e].cut for e in ESTIMATORS if picks[e]}) == 1
        lines += ["", "Recommended cut (◀) per estimator: " + ", ".join(f"{e} → {picks[e].cut}" for e in ESTIMATORS if picks[e])
                  + (" — **all agree**." if agree else " — **they disagree**."),
                  "Argmax per estimator: " + ", ".join(f"{e} → {picks[e].argmax_cut}" for e in ESTIMATORS if picks[e]) + ".",
                  "", f"![{model}]({png.name})", ""]
        print(f"{model}: done in {secs:.0f} s", flush=True)
    out = REPO / "docs" / "layer_profiles.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
