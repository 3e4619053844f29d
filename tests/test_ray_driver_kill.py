"""kill -9 of an ``--executor ray`` driver loses at most the models in flight: the cache holds whole
models only, and a rerun (here a serial one) computes just the rest. Its own module: the killed
driver's Ray processes are found by its private RAY_TMPDIR and stopped, away from other tests' runtimes."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, file_id, kill_minus_9_when, write_images

pytest.importorskip("ray")


def _extracted(home: Path) -> int:
    import duckdb

    db = home / "advisor.duckdb"
    for _ in range(50):
        try:
            if not db.exists():
                return 0
            with duckdb.connect(str(db), read_only=True) as con:
                return con.execute("SELECT count(*) FROM extractions").fetchone()[0]
        except duckdb.Error:  # the writer holds the lock for a moment
            time.sleep(0.1)
    return 0


def _processes_under(path: Path) -> list[int]:
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            blob = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if str(path).encode() in blob and int(pid) != os.getpid():
            pids.append(int(pid))
    return pids


def test_kill_minus_9_of_the_ray_driver_loses_only_the_models_in_flight(tmp_path, monkeypatch):
    import timm
    import torch
    from safetensors.torch import save_file

    from advisor.ranking.ranking import rank

    probe = write_images(tmp_path / "probe", {"cat": 12, "dog": 12, "eel": 12}, size=48)
    models = []
    for i in range(5):
        torch.manual_seed(i)
        path = tmp_path / f"m{i}.safetensors"
        save_file({k: v.contiguous() for k, v in timm.create_model("test_resnet", num_classes=5).state_dict().items()}, str(path))
        models.append(file_id(path, "test_resnet"))
    home = tmp_path / "home"
    ray_tmp = Path(tempfile.mkdtemp(prefix="rk", dir="/tmp"))  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "ADVISOR_HOME": str(home), "RAY_TMPDIR": str(ray_tmp), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "advisor", "rank", str(probe), "-m", ",".join(models), "-e", "knn", "--executor", "ray"]
    try:
        kill_minus_9_when(cmd, env, REPO, lambda: _extracted(home) >= 1)
    finally:
        time.sleep(1)
        for pid in _processes_under(ray_tmp):  # the orphaned runtime of the killed driver
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
    done = _extracted(home)
    assert 1 <= done < len(models), "the driver should be killed mid-sweep"
    monkeypatch.setenv("ADVISOR_HOME", str(home))
    result = rank(str(probe), models, ["knn"])
    assert result.failed == {} and sum(m.from_cache for m in result.models) == done
    assert _extracted(home) == len(models)
