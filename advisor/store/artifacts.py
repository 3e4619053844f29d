"""What the cache stores for ``rank``: probes, models, features (and logits, attributions) and scores,
read and written by name (``load_features(con, ...)``), plus ``cache stats`` and ``cache clear --model``.

Every function that takes ``con`` runs inside the caller's :func:`advisor.store.db.connect` or
:func:`advisor.store.db.transaction`, so a unit of work (one model's features, one model's scores)
is written whole or not at all.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from advisor.errors import AdvisorError
from advisor.store import db
from advisor.store.schema import TABLES

LOGITS = "__logits__"  # features-table key of the source head's logits


# ---------------------------------------------------------------- arrays as blobs


def to_blob(a: np.ndarray) -> bytes:
    """An array as little-endian float32 bytes (the ``data`` column of ``features``)."""
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def from_blob(data: bytes, n: int, d: int) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4").reshape(n, d)


def dumps(obj) -> str:
    """JSON for a JSON column: sorted keys, tuples as lists, anything else as its string."""
    return json.dumps(obj, sort_keys=True, default=lambda o: list(o) if isinstance(o, tuple) else str(o))


# ---------------------------------------------------------------- probes and models


def skipped_images(con, probe_hash: str) -> dict[str, str] | None:
    """The probe's unreadable images as recorded when it was first decoded (item name -> why), or None
    when the probe was never decoded."""
    row = con.execute("SELECT skipped FROM probes WHERE hash = ?", [probe_hash]).fetchone()
    return None if row is None else dict(json.loads(row[0]))


def store_probe(con, probe_hash: str, source: str, n_images: int, n_classes: int | None, class_names: list[str],
                skipped: list) -> None:
    con.execute(
        "INSERT OR REPLACE INTO probes (hash, source, n_images, n_classes, class_names, skipped) VALUES (?, ?, ?, ?, ?, ?)",
        [probe_hash, source, n_images, n_classes, list(class_names), json.dumps([list(s) for s in skipped])],
    )


def cached_model(con, fp: str) -> tuple[dict, list[str], int] | None:
    """(data config, cuts, number of classes) of the model with fingerprint ``fp``, or None."""
    row = con.execute("SELECT data_config, cuts, num_classes FROM models WHERE fingerprint = ?", [fp]).fetchone()
    return None if row is None else (json.loads(row[0]), list(row[1]), row[2])


def store_model(con, fp: str, model_id: str, resolved, data_config: dict, cuts: list[str], num_classes: int) -> None:
    """The ``models`` row; ``resolved`` is an :class:`advisor.models.sources.Resolved`."""
    con.execute(
        "INSERT OR REPLACE INTO models (fingerprint, model_id, arch, kwargs, weights, weights_from, pretrain, data_config, cuts, num_classes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [fp, model_id, resolved.arch, dumps(resolved.kwargs), str(resolved.weights or ""), resolved.weights_from,
         resolved.pretrain, dumps(data_config), cuts, num_classes],
    )


# ---------------------------------------------------------------- features (and logits) of one extraction


def extraction_seconds(con, fp: str, probe_hash: str, ph: str, n_images: int) -> float | None:
    """How long the stored extraction of every cut took, or None when there is none for these ``n_images``."""
    row = con.execute(
        "SELECT seconds FROM extractions WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND n_images = ?",
        [fp, probe_hash, ph, n_images],
    ).fetchone()
    return None if row is None else row[0]


def load_features(con, fp: str, probe_hash: str, ph: str) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """({cut: features}, logits or None), cuts in their stored order."""
    rows = con.execute(
        "SELECT cut, kind, n, d, data FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? ORDER BY position",
        [fp, probe_hash, ph],
    ).fetchall()
    feats = {cut: from_blob(data, n, d) for cut, kind, n, d, data in rows if kind == "features"}
    logits = next((from_blob(data, n, d) for cut, kind, n, d, data in rows if kind == "logits"), None)
    return feats, logits


def store_features(con, fp: str, probe_hash: str, ph: str, cuts: list[str], features: dict[str, np.ndarray],
                   logits: np.ndarray | None, preproc: dict, n_images: int, seconds: float) -> None:
    """Replace the features of every cut (and the logits) of one extraction, and record it."""
    con.execute("DELETE FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ?", [fp, probe_hash, ph])
    for pos, cut in enumerate(cuts):
        f = features[cut]
        con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'features', ?, ?, ?)",
                    [fp, probe_hash, ph, cut, pos, f.shape[0], f.shape[1], to_blob(f)])
    if logits is not None:
        con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'logits', ?, ?, ?)",
                    [fp, probe_hash, ph, LOGITS, len(cuts), logits.shape[0], logits.shape[1], to_blob(logits)])
    con.execute(
        "INSERT OR REPLACE INTO extractions (model_fp, probe_hash, preproc_hash, preproc, n_images, seconds, device) VALUES (?, ?, ?, ?, ?, ?, 'cpu')",
        [fp, probe_hash, ph, dumps(preproc), n_images, seconds],
    )


# ---------------------------------------------------------------- DEPARA attributions


def attribution_images(con, fp: str, probe_hash: str, ph: str, grid: int) -> int | None:
    """On how many images the stored attributions were computed, or None when there are none."""
    row = con.execute("SELECT n_images FROM attribution_runs WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND grid = ?",
                      [fp, probe_hash, ph, grid]).fetchone()
    return None if row is None else row[0]


def load_attributions(con, fp: str, probe_hash: str, ph: str) -> dict[str, np.ndarray]:
    rows = con.execute("SELECT cut, n, d, data FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND kind = 'attributions'",
                       [fp, probe_hash, ph]).fetchall()
    return {cut.removeprefix("attr:"): from_blob(data, n, d) for cut, n, d, data in rows}


def store_attributions(con, fp: str, probe_hash: str, ph: str, grid: int, attrs: dict[str, np.ndarray], n_images: int,
                       seconds: float) -> None:
    """Replace the attributions of every cut, and record on how many images they were computed."""
    con.execute("DELETE FROM features WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ? AND kind = 'attributions'",
                [fp, probe_hash, ph])
    for pos, (cut, a) in enumerate(attrs.items()):
        con.execute("INSERT INTO features VALUES (?, ?, ?, ?, ?, 'attributions', ?, ?, ?)",
                    [fp, probe_hash, ph, f"attr:{cut}", pos, a.shape[0], a.shape[1], to_blob(a)])
    con.execute("INSERT OR REPLACE INTO attribution_runs (model_fp, probe_hash, preproc_hash, grid, n_images, seconds) VALUES (?, ?, ?, ?, ?, ?)",
                [fp, probe_hash, ph, grid, n_images, seconds])


# ---------------------------------------------------------------- scores


def load_scores(con, fp: str, probe_hash: str, ph: str) -> dict[tuple[str, str, str, str], tuple[float, float]]:
    """{(estimator, version, reference, cut): (score, seconds)} of one model's features."""
    return {(est, ver, ref, cut): (score, secs) for est, ver, ref, cut, score, secs in con.execute(
        "SELECT estimator, estimator_version, reference, cut, score, seconds FROM scores "
        "WHERE model_fp = ? AND probe_hash = ? AND preproc_hash = ?",
        [fp, probe_hash, ph],
    ).fetchall()}


