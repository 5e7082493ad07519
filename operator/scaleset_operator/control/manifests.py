"""Pods, PVCs and ControllerRevisions as the operator writes them, built from a ScaleSet and a revision."""

from __future__ import annotations

import copy
import os
from typing import Any

from scaleset_operator.api.models import API_VERSION, RetentionAction, ScaleSetSpec
from scaleset_operator.identity import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_SPEC_REVISION,
    ANNOTATION_UPDATED_AT,
    LABEL_ORDINAL,
    LABEL_REVISION,
    LABEL_SCALESET,
    LABEL_SLOT,
    LABEL_SURGE,
    LABEL_UPGRADE_DOMAIN,
    instance_claim_name,
    pod_name,
)
from scaleset_operator.planning.claims import ScaleSetRef
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.host_maintenance import (
    MAINTENANCE_LABEL,
    MAINTENANCE_PENDING,
    MAINTENANCE_READY,
)
from scaleset_operator.planning.scheduled_events import ENDPOINT_ENV, SCHEDULED_EVENTS_PATH


def owner_reference(scaleset: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ScaleSet",
        "name": scaleset["metadata"]["name"],
        "uid": scaleset["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def scaleset_ref(scaleset: dict[str, Any]) -> ScaleSetRef:
    return ScaleSetRef(scaleset["metadata"]["name"], scaleset["metadata"]["uid"])


def instance_labels(name: str, ordinal: int, upgrade_domain: int, revision: str) -> dict[str, str]:
    return {
        LABEL_SCALESET: name,
        LABEL_ORDINAL: str(ordinal),
        LABEL_UPGRADE_DOMAIN: str(upgrade_domain),
        LABEL_REVISION: revision,
    }


def instance_pod(
    scaleset: dict[str, Any],
    spec: ScaleSetSpec,
    template: dict[str, Any],
    revision: str,
    ordinal: int,
    now: str,
    surge: bool = False,
    scheduled_events_endpoint: str | None = None,
    slot: str | None = None,
) -> dict[str, Any]:
    """The pod of instance `ordinal` on `revision`: template, identity labels, owner, claims.

    With a `slot` (Staged mode) the pod carries the slot label, and a green one is named
    `<scaleset>-green-<ordinal>` and mounts the green claims.

    With spec.scheduledEvents.enabled, every container gets SCHEDULED_EVENTS_ENDPOINT (see
    `scheduled_events_endpoint` for the default URL) unless the template sets it already.
    """
    name = scaleset["metadata"]["name"]
    namespace = scaleset["metadata"]["namespace"]
    template = copy.deepcopy(template)
    metadata = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    upgrade_domain = upgrade_domain_of(ordinal, spec.upgrade_domain_count)
    labels = {**(metadata.get("labels") or {}), **instance_labels(name, ordinal, upgrade_domain, revision)}
    if surge:
        labels[LABEL_SURGE] = "true"
    if slot is not None:
        labels[LABEL_SLOT] = slot
    instance = pod_name(name, ordinal, slot, surge)
    pod_spec.setdefault("hostname", instance)
    _avoid_nodes_under_maintenance(pod_spec)
    if surge:
        _scratch_claims(pod_spec, spec)
    else:
        _mount_claims(pod_spec, spec, name, ordinal, slot)
    if spec.scheduled_events.enabled:
        _endpoint_env(pod_spec, scheduled_events_endpoint or default_scheduled_events_endpoint())
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": instance,
            "namespace": namespace,
            "labels": labels,
            "annotations": {**(metadata.get("annotations") or {}), ANNOTATION_UPDATED_AT: now},
            "ownerReferences": [owner_reference(scaleset)],
        },
        "spec": pod_spec,
    }


def default_scheduled_events_endpoint() -> str:
    """Where instances reach the endpoint: the operator's own $SCHEDULED_EVENTS_ENDPOINT when set, else
    the Service of manifests/ in the operator's namespace ($POD_NAMESPACE, default scaleset-system)."""
    explicit = os.environ.get(ENDPOINT_ENV)
    if explicit:
        return explicit
    namespace = os.environ.get("POD_NAMESPACE") or "scaleset-system"
    return f"http://scaleset-operator.{namespace}.svc:8090{SCHEDULED_EVENTS_PATH}"


def _endpoint_env(pod_spec: dict[str, Any], endpoint: str) -> None:
    for container in pod_spec.get("containers") or []:
        env = container.setdefault("env", [])
        if not any(variable.get("name") == ENDPOINT_ENV for variable in env):
            env.append({"name": ENDPOINT_ENV, "value": endpoint})


