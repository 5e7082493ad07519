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


def _register() -> None:
    # Each subcommand lives in its own module; importing here keeps `scaleset --help` quick
    # and lets a module fail to import without taking the others down.
    from scaleset_operator.cli import plan, sim  # noqa: F401

    try:
        from scaleset_operator.cli import operator  # noqa: F401
    except ImportError:  # the operator command arrives with the controller
        pass


def main() -> None:
    app()


_register()
