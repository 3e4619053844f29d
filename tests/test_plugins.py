"""Plugins: mock estimators registered in fixtures, a real third-party package discovered through
its entry point, and meta-tests that every hook is documented and tested."""

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

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


def _hooks():
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "advisor_spec")]


def test_every_hook_is_documented():
    readme = (REPO / "README.md").read_text()
    assert _hooks(), "no hookspecs found"
    for name in _hooks():
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and len(fn.__doc__) > 80, f"hook {name} needs a docstring"
        assert name in readme, f"hook {name} is not in the README"


def test_every_hook_is_tested():
    others = [p.read_text() for p in Path(__file__).parent.glob("test_*.py") if p.name != Path(__file__).name]
    for name in _hooks():
        assert any(name in text for text in others), f"no test exercises hook {name}"


def test_importing_the_cli_and_plugins_does_not_import_torch():
    code = "import sys, advisor.cli; from advisor.plugin_manager import load_plugins; load_plugins(); assert 'torch' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
