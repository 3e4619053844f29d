"""The DuckDB cache's file: where it lives, connections, transactions, and what a failure on it means.

The tables and their migrations are :mod:`advisor.store.schema`'s; what is stored in them (features,
scores, attributions, the rows ``cache clear --model`` deletes) is :mod:`advisor.store.artifacts`';
the "in use" lock that ``cache clear`` waits for is :mod:`advisor.store.locks`'.

Lives at ``$ADVISOR_HOME/advisor.duckdb`` (default: the user cache dir). Connections are short:
each unit of work (one model's features, one model's scores) is opened, written in a single
transaction and closed, so a killed run leaves only whole units behind and a second process waits
for the lock (``ADVISOR_LOCK_TIMEOUT`` seconds, default 60) instead of failing or corrupting.
"""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.store import locks
from advisor.store.schema import TABLES, migrate


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


@contextmanager
def connect(read_only: bool = False, path: Path | None = None, sandbox: bool = False):
    """A short-lived DuckDB connection; waits for another process's lock, then fails clearly.

    A damaged file, a full disk or a read-only folder become one-line :class:`AdvisorError` s
    wherever they surface (opening, migrating, or any query inside the block). ``sandbox=True``
    (``advisor cache sql``) also disables every file system access beyond the cache itself
    (``COPY ... TO``, ``EXPORT DATABASE``, ``read_csv('/etc/passwd')``, ``ATTACH``, extensions),
    with the configuration locked so the query cannot turn it back on."""
    with locks.thread_turn:
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
    if locks.in_session():
        locks.hold_shared(path)
    config = {}
    if sandbox:
        config = {"enable_external_access": False, "autoinstall_known_extensions": False,
                  "autoload_known_extensions": False, "lock_configuration": True}
    timeout = locks.lock_timeout()
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


# ---------------------------------------------------------------- maintenance


def clear() -> Path:
    """Delete the cache file (and its write-ahead log). Waits (up to ADVISOR_LOCK_TIMEOUT) for running
    commands that use the cache, then fails naming one; a damaged cache is deleted too."""
    import duckdb

    path = cache_path()
    with locks.exclusive(path):
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


def sandboxed_query(query: str) -> tuple[list[str] | None, list[tuple]]:
    """``advisor cache sql``: (column names, rows) of ``query`` on a read-only, sandboxed connection
    (see :func:`connect`); columns None for a statement that returns nothing. A refused or failing
    query is a one-line :class:`AdvisorError` naming the tables it may read."""
    import duckdb

    hint = "`cache sql` reads the cache's tables only (read-only, no other files); tables: " + ", ".join(TABLES)
    with connect(read_only=True, sandbox=True) as con:
        try:
            cur = con.execute(query)
            cols = [d[0] for d in cur.description] if cur is not None and cur.description is not None else None
            rows = cur.fetchall() if cols is not None else []
        except duckdb.Error as exc:
            known = cache_error(exc)
            if known is not None:
                raise known from None
            first = " ".join(str(exc).split("\n")[0].split())
            if isinstance(exc, duckdb.PermissionException) or "locked" in first:
                raise AdvisorError(f"refused: {first}", hint) from None
            raise AdvisorError(f"query failed: {first}", hint) from None
    return cols, rows
