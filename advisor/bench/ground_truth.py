"""The ground truth of ``advisor bench``, per (model, target): the fine-tune setting chosen on validation
(:func:`summarise_runs`), whether the fine-tune ended below its own frozen probe (:func:`under_trained`),
and the ground-truth CSV (:func:`write_ground_truth`)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from advisor.bench.config import Settings, setting_label
from advisor.bench.metrics import transfer_accuracy


def summarise_runs(runs: list[dict], grid, head_lr_factor: float) -> dict:
    """Choose the fine-tune setting, a (BatchNorm mode, backbone lr) of ``grid`` (``Settings.grid()``), by
    mean validation accuracy over seeds (ties: the first in grid order) and report the test accuracy there
    (mean ± population std over seeds) and the final train loss (mean over seeds). ``runs``: one dict per
    fine-tune with ``batchnorm`` (default "train"), ``lr``, ``status``, ``val_acc``, ``test_acc``,
    ``final_train_loss``, ``seconds``. ``lr_backbone`` and ``batchnorm`` are None if every run failed;
    ``per_setting`` maps ``"<mode>@<lr>"`` to that setting's means."""
    per = {}
    for mode, lr in grid:
        mine = [r for r in runs if r["lr"] == lr and r.get("batchnorm", "train") == mode]
        ok = [r for r in mine if r["status"] == "done" and r["test_acc"] is not None]
        losses = [r["final_train_loss"] for r in ok if r.get("final_train_loss") is not None]
        per[(mode, lr)] = {"val_mean": float(np.mean([r["val_acc"] for r in ok])) if ok else None,
                           "test_mean": float(np.mean([r["test_acc"] for r in ok])) if ok else None,
                           "test_std": float(np.std([r["test_acc"] for r in ok])) if ok else None,
                           "train_loss": float(np.mean(losses)) if losses else None,
                           "done": len(ok), "failed": sum(r["status"] != "done" for r in mine)}
    ranked = [k for k in per if per[k]["done"]]
    best = max(ranked, key=lambda k: per[k]["val_mean"]) if ranked else None
    pl = per.get(best, {})
    lr = None if best is None else best[1]
    return {"lr_backbone": lr, "lr_head": None if lr is None else lr * head_lr_factor, "batchnorm": None if best is None else best[0],
            "val_mean": pl.get("val_mean"), "test_mean": pl.get("test_mean"), "test_std": pl.get("test_std"),
            "train_loss": pl.get("train_loss"), "seeds_done": pl.get("done", 0),
            "per_setting": {setting_label(m, v): d for (m, v), d in per.items()},
            "seconds": float(sum(r["seconds"] or 0.0 for r in runs))}


GROUND_TRUTH_COLUMNS = ("target", "model", "lr_backbone", "lr_head", "batchnorm", "val_acc_mean", "test_acc_mean", "test_acc_std", "seeds_done",
                        "final_train_loss", "probe_test_acc", "under_trained", "epochs", "input_size", "n_train", "n_val", "n_test",
                        "best_defrost_cut", "defrost_val_acc", "defrost_test_acc", "val_acc_by_setting", "test_acc_by_setting", "model_id", "target_path",
                        "probe_val_acc", "ground_truth_protocol", "ground_truth_test_acc")


def under_trained(cell: dict) -> bool | None:
    """The fine-tuned test accuracy ended below the frozen linear probe's: the fine-tune, not the
    model, fell short (None when either is missing)."""
    g, p = cell["ground_truth"], cell.get("probe") or {}
    if g.get("test_mean") is None or p.get("test_acc") is None:
        return None
    return bool(g["test_mean"] < p["test_acc"])


def write_ground_truth(cells: list[dict], s: Settings, path: str | Path) -> Path:
    """The ground-truth table: one row per (model, target): the fine-tune at its chosen (BatchNorm mode, lr), the frozen
    probe, and the ground truth the report judges by (the better of the two by validation accuracy,
    :func:`advisor.bench.metrics.transfer_accuracy`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def fmt(v):
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)

    grid = [setting_label(*g) for g in s.grid()]  # column order: the grid's, whether cells come fresh or from the cache (sorted JSON)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(GROUND_TRUTH_COLUMNS)
        for c in cells:
            g, d = c["ground_truth"], c["defrost"]
            best = d["best_cut"]
            ut = under_trained(c)
            truth = transfer_accuracy(g, c.get("probe"))
            w.writerow([c["target_name"], c["model_name"], fmt(g["lr_backbone"]), fmt(g["lr_head"]), g.get("batchnorm") or "", fmt(g["val_mean"]),
                        fmt(g["test_mean"]), fmt(g["test_std"]), g["seeds_done"], fmt(g.get("train_loss")),
                        fmt((c.get("probe") or {}).get("test_acc")), "" if ut is None else str(ut).lower(), s.epochs,
                        c.get("input_size", ""), c["n_train"], c["n_val"], c["n_test"],
                        best or "", fmt(d["profile"][best][0]) if best else "", fmt(d["profile"][best][1]) if best else "",
                        ";".join(f"{k}:{fmt(g['per_setting'][k]['val_mean'])}" for k in grid if k in g["per_setting"]),
                        ";".join(f"{k}:{fmt(g['per_setting'][k]['test_mean'])}" for k in grid if k in g["per_setting"]),
                        c["model"], c["target"], fmt((c.get("probe") or {}).get("val_acc")), truth["protocol"], fmt(truth["test"])])
    return path
