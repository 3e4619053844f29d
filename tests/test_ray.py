"""``--executor ray``: the same results and cache rows as a serial run, on a local Ray runtime and on
a two-node simulated cluster that loses a worker mid-sweep. Skipped when Ray is not installed
(``pip install 'advisor[ray]'``; ``make install`` installs it, so CI runs these)."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, file_id, write_images

ray = pytest.importorskip("ray")

ESTIMATORS = ["knn", "logme", "cka", "depara-edges"]  # depara-edges: the attributions travel too


@pytest.fixture(scope="module")
def local_ray():
    """One local runtime with 2 CPUs for the module (starting Ray takes seconds)."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _random_models(tmp_path: Path, n: int) -> list[str]:
    """``n`` random-init tiny models (plumbing only): distinct weights, so distinct cache rows."""
    import timm
    import torch
    from safetensors.torch import save_file

    ids = []
    for i in range(n):
        torch.manual_seed(100 + i)
        arch = ("test_resnet", "test_efficientnet")[i % 2]
        path = tmp_path / f"{arch}_{i}.safetensors"
        save_file({k: v.contiguous() for k, v in timm.create_model(arch, num_classes=5).state_dict().items()}, str(path))
        ids.append(file_id(path, arch))
    return ids


def _cache_rows(home: Path) -> dict:
    import duckdb

    with duckdb.connect(str(home / "advisor.duckdb"), read_only=True) as con:
        feats = {r[:5]: np.frombuffer(r[5], dtype=np.float32) for r in con.execute(
            "SELECT model_fp, probe_hash, preproc_hash, cut, kind, data FROM features").fetchall()}
        scores = {r[:7]: r[7] for r in con.execute(
            "SELECT estimator, estimator_version, reference, model_fp, probe_hash, preproc_hash, cut, score FROM scores").fetchall()}
        models = sorted(con.execute("SELECT fingerprint, model_id, cuts FROM models").fetchall())
    return {"features": feats, "scores": scores, "models": models}


def _rank(home: Path, monkeypatch, probe, models, executor=None, **kw):
    from advisor.ranking.ranking import rank

    monkeypatch.setenv("ADVISOR_HOME", str(home))
    return rank(str(probe), models, ESTIMATORS, executor=executor, **kw)


def test_ray_gives_the_serial_scores_ranking_and_cache_rows(local_ray, tmp_path, monkeypatch):
    from advisor.scale.executor import RayExecutor

    probe = write_images(tmp_path / "probe", {"cat": 8, "dog": 8, "eel": 8})
    models = _random_models(tmp_path, 3)
    serial = _rank(tmp_path / "serial", monkeypatch, probe, models)
    with RayExecutor() as ex:
        assert not ex.started  # it joined the module's runtime and leaves it running
        on_ray = _rank(tmp_path / "ray", monkeypatch, probe, models, executor=ex)
    key = lambda r: (r["estimator"], r["model"])  # noqa: E731
    assert [key(r) for r in serial.rows] == [key(r) for r in on_ray.rows]  # same ranking, every estimator
    for a, b in zip(serial.rows, on_ray.rows):
        assert (a["rank"], a["cut"]) == (b["rank"], b["cut"]) and a["score"] == pytest.approx(b["score"], rel=1e-5, abs=1e-7)
        assert a["cut_scores"].keys() == b["cut_scores"].keys()
    rows = [_cache_rows(tmp_path / h) for h in ("serial", "ray")]
    assert rows[0]["models"] == rows[1]["models"]
    for table in ("features", "scores"):
        assert rows[0][table].keys() == rows[1][table].keys() and rows[0][table]
    for k, v in rows[0]["features"].items():
        np.testing.assert_allclose(v, rows[1]["features"][k], rtol=1e-4, atol=1e-5)
    for k, v in rows[0]["scores"].items():
        assert v == pytest.approx(rows[1]["scores"][k], rel=1e-5, abs=1e-7)


def test_a_warm_rerun_sends_no_task_and_a_broken_model_is_its_own_error_row(local_ray, tmp_path, monkeypatch):
    from advisor.scale.executor import RayExecutor

    probe = write_images(tmp_path / "probe", {"cat": 8, "dog": 8, "eel": 8})
    models = _random_models(tmp_path, 2)
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    with RayExecutor() as ex:
        first = _rank(tmp_path / "home", monkeypatch, probe, models + [file_id(broken, "test_resnet")], executor=ex)
        assert set(first.failed) == {file_id(broken, "test_resnet")} and len(first.top(5)) == 2
        sent = []
        run = ex.run
        monkeypatch.setattr(ex, "run", lambda fn, units, **kw: run(fn, [sent.append(u) or u for u in units], **kw))
        again = _rank(tmp_path / "home", monkeypatch, probe, models, executor=ex)
    assert sent == [] and all(m.from_cache for m in again.models)
    assert [r["score"] for r in again.rows] == [r["score"] for r in first.rows if r["model"] in models]


