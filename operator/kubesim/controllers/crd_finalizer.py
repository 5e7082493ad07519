"""CRD cleanup: a deleted CustomResourceDefinition's instances go first, then the CRD.

What apiextensions-apiserver's finalizer controller does for `customresourcecleanup.apiextensions.k8s.io`:
once a CRD is being deleted, every instance of its kind is deleted, and when none is left the finalizer
is dropped (the store then stops serving the kind).
"""

from __future__ import annotations

from typing import Any

from kubesim.resources import CRD_GROUP, ResourceType
from kubesim.store import FINALIZER_CRD_CLEANUP, Controller

CRD_KEY = (CRD_GROUP, "customresourcedefinitions")


class CrdFinalizer(Controller):
    def terminating(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == CRD_KEY:
            name = obj["metadata"]["name"]
            self.store.queue(lambda: self.clean_up(name), once=("crd", name))

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.crd is not None:  # an instance went: its CRD may be waiting for the last one
            crd_name = rt.crd["metadata"]["name"]
            self.store.queue(lambda: self.clean_up(crd_name), once=("crd", crd_name))

    def clean_up(self, crd_name: str) -> None:
        """Delete every instance of a terminating CRD, then drop the cleanup finalizer."""
        store = self.store
        found = store.lookup(CRD_KEY, ("", crd_name))
        if found is None or not found[1]["metadata"].get("deletionTimestamp"):
            return
        spec = found[1]["spec"]
        storage_key = (spec["group"], spec["names"]["plural"])
        rt = store.type_for_storage(storage_key)
        if rt is not None:
            for key in store.keys_of(storage_key):
                instance = store.lookup(storage_key, key)
                if instance is not None and not instance[1]["metadata"].get("deletionTimestamp"):
                    store.remove(rt, key[0] or None, key[1])
        if not store.keys_of(storage_key):
            store.remove_finalizer(CRD_KEY, ("", crd_name), FINALIZER_CRD_CLEANUP)
