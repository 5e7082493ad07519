"""The namespace controller: a terminating namespace is emptied, then let go.

Once a namespace is being deleted, every object in it is deleted; when none is left, the `kubernetes`
finalizer leaves its spec and the namespace goes (or waits for the finalizers of its metadata). Each
object that goes from a terminating namespace looks again.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesim.resources import ResourceType
from kubesim.store import NAMESPACE_FINALIZER, Controller

NAMESPACE_KEY = ("", "namespaces")


class NamespaceLifecycle(Controller):
    def terminating(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == NAMESPACE_KEY:
            name = obj["metadata"]["name"]
            self.store.queue(lambda: self.reconcile(name), once=("namespace", name))

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        namespace = obj["metadata"].get("namespace")
        if namespace:
            found = self.store.lookup(NAMESPACE_KEY, ("", namespace))
            if found is not None and found[1]["metadata"].get("deletionTimestamp"):
                self.store.queue(lambda: self.reconcile(namespace), once=("namespace", namespace))

    def reconcile(self, name: str) -> None:
        """Empty a terminating namespace, then let it go."""
        store = self.store
        found = store.lookup(NAMESPACE_KEY, ("", name))
        if found is None or not found[1]["metadata"].get("deletionTimestamp"):
            return
        remaining = 0
        for storage_key, key in store.stored_in(name):
            rt = store.type_for_storage(storage_key)
            if rt is None or not rt.namespaced:
                continue
            remaining += 1
            obj = store.lookup(storage_key, key)
            if obj is not None and not obj[1]["metadata"].get("deletionTimestamp"):
                store.remove(rt, name, key[1])
        if remaining and store.stored_in(name):
            return
        found = store.lookup(NAMESPACE_KEY, ("", name))
        if found is None:
            return
        ns_rt, ns = found
        new = copy.deepcopy(ns)
        new["spec"]["finalizers"] = [
            f for f in new.get("spec", {}).get("finalizers", []) if f != NAMESPACE_FINALIZER
        ]
        if not new["metadata"].get("finalizers"):
            store.commit(ns_rt, new, ns, gone=True)
        elif new != ns:
            store.commit(ns_rt, new, ns)
