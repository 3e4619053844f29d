"""The DuckDB cache under damage and misuse (issue 13, kinds 1 and 5): a damaged file or a full disk is
one line saying what to do, and nothing half-written is kept; `cache clear` cannot delete the cache
under a running command; `cache sql` can read the cache's tables and nothing else."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from conftest import REPO, file_id
from test_cli_robustness import _rank_process, assert_usage_error, one_line

from advisor.store import artifacts, db, locks
from advisor.store.artifacts import to_blob


def _fill_cache(rows: int = 24, kb: int = 128) -> None:
    """A cache of a few MiB (so that truncating it to 1 MiB cuts real data)."""
    rng = np.random.default_rng(0)
    with db.transaction() as con:
        for i in range(rows):
            f = rng.standard_normal((kb * 256 // 64, 64)).astype(np.float32)
            con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'features', ?, ?, ?)",
                        ["fp", "probe", "pp", f"cut{i}", i, f.shape[0], f.shape[1], to_blob(f)])
        con.execute("INSERT INTO runs (run_id, command, status) VALUES ('r1', 'rank', 'done')")


def _damage(path, how: str) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        if how == "garbage-middle":
            fh.seek(size // 2)
            fh.write(np.random.default_rng(1).bytes(min(1 << 20, size // 4)))
        elif how == "truncated-1MiB":
            assert size > 1 << 20
            fh.truncate(1 << 20)
        elif how == "garbage-header":
            fh.write(np.random.default_rng(2).bytes(8192))
        elif how == "empty":
            fh.truncate(0)


@pytest.mark.parametrize("how", ["garbage-middle", "truncated-1MiB", "garbage-header", "empty"])
def test_damaged_cache_is_one_line_that_says_how_to_move_it_aside(run_cli, advisor_home, image_folder, tiny_weights, how):
    _fill_cache()
    db = advisor_home / "advisor.duckdb"
    _damage(db, how)
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    for argv in (["cache", "stats"], ["cache", "sql", "SELECT sum(octet_length(data)) FROM features"],
                 ["rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32"]):
        code, _, err = run_cli(*argv)
        if code == 0:  # rank may never read the damaged blocks; then it is a result
            assert argv[0] == "rank" and how == "garbage-middle", err
            continue
        line = assert_usage_error((code, _, err))
        assert "damaged" in line and str(db) in line and f"mv {db} {db}.damaged" in line, line
    # The advice works: move it aside, and everything else runs.
    db.rename(db.with_name("advisor.duckdb.damaged"))
    wal = db.with_name("advisor.duckdb.wal")
    if wal.exists():
        wal.rename(db.with_name("advisor.duckdb.wal.damaged"))
    code, _, err = run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32")
    assert code == 0, err


def test_damaged_cache_can_be_cleared(run_cli, advisor_home):
    _fill_cache()
    db = advisor_home / "advisor.duckdb"
    _damage(db, "garbage-header")
    code, out, err = run_cli("cache", "clear", "--yes")
    assert code == 0 and "deleted" in out and not db.exists(), err


def test_damaged_write_ahead_log(run_cli, advisor_home):
    db = advisor_home / "advisor.duckdb"
    code = textwrap.dedent(f"""
        import os, duckdb
        from advisor.store import db
        with db.transaction():
            pass
        con = duckdb.connect(str(db.cache_path()))
        for k in range(5):  # five committed transactions
            con.execute(f"INSERT INTO runs (run_id, command, status) SELECT 'r{{k}}_' || i, 'rank', 'done' FROM range(20000) t(i)")
        os._exit(0)  # killed before the checkpoint: the rows live in the WAL
    """)
    subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)}, check=True)
    wal = db.with_name("advisor.duckdb.wal")
    assert wal.exists()
    with open(wal, "r+b") as fh:
        fh.seek(wal.stat().st_size // 3)
        fh.write(b"\xff" * 4096)
    line = assert_usage_error(run_cli("cache", "stats"))
    assert "damaged" in line and f"mv {wal} {wal}.damaged" in line


class _FullDisk:
    """A DuckDB connection whose writes of feature rows fail as on a full disk."""

    def __init__(self, con, error):
        self._con, self._error = con, error

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith("INSERT INTO FEATURES"):
            raise self._error
        return self._con.execute(sql, *args)

    def __getattr__(self, name):
        return getattr(self._con, name)


@pytest.mark.parametrize("error", ["duckdb", "oserror"])
def test_disk_full_during_a_cache_write_is_one_line_and_nothing_half_written(run_cli, monkeypatch, advisor_home,
                                                                            image_folder, tiny_weights, error):
    import duckdb

    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    if error == "duckdb":  # what DuckDB raises (measured on a 3 MB tmpfs: at COMMIT, or at the write)
        exc = duckdb.IOException(f'IO Error: Could not write file "{advisor_home}/advisor.duckdb.wal": No space left on device')
        real = duckdb.connect
        monkeypatch.setattr(duckdb, "connect", lambda *a, **k: _FullDisk(real(*a, **k), exc))
    else:  # an OSError(ENOSPC) raised by Python code inside the transaction
        def full(a):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(artifacts, "to_blob", full)
    line = assert_usage_error(run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32"))
    assert "no space left" in line and "ADVISOR_HOME" in line
    monkeypatch.undo()
    monkeypatch.setenv("ADVISOR_HOME", str(advisor_home))
    with db.connect(read_only=True) as con:  # the model's unit was rolled back whole
        assert con.execute("SELECT count(*) FROM features").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM extractions").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 0
    code, out, err = run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32", "--json")
    assert code == 0 and json.loads(out)[0]["model"] == model, err


def test_a_cache_folder_that_cannot_be_created(run_cli, tmp_path, monkeypatch, image_folder, tiny_weights):
    a_file = tmp_path / "f"
    a_file.write_text("x")
    monkeypatch.setenv("ADVISOR_HOME", str(a_file / "home"))
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    line = assert_usage_error(run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32"))
    assert "cannot create the cache folder" in line and "ADVISOR_HOME" in line


def test_bad_lock_timeout_is_one_line(run_cli, monkeypatch):
    with db.transaction():
        pass
    monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "soon")
    assert "ADVISOR_LOCK_TIMEOUT" in assert_usage_error(run_cli("cache", "stats"))


# ---------------------------------------------------------------- kind 5: clear under a running command


def test_cache_clear_cannot_delete_the_cache_under_a_running_rank(tmp_path, tiny_weights, run_cli, monkeypatch):
    proc, first, second, argv, env = _rank_process(tmp_path, tiny_weights)  # stopped between two units
    try:
        monkeypatch.setenv("ADVISOR_HOME", env["ADVISOR_HOME"])
        monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "0")
        code, out, err = run_cli("cache", "clear", "--yes")
        line = one_line(err)
        assert code == 2 and f"PID {proc.pid}" in line and "rank" in line and "nothing was deleted" in line
        assert (tmp_path / "home" / "advisor.duckdb").exists()
    finally:
        proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err
    code, out, _ = run_cli("cache", "sql", "SELECT status FROM runs", "--json")
    assert [r["status"] for r in json.loads(out)] == ["done"]  # its run record survived
    code, out, _ = run_cli("cache", "sql", "SELECT count(DISTINCT model_fp) AS n FROM extractions", "--json")
    assert json.loads(out)[0]["n"] == 2
    monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "5")
    assert run_cli("cache", "clear", "--yes")[0] == 0  # nothing runs now


def test_cache_clear_waits_for_a_running_command_then_deletes(run_cli, advisor_home, monkeypatch):
    with db.transaction():
        pass
    holder = textwrap.dedent("""
        import sys, time
        from advisor.store import db, locks
        with locks.session():
            with db.connect(read_only=True):
                pass
            print("holding", flush=True)
            time.sleep(1.5)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding"
    monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "60")
    start = time.monotonic()
    code, out, err = run_cli("cache", "clear", "--yes")
    assert code == 0 and "deleted" in out and f"PID {proc.pid}" in err
    assert time.monotonic() - start > 0.3 and proc.wait(timeout=30) == 0
    assert not (advisor_home / "advisor.duckdb").exists()


