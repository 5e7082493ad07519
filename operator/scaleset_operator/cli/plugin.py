"""`kubectl-scaleset`: the `scaleset` command as a kubectl plugin, so `kubectl scaleset status web` works."""

from __future__ import annotations

import contextlib
import io
import os
import sys

import typer

from scaleset_operator.cli import main as scaleset

PROG_NAME = "kubectl scaleset"
COMPLETE_VAR = "_KUBECTL_SCALESET_COMPLETE"

# Cobra's ShellCompDirectiveNoFileComp: kubectl offers no file names after the candidates.
NO_FILE_COMPLETION = 4

# What a kubectl user steers a fleet with: not the commands that run a cluster or the operator itself.
NOT_PLUGIN_COMMANDS = frozenset({"sim", "testbed", "operator"})


def command_name(info: typer.models.CommandInfo) -> str:
    """The name typer gives a command: its own, or its function's with dashes (typer's rule)."""
    assert info.callback is not None
    return info.name or info.callback.__name__.lower().replace("_", "-")


def plugin_app() -> typer.Typer:
    """`scaleset`'s user commands, options and completion under kubectl's name."""
    plugin = typer.Typer(
        name="kubectl scaleset",
        help="Steer fleets of pods rolled by upgrade domain (the scaleset-operator's ScaleSets).",
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
    )
    plugin.registered_callback = scaleset.app.registered_callback  # --version
    plugin.registered_commands = [
        info for info in scaleset.app.registered_commands if command_name(info) not in NOT_PLUGIN_COMMANDS
    ]
    return plugin


app = plugin_app()


def main() -> None:
    app(prog_name=PROG_NAME, complete_var=COMPLETE_VAR)


def complete() -> None:
    """`kubectl_complete-scaleset`: kubectl (1.26+) asks it for the candidates of `kubectl scaleset ...`.

    kubectl calls it with the words after `scaleset`, the last one being the word under the cursor,
    and reads Cobra's format back: one candidate a line, then `:<directive>`.
    """
    words = [word for word in sys.argv[1:] if word != "__complete"] or [""]
    os.environ[COMPLETE_VAR] = "complete_bash"
    os.environ["COMP_WORDS"] = " ".join(["kubectl-scaleset", *words])
    os.environ["COMP_CWORD"] = str(len(words))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.suppress(SystemExit):
        app(prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
    for candidate in captured.getvalue().splitlines():
        if candidate:
            print(candidate)
    print(f":{NO_FILE_COMPLETION}")
