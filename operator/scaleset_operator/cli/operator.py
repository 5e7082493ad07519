"""`scaleset operator`: run the controller against the cluster of a kubeconfig (kopf underneath)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import typer

from scaleset_operator.cli.main import app


@app.command("operator")
def operator_command(
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Kubeconfig file; default in-cluster, then $KUBECONFIG."
    ),
    namespace: list[str] = typer.Option(
        [], "--namespace", "-n", help="Watch only this namespace (repeatable)."
    ),
    all_namespaces: bool = typer.Option(
        False, "--all-namespaces", "-A", help="Watch every namespace (the default)."
    ),
    liveness: str | None = typer.Option(
        None, "--liveness", help="Serve a health endpoint, e.g. http://0.0.0.0:8080/healthz."
    ),
    scheduled_events_address: str = typer.Option(
        "0.0.0.0:8090",
        "--scheduled-events-address",
        metavar="HOST:PORT",
        help="Serve the scheduled-events endpoint here ('off' to not serve it).",
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each reconcile decision."),
) -> None:
    """Run the ScaleSet operator until interrupted (SIGINT or SIGTERM stop it cleanly)."""
    from scaleset_operator import runner
    from scaleset_operator.imds.server import parse_address

    if namespace and all_namespaces:
        typer.echo("error: --namespace and --all-namespaces exclude each other.", err=True)
        raise typer.Exit(2)
    events_address = None if scheduled_events_address == "off" else scheduled_events_address
    if events_address is not None:
        try:
            parse_address(events_address)
        except ValueError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(2) from None
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await runner.run(
            kubeconfig=str(kubeconfig) if kubeconfig else None,
            namespaces=namespace,
            stop_flag=stop,
            liveness_endpoint=liveness,
            scheduled_events_address=events_address,
        )

    asyncio.run(main())