def test_session_lock_is_released_after_each_command(run_cli, advisor_home, image_folder, tiny_weights, monkeypatch):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    assert run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32")[0] == 0
    assert not locks.held() and not locks.in_session()
    probe = "from advisor.store import db, locks\nwith locks.exclusive(db.cache_path()):\n    print('free')"
    monkeypatch.setenv("ADVISOR_LOCK_TIMEOUT", "0")
    done = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True)
    assert done.stdout.strip() == "free", done.stderr


# ---------------------------------------------------------------- kind 5: `cache sql` reads the cache only


@pytest.fixture
def small_cache():
    with db.transaction() as con:
        con.execute("INSERT INTO runs (run_id, command, status) VALUES ('r1', 'rank', 'done')")


@pytest.mark.parametrize("query,kind", [
    ("COPY runs TO '{out}/runs.csv'", "write"),
    ("COPY (SELECT 1) TO '{out}/x.parquet' (FORMAT parquet)", "write"),
    ("EXPORT DATABASE '{out}/export'", "write"),
    ("SELECT * FROM read_csv('{secret}')", "read"),
    ("SELECT * FROM read_csv_auto('{secret}')", "read"),
    ("SELECT * FROM read_text('{secret}')", "read"),
    ("SELECT * FROM '{secret}'", "read"),
    ("SELECT * FROM glob('{out}/*')", "read"),
    ("ATTACH '{out}/other.duckdb' AS other", "attach"),
    ("SET enable_external_access = true", "setting"),
    ("RESET enable_external_access", "setting"),
    ("SET lock_configuration = false", "setting"),
    ("INSTALL httpfs", "extension"),
    ("LOAD httpfs", "extension"),
    ("DELETE FROM runs", "write"),
    ("DROP TABLE runs", "write"),
    ("CREATE TABLE t AS SELECT 1", "write"),
])
def test_cache_sql_refuses_everything_but_reading_the_cache(run_cli, small_cache, tmp_path, advisor_home, query, kind):
    secret = tmp_path / "secret.csv"
    secret.write_text("password\nhunter2\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out, err = run_cli("cache", "sql", query.format(out=tmp_path, secret=secret))
    line = assert_usage_error((code, out, err))
    assert "hunter2" not in out + err
    assert line.startswith(("error: refused", "error: query failed")) and "cache sql" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no file written
    code, out, _ = run_cli("cache", "sql", "SELECT run_id FROM runs", "--json")  # and the cache is intact
    assert code == 0 and json.loads(out) == [{"run_id": "r1"}]


def test_cache_sql_selects_on_cache_tables_work(run_cli, small_cache):
    code, out, err = run_cli("cache", "sql", "SELECT command, status FROM runs", "--json")
    assert code == 0 and json.loads(out) == [{"command": "rank", "status": "done"}], err
    code, out, _ = run_cli("cache", "sql", "SELECT table_name FROM information_schema.tables ORDER BY 1", "--json")
    assert {"runs", "features", "scores"} <= {r["table_name"] for r in json.loads(out)}
    code, out, _ = run_cli("cache", "sql", "SELECT count(*) AS n FROM runs; SELECT 2 AS two", "--json")
    assert code == 0 and json.loads(out) == [{"two": 2}]
    code, out, _ = run_cli("cache", "sql", "SELECT 1 AS one -- a comment")
    assert code == 0 and "one" in out
