"""``advisor validate --executor ray`` (and ``layers --validate``): one Ray task per fine-tune run that
is not cached, each building its model and training from scratch
(:func:`advisor.validation.validate.train_run`); this process stores every run as it finishes, in its
own transaction, so a rerun skips what is done. A run whose task fails or is lost becomes a failed row,
not stored: a rerun tries it again."""

from __future__ import annotations

from advisor.errors import AdvisorError
from advisor.scale.executor import RayExecutor, TaskLost
from advisor.validation.result import ValidationRow
from advisor.validation.validate import store_run, train_run


def run_task(model_id, resolved, cut, seed, train, val, proto, dev):
    """A worker's part: one run; an ``AdvisorError`` is returned (its row says why), not raised."""
    try:
        return train_run(model_id, resolved, cut, seed, train, val, proto, dev)
    except AdvisorError as exc:
        return exc


def validate_on_ray(executor: RayExecutor, model_id, resolved, todo: list[tuple[str, int]], keys: dict, train, val, proto, dev,
                    log, progress=None) -> list[ValidationRow]:
    """Rows of the runs ``todo`` ((cut, seed) pairs) of one model, each run as a Ray task; ``keys``
    maps them to their cache keys. A GPU per task when ``dev`` is cuda and the cluster has one."""
    gpus = 1 if dev.startswith("cuda") and executor.gpus >= 1 else 0
    if progress is not None:
        progress.units(f"{model_id}: fine-tunes on Ray", len(todo))
    rows = []
    units = [((c, s), (model_id, resolved, c, s, train, val, proto, dev)) for c, s in todo]
    for (c, s), out in executor.run(run_task, units, num_gpus=gpus):
        if isinstance(out, (TaskLost, AdvisorError)):
            reason = out.reason if isinstance(out, TaskLost) else str(out)
            log(f"{model_id} @ {c} seed {s}: failed on Ray: {reason}")
            rows.append(ValidationRow(model_id, c, proto.name, s, "failed", None, None, 0.0, None, reason, False, []))
        else:
            res, prefix_s = out
            store_run(keys[(c, s)], model_id, resolved, train, val, c, proto, s, res, prefix_s, dev)
            log(f"{model_id} @ {c} seed {s}: {res.status}" + (f", val acc {res.val_acc:.3f} ({res.seconds:.1f} s)" if res.val_acc is not None else f": {res.reason}"))
            rows.append(ValidationRow(model_id, c, proto.name, s, res.status, res.val_acc, res.best_val_acc, res.seconds,
                                      res.tfb_mean, res.reason, False, res.history))
        if progress is not None:
            progress.unit_done(f"{model_id} @ {c} seed {s}", None)
    return rows
