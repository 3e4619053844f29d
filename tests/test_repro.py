"""The reproducibility record: versions and weights fingerprints in every runs row and every --json
of rank / layers / validate; `advisor runs`; `--report out.md` (atomic, one-line errors)."""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

import pytest
from conftest import assert_one_line_error, file_id

import advisor
from advisor.store import db, schema
from advisor.store.repro import list_runs

VERSIONS = {"advisor": advisor.__version__, "timm": metadata.version("timm"), "torch": metadata.version("torch")}


@pytest.fixture
def model(tiny_weights):
    return file_id(tiny_weights["test_resnet"], "test_resnet")


@pytest.fixture
def sha(tiny_weights):
    return hashlib.sha256(Path(tiny_weights["test_resnet"]).read_bytes()).hexdigest()


def _identity(model_id):
    from advisor.bench.identity import model_identity
    from advisor.models.sources import ResolveContext, resolve_model

    return model_identity(resolve_model(model_id, ResolveContext()))


def test_rank_json_and_runs_row_carry_versions_and_weights(run_cli, image_folder, model, sha):
    code, out, err = run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32", "--json")
    assert code == 0, err
    row = json.loads(out)[0]
    assert row["versions"] == VERSIONS
    assert row["weights_sha256"] == sha and row["model_identity"] == _identity(model)
    run = list_runs(1)[0]
    assert run["command"] == "rank" and run["status"] == "done" and run["versions"] == VERSIONS
    assert run["weights"] == {model: {"weights_sha256": sha, "model_identity": _identity(model)}}
    assert run["result"][0]["model"] == model and run["args"]["models"] == [model]


