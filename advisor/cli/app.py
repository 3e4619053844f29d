"""The ``advisor`` Typer app, its global options (``--quiet``, ``--verbose``, ``--debug``, ``--version``)
and :func:`main`, the console-script entry point (``advisor.cli:main``). The commands register on
:data:`app` from their own modules (see :mod:`advisor.cli`).

Every outcome is decided here, at the edge, and nowhere else (``main``):

- a result: exit 0;
- a problem the user can fix (``AdvisorError``, a usage error, a full disk, a missing or unwritable
  path, memory exhausted): one line on stderr saying what and how to fix it, exit 2;
- Ctrl-C (SIGINT): one line, exit 130; finished units of work stay cached and a rerun resumes;
- anything else is a bug: one line ``internal error: ...`` and exit 1, or the traceback with
  ``--debug`` / ``ADVISOR_DEBUG=1`` (still exit 1).
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import traceback

import click
import typer

from advisor.cli.completion import completion_options
from advisor.cli.options import check_params, tidy_help
from advisor.errors import AdvisorError

app = typer.Typer(
    name="advisor",
    help="Which pretrained model, and how many of its layers, should I transfer to my data?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (see advisor.cli.completion)
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},  # every command and group inherits it
)

state = {"debug": False, "quiet": False, "verbose": False}  # the global options of the running command


def _versions() -> str:
    """``advisor --version``: advisor's version and those of timm and torch, without importing them."""
    from importlib import metadata

    from advisor import __version__

    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    return f"advisor {__version__} (timm {version('timm')}, torch {version('torch')})"


def _show_version(value: bool) -> None:
    if value:
        print(_versions())
        raise typer.Exit(0)


