"""Plugins: mock estimators registered in fixtures, a real third-party package discovered through
its entry point, one ``test_hook_<name>`` per hook, and meta-tests in datasette's manner: every hook
of advisor/hookspecs.py (found by introspection) has its test here and a section in docs/plugins.md
showing its real signature."""

import inspect
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO, file_id

import advisor
from advisor import hookspecs
from advisor.plugin_manager import pm


class MockEstimators:
    """A plugin whose estimators misbehave in every way a third-party one can."""

    @advisor.hookimpl
    def register_estimators(self, register):
        def explode(features, labels=None, **_):
            raise RuntimeError("kaboom")

        register(advisor.Estimator(name="mock-raises", fn=explode, needs=()))
        register(advisor.Estimator(name="mock-nan", fn=lambda f, l=None, **_: float("nan"), needs=()))
        register(advisor.Estimator(name="mock-logits", fn=lambda f, l=None, logits=None, **_: float(logits.std()), needs=("logits",)))
        register(advisor.Estimator(name="mock-lower", fn=lambda f, l=None, **_: float(f.shape[1]), needs=(), higher_is_better=False))


@pytest.fixture
def mock_plugin():
    from advisor.plugin_manager import load_plugins

    load_plugins()
    plugin = MockEstimators()
    pm.register(plugin, name="mock-estimators")
    yield plugin
    pm.unregister(plugin)


def test_mock_plugin_estimators_are_listed(mock_plugin):
    names = [e.name for e in advisor.list_estimators("mock-*")]
    assert names == ["mock-logits", "mock-lower", "mock-nan", "mock-raises"]
    assert advisor.get_estimator("mock-nan").origin == "mock-estimators"


def test_failing_estimators_are_reported_per_row_not_fatal(mock_plugin, image_folder, tiny_weights, tmp_path):
    from safetensors.torch import save_file
    import timm

    headless = tmp_path / "headless.safetensors"
    save_file(timm.create_model("test_resnet", num_classes=0).state_dict(), str(headless))
    models = [file_id(tiny_weights["test_resnet"], "test_resnet"), f"file:{headless}?arch=test_resnet&num_classes=0"]
    result = advisor.rank(str(image_folder), models, ["logme", "mock-raises", "mock-nan", "mock-logits", "mock-lower"], img_size=32)
    rows = {(r["model"], r["estimator"]): r for r in result.rows}
    assert all(rows[(m, "logme")]["score"] is not None for m in models)
    assert "RuntimeError: kaboom" in rows[(models[0], "mock-raises")]["error"]
    assert "returned nan" in rows[(models[0], "mock-nan")]["error"]
    assert rows[(models[0], "mock-logits")]["score"] > 0
    assert rows[(models[1], "mock-logits")]["error"].startswith("skipped: mock-logits needs logits")
    # lower-is-better: the best cut is the narrowest one and ranks ascend with the score
    lower = [r for r in result.rows if r["estimator"] == "mock-lower"]
    assert lower[0]["score"] <= lower[1]["score"] and lower[0]["rank"] == 1


def test_failing_estimator_shows_in_the_cli_table(mock_plugin, image_folder, tiny_weights, run_cli):
    code, out, err = run_cli("rank", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                             "-e", "logme", "-e", "mock-raises", "--img-size", "32")
    assert code == 0 and "failed" in out and "kaboom" in err


def test_estimator_contract_is_validated():
    from advisor.estimators import _validate

    with pytest.raises(ValueError, match="unknown inputs"):
        _validate(advisor.Estimator(name="x", fn=np.mean, needs=("telepathy",)))
    with pytest.raises(ValueError, match="letters"):
        _validate(advisor.Estimator(name="bad name", fn=np.mean))