def _mount_claims(
    pod_spec: dict[str, Any], spec: ScaleSetSpec, name: str, ordinal: int, slot: str | None
) -> None:
    # As StatefulSet does: a claim template named like a template volume replaces that volume.
    claims = {c["metadata"]["name"] for c in spec.volume_claim_templates}
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
    for claim in sorted(claims):
        volumes.append(
            {
                "name": claim,
                "persistentVolumeClaim": {"claimName": instance_claim_name(claim, name, ordinal, slot)},
            }
        )
    if volumes:
        pod_spec["volumes"] = volumes


def _scratch_claims(pod_spec: dict[str, Any], spec: ScaleSetSpec) -> None:
    # A surge instance only carries capacity for a while; the data disk stays with the instance it
    # stands in for (a ReadWriteOnce claim cannot be shared), so its claim mounts get scratch space.
    claims = {c["metadata"]["name"] for c in spec.volume_claim_templates}
    volumes = [v for v in pod_spec.get("volumes") or [] if v.get("name") not in claims]
    volumes += [{"name": claim, "emptyDir": {}} for claim in sorted(claims)]
    if volumes:
        pod_spec["volumes"] = volumes


def instance_claims(
    scaleset: dict[str, Any], spec: ScaleSetSpec, ordinal: int, slot: str | None = None
) -> list[dict[str, Any]]:
    """The PVCs of one instance, marked with the uid of the ScaleSet that creates them; owned by the
    ScaleSet only when whenDeleted is Delete (then GC removes them). Each slot has its own claims
    (labelled with the slot), named by `instance_claim_name`."""
    name = scaleset["metadata"]["name"]
    claims = []
    for template in spec.volume_claim_templates:
        template = copy.deepcopy(template)
        metadata = template.get("metadata") or {}
        claim = metadata["name"]
        labels = {**(metadata.get("labels") or {}), LABEL_SCALESET: name, LABEL_ORDINAL: str(ordinal)}
        if slot is not None:
            labels[LABEL_SLOT] = slot
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": instance_claim_name(claim, name, ordinal, slot),
                "namespace": scaleset["metadata"]["namespace"],
                "labels": labels,
                "annotations": {
                    **(metadata.get("annotations") or {}),
                    ANNOTATION_CREATED_BY: scaleset["metadata"]["uid"],
                },
            },
            "spec": template.get("spec") or {},
        }
        if spec.persistent_volume_claim_retention_policy.when_deleted == RetentionAction.DELETE:
            body["metadata"]["ownerReferences"] = [scaleset_ref(scaleset).owner_reference()]
        claims.append(body)
    return claims


def controller_revision(
    scaleset: dict[str, Any], revision: str, template: dict[str, Any], number: int, spec_revision: str
) -> dict[str, Any]:
    """The stored template of a revision; `spec_revision` names the user's template it was made from."""
    name = scaleset["metadata"]["name"]
    return {
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision,
            "namespace": scaleset["metadata"]["namespace"],
            "labels": {LABEL_SCALESET: name, LABEL_REVISION: revision},
            "annotations": {ANNOTATION_SPEC_REVISION: spec_revision},
            "ownerReferences": [owner_reference(scaleset)],
        },
        "data": {"template": template},
        "revision": number,
    }


def image_patch(template: dict[str, Any], revision: str, now: str) -> dict[str, Any]:
    """Strategic-merge patch that moves a live pod to `revision` in place: images, template metadata, labels."""
    metadata = template.get("metadata") or {}
    pod_spec = template.get("spec") or {}
    patch_spec: dict[str, Any] = {}
    for key in ("containers",):
        if pod_spec.get(key):
            patch_spec[key] = [{"name": c["name"], "image": c["image"]} for c in pod_spec[key]]
    return {
        "metadata": {
            "labels": {**(metadata.get("labels") or {}), LABEL_REVISION: revision},
            "annotations": {**(metadata.get("annotations") or {}), ANNOTATION_UPDATED_AT: now},
        },
        "spec": patch_spec,
    }


def _avoid_nodes_under_maintenance(pod_spec: dict[str, Any]) -> None:
    """Never schedule an instance onto a node labelled for maintenance, `pending` (being emptied) or
    `ready` (emptied, its maintenance about to run; the node tool removes the label when done): a
    required node affinity term, added to each of the template's own terms (they are ORed) or as the
    only one."""
    avoid = {
        "key": MAINTENANCE_LABEL,
        "operator": "NotIn",
        "values": [MAINTENANCE_PENDING, MAINTENANCE_READY],
    }
    affinity = pod_spec.setdefault("affinity", {})
    node_affinity = affinity.setdefault("nodeAffinity", {})
    required = node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})
    terms = required.setdefault("nodeSelectorTerms", [])
    if not terms:
        terms.append({})
    for term in terms:
        expressions = term.setdefault("matchExpressions", [])
        if avoid not in expressions:
            expressions.append(avoid)
