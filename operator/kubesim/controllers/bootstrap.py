"""The objects a new cluster has: the namespaces default, kube-system, kube-public and kube-node-lease,
and the `kubernetes` Service at 10.96.0.1 in default."""

from __future__ import annotations

from kubesim.store import Store
from kubesim.verbs.create import create

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def bootstrap(store: Store) -> None:
    ns_rt = store.registry.get("", "v1", "namespaces")
    if ns_rt is None:
        return
    for name in DEFAULT_NAMESPACES:
        create(store, ns_rt, None, {"metadata": {"name": name}})
    svc_rt = store.registry.get("", "v1", "services")
    if svc_rt is not None:
        create(
            store,
            svc_rt,
            "default",
            {
                "metadata": {
                    "name": "kubernetes",
                    "labels": {"component": "apiserver", "provider": "kubernetes"},
                },
                "spec": {
                    "ports": [{"name": "https", "port": 443, "targetPort": 6443}],
                    "clusterIP": "10.96.0.1",
                },
            },
        )
