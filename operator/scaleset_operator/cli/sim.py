"""`scaleset sim`: run the embedded cluster (kubesim) in the foreground."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import typer

from scaleset_operator.cli.main import app


@app.command()
def sim(
    port: int = typer.Option(0, help="Port to listen on; 0 picks a free one."),
    kubeconfig: Path | None = typer.Option(
        None, help="Where to write the kubeconfig (default: a temporary file, removed on exit)."
    ),
    nodes: int = typer.Option(3, min=1, help="Number of simulated nodes."),
    time_scale: float = typer.Option(1.0, min=0.001, help="Simulated seconds per real second."),
    kubelet: bool = typer.Option(True, help="Run the kubelet simulator beside the API server."),
    plain_http: bool = typer.Option(False, help="Serve plain HTTP instead of HTTPS with a generated CA."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the cluster does."),
) -> None:
    """Run an embedded Kubernetes cluster until interrupted (Ctrl-C or SIGTERM)."""
    # Imported here so that other commands do not pay for the server and kubelet imports.
    from kubesim.__main__ import serve

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    asyncio.run(
        serve(
            port=port,
            kubeconfig=kubeconfig,
            nodes=nodes,
            time_scale=time_scale,
            kubelet=kubelet,
            tls=not plain_http,
        )
    )
