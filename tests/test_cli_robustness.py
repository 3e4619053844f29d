"""The CLI's outcomes (issue 13, kinds 1 and 4): a result, or one line on stderr with exit 2; Ctrl-C is
one line and exit 130; a bug is one ``internal error`` line (exit 1), its traceback only with
``--debug`` / ``ADVISOR_DEBUG=1``. Includes the meta-check that runs every registered command with bad
inputs (the list of commands comes from the Typer app, not from this file)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, file_id, write_images

from advisor.cli.app import INTERRUPTED


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert "Traceback" not in err
    return lines[0]


def assert_usage_error(result) -> str:
    code, _, err = result
    assert code == 2, (code, err)
    return one_line(err)


# ---------------------------------------------------------------- the meta-check


def _leaf_commands():
    """(path, click command) for every registered command and sub-command of the Typer app."""
    from typer.main import get_command

    from advisor.cli.app import app

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                yield from walk(sub, [*path, name])
        else:
            yield path, cmd

    return list(walk(get_command(app), []))


LEAVES = _leaf_commands()


def _filled(cmd, value: str) -> list[str]:
    """The command's required arguments, each set to ``value``."""
    return [value for p in cmd.params if p.param_type_name == "argument" and p.required]


def _bad_inputs(tmp_path: Path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("x")
    missing = str(tmp_path / "no" / "such" / "path")
    for path, cmd in LEAVES:
        name = " ".join(path)
        yield f"{name}: unknown option", [*path, *_filled(cmd, missing), "--no-such-option"]
        if any(p.param_type_name == "argument" and p.required for p in cmd.params):
            yield f"{name}: missing argument", list(path)
        for p in cmd.params:
            if p.param_type_name != "option" or not p.opts:
                continue
            kind = p.bare_type()
            if kind in ("int", "float"):
                yield f"{name}: bad number {p.opts[0]}", [*path, *_filled(cmd, missing), p.opts[0], "abc"]
                yield f"{name}: missing value {p.opts[0]}", [*path, *_filled(cmd, missing), p.opts[0]]
            if p.name == "seed" or (p.name or "").endswith("_seed"):
                yield f"{name}: negative {p.opts[0]}", [*path, *_filled(cmd, missing), p.opts[0], "-1"]
            if kind == "Path":
                from advisor.cli.options import OUTPUT_OPTIONS

                # an output path under a file fails before any work; an input path that is missing, too
                bad = str(a_file / "x.png") if p.name in OUTPUT_OPTIONS else missing
                yield f"{name}: bad path {p.opts[0]}", [*path, *_filled(cmd, missing), p.opts[0], bad]
        if _filled(cmd, missing) and path[0] != "cache":
            yield f"{name}: missing path", [*path, *_filled(cmd, missing)]


def test_meta_check_covers_every_command():
    names = {" ".join(p) for p, _ in LEAVES}
    assert {"rank", "layers", "validate", "bench", "plugins", "cache stats", "cache clear", "cache sql", "domain show"} <= names


def test_every_command_answers_bad_input_in_one_line_with_exit_2(run_cli, tmp_path):
    cases = list(_bad_inputs(tmp_path))
    assert len(cases) > 40
    failures = []
    for label, argv in cases:
        code, _, err = run_cli(*argv)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if code != 2 or len(lines) != 1 or "Traceback" in err or "internal error" in err:
            failures.append(f"{label}: advisor {' '.join(argv)} -> exit {code}, stderr:\n{err}")
    assert not failures, "\n\n".join(failures)


def test_every_command_with_json_and_csv_refuses_both(run_cli, tmp_path):
    both = [(path, cmd) for path, cmd in LEAVES
            if {"--json", "--csv"} <= {o for p in cmd.params for o in getattr(p, "opts", [])}]
    assert both, "rank has --json and --csv"
    for path, cmd in both:
        line = assert_usage_error(run_cli(*path, *_filled(cmd, str(tmp_path)), "--json", "--csv"))
        assert "--json" in line and "--csv" in line


# ---------------------------------------------------------------- kind 1: library errors at the edge


def test_seed_minus_one_with_max_images(run_cli, image_folder):
    line = assert_usage_error(run_cli("rank", str(image_folder), "--seed", "-1", "--max-images", "5"))
    assert "--seed" in line
    assert_usage_error(run_cli("rank", str(image_folder), "--seed", str(2**32), "--max-images", "5"))
    assert_usage_error(run_cli("layers", "m", str(image_folder), "--seed", "-1"))
    assert_usage_error(run_cli("validate", str(image_folder), "--seed", "-1"))
    assert_usage_error(run_cli("domain", str(image_folder), "--seed", "-1", "--max-images", "5"))


@pytest.mark.parametrize("size", ["100000", "2049", "4", "0", "-3"])
def test_img_size_is_bounded(run_cli, image_folder, advisor_home, size):
    line = assert_usage_error(run_cli("rank", str(image_folder), "--img-size", size))
    assert "--img-size" in line and ("2048" in line or "at least 8" in line)
    assert not (advisor_home / "advisor.duckdb").exists()  # refused before any work


@pytest.mark.parametrize("option,value", [("--max-images", "0"), ("--batch-size", "0"), ("--batch-size", "-1")])
def test_counts_must_be_positive(run_cli, image_folder, option, value):
    assert_usage_error(run_cli("rank", str(image_folder), option, value))


@pytest.mark.parametrize("option", ["--epochs", "--repeats"])
def test_layers_validate_counts_are_checked_before_the_layers_work(run_cli, image_folder, tiny_weights, advisor_home, option):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    line = assert_usage_error(run_cli("layers", model, str(image_folder), "--validate", option, "0"))
    assert f"{option} must be at least 1, got 0" in line
    assert not (advisor_home / "advisor.duckdb").exists()


def test_cache_sql_empty_query(run_cli, image_folder, tiny_weights):
    for query in ("", "   ", ";", " ; ;", "/* nothing */"):
        line = assert_usage_error(run_cli("cache", "sql", query))
        assert "empty" in line or "no cache" in line


@pytest.mark.parametrize("command", [["layers", "M", "PROBE"], ["validate", "PROBE", "--models", "M"]])
@pytest.mark.parametrize("bad,why", [
    ("{missing}/x.png", "does not exist"),
    ("{file}/x.png", "not a folder"),
    ("{tmp}", "is a folder"),
    ("{tmp}/plot.gif", "'.gif'"),
    ("{tmp}/plot", "suffix-less"),
])
def test_plot_path_is_checked_before_the_work(run_cli, tmp_path, advisor_home, image_folder, tiny_weights, command, bad, why):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    path = bad.format(missing=tmp_path / "no" / "such" / "dir", file=a_file, tmp=tmp_path)
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    argv = [model if a == "M" else str(image_folder) if a == "PROBE" else a for a in command]
    start = time.perf_counter()
    line = assert_usage_error(run_cli(*argv, "--plot", path))
    assert why in line and "--plot" in line
    assert time.perf_counter() - start < 5
    assert not (advisor_home / "advisor.duckdb").exists()  # no work was done


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through permissions")
def test_plot_in_a_read_only_folder(run_cli, tmp_path, image_folder):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        line = assert_usage_error(run_cli("layers", "m", str(image_folder), "--plot", str(ro / "x.png")))
        assert "not writable" in line
    finally:
        ro.chmod(0o700)


def test_bench_output_paths_are_checked_before_the_work(run_cli, tmp_path):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    assert "not a folder" in assert_usage_error(run_cli("bench", "--out", str(a_file / "sub")))
    assert "is a file" in assert_usage_error(run_cli("bench", "--out", str(a_file)))
    assert "is a folder" in assert_usage_error(run_cli("bench", "--ground-truth", str(tmp_path)))
    assert "not a folder" in assert_usage_error(run_cli("bench", "--runs-csv", str(a_file / "r.csv")))


def test_plot_suffixes_are_ones_matplotlib_writes():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backend_bases import FigureCanvasBase

    from advisor.cli.options import PLOT_SUFFIXES

    assert {s.lstrip(".") for s in PLOT_SUFFIXES} <= set(FigureCanvasBase.get_supported_filetypes())


def test_layers_plot_works_and_comes_after_the_results(run_cli, tmp_path, image_folder, tiny_weights):
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    plot = tmp_path / "out" / "layers.svg"
    plot.parent.mkdir()
    code, out, err = run_cli("layers", model, str(image_folder), "-e", "knn", "--img-size", "32", "--plot", str(plot), "--json")
    assert code == 0, err
    assert json.loads(out)["cuts"] and plot.stat().st_size > 0


def test_layers_plot_failing_at_the_end_keeps_the_results(run_cli, tmp_path, image_folder, tiny_weights, monkeypatch):
    import importlib

    layers_module = importlib.import_module("advisor.ranking.layers")  # `advisor.ranking.layers` is also the API function

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.png"))

    monkeypatch.setattr(layers_module, "plot", full_disk)
    model = file_id(tiny_weights["test_resnet"], "test_resnet")
    code, out, err = run_cli("layers", model, str(image_folder), "-e", "knn", "--img-size", "32", "--plot", str(tmp_path / "x.png"))
    assert code == 2 and "recommendation" in out  # the table was printed before the plot failed
    assert "Traceback" not in err and "no space left on device" in err.splitlines()[-1]


def test_rank_json_and_csv_together(run_cli, image_folder, advisor_home):
    line = assert_usage_error(run_cli("rank", str(image_folder), "--json", "--csv"))
    assert "cannot be combined" in line
    assert not (advisor_home / "advisor.duckdb").exists()


def _raise(exc):
    def fail(*a, **k):
        raise exc

    return fail


def test_unexpected_exception_is_one_internal_error_line(run_cli, image_folder, monkeypatch):
    import advisor.ranking.ranking

    monkeypatch.setattr(advisor.ranking.ranking, "rank", _raise(ValueError("boom\nsecond line")))
    code, _, err = run_cli("rank", str(image_folder))
    assert code == 1
    line = one_line(err)
    assert line.startswith("internal error: ValueError: boom second line") and "--debug" in line


@pytest.mark.parametrize("how", ["global", "anywhere", "env"])
def test_debug_shows_the_traceback_and_still_exits_1(run_cli, image_folder, monkeypatch, how):
    import advisor.ranking.ranking

    monkeypatch.setattr(advisor.ranking.ranking, "rank", _raise(ValueError("boom")))
    argv = ["rank", str(image_folder)]
    if how == "global":
        argv = ["--debug", *argv]
    elif how == "anywhere":
        argv = [*argv, "--debug"]
    else:
        monkeypatch.setenv("ADVISOR_DEBUG", "1")
    code, _, err = run_cli(*argv)
    assert code == 1 and "Traceback" in err and "ValueError: boom" in err


def test_debug_does_not_change_user_errors(run_cli, tmp_path):
    code, _, err = run_cli("--debug", "rank", str(tmp_path / "nope"))
    assert code == 2 and one_line(err).startswith("error: probe")


@pytest.mark.parametrize("exc,words", [
    (MemoryError(), "out of memory"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left"),
    (PermissionError(errno.EACCES, "Permission denied", "/x/y"), "Permission denied: /x/y"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x/y.png"), "/x/y.png"),
])
def test_environment_failures_are_one_line_exit_2(run_cli, image_folder, monkeypatch, exc, words):
    import advisor.ranking.ranking

    monkeypatch.setattr(advisor.ranking.ranking, "rank", _raise(exc))
    line = assert_usage_error(run_cli("rank", str(image_folder)))
    assert words in line


@pytest.mark.parametrize("value", ["abc", "0", "-1", "1.5"])
def test_bad_thread_setting_is_one_line(run_cli, image_folder, monkeypatch, value):
    monkeypatch.setenv("ADVISOR_THREADS", value)
    assert "ADVISOR_THREADS" in assert_usage_error(run_cli("rank", str(image_folder)))


def test_usage_errors_are_one_line(run_cli):
    for argv in (["rank"], ["rank", "x", "--nope"], ["nope"], ["cache", "nope"], ["layers", "m"], ["rank", "x", "--seed"]):
        line = assert_usage_error(run_cli(*argv))
        assert line.startswith("error: ") and "--help" in line


def test_no_arguments_shows_help(run_cli):
    for argv in ([], ["cache"], ["domain"]):
        code, out, err = run_cli(*argv)
        assert code in (0, 2) and "Usage" in out + err and "Traceback" not in out + err


# ---------------------------------------------------------------- kind 4: interrupts and exit codes


def test_keyboard_interrupt_in_a_command_exits_130_in_one_line(run_cli, image_folder, monkeypatch):
    """Typer's runner turned KeyboardInterrupt into a *returned* 130 that main() dropped: exit 0."""
    import advisor.ranking.ranking

    monkeypatch.setattr(advisor.ranking.ranking, "rank", _raise(KeyboardInterrupt()))
    code, out, err = run_cli("rank", str(image_folder))
    assert code == 130 and one_line(err) == INTERRUPTED and out == ""


def test_typer_exit_codes_are_kept(run_cli):
    """typer.Exit(n) raised inside a command is exit n (the same runner returned it as a value)."""
    import typer

    from advisor.cli.app import app

    @app.command("exit-three-for-test")
    def _exit_three() -> None:
        raise typer.Exit(3)

    try:
        assert run_cli("exit-three-for-test")[0] == 3
    finally:
        app.registered_commands.pop()


def _rank_process(tmp_path: Path, tiny_weights, **popen):
    """A real `advisor rank` over two tiny models, stopped (SIGSTOP) once the first one's features are
    stored: deterministically mid-run. Returns (process, first model id, second model id, argv, env)."""
    probe = write_images(tmp_path / "probe", {"a": 12, "b": 12}, size=32)
    first = file_id(tiny_weights["test_resnet"], "test_resnet")
    second = file_id(tiny_weights["test_efficientnet"], "test_efficientnet")
    env = {**os.environ, "ADVISOR_HOME": str(tmp_path / "home"), "ADVISOR_THREADS": "1", "ADVISOR_LOAD_PLUGINS": "",
           "PYTHONPATH": str(REPO)}
    argv = ["rank", str(probe), "--models", f"{first},{second}", "-e", "knn", "--img-size", "32"]
    proc = subprocess.Popen([sys.executable, "-m", "advisor", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **popen)
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stderr:
        seen.append(line)
        if "features extracted" in line:
            proc.send_signal(signal.SIGSTOP)
            break
        assert time.monotonic() < deadline, "".join(seen)
    else:
        proc.wait()
        pytest.fail(f"rank ended before the first model was stored: rc {proc.returncode}\n{''.join(seen)}")
    assert first in "".join(seen)
    return proc, first, second, argv, env


def test_ctrl_c_during_rank_exits_130_and_a_rerun_resumes(tmp_path, tiny_weights, run_cli, monkeypatch):
    # SIGINT inherited as "ignored" (a background job of a script) must not make the run deaf either.
    proc, first, second, argv, env = _rank_process(tmp_path, tiny_weights,
                                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert one_line(err) == INTERRUPTED  # the lines before it were the first model's progress
    assert out == ""
    monkeypatch.setenv("ADVISOR_HOME", env["ADVISOR_HOME"])
    code, out, err = run_cli(*argv, "--json")
    assert code == 0, err
    assert f"{first}: features from cache" in err and f"{second}: features extracted" in err
    assert {r["model"] for r in json.loads(out)} == {first, second}
    code, out, _ = run_cli("cache", "sql", "SELECT status FROM runs ORDER BY started_at", "--json")
    statuses = [r["status"] for r in json.loads(out)]
    assert len(statuses) == 2 and statuses[0] == "interrupted" and statuses[1] == "done"


def test_declining_cache_clear_deletes_nothing_and_exits_1(run_cli, advisor_home, monkeypatch):
    import io

    from advisor.store import db

    with db.transaction():
        pass
    db = advisor_home / "advisor.duckdb"
    for answer in ("n\n", "\n", "", "maybe\n"):  # no, empty, end of input, anything but yes
        monkeypatch.setattr(sys, "stdin", io.StringIO(answer))
        code, out, err = run_cli("cache", "clear")
        assert code == 1 and "nothing was deleted" in one_line(err) and "interrupted" not in err
        assert db.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    code, out, err = run_cli("cache", "clear")
    assert code == 0 and "deleted" in out and not db.exists()


def test_ctrl_c_at_cache_clear_prompt_is_an_interrupt_and_deletes_nothing(run_cli, advisor_home, monkeypatch):
    from advisor.store import db

    with db.transaction():
        pass

    class Interrupted:
        def readline(self):
            raise KeyboardInterrupt

    monkeypatch.setattr(sys, "stdin", Interrupted())
    code, _, err = run_cli("cache", "clear")
    assert code == 130 and one_line(err) == INTERRUPTED
    assert (advisor_home / "advisor.duckdb").exists()
