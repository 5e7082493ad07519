"""The pods and nodes the endpoint identifies callers by, kept in memory from a list and a watch.

A request is answered from this index, never from a list per request: each resource is listed once,
then watched from the list's resourceVersion; when the API server says the watch is too old (410
Gone, after an etcd compaction or a long disconnection) the resource is listed again and the index
replaced whole, so a pod deleted while nobody watched does not linger. Every pod is indexed, not only
instances, because an address is an instance's only when no other pod holds it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Collection, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from scaleset_operator.control.kube import ApiError, Kube, core_path
from scaleset_operator.identity import LABEL_SCALESET
from scaleset_operator.imds.callers import PodRecord
from scaleset_operator.planning.scheduled_events import EVENTS_ANNOTATION

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
NODE_ADDRESS_TYPES = frozenset({"InternalIP", "ExternalIP"})


class Gone(Exception):
    """The watch's resourceVersion is too old: list again."""


def pod_record(pod: dict[str, Any]) -> PodRecord:
    metadata = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    addresses = {status.get("podIP")} | {entry.get("ip") for entry in status.get("podIPs") or []}
    instance = LABEL_SCALESET in (metadata.get("labels") or {})
    return PodRecord(
        namespace=str(metadata.get("namespace") or ""),
        name=str(metadata.get("name") or ""),
        uid=str(metadata.get("uid") or ""),
        phase=str(status.get("phase") or ""),
        addresses=frozenset(str(a) for a in addresses if a),
        host_network=bool(spec.get("hostNetwork")),
        instance=instance,
        resource_version=str(metadata.get("resourceVersion") or ""),
        events=(metadata.get("annotations") or {}).get(EVENTS_ANNOTATION) if instance else None,
    )


def node_addresses(node: dict[str, Any]) -> frozenset[str]:
    return frozenset(
        str(entry["address"])
        for entry in (node.get("status") or {}).get("addresses") or []
        if entry.get("type") in NODE_ADDRESS_TYPES and entry.get("address")
    )


