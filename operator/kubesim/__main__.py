"""`python -m kubesim`: run the embedded cluster in the foreground until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from kubesim.cluster import Cluster


async def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    kubeconfig: Path | None = None,
    nodes: int = 3,
    time_scale: float = 1.0,
    kubelet: bool = True,
    tls: bool = True,
) -> None:
    """Start a cluster, announce it on stdout, and stop it cleanly when the process is signalled."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    cluster = Cluster(
        host=host,
        port=port,
        kubeconfig_path=kubeconfig,
        nodes=nodes,
        time_scale=time_scale,
        kubelet=kubelet,
        tls=tls,
    )
    await cluster.start()
    try:
        print(f"kubesim ready at {cluster.url}; export KUBECONFIG={cluster.kubeconfig_path}", flush=True)
        await stop.wait()
    finally:
        await cluster.stop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kubesim", description="Run the embedded Kubernetes cluster."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument("--kubeconfig", type=Path, default=None, help="where to write the kubeconfig")
    parser.add_argument("--nodes", type=int, default=3, help="simulated nodes")
    parser.add_argument("--time-scale", type=float, default=1.0, help="simulated seconds per real second")
    parser.add_argument(
        "--no-kubelet", action="store_true", help="serve the API only, with no simulated nodes"
    )
    parser.add_argument(
        "--plain-http", action="store_true", help="serve plain HTTP instead of HTTPS with a generated CA"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING)
    asyncio.run(
        serve(
            host=args.host,
            port=args.port,
            kubeconfig=args.kubeconfig,
            nodes=args.nodes,
            time_scale=args.time_scale,
            kubelet=not args.no_kubelet,
            tls=not args.plain_http,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