def test_cli_executor_options(run_cli, tmp_path, tiny_weights):
    probe = write_images(tmp_path / "probe", {"cat": 6, "dog": 6})
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, _, err = run_cli("rank", str(probe), "-m", model, "-e", "knn", "--executor", "dask")
    assert_one_line_error((code, _, err), "unknown executor 'dask'", "--executor serial or --executor ray")
    code, _, err = run_cli("rank", str(probe), "-m", model, "-e", "knn", "--ray-address", "10.0.0.5:6379")
    assert_one_line_error((code, _, err), "--ray-address needs --executor ray")


def _kill_one_task_process(name: str, stop: threading.Event, killed: list) -> None:
    """Kill -9 the first Ray worker seen running a task called ``name`` (its process title is ray::<name>)."""
    while not stop.is_set() and not killed:
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(f"ray::{name}".encode()):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.002)


def test_two_nodes_and_a_worker_killed_mid_sweep_lose_and_duplicate_nothing(tmp_path, monkeypatch):
    from ray.cluster_utils import Cluster

    from advisor.scale.executor import RayExecutor

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    probe = write_images(tmp_path / "probe", {"cat": 16, "dog": 16, "eel": 16}, size=48)
    models = _random_models(tmp_path, 6)
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_one_task_process, args=("model_task", stop, killed), daemon=True)
    try:
        ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        killer.start()
        with RayExecutor() as ex:
            result = _rank(tmp_path / "home", monkeypatch, probe, models, executor=ex)
    finally:
        stop.set()
        killer.join()
        ray.shutdown()
        cluster.shutdown()
    assert killed, "no Ray worker was caught running a task: the test proved nothing"
    assert result.failed == {} and {r["model"] for r in result.rows} == set(models)
    rows = _cache_rows(tmp_path / "home")
    per_model = {}
    for fp, *_ in rows["features"]:
        per_model[fp] = per_model.get(fp, 0) + 1
    cuts = {fp: len(c if isinstance(c, list) else json.loads(c)) for fp, _, c in rows["models"]}
    assert len(per_model) == len(models) and all(per_model[fp] == cuts[fp] + 1 for fp in per_model)  # every cut + logits, once


def test_validate_on_ray_measures_what_a_serial_validate_measures(local_ray, tmp_path, monkeypatch, tiny_weights):
    from advisor.scale.executor import RayExecutor
    from advisor.validation.validate import validate

    probe = write_images(tmp_path / "probe", {"cat": 10, "dog": 10})
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    kw = dict(cuts=["layer1", "pre_logits"], repeats=2, epochs=2, estimators=["knn"], device="cpu")
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "serial"))
    serial = validate(str(probe), [model], **kw)
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "ray"))
    with RayExecutor() as ex:
        on_ray = validate(str(probe), [model], executor=ex, **kw)
        again = validate(str(probe), [model], executor=ex, **kw)  # every run cached: no task
    runs = lambda res: {(r.cut, r.seed): r for r in res.rows}  # noqa: E731
    assert runs(serial).keys() == runs(on_ray).keys() and len(runs(serial)) == 4
    for k, r in runs(serial).items():
        assert (r.status, r.val_acc) == (runs(on_ray)[k].status, runs(on_ray)[k].val_acc)
        assert r.history[-1]["loss"] == pytest.approx(runs(on_ray)[k].history[-1]["loss"], rel=1e-4)
    assert all(r.cached for r in again.rows)


