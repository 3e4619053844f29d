"""Shared output helpers: a stderr console for progress and messages, stdout for results."""

from __future__ import annotations

import csv
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
