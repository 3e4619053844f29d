"""Every hook an advisor plugin can implement.

Built-in features are plugins too (see ``advisor.plugins_manager.DEFAULT_PLUGINS``); a third-party
package exposes its module under the ``advisor`` entry-point group::

    [project.entry-points.advisor]
    my_plugin = "my_package.my_module"

and implements any of the hooks below with ``@advisor.hookimpl``.
"""

import pluggy

hookspec = pluggy.HookspecMarker("advisor")
hookimpl = pluggy.HookimplMarker("advisor")


@hookspec
def register_estimators(register):
    """Register transferability estimators.

    Call ``register(advisor.Estimator(name=..., fn=..., ...))`` once per estimator. ``fn`` is a pure
    numeric function ``fn(features: ndarray[N, D], labels: ndarray[N] | None, **inputs) -> float``;
    see :class:`advisor.estimators.Estimator` for the fields (version, higher_is_better, needs).
    :mod:`advisor.numeric.checks` checks the arrays (``as_matrix``, ``as_labelled``: float64, finite, enough
    rows and classes) and raises :class:`advisor.numeric.checks.EstimatorInputError` for input that cannot
    be scored, as the built-ins do; ``tests/test_estimator_contract.py`` holds every registered
    estimator to that on degenerate input.
    """


@hookspec
def register_model_sources(register):
    """Register model sources, keyed by the prefix users type in a model id.

    Call ``register(source)`` where ``source`` has ``prefix`` (e.g. ``"hf-hub"`` for
    ``hf-hub:org/repo``), ``describe`` (one line for ``advisor plugins``), ``resolve(ref, ctx)``
    (cheap, no weights loaded: returns a fingerprint of the weights) and ``load(ref, ctx)``
    (returns an :class:`advisor.models.models.LoadedModel`). See :class:`advisor.models.models.ModelSource`.
    Optionally ``available(ctx) -> list[advisor.models.model_list.Offer]``: the ids the source serves without
    being told about them (a catalog, a folder, a cache), which ``advisor models`` lists — each
    resolved offline to say whether its weights are here — and ``--models`` globs match.
    """


@hookspec
def register_architectures(register):
    """Register model architectures that timm does not ship.

    Call ``register(name, factory, pretrained_cfg)`` where ``factory(**kwargs) -> nn.Module`` builds
    a module with timm's feature API (``feature_info``, ``forward_intermediates``, ``forward_head``)
    and ``pretrained_cfg`` is a dict with timm's preprocessing keys (``input_size``, ``mean``,
    ``std``, ``interpolation``, ``crop_pct``; ``input_size`` ``(1, H, W)`` for grey input,
    ``fixed_input_size`` when the model cannot take another size, ``first_conv`` for ``in_chans``
    adaptation). The name then works everywhere a timm arch name does (``file:...?arch=NAME``,
    weights directories). Called lazily, the first time a model is built. A module-level
    ``checkpoint_filter_fn(state_dict, model) -> state_dict`` in the factory's module (timm's
    convention) maps checkpoints with other key names; the loader applies it only when keys do not fit.
    """
