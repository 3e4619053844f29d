"""CLI conventions users of timm / huggingface_hub / llm expect (issue 14, points 3 and 4):
--version, -h, shell completion, --quiet / --verbose, rank --top, progress on every long step,
--refresh and `cache clear --model/--estimator/--probe`, help without type noise or internal jargon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from conftest import REPO, assert_one_line_error, file_id

from advisor.cli.app import app
from advisor.cli.options import TYPE_NOISE


def _command_paths(cmd, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every REGISTERED command and group of the click tree, recursively, as its argv prefix."""
    paths = [path]
    for name, sub in sorted((getattr(cmd, "commands", None) or {}).items()):
        if not getattr(sub, "hidden", False):
            paths += _command_paths(sub, path + (name,))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))
# internal file numbers, equation / table numbers instead of plain words
JARGON = re.compile(r"seeds? ?0\d\d|seeds \d+/\d+|\b[Tt]able \d|\b[Ee]q\. ?\d")  # the value table2 (--fit) is a word to type
NOISE = re.compile("|".join([r"\b(?:TEXT|INTEGER|FLOAT|BOOLEAN|FILENAME|PATH)\b", *(re.escape(t) for t in TYPE_NOISE if t.startswith("<"))]))


def _flat(text: str) -> str:
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


@pytest.fixture
def two_models(tiny_weights):
    return [file_id(tiny_weights["test_resnet"], "test_resnet"), file_id(tiny_weights["test_efficientnet"], "test_efficientnet")]


def _rank(run_cli, probe, models, *extra):
    return run_cli("rank", str(probe), "--models", ",".join(models), "-e", "knn", "--img-size", "32", *extra)


# ---------------------------------------------------------------- 8. help: -h everywhere, plain words, no type noise


def test_the_tree_holds_every_group_and_sub_command():
    assert () in COMMANDS and ("rank",) in COMMANDS and ("cache", "clear") in COMMANDS
    assert {p[0] for p in COMMANDS if len(p) == 2} >= {"cache", "domain"}


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "advisor")
def test_help_and_h_on_every_command(run_cli, monkeypatch, path):
    monkeypatch.setenv("COLUMNS", "200")
    code, long_help, err = run_cli(*path, "--help")
    assert code == 0, err
    code, short_help, err = run_cli(*path, "-h")
    assert code == 0, err
    assert short_help == long_help and "Usage: advisor" in long_help
    text = _flat(long_help)
    assert "seed 00" not in text.lower() and "Table 2" not in text
    assert not JARGON.search(text), JARGON.search(text)
    assert not NOISE.search(text), NOISE.search(text)
    usage = next(line for line in long_help.splitlines() if "Usage:" in line)
    assert not re.search(r"[{\[][a-z_]+[}\]]", usage), usage  # arguments by their upper-case name (PROBE)
    assert "-h" in text and "--help" in text


