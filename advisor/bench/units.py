"""``advisor bench``'s units of work on disk: every finished run is one line of an append-only CSV
(``benchmarks/bench_runs.csv``: write, flush, fsync; a torn last line is ignored when read and cut
before the next append), committed to git, and one row of DuckDB's ``bench_runs``; the estimators'
scores of a (model, target) likewise in ``benchmarks/bench_scores.csv``. Both CSVs are keyed by
content hashes, so a fresh clone imports them and skips those runs."""

from __future__ import annotations

import csv
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from advisor.bench.config import BENCH_VERSION
from advisor.store.artifacts import dumps
from advisor.store.runs import BENCH_RUNS

RUN_COLUMNS = ("run_key", "kind", "model", "target", "lr_backbone", "lr_head", "seed", "cut", "epochs", "batch_size", "input_size",
               "img_size_cap", "max_train", "val_fraction", "head_lr_factor", "n_train", "n_val", "n_test", "status", "reason",
               "val_acc", "best_val_acc", "test_acc", "final_train_loss", "final_train_acc", "seconds", "device", "threads",
               "model_id", "model_key", "target_path", "train_key", "val_key", "test_key", "protocol", "history",
               "bench_version", "finished_at")
_INTS = {"seed", "epochs", "batch_size", "input_size", "img_size_cap", "max_train", "n_train", "n_val", "n_test", "threads"}
_FLOATS = {"lr_backbone", "lr_head", "val_fraction", "head_lr_factor", "val_acc", "best_val_acc", "test_acc", "final_train_loss",
           "final_train_acc", "seconds"}
_JSON = {"protocol", "history"}


def _csv_cell(k: str, v) -> str:
    if v is None:
        return ""
    if k in _JSON:
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    if isinstance(v, float):
        return repr(v)
    return " ".join(str(v).split()) if k == "reason" else str(v)  # one physical line per record


def typed_record(row: dict) -> dict:
    rec = {}
    for k in RUN_COLUMNS:
        v = row.get(k, "")
        v = "" if v is None else v
        if v == "":
            rec[k] = None if k not in ("reason",) else ""
        elif k in _INTS:
            rec[k] = int(float(v))
        elif k in _FLOATS:
            rec[k] = float(v)
        elif k in _JSON:
            rec[k] = json.loads(v) if isinstance(v, str) else v
        else:
            rec[k] = v
    return rec


def repair_tail(path: Path) -> int:
    """Cut a torn last line (no final newline: a write interrupted by a crash) so the next append
    starts on a fresh line. Returns the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        step, pos = 1 << 16, size
        while pos > 0:
            lo = max(0, pos - step)
            fh.seek(lo)
            chunk = fh.read(pos - lo)
            i = chunk.rfind(b"\n")
            if i >= 0:
                keep = lo + i + 1
                break
            pos = lo
        else:
            keep = 0
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return size - keep


def _csv_records(path: str | Path, key: str) -> list[dict[str, str]]:
    """The complete lines of an append-only CSV as ``column -> text``. A last line without its
    newline (torn by a crash), a line of the wrong width and a file without ``key`` in its header
    are ignored."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header or key not in header:
        return []
    return [dict(zip(header, fields)) for fields in reader if len(fields) == len(header)]


