"""The cache's tables: their named migrations, in order, and :func:`migrate`, which applies the missing ones.

A cache records each migration it has by name in ``schema_migrations``. Caches written before the
migrations had names recorded positional versions (1 = the first entry of :data:`MIGRATIONS`); the
first write to such a cache converts its record to names (:data:`POSITIONAL`), nothing else changes.
"""

from __future__ import annotations

# Named migrations, applied in this order: append, never edit or rename (a cache records the names it has).
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("initial_tables", """
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
    """),
    # scores keyed by the target reference they were computed against; DEPARA attributions.
    ("scores_by_reference", """
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
    """),
    # validation fine-tunes (one row per finished run) and estimator-vs-measurement agreement.
    ("validation_runs", """
    CREATE TABLE validation_runs (
        run_key VARCHAR PRIMARY KEY, model_id VARCHAR, model_fp VARCHAR, probe VARCHAR, train_hash VARCHAR,
        val_hash VARCHAR, cut VARCHAR, protocol VARCHAR, hyperparams JSON, seed INTEGER, status VARCHAR,
        reason VARCHAR, epochs INTEGER, history JSON, val_acc DOUBLE, best_val_acc DOUBLE, seconds DOUBLE,
        prefix_seconds DOUBLE, device VARCHAR, tfb_layers JSON, tfb_mean DOUBLE, tfb_note VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE estimator_agreement (
        probe VARCHAR, train_hash VARCHAR, scope VARCHAR, estimator VARCHAR, n INTEGER, weighted_tau DOUBLE,
        created_at TIMESTAMP DEFAULT current_timestamp);
    """),
    # advisor bench: ground-truth fine-tunes (one row per finished lr x seed run, with test accuracy)
    # and one evidence row per (settings, model, target) that `advisor bench --report-only` rebuilds from.
    ("bench_tables", """
    CREATE TABLE bench_runs (
        run_key VARCHAR PRIMARY KEY, model_id VARCHAR, model_fp VARCHAR, target VARCHAR, train_hash VARCHAR,
        val_hash VARCHAR, test_hash VARCHAR, lr_backbone DOUBLE, lr_head DOUBLE, seed INTEGER, hyperparams JSON,
        status VARCHAR, reason VARCHAR, history JSON, val_acc DOUBLE, best_val_acc DOUBLE, test_acc DOUBLE,
        n_train INTEGER, n_val INTEGER, n_test INTEGER, seconds DOUBLE, device VARCHAR,
        created_at TIMESTAMP DEFAULT current_timestamp);
    CREATE TABLE bench_cells (
        cell_key VARCHAR PRIMARY KEY, settings_hash VARCHAR, model_id VARCHAR, target VARCHAR, payload JSON,
        created_at TIMESTAMP DEFAULT current_timestamp);
    """),
    # every run records the advisor, timm and torch versions that computed it
    # and the weights of each model ({model id: {weights_sha256, model_identity}}; advisor.store.repro).
    ("runs_reproducibility", """
    ALTER TABLE runs ADD COLUMN advisor_version VARCHAR;
    ALTER TABLE runs ADD COLUMN timm_version VARCHAR;
    ALTER TABLE runs ADD COLUMN torch_version VARCHAR;
    ALTER TABLE runs ADD COLUMN weights JSON;
    """),
    # the process that runs a command, so `advisor runs` can tell a command still running from one killed
    # (kill -9, a crash, the machine's reboot) before it could record how it ended
    ("runs_process", """
    ALTER TABLE runs ADD COLUMN pid INTEGER;
    ALTER TABLE runs ADD COLUMN host VARCHAR;
    """),
)

TABLES = ("probes", "models", "extractions", "features", "scores", "runs", "attribution_runs", "validation_runs",
          "estimator_agreement", "bench_runs", "bench_cells")



# A cache written before migrations were named recorded version N for the N-th of these (never extend).
POSITIONAL = ("initial_tables", "scores_by_reference", "validation_runs", "bench_tables", "runs_reproducibility")


def migrate(con) -> None:
    """Apply, each in its own transaction, every migration ``con``'s cache has not recorded."""
    _named_record(con)
    done = {name for (name,) in con.execute("SELECT name FROM schema_migrations").fetchall()}
    for name, sql in MIGRATIONS:
        if name in done:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations (name) VALUES (?)", [name])
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise


def _named_record(con) -> None:
    """``schema_migrations`` keyed by name: created on a new cache, converted (in one transaction)
    from the positional versions of a cache written before migrations had names."""
    columns = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'schema_migrations'").fetchall()}
    if "name" in columns:
        return
    create = "CREATE TABLE schema_migrations (name VARCHAR PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
    if not columns:
        con.execute(create)
        return
    con.execute("BEGIN TRANSACTION")
    try:
        rows = con.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version").fetchall()
        con.execute("DROP TABLE schema_migrations")
        con.execute(create)
        con.executemany("INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                        [[POSITIONAL[v - 1] if 1 <= v <= len(POSITIONAL) else f"version {v}", at] for v, at in rows])
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