class Reflector:
    """Lists one resource, then watches it; hands every change to `replace` (a whole list) or `apply`."""

    def __init__(
        self,
        kube: Kube,
        path: str,
        replace: Callable[[list[dict[str, Any]]], None],
        apply: Callable[[str, dict[str, Any]], None],
        retry_seconds: float = 1.0,
        relist_after: int = 3,
    ) -> None:
        self.kube = kube
        self.path = path
        self.relist_after = relist_after
        self.replace = replace
        self.apply = apply
        self.retry_seconds = retry_seconds
        self.lists = 0
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._response: Any = None
        self._thread = threading.Thread(target=self._run, name=f"index {path}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            # Unblocks the read of the watch stream at once, rather than at the next event.
            with contextlib.suppress(Exception):  # the stream may be closing by itself
                response.shutdown()
        self._thread.join(timeout)

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except Gone:
                log.info("the watch of %s is too old (410 Gone): listing again", self.path)
                version = None
            except Exception as error:
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("the index of %s failed (%s): retrying", self.path, error)
                # After repeated failures, start again from a list: the position may be the trouble.
                if failures >= self.relist_after:
                    version = None
                self._stop.wait(min(30.0, self.retry_seconds * failures) * (0.5 + random.random()))

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        version = ""
        while True:
            chunk = self.kube.request("GET", self.path, query={"limit": 500, "continue": token})
            items += chunk.get("items") or []
            metadata = chunk.get("metadata") or {}
            version = version or str(metadata.get("resourceVersion") or "")
            token = metadata.get("continue")
            if not token:
                break
        self.replace(items)
        self.lists += 1
        self.synced.set()
        return version

    def _watch(self, version: str) -> str:
        for event in self._events(version):
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone()
                raise ApiError(
                    int(obj.get("code") or 500), str(obj.get("reason") or ""), str(obj.get("message"))
                )
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.apply(str(kind), obj)
        return version

    def _events(self, version: str) -> Iterator[dict[str, Any]]:
        client = self.kube.api_client
        query = {
            "watch": "true",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(WATCH_SECONDS),
        }
        method, url, headers, _ = client.param_serialize(
            "GET",
            self.path,
            query_params=list(query.items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )[:4]
        # The read timeout outlasts the server's: a silent stream is a broken one.
        try:
            response = client.call_api(
                method, url, header_params=headers, _request_timeout=(10, WATCH_SECONDS + 30)
            )
        except ApiException as error:
            if error.status == 410:
                raise Gone() from None
            raise ApiError(int(error.status or 0), str(error.reason or ""), str(error.body or "")) from None
        raw = response.response
        if response.status == 410:
            raw.release_conn()
            raise Gone()
        if not 200 <= response.status <= 299:
            body = raw.read()
            raw.release_conn()
            raise ApiError(response.status, str(response.reason or ""), body.decode("utf-8", "replace"))
        self._response = raw
        try:
            buffer = b""
            for chunk in raw.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
                if self._stop.is_set():
                    return
        finally:
            self._response = None
            raw.release_conn()


class InstanceIndex:
    """Every pod by uid and by address, and every node's addresses; fed by two reflectors."""

    def __init__(self, kube: Kube, retry_seconds: float = 1.0, relist_after: int = 3) -> None:
        self._lock = threading.Lock()
        self._pods: dict[str, PodRecord] = {}
        self._by_address: dict[str, set[str]] = {}
        self._nodes: dict[str, frozenset[str]] = {}
        self.pods = Reflector(
            kube, core_path("pods"), self._replace_pods, self._apply_pod, retry_seconds, relist_after
        )
        self.nodes = Reflector(
            kube, core_path("nodes"), self._replace_nodes, self._apply_node, retry_seconds, relist_after
        )

    def start(self) -> InstanceIndex:
        self.pods.start()
        self.nodes.start()
        return self

    def stop(self) -> None:
        self.pods.stop()
        self.nodes.stop()

    def wait_synced(self, timeout: float) -> bool:
        return self.pods.synced.wait(timeout) and self.nodes.synced.wait(timeout)

    # Reads, from any thread.

    def holders(self, address: str) -> list[PodRecord]:
        with self._lock:
            return [self._pods[uid] for uid in self._by_address.get(address, ())]

    def node_addresses(self) -> Collection[str]:
        with self._lock:
            return frozenset().union(*self._nodes.values()) if self._nodes else frozenset()

    def pod(self, uid: str) -> PodRecord | None:
        with self._lock:
            return self._pods.get(uid)

    def written(self, pod: dict[str, Any], based_on: str) -> None:
        """A write of ours landed: keep its answer unless the watch has already moved past `based_on`.

        The write carried `based_on` as its resourceVersion precondition, so its answer is the next
        version of the pod; a read right after it sees the change without waiting for the watch.
        """
        record = pod_record(pod)
        with self._lock:
            current = self._pods.get(record.uid)
            if current is not None and current.resource_version == based_on:
                self._put(record)

    # Writes, from the reflectors.

    def _put(self, record: PodRecord) -> None:
        self._drop(record.uid)
        self._pods[record.uid] = record
        for address in record.addresses:
            self._by_address.setdefault(address, set()).add(record.uid)

    def _drop(self, uid: str) -> None:
        old = self._pods.pop(uid, None)
        if old is None:
            return
        for address in old.addresses:
            holders = self._by_address.get(address)
            if holders is not None:
                holders.discard(uid)
                if not holders:
                    del self._by_address[address]

    def _replace_pods(self, pods: list[dict[str, Any]]) -> None:
        with self._lock:
            self._pods.clear()
            self._by_address.clear()
            for pod in pods:
                self._put(pod_record(pod))

    def _apply_pod(self, kind: str, pod: dict[str, Any]) -> None:
        record = pod_record(pod)
        with self._lock:
            if kind == "DELETED":
                self._drop(record.uid)
            else:
                self._put(record)

    def _replace_nodes(self, nodes: list[dict[str, Any]]) -> None:
        with self._lock:
            self._nodes = {str(node["metadata"]["name"]): node_addresses(node) for node in nodes}

    def _apply_node(self, kind: str, node: dict[str, Any]) -> None:
        name = str(node["metadata"]["name"])
        with self._lock:
            if kind == "DELETED":
                self._nodes.pop(name, None)
            else:
                self._nodes[name] = node_addresses(node)
