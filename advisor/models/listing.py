"""Which models can be ranked here, and where their weights would come from: ``advisor models``,
and the globs of ``--models``.

Each model source may offer the ids it serves without being told about them, through its
``available(ctx)`` method (see :class:`advisor.models.sources.ModelSource`): the ``timm`` source offers the
catalog (``registry/models.toml``, whose EfficientNet-Lites the ``embedded`` extra's packages ship),
the files of the weights directory and the ``timm/`` repos of the Hugging Face cache; the ``hf-hub``
source the other timm-style repos of that cache. Every offered id is then resolved as ``advisor rank``
resolves it, offline, so the listing and the loader cannot disagree: a model is *available offline*
when it resolves with no network, and otherwise its row carries the loader's own message and hint
(the exact command that fetches the weights, or why no hub has them).
"""

from __future__ import annotations

import contextvars
import difflib
import fnmatch
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from advisor.errors import AdvisorError
from advisor.models.ids import split_model_ids
from advisor.models.sources import Offer, ResolveContext, list_sources, resolve_model
from advisor.models.weights import catalog, catalog_entry

GLOB_CHARS = "*?["

# True while list_models resolves the offered ids: an offered id that turns out unknown must not
# start another listing for its did-you-mean (see suggestions()).
_listing: contextvars.ContextVar[bool] = contextvars.ContextVar("advisor_model_listing", default=False)


