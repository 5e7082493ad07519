"""The `scaleset` command: plan previews, the embedded cluster and the operator itself."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="scaleset",
    help="Rolling upgrades by upgrade domain for fleets of pods.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    app()


# Each subcommand registers itself on `app` from its own module; they import their heavy
# dependencies inside the command, so `scaleset --help` stays quick.
from scaleset_operator.cli import actions, operator, plan, sim, updates, windows  # noqa: E402, F401