@pytest.fixture(scope="module")
def installed_fake_plugin(tmp_path_factory):
    """pip-install the fake third-party package (tests/fake_plugin) into a private target folder."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(REPO / "tests" / "fake_plugin")], check=True, capture_output=True)
    return target


def _advisor(args, site, home):
    env = {k: v for k, v in os.environ.items() if k != "ADVISOR_LOAD_PLUGINS"}
    env.update(PYTHONPATH=str(site), ADVISOR_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, env=env, timeout=300)


def test_third_party_plugin_is_discovered_by_entry_point(installed_fake_plugin, tmp_path, image_folder, tiny_weights):
    proc = _advisor(["plugins", "--json"], installed_fake_plugin, tmp_path)
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    est = {e["name"]: e for e in listing["estimators"]}
    assert est["fake-variance"]["origin"] == "advisor-fake-plugin 0.0.1" and est["fake-variance"]["plugin"] == "fake"
    assert est["fake-variance"]["version"] == "0.0.1"
    assert {"name": "fake", "origin": "advisor-fake-plugin 0.0.1", "builtin": False, "hooks": ["register_estimators"]} in listing["plugins"]
    proc = _advisor(["rank", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                     "-e", "fake-variance", "--img-size", "32", "--json"], installed_fake_plugin, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["score"] > 0


# ---------------------------------------------------------------- one test per hook (datasette's manner)
# Each hook in advisor/hookspecs.py has a ``test_hook_<name>`` below that exercises it through a real
# plugin registered on the plugin manager; the meta-tests at the end find the hooks by introspection.


@pytest.fixture
def register_plugin():
    """Register plugin objects on the plugin manager for one test: ``register_plugin(name, plugin)``."""
    from advisor.plugin_manager import load_plugins

    load_plugins()
    added = []

    def add(name, plugin):
        pm.register(plugin, name=name)
        added.append(plugin)
        return plugin

    yield add
    for plugin in added:
        pm.unregister(plugin)


def _spread(features, labels=None, **inputs):
    return float(np.asarray(features, np.float64).var(axis=0).mean())


class SpreadPlugin:
    @advisor.hookimpl
    def register_estimators(self, register):
        register(advisor.Estimator(name="hook-spread", fn=_spread, version="2", needs=(), description="mean feature variance"))
        register(estimator=advisor.Estimator(name="hook-narrow", fn=lambda f, l=None, **_: float(f.shape[1]), needs=(),
                                             higher_is_better=False))


def test_hook_register_estimators(register_plugin, run_cli):
    register_plugin("hook-estimators", SpreadPlugin())
    assert [e.name for e in advisor.list_estimators("hook-*")] == ["hook-narrow", "hook-spread"]
    est = advisor.get_estimator("hook-spread")
    assert (est.version, est.needs, est.plugin, est.origin) == ("2", (), "hook-estimators", "hook-estimators")
    X = np.random.default_rng(0).normal(size=(30, 4))
    assert est(X) == pytest.approx(X.var(axis=0).mean())
    assert advisor.get_estimator("hook-narrow").higher_is_better is False
    code, out, err = run_cli("plugins", "--json")
    assert code == 0, err
    listed = {e["name"]: e for e in json.loads(out)["estimators"]}
    assert listed["hook-spread"]["plugin"] == "hook-estimators" and listed["hook-spread"]["version"] == "2"


class HookZoo:
    """A model source serving one model, ``hookzoo:tiny``: a timm test_resnet weights file."""

    prefix = "hookzoo"
    describe = "the test zoo: hookzoo:tiny"

    def __init__(self, weights):
        self.weights = weights

    def resolve(self, ref, ctx):
        from advisor.models.sources import Resolved

        if ref.name != "tiny":
            raise advisor.AdvisorError(f"no zoo model '{ref.name}'", "use hookzoo:tiny")
        return Resolved(ref=ref, arch="test_resnet", kwargs={"num_classes": 5}, weights=self.weights,
                        weights_from="hook zoo", fingerprint=f"hookzoo-{self.weights.stat().st_mtime_ns}")

    def available(self, ctx):
        from advisor.models.sources import Offer

        return [Offer("hookzoo:tiny", "hook zoo", pretrain="nothing")]


class HookZooPlugin:
    def __init__(self, weights):
        self.source = HookZoo(weights)

    @advisor.hookimpl
    def register_model_sources(self, register):
        register(self.source)


def test_hook_register_model_sources(register_plugin, tiny_weights, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from advisor.models.listing import list_models
    from advisor.models.loading import build_model

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # list_models scans no real hub cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    register_plugin("hook-zoo", HookZooPlugin(tiny_weights["test_resnet"]))
    assert "hookzoo" in [s.prefix for s in advisor.list_sources()]
    resolved = advisor.resolve_model("hookzoo:tiny")
    assert (resolved.ref.prefix, resolved.ref.name, resolved.weights_from) == ("hookzoo", "tiny", "hook zoo")
    with pytest.raises(advisor.AdvisorError, match="no zoo model 'big'"):
        advisor.resolve_model("hookzoo:big")
    assert [(m.id, m.offline) for m in list_models("hookzoo:*")] == [("hookzoo:tiny", True)]
    loaded = build_model(resolved, img_size=32)  # advisor builds the model from the Resolved: no load() on the source
    assert loaded.id == "hookzoo:tiny" and loaded.module.feature_info


class TinyArchPlugin:
    """Registers ``hook_tiny_resnet``: timm's test_resnet under a name timm does not have."""

    def __init__(self):
        self.built = []

    def factory(self, pretrained=False, **kwargs):
        import timm

        self.built.append(kwargs)
        module = timm.create_model("test_resnet", pretrained=False, **kwargs)
        module.pretrained_cfg = module.default_cfg = {}  # a module from outside timm: the registered cfg applies
        return module

    @advisor.hookimpl
    def register_architectures(self, register):
        register("hook_tiny_resnet", self.factory, {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                                                    "interpolation": "bilinear", "crop_pct": 1.0})