@dataclass(frozen=True)
class ListedModel:
    """One row of ``advisor models``: an offered id, resolved offline.

    ``offline`` is whether it resolves with no network (rankable right now); then ``weights_from``
    (``weights dir``, ``hub cache timm/...``, ``package ...``), ``weights`` (the file), ``revision``
    (the hub commit of cached weights) and ``arch`` say what would be loaded. Otherwise ``missing``
    says what is not there and ``hint`` how to get it.
    """

    id: str
    found_in: str
    offline: bool
    weights_from: str = ""
    weights: str | None = None
    revision: str | None = None
    arch: str | None = None
    pretrain: str = ""
    missing: str = ""
    hint: str = ""

    def to_json(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------- the listing


def matches(model_id: str, pattern: str) -> bool:
    """Whether ``model_id`` matches the glob ``pattern`` (case-sensitive; ``timm:`` in the pattern
    is optional, as in ids)."""
    if fnmatch.fnmatchcase(model_id, pattern):
        return True
    return pattern.startswith("timm:") and ":" not in model_id and fnmatch.fnmatchcase(model_id, pattern[len("timm:"):])


def list_models(pattern: str = "*", weights_dir: Path | str | None = None) -> list[ListedModel]:
    """Every model the sources offer whose id matches the glob ``pattern``, each resolved offline
    with ``weights_dir`` (else ``ADVISOR_WEIGHTS_DIR``): the timm source's first (catalog, weights
    dir, hub cache), then the other sources' by prefix; an id offered twice is listed once.

    Raises :class:`AdvisorError` when ``weights_dir`` is not a folder or its manifest is not valid
    TOML. A third-party source whose ``available`` raises is reported like a broken hook (``advisor
    plugins``) and lists nothing."""
    ctx = ResolveContext(weights_dir=Path(weights_dir).expanduser() if weights_dir else None, offline=True)
    if ctx.weights_dir is not None and not ctx.weights_dir.is_dir():
        raise AdvisorError(f"weights dir '{ctx.weights_dir}' is not a folder", "pass a folder of weight files to --weights-dir")
    token = _listing.set(True)
    try:
        return [_resolve_offer(offer, ctx) for offer in _offers(ctx) if matches(offer.id, pattern)]
    finally:
        _listing.reset(token)


def _offers(ctx: ResolveContext) -> list[Offer]:
    from advisor.plugin_manager import describe_exception, is_builtin, report_problem, stdout_to_stderr

    found: dict[str, Offer] = {}
    for source in sorted(list_sources(), key=lambda s: (s.prefix != "timm", s.prefix)):
        available = getattr(source, "available", None)
        if not callable(available):
            continue
        owner = type(source).__module__
        try:
            with stdout_to_stderr():
                offers = list(available(ctx))
        except (KeyboardInterrupt, AdvisorError):
            raise
        except BaseException as exc:  # a broken third-party source must not take the listing down
            if is_builtin(owner):
                raise
            report_problem(owner, "available", f"{describe_exception(exc)}; its models are not listed")
            continue
        for offer in offers:
            if not isinstance(offer, Offer):
                report_problem(owner, "available", f"offered {offer!r}, not an advisor.models.sources.Offer: ignored")
            elif offer.id not in found:
                found[offer.id] = offer
    return list(found.values())


def _resolve_offer(offer: Offer, ctx: ResolveContext) -> ListedModel:
    common = dict(id=offer.id, found_in=offer.found_in, pretrain=offer.pretrain)
    if offer.problem:
        return ListedModel(offline=False, missing=offer.problem, hint=offer.fix, **common)
    try:
        resolved = resolve_model(offer.id, ctx)
    except AdvisorError as exc:
        return ListedModel(offline=False, missing=exc.message, hint=exc.hint, **common)
    weights = resolved.weights
    in_hub_cache = weights is not None and weights.parent.parent.name == "snapshots"
    common["pretrain"] = resolved.pretrain or offer.pretrain
    return ListedModel(offline=True, weights_from=resolved.weights_from, weights=None if weights is None else str(weights),
                       revision=weights.parent.name if in_hub_cache else None, arch=resolved.arch, **common)


# ---------------------------------------------------------------- globs in --models, and did-you-mean


def is_model_pattern(model_id: str) -> bool:
    """Whether a ``--models`` id is a glob over the listed models: it has ``*``, ``?`` or ``[`` and
    its source lists models (so a ``file:...?arch=`` id, whose source lists none, never is; an id
    with an unknown prefix is left to the id parser, which says what to write instead)."""
    if not any(c in model_id for c in GLOB_CHARS):
        return False
    prefix, sep, _ = model_id.partition(":")
    if not sep:
        return True
    source = next((s for s in list_sources() if s.prefix == prefix), None)
    return source is not None and callable(getattr(source, "available", None))


def expand_model_ids(ids: list[str], weights_dir: Path | str | None = None) -> list[str]:
    """``ids`` with each glob (:func:`is_model_pattern`) replaced by the models available offline
    that it matches, in listing order (:func:`list_models` with ``weights_dir``); other ids are kept
    as they are, duplicates dropped. Raises :class:`AdvisorError` for a glob that matches no model
    available offline, naming the glob and pointing to ``advisor models``."""
    if not any(is_model_pattern(model_id) for model_id in ids):
        return list(ids)
    listed = list_models(weights_dir=weights_dir)
    out: list[str] = []
    for model_id in ids:
        if not is_model_pattern(model_id):
            out.append(model_id)
            continue
        hits = [m for m in listed if matches(m.id, model_id)]
        usable = [m.id for m in hits if m.offline]
        if not usable:
            raise no_match_error(model_id, hits, weights_dir)
        out += usable
    return list(dict.fromkeys(out))


def expand_model_id(model_id: str, weights_dir: Path | str | None = None) -> str:
    """One model id, where a glob must match exactly one available model (``advisor layers MODEL``).
    Raises :class:`AdvisorError` for a glob that matches none or several."""
    ids = expand_model_ids([model_id], weights_dir)
    if len(ids) > 1:
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        raise AdvisorError(f"model glob '{model_id}' matches {len(ids)} models ({shown}), and this command takes one",
                           "narrow the glob or name the model")
    return ids[0]


def model_ids_option(values: list[str], weights_dir: Path | None = None) -> list[str]:
    """``--models`` values → ids (:func:`advisor.models.ids.split_model_ids`), each glob (``'tf_efficientnet_lite*'``)
    replaced by the models available offline that it matches, as ``advisor models`` lists them with
    ``weights_dir`` (:func:`expand_model_ids`). Raises :class:`AdvisorError` when
    the option is given but names no model (``-m ""``, ``-m ,``: not the same as leaving ``--models``
    out, the defaults) and when a glob matches no available model."""
    ids = split_model_ids(values)
    if values and not ids:
        raise AdvisorError(f"--models {', '.join(repr(v) for v in values)} names no model",
                           "pass ids like tf_efficientnet_lite0,resnet20_cifar10, or leave --models out for the defaults")
    return expand_model_ids(ids, weights_dir=weights_dir)


def no_match_error(pattern: str, hits: list[ListedModel], weights_dir: Path | str | None = None) -> AdvisorError:
    """The error for a glob that names no model available offline (``hits``: the listed models it
    matches, none of them available)."""
    where = f" --weights-dir {weights_dir}" if weights_dir else ""
    if hits:
        shown = ", ".join(m.id for m in hits[:4]) + (f" and {len(hits) - 4} more" if len(hits) > 4 else "")
        return AdvisorError(f"model glob '{pattern}' matches no model whose weights are here ({shown}: none available offline)",
                            f"`advisor models '{pattern}'{where}` says how to get them")
    return AdvisorError(f"model glob '{pattern}' matches no model available here",
                        f"`advisor models{where}` lists the models you can rank" + ("" if weights_dir else " (add --weights-dir DIR for a folder of weights)"))


def suggestions(word: str, ctx: ResolveContext | None = None, n: int = 3) -> list[str]:
    """Up to ``n`` model ids close to ``word`` among the models that can be had: first those
    available offline here (:func:`list_models` with ``ctx``'s weights directory), then those whose
    weights are on the Hugging Face hub (:func:`hub_model_names`). An architecture without weights
    anywhere is never suggested. [] while a listing is in progress."""
    if _listing.get():
        return []
    here = [m.id for m in list_models(weights_dir=ctx.weights_dir if ctx else None) if m.offline]
    close = difflib.get_close_matches(word, here, n=n)
    for name in difflib.get_close_matches(word, hub_model_names(), n=n):
        if len(close) < n and name not in close:
            close.append(name)
    return close


@lru_cache(maxsize=1)
def hub_model_names() -> tuple[str, ...]:
    """Ids whose weights a hub has: catalog entries with an ``hf_hub_id``, timm's pretrained names
    whose cfg names a hub repo (``resnet50.a1_in1k``), and the architectures whose default does."""
    import timm
    from timm.models import get_pretrained_cfg

    names = [name for name in catalog() if (catalog_entry(name) or {}).get("hf_hub_id")]
    archs: dict[str, None] = {}
    for tagged in timm.list_pretrained():
        try:
            cfg = get_pretrained_cfg(tagged)
        except RuntimeError:
            continue
        if getattr(cfg, "hf_hub_id", None):
            names.append(tagged)
            archs.setdefault(tagged.split(".", 1)[0])
    for arch in archs:
        try:
            if getattr(get_pretrained_cfg(arch), "hf_hub_id", None):
                names.append(arch)
        except RuntimeError:
            continue
    return tuple(dict.fromkeys(names))
