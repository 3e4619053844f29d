"""What ``cache clear`` waits for: the cache is "in use" while a command runs.

DuckDB's own lock is held only while a unit of work is written (connections are short), so it
cannot keep `cache clear` from deleting the file between two units of a running `rank`. Every
command that touches the cache therefore also holds a shared POSIX record lock on
``advisor.duckdb.lock`` (fcntl: released by the OS when the process dies, even on kill -9) for as
long as it runs (``session()``, entered by the CLI around every command), and ``clear()`` takes it
exclusively. F_GETLK names a holder's PID. The lock file is never deleted (a deleted lock file
would let two processes lock two different files). Without fcntl (Windows) only DuckDB's lock applies.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from advisor.errors import AdvisorError


def lock_timeout() -> float:
    """``ADVISOR_LOCK_TIMEOUT``: how many seconds to wait for a lock (default 60)."""
    raw = os.environ.get("ADVISOR_LOCK_TIMEOUT", "60")
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also NaN
        raise AdvisorError(f"ADVISOR_LOCK_TIMEOUT={raw!r} is not a number of seconds", "set it to e.g. 60, or unset it")
    return value


_session_depth = 0
_held: dict[str, int] = {}  # lock file -> fd, held until the session ends
# Threads of one process (``advisor bench`` scores while it stores finished runs) take turns: one
# connection at a time, so two transactions of one process never conflict inside DuckDB.
thread_turn = threading.RLock()


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


def hold_shared(path: Path) -> None:
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
        deadline = time.monotonic() + lock_timeout()
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
def exclusive(path: Path):
    """Hold the cache exclusively (no command running on it), waiting up to ADVISOR_LOCK_TIMEOUT."""
    fcntl = _fcntl()
    if fcntl is None:
        yield
        return
    _release_all()  # our own shared hold (same process) must not count, and would be dropped anyway
    fd = os.open(_lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        timeout = lock_timeout()
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


def in_session() -> bool:
    """True inside :func:`session` (connections then hold the shared lock)."""
    return _session_depth > 0


def held() -> list[str]:
    """The lock files this process holds a shared lock on (none once every session has ended)."""
    return list(_held)
