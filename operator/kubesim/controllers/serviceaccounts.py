"""The ServiceAccount controller: every namespace gets a `default` ServiceAccount when it is created
(the ServiceAccount admission in kubesim.admission refuses pods whose account does not exist)."""

from __future__ import annotations

from typing import Any

from kubesim.resources import ResourceType
from kubesim.store import Controller
from kubesim.verbs.create import create

NAMESPACE_KEY = ("", "namespaces")


class ServiceAccounts(Controller):
    def created(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        if rt.storage_key == NAMESPACE_KEY:
            self.ensure_default(obj["metadata"]["name"])

    def ensure_default(self, namespace: str) -> None:
        sa_rt = self.store.registry.get("", "v1", "serviceaccounts")
        if sa_rt is None or self.store.exists(sa_rt, namespace, "default"):
            return
        create(self.store, sa_rt, namespace, {"metadata": {"name": "default"}})
