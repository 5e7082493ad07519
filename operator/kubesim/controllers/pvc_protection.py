"""pvc-protection: a deleted PersistentVolumeClaim goes once no scheduled pod refers to it.

As kube-controller-manager's: the StorageObjectInUseProtection admission gives every new claim the
`kubernetes.io/pvc-protection` finalizer (kubesim.admission), and this controller drops it from a claim being
deleted when no pod that has a node (a pod that never ran holds nothing) and is not gone yet, even a
finished one, names the claim. A pod that goes lets the claims it held be looked at again.
"""

from __future__ import annotations

import functools
from typing import Any

from kubesim.resources import ResourceType
from kubesim.store import FINALIZER_PVC_PROTECTION, Controller

CLAIM_KEY = ("", "persistentvolumeclaims")
POD_KEY = ("", "pods")


def _claims_of(pod: dict[str, Any]) -> list[str]:
    return [
        claim
        for volume in pod.get("spec", {}).get("volumes") or []
        if (claim := (volume.get("persistentVolumeClaim") or {}).get("claimName"))
    ]


class PvcProtection(Controller):
    def terminating(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == CLAIM_KEY:
            namespace, name = obj["metadata"].get("namespace") or "", obj["metadata"]["name"]
            self.store.queue(lambda: self.reconcile(namespace, name), once=("pvc", namespace, name))

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == POD_KEY:
            namespace = obj["metadata"].get("namespace") or ""
            for claim in _claims_of(obj):
                self.store.queue(
                    functools.partial(self.reconcile, namespace, claim), once=("pvc", namespace, claim)
                )

    def reconcile(self, namespace: str, name: str) -> None:
        found = self.store.lookup(CLAIM_KEY, (namespace, name))
        if found is None or not found[1]["metadata"].get("deletionTimestamp"):
            return
        if FINALIZER_PVC_PROTECTION not in (found[1]["metadata"].get("finalizers") or []):
            return
        for key in self.store.keys_of(POD_KEY):
            if key[0] != namespace:
                continue
            pod = self.store.lookup(POD_KEY, key)
            if pod is not None and (pod[1].get("spec") or {}).get("nodeName") and name in _claims_of(pod[1]):
                return
        self.store.remove_finalizer(CLAIM_KEY, (namespace, name), FINALIZER_PVC_PROTECTION)
