"""Typer's ``--install-completion`` / ``--show-completion``, made safe without a terminal."""

from __future__ import annotations

import os

import typer

from advisor.errors import AdvisorError

_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def detect_shell() -> str:
    """The shell to complete for: the running one (shellingham), else $SHELL; a one-line error when
    neither names a supported shell (no terminal, a script started from cron, an unknown shell)."""
    name = None
    try:
        import shellingham

        name, _ = shellingham.detect_shell()
    except Exception:  # noqa: BLE001 - ShellDetectionFailure, or no /proc: fall back to $SHELL
        name = None
    if name not in _SHELLS:
        name = os.path.basename(os.environ.get("SHELL", "")).lower() or name
    if name not in _SHELLS:
        raise AdvisorError(f"cannot tell which shell to complete for (found: {name or 'none'})",
                           f"run it from your shell, or set SHELL to one of {', '.join(_SHELLS[:4])} (e.g. SHELL=/bin/bash)")
    return name


def completion_options(command) -> None:
    """Typer's ``--install-completion`` / ``--show-completion``, made safe without a terminal: the shell
    is detected once here (falling back to $SHELL) and a failure is a one-line error, exit 2."""
    from typer import _completion_shared as shared

    def show(ctx, param, value):
        if not value or ctx.resilient_parsing:
            return value
        print(shared.get_completion_script(prog_name="advisor", complete_var="_ADVISOR_COMPLETE", shell=detect_shell()))
        raise typer.Exit(0)

    def install(ctx, param, value):
        if not value or ctx.resilient_parsing:
            return value
        name, path = shared.install(shell=detect_shell(), prog_name="advisor", complete_var="_ADVISOR_COMPLETE")
        print(f"{name} completion installed in {path}; it takes effect in a new shell")
        raise typer.Exit(0)

    for param in command.params:
        if param.name == "show_completion":
            param.callback = show
        elif param.name == "install_completion":
            param.callback = install
