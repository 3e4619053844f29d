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
import threading
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
    # 5 (runs_reproducibility): every run records the advisor, timm and torch versions that computed it
    # and the weights of each model ({model id: {weights_sha256, model_identity}}; advisor.store.repro).
    """
    ALTER TABLE runs ADD COLUMN advisor_version VARCHAR;
    ALTER TABLE runs ADD COLUMN timm_version VARCHAR;
    ALTER TABLE runs ADD COLUMN torch_version VARCHAR;
    ALTER TABLE runs ADD COLUMN weights JSON;
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


def _lock_timeout() -> float:
    raw = os.environ.get("ADVISOR_LOCK_TIMEOUT", "60")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        raise AdvisorError(f"ADVISOR_LOCK_TIMEOUT={raw!r} is not a number of seconds", "set it to e.g. 60, or unset it")
    return value


# ---------------------------------------------------------------- damage and a full disk, in one line

_DAMAGED = ("corrupt database file", "not a valid duckdb database file", "could not read enough bytes",
            "checksum", "failed to read database header", "invalid wal", "wal file")
_NO_SPACE = ("no space left on device", "disk quota exceeded")
_READ_ONLY_FS = ("read-only file system",)


class CacheDamaged(AdvisorError):
    """The cache file is unreadable (overwritten, truncated, not a DuckDB file)."""

    def __init__(self, path: Path, detail: str):
        wal = path.with_name(path.name + ".wal")
        move = f"mv {path} {path}.damaged" + (f" && mv {wal} {wal}.damaged" if wal.exists() else "")
        super().__init__(f"the cache {path} is damaged ({detail})",
                         f"move it aside ({move}) or run `advisor cache clear`, then rerun: "
                         "features and scores are recomputed, nothing else is lost")
        self.path = path


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _errno_error(exc: OSError, path: Path) -> AdvisorError | None:
    import errno

    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return AdvisorError(f"no space left on the device holding the cache {path} (nothing half-written was kept)",
                            "free some space, or point ADVISOR_HOME at a disk with room, then rerun: finished work is kept")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return AdvisorError(f"cannot write the cache {path}: {exc.strerror}",
                            "make the folder writable, or point ADVISOR_HOME at a writable folder")
    return None


def cache_error(exc: BaseException, path: Path | None = None) -> AdvisorError | None:
    """The one-line error for a DuckDB/OS failure on the cache (damaged file, disk full, read-only
    file system), or None when ``exc`` is none of these."""
    path = path or cache_path()
    if isinstance(exc, AdvisorError):
        return exc
    if isinstance(exc, OSError):
        return _errno_error(exc, path)
    try:
        import duckdb
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(exc, duckdb.Error):
        return None
    text = str(exc).lower()
    if any(m in text for m in _NO_SPACE):
        import errno

        return _errno_error(OSError(errno.ENOSPC, "No space left on device"), path)
    if any(m in text for m in _READ_ONLY_FS):
        import errno

        return _errno_error(OSError(errno.EROFS, "Read-only file system"), path)
    if any(m in text for m in _DAMAGED):
        return CacheDamaged(path, _first_line(exc))
    return None


# ---------------------------------------------------------------- "in use": what `cache clear` waits for
#
# DuckDB's own lock is held only while a unit of work is written (connections are short), so it
# cannot keep `cache clear` from deleting the file between two units of a running `rank`. Every
# command that touches the cache therefore also holds a shared POSIX record lock on
# ``advisor.duckdb.lock`` (fcntl: released by the OS when the process dies, even on kill -9) for as
# long as it runs (``session()``, entered by the CLI around every command), and ``clear()`` takes it
# exclusively. F_GETLK names a holder's PID. The lock file is never deleted (a deleted lock file
# would let two processes lock two different files). Without fcntl (Windows) only DuckDB's lock applies.

_session_depth = 0
_held: dict[str, int] = {}  # lock file -> fd, held until the session ends
# Threads of one process (``advisor bench`` scores while it stores finished runs) take turns: one
# connection at a time, so two transactions of one process never conflict inside DuckDB.
_thread_turn = threading.RLock()


def _lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _fcntl():
    try:
        import fcntl

        return fcntl
    except ImportError:  # pragma: no cover - Windows
        return None


def _lock_owner(fd: int) -> int | None:
    """PID of a process holding a lock that conflicts with an exclusive one on ``fd`` (Linux layout)."""
    import struct

    fcntl = _fcntl()
    if fcntl is None or not sys.platform.startswith("linux"):
        return None
    fmt = "hhqqi4x"  # struct flock: l_type, l_whence, l_start, l_len, l_pid
    try:
        res = fcntl.fcntl(fd, fcntl.F_GETLK, struct.pack(fmt, fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
    except OSError:
        return None
    l_type, _, _, _, pid = struct.unpack(fmt, res)
    return pid if l_type != fcntl.F_UNLCK and pid > 0 else None


def _describe(pid: int | None) -> str:
    if pid is None:
        return "another advisor process"
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        words = [a.decode(errors="replace") for a in argv if a]
        if len(words) > 1 and Path(words[0]).name.startswith("python"):
            words = words[1:]
            if words[0] == "-m" and len(words) > 1:  # python -m advisor rank ...
                words = words[1:]
        if words:
            words[0] = Path(words[0]).name
            command = " ".join(words)
            return f"advisor process PID {pid} ({command[:120] + ('...' if len(command) > 120 else '')})"
    except OSError:
        pass
    return f"advisor process PID {pid}"


def _hold_shared(path: Path) -> None:
    fcntl = _fcntl()
    key = str(_lock_path(path))
    if fcntl is None or key in _held:
        return
    try:
        fd = os.open(key, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError:
        return  # a read-only cache folder: DuckDB's own lock still applies
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        # `cache clear` holds it exclusively: wait for it like for DuckDB's lock, then go on.
        deadline = time.monotonic() + _lock_timeout()
        while True:
            time.sleep(0.2)
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise AdvisorError(f"the cache {path} is being cleared by {_describe(_lock_owner(fd))}",
                                       "wait for it to finish, then rerun") from None
    _held[key] = fd


def _release_all() -> None:
    for key in list(_held):
        try:
            os.close(_held.pop(key))  # closing the descriptor drops the process's record locks on the file
        except OSError:
            pass


@contextmanager
def session():
    """The cache is in use for the duration of this block: every connection opened inside it keeps a
    shared lock on the cache until the block ends, so ``clear()`` in another process waits for it."""
    global _session_depth
    _session_depth += 1
    try:
        yield
    finally:
        _session_depth -= 1
        if _session_depth == 0:
            _release_all()


@contextmanager
def _exclusive(path: Path):
    """Hold the cache exclusively (no command running on it), waiting up to ADVISOR_LOCK_TIMEOUT."""
    fcntl = _fcntl()
    if fcntl is None:
        yield
        return
    _release_all()  # our own shared hold (same process) must not count, and would be dropped anyway
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        timeout = _lock_timeout()
        deadline = time.monotonic() + timeout
        warned = False
        while True:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                holder = _describe(_lock_owner(fd))
                if time.monotonic() >= deadline:
                    raise AdvisorError(f"the cache {path} is in use by a running {holder}",
                                       "wait for it to finish (or stop it), then rerun; nothing was deleted") from None
                if not warned:
                    print(f"waiting up to {timeout:.0f}s for the running {holder} to finish...", file=sys.stderr)
                    warned = True
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


@contextmanager
def connect(read_only: bool = False, path: Path | None = None, sandbox: bool = False):
    """A short-lived DuckDB connection; waits for another process's lock, then fails clearly.

    A damaged file, a full disk or a read-only folder become one-line :class:`AdvisorError` s
    wherever they surface (opening, migrating, or any query inside the block). ``sandbox=True``
    (``advisor cache sql``) also disables every file system access beyond the cache itself
    (``COPY ... TO``, ``EXPORT DATABASE``, ``read_csv('/etc/passwd')``, ``ATTACH``, extensions),
    with the configuration locked so the query cannot turn it back on."""
    with _thread_turn:
        with _connect(read_only, path, sandbox) as con:
            yield con


@contextmanager
def _connect(read_only: bool, path: Path | None, sandbox: bool):
    import duckdb

    path = path or cache_path()
    if read_only and not path.exists():
        raise AdvisorError(f"no cache at {path} yet", "run `advisor rank ...` first (or set ADVISOR_HOME)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AdvisorError(f"cannot create the cache folder {path.parent}: {exc.strerror}",
                           "set ADVISOR_HOME to a writable folder") from None
    if _session_depth:
        _hold_shared(path)
    config = {}
    if sandbox:
        config = {"enable_external_access": False, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False, "lock_configuration": True}
    timeout = _lock_timeout()
    deadline = time.monotonic() + timeout
    warned = False
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only, config=config)
            break
        except duckdb.Error as exc:
            if "lock" not in str(exc).lower() or not isinstance(exc, duckdb.IOException):
                known = cache_error(exc, path)
                if known is not None:
                    raise known from None
                raise AdvisorError(f"cannot open cache {path}: {_first_line(exc)}",
                                   f"move it aside (mv {path} {path}.damaged) or set ADVISOR_HOME to a new folder") from None
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
    except (duckdb.Error, OSError) as exc:
        known = cache_error(exc, path)
        if known is None:
            raise
        raise known from None
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
            try:
                con.execute("ROLLBACK")
            except Exception:  # noqa: BLE001 - a failed write may already have aborted it; the original error matters
                pass
            raise
        con.execute("COMMIT")  # a failed commit (disk full) rolls back by itself


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
    """Delete the cache file (and its write-ahead log). Waits (up to ADVISOR_LOCK_TIMEOUT) for running
    commands that use the cache, then fails naming one; a damaged cache is deleted too."""
    import duckdb

    path = cache_path()
    with _exclusive(path):
        if path.exists():
            try:  # DuckDB's own lock too (e.g. a process of an older advisor that holds no session lock)
                duckdb.connect(str(path)).close()
            except duckdb.Error as exc:
                if isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower():
                    raise AdvisorError(f"the cache {path} is locked by another advisor process{_lock_holder(str(exc))}",
                                       "wait for it to finish, then rerun; nothing was deleted") from None
                # any other error: the file is damaged, which is a reason to delete it
        for p in (path, path.with_name(path.name + ".wal")):
            if p.exists():
                p.unlink()
    return path


# Which rows `advisor cache clear --model/--estimator/--probe` deletes: per table, the column each filter
# reads. A table is cleared only when every given filter applies to it (with --estimator alone, the
# features stay; with --model and --probe, only that model's results on that probe go). The bench's
# tables are left alone: its runs CSV would bring them back (`advisor bench` imports it on start).
_CLEAR_TABLES = (
    ("scores", {"model": "model_fp", "probe": "probe_hash", "estimator": "estimator"}),
    ("features", {"model": "model_fp", "probe": "probe_hash"}),
    ("extractions", {"model": "model_fp", "probe": "probe_hash"}),
    ("attribution_runs", {"model": "model_fp", "probe": "probe_hash"}),
    ("validation_runs", {"model": "model_fp", "probe": "probe"}),
    ("estimator_agreement", {"estimator": "estimator", "probe": "probe"}),
    ("models", {"model": "fingerprint"}),
    ("probes", {"probe": "hash"}),
)


def _same_probe(stored: str, given: str) -> bool:
    """A probe as the user names it now against one stored by an earlier command: the same text, or
    the same path once both are resolved from here (a relative path given from another folder is not)."""
    if stored == given:
        return True
    if ":" in stored.split("/")[0] or ":" in given.split("/")[0]:  # builtin:digits and other non-paths
        return False
    try:
        return Path(stored).expanduser().resolve() == Path(given).expanduser().resolve()
    except (OSError, RuntimeError):
        return False


def clear_rows(*, models=(), estimators=(), probes=()) -> dict[str, int]:
    """Delete the cached results of ``models`` (model ids), ``estimators`` (names) and/or ``probes``
    (as given to ``rank``; every subsample of it): the rows matching every given filter, in the
    tables where they all apply (see ``_CLEAR_TABLES``). One transaction: all of it or nothing.
    Returns {table: rows deleted} (tables with none left out); {} when there is no cache."""
    models, estimators, probes = [list(dict.fromkeys(x)) for x in (models, estimators, probes)]
    given = {k for k, v in (("model", models), ("estimator", estimators), ("probe", probes)) if v}
    if not given:
        raise AdvisorError("nothing to clear: no model, estimator or probe given", "pass --model ID, --estimator NAME or --probe PROBE")
    if not cache_path().exists():
        return {}
    deleted: dict[str, int] = {}
    with transaction() as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        values: dict[str, dict[str, list]] = {"model": {}, "probe": {}, "estimator": {}}
        values["estimator"]["estimator"] = estimators
        fps = [r[0] for r in con.execute("SELECT fingerprint FROM models WHERE list_contains(?::VARCHAR[], model_id)", [models]).fetchall()]
        if "validation_runs" in tables:
            fps += [r[0] for r in con.execute("SELECT DISTINCT model_fp FROM validation_runs WHERE list_contains(?::VARCHAR[], model_id)",
                                              [models]).fetchall()]
        for column in ("model_fp", "fingerprint"):
            values["model"][column] = list(dict.fromkeys(fps))
        stored = con.execute("SELECT hash, source FROM probes").fetchall()
        hashes = [h for h, src in stored if any(_same_probe(src, p) for p in probes)]
        sources = {src for _, src in stored}
        for table in ("validation_runs", "estimator_agreement"):
            if table in tables:
                sources |= {r[0] for r in con.execute(f"SELECT DISTINCT probe FROM {table}").fetchall() if r[0] is not None}
        values["probe"] = {"probe_hash": hashes, "hash": hashes,
                           "probe": sorted(s for s in sources if any(_same_probe(s, p) for p in probes))}
        for table, columns in _CLEAR_TABLES:
            if table not in tables or not given <= set(columns):
                continue
            where = " AND ".join(f"list_contains(?::VARCHAR[], {columns[f]})" for f in sorted(given))
            params = [values[f][columns[f]] for f in sorted(given)]
            n = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
            if n:
                con.execute(f"DELETE FROM {table} WHERE {where}", params)
                deleted[table] = int(n)
    return deleted