@app.callback()
def _global_options(
    version: bool = typer.Option(False, "--version", is_eager=True, callback=_show_version,
                                 help="Print the versions of advisor, timm and torch, and exit."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or informational lines on stderr; results, warnings and errors still show (accepted anywhere on the line)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Also say where each model's weights were found (accepted anywhere on the line)."),
    debug: bool = typer.Option(False, "--debug", help="On an unexpected error show the Python traceback (also ADVISOR_DEBUG=1; accepted anywhere on the line)."),
) -> None:
    if debug:
        state["debug"] = True
    _set_verbosity(quiet or state["quiet"], verbose or state["verbose"])


def _set_verbosity(quiet: bool, verbose: bool) -> None:
    from advisor.cli import output

    if quiet and verbose:
        raise AdvisorError("--quiet and --verbose cannot be combined", "pass one of them")
    state["quiet"], state["verbose"] = quiet, verbose
    output.set_verbosity(output.QUIET if quiet else output.VERBOSE if verbose else output.NORMAL)


# Typer >= 0.29 vendors click (typer._click) and raises its own copies of click's exceptions.
_clicks = [click]
try:
    from typer import _click as _typer_click

    _clicks.append(_typer_click)
except ImportError:  # older Typer raises click's own
    pass


def _exceptions(name: str) -> set:
    return {getattr(c.exceptions, name) for c in _clicks if hasattr(c.exceptions, name)}


_EXIT = tuple(_exceptions("Exit") | {typer.Exit})
_HELP = tuple(_exceptions("NoArgsIsHelpError"))
_USAGE = tuple(_exceptions("ClickException"))
_ABORT = tuple(_exceptions("Abort") | {typer.Abort, KeyboardInterrupt})

INTERRUPTED = "interrupted: finished units of work are cached; rerun to resume"
TERMINATED = "terminated: finished units of work are cached; rerun to resume"


class Terminated(BaseException):
    """Raised in the main thread by SIGTERM, so the run unwinds like an interrupt (see main)."""


def _terminate(signum, frame):
    raise Terminated()


def _debug_from_env() -> bool:
    return os.environ.get("ADVISOR_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


_ANYWHERE = {"--debug": "debug", "--quiet": "quiet", "-q": "quiet", "--verbose": "verbose", "-v": "verbose"}


def _split_debug(argv: list[str]) -> list[str]:
    """``--debug``, ``--quiet`` / ``-q`` and ``--verbose`` / ``-v`` are global options but are accepted
    anywhere before a ``--`` separator (``advisor rank PROBE -q``, like ``advisor -q rank PROBE``)."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    for flag, key in _ANYWHERE.items():
        if flag in head:
            state[key] = True
            head = [a for a in head if a != flag]
    return head + tail


def _check_environment() -> None:
    """Settings read from the environment deep inside the work: a bad value is a one-line error up front."""
    threads = os.environ.get("ADVISOR_THREADS", "").strip()
    if threads and not (threads.isdigit() and int(threads) >= 1):
        raise AdvisorError(f"ADVISOR_THREADS={threads!r} is not a positive whole number", "set it to e.g. 1 or 2, or unset it")


def _invoke(argv: list[str]) -> None:
    # Typer's own runner (Typer.__call__ -> _main) turns KeyboardInterrupt into Exit(130) and, with
    # standalone_mode=False, *returns* that code instead of raising it: the caller saw a normal return
    # and Ctrl-C exited 0 with no message. Run the click command ourselves so every exception,
    # KeyboardInterrupt included, reaches main() as itself.
    _set_verbosity(state["quiet"], state["verbose"])  # --quiet/--verbose given anywhere on the line
    _check_environment()
    command = typer.main.get_command(app)
    check_params(command)
    tidy_help(command)
    completion_options(command)
    # the shell's completion requests (_ADVISOR_COMPLETE=... set by the installed script): answer, exit 0
    command._main_shell_completion({}, "advisor")
    with command.make_context("advisor", argv) as ctx:
        command.invoke(ctx)


def _usage_line(exc) -> str:
    message = " ".join(str(exc.format_message()).split())
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "advisor"
    return f"error: {message} — see `{where} --help`"


def _environment_error(exc: BaseException) -> str | None:
    """One line for a failure of the machine rather than of advisor: disk full, permissions, memory."""
    if isinstance(exc, MemoryError) or type(exc).__name__ in ("OutOfMemoryError", "OutOfMemoryException"):
        return ("error: out of memory — lower --batch-size, --max-images or --img-size "
                "(or ADVISOR_THREADS), or free memory, then rerun: finished units are cached")
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        where = f": {exc.filename}" if exc.filename else ""
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
            return f"error: no space left on device{where} — free some space (or write elsewhere), then rerun"
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"error: {exc.strerror}{where} — check the path's permissions, or write elsewhere"
        if exc.filename and exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.ELOOP):
            return f"error: {exc.strerror}{where} — check the path"
    return None


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, _ABORT):
        return True
    duckdb = sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, getattr(duckdb, "InterruptException", ()))


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app; see the module docstring for the outcomes."""
    from advisor.store import db, locks

    # A shell that starts a background job without job control (`advisor rank ... &` in a script)
    # sets SIGINT to "ignore", and Python keeps it: `kill -INT` then did nothing and the run went on
    # to exit 0. An interrupt is always an interrupt here.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # SIGTERM (`kill`, `timeout`, a scheduler) ends the run like Ctrl-C: the run record is closed,
    # finished units stay cached, one line, exit 143 (128 + SIGTERM)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    state.update(debug=_debug_from_env(), quiet=False, verbose=False)
    argv = _split_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        with locks.session():  # the cache is in use until the command ends: `cache clear` waits for it
            _invoke(argv)
    except SystemExit:
        raise
    except AdvisorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except _EXIT as exc:
        sys.exit(exc.exit_code)
    except _HELP as exc:  # `advisor` / `advisor cache` with nothing after it: the help, exit 2
        exc.show()
        sys.exit(2)
    except _USAGE as exc:
        print(_usage_line(exc), file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `advisor ... | head`: the reader left; say nothing
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        sys.exit(1)
    except BaseException as exc:  # noqa: BLE001 - the edge: everything else is classified here
        if isinstance(exc, Terminated):
            print(TERMINATED, file=sys.stderr)
            sys.exit(143)
        if _is_interrupt(exc):
            print(INTERRUPTED, file=sys.stderr)
            sys.exit(130)
        duckdb = sys.modules.get("duckdb")
        known = db.cache_error(exc) if duckdb is not None and isinstance(exc, duckdb.Error) else None
        line = f"error: {known}" if known is not None else _environment_error(exc)
        if state["debug"]:
            traceback.print_exc()
        if line is not None:
            print(line, file=sys.stderr)
            sys.exit(2)
        if not isinstance(exc, Exception):  # GeneratorExit and friends: not ours to swallow
            raise
        if not state["debug"]:
            detail = " ".join(str(exc).split())
            if len(detail) > 300:
                detail = detail[:300] + "..."
            print(f"internal error: {type(exc).__name__}: {detail or '(no message)'} — "
                  "rerun with --debug for the traceback and report it", file=sys.stderr)
        sys.exit(1)
