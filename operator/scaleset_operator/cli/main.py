"""The `scaleset` command (also the kubectl plugin `kubectl scaleset`): previews, fleet steering, the operator."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="scaleset",
    help="Rolling upgrades by upgrade domain for fleets of pods.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def version() -> str:
    """The installed package's version (the wheel's, the image's)."""
    import importlib.metadata

    return importlib.metadata.version("scaleset-operator")


def _print_version(asked: bool) -> None:
    if asked:
        typer.echo(f"scaleset {version()}")
        raise typer.Exit()


@app.callback()
def _options(
    _version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Rolling upgrades by upgrade domain for fleets of pods."""


def main() -> None:
    app()


# Each subcommand registers itself on `app` from its own module; they import their heavy
# dependencies inside the command, so `scaleset --help` stays quick. `kubectl scaleset` (cli/plugin.py)
# serves the same `app`, so a command added here is a plugin command too; commands that talk to a
# cluster take -n, --context and --kubeconfig as kubectl does.
from scaleset_operator.cli import actions, fleet, operator, plan, sim, testbed, updates, windows  # noqa: E402, F401
