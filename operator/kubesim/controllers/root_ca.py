"""The root-CA publisher: the cluster's CA as the `kube-root-ca.crt` ConfigMap of every namespace.

kube-controller-manager's publisher does this in a real cluster, so that pods can trust the API server;
kubesim does it as soon as it knows the CA (`publish`, which the cluster calls once it has made its
certificates; a plain-HTTP cluster has none), and for every namespace created after.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesim.resources import ResourceType
from kubesim.store import Controller, Store
from kubesim.verbs.create import create
from kubesim.verbs.update import update

ROOT_CA_CONFIG_MAP = "kube-root-ca.crt"
ROOT_CA_ANNOTATION = "kubernetes.io/description"
ROOT_CA_DESCRIPTION = (
    "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints "
    "such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across "
    "distributions of Kubernetes clusters."
)
NAMESPACE_KEY = ("", "namespaces")


class RootCaPublisher(Controller):
    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # The CA that `kube-root-ca.crt` ConfigMaps carry, once `publish` has named it.
        self.root_ca: str | None = None

    def created(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == NAMESPACE_KEY:
            self.publish_in(obj["metadata"]["name"])

    def publish(self, ca_pem: bytes) -> None:
        """Publish the CA in every namespace, and from now on in each new one."""
        self.root_ca = ca_pem.decode()
        for _, name in self.store.keys_of(NAMESPACE_KEY):
            self.publish_in(name)

    def publish_in(self, namespace: str) -> None:
        cm_rt = self.store.registry.get("", "v1", "configmaps")
        if self.root_ca is None or cm_rt is None:
            return
        body = {
            "metadata": {
                "name": ROOT_CA_CONFIG_MAP,
                "annotations": {ROOT_CA_ANNOTATION: ROOT_CA_DESCRIPTION},
            },
            "data": {"ca.crt": self.root_ca},
        }
        found = self.store.lookup(cm_rt.storage_key, (namespace, ROOT_CA_CONFIG_MAP))
        if found is None:
            create(self.store, cm_rt, namespace, body)
        elif found[1].get("data") != body["data"]:
            replaced = copy.deepcopy(found[1])
            replaced["data"] = body["data"]
            update(self.store, cm_rt, namespace, ROOT_CA_CONFIG_MAP, replaced)


def publish_root_ca(store: Store, ca_pem: bytes) -> None:
    """Have the store's root-CA publisher publish `ca_pem` (the store must have its controllers)."""
    for controller in store.controllers:
        if isinstance(controller, RootCaPublisher):
            controller.publish(ca_pem)
