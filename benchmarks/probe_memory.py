"""Benchmark: peak memory of `advisor rank` on phone-size photos (4000 × 3000 JPEG), by probe size.

Run:  .venv/bin/python benchmarks/probe_memory.py [--images 1000] [--sizes 48,200,1000]
          [--before REF --before-sizes 48] [--after REF] [--out benchmarks/probe_memory.md]

Generates ``--images`` synthetic 4000 × 3000 JPEGs (smooth random content: a 12 × 16 random image
upscaled bicubically, 16 distinct pictures made unique per file by a JPEG comment, two classes) in a
temporary folder, then runs the real CLI once per probe size, each in a fresh process with a fresh
(cold) cache, through one model (tf_efficientnet_lite0 from its embedded PyPI package, offline):

    python -m advisor rank PHOTOS --models tf_efficientnet_lite0 -e logme --max-images N --json

and reads the child's peak resident set size from ``os.wait4`` (``ru_maxrss``). A reference run on 48
small (400 × 300) JPEGs shows the fixed cost (Python, torch, the model). ``--before REF`` /
``--after REF`` run the code of a git revision (``git archive``, laid out as the installed package)
instead of the working tree, e.g. the commit before bounded decoding. Writes a markdown table with
machine, date and command.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = "tf_efficientnet_lite0"
W, H = 4000, 3000


def make_photos(root: Path, n: int, size=(W, H), distinct: int = 16, seed: int = 0) -> float:
    """``n`` JPEGs in ``root/{a,b}/``: ``distinct`` smooth pictures, each file made unique by a COM segment."""
    from PIL import Image

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    bases = []
    for _ in range(distinct):
        small = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(small).resize(size, Image.Resampling.BICUBIC).save(buf, "JPEG", quality=90)
        bases.append(buf.getvalue())
    for i in range(n):
        cls = "ab"[i % 2]
        (root / cls).mkdir(parents=True, exist_ok=True)
        comment = f"probe_memory {i}".encode()
        data = bases[i % distinct]
        com = b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment
        (root / cls / f"img_{i:05d}.jpg").write_bytes(data[:2] + com + data[2:])  # SOI, COM, rest
    return time.perf_counter() - t0


def checkout(ref: str, dest: Path) -> Path:
    """The package of git revision ``ref`` laid out as installed (advisor/, advisor/plugins, advisor/registry)."""
    tar = subprocess.run(["git", "-C", str(REPO), "archive", ref, "advisor", "plugins", "registry"], check=True, capture_output=True).stdout
    src = dest / "src"
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(src, filter="data")
    shutil.move(str(src / "plugins"), str(src / "advisor" / "plugins"))
    shutil.move(str(src / "registry"), str(src / "advisor" / "registry"))
    return src


def imported_from(code: Path | None, cwd: Path) -> str:
    """Where the measured process imports ``advisor`` from (checks that --before/--after took effect)."""
    env = {**os.environ, **({"PYTHONPATH": str(code)} if code is not None else {})}
    out = subprocess.run([sys.executable, "-c", "import advisor; print(advisor.__file__)"], env=env, cwd=cwd,
                         capture_output=True, text=True, check=True).stdout.strip()
    return str(Path(out).parent)


def peak_rss(probe: Path, n: int, code: Path | None, home: Path) -> tuple[float, float, int, str, int | None]:
    """(peak RSS MiB, wall s, exit code, last stderr line, images ranked) of one cold `advisor rank` process."""
    env = {**os.environ, "ADVISOR_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    if code is not None:
        env["PYTHONPATH"] = str(code)
    cmd = [sys.executable, "-m", "advisor", "rank", str(probe), "--models", MODEL, "-e", "logme", "--max-images", str(n), "--json"]
    home.mkdir(parents=True, exist_ok=True)  # also the working directory: `python -m` puts the cwd first on sys.path
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, env=env, cwd=home, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = (err.read().decode(errors="replace").strip().splitlines() or [""])[-1]
        out.seek(0)
        try:
            ranked = json.loads(out.read())[0]["n_images"]
        except (ValueError, LookupError, TypeError):
            ranked = None
    return usage.ru_maxrss / 1024, wall, proc.returncode, tail, ranked


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--sizes", default="48,200,1000", help="probe sizes (--max-images) for the working tree / --after")
    ap.add_argument("--before", default=None, help="git revision to measure as 'before'")
    ap.add_argument("--before-sizes", default="48")
    ap.add_argument("--after", default=None, help="git revision to measure as 'after' (default: the working tree)")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "probe_memory.md"))
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    before_sizes = [int(s) for s in args.before_sizes.split(",")] if args.before else []
    load0 = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="probe_memory_") as tmp:
        tmp = Path(tmp)
        photos, small = tmp / "photos", tmp / "small"
        gen_s = make_photos(photos, args.images)
        make_photos(small, 48, size=(400, 300))
        disk = sum(p.stat().st_size for p in photos.rglob("*.jpg")) / 2**20
        print(f"generated {args.images} photos ({disk:.0f} MiB) in {gen_s:.0f} s", flush=True)
        after_code = checkout(args.after, tmp / "after") if args.after else None
        before_code = checkout(args.before, tmp / "before") if args.before else None
        runs = [("after", after_code, small, 48, "400 × 300")] + [("after", after_code, photos, n, f"{W} × {H}") for n in sizes]
        runs += [("before", before_code, small, 48, "400 × 300")] if before_code else []
        runs += [("before", before_code, photos, n, f"{W} × {H}") for n in before_sizes]
        sources = {"after": imported_from(after_code, tmp)}
        if before_code:
            sources["before"] = imported_from(before_code, tmp)
        print(f"advisor imported from: {sources}", flush=True)
        for i, (label, code, probe, n, px) in enumerate(runs):
            rss, wall, rc, tail, ranked = peak_rss(probe, n, code, tmp / f"home{i}")
            rows.append((label, n, px, rss, wall, rc, tail, ranked))
            print(f"{label:6s} {n:5d} × {px}: peak RSS {rss:7.0f} MiB, {wall:6.1f} s, {ranked} ranked, exit {rc} {tail if rc else ''}", flush=True)
    import torch

    revs = {"after": args.after or "working tree", "before": args.before}
    lines = [
        "# Peak memory of `advisor rank` on phone-size photos",
        "",
        f"- date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB RAM, torch {torch.__version__}, Python {platform.python_version()}",
        f"- command: `.venv/bin/python benchmarks/probe_memory.py {' '.join(sys.argv[1:])}`".rstrip(),
        f"- each row: `python -m advisor rank PHOTOS --models {MODEL} -e logme --max-images N --json` in a fresh process with a cold "
        "cache (HF_HUB_OFFLINE=1, weights from the embedded package); peak RSS is the child's `ru_maxrss` (`os.wait4`)",
        f"- photos: {args.images} synthetic {W} × {H} JPEGs (quality 90, smooth random content), {disk:.0f} MiB on disk, "
        f"made in {gen_s:.0f} s; `--max-images N` takes a stratified subsample",
        f"- code: after = {revs['after']}" + (f", before = {revs['before']}" if args.before else "")
        + " (`git archive` of the revision, imported from a temporary folder)" * bool(args.after or args.before),
        f"- load average at start: {load0:.1f} (the machine is shared: wall seconds are context only)",
        "",
        "| code | images | image size | images ranked | peak RSS MiB | wall s | exit |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for label, n, px, rss, wall, rc, tail, ranked in rows:
        lines.append(f"| {label} | {n} | {px} | {ranked if ranked is not None else '–'} | {rss:.0f} | {wall:.0f} | {rc}{' (' + tail + ')' if rc else ''} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
