"""Shared fixtures: an isolated cache per test, tiny images and tiny random-init models for
plumbing (never for claims about quality), and the real ../shared assets when present."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

# Only built-in plugins unless a test opts in: stray entry points on the machine must not change results.
os.environ.setdefault("ADVISOR_LOAD_PLUGINS", "")
os.environ.setdefault("ADVISOR_LOCK_TIMEOUT", "5")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
needs_shared = pytest.mark.skipif(not (SHARED / "models").is_dir(), reason="../shared (real models and data) is absent")


@pytest.fixture(autouse=True)
def advisor_home(tmp_path, monkeypatch):
    home = tmp_path / "advisor-home"
    monkeypatch.setenv("ADVISOR_HOME", str(home))
    monkeypatch.delenv("ADVISOR_WEIGHTS_DIR", raising=False)
    return home


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process like the console script; returns (exit_code, stdout, stderr)."""
    from advisor.cli import main

    def run(*args: str):
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def assert_one_line_error(result, *needles, home=None) -> str:
    """``result`` = ``run_cli(...)``'s (code, out, err): exit 2 and one ``error:`` line on stderr, no
    traceback, containing every needle; with ``home``, nothing was written to the cache there.
    Returns that line."""
    code, _, err = result
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], lines[0]
    if home is not None:
        assert not (home / "advisor.duckdb").exists(), "a failed run wrote to the cache"
    return lines[0]


def kill_minus_9_when(cmd: list[str], env: dict, cwd, done, timeout: float = 300) -> None:
    """Start ``cmd``, poll ``done()`` until it holds (or the process ends, or ``timeout`` seconds pass),
    then SIGKILL it: how the resume tests interrupt a run mid-way."""
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
    deadline = time.time() + timeout
    while time.time() < deadline and not done() and proc.poll() is None:
        time.sleep(0.1)
    proc.kill()
    proc.wait()


def write_images(root: Path, classes: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """An ImageFolder tree of small PNGs whose colour depends on the class (so labels are learnable)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for ci, (name, count) in enumerate(classes.items()):
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for j in range(count):
            base = np.zeros((size, size, 3))
            base[..., ci % 3] = 180
            img = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{name}_{j:03d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return write_images(tmp_path / "probe", {"cat": 8, "dog": 8, "eel": 8})


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """Random-init tiny timm models saved as safetensors: id strings for the file: source."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    out = {}
    d = tmp_path_factory.mktemp("weights")
    for arch in ("test_efficientnet", "test_resnet", "test_vit"):
        model = timm.create_model(arch, num_classes=5)
        path = d / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        out[arch] = path
    return out


def file_id(path: Path, arch: str, **kwargs) -> str:
    extra = "".join(f"&{k}={v}" for k, v in kwargs.items())
    return f"file:{path}?arch={arch}&num_classes=5{extra}"


sys.path.insert(0, str(Path(__file__).parent))


def blobs(n: int, d: int, c: int, sep: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features [n, d] whose first c dimensions carry a class signal of size ``sep``;
    balanced labels 0..c-1 (for estimator property tests: separable vs shuffled)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % c
    x = rng.standard_normal((n, d))
    x[:, :c] += sep * np.eye(c)[y]
    return x, y
