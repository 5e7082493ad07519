"""`scaleset testbed`: a real control plane (built by `make testbed`) with kubesim's kubelet as its nodes."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import typer

from scaleset_operator.cli.main import app


@app.command()
def testbed(
    kubeconfig: Path | None = typer.Option(
        None, help="Where to write the admin kubeconfig (default: in --dir)."
    ),
    state_dir: Path | None = typer.Option(
        None, "--dir", help="Certificates, etcd data, logs and audit log (default: a new temporary folder)."
    ),
    binary: Path | None = typer.Option(
        None, help="The testbed program (default: $TESTBED_BIN, or what `make testbed` built here)."
    ),
    nodes: int = typer.Option(3, min=1, help="Number of simulated nodes."),
    time_scale: float = typer.Option(
        1.0, min=0.001, help="Simulated seconds per real second, for the kubelet."
    ),
    kubelet: bool = typer.Option(True, help="Run the kubelet simulator as the cluster's nodes."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log what the kubelet simulator does."),
) -> None:
    """Run etcd, kube-apiserver, kube-controller-manager and kube-scheduler until interrupted."""
    from scaleset_operator.cli.sim import import_kubesim

    Testbed = import_kubesim("kubesim.testbed", "testbed").Testbed

    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING)
    try:
        bed = Testbed(
            binary=binary,
            kubeconfig_path=kubeconfig,
            state_dir=state_dir,
            nodes=nodes,
            time_scale=time_scale,
            kubelet=kubelet,
        )
    except FileNotFoundError as error:
        raise typer.BadParameter(str(error), param_hint="--binary") from None
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with bed:
        print(
            f"testbed ready at {bed.url} (state in {bed.state_dir}); export KUBECONFIG={bed.kubeconfig_path}",
            flush=True,
        )
        stop.wait()
