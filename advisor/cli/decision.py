"""Printing the decision that ends ``advisor rank`` and ``advisor layers`` (the logic is
:mod:`advisor.ranking.decision`; this module only shows it)."""

from __future__ import annotations

import typer

from advisor.cli.output import err, out

SNIPPET_HELP = ("Print ready-to-run Python that fine-tunes the recommended model as recommended: the timm.create_model call "
                "that loads the same weights, a new head for the probe's classes, the freeze list and Plested & Gedeon 2019's "
                "learning rates as optimizer parameter groups. stdout then holds only the code (`--snippet > finetune.py`); the "
                "table and the recommendation go to stderr. --json always carries it as `snippet`.")
SnippetOption = typer.Option(False, "--snippet", help=SNIPPET_HELP)


def decide(command: str, obj, **kwargs):
    """``(Decision | None, reason | None)`` for ``rank`` (``obj``: the RankResult) or ``layers``
    (``obj``: the LayerProfile); ``kwargs`` go to :func:`advisor.ranking.decision.decide_rank` /
    :func:`advisor.ranking.decision.decide_layers`. Never raises for a decision that cannot be made."""
    from advisor.ranking import decision

    fn = decision.decide_rank if command == "rank" else decision.decide_layers
    return decision.safely(fn, obj, **kwargs)


def lines(outcome) -> list[str] | None:
    """The recommendation's lines for ``--report`` (None when there is none)."""
    return None if not outcome or outcome[0] is None else list(outcome[0].lines)


def json_fields(outcome) -> dict:
    """``decision`` and ``snippet`` for ``--json`` (``decision`` holds ``error`` when none could be made)."""
    dec, reason = outcome
    if dec is None:
        return {"decision": {"error": reason}, "snippet": None}
    return {"decision": dec.to_json(), "snippet": dec.snippet}


def show(outcome, snippet: bool) -> None:
    """The recommendation, one statement a line (never wrapped mid-way), then the snippet when asked for."""
    from rich.markup import escape

    dec, reason = outcome
    if dec is None:
        err.print(f"[yellow]no recommendation:[/yellow] {escape(reason or '')}", soft_wrap=True)
        return
    out.print()
    for line in dec.lines:
        out.print(escape(line), soft_wrap=True)
    if snippet:
        if dec.snippet is None:
            err.print(f"[yellow]no snippet:[/yellow] {escape(dec.snippet_error or '')}", soft_wrap=True)
        else:
            out.print()
            print(dec.snippet, end="", flush=True)
