"""What the ranking pipeline reports while it works; the CLI draws it (:class:`advisor.cli.output.ProgressBars`)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Callable

from advisor.models.sources import Resolved


@dataclass
class Progress:
    """Callbacks the CLI uses to draw progress; the API default is silent."""

    start_model: Callable[[str, int], None] = lambda model_id, total: None
    advance: Callable[[int], None] = lambda n: None
    end_model: Callable[[str, bool], None] = lambda model_id, cached: None
    warn: Callable[[str], None] = lambda msg: print(f"warning: {msg}", file=sys.stderr)
    plan: Callable[[list[str]], None] = lambda model_ids: None  # the models about to be processed, in order
    resolved: Callable[[str, Resolved], None] = lambda model_id, resolved: None  # where a model's weights were found
    units: Callable[[str, int], None] = lambda description, total: None  # a counter of units run elsewhere (Ray tasks)
    unit_done: Callable[[str, bool | None], None] = lambda unit, cached: None  # one finished (cached: from the cache; None: failed)