def test_hook_register_architectures(register_plugin, tiny_weights, monkeypatch):
    import warnings

    from advisor.models import loading

    plugin = register_plugin("hook-arch", TinyArchPlugin())
    monkeypatch.setattr(loading, "_architectures_registered", False)  # the hook runs once per process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # timm: "Overwriting resnet20_cifar in registry" (the built-ins again)
        resolved = advisor.resolve_model(file_id(tiny_weights["test_resnet"], "hook_tiny_resnet"))
        loaded = loading.build_model(resolved)
    assert plugin.built == [{"num_classes": 5}]
    assert loaded.data_config["input_size"] == (3, 32, 32) and loaded.data_config["mean"] == (0.5, 0.5, 0.5)
    assert loaded.module.feature_info


# ---------------------------------------------------------------- meta-tests over advisor/hookspecs.py

PLUGIN_DOCS = REPO / "docs" / "plugins.md"


def hooks() -> list[str]:
    """Every hook defined in advisor/hookspecs.py, by introspection."""
    return sorted(name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "advisor_spec"))


def call_signature(name: str, fn, skip_self: bool = False, annotations: bool = True) -> str:
    """``name(a: T, b=1, **kw)`` from ``inspect.signature(fn)``, as docs/plugins.md writes it."""
    params = list(inspect.signature(fn).parameters.values())[1 if skip_self else 0:]
    texts = []
    for p in params:
        text = {p.VAR_KEYWORD: "**", p.VAR_POSITIONAL: "*"}.get(p.kind, "") + p.name
        if annotations and p.annotation is not p.empty:
            text += f": {p.annotation if isinstance(p.annotation, str) else p.annotation.__name__}"
        if p.default is not p.empty:
            text += "=" + literal(p.default)
        texts.append(text)
    return f"{name}({', '.join(texts)})"


def literal(value) -> str:
    """A default as the docs write it: double-quoted strings, ``("labels",)``."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return repr(value)


def hook_signatures(hook: str) -> list[str]:
    """What the docs must show for ``hook``: ``hook(register)``, and ``register(...)`` with the
    signature of the protocol its parameter is annotated with."""
    spec = getattr(hookspecs, hook)
    texts = [call_signature(hook, spec, annotations=False)]
    for param in inspect.signature(spec).parameters.values():
        protocol = getattr(hookspecs, param.annotation, None) if isinstance(param.annotation, str) else param.annotation
        if protocol is None or protocol is param.empty or "__call__" not in vars(protocol):
            texts.append(f"<{hook}'s parameter '{param.name}' annotated with a protocol of advisor.hookspecs>")
            continue
        texts.append(call_signature(param.name, vars(protocol)["__call__"], skip_self=True))
    return texts


def doc_sections() -> dict[str, str]:
    """docs/plugins.md by ``###`` heading, each section's whitespace collapsed."""
    sections, heading = {}, None
    for line in PLUGIN_DOCS.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip() if line.startswith("### ") else None
            sections.setdefault(heading, "")
        elif heading:
            sections[heading] += " " + line
    return {h: " ".join(text.split()) for h, text in sections.items() if h}


