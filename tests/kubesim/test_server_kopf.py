"""kopf against kubesim: a throwaway operator sees custom objects created and updated, and patches status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kubernetes import client
from tests.kubesim.conftest import GROUP, WIDGET_CRD, wait_until, widget

KUBESIM_OPTIONS = {"kubelet": False}

# kopf's peering CRDs, as its documentation publishes them: kopf claims and patches these when it
# runs with a peering name rather than standalone.
PEERING_CRDS = [
    {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.kopf.dev"},
        "spec": {
            "scope": scope,
            "group": "kopf.dev",
            "names": {"kind": kind, "plural": plural, "singular": plural[:-1]},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }
    for kind, plural, scope in (
        ("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        ("KopfPeering", "kopfpeerings", "Namespaced"),
    )
]


def connection_info(kubeconfig: Path) -> kopf.ConnectionInfo:
    """The server, CA and credentials (a token or a client certificate) of a kubeconfig's context."""
    config = yaml.safe_load(kubeconfig.read_text())
    context = next(c["context"] for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
    user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
    return kopf.ConnectionInfo(
        server=cluster["server"],
        ca_data=cluster.get("certificate-authority-data"),
        token=user.get("token"),
        certificate_data=user.get("client-certificate-data"),
        private_key_data=user.get("client-key-data"),
    )


class OperatorThread:
    """A kopf operator with its own registry, run in a thread until the test is done with it."""

    def __init__(self, kubeconfig: Path, *, peering: str | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.peering = peering
        self.registry = kopf.OperatorRegistry()
        self.stop_flag = threading.Event()
        self.ready_flag = threading.Event()
        self.seen: list[tuple[str, str]] = []
        self._thread = threading.Thread(target=self._run, name="kopf-operator", daemon=True)
        self.error: BaseException | None = None
        self._register()

    def _register(self) -> None:
        registry = self.registry

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return connection_info(self.kubeconfig)

        @kopf.on.startup(registry=registry)
        def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
            settings.watching.server_timeout = 5
            settings.posting.level = logging.INFO
            settings.persistence.progress_storage = kopf.AnnotationsProgressStorage()
            settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage()

        @kopf.on.create(GROUP, "v1", "widgets", registry=registry)
        def created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
            self.seen.append(("create", name))
            kopf.info(body, reason="Ready", message=f"widget {name} is ready")
            patch.status["conditions"] = [{"type": "Ready", "status": "True"}]
            patch.status["observedGeneration"] = 1

        @kopf.on.update(GROUP, "v1", "widgets", field="spec.replicas", registry=registry)
        def scaled(name: str, new: int, meta: kopf.Meta, patch: kopf.Patch, **_: Any) -> None:
            self.seen.append(("update", name))
            patch.status["replicas"] = new
            patch.status["observedGeneration"] = meta["generation"]

    def _run(self) -> None:
        peering: dict[str, Any] = {"peering_name": self.peering} if self.peering else {"standalone": True}
        try:
            asyncio.run(
                kopf.operator(
                    registry=self.registry,
                    clusterwide=True,
                    stop_flag=self.stop_flag,
                    ready_flag=self.ready_flag,
                    **peering,
                )
            )
        except BaseException as error:  # surfaced by the test, not lost in the thread
            self.error = error

    def __enter__(self) -> OperatorThread:
        self._thread.start()
        assert self.ready_flag.wait(30), f"kopf did not start: {self.error!r}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_flag.set()
        self._thread.join(30)


@pytest.fixture(scope="module")
def api(kubesim_cluster: Any) -> Iterator[client.ApiClient]:
    api_client = kubesim_cluster.api_client()
    client.ApiextensionsV1Api(api_client).create_custom_resource_definition(WIDGET_CRD)
    custom = client.CustomObjectsApi(api_client)
    # A real API server serves a new kind a moment after the CRD is created.
    wait_until(lambda: _serves_widgets(custom), what="widgets served")
    yield api_client
    api_client.close()


def _serves_widgets(custom: client.CustomObjectsApi) -> bool:
    try:
        custom.list_namespaced_custom_object(GROUP, "v1", "default", "widgets")
    except client.exceptions.ApiException:
        return False
    return True


def _status(custom: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, "v1", "default", "widgets", name)
    return dict(obj.get("status") or {})


def test_kopf_handles_create_and_update_of_a_custom_object(
    kubesim_cluster: Any, api: client.ApiClient
) -> None:
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    with OperatorThread(kubesim_cluster.kubeconfig_path) as operator:
        custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget("kopf-1", 1))
        status = wait_until(
            lambda: _status(custom, "kopf-1").get("conditions") and _status(custom, "kopf-1"),
            what="kopf to patch the status",
        )
        assert status["conditions"] == [{"type": "Ready", "status": "True"}]

        custom.patch_namespaced_custom_object(
            GROUP, "v1", "default", "widgets", "kopf-1", {"spec": {"replicas": 4}}
        )
        wait_until(lambda: _status(custom, "kopf-1").get("replicas") == 4, what="kopf to see the update")
        assert _status(custom, "kopf-1")["observedGeneration"] == 2
        assert operator.seen == [("create", "kopf-1"), ("update", "kopf-1")]

        # kopf posts events as core/v1 Events about the object.
        events = wait_until(
            lambda: core.list_namespaced_event("default", field_selector="involvedObject.name=kopf-1").items,
            what="kopf's events",
        )
        assert [(e.reason, e.message) for e in events] == [("Ready", "widget kopf-1 is ready")]
    assert operator.error is None


def test_kopf_with_peering_claims_its_peering_object(kubesim_cluster: Any, api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    custom = client.CustomObjectsApi(api)
    for crd in PEERING_CRDS:
        with contextlib.suppress(client.ApiException):
            ext.create_custom_resource_definition(crd)
    body = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "test"}}

    def created() -> bool:
        # A real API server serves a new kind a moment after its CRD is created: until then, 404.
        try:
            custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", body)
        except client.ApiException as error:
            if error.status == 404:
                return False
            if error.status != 409:
                raise
        return True

    wait_until(created, what="the peering kind served and its object created")
    with OperatorThread(kubesim_cluster.kubeconfig_path, peering="test") as operator:
        peers = wait_until(
            lambda: (
                custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "test").get(
                    "status"
                )
                or {}
            ),
            what="kopf to announce itself in the peering object",
        )
        assert len(peers) == 1
        custom.create_namespaced_custom_object(GROUP, "v1", "default", "widgets", widget("kopf-peered", 1))
        wait_until(
            lambda: _status(custom, "kopf-peered").get("conditions"), what="the peered operator to act"
        )
    assert operator.error is None