def _append_line(path: str | Path, columns: tuple[str, ...], cells: Callable[[list[str]], list[str]]) -> None:
    """Append one record as one line: write, flush, fsync (the header first for a new file; an
    existing file keeps its own column order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists() or path.stat().st_size == 0
    header = list(columns)
    if not new:
        with path.open(newline="", encoding="utf-8") as fh:
            header = next(csv.reader(fh), header)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if new:
        w.writerow(header)
    w.writerow(cells(header))
    with path.open("a", encoding="utf-8", newline="") as fh:
        fh.write(buf.getvalue())
        fh.flush()
        os.fsync(fh.fileno())


def read_runs(path: str | Path) -> list[dict]:
    """Every complete record of the runs CSV. A last line without its newline (torn by a crash) and
    any line that does not parse are ignored."""
    rows = []
    for raw in _csv_records(path, "run_key"):
        try:
            rec = typed_record(raw)
        except (ValueError, json.JSONDecodeError):
            continue
        if rec["run_key"] and rec["kind"] in ("finetune", "defrost", "probe"):
            rows.append(rec)
    return rows


def append_run(path: str | Path, rec: dict) -> None:
    """Append one run record as one line of the runs CSV (crash-safe, see :func:`_append_line`)."""
    _append_line(path, RUN_COLUMNS, lambda header: [_csv_cell(k, rec.get(k)) for k in header])


# The estimators' scores of one (model, target), portable like the runs: keyed by content (model
# weights, the scored images, estimator versions, input size), so a fresh clone skips the scoring too.
SCORE_COLUMNS = ("score_key", "target", "model", "payload", "bench_version", "finished_at")


def read_scores(path: str | Path) -> dict[str, dict]:
    """``score_key -> payload`` of every complete line of the scores CSV."""
    out = {}
    for raw in _csv_records(path, "score_key"):
        try:
            out[raw["score_key"]] = json.loads(raw["payload"])
        except (KeyError, ValueError):
            continue
    return out


def append_score(path: str | Path, key: str, target: str, model: str, payload: dict) -> None:
    rec = {"score_key": key, "target": target, "model": model, "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
           "bench_version": str(BENCH_VERSION), "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _append_line(path, SCORE_COLUMNS, lambda header: [rec.get(k, "") for k in header])


def store_run(rec: dict) -> None:
    """One run into DuckDB's ``bench_runs``, in its own transaction; ``hyperparams`` holds the whole record."""
    BENCH_RUNS.store({
        "run_key": rec["run_key"], "model_id": rec["model_id"], "model_fp": rec["model_key"], "target": rec["target_path"],
        "train_hash": rec["train_key"], "val_hash": rec["val_key"], "test_hash": rec["test_key"], "lr_backbone": rec["lr_backbone"],
        "lr_head": rec["lr_head"], "seed": rec["seed"], "hyperparams": dumps(rec), "status": rec["status"], "reason": rec["reason"],
        "history": dumps(rec["history"]), "val_acc": rec["val_acc"], "best_val_acc": rec["best_val_acc"], "test_acc": rec["test_acc"],
        "n_train": rec["n_train"], "n_val": rec["n_val"], "n_test": rec["n_test"], "seconds": rec["seconds"], "device": rec["device"]})


def finished_runs(keys: list[str]) -> dict[str, dict]:
    """Stored records by run key (DuckDB)."""
    out = {}
    for k, (payload,) in BENCH_RUNS.finished(keys, ("hyperparams",)).items():
        rec = json.loads(payload) if payload else {}
        if rec.get("kind"):
            out[k] = typed_record(rec)
    return out


def import_runs(path: str | Path) -> tuple[int, set[str]]:
    """Store every record of the runs CSV that DuckDB lacks; returns how many, and the run keys the CSV holds."""
    rows = {r["run_key"]: r for r in read_runs(path)}
    if not rows:
        return 0, set()
    have = finished_runs(list(rows))
    new = [r for k, r in rows.items() if k not in have]
    for rec in new:
        store_run(rec)
    return len(new), set(rows)


def provenance(cells: list[dict], runs_csv: str | Path | None, workers: int, device: str) -> dict[str, str]:
    """What the report's header states: when and where it was made, and the wall time of its runs.

    The runs may span sessions and machines (they resume from ``runs_csv``), so the wall time is given
    two ways: the first and last ``finished_at`` of the cells' runs in the CSV, and the sum of the
    runs' own seconds divided by the workers (what one uninterrupted run on this machine would take).
    Cells stored before they carried their runs' keys give no ``runs finished`` row."""
    import os
    import platform
    from datetime import datetime, timezone

    import torch

    seconds = sum(r["seconds"] or 0.0 for c in cells for r in c["runs"])
    n_runs = sum(len(c["runs"]) for c in cells)
    # the cells' own runs only: the CSV also holds runs of other settings (another lr grid, other epochs)
    keys = {r.get("run_key") for c in cells for r in c["runs"]}
    stamps = [] if None in keys else sorted(
        r["finished_at"] for r in (read_runs(runs_csv) if runs_csv is not None and Path(runs_csv).exists() else [])
        if r["run_key"] in keys and r.get("finished_at"))
    out = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, device {device}, "
                      f"python {platform.python_version()}, torch {torch.__version__}",
           "runs": f"{n_runs} ({len(cells)} model x target pairs)",
           "run time": f"{_duration(seconds)} summed over runs; / {workers} worker(s) = {_duration(seconds / max(workers, 1))}"}
    if stamps:
        out["runs finished"] = f"{stamps[0]} to {stamps[-1]} (wall clock, across sessions)"
    return out


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 360 else f"{seconds:.0f} s"