def test_layers_and_validate_json_carry_the_record(run_cli, image_folder, model, sha):
    code, out, err = run_cli("layers", model, str(image_folder), "-e", "knn", "--img-size", "32", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["versions"] == VERSIONS and data["weights"][model]["weights_sha256"] == sha
    code, out, err = run_cli("validate", str(image_folder), "--models", model, "--cuts", "pre_logits", "--epochs", "1", "-e", "knn", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["versions"] == VERSIONS and data["weights"][model]["weights_sha256"] == sha and data["run_id"]
    runs = {r["command"]: r for r in list_runs(10, None)}
    assert {"layers", "validate", "validate-scores"} <= set(runs)
    v = runs["validate"]
    assert v["status"] == "done" and v["versions"] == VERSIONS and v["weights"][model]["weights_sha256"] == sha
    assert v["result"]["profiles"][model]["pre_logits"][2] == 1 and v["run_id"] == data["run_id"]


def test_advisor_runs_lists_commands_with_results(run_cli, image_folder, model, advisor_home):
    code, out, _ = run_cli("runs")
    assert code == 0 and "no runs recorded yet" in out
    assert json.loads(run_cli("runs", "--json")[1]) == []
    for est in ("knn", "logme"):
        assert run_cli("rank", str(image_folder), "--models", model, "-e", est, "--img-size", "32")[0] == 0
    code, out, err = run_cli("runs", "--json", "--limit", "1")
    assert code == 0, err
    runs = json.loads(out)
    assert len(runs) == 1 and runs[0]["args"]["estimators"] == ["logme"]  # newest first
    assert runs[0]["versions"] == VERSIONS and runs[0]["result"][0]["rank"] == 1
    code, out, _ = run_cli("runs")
    assert code == 0 and out.count("rank") >= 2 and "best: " in out and VERSIONS["torch"] in out
    assert_one_line_error(run_cli("runs", "--limit", "0"), "--limit must be at least 1")


def _positional_cache(n: int) -> None:
    """A cache as advisor wrote it before migrations had names: the first ``n`` migrations applied,
    recorded by position (version 1 = the first) in ``schema_migrations``."""
    import duckdb

    path = db.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
    for version, (_, sql) in enumerate(schema.MIGRATIONS[:n], start=1):
        con.execute(sql)
        con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
    con.execute("INSERT INTO runs (run_id, command, args, status, result) VALUES ('old', 'rank', '{}', 'done', '[]')")
    con.close()


def _recorded() -> list[str]:
    with db.connect(read_only=True) as con:
        return [r[0] for r in con.execute("SELECT name FROM schema_migrations ORDER BY applied_at, name").fetchall()]


def test_migration_5_adds_the_columns_to_an_old_cache(advisor_home):
    """A cache written before the reproducibility columns: `advisor runs` reads it (versions None),
    and the first write migrates it without touching old rows."""
    _positional_cache(4)
    old = list_runs()
    assert [r["run_id"] for r in old] == ["old"] and old[0]["versions"] == {"advisor": None, "timm": None, "torch": None}
    from advisor.store.repro import start_run

    start_run("rank", {"probe": "x"})  # a write: migrates
    assert sorted(_recorded()) == sorted(name for name, _ in schema.MIGRATIONS) and len(schema.MIGRATIONS) >= 5
    runs = {r["run_id"]: r for r in list_runs()}
    assert runs["old"]["versions"]["advisor"] is None and len(runs) == 2
    assert next(r for k, r in runs.items() if k != "old")["versions"] == VERSIONS


def test_a_cache_with_positional_versions_keeps_working_under_named_migrations(advisor_home, monkeypatch):
    """A complete cache of the positional scheme: its record becomes names, no migration runs twice,
    its rows stay, and a migration appended later (a new name) is applied once."""
    _positional_cache(len(schema.POSITIONAL))
    with db.transaction() as con:  # a write: converts the record and applies only the migrations named since
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("old",)]
    assert sorted(_recorded()) == sorted(name for name, _ in schema.MIGRATIONS)
    assert [name for name, _ in schema.MIGRATIONS[:len(schema.POSITIONAL)]] == list(schema.POSITIONAL)
    extra = ("test_extra_table", "CREATE TABLE test_extra (x INTEGER);")
    monkeypatch.setattr(schema, "MIGRATIONS", schema.MIGRATIONS + (extra,))
    for _ in range(2):  # applied by the first write only
        with db.transaction() as con:
            con.execute("INSERT INTO test_extra VALUES (1)")
    assert "test_extra_table" in _recorded() and len(_recorded()) == len(schema.MIGRATIONS)
    with db.connect(read_only=True) as con:
        assert con.execute("SELECT count(*) FROM test_extra").fetchone()[0] == 2
        assert con.execute("SELECT run_id FROM runs").fetchall() == [("old",)]


def _no_temp_files(folder: Path):
    return not [p for p in folder.iterdir() if p.name.startswith(".") and ".tmp" in p.name]


def test_reports_for_rank_layers_and_validate(run_cli, image_folder, model, sha, tmp_path):
    out_dir = tmp_path / "share"  # created when missing
    code, _, err = run_cli("rank", str(image_folder), "--models", model, "-e", "knn", "--img-size", "32", "--report", str(out_dir / "rank.md"))
    assert code == 0, err
    md = (out_dir / "rank.md").read_text()
    assert md.startswith("# advisor rank: ") and "| 1 | " in md and "## Settings" in md and "| img_size | 32 |" in md
    assert f"advisor {VERSIONS['advisor']}, timm {VERSIONS['timm']}, torch {VERSIONS['torch']}" in md and sha in md
    assert "(rank.scores.png)" in md and (out_dir / "rank.scores.png").read_bytes()[:4] == b"\x89PNG"
    assert "## Recommendation" in md and "Recommendation: " in md  # the decision travels with the table
    code, out, err = run_cli("layers", model, str(image_folder), "-e", "knn", "--img-size", "32", "--json", "--report", str(out_dir / "layers.md"))
    assert code == 0 and json.loads(out)["model"] == model, err  # --json and --report together
    md = (out_dir / "layers.md").read_text()
    assert "## Score per cut" in md and "freeze up to" in md and "(layers.profile.png)" in md and sha in md
    assert (out_dir / "layers.profile.png").read_bytes()[:4] == b"\x89PNG"
    code, _, err = run_cli("validate", str(image_folder), "--models", model, "--cuts", "layer4,pre_logits", "--epochs", "1", "-e", "knn",
                           "--report", str(out_dir / "validate.md"))
    assert code == 0, err
    md = (out_dir / "validate.md").read_text()
    assert "## Measured accuracy" in md and "## Warnings" in md and "held-out part" in md and "(validate.profile.png)" in md
    assert "| – |" in md  # one run per cut: no spread
    assert (out_dir / "validate.profile.png").is_file() and _no_temp_files(out_dir)
    assert oct((out_dir / "rank.md").stat().st_mode & 0o777) != oct(0o600)  # shareable, not mkstemp's private mode


def test_bad_report_paths_are_one_line_errors_before_any_work(run_cli, image_folder, model, tmp_path, advisor_home):
    assert_one_line_error(run_cli("rank", str(image_folder), "--models", model, "--report", str(tmp_path)),
                          "--report", "is a folder", home=advisor_home)
    if Path("/proc/self").is_dir():  # a folder that cannot be created (even by root): refused before any work
        assert_one_line_error(run_cli("rank", str(image_folder), "--models", model, "--report", "/proc/nope/out.md"),
                              "--report", "cannot create the folder /proc/nope", home=advisor_home)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_one_line_error(run_cli("layers", model, str(image_folder), "--report", str(blocker / "out.md")),
                          "--report", "is a file, not a folder", home=advisor_home)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        assert_one_line_error(run_cli("validate", str(image_folder), "--models", model, "--report", str(locked / "v.md")),
                              "--report", "not writable", home=advisor_home)
    finally:
        locked.chmod(0o700)


def test_report_write_is_atomic(tmp_path, monkeypatch):
    from advisor.errors import AdvisorError
    from advisor.report import write_report

    target = tmp_path / "r.md"
    write_report(target, "# old\n")
    real_replace = os.replace

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(AdvisorError, match="cannot write .*r.md: No space left on device"):
        write_report(target, "# new\n")
    monkeypatch.setattr(os, "replace", real_replace)
    assert target.read_text() == "# old\n" and _no_temp_files(tmp_path)  # the old report intact, no half file left
    write_report(target, "# new\n")
    assert target.read_text() == "# new\n"


def test_ctrl_c_is_recorded_as_interrupted_not_failed(tmp_path, monkeypatch):
    from advisor.store import repro

    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path))
    a, b = repro.start_run("rank", {}), repro.start_run("rank", {})
    repro.finish_run(a, error=KeyboardInterrupt())
    repro.finish_run(b, error=ValueError("x"))
    status = {r["run_id"]: r["status"] for r in repro.list_runs()}
    assert status[a] == "interrupted" and status[b] == "failed: ValueError"


def test_a_command_killed_while_running_reads_killed_not_running(tmp_path, monkeypatch):
    """kill -9 leaves no chance to record how a command ended: `advisor runs` sees that its process is
    gone and says so; a command still running (this process) stays 'running'; the cache is not changed."""
    import signal
    import subprocess
    import sys

    from advisor.store import repro

    monkeypatch.setenv("ADVISOR_HOME", str(tmp_path))
    mine = repro.start_run("rank", {})
    child = subprocess.Popen([sys.executable, "-c", "import time; from advisor.store import repro; "
                              "print(repro.start_run('validate', {}), flush=True); time.sleep(60)"],
                             stdout=subprocess.PIPE, text=True, env={**os.environ, "ADVISOR_HOME": str(tmp_path)})
    killed = child.stdout.readline().strip()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    status = {r["run_id"]: r["status"] for r in repro.list_runs()}
    assert status[mine] == "running" and status[killed] == f"killed (process {child.pid} gone)"
    with db.connect(read_only=True) as con:
        assert con.execute("SELECT status FROM runs WHERE run_id = ?", [killed]).fetchone()[0] == "running"
