"""The simulated storage's volume provisioner: a PersistentVolume for each claim, and its retries.

A loop of its own, as kube-controller-manager's PV controller and an external provisioner are apart
from the kubelet: it lists and watches claims through the kubelet's `ApiClient`, and its cache of
claims is what the kubelet and the scheduler read to tell whether a pod's claims are bound.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubesim.apiclient import RETRY_SECONDS, TRANSPORT_ERRORS, ApiClient, ApiRequestError

log = logging.getLogger("kubesim.kubelet")

# The provisioner name of the simulated storage, and the default StorageClass that uses it, when the
# kubelet leaves binding claims to a real PV controller and acts only as an external provisioner.
PROVISIONER = "kubesim.dev/simulated"
STORAGE_CLASS = "standard"


class VolumeProvisioner:
    """Volumes for the claims of the cluster at `client`.

    With `bind_claims` (against kubesim) it is the PV controller too: it makes a volume per claim and
    binds the claim to it. Without (against a real control plane) it is the external provisioner of
    the default StorageClass `standard`, which it registers: it creates a volume pre-bound to each
    claim waiting for it, and the PV controller binds the claim.
    """

    def __init__(self, client: ApiClient, *, bind_claims: bool = True) -> None:
        self.client = client
        self.bind_claims = bind_claims
        self.claims: dict[tuple[str, str], Mapping[str, Any]] = {}
        # Told of every change to a claim (namespace, name), after the cache holds it.
        self.on_change: Callable[[tuple[str, str]], None] | None = None
        self._provisioning: set[str] = set()

    async def start(self, synced: asyncio.Event) -> None:
        """Register the StorageClass when acting as an external provisioner, then list and watch claims."""
        if not self.bind_claims:
            await self._register_storage_class()
        self.client.spawn(
            self.client.watch("/api/v1/persistentvolumeclaims", self._on_claim, self._on_claim_list, synced)
        )

    async def _register_storage_class(self) -> None:
        storage_class = {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        }
        await self.client.persist(
            "POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class, exists_ok=True
        )

    def _on_claim_list(self, claims: list[dict[str, Any]]) -> None:
        seen = set()
        for claim in claims:
            meta = claim.get("metadata") or {}
            seen.add((str(meta.get("namespace")), str(meta.get("name"))))
            self._on_claim("ADDED", claim)
        for key in [k for k in self.claims if k not in seen]:
            self._on_claim("DELETED", dict(self.claims[key]))

    def _on_claim(self, kind: str, claim: dict[str, Any]) -> None:
        meta = claim.get("metadata") or {}
        key = (str(meta.get("namespace", "default")), str(meta.get("name", "")))
        if kind == "DELETED":
            known = self.claims.get(key)
            if known is not None and (known.get("metadata") or {}).get("uid") == meta.get("uid"):
                del self.claims[key]
            volume = str((claim.get("spec") or {}).get("volumeName") or "")
            ours = f"pvc-{meta.get('uid')}"
            if volume in (ours, ""):
                # The provisioner's volumes have reclaim policy Delete: they go with their claim, also
                # one made for a claim deleted before it was bound to it.
                self.client.spawn(self.client.request("DELETE", f"/api/v1/persistentvolumes/{ours}"))
        else:
            self.claims[key] = claim
            if self._claim_needs_volume(claim):
                uid = str(meta.get("uid", ""))
                if uid not in self._provisioning:
                    self._provisioning.add(uid)
                    self.client.spawn(self._provision(claim))
        if self.on_change is not None:
            self.on_change(key)

    def _claim_needs_volume(self, claim: Mapping[str, Any]) -> bool:
        meta, spec, status = claim.get("metadata") or {}, claim.get("spec") or {}, claim.get("status") or {}
        if meta.get("deletionTimestamp"):
            return False
        if not self.bind_claims:
            # As an external provisioner: only claims the PV controller handed to us, not yet bound.
            annotations = meta.get("annotations") or {}
            ours = PROVISIONER in (
                annotations.get("volume.kubernetes.io/storage-provisioner"),
                annotations.get("volume.beta.kubernetes.io/storage-provisioner"),
            )
            return ours and not spec.get("volumeName")
        return not spec.get("volumeName") or status.get("phase") != "Bound"

    async def _provision(self, claim: Mapping[str, Any]) -> None:
        """Act as the dynamic provisioner: a new PersistentVolume per claim, then bind the claim to it."""
        meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
        namespace, name, uid = str(meta.get("namespace")), str(meta.get("name")), str(meta.get("uid"))
        volume = str(spec.get("volumeName") or f"pvc-{uid}")
        size = str(((spec.get("resources") or {}).get("requests") or {}).get("storage") or "1Gi")
        modes = list(spec.get("accessModes") or ["ReadWriteOnce"])
        try:
            if not spec.get("volumeName"):
                persistent_volume = {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {
                        "name": volume,
                        "annotations": {
                            "pv.kubernetes.io/provisioned-by": "kubesim" if self.bind_claims else PROVISIONER
                        },
                    },
                    "spec": {
                        "capacity": {"storage": size},
                        "accessModes": modes,
                        "persistentVolumeReclaimPolicy": "Delete",
                        "storageClassName": str(spec.get("storageClassName") or "standard"),
                        "volumeMode": str(spec.get("volumeMode") or "Filesystem"),
                        "claimRef": {
                            "apiVersion": "v1",
                            "kind": "PersistentVolumeClaim",
                            "namespace": namespace,
                            "name": name,
                            "uid": uid,
                        },
                        "hostPath": {"path": f"/var/lib/kubesim/volumes/{volume}"},
                    },
                }
                await self.client.expect(
                    "POST", "/api/v1/persistentvolumes", persistent_volume, exists_ok=True
                )
                if (self.claims.get((namespace, name)) or {}).get("metadata", {}).get("uid") != uid:
                    # The claim was deleted while its volume was made: the volume goes with it.
                    await self.client.request("DELETE", f"/api/v1/persistentvolumes/{volume}")
                    return
                if not self.bind_claims:
                    return  # the PV controller binds the claim to its pre-bound volume
                await self.client.request(
                    "PATCH",
                    f"/api/v1/persistentvolumes/{volume}/status",
                    {"status": {"phase": "Bound"}},
                    "application/merge-patch+json",
                )
                base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
                binding = {
                    "metadata": {
                        "uid": uid,
                        "annotations": {
                            "pv.kubernetes.io/bind-completed": "yes",
                            "pv.kubernetes.io/bound-by-controller": "yes",
                        },
                    },
                    "spec": {"volumeName": volume},
                }
                await self.client.expect("PATCH", base, binding, "application/merge-patch+json")
            base = f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}"
            bound = {"status": {"phase": "Bound", "accessModes": modes, "capacity": {"storage": size}}}
            await self.client.expect("PATCH", base + "/status", bound, "application/merge-patch+json")
        except (ApiRequestError, *TRANSPORT_ERRORS) as exc:
            log.info("could not bind claim %s/%s (%s); retrying", namespace, name, exc)
            self.client.later(RETRY_SECONDS, lambda: self._retry_provision(namespace, name, uid))
        finally:
            self._provisioning.discard(uid)

    def _retry_provision(self, namespace: str, name: str, uid: str) -> None:
        claim = self.claims.get((namespace, name))
        if claim is not None and (claim.get("metadata") or {}).get("uid") == uid:
            self._on_claim("MODIFIED", dict(claim))
        else:
            # The claim went while its volume was being made: the volume goes too (reclaim policy Delete).
            self.client.spawn(self.client.request("DELETE", f"/api/v1/persistentvolumes/pvc-{uid}"))

    def claims_problem(self, namespace: str, claims: Sequence[str]) -> str | None:
        """Why the pod's claims cannot be used yet, or None when all are bound."""
        for claim_name in claims:
            claim = self.claims.get((namespace, claim_name))
            if claim is None:
                return f'persistentvolumeclaim "{claim_name}" not found'
            if (claim.get("metadata") or {}).get("deletionTimestamp"):
                return f'persistentvolumeclaim "{claim_name}" is being deleted'
            if (claim.get("status") or {}).get("phase") != "Bound" or not (claim.get("spec") or {}).get(
                "volumeName"
            ):
                return "pod has unbound immediate PersistentVolumeClaims"
        return None
