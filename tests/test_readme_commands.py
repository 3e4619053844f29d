"""Every command line in README.md works as written (issue 13, kind 10).

The ```bash blocks of README.md are read, and each ``advisor ...`` line (backslash continuations
joined, ``# comments`` dropped, ``a && b`` run like the shell: b only if a exits 0) is run in-process
on tiny inputs. The substitutions are mechanical, so a README line that stops parsing fails here:

- a probe argument (a path: it contains ``/`` or starts with ``~``, or is ``my_images``-like, i.e.
  any positional that is not a model id, a sub-command or a plain word the command expects) becomes
  a tiny ImageFolder (3 classes x 8 PNGs, 24 px); a ``.npz`` path a tiny ``.npz``; each item of a
  comma list (``--targets a/,b.npz``) likewise;
- ``--weights-dir DIR`` becomes a tiny weights folder, also ``ADVISOR_WEIGHTS_DIR``; its
  ``advisor-weights.toml`` maps every model name the README uses without a prefix (and every
  catalog name) to random-init ``test_resnet`` weights at 32 px (one model: its features are
  extracted once and cached, which keeps this test fast);
  ``hf-hub:`` ids stay as written: offline with an empty hub cache they are "not ranked" (one line),
  which is allowed only for them;
- ``file:`` ids keep their query; their path becomes a random-init weights file of the arch and
  kwargs the id names (so the documented comma form ``?arch=A,k=v`` is parsed by the real CLI);
- ``ADVISOR_SHARED`` (where ``registry/bench.toml``'s paths are relative to) becomes a tiny tree in
  which each bench target is the tiny folder or ``.npz`` and ``models_dir`` the tiny weights folder;
- relative output files (``--plot layers.png``, bench's CSVs) land in a temporary working directory.

Commands that fine-tune (``validate``, ``bench`` except ``--report-only``, ``layers --validate``:
minutes each) and commands that join a Ray cluster (``--ray-address``) are parsed by the real command-line parser (every option and argument checked and
converted) but not run; their pipelines are tested in tests/test_validate.py and tests/test_bench.py.
So ``bench --report-only`` finds no bench results in the cache: its one-line answer saying so
(exit 2) is the expected outcome.
All commands share one ``ADVISOR_HOME``, in README order, as a reader following it would.
"""

from __future__ import annotations

import json
import re
import shlex

import numpy as np
import pytest
from conftest import REPO, write_images

README = REPO / "README.md"
PREFIXES = ("file:", "hf-hub:", "local-dir:", "timm:", "builtin:", "model:")


