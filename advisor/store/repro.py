"""The reproducibility record every command carries: which advisor, timm and torch computed it, and
which weights each model had (a hash of the weights file's bytes).

``rank``, ``layers`` and ``validate`` write one row of the cache's ``runs`` table per command (the
arguments, the result, the three versions and the weights of every model) and put the same record
in their ``--json`` output; ``advisor runs`` lists them. The weights hash and the model identity
(build recipe + weights bytes) are :func:`advisor.bench.identity.model_identity`'s, the one definition the
benchmark keys its ground truth on: a model moved to another folder keeps its identity.

Versions are read from the installed distributions' metadata, so a warm rerun still imports no torch.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from importlib import metadata
from pathlib import Path

from advisor.store import db
from advisor.store.artifacts import dumps


def versions() -> dict[str, str | None]:
    """``{"advisor": ..., "timm": ..., "torch": ...}`` (None for a package that is not installed)."""
    from advisor import __version__

    out: dict[str, str | None] = {"advisor": __version__}
    for package in ("timm", "torch"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = None
    return out


def weights_record(resolved) -> dict[str, str | None]:
    """``weights_sha256`` (the weights file's bytes; None when the model has no single file, e.g. a
    network trained on the probe) and ``model_identity`` (build recipe + weights bytes)."""
    from advisor.bench.identity import file_sha, model_identity

    path = Path(resolved.weights) if resolved.weights else None
    if path is None or not path.is_file():
        from dataclasses import replace

        return {"weights_sha256": None, "model_identity": model_identity(replace(resolved, weights=None))}
    return {"weights_sha256": file_sha(path), "model_identity": model_identity(resolved)}


def annotate_rows(rows: list[dict], models) -> dict[str, dict]:
    """Add ``versions``, ``weights_sha256`` and ``model_identity`` to every result row (in place)
    and return ``{model id: weights record}`` for the ``runs`` row. ``models``: objects with
    ``model_id`` and ``resolved`` (:class:`advisor.ranking.extraction.ModelFeatures`)."""
    record = {m.model_id: weights_record(m.resolved) for m in models}
    vers = versions()
    empty = {"weights_sha256": None, "model_identity": None}
    for row in rows:
        row.update(record.get(row["model"], empty))
        row["versions"] = dict(vers)
    return record


# ---------------------------------------------------------------- the runs table


def start_run(command: str, args: dict) -> str:
    """Record a command as running, with this process's id and host; returns its run id."""
    run_id = uuid.uuid4().hex[:12]
    v = versions()
    with db.transaction() as con:
        con.execute("INSERT INTO runs (run_id, command, args, status, advisor_version, timm_version, torch_version, pid, host) "
                    "VALUES (?, ?, ?, 'running', ?, ?, ?, ?, ?)",
                    [run_id, command, dumps(args), v["advisor"], v["timm"], v["torch"], os.getpid(), socket.gethostname()])
    return run_id


def _process_gone(pid: int | None, host: str | None) -> bool:
    """Whether the process that recorded a run as running is known to be gone: it ran on this host and
    no process has its id now (a run from another host, or without a pid, is never judged)."""
    if pid is None or host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def finish_run(run_id: str, result=None, weights: dict | None = None, error: BaseException | None = None) -> None:
    """Close the run: ``done`` with its result and the weights of every model, ``interrupted`` (Ctrl-C)
    or ``failed: <type>``."""
    with db.transaction() as con:
        if error is not None:
            status = "interrupted" if isinstance(error, KeyboardInterrupt) else f"failed: {type(error).__name__}"
            con.execute("UPDATE runs SET status = ?, finished_at = current_timestamp WHERE run_id = ?", [status, run_id])
        else:
            con.execute("UPDATE runs SET status = 'done', result = ?, weights = ?, finished_at = current_timestamp WHERE run_id = ?",
                        [dumps(result), dumps(weights or {}), run_id])


RUN_COLUMNS = ("run_id", "command", "args", "status", "result", "started_at", "finished_at", "advisor_version",
               "timm_version", "torch_version", "weights", "pid", "host")


def list_runs(limit: int = 20, commands: tuple[str, ...] | None = None) -> list[dict]:
    """The latest ``limit`` runs, newest first, as dicts (``args``/``result``/``weights`` parsed).
    A cache written before the version columns existed reads them as None. A run still marked running
    whose process is gone (killed before it could record how it ended) reads ``killed (process <pid>
    gone)``; the cache is not changed."""
    if not db.cache_path().exists():
        return []
    with db.connect(read_only=True) as con:
        have = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = 'runs'").fetchall()}
        if not have:
            return []
        cols = ", ".join(c if c in have else f"NULL AS {c}" for c in RUN_COLUMNS)
        where, params = "", []
        if commands is not None:
            where, params = "WHERE list_contains(?, command)", [list(commands)]
        rows = con.execute(f"SELECT {cols} FROM runs {where} ORDER BY started_at DESC, run_id LIMIT ?", params + [limit]).fetchall()
    out = []
    for values in rows:
        r = dict(zip(RUN_COLUMNS, values))
        for key in ("args", "result", "weights"):
            if isinstance(r[key], str):
                try:
                    r[key] = json.loads(r[key])
                except ValueError:
                    pass
        r["versions"] = {"advisor": r.pop("advisor_version"), "timm": r.pop("timm_version"), "torch": r.pop("torch_version")}
        pid, host = r.pop("pid"), r.pop("host")
        if r["status"] == "running" and _process_gone(pid, host):
            r["status"] = f"killed (process {pid} gone)"
        for key in ("started_at", "finished_at"):
            r[key] = None if r[key] is None else str(r[key])
        out.append(r)
    return out