def hook_problems(hook: str, test_names) -> list[str]:
    """Why ``hook`` is not tested or documented as it must be (empty: it is)."""
    problems = []
    if not callable(test_names.get(f"test_hook_{hook}")):
        problems.append(f"tests/test_plugins.py has no test_hook_{hook}")
    spec = getattr(hookspecs, hook)
    if not spec.__doc__ or len(spec.__doc__) < 80:
        problems.append(f"{hook} in advisor/hookspecs.py needs a docstring")
    heading, *registered = hook_signatures(hook)
    sections = doc_sections()
    if heading not in sections:
        problems.append(f"docs/plugins.md has no '### {heading}' section")
    for text in registered:
        if text not in sections.get(heading, ""):
            problems.append(f"docs/plugins.md's section on {hook} does not show `{text}`")
    readme = (REPO / "README.md").read_text()
    if hook not in readme:
        problems.append(f"README.md does not name {hook}")
    return problems


def test_hooks_are_found():
    assert hooks() == sorted(["register_estimators", "register_model_sources", "register_architectures"])
    assert hook_signatures("register_architectures") == [
        "register_architectures(register)", "register(name: str, factory: Callable[..., Any], pretrained_cfg: dict)"]
    assert "docs/plugins.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("hook", hooks())
def test_hook_is_tested_and_documented_with_its_signature(hook):
    assert hook_problems(hook, globals()) == []


def test_a_new_hook_without_test_or_docs_fails_the_meta_tests(monkeypatch):
    class RegisterWidget:
        def __call__(self, widget: str) -> None: ...

    @hookspecs.hookspec
    def register_widgets(register: RegisterWidget):
        """Register widgets."""

    monkeypatch.setattr(hookspecs, "register_widgets", register_widgets, raising=False)
    assert "register_widgets" in hooks()
    problems = hook_problems("register_widgets", globals())
    assert "tests/test_plugins.py has no test_hook_register_widgets" in problems
    assert "docs/plugins.md has no '### register_widgets(register)' section" in problems
    assert "docs/plugins.md's section on register_widgets does not show `register(widget: str)`" in problems
    assert "README.md does not name register_widgets" in problems


def test_documented_estimator_signature_is_the_real_one():
    from dataclasses import MISSING, fields

    init = [f for f in fields(advisor.Estimator) if f.name not in ("origin", "plugin")]  # set by advisor, not the plugin
    text = "advisor.Estimator(" + ", ".join(f.name if f.default is MISSING else f"{f.name}={literal(f.default)}" for f in init) + ")"
    section = doc_sections()["register_estimators(register)"]
    assert text in section
    assert all(f"`{f.name}`" in section for f in fields(advisor.Estimator))


def test_documented_model_source_and_architecture_signatures_are_the_real_ones():
    from dataclasses import MISSING, fields

    from advisor.models.sources import ModelSource, Offer
    from advisor.plugin_manager import collect_architectures

    sources = doc_sections()["register_model_sources(register)"]
    assert call_signature("resolve", ModelSource.resolve, skip_self=True, annotations=False) in sources
    for source in advisor.list_sources():  # the built-ins: what a plugin author copies
        for method in ("resolve", "available"):
            if hasattr(source, method):
                assert call_signature(method, getattr(source, method), annotations=False) in sources, (source.prefix, method)
    offer = "Offer(" + ", ".join(f.name if f.default is MISSING else f"{f.name}={literal(f.default)}" for f in fields(Offer)) + ")"
    assert offer in sources
    archs = doc_sections()["register_architectures(register)"]
    for name, ((factory, cfg), plugin) in collect_architectures().items():
        assert call_signature("factory", factory, annotations=False) in archs, name


def test_importing_the_cli_and_plugins_does_not_import_torch():
    code = "import sys, advisor.cli; from advisor.plugin_manager import load_plugins; load_plugins(); assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