def test_bench_on_ray_records_the_serial_runs(local_ray, tmp_path, monkeypatch, tiny_weights):
    from advisor.bench.config import load_config
    from advisor.bench.run import bench
    from advisor.bench.units import read_runs
    from advisor.scale.executor import RayExecutor

    target = write_images(tmp_path / "target", {"a": 8, "b": 8}, size=16)
    cfg = load_config(models=[file_id(tiny_weights["test_resnet"], "test_resnet")], targets=[str(target)], epochs=1, seeds=[0],
                      lrs=[0.01], img_size=32, defrost_cuts=1, estimators=["knn"], batchnorm="train")
    recs = {}
    for name in ("serial", "ray"):
        monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / name))
        with RayExecutor() if name == "ray" else __import__("contextlib").nullcontext() as ex:
            bench(cfg, device="cpu", runs_csv=tmp_path / f"{name}.csv", executor=ex)
        recs[name] = {r["run_key"]: r for r in read_runs(tmp_path / f"{name}.csv")}
    assert recs["serial"].keys() == recs["ray"].keys() and len(recs["serial"]) == 3  # probe, fine-tune, defrost
    for k, r in recs["serial"].items():
        assert r["test_acc"] == recs["ray"][k]["test_acc"] and r["final_train_loss"] == pytest.approx(recs["ray"][k]["final_train_loss"], rel=1e-4)


@pytest.mark.parametrize("address, message", [
    ("nonsense", "Ray address 'nonsense' (from --ray-address) is not HOST:PORT"),
    ("127.0.0.1:1", "no Ray cluster answers at 127.0.0.1:1 (from --ray-address: connection refused)"),
    ("", "--ray-address is empty"),
])
def test_an_address_without_a_cluster_is_one_line_within_seconds(run_cli, tmp_path, tiny_weights, address, message):
    probe = write_images(tmp_path / "probe", {"cat": 6, "dog": 6})
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    t0 = time.perf_counter()
    result = run_cli("rank", str(probe), "-m", model, "-e", "knn", "--executor", "ray", "--ray-address", address)
    assert_one_line_error(result, message)
    assert time.perf_counter() - t0 < 30 and not ray.is_initialized()


def test_a_server_that_is_not_ray_and_ray_address_from_the_environment(run_cli, tmp_path, tiny_weights, monkeypatch):
    """An HTTP/1 server on the port is refused in one line (Ray itself retried for minutes), and an
    address from $RAY_ADDRESS says it came from there."""
    import http.server

    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # the server's request log would share stderr with the CLI's
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    probe = write_images(tmp_path / "probe", {"cat": 6, "dog": 6})
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        result = run_cli("rank", str(probe), "-m", model, "-e", "knn", "--executor", "ray", "--ray-address", address)
        assert_one_line_error(result, f"what answers at {address} (from --ray-address) is not a Ray cluster")
    finally:
        server.shutdown()
    monkeypatch.setenv("RAY_ADDRESS", "bogus")
    assert_one_line_error(run_cli("rank", str(probe), "-m", model, "-e", "knn", "--executor", "ray"),
                          "Ray address 'bogus' (from $RAY_ADDRESS) is not HOST:PORT")
    monkeypatch.delenv("RAY_ADDRESS")
    assert_one_line_error(run_cli("rank", str(probe), "-m", model, "-e", "knn", "--executor", ""), "--executor is empty")


def test_nothing_to_send_never_starts_ray(tmp_path, monkeypatch, tiny_weights):
    from advisor.ranking.ranking import rank
    from advisor.scale.executor import RayExecutor

    if ray.is_initialized():
        ray.shutdown()
    probe = write_images(tmp_path / "probe", {"cat": 6, "dog": 6})
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path / "home"))
    rank(str(probe), [model], ["knn"])  # serial: the cache is warm
    with RayExecutor() as ex:
        again = rank(str(probe), [model], ["knn"], executor=ex)
        assert not ex.joined and not ray.is_initialized()
    assert all(m.from_cache for m in again.models)


def test_a_local_runtime_started_by_the_command_prints_only_advisor_lines(tmp_path, tiny_weights):
    """`--executor ray` without an address starts a private runtime: Ray's token-authentication notice
    is not shown (a subprocess: the module's runtime above would be joined, not started)."""
    import subprocess
    import sys
    import tempfile

    probe = write_images(tmp_path / "probe", {"cat": 6, "dog": 6})
    ray_tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / "home"), "RAY_TMPDIR": ray_tmp, "HF_HUB_OFFLINE": "1"}
    env.pop("RAY_ADDRESS", None)
    cmd = [sys.executable, "-m", "advisor", "rank", str(probe), "-m", file_id(tiny_weights["test_resnet"], "test_resnet"),
           "-e", "knn", "--img-size", "32", "--executor", "ray"]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    finally:
        import shutil

        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    assert "models on Ray" in proc.stderr or "features extracted" in proc.stderr
    assert "Token authentication" not in proc.stderr and "ray" not in proc.stderr.lower().replace("models on ray", "")
