"""What several commands parse alike."""

from __future__ import annotations


def split_models(models: list[str]) -> list[str]:
    """Comma-separated lists: at every comma, except inside a model id's ``?query`` before ``key=``
    (see :func:`advisor.models.ids.split_model_ids`)."""
    from advisor.models.ids import split_model_ids

    return split_model_ids(models)
