"""Shared output helpers: a stderr console for progress and messages, stdout for results."""

from __future__ import annotations

import csv
import io
import json
import math

from rich.console import Console

err = Console(stderr=True)
out = Console(highlight=False)


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
