"""Cached runs: a unit of work keyed by a content hash ("run key") is stored once, when it finishes, in
its own transaction, and a rerun asks which keys are finished and skips those.

``advisor validate`` (table ``validation_runs``) and ``advisor bench`` (``bench_runs``, and its evidence
cells in ``bench_cells``) share :class:`CachedRuns`; this module holds their SQL, and that of the two
small records around them (the estimator agreement of a validation, the finished ``rank`` commands
``validate --top`` picks from).
"""

from __future__ import annotations

import json

from advisor.store import db


class CachedRuns:
    """One table of finished runs: ``key`` is its primary key, ``columns`` what :meth:`store` writes."""

    def __init__(self, table: str, columns: tuple[str, ...], key: str = "run_key"):
        self.table, self.columns, self.key = table, columns, key

    def finished(self, keys: list[str], fields: tuple[str, ...]) -> dict[str, tuple]:
        """``key -> (fields...)`` of every finished run among ``keys`` (none without a cache file)."""
        if not keys or not db.cache_path().exists():
            return {}
        with db.transaction(read_only=True) as con:
            got = con.execute(f"SELECT {self.key}, {', '.join(fields)} FROM {self.table} WHERE list_contains(?, {self.key})",
                              [list(keys)]).fetchall()
        return {r[0]: tuple(r[1:]) for r in got}

    def store(self, *rows: dict) -> None:
        """Write ``rows`` (``column -> value``; a stored key is replaced) in one transaction."""
        sql = (f"INSERT OR REPLACE INTO {self.table} ({', '.join(self.columns)}) "
               f"VALUES ({', '.join('?' * len(self.columns))})")
        with db.transaction() as con:
            for row in rows:
                con.execute(sql, [row[c] for c in self.columns])


VALIDATION_RUNS = CachedRuns("validation_runs", (
    "run_key", "model_id", "model_fp", "probe", "train_hash", "val_hash", "cut", "protocol", "hyperparams", "seed", "status",
    "reason", "epochs", "history", "val_acc", "best_val_acc", "seconds", "prefix_seconds", "device", "tfb_layers", "tfb_mean",
    "tfb_note"))

BENCH_RUNS = CachedRuns("bench_runs", (
    "run_key", "model_id", "model_fp", "target", "train_hash", "val_hash", "test_hash", "lr_backbone", "lr_head", "seed",
    "hyperparams", "status", "reason", "history", "val_acc", "best_val_acc", "test_acc", "n_train", "n_val", "n_test", "seconds",
    "device"))

BENCH_CELLS = CachedRuns("bench_cells", ("cell_key", "settings_hash", "model_id", "target", "payload"), key="cell_key")


def store_agreement(probe: str, train_hash: str, agreement: list[dict]) -> None:
    """A validation's estimator agreement (``{scope, estimator, n, weighted_tau}`` rows), one transaction."""
    with db.transaction() as con:
        for a in agreement:
            con.execute("INSERT INTO estimator_agreement (probe, train_hash, scope, estimator, n, weighted_tau) VALUES (?, ?, ?, ?, ?, ?)",
                        [probe, train_hash, a["scope"], a["estimator"], a["n"], a["weighted_tau"]])


def finished_commands(command: str) -> list[tuple[dict, list]]:
    """``(args, result)`` of every finished run of ``command`` in the runs record, newest first."""
    if not db.cache_path().exists():
        return []
    with db.transaction(read_only=True) as con:
        runs = con.execute("SELECT args, result FROM runs WHERE command = ? AND status = 'done' ORDER BY finished_at DESC",
                           [command]).fetchall()
    return [(json.loads(args), json.loads(result or "[]")) for args, result in runs]
