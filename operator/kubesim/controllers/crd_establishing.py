"""CRD establishing: serve a CustomResourceDefinition's types at once and report it Established.

What apiextensions-apiserver's naming and establishing controllers do, synchronously: once a CRD is
created, or its spec changes while it is not being deleted, its types are served and its status carries
the accepted names, the stored versions and the NamesAccepted and Established conditions.
"""

from __future__ import annotations

import copy
from typing import Any

from kubesim.resources import CRD_GROUP, ResourceType
from kubesim.store import Controller, set_condition

CRD_KEY = (CRD_GROUP, "customresourcedefinitions")


class CrdEstablishing(Controller):
    def created(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == CRD_KEY:
            self.establish(obj)

    def updated(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
        if (
            rt.storage_key == CRD_KEY
            and new.get("spec") != old.get("spec")
            and not new["metadata"].get("deletionTimestamp")
        ):
            self.establish(new)

    def establish(self, crd: dict[str, Any]) -> None:
        store = self.store
        store.registry.add_crd(copy.deepcopy(crd))
        crd_rt = store.registry.get(CRD_GROUP, "v1", "customresourcedefinitions")
        assert crd_rt is not None
        current = store.get_raw(crd_rt, None, crd["metadata"]["name"])
        new = copy.deepcopy(current)
        spec = new["spec"]
        status = new.setdefault("status", {})
        status["acceptedNames"] = {k: v for k, v in spec["names"].items()}
        status["acceptedNames"].setdefault("singular", spec["names"]["kind"].lower())
        status["acceptedNames"].setdefault("listKind", spec["names"]["kind"] + "List")
        storage = next(v["name"] for v in spec["versions"] if v.get("storage"))
        stored = list(status.get("storedVersions") or [])
        if storage not in stored:
            stored.append(storage)
        status["storedVersions"] = stored
        set_condition(new, "NamesAccepted", "True", "NoConflicts", "no conflicts found", store.clock)
        set_condition(
            new,
            "Established",
            "True",
            "InitialNamesAccepted",
            "the initial names have been accepted",
            store.clock,
        )
        if new != current:
            store.commit(crd_rt, new, current)