def readme_commands() -> list[str]:
    """The ``advisor`` command lines of README's ```bash blocks, in order."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(), re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("advisor"):
                lines.append(" ".join(line.split()))
    return lines


def readme_file_ids() -> list[str]:
    """Every ``file:`` model id the README shows in inline code (the model-id table's examples), but
    templates (``?arch=NAME&k=v``: an upper-case placeholder for the architecture)."""
    ids = set(re.findall(r"`(file:/[^`\s]+\?arch=[^`\s]+)`", README.read_text()))
    return sorted(i for i in ids if not re.search(r"arch=[A-Z]+([&,]|$)", i))


def _model_names(tokens: list[str]) -> set[str]:
    """Bare model names in one command: --models lists, --model, and layers' MODEL argument."""
    from advisor.models.ids import split_model_ids

    names = set()
    for i, tok in enumerate(tokens):
        if tok in ("--models", "-m", "--model") and i + 1 < len(tokens):
            names.update(split_model_ids(tokens[i + 1]))
    if len(tokens) > 1 and tokens[1] == "layers":
        names.add(tokens[2])
    return {n for n in names if not n.startswith(PREFIXES)}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Tiny probe, npz, weights folder (manifest for every name the README uses) and a home."""
    import timm
    import torch
    from safetensors.torch import save_file

    from advisor.models.weights import catalog

    root = tmp_path_factory.mktemp("readme")
    probe = write_images(root / "probe", {"cat": 8, "dog": 8, "eel": 8})
    rng = np.random.default_rng(0)
    y = np.arange(30) % 3
    x = np.clip(rng.normal(90, 30, (30, 24, 24, 3)) + 60 * np.eye(3)[y][:, None, None, :], 0, 255).astype(np.uint8)
    np.savez(root / "tiny.npz", images=x, labels=y)
    weights = root / "weights"
    weights.mkdir()
    torch.manual_seed(0)
    arch = "test_resnet"
    model = timm.create_model(arch, num_classes=5)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights / f"{arch}.safetensors"))
    names = {n for n in catalog() if n != "defaults"}
    for line in readme_commands():
        for part in line.split("&&"):
            names |= _model_names(shlex.split(part, comments=True))
    entries = []
    for name in sorted(names):
        entries.append(f'["{name}"]\narch = "{arch}"\nfiles = ["{arch}.safetensors"]\nkwargs = {{num_classes = 5}}\n'
                       f'data_config = {{input_size = [3, 32, 32]}}\npretrain = "ImageNet-1k"\ndomain = "photos"\n')
    (weights / "advisor-weights.toml").write_text("\n".join(entries))
    import tomllib

    bench = tomllib.loads((REPO / "registry" / "bench.toml").read_text())
    shared = root / "shared"
    for target in bench["targets"]:
        path = shared / target
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(root / "tiny.npz" if target.endswith(".npz") else probe)
    (shared / bench.get("models_dir", "models")).symlink_to(weights)
    work = root / "work"
    work.mkdir()
    return {"shared": shared, "probe": probe, "npz": root / "tiny.npz", "weights": weights, "home": root / "home", "work": work, "root": root}


@pytest.fixture
def readme_env(env, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("ADVISOR_HOME", str(env["home"]))
    monkeypatch.setenv("ADVISOR_WEIGHTS_DIR", str(env["weights"]))
    monkeypatch.setenv("ADVISOR_SHARED", str(env["shared"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.chdir(env["work"])
    return env


VALUE_OPTIONS_KEPT = {"--models", "-m", "--model", "--estimator", "-e", "--plot", "--repeats", "--top", "--epochs",
                      "--seeds", "--max-images", "--source", "--reference", "--img-size", "--cuts"}


def _substitute(tokens: list[str], env) -> list[str]:
    out = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--weights-dir":
            out += [tok, str(env["weights"])]
            i += 2
            continue
        if tok in VALUE_OPTIONS_KEPT:
            out += [tok, tokens[i + 1]]
            i += 2
            continue
        if tok == "--targets":
            out += [tok, ",".join(_probe(t, env) for t in tokens[i + 1].split(","))]
            i += 2
            continue
        out.append(_probe(tok, env) if _is_path(tok) else tok)
        i += 1
    return out


def _is_path(tok: str) -> bool:
    return not tok.startswith(("-", *PREFIXES)) and ("/" in tok or tok.startswith("~") or tok.endswith((".npz", ".csv"))
                                                      or tok == "my_images")


def _probe(tok: str, env) -> str:
    return str(env["npz"] if tok.endswith(".npz") else env["probe"])


def _parse_only(tokens: list[str]) -> bool:
    sub = tokens[1]
    return (sub == "validate" or (sub == "bench" and "--report-only" not in tokens) or (sub == "layers" and "--validate" in tokens)
            or "--ray-address" in tokens)  # joining a Ray cluster needs one: tests/test_ray.py runs a simulated one


def _parse(argv: list[str]) -> None:
    """Parse a command line with the real parser, without running it."""
    import typer

    from advisor.cli.app import app

    command, name, args = typer.main.get_command(app), "advisor", list(argv)
    while hasattr(command, "commands"):  # a group: descend into the sub-command
        name, args = args[0], args[1:]
        assert name in command.commands, f"no command {name!r}"
        command = command.commands[name]
    command.make_context(name, args).close()


def _file_id_weights(model_id: str, folder) -> tuple[str, bool]:
    """The id with its path replaced by random-init weights of the arch and kwargs it names, and
    whether the model has a fixed input size."""
    import timm
    import torch
    from safetensors.torch import save_file

    from advisor.models.loading import register_plugin_architectures
    from advisor.plugins.file_models import parse_file_id

    register_plugin_architectures()
    path, arch, kwargs = parse_file_id(model_id[len("file:"):])
    build = {k: v for k, v in kwargs.items() if k != "in_chans"}  # in_chans is the adaptation being documented
    torch.manual_seed(0)
    model = timm.create_model(arch, **build)
    target = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(target))
    return model_id.replace(f"file:{path}", f"file:{target}", 1), bool(model.pretrained_cfg.get("fixed_input_size"))


def test_the_readme_has_commands_to_test():
    commands = readme_commands()
    assert len(commands) >= 10 and any(c.startswith("advisor rank") for c in commands)
    assert readme_file_ids(), "the README's model-id table shows no file: example"


@pytest.mark.parametrize("line", readme_commands())
def test_readme_command_runs(line, readme_env, run_cli, tmp_path):
    for part in line.split("&&"):
        tokens = _substitute(shlex.split(part, comments=True), readme_env)
        assert tokens[0] == "advisor"
        redirect = None
        if ">" in tokens:  # `... --snippet > finetune.py`: stdout into a file, as the shell would
            i = tokens.index(">")
            tokens, redirect = tokens[:i], tmp_path / tokens[i + 1]
        if _parse_only(tokens):
            _parse(tokens[1:])
            continue
        code, out, err = run_cli(*tokens[1:])
        if redirect is not None:
            redirect.write_text(out)
            if "--snippet" in tokens:
                compile(out, str(redirect), "exec")  # stdout alone is the program
        if tokens[1:3] == ["bench", "--report-only"] and code == 2:  # the full bench above was only parsed
            assert "not in the cache" in err and len(err.strip().splitlines()) == 1, err
            continue
        assert code == 0, f"{' '.join(tokens)}\n{err}"
        assert "Traceback" not in err
        not_ranked = [ln for ln in err.splitlines() if "not ranked:" in ln]
        assert all("hf-hub:" in ln for ln in not_ranked), not_ranked  # only hub ids may be missing offline
        if tokens[1] == "rank" and "--json" in tokens:
            assert json.loads(out)


@pytest.mark.parametrize("model_id", readme_file_ids())
def test_readme_file_ids_rank_as_written(model_id, readme_env, run_cli, tmp_path):
    """The model-id table's file: examples, the comma form included, reach the model as one id."""
    from advisor.plugins.file_models import parse_file_id

    tested, fixed = _file_id_weights(model_id, tmp_path)
    size = [] if fixed else ["--img-size", "32"]  # small and fast; a fixed-size model keeps its own
    code, out, err = run_cli("rank", str(readme_env["probe"]), "--models", tested, "-e", "knn", "--json", *size)
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model"] for r in rows] == [tested] and rows[0]["score"] is not None
    _, arch, kwargs = parse_file_id(tested[len("file:"):])
    _, arch0, kwargs0 = parse_file_id(model_id[len("file:"):])
    assert (arch, kwargs) == (arch0, kwargs0)


# ---------------------------------------------------------------- the --models list rule


@pytest.mark.parametrize("value, ids", [
    # the README's comma form: one id
    ("file:/w.safetensors?arch=mobilenetv2_100,pad_type=same",
     ["file:/w.safetensors?arch=mobilenetv2_100,pad_type=same"]),
    ("file:/w/dogs.safetensors?arch=mobilenetv2_100,pad_type=same,bn_eps=0.001,num_classes=19",
     ["file:/w/dogs.safetensors?arch=mobilenetv2_100,pad_type=same,bn_eps=0.001,num_classes=19"]),
    # a comma that does not continue a query with key= starts the next id
    ("file:/a.safetensors?arch=x,k=1,resnet50,hf-hub:org/repo",
     ["file:/a.safetensors?arch=x,k=1", "resnet50", "hf-hub:org/repo"]),
    ("file:/a.safetensors?arch=x&k=1,file:/b.safetensors?arch=y,num_classes=3",
     ["file:/a.safetensors?arch=x&k=1", "file:/b.safetensors?arch=y,num_classes=3"]),
    ("tf_efficientnet_lite0,resnet50.a1_in1k,hf-hub:timm/convnext_tiny.fb_in1k",
     ["tf_efficientnet_lite0", "resnet50.a1_in1k", "hf-hub:timm/convnext_tiny.fb_in1k"]),
    # before any ?, commas always separate (a path with = in it is still a new id)
    ("resnet18,file:/x=y/w.safetensors?arch=resnet18", ["resnet18", "file:/x=y/w.safetensors?arch=resnet18"]),
    # a comma inside a file:/local-dir: path: what follows (a / or ?, no prefix) cannot start an id
    ("file:/data/w,v2.safetensors?arch=x,num_classes=3,resnet50", ["file:/data/w,v2.safetensors?arch=x,num_classes=3", "resnet50"]),
    ("local-dir:/a,b/model,hf-hub:o/r", ["local-dir:/a,b/model", "hf-hub:o/r"]),
    ("file:/a.safetensors,file:/b.safetensors?arch=y", ["file:/a.safetensors", "file:/b.safetensors?arch=y"]),
    (" a , ,b,", ["a", "b"]),
])
def test_models_list_splits_only_where_a_new_id_starts(value, ids):
    from advisor.cli.common import split_models
    from advisor.models.ids import split_model_ids

    assert split_model_ids(value) == ids
    assert split_models([value, "extra"]) == ids + ["extra"]


def test_the_comma_form_reaches_the_model(readme_env, run_cli, tmp_path):
    """The issue's example: `--models 'file:/w.safetensors?arch=mobilenetv2_100,pad_type=same'` was
    split at the comma into 'file:...?arch=mobilenetv2_100' and 'pad_type=same'."""
    import timm
    from safetensors.torch import save_file

    w = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet", num_classes=7).state_dict().items()}, str(w))
    both = f"file:{w}?arch=test_resnet,num_classes=7,file:{w}?arch=test_resnet&num_classes=7"
    code, out, err = run_cli("rank", str(readme_env["probe"]), "--models", both, "-e", "knn", "--img-size", "32", "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["model"] for r in rows] == [f"file:{w}?arch=test_resnet,num_classes=7", f"file:{w}?arch=test_resnet&num_classes=7"]
    assert rows[0]["score"] == rows[1]["score"]  # the same model, written two ways
