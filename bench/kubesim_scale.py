"""kubesim at scale: list 10,000 pods, and fan a watch out to 20 watchers while pods change; prints figures.

Run with `make bench` or `python bench/kubesim_scale.py [--pods N] [--watchers N] [--updates N]`.
Nothing here asserts a time; the figures are for reading (targets: full list under 1 s, no watcher
falling behind the writes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "operator"))

from kubesim.cluster import ThreadedCluster

NAMESPACE = "bench"
SENT = "bench.kubesim.dev/sent"


def pod(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"pod-{i:05d}",
            "labels": {"app": "bench", "shard": str(i % 10)},
            "annotations": {"bench.kubesim.dev/index": str(i)},
        },
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:v1",
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
                    "env": [{"name": "INDEX", "value": str(i)}],
                }
            ]
        },
    }


def seed(cluster: ThreadedCluster, count: int) -> float:
    """Create the pods in-process (the list is what is measured, not the creates); returns seconds."""

    def create_all() -> None:
        store = cluster._require().store
        pods = store.type("pods")
        store.create(store.type("namespaces"), None, {"metadata": {"name": NAMESPACE}})
        for i in range(count):
            store.create(pods, NAMESPACE, pod(i))

    started = time.perf_counter()
    cluster.call(create_all)
    return time.perf_counter() - started


async def time_lists(url: str, rounds: int = 3) -> dict[str, float]:
    figures: dict[str, list[float]] = {
        "full list": [],
        "full list (parsed)": [],
        "label selector 1/10": [],
        "table": [],
    }
    async with aiohttp.ClientSession() as session:
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.get(f"{url}/api/v1/namespaces/{NAMESPACE}/pods") as response:
                raw = await response.read()
            figures["full list"].append(time.perf_counter() - started)
            json.loads(raw)
            figures["full list (parsed)"].append(time.perf_counter() - started)

            started = time.perf_counter()
            async with session.get(f"{url}/api/v1/pods", params={"labelSelector": "shard=3"}) as response:
                await response.read()
            figures["label selector 1/10"].append(time.perf_counter() - started)

            started = time.perf_counter()
            headers = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
            async with session.get(f"{url}/api/v1/namespaces/{NAMESPACE}/pods", headers=headers) as response:
                await response.read()
            figures["table"].append(time.perf_counter() - started)
    return {name: min(values) for name, values in figures.items()}


async def watch(
    session: aiohttp.ClientSession, url: str, rv: str, expected: int, lags: list[float], ready: asyncio.Event
) -> int:
    """Read a watch stream until `expected` modifications arrived; records each one's lag in seconds."""
    seen = 0
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "300"}
    async with session.get(f"{url}/api/v1/namespaces/{NAMESPACE}/pods", params=params) as response:
        ready.set()
        async for line in response.content:
            if not line.strip():
                continue
            event = json.loads(line)
            sent = (event["object"]["metadata"].get("annotations") or {}).get(SENT)
            if event["type"] == "MODIFIED" and sent:
                lags.append(time.time() - float(sent))
                seen += 1
                if seen >= expected:
                    break
    return seen


async def fan_out(url: str, pods: int, watchers: int, updates: int, writers: int = 8) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async with session.get(
            f"{url}/api/v1/namespaces/{NAMESPACE}/pods", params={"limit": "1"}
        ) as response:
            rv = (await response.json())["metadata"]["resourceVersion"]
        lags: list[list[float]] = [[] for _ in range(watchers)]
        ready = [asyncio.Event() for _ in range(watchers)]
        readers = [
            asyncio.create_task(watch(session, url, rv, updates, lags[i], ready[i])) for i in range(watchers)
        ]
        await asyncio.gather(*(r.wait() for r in ready))

        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(updates):
            queue.put_nowait(i)

        async def writer() -> None:
            headers = {"Content-Type": "application/merge-patch+json"}
            while not queue.empty():
                i = queue.get_nowait()
                patch = {"metadata": {"annotations": {SENT: repr(time.time())}}}
                name = f"pod-{i % pods:05d}"
                async with session.patch(
                    f"{url}/api/v1/namespaces/{NAMESPACE}/pods/{name}",
                    data=json.dumps(patch),
                    headers=headers,
                ) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(writer() for _ in range(writers)))
        write_seconds = time.perf_counter() - started
        received = await asyncio.wait_for(asyncio.gather(*readers), timeout=120)
        drained_seconds = time.perf_counter() - started
    every = sorted(lag for per in lags for lag in per)
    worst_p99 = max(statistics.quantiles(per, n=100)[98] for per in lags if len(per) > 1)
    return {
        "updates": updates,
        "writes per second": updates / write_seconds,
        "all watchers drained after (s)": drained_seconds,
        "events received (min over watchers)": min(received),
        "lag p50 (ms)": 1000 * statistics.median(every),
        "lag p99 (ms)": 1000 * statistics.quantiles(every, n=100)[98],
        "lag max (ms)": 1000 * every[-1],
        "worst watcher p99 (ms)": 1000 * worst_p99,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--watchers", type=int, default=20)
    parser.add_argument("--updates", type=int, default=2_000)
    args = parser.parse_args()

    # Plain HTTP: the figures measure the server, not TLS, and stay comparable with earlier runs.
    with ThreadedCluster(kubelet=False, event_window=max(50_000, args.updates * 2), tls=False) as cluster:
        seconds = seed(cluster, args.pods)
        print(f"seeded {args.pods} pods in-process in {seconds:.2f} s ({args.pods / seconds:,.0f}/s)")
        for name, value in asyncio.run(time_lists(cluster.url)).items():
            print(f"{name:>24}: {value * 1000:8.1f} ms  (best of 3, {args.pods} pods)")
        figures = asyncio.run(fan_out(cluster.url, args.pods, args.watchers, args.updates))
        print(f"watch fan-out to {args.watchers} watchers:")
        for name, value in figures.items():
            print(f"{name:>38}: {value:,.1f}" if isinstance(value, float) else f"{name:>38}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
