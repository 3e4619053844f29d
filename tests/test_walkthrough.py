"""The README walkthrough, run as written: own images -> advisor models -> rank -> layers --snippet
-> the snippet trains for one epoch (issue 14's must-hold). Real models and images from ../shared."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED, needs_shared


def walkthrough_commands() -> list[str]:
    """The shell lines of the README block between ``<!-- walkthrough -->`` markers, comments dropped."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"<!-- walkthrough -->\s*```bash\n(.*?)```\s*<!-- /walkthrough -->", text, re.S)
    assert block, "README lost its walkthrough block"
    lines = [re.sub(r"\s+#.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def test_the_walkthrough_has_the_five_steps():
    cmds = walkthrough_commands()
    assert [c.split()[0] if not c.startswith("advisor") else " ".join(c.split()[:2]) for c in cmds] == [
        "ls", "advisor models", "advisor rank", "advisor layers", "python"]
    assert "--snippet > finetune.py" in cmds[3] and cmds[4].startswith("python finetune.py")


@needs_shared
def test_the_readme_walkthrough_runs_and_the_snippet_trains(tmp_path):
    src = SHARED / "data" / "cifar10_small" / "train"
    if not src.is_dir():
        pytest.skip("../shared/data/cifar10_small is absent")
    work = tmp_path / "work"
    probe = work / "my_images"
    for cls in ("airplane", "cat"):  # 20 real images stand in for the user's
        (probe / cls).mkdir(parents=True)
        for f in sorted((src / cls).iterdir())[:10]:
            shutil.copy(f, probe / cls / f.name)
    (tmp_path / "shared").symlink_to(SHARED.resolve())  # ../shared as the README assumes
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}", "ADVISOR_HOME": str(tmp_path / "home"),
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    outputs = []
    for cmd in walkthrough_commands():
        cmd = re.sub(r"^python ", f"{sys.executable} ", cmd)
        proc = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{cmd}\n{proc.stderr[-3000:]}"
        outputs.append(proc)
    models, ranked, layers, trained = outputs[1:]
    assert "resnet20_cifar10" in models.stdout
    assert "advisor-score" in ranked.stdout and "Recommendation:" in ranked.stdout
    assert "Recommendation:" in layers.stderr  # --snippet: the human part on stderr ...
    code = (work / "finetune.py").read_text()
    compile(code, "finetune.py", "exec")  # ... and the file is the program alone
    assert "timm.create_model(" in code
    assert "epoch 1/1: loss" in trained.stdout
