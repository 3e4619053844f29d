"""Every hook an advisor plugin can implement, and the signature of what each one registers.

Built-in features are plugins too (the modules listed in ``advisor.plugin_manager.DEFAULT_PLUGINS``,
the repository's ``plugins/`` folder); a third-party package exposes its module under the
``advisor`` entry-point group::

    [project.entry-points.advisor]
    my_plugin = "my_package.my_module"

and implements any of the hooks below with ``@advisor.hookimpl``. Each hook takes one argument,
``register``: a function the plugin calls once per thing it provides. What ``register`` accepts is
the ``__call__`` of the protocol in the hook's annotation (:class:`RegisterEstimator`,
:class:`RegisterModelSource`, :class:`RegisterArchitecture`). ``docs/plugins.md`` documents each
hook with these signatures, and ``tests/test_plugins.py`` has a ``test_hook_<name>`` per hook; its
meta-tests fail for a hook added here without both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

import pluggy

if TYPE_CHECKING:
    from advisor.estimators import Estimator
    from advisor.models.sources import ModelSource

hookspec = pluggy.HookspecMarker("advisor")
hookimpl = pluggy.HookimplMarker("advisor")


class RegisterEstimator(Protocol):
    """``register`` of :func:`register_estimators`."""

    def __call__(self, estimator: Estimator) -> None: ...


class RegisterModelSource(Protocol):
    """``register`` of :func:`register_model_sources`."""

    def __call__(self, source: ModelSource) -> None: ...


class RegisterArchitecture(Protocol):
    """``register`` of :func:`register_architectures`."""

    def __call__(self, name: str, factory: Callable[..., Any], pretrained_cfg: dict) -> None: ...


@hookspec
def register_estimators(register: RegisterEstimator):
    """Register transferability estimators: ``register(estimator)`` once per estimator.

    ``estimator`` is an :class:`advisor.Estimator` (:class:`advisor.estimators.Estimator`):
    ``Estimator(name, fn, version="1", higher_is_better=True, needs=("labels",), description="")``.
    ``fn(features, labels=None, **inputs) -> float`` is a pure numeric function: ``features`` is
    ``float[N, D]``, ``labels`` ``int[N]`` or None, and ``inputs`` holds what ``needs`` names beyond
    the labels (``logits``, ``reference``, ``attributions``, ``reference_attributions``; see
    :data:`advisor.estimators.KNOWN_INPUTS`). :mod:`advisor.numeric.checks` takes the arrays in
    (``as_matrix``, ``as_labelled``: float64, finite, enough rows and classes) and raises
    :class:`advisor.errors.EstimatorInputError` for input that cannot be scored, as the built-ins
    do; ``tests/test_estimator_contract.py`` holds every registered estimator to that on degenerate
    input. A name already taken (a built-in's above all) is refused and reported.
    """


@hookspec
def register_model_sources(register: RegisterModelSource):
    """Register model sources, keyed by the prefix users type in a model id: ``register(source)``.

    ``source`` (see :class:`advisor.models.sources.ModelSource`) has ``prefix: str`` (``"hf-hub"``
    for ``hf-hub:org/repo``), ``describe: str`` (one line for ``advisor plugins``) and
    ``resolve(ref, ctx) -> Resolved``: cheap (no torch, no weights read), ``ref`` is the parsed id
    (:class:`advisor.models.ids.ModelRef`: ``raw``, ``prefix``, ``name``), ``ctx`` a
    :class:`advisor.models.sources.ResolveContext` (``mirror``, ``is_offline``); it returns an
    :class:`advisor.models.sources.Resolved` (``arch``, ``kwargs``, ``weights``, ``fingerprint``, ...),
    from which advisor builds the model itself (``advisor.models.loading.build_model``): a source
    has no ``load`` method. It raises :class:`advisor.AdvisorError` when the weights are not there.
    Optionally ``available(ctx) -> list[advisor.models.sources.Offer]``: the ids the source
    serves without being told about them (a catalog, a folder, a cache), which ``advisor models``
    lists — each resolved offline to say whether its weights are here — and ``--models`` globs match.
    """


@hookspec
def register_architectures(register: RegisterArchitecture):
    """Register model architectures that timm does not ship: ``register(name, factory, pretrained_cfg)``.

    ``factory(pretrained=False, **kwargs) -> torch.nn.Module`` builds a module with timm's feature
    API (``feature_info``, ``forward_intermediates``, ``forward_head``); ``pretrained_cfg`` is a
    dict with timm's preprocessing keys (``input_size``, ``mean``, ``std``, ``interpolation``,
    ``crop_pct``; ``input_size`` ``(1, H, W)`` for grey input, ``fixed_input_size`` when the model
    cannot take another size, ``first_conv`` for ``in_chans`` adaptation). The name then works
    everywhere a timm arch name does (``file:...?arch=NAME``, weights directories). Called lazily,
    the first time a model is built. A module-level ``checkpoint_filter_fn(state_dict, model) ->
    state_dict`` in the factory's module (timm's convention) maps checkpoints with other key names;
    the loader applies it only when keys do not fit. A name timm or a built-in already has is refused.
    """
