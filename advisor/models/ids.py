"""Model ids: what ``--models`` and ``advisor.rank(models=...)`` accept, parsed without loading anything.

A model id is ``prefix:rest`` where the prefix names a registered model source (``timm``,
``hf-hub``, ``local-dir``, ``file``, or a plugin's; see :mod:`advisor.models.sources`); an id
without a prefix is a timm name. As timm's own parser does, :func:`parse_model_id` refuses what it
does not know, in one line that says what to write instead: an unknown prefix (``hf_hub:org/repo``:
did you mean ``hf-hub:``), a hub repo written as a timm name (``timm/resnet18.a1_in1k``), and a path
(``./w.safetensors``, ``/data/model``: ``file:`` for a weights file, ``local-dir:`` for a timm folder).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.models.weights import WEIGHT_SUFFIXES


@dataclass(frozen=True)
class ModelRef:
    """A parsed model id: ``prefix`` selects the source, ``name`` is the rest, ``raw`` what was typed."""

    raw: str
    prefix: str
    name: str


ID_FORMS = "timm names (resnet50.a1_in1k), hf-hub:org/repo, local-dir:/path or file:/path/w.safetensors?arch=NAME"
_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_QUERY_KWARG = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*=")


def split_model_ids(values: list[str] | str) -> list[str]:
    """Model ids from ``--models`` values, each possibly a comma-separated list.

    A comma separates two ids, except where what follows cannot start an id:

    - inside an id's ``?query`` part, a comma followed by ``key=`` continues the query
      (``file:/w.safetensors?arch=mobilenetv2_100,pad_type=same``, the comma form of ``&``);
    - inside the path of a ``file:`` or ``local-dir:`` id (before its ``?``), a comma followed by
      text with a ``/`` or ``?`` and no ``prefix:`` continues the path (``file:/data/w,v2.pt?arch=x``).

    A model id never starts with ``key=``, and one without a prefix is a timm or catalog name, which
    has neither ``/`` nor ``?``; so ``file:/a?arch=x,k=1,resnet50`` is two ids, ``file:/a?arch=x,k=1``
    and ``resnet50``."""
    ids: list[str] = []
    for value in [values] if isinstance(values, str) else values:
        current: str | None = None
        for piece in value.split(","):
            if current is not None and _continues(current, piece):
                current += "," + piece
                continue
            if current is not None and current.strip():
                ids.append(current.strip())
            current = piece
        if current is not None and current.strip():
            ids.append(current.strip())
    return ids


def _continues(current: str, piece: str) -> bool:
    """Whether ``piece`` (after a comma) belongs to the id ``current`` (see :func:`split_model_ids`)."""
    if "?" in current:
        return bool(_QUERY_KWARG.match(piece))
    in_path = current.strip().startswith(("file:", "local-dir:"))
    head, colon, _ = piece.strip().partition(":")
    has_prefix = bool(colon) and _PREFIX.fullmatch(head) is not None
    return in_path and not has_prefix and ("/" in piece or "?" in piece)


def parse_model_id(model_id: str) -> ModelRef:
    """``prefix:rest`` for a registered source prefix; an id without one is a timm name.

    Refused with a one-line :class:`AdvisorError` (never passed on to timm or the hub): an empty id,
    an unknown prefix (``hf_hub:org/repo``: did you mean ``hf-hub:``; the hint lists the registered
    prefixes), and a path or hub repo where a timm name is expected (:func:`_refuse_paths`)."""
    from advisor.models.sources import registered_sources  # the sources resolve ModelRefs: imported when called

    model_id = model_id.strip()
    if not model_id:
        raise AdvisorError("empty model id", f"pass ids like {ID_FORMS}")
    known = sorted(registered_sources())
    prefix, sep, rest = model_id.partition(":")
    if sep and prefix in known:
        if prefix == "timm":
            _refuse_paths(rest)
        return ModelRef(model_id, prefix, rest)
    if sep and _PREFIX.fullmatch(prefix) and len(prefix) > 1:  # one letter: a Windows drive (C:\...), a path
        raise _unknown_prefix(model_id, prefix, rest, known)
    _refuse_paths(model_id)
    return ModelRef(model_id, "timm", model_id)


def _unknown_prefix(model_id: str, prefix: str, rest: str, known: list[str]) -> AdvisorError:
    """The error for ``prefix:`` that no source registered: did-you-mean the registered prefix it
    spells with ``_`` for ``-`` or in other case (``hf_hub`` → ``hf-hub``), else the closest one."""
    canon = {p.replace("_", "-").lower(): p for p in known}
    close = canon.get(prefix.replace("_", "-").lower()) or next(iter(difflib.get_close_matches(prefix, known, n=1)), None)
    return AdvisorError(
        f"unknown model source prefix '{prefix}:' in model id '{model_id}'",
        (f"did you mean '{close}:{rest}'? " if close else "")
        + f"registered prefixes: {', '.join(p + ':' for p in known)} (a timm name needs no prefix)",
    )


def _refuse_paths(model_id: str) -> None:
    """A model id that is a path on disk, or is written like one, is not a timm name: an existing
    file or folder (say ``file:`` or ``local-dir:``), a path where nothing exists (fix it), and
    ``org/name`` (a hub repo: ``hf-hub:org/name``). A bare word is a timm or catalog name, even when
    a file of that name is in the working directory."""
    path = Path(model_id).expanduser()
    folder_hint = "a folder with config.json + model.safetensors (timm's save_for_hf layout) is local-dir:{p}"
    file_hint = "a weights file is file:{p}?arch=NAME (NAME: the timm architecture it was trained with)"
    looks_like_path = "/" in model_id or "\\" in model_id or model_id.startswith((".", "~")) or path.suffix in WEIGHT_SUFFIXES
    if not looks_like_path:  # a bare word is a timm or catalog name, even if a file of that name is here
        return
    try:
        exists = path.exists()
    except OSError:  # e.g. a name too long for the file system
        exists = False
    if exists:
        p = str(path)
        if path.is_dir():
            hint = folder_hint.format(p=p) if (path / "config.json").is_file() else \
                f"{folder_hint.format(p=p)}; {file_hint.format(p=p + '/<weights>.safetensors')}"
        else:
            hint = file_hint.format(p=p)
        raise AdvisorError(f"model id '{model_id}' is a path, not a model id", f"say what it is: {hint}")
    if model_id.count("/") != 1 or model_id.startswith(("/", ".", "~")) or path.suffix in WEIGHT_SUFFIXES:
        how = f"file:{model_id}?arch=NAME" if path.suffix in WEIGHT_SUFFIXES else \
            f"file:{model_id}?arch=NAME (a weights file) or local-dir:{model_id} (a timm folder)"
        raise AdvisorError(f"model id '{model_id}' looks like a path, and nothing exists there",
                           f"fix the path and write it as {how}")
    raise AdvisorError(f"model id '{model_id}' looks like a Hugging Face hub repo, not a timm name",
                       f"write hf-hub:{model_id} (a repo with a timm config.json), or the timm name without its org")


