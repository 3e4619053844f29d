"""Shared output helpers: a stderr console for progress and messages, stdout for results."""

from __future__ import annotations

import csv
from contextlib import contextmanager
import io
import json
import math
import sys

from rich.console import Console

# Piped or captured output gets a wide fixed width so tables are not wrapped at 80 columns.
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def print_csv(rows: list[dict], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    print(buf.getvalue(), end="")


# ---------------------------------------------------------------- how much goes to stderr: --quiet / --verbose
#
# Set once per command by the global options (advisor.cli main). stdout (results) never depends on it.
# quiet: no progress bars and no informational lines; warnings and errors still show.
# verbose: also the details (where each model's weights were found).

QUIET, NORMAL, VERBOSE = -1, 0, 1
_verbosity = {"level": NORMAL}


def set_verbosity(level: int) -> None:
    _verbosity["level"] = level


def is_quiet() -> bool:
    return _verbosity["level"] <= QUIET


def is_verbose() -> bool:
    return _verbosity["level"] >= VERBOSE


def info(msg: str) -> None:
    """An informational line on stderr (dim), unless --quiet. The message is text, not markup."""
    if not is_quiet():
        from rich.markup import escape

        err.print(f"[dim]{escape(msg)}[/dim]", highlight=False, soft_wrap=True)


def detail(msg: str) -> None:
    """A line shown only with --verbose."""
    if is_verbose():
        from rich.markup import escape

        err.print(f"[dim]{escape(msg)}[/dim]", highlight=False, soft_wrap=True)


def warn(msg: str, label: str = "warning") -> None:
    """A warning on stderr, shown even with --quiet: one line however long; brackets are text."""
    from rich.markup import escape

    err.print(f"[yellow]{escape(label)}:[/yellow] {escape(msg)}", soft_wrap=True)


def weights_line(model_id: str, resolved) -> str:
    """--verbose: where a model's weights were resolved from (an ``advisor.models.sources.Resolved``)."""
    where = resolved.weights_from or "the architecture's own initialisation"
    path = f": {resolved.weights}" if getattr(resolved, "weights", None) else ""
    return f"{model_id}: weights from {where}{path}"


# ---------------------------------------------------------------- progress: one implementation for every long step

# What a step's label says after the model id (advisor.ranking.extraction passes "ID (attributions)", advisor.validation.validate
# "ID (fine-tunes)"): (bar text, line when done, line when cached).
_STEPS = {
    "": ("extracting", "features extracted", "features from cache"),
    "attributions": ("DEPARA attributions of", "attributions computed", "attributions from cache"),
    "fine-tunes": ("fine-tuning", None, None),
    "domain features": ("domain features of", None, None),
}


class ProgressBars:
    """Progress of the long steps (feature extraction, DEPARA attributions, fine-tunes, bench runs,
    domain features) on stderr: "model i of n", a bar, done/total, elapsed time and ETA. Drawn only
    when stderr is a terminal and not with --quiet; the one-line outcomes ("features from cache")
    are info lines. Use as a context manager (the bar is removed at the end, even on an error);
    ``callbacks()`` is the :class:`advisor.ranking.progress.Progress` the library reports to."""

    def __init__(self, noun: str = "model"):
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.noun = noun
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("eta"), TimeRemainingColumn(), console=err, transient=True,
                            disable=not err.is_terminal or is_quiet())
        self.order: list[str] = []
        self.task = None

    # ------------------------------------------------------------ the bar
    @staticmethod
    def _split(label: str) -> tuple[str, str]:
        if label.endswith(")") and " (" in label:
            base, step = label[:-1].split(" (", 1)
            if step in _STEPS:
                return base, step
        return label, ""

    def plan(self, ids) -> None:
        """The models (or other units) this command will go through, in order: "model i of n"."""
        self.order = list(dict.fromkeys(ids))

    def position(self, base: str) -> str:
        if base not in self.order:
            self.order.append(base)
        return f"{self.noun} {self.order.index(base) + 1} of {len(self.order)}"

    def start(self, label: str, total: int | None) -> None:
        base, step = self._split(label)
        self.stop_task()
        self.bar.start()
        self.task = self.bar.add_task(f"{self.position(base)} · {_STEPS[step][0]} {base}", total=total)

    def start_counter(self, description: str, total: int | None) -> None:
        """A bar of its own (e.g. "bench runs": run i of n is the done/total column)."""
        self.stop_task()
        self.bar.start()
        self.task = self.bar.add_task(description, total=total)

    def advance(self, n: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, n)

    def stop_task(self) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
            self.task = None

    def end(self, label: str, cached: bool) -> None:
        base, step = self._split(label)
        self.stop_task()
        line = _STEPS[step][2 if cached else 1]
        if line:
            info(f"{base}: {line}")

    def unit_done(self, label: str, cached: bool | None) -> None:
        """One unit of a :meth:`start_counter` bar finished: advance it and say so (failures are reported later)."""
        self.advance(1)
        if cached is not None and (line := _STEPS[""][2 if cached else 1]):
            info(f"{label}: {line}")

    def close(self) -> None:
        self.stop_task()
        self.bar.stop()

    def __enter__(self) -> "ProgressBars":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------ what the library calls
    def callbacks(self):
        from advisor.ranking.progress import Progress

        return Progress(start_model=self.start, advance=self.advance, end_model=self.end, warn=warn,
                        plan=self.plan, resolved=lambda model_id, resolved: detail(weights_line(model_id, resolved)),
                        units=self.start_counter, unit_done=self.unit_done)


@contextmanager
def human_output_on_stderr(active: bool):
    """With ``active`` (``--snippet``), what is printed to ``out`` inside the block goes to stderr,
    so stdout carries only the snippet and ``advisor layers ... --snippet > finetune.py`` writes a
    runnable file; on a terminal the user still sees the table and the recommendation."""
    if not active:
        yield
        return
    out.file = sys.stderr
    try:
        yield
    finally:
        out.file = None  # back to whatever sys.stdout is at print time (``out`` is made without a file)
