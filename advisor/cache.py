"""The DuckDB cache: probes, models, features, scores and runs, so a repeated question costs nothing.

Lives at ``$ADVISOR_HOME/advisor.duckdb`` (default: the user cache dir). Connections are short:
each unit of work (one model's features, one model's scores) is opened, written in a single
transaction and closed, so a killed run leaves only whole units behind and a second process waits
for the lock (``ADVISOR_LOCK_TIMEOUT`` seconds, default 60) instead of failing or corrupting.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError

# Ordered migrations: append, never edit. Version = position + 1.
MIGRATIONS = (
    """
    CREATE TABLE probes (
        hash VARCHAR PRIMARY KEY, source VARCHAR, n_images INTEGER, n_classes INTEGER,
        class_names VARCHAR[], skipped JSON, created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE models (
        fingerprint VARCHAR PRIMARY KEY, model_id VARCHAR, arch VARCHAR, kwargs JSON,
        weights VARCHAR, weights_from VARCHAR, pretrain VARCHAR, data_config JSON,
        cuts VARCHAR[], num_classes INTEGER, created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE extractions (
        model_fp VARCHAR, probe_hash VARCHAR, preproc_hash VARCHAR, preproc JSON, n_images INTEGER,
        seconds DOUBLE, device VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (model_fp, probe_hash, preproc_hash));
    CREATE TABLE features (
        model_fp VARCHAR, probe_hash VARCHAR, preproc_hash VARCHAR, cut VARCHAR, position INTEGER,
        kind VARCHAR, n INTEGER, d INTEGER, data BLOB,
        PRIMARY KEY (model_fp, probe_hash, preproc_hash, cut));
    CREATE TABLE scores (
        estimator VARCHAR, estimator_version VARCHAR, model_fp VARCHAR, probe_hash VARCHAR,
        preproc_hash VARCHAR, cut VARCHAR, score DOUBLE, seconds DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (estimator, estimator_version, model_fp, probe_hash, preproc_hash, cut));
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, command VARCHAR, args JSON, status VARCHAR, result JSON,
        started_at TIMESTAMP DEFAULT current_timestamp, finished_at TIMESTAMP);
    """,
    # 2: scores keyed by the target reference they were computed against; DEPARA attributions.
    """
    CREATE TABLE scores_v2 (
        estimator VARCHAR, estimator_version VARCHAR, reference VARCHAR, model_fp VARCHAR,
        probe_hash VARCHAR, preproc_hash VARCHAR, cut VARCHAR, score DOUBLE, seconds DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (estimator, estimator_version, reference, model_fp, probe_hash, preproc_hash, cut));
    INSERT INTO scores_v2 SELECT estimator, estimator_version, '', model_fp, probe_hash, preproc_hash, cut,
        score, seconds, created_at FROM scores;
    DROP TABLE scores;
    ALTER TABLE scores_v2 RENAME TO scores;
    CREATE TABLE attribution_runs (
        model_fp VARCHAR, probe_hash VARCHAR, preproc_hash VARCHAR, grid INTEGER, n_images INTEGER,
        seconds DOUBLE, created_at TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (model_fp, probe_hash, preproc_hash, grid));
    """,
    # 3: validation fine-tunes (one row per finished run) and estimator-vs-measurement agreement.
    """
    CREATE TABLE validation_runs (
        run_key VARCHAR PRIMARY KEY, model_id VARCHAR, model_fp VARCHAR, probe VARCHAR, train_hash VARCHAR,
        val_hash VARCHAR, cut VARCHAR, protocol VARCHAR, hyperparams JSON, seed INTEGER, status VARCHAR,
        reason VARCHAR, epochs INTEGER, history JSON, val_acc DOUBLE, best_val_acc DOUBLE, seconds DOUBLE,
        prefix_seconds DOUBLE, device VARCHAR, tfb_layers JSON, tfb_mean DOUBLE, tfb_note VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE estimator_agreement (
        probe VARCHAR, train_hash VARCHAR, scope VARCHAR, estimator VARCHAR, n INTEGER, weighted_tau DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp);
    """,
    # 4: advisor bench: ground-truth fine-tunes (one row per finished lr x seed run, with test accuracy)
    # and one evidence row per (settings, model, target) that `advisor bench --report-only` rebuilds from.
    """
    CREATE TABLE bench_runs (
        run_key VARCHAR PRIMARY KEY, model_id VARCHAR, model_fp VARCHAR, target VARCHAR, train_hash VARCHAR,
        val_hash VARCHAR, test_hash VARCHAR, lr_backbone DOUBLE, lr_head DOUBLE, seed INTEGER, hyperparams JSON,
        status VARCHAR, reason VARCHAR, history JSON, val_acc DOUBLE, best_val_acc DOUBLE, test_acc DOUBLE,
        n_train INTEGER, n_val INTEGER, n_test INTEGER, seconds DOUBLE, device VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE bench_cells (
        cell_key VARCHAR PRIMARY KEY, settings_hash VARCHAR, model_id VARCHAR, target VARCHAR, payload JSON,
        created_at TIMESTAMP DEFAULT current_timestamp);
    """,
)

TABLES = ("probes", "models", "extractions", "features", "scores", "runs", "attribution_runs", "validation_runs",
          "estimator_agreement", "bench_runs", "bench_cells")


def default_home() -> Path:
    if os.environ.get("ADVISOR_HOME"):
        return Path(os.environ["ADVISOR_HOME"]).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("advisor"))


def cache_path() -> Path:
    return default_home() / "advisor.duckdb"


def _lock_holder(message: str) -> str:
    m = re.search(r"PID (\d+)", message)
    return f" (held by PID {m.group(1)})" if m else ""


@contextmanager
def connect(read_only: bool = False, path: Path | None = None):
    """A short-lived DuckDB connection; waits for another process's lock, then fails clearly."""
    import duckdb

    path = path or cache_path()
    if read_only and not path.exists():
        raise AdvisorError(f"no cache at {path} yet", "run `advisor rank ...` first (or set ADVISOR_HOME)")
    path.parent.mkdir(parents=True, exist_ok=True)
    timeout = float(os.environ.get("ADVISOR_LOCK_TIMEOUT", "60"))
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise AdvisorError(f"cannot open cache {path}: {str(exc).splitlines()[0]}", "move the file away or set ADVISOR_HOME to a new folder") from None
            if time.monotonic() >= deadline:
                raise AdvisorError(
                    f"the cache {path} is locked by another advisor process{_lock_holder(str(exc))}",
                    "wait for it to finish, raise ADVISOR_LOCK_TIMEOUT, or use a separate cache with ADVISOR_HOME=DIR",
                ) from None
            if not warned:
                print(f"waiting up to {timeout:.0f}s for the cache lock{_lock_holder(str(exc))}...", file=sys.stderr)
                warned = True
            time.sleep(0.2)
    try:
        if not read_only:
            migrate(con)
        yield con
    finally:
        con.close()


def migrate(con) -> None:
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    done = {v for (v,) in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, sql in enumerate(MIGRATIONS, start=1):
        if version in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


@contextmanager
def transaction(read_only: bool = False):
    """A connection inside one transaction: everything or nothing is written."""
    with connect(read_only=read_only) as con:
        con.execute("BEGIN TRANSACTION")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")


# ---------------------------------------------------------------- arrays as blobs


def to_blob(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def from_blob(data: bytes, n: int, d: int) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(n, d)


def dumps(obj) -> str:
    return json.dumps(obj, sort_keys=True, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


# ---------------------------------------------------------------- maintenance


def stats() -> dict:
    path = cache_path()
    if not path.exists():
        return {"path": str(path), "exists": False}
    with connect(read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES if t in tables}
        feature_bytes = con.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM features").fetchone()[0] if "features" in tables else 0
    return {"path": str(path), "exists": True, "size_bytes": path.stat().st_size, "rows": counts, "feature_bytes": int(feature_bytes)}


def clear() -> Path:
    """Delete the cache file (and its write-ahead log); refuses while another process holds it."""
    path = cache_path()
    with connect(path=path):  # takes the lock: no one else is writing
        pass
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            p.unlink()
    return path
