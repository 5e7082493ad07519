"""`scaleset operator`: run the controller against the cluster of a kubeconfig (kopf underneath)."""

from __future__ import annotations

import asyncio
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
    scheduled_events_identity: str = typer.Option(
        "address",
        "--scheduled-events-identity",
        help="How a caller is told to be an instance: address (its pod IP, when that IP is its alone) "
        "or token (a projected ServiceAccount token, checked with a TokenReview).",
    ),
    scheduled_events_audience: str = typer.Option(
        "scaleset-operator",
        "--scheduled-events-audience",
        help="The audience the instances' projected tokens are issued for (token identity).",
    ),
    metrics_address: str = typer.Option(
        ":9090", "--metrics-address", help="Serve Prometheus /metrics on HOST:PORT; empty to turn it off."
    ),
    leader_elect: bool = typer.Option(
        False,
        "--leader-elect",
        help="Run as one of several replicas: only the holder of a coordination.k8s.io Lease acts.",
    ),
    lease_namespace: str | None = typer.Option(
        None, "--lease-namespace", help="Namespace of the Lease; default the pod's own namespace."
    ),
    lease_name: str = typer.Option("scaleset-operator", "--lease-name", help="Name of the Lease."),
    lease_duration: float = typer.Option(
        15.0,
        "--lease-duration",
        min=1.0,
        help="Seconds a standby waits for a silent leader before taking over.",
    ),
    log_format: str = typer.Option(
        "text", "--log-format", help="text, or json for one JSON object per line."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log each reconcile decision."),
) -> None:
    """Run the ScaleSet operator until interrupted (SIGINT or SIGTERM stop it cleanly)."""
    from scaleset_operator import logs, runner
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
    if scheduled_events_identity not in ("address", "token"):
        typer.echo(
            f"error: --scheduled-events-identity must be address or token, not {scheduled_events_identity!r}.",
            err=True,
        )
        raise typer.Exit(2)
    if metrics_address and not _is_address(metrics_address):
        typer.echo(f"error: --metrics-address must be HOST:PORT or :PORT, not {metrics_address!r}.", err=True)
        raise typer.Exit(2)
    if log_format not in ("text", "json"):
        typer.echo(f"error: --log-format must be text or json, not {log_format!r}.", err=True)
        raise typer.Exit(2)
    election = None
    if leader_elect:
        namespace_of_lease = lease_namespace or _own_namespace()
        if not namespace_of_lease:
            typer.echo("error: --leader-elect needs --lease-namespace outside a pod.", err=True)
            raise typer.Exit(2)
        # client-go's proportions: renew deadline 2/3 and retry period 2/15 of the lease duration.
        election = runner.LeaderElection(
            namespace=namespace_of_lease,
            name=lease_name,
            lease_duration=lease_duration,
            renew_deadline=lease_duration * 2 / 3,
            retry_period=lease_duration * 2 / 15,
        )
    logs.configure(verbose=verbose, log_format=log_format)

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
            scheduled_events_identity=scheduled_events_identity,
            scheduled_events_audience=scheduled_events_audience,
            metrics_address=metrics_address or None,
            leader_election=election,
        )

    asyncio.run(main())


def _own_namespace() -> str | None:
    """The namespace of the pod this runs in, from its service account; None outside a cluster."""
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else None


def _is_address(address: str) -> bool:
    _, colon, port = address.rpartition(":")
    return bool(colon) and port.isdigit() and int(port) < 65536
