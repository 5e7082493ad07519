"""Reading instances off their pods: readiness on the labelled revision, and when it began."""

from __future__ import annotations

from typing import Any

from scaleset_operator.identity import ANNOTATION_UPDATED_AT, LABEL_REVISION, instance_name
from scaleset_operator.planning.instances import ContainerWaiting, InstanceState, parse_time

# Registries the kubelet spells out in containerStatuses[].image while the spec says the short form.
_DEFAULT_REGISTRY_PREFIXES = ("docker.io/library/", "docker.io/", "index.docker.io/library/")


def normalise_image(image: str) -> str:
    for prefix in _DEFAULT_REGISTRY_PREFIXES:
        if image.startswith(prefix):
            image = image[len(prefix) :]
            break
    if ":" not in image.rsplit("/", 1)[-1] and "@" not in image:
        image += ":latest"
    return image


def pod_images(pod: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c.get("image", "") for c in (pod.get("spec") or {}).get("containers") or []}


def is_terminating(pod: dict[str, Any]) -> bool:
    return bool(pod["metadata"].get("deletionTimestamp"))


def ready_condition(pod: dict[str, Any]) -> dict[str, Any] | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            found: dict[str, Any] = condition
            return found
    return None


def runs_its_images(pod: dict[str, Any]) -> bool:
    """True when every container reports the image its spec asks for: an in-place patch has landed."""
    statuses = {s.get("name"): s for s in (pod.get("status") or {}).get("containerStatuses") or []}
    for name, image in pod_images(pod).items():
        status = statuses.get(name)
        if status is None or normalise_image(status.get("image", "")) != normalise_image(image):
            return False
    return True


def instance_state(scaleset: str, ordinal: int, pod: dict[str, Any] | None) -> InstanceState:
    name = instance_name(scaleset, ordinal)
    if pod is None:
        return InstanceState.missing(name, ordinal)
    metadata = pod["metadata"]
    condition = ready_condition(pod)
    ready = bool(condition and condition.get("status") == "True") and runs_its_images(pod)
    updated_at = parse_time((metadata.get("annotations") or {}).get(ANNOTATION_UPDATED_AT)) or parse_time(
        metadata.get("creationTimestamp")
    )
    status = pod.get("status") or {}
    return InstanceState(
        name=name,
        ordinal=ordinal,
        revision=(metadata.get("labels") or {}).get(LABEL_REVISION),
        ready=ready,
        ready_since=parse_time(condition.get("lastTransitionTime")) if condition and ready else None,
        updated_at=updated_at,
        exists=True,
        terminating=is_terminating(pod),
        waiting=waiting_containers(pod),
        started_at=parse_time(status.get("startTime")),
    )


def waiting_containers(pod: dict[str, Any]) -> tuple[ContainerWaiting, ...]:
    """The containers (init containers first) that wait to start, with the kubelet's reason and message."""
    status = pod.get("status") or {}
    found = []
    for container in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            found.append(
                ContainerWaiting(
                    str(container.get("name", "")), str(waiting["reason"]), str(waiting.get("message", ""))
                )
            )
    return tuple(found)
