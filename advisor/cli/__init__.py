"""The ``advisor`` command line. Each command lives in its own module here:
``rank.py`` (model selection), ``layers.py`` (freeze depth), ``validate.py`` (short fine-tunes that
measure), ``domain.py`` (Chen et al. 2022's domain forecast), ``bench.py`` (estimators vs ground truth),
``plugins.py`` (what is installed), ``cache.py`` (the DuckDB cache).

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

from advisor.errors import AdvisorError

app = typer.Typer(
    name="advisor",
    help="Which pretrained model, and how many of its layers, should I transfer to my data?",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)

_state = {"debug": False}


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="On an unexpected error show the Python traceback (also ADVISOR_DEBUG=1; accepted anywhere on the line)."),
) -> None:
    if debug:
        _state["debug"] = True


from advisor.cli import bench as _bench  # noqa: E402,F401
from advisor.cli import cache as _cache  # noqa: E402
from advisor.cli import domain as _domain  # noqa: E402
from advisor.cli import layers as _layers  # noqa: E402,F401
from advisor.cli import models as _models  # noqa: E402,F401
from advisor.cli import plugins as _plugins  # noqa: E402,F401
from advisor.cli import rank as _rank  # noqa: E402,F401
from advisor.cli import validate as _validate  # noqa: E402,F401
from advisor.cli.options import check_params  # noqa: E402

app.add_typer(_cache.cache_app, name="cache")
app.add_typer(_domain.domain_app, name="domain")

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

from advisor.cli import runs as _runs  # noqa: E402,F401

def _debug_from_env() -> bool:
    return os.environ.get("ADVISOR_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def _split_debug(argv: list[str]) -> list[str]:
    """``--debug`` is a global option but is accepted anywhere before a ``--`` separator."""
    if "--" in argv:
        cut = argv.index("--")
        head, tail = argv[:cut], argv[cut:]
    else:
        head, tail = argv, []
    if "--debug" in head:
        _state["debug"] = True
        head = [a for a in head if a != "--debug"]
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
    _check_environment()
    command = typer.main.get_command(app)
    check_params(command)
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
    from advisor import cache

    # A shell that starts a background job without job control (`advisor rank ... &` in a script)
    # sets SIGINT to "ignore", and Python keeps it: `kill -INT` then did nothing and the run went on
    # to exit 0. An interrupt is always an interrupt here.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # SIGTERM (`kill`, `timeout`, a scheduler) ends the run like Ctrl-C: the run record is closed,
    # finished units stay cached, one line, exit 143 (128 + SIGTERM)
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    _state["debug"] = _debug_from_env()
    argv = _split_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        with cache.session():  # the cache is in use until the command ends: `cache clear` waits for it
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
        known = cache.cache_error(exc) if duckdb is not None and isinstance(exc, duckdb.Error) else None
        line = f"error: {known}" if known is not None else _environment_error(exc)
        if _state["debug"]:
            traceback.print_exc()
        if line is not None:
            print(line, file=sys.stderr)
            sys.exit(2)
        if not isinstance(exc, Exception):  # GeneratorExit and friends: not ours to swallow
            raise
        if not _state["debug"]:
            detail = " ".join(str(exc).split())
            if len(detail) > 300:
                detail = detail[:300] + "..."
            print(f"internal error: {type(exc).__name__}: {detail or '(no message)'} — "
                  "rerun with --debug for the traceback and report it", file=sys.stderr)
        sys.exit(1)
