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
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each reconcile decision."),
) -> None:
    """Run the ScaleSet operator until interrupted (SIGINT or SIGTERM stop it cleanly)."""
    from scaleset_operator import runner

    if namespace and all_namespaces:
        typer.echo("error: --namespace and --all-namespaces exclude each other.", err=True)
        raise typer.Exit(2)
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
        )

    asyncio.run(main())