def store_scores(con, new: list[list], stale: list[list]) -> None:
    """Write ``new`` rows ``[estimator, version, reference, model_fp, probe_hash, preproc_hash, cut, score,
    seconds]`` and delete ``stale`` ones (the same, without score and seconds)."""
    if stale:
        con.executemany("DELETE FROM scores WHERE estimator = ? AND estimator_version = ? AND reference = ? AND model_fp = ? "
                        "AND probe_hash = ? AND preproc_hash = ? AND cut = ?", stale)
    if new:
        con.executemany(
            "INSERT OR REPLACE INTO scores (estimator, estimator_version, reference, model_fp, probe_hash, preproc_hash, cut, score, seconds) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            new,
        )


# ---------------------------------------------------------------- maintenance: `cache stats`, `cache clear --model`


def stats() -> dict:
    """``advisor cache stats``: where the cache is, its size and the rows of each table."""
    path = db.cache_path()
    if not path.exists():
        return {"path": str(path), "exists": False}
    with db.connect(read_only=True) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        counts = {t: con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES if t in tables}
        feature_bytes = con.execute("SELECT coalesce(sum(octet_length(data)), 0) FROM features").fetchone()[0] if "features" in tables else 0
    return {"path": str(path), "exists": True, "size_bytes": path.stat().st_size, "rows": counts, "feature_bytes": int(feature_bytes)}


# Which rows `advisor cache clear --model/--estimator/--probe` deletes: per table, the column each filter
# reads. A table is cleared only when every given filter applies to it (with --estimator alone, the
# features stay; with --model and --probe, only that model's results on that probe go). The bench's
# tables are left alone: its runs CSV would bring them back (`advisor bench` imports it on start).
CLEAR_TABLES = (
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
    tables where they all apply (see ``CLEAR_TABLES``). One transaction: all of it or nothing.
    Returns {table: rows deleted} (tables with none left out); {} when there is no cache."""
    models, estimators, probes = [list(dict.fromkeys(x)) for x in (models, estimators, probes)]
    given = {k for k, v in (("model", models), ("estimator", estimators), ("probe", probes)) if v}
    if not given:
        raise AdvisorError("nothing to clear: no model, estimator or probe given", "pass --model ID, --estimator NAME or --probe PROBE")
    if not db.cache_path().exists():
        return {}
    deleted: dict[str, int] = {}
    with db.transaction() as con:
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
        for table, columns in CLEAR_TABLES:
            if table not in tables or not given <= set(columns):
                continue
            where = " AND ".join(f"list_contains(?::VARCHAR[], {columns[f]})" for f in sorted(given))
            params = [values[f][columns[f]] for f in sorted(given)]
            n = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()[0]
            if n:
                con.execute(f"DELETE FROM {table} WHERE {where}", params)
                deleted[table] = int(n)
    return deleted
