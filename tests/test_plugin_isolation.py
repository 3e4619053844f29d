"""A broken third-party plugin never takes a command down (issue 13, kind 2).

Fake plugins are registered on the plugin manager in-process (like tests/test_plugins.py's mock
estimators); broken entry points are real distributions (a dist-info folder on PYTHONPATH) run in a
subprocess, the way a user's installed package is found.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import file_id

import advisor
from advisor.plugin_manager import plugin_problems, pm


def _ok(features, labels=None, **_):
    return 1.0


class TakesBuiltinNames:
    """Registers names the built-ins own: an estimator, a model-source prefix, an architecture."""

    @advisor.hookimpl
    def register_estimators(self, register):
        register(advisor.Estimator(name="logme", fn=lambda f, l=None, **_: 123.0, needs=()))
        register(advisor.Estimator(name="iso-good", fn=_ok, needs=()))

    @advisor.hookimpl
    def register_model_sources(self, register):
        class Hijack:
            prefix = "file"
            describe = "not the real file source"

            def resolve(self, ref, ctx):
                raise RuntimeError("hijacked")

        register(Hijack())

    @advisor.hookimpl
    def register_architectures(self, register):
        register("resnet20_cifar", lambda **kw: None, {"input_size": (3, 32, 32)})


class RaisesInRegistration:
    @advisor.hookimpl
    def register_estimators(self, register):
        register(advisor.Estimator(name="iso-half", fn=_ok, needs=()))
        raise ImportError("No module named 'faiss'")

    @advisor.hookimpl
    def register_model_sources(self, register):
        raise RuntimeError("no sources today")

    @advisor.hookimpl
    def register_architectures(self, register):
        raise ValueError("no archs today")


class ExitsInRegistration:
    @advisor.hookimpl
    def register_estimators(self, register):
        sys.exit(3)


class BreaksTheContract:
    @advisor.hookimpl
    def register_estimators(self, register):
        register("not an estimator")
        register(advisor.Estimator(name="bad name!", fn=_ok, needs=()))
        register(advisor.Estimator(name="iso-needs", fn=_ok, needs=("telepathy",)))
        register(advisor.Estimator(name="iso-notcallable", fn=42, needs=()))
        register(advisor.Estimator(name="iso-twice", fn=_ok, needs=()))
        register(advisor.Estimator(name="iso-twice", fn=lambda f, l=None, **_: 2.0, needs=()))

    @advisor.hookimpl
    def register_model_sources(self, register):
        register(object())  # no prefix, no resolve

    @advisor.hookimpl
    def register_architectures(self, register):
        register("iso_arch", "not a factory", {})


class MisbehavesWhenScoring:
    """Estimators that exit, interrupt, or write into their inputs."""

    @advisor.hookimpl
    def register_estimators(self, register):
        def exits(features, labels=None, **_):
            sys.exit(3)

        def writes(features, labels=None, **_):
            features -= features.mean(axis=0)  # in place: would change the features for later estimators
            return 0.0

        register(advisor.Estimator(name="iso-exit", fn=exits, needs=()))
        register(advisor.Estimator(name="iso-exit0", fn=lambda f, l=None, **_: sys.exit(), needs=()))
        register(advisor.Estimator(name="iso-writes", fn=writes, needs=()))
        register(advisor.Estimator(name="iso-mean", fn=lambda f, l=None, **_: float(np.mean(f)), needs=()))


class Sloppy:
    """Legal but careless: prints to stdout, a version that is an int, no description, a model
    source whose resolve() crashes."""

    @advisor.hookimpl
    def register_estimators(self, register):
        def chatty(features, labels=None, **_):
            print("debug: scoring", features.shape)
            return 0.5

        print("registering chatty")
        register(advisor.Estimator(name="iso-chatty", fn=chatty, version=2, description=None, needs=()))

    @advisor.hookimpl
    def register_model_sources(self, register):
        class Crashes:
            prefix = "crashy"
            describe = "a source whose resolve() has a bug"

            def resolve(self, ref, ctx):
                return {}["no such key"]

        register(Crashes())


class Interrupts:
    @advisor.hookimpl
    def register_estimators(self, register):
        def ctrl_c(features, labels=None, **_):
            raise KeyboardInterrupt

        register(advisor.Estimator(name="iso-ctrl-c", fn=ctrl_c, needs=()))


@pytest.fixture
def plugins():
    """Register fake plugins by name for one test: ``plugins(name=instance, ...)``."""
    from advisor.plugin_manager import load_plugins

    load_plugins()
    added = []

    def add(**named):
        for name, plugin in named.items():
            pm.register(plugin, name=name)
            added.append(plugin)

    yield add
    for plugin in added:
        pm.unregister(plugin)


def _problems(plugin):
    return [p for p in plugin_problems() if p.plugin == plugin]


def test_a_builtin_name_cannot_be_taken_over(plugins, capsys):
    plugins(hijack=TakesBuiltinNames())
    logme = advisor.get_estimator("logme")
    assert logme.plugin == "advisor.plugins.logme" and logme.origin.startswith("advisor ")
    assert advisor.get_estimator("iso-good").origin == "hijack"  # its other estimator works
    from advisor.models.sources import list_sources

    assert type(next(s for s in list_sources() if s.prefix == "file")).__name__ == "FileSource"
    from advisor.cli.plugins import _architectures

    assert dict(_architectures())["resnet20_cifar"] == "advisor.plugins.cifar_resnet"
    errors = {p.hook: p.error for p in _problems("hijack")}
    assert "estimator 'logme', which the built-in plugin advisor.plugins.logme provides" in errors["register_estimators"]
    assert "model source prefix 'file', which the built-in plugin advisor.plugins.file_models provides" in errors["register_model_sources"]
    assert "architecture 'resnet20_cifar', which the built-in plugin advisor.plugins.cifar_resnet provides" in errors["register_architectures"]
    assert "warning: plugin 'hijack' (register_estimators): registers estimator 'logme'" in capsys.readouterr().err


def test_a_registration_that_raises_or_exits_is_reported_and_the_rest_works(plugins):
    plugins(raiser=RaisesInRegistration(), exiter=ExitsInRegistration())
    names = [e.name for e in advisor.list_estimators()]
    assert "iso-half" not in names  # a hook that raised registers nothing, not half of it
    assert {"logme", "knn", "parc"} <= set(names)
    from advisor.cli.plugins import _architectures
    from advisor.models.sources import list_sources

    assert {s.prefix for s in list_sources()} >= {"file", "timm", "hf-hub", "local-dir"}
    assert "resnet56_cifar" in dict(_architectures())
    errors = {p.hook: p.error for p in _problems("raiser")}
    assert errors["register_estimators"] == "ImportError: No module named 'faiss'; nothing it registers is used"
    assert errors["register_model_sources"].startswith("RuntimeError: no sources today")
    assert errors["register_architectures"].startswith("ValueError: no archs today")
    assert _problems("exiter")[0].error == "called sys.exit(3); nothing it registers is used"


def test_registrations_that_break_the_contract_are_refused_one_by_one(plugins):
    plugins(sloppy=BreaksTheContract())
    est = {e.name: e for e in advisor.list_estimators("iso-*")}
    assert list(est) == ["iso-twice"] and est["iso-twice"].fn is _ok  # the first of a duplicate is kept
    from advisor.cli.plugins import _architectures
    from advisor.models.sources import list_sources

    assert "iso_arch" not in dict(_architectures())
    assert {s.prefix for s in list_sources()} == {"file", "timm", "hf-hub", "local-dir"}
    errors = [p.error for p in _problems("sloppy")]
    for expected in ("register() takes an advisor.Estimator, got str", "estimator name 'bad name!'",
                     "needs unknown inputs ['telepathy']", "'iso-notcallable': fn must be callable",
                     "registers estimator 'iso-twice' twice", "a model source needs a prefix",
                     "architecture 'iso_arch': factory must be callable"):
        assert any(expected in e for e in errors), (expected, errors)


def test_advisor_plugins_lists_the_problems_and_exits_0(plugins, run_cli):
    plugins(hijack=TakesBuiltinNames(), raiser=RaisesInRegistration())
    code, out, err = run_cli("plugins", "--json")
    assert code == 0 and "Traceback" not in err
    listing = json.loads(out)
    problems = {(p["plugin"], p["hook"]) for p in listing["problems"]}
    assert {("hijack", "register_estimators"), ("raiser", "register_estimators"), ("raiser", "register_model_sources"),
            ("raiser", "register_architectures")} <= problems
    assert {e["name"]: e["plugin"] for e in listing["estimators"]}["logme"] == "advisor.plugins.logme"
    code, out, err = run_cli("plugins")
    assert code == 0 and "Plugin problems" in out and "raiser" in out


def test_rank_works_next_to_a_broken_plugin(plugins, run_cli, image_folder, tiny_weights):
    plugins(hijack=TakesBuiltinNames(), raiser=RaisesInRegistration(), exiter=ExitsInRegistration())
    code, out, err = run_cli("rank", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                             "-e", "logme", "-e", "iso-good", "--img-size", "32", "--json")
    assert code == 0, err
    rows = {r["estimator"]: r for r in json.loads(out)}
    assert rows["logme"]["score"] != 123.0 and rows["iso-good"]["score"] == 1.0


def test_an_estimator_that_exits_fails_its_row_and_the_run_goes_on(plugins, image_folder, tiny_weights, run_cli):
    plugins(misbehaves=MisbehavesWhenScoring())
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    result = advisor.rank(str(image_folder), [model], ["iso-exit", "iso-exit0", "iso-writes", "iso-mean", "logme"], img_size=32)
    rows = {r["estimator"]: r for r in result.rows}
    assert rows["iso-exit"]["error"] == "estimator called sys.exit(3)"
    assert rows["iso-exit0"]["error"] == "estimator called sys.exit()"
    assert "read-only" in rows["iso-writes"]["error"]
    # the features the later estimators saw are the cached ones, unchanged by iso-writes
    mf = result.models[0]
    for r in result.cut_scores:
        if r["estimator"] == "iso-mean":
            assert r["score"] == pytest.approx(float(np.mean(mf.features[r["cut"]])), rel=1e-6)
    assert rows["logme"]["score"] is not None
    code, out, err = run_cli("rank", str(image_folder), "--models", model, "-e", "logme", "-e", "iso-exit", "--img-size", "32")
    assert code == 0 and "estimator called sys.exit(3)" in err and "logme" in out


def test_ctrl_c_inside_an_estimator_still_interrupts(plugins, image_folder, tiny_weights):
    plugins(interrupts=Interrupts())
    with pytest.raises(KeyboardInterrupt):
        advisor.rank(str(image_folder), [file_id(tiny_weights["test_resnet"], "test_resnet")], ["iso-ctrl-c"], img_size=32)


BROKEN_DISTS = {
    # entry-point name: module source
    "hijacker": "import advisor\n"
                "@advisor.hookimpl\n"
                "def register_estimators(register):\n"
                "    register(advisor.Estimator(name='logme', fn=lambda f, l=None, **_: 123.0, needs=()))\n"
                "    register(advisor.Estimator(name='ep-good', fn=lambda f, l=None, **_: 1.0, needs=()))\n",
    "raiser": "import advisor\n"
              "@advisor.hookimpl\n"
              "def register_estimators(register):\n"
              "    raise RuntimeError('plugin bug')\n",
    "noimport": "import a_module_that_is_not_installed\n",
    "exitimport": "import sys\nsys.exit(3)\n",
    "typo": "import advisor\n"
            "@advisor.hookimpl\n"
            "def register_estimator(register):\n"
            "    pass\n",
    "badsig": "import advisor\n"
              "@advisor.hookimpl\n"
              "def register_estimators(registrar):\n"
              "    pass\n",
}


@pytest.fixture(scope="module")
def broken_site(tmp_path_factory):
    """A site folder with one installed distribution whose entry points are all broken differently."""
    site = tmp_path_factory.mktemp("broken-site")
    info = site / "advisor_broken-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: advisor-broken\nVersion: 0.0.1\n")
    lines = ["[advisor]"]
    for name, source in BROKEN_DISTS.items():
        (site / f"broken_{name}.py").write_text(source)
        lines.append(f"{name} = broken_{name}")
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return site


def _advisor(args, site, home):
    env = {k: v for k, v in os.environ.items() if k != "ADVISOR_LOAD_PLUGINS"}
    env.update(PYTHONPATH=str(site), ADVISOR_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "advisor", *args], capture_output=True, text=True, env=env, timeout=300)


def test_broken_entry_points_are_reported_by_advisor_plugins(broken_site, tmp_path):
    proc = _advisor(["plugins", "--json"], broken_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    listing = json.loads(proc.stdout)
    problems = {p["plugin"]: p["error"] for p in listing["problems"]}
    assert "ModuleNotFoundError: No module named 'a_module_that_is_not_installed'" in problems["noimport"]
    assert "called sys.exit(3)" in problems["exitimport"]
    assert "implements 'register_estimator', which is not an advisor hook (did you mean 'register_estimators'?)" in problems["typo"]
    assert "badsig" in problems and "registrar" in problems["badsig"]
    assert "RuntimeError: plugin bug" in problems["raiser"]
    assert "which the built-in plugin advisor.plugins.logme provides" in problems["hijacker"]
    est = {e["name"]: e["plugin"] for e in listing["estimators"]}
    assert est["logme"] == "advisor.plugins.logme" and est["ep-good"] == "hijacker"
    # each problem is one warning line on stderr
    for name in BROKEN_DISTS:
        assert sum(line.startswith(f"warning: plugin '{name}'") for line in proc.stderr.splitlines()) >= 1, proc.stderr


def test_rank_with_broken_entry_points_installed(broken_site, tmp_path, image_folder, tiny_weights):
    proc = _advisor(["rank", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                     "-e", "logme", "-e", "ep-good", "--img-size", "32", "--json"], broken_site, tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["estimator"]: r for r in json.loads(proc.stdout)}
    assert rows["logme"]["score"] != 123.0 and rows["ep-good"]["score"] == 1.0
    assert "Traceback" not in proc.stderr


def test_a_plugin_printing_to_stdout_does_not_corrupt_json(plugins, image_folder, tiny_weights, run_cli):
    plugins(sloppy=Sloppy())
    code, out, err = run_cli("rank", str(image_folder), "--models", file_id(tiny_weights["test_resnet"], "test_resnet"),
                             "-e", "iso-chatty", "--img-size", "32", "--json")
    assert code == 0, err
    assert json.loads(out)[0]["score"] == 0.5  # stdout is the JSON alone
    assert "debug: scoring" in err and "registering chatty" in err
    est = advisor.get_estimator("iso-chatty")
    assert est.version == "2" and est.description == ""
    code, out, err = run_cli("plugins", "--json")
    assert code == 0 and json.loads(out)  # and `advisor plugins` renders it


def test_a_model_source_whose_resolve_crashes_fails_only_its_model(plugins, image_folder, tiny_weights, run_cli):
    plugins(sloppy=Sloppy())
    good = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("rank", str(image_folder), "--models", f"crashy:whatever,{good}", "-e", "logme", "--img-size", "32", "--json")
    assert code == 0, err
    rows = {r["model"]: r for r in json.loads(out) if r["estimator"] == "logme"}
    assert rows["crashy:whatever"]["error"] == "model 'crashy:whatever' failed: KeyError: 'no such key'"
    assert rows[good]["rank"] == 1
