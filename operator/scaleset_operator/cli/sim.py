"""`scaleset sim`: run the embedded cluster (kubesim) in the foreground."""

from __future__ import annotations

import asyncio
import importlib
import logging
from pathlib import Path
from types import ModuleType

import typer

from scaleset_operator.cli.main import app

# What kubesim needs beyond the operator: the `sim` extra of the package.
SIM_MODULES = frozenset({"celpy", "cryptography", "jsonpatch"})


def import_kubesim(module: str, command: str) -> ModuleType:
    """`module` of kubesim, or exit 2 with one sentence saying how to install what it needs."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in SIM_MODULES | {"kubesim"}:
            raise
        typer.echo(
            f"error: `scaleset {command}` needs the embedded cluster's dependencies, which the operator's "
            "own install leaves out: pip install 'scaleset-operator[sim]'.",
            err=True,
        )
        raise typer.Exit(2) from None


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
    serve = import_kubesim("kubesim.__main__", "sim").serve

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