def test_options_say_what_to_write(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    text = _flat(run_cli("rank", "--help")[1])
    for option, metavar in (("--max-images", "N"), ("--weights-dir", "DIR"), ("--models", "ID"), ("--top", "K"),
                            ("--refresh", "ID|NAME"), ("--img-size", "PX")):
        assert re.search(rf"{option}\s+(-\w\s+)?{re.escape(metavar)}\s", text), (option, metavar)
    assert re.search(r"--json\s+Print", text)  # a flag: no metavar at all


def test_t_fb_is_explained_where_it_is_first_used(run_cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for path in (("validate",), ("domain",), ("rank",)):
        text = _flat(run_cli(*path, "--help")[1])
        first = text.index("T_FB")
        assert "distance of the fine-tuned weights from a random init" in text[first:first + 120], path


# ---------------------------------------------------------------- 1. --version


def test_version_names_advisor_timm_and_torch(run_cli):
    from importlib import metadata

    import advisor

    code, out, err = run_cli("--version")
    assert code == 0 and err == ""
    assert out.strip() == f"advisor {advisor.__version__} (timm {metadata.version('timm')}, torch {metadata.version('torch')})"
    assert len(out.strip().splitlines()) == 1


# ---------------------------------------------------------------- 2. shell completion


@pytest.fixture
def no_shell_detection(monkeypatch):
    import shellingham

    def fail():
        raise shellingham.ShellDetectionFailure()

    monkeypatch.setattr(shellingham, "detect_shell", fail)


def test_show_completion_falls_back_to_SHELL(run_cli, monkeypatch, no_shell_detection):
    monkeypatch.setenv("SHELL", "/usr/bin/zsh")
    code, out, err = run_cli("--show-completion")
    assert code == 0, err
    assert "compdef" in out and "_ADVISOR_COMPLETE" in out


def test_completion_without_any_shell_is_one_line(run_cli, monkeypatch, no_shell_detection):
    monkeypatch.delenv("SHELL", raising=False)
    assert_one_line_error(run_cli("--show-completion"), "cannot tell which shell", "SHELL")
    assert_one_line_error(run_cli("--install-completion"), "cannot tell which shell")


def test_install_completion_writes_the_script(run_cli, monkeypatch, tmp_path, no_shell_detection):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SHELL", "/bin/bash")
    code, out, err = run_cli("--install-completion")
    assert code == 0, err
    assert "bash completion installed" in out
    assert "_ADVISOR_COMPLETE" in (tmp_path / ".bash_completions" / "advisor.sh").read_text()
    assert "advisor.sh" in (tmp_path / ".bashrc").read_text()


@pytest.mark.parametrize("words, expected", [
    ("advisor ra", "rank"),
    ("advisor cache cl", "clear"),
    ("advisor rank --ref", "--refresh"),
    ("advisor --ver", "--version"),
])
def test_the_shell_gets_completions(run_cli, monkeypatch, words, expected):
    monkeypatch.setenv("_ADVISOR_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
    code, out, err = run_cli()
    assert code == 0, err
    assert expected in out.split()


def test_show_completion_without_a_terminal(tmp_path):
    """A real process with no controlling terminal and no tty on any stream."""
    env = {**os.environ, "SHELL": "/bin/bash", "ADVISOR_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "advisor", "--show-completion"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, start_new_session=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "_ADVISOR_COMPLETE" in proc.stdout and proc.stderr == ""


# ---------------------------------------------------------------- 3. --quiet / --verbose


def test_quiet_verbose_and_default(run_cli, image_folder, two_models, tiny_weights):
    code, out, err = _rank(run_cli, image_folder, two_models[:1])
    assert code == 0 and "features extracted" in err and "weights from" not in err
    code, out_q, err = _rank(run_cli, image_folder, two_models[:1], "--quiet")
    assert code == 0 and err == "" and "test_resnet" in out_q  # results unchanged, nothing on stderr
    code, out, err = run_cli("-v", "rank", str(image_folder), "--models", two_models[0], "-e", "knn", "--img-size", "32")
    assert code == 0
    assert f"weights from file: {tiny_weights['test_resnet']}" in err and "features from cache" in err


def test_quiet_keeps_warnings_and_errors(run_cli, image_folder, two_models, tmp_path):
    missing = file_id(tmp_path / "missing.safetensors", "test_resnet")
    code, out, err = _rank(run_cli, image_folder, [two_models[0], missing], "-q")
    assert code == 0 and "not ranked" in err and "features" not in err
    assert_one_line_error(_rank(run_cli, image_folder, two_models, "-q", "--top", "0"), "--top")


def test_quiet_and_verbose_together_is_one_line(run_cli, image_folder):
    assert_one_line_error(run_cli("--quiet", "rank", str(image_folder), "--verbose"), "--quiet", "--verbose")


def test_verbose_validate_says_where_the_weights_came_from(run_cli, image_folder, tiny_weights):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("validate", str(image_folder), "--models", model, "--cuts", "pre_logits", "--epochs", "1",
                             "-e", "knn", "--verbose", "--json")
    assert code == 0, err
    assert f"weights from file: {tiny_weights['test_resnet']}" in err
    assert json.loads(out)["runs"]


# ---------------------------------------------------------------- 4. rank --top


def test_top_keeps_the_best_k(run_cli, image_folder, two_models):
    code, out, err = _rank(run_cli, image_folder, two_models, "-e", "logme", "--json")
    assert code == 0, err
    rows = json.loads(out)
    best = next(r["model"] for r in rows if r["rank"] == 1 and r["estimator"] == "knn")
    code, out, _ = _rank(run_cli, image_folder, two_models, "-e", "logme", "--json", "--top", "1")
    top = json.loads(out)
    assert {r["model"] for r in top} == {best} and {r["estimator"] for r in top} == {"knn", "logme"}
    code, out, _ = _rank(run_cli, image_folder, two_models, "--csv", "--top", "1")
    assert len(out.strip().splitlines()) == 2 and best in out
    code, out, _ = _rank(run_cli, image_folder, two_models, "--top", "1")
    other = next(m for m in two_models if m != best)
    table = _flat(out).split("Recommendation:")[0]  # the recommendation still weighs the runner-up (its margin)
    assert best in table and other not in table
    code, out, _ = _rank(run_cli, image_folder, two_models, "--json", "--top", "5")  # more than there are: all
    assert {r["model"] for r in json.loads(out)} == set(two_models)


@pytest.mark.parametrize("k", ["0", "-3"])
def test_top_below_one_is_one_line(run_cli, image_folder, two_models, advisor_home, k):
    assert_one_line_error(_rank(run_cli, image_folder, two_models, "--top", k), "--top must be at least 1", home=advisor_home)


# ---------------------------------------------------------------- 5. progress on every long step


class Recorder:
    """An advisor.ranking.progress.Progress that records what the library reports."""

    def __init__(self):
        self.events = []

    def callbacks(self):
        from advisor.ranking.progress import Progress

        return Progress(start_model=lambda label, total: self.events.append(("start", label, total)),
                        advance=lambda n: self.events.append(("advance", n)),
                        end_model=lambda label, cached: self.events.append(("end", label, cached)),
                        warn=lambda msg: self.events.append(("warn", msg)),
                        plan=lambda ids: self.events.append(("plan", list(ids))),
                        resolved=lambda model_id, r: self.events.append(("resolved", model_id, r.weights_from)))

    def starts(self):
        return [e[1:] for e in self.events if e[0] == "start"]

    def advanced(self):
        return sum(e[1] for e in self.events if e[0] == "advance")


def test_every_command_uses_the_one_progress_implementation():
    cli = REPO / "advisor" / "cli"
    users = {p.name for p in cli.glob("*.py") if "rich.progress" in p.read_text()}
    assert users == {"output.py"}
    for name in ("rank.py", "layers.py", "validate.py", "domain.py", "bench.py"):
        assert "ProgressBars" in (cli / name).read_text(), name


def test_progress_bars_count_models_and_show_an_eta():
    from advisor.cli.output import ProgressBars

    with ProgressBars() as bars:
        cb = bars.callbacks()
        cb.plan(["a", "b"])
        cb.start_model("a", 10)
        assert bars.bar.tasks[-1].description == "model 1 of 2 · extracting a"
        cb.advance(4)
        assert bars.bar.tasks[-1].completed == 4
        cb.start_model("a (attributions)", 10)
        assert bars.bar.tasks[-1].description == "model 1 of 2 · DEPARA attributions of a"
        cb.start_model("b (fine-tunes)", 3)
        assert bars.bar.tasks[-1].description == "model 2 of 2 · fine-tuning b"
        columns = [type(c).__name__ for c in bars.bar.columns]
        assert "TimeRemainingColumn" in columns and "MofNCompleteColumn" in columns and "BarColumn" in columns
        assert bars.bar.disable  # stderr is not a terminal here: no bar is drawn


def test_rank_reports_extraction_and_depara_attributions(image_folder, two_models):
    import advisor

    rec = Recorder()
    advisor.rank(str(image_folder), two_models, ["knn", "depara"], img_size=32, progress=rec.callbacks())
    assert ("plan", two_models) in rec.events
    assert [e[1] for e in rec.events if e[0] == "resolved"] == two_models
    assert rec.starts() == [(two_models[0], 24), (f"{two_models[0]} (attributions)", 24),
                            (two_models[1], 24), (f"{two_models[1]} (attributions)", 24)]
    assert rec.advanced() == 4 * 24


def test_validate_reports_one_step_per_fine_tune(image_folder, tiny_weights):
    from advisor.validation.validate import validate

    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    rec = Recorder()
    validate(str(image_folder), [model], cuts=["pre_logits"], epochs=1, repeats=2, estimators=["knn"], progress=rec.callbacks())
    assert (f"{model} (fine-tunes)", 2) in rec.starts()
    assert ("end", f"{model} (fine-tunes)", False) in rec.events
    assert ("resolved", model, "file") in rec.events


def test_domain_features_report_each_image(image_folder):
    from advisor.domain.analysis import probe_features

    rec = Recorder()
    X, n_total, _ = probe_features(str(image_folder), max_images=None, progress=rec.callbacks())
    assert rec.starts() == [(f"{image_folder} (domain features)", 24)] and rec.advanced() == 24 == len(X)


def test_bench_log_lines_drive_the_bar(monkeypatch):
    from advisor.cli import bench as cli_bench
    from advisor.cli.output import ProgressBars

    with ProgressBars() as bars:
        log = cli_bench._bench_log(bars)
        log("3 runs to do (1 of 4 cached), 1 worker(s)")
        task = bars.bar.tasks[-1]
        assert task.total == 3 and task.description == "bench runs"
        log("m on t: fine-tune lr 0.01 seed 0: val 0.500, test 0.400 (1.0 s)")
        log("m on t: defrost @ layer2 seed 0: failed (diverged)")
        log("t: scores of 3 estimators x 1 models (0.1 s)")  # not a run
        log("m on t: linear probe: val 0.500, test 0.400 (0.1 s)")
        assert task.completed == 3


# ---------------------------------------------------------------- 6. --refresh and partial cache clear


@pytest.fixture
def counted_scores(monkeypatch):
    import advisor.ranking.scores as ranking

    calls = []
    real = ranking.safe_score

    def counting(est, *args, **kwargs):
        calls.append(est.name)
        return real(est, *args, **kwargs)

    monkeypatch.setattr(ranking, "safe_score", counting)
    return calls


def test_refresh_recomputes_a_model_or_an_estimator(run_cli, image_folder, two_models, counted_scores):
    first, second = two_models
    assert _rank(run_cli, image_folder, two_models, "-e", "logme")[0] == 0
    counted_scores.clear()
    code, out, err = _rank(run_cli, image_folder, two_models, "-e", "logme", "--json")
    assert code == 0 and counted_scores == []  # everything from the cache
    code, out, err = _rank(run_cli, image_folder, two_models, "-e", "logme", "--json", "--refresh", "knn")
    assert code == 0 and set(counted_scores) == {"knn"} and err.count("features from cache") == 2
    counted_scores.clear()
    code, out, err = _rank(run_cli, image_folder, two_models, "-e", "logme", "--json", "--refresh", first)
    assert code == 0, err
    assert f"{first}: features extracted" in err and f"{second}: features from cache" in err
    assert set(counted_scores) == {"knn", "logme"} and len(counted_scores) == 2 * 6  # both estimators, first model's 6 cuts
    cached = {r["model"]: r["cached"] for r in json.loads(out)}
    assert cached == {first: False, second: True}
    counted_scores.clear()
    code, _, err = _rank(run_cli, image_folder, two_models, "--refresh", "all")
    assert code == 0 and err.count("features extracted") == 2 and len(counted_scores) == 2 * 6


def test_refresh_of_an_unknown_name_is_one_line(run_cli, image_folder, two_models, advisor_home):
    assert_one_line_error(_rank(run_cli, image_folder, two_models, "--refresh", "logmee"),
                          "--refresh logmee", "knn", "all", home=advisor_home)


def test_layers_refresh(run_cli, image_folder, tiny_weights):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    args = ("layers", model, str(image_folder), "-e", "knn", "--img-size", "32")
    assert run_cli(*args)[0] == 0
    code, _, err = run_cli(*args, "--refresh", model)
    assert code == 0 and "features extracted" in err


def _counts(run_cli) -> dict:
    code, out, err = run_cli("cache", "stats", "--json")
    assert code == 0, err
    return json.loads(out)["rows"]


def _scores_by(run_cli) -> dict:
    out = run_cli("cache", "sql", "SELECT m.model_id, s.estimator, count(*) AS n FROM scores s JOIN models m "
                  "ON s.model_fp = m.fingerprint GROUP BY ALL", "--json")[1]
    return {(r["model_id"], r["estimator"]): r["n"] for r in json.loads(out)}


def test_cache_clear_model_estimator_probe(run_cli, image_folder, two_models, tmp_path):
    first, second = two_models
    other = tmp_path / "other"
    import shutil

    shutil.copytree(image_folder, other)
    (other / "cat" / "cat_000.png").unlink()  # different content: another probe
    for probe in (image_folder, other):
        assert _rank(run_cli, probe, two_models, "-e", "logme")[0] == 0
    before = _counts(run_cli)
    assert before["extractions"] == 4 and before["scores"] == 4 * 2 * 6

    code, out, err = run_cli("cache", "clear", "--estimator", "logme", "--probe", str(other), "--yes")
    assert code == 0 and "scores 12" in out, err
    assert _counts(run_cli)["extractions"] == 4 and _counts(run_cli)["scores"] == 36

    code, out, err = run_cli("cache", "clear", "--model", first, "--yes")
    assert code == 0, err
    after = _counts(run_cli)
    assert after["extractions"] == 2 and after["models"] == 1 and after["probes"] == 2
    assert {m for m, _ in _scores_by(run_cli)} == {second}

    code, out, err = run_cli("cache", "clear", "--probe", str(image_folder), "--yes")
    assert code == 0, err
    after = _counts(run_cli)
    assert after["probes"] == 1 and after["extractions"] == 1 and after["scores"] == 6  # second on other: knn only

    code, out, _ = run_cli("cache", "clear", "--model", first, "--yes")
    assert code == 0 and "nothing cached for model" in out
    # the rest is still served from the cache
    code, _, err = _rank(run_cli, other, [second])
    assert code == 0 and "features from cache" in err


def test_cache_clear_rows_asks_first(run_cli, image_folder, two_models, monkeypatch):
    import io

    assert _rank(run_cli, image_folder, two_models)[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    code, out, err = run_cli("cache", "clear", "--model", two_models[0])
    assert code == 1 and "nothing was deleted" in err
    assert _counts(run_cli)["extractions"] == 2


def test_cache_clear_rows_is_one_transaction(run_cli, image_folder, two_models, monkeypatch):
    """A failure after some tables were cleared leaves every row in place."""
    from advisor.store import artifacts

    assert _rank(run_cli, image_folder, two_models)[0] == 0
    before = _counts(run_cli)
    monkeypatch.setattr(artifacts, "CLEAR_TABLES", artifacts.CLEAR_TABLES + (("models", {"model": "no_such_column"}),))
    with pytest.raises(Exception, match="no_such_column"):
        artifacts.clear_rows(models=[two_models[0]])
    assert _counts(run_cli) == before


def test_cache_clear_without_filters_still_deletes_the_file(run_cli, image_folder, two_models, advisor_home):
    assert _rank(run_cli, image_folder, two_models[:1])[0] == 0
    assert run_cli("cache", "clear", "--yes")[0] == 0 and not (advisor_home / "advisor.duckdb").exists()


# ---------------------------------------------------------------- the README documents the new flags


def test_readme_documents_the_conventions():
    text = (REPO / "README.md").read_text()
    for flag in ("--version", "-h", "--quiet", "--verbose", "--install-completion", "--top K", "--refresh",
                 "cache clear --model"):
        assert flag in text, flag
    assert Path(REPO / "tests" / "test_cli_conventions.py").is_file()
