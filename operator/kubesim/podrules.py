"""Pod defaults and the API server's pod validation: what a new pod needs, and what an update may change."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

from kubesim.errors import Cause

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

_LABEL_MESSAGE = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

# The words of ValidatePodUpdate when anything else in the spec changes.
UPDATE_FORBIDDEN_MESSAGE = (
    "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,"
    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),"
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"
)

_CONTAINER_GROUPS = ("initContainers", "containers")

# Tolerations the DefaultTolerationSeconds admission plugin adds to every pod.
_DEFAULT_TOLERATIONS = (
    {
        "key": "node.kubernetes.io/not-ready",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
    {
        "key": "node.kubernetes.io/unreachable",
        "operator": "Exists",
        "effect": "NoExecute",
        "tolerationSeconds": 300,
    },
)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return '"null"'
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _required(path: str) -> Cause:
    return Cause(path, "Required value", "FieldValueRequired")


def _invalid(path: str, value: Any, detail: str) -> Cause:
    return Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueInvalid")


def _not_supported(path: str, value: Any, allowed: tuple[str, ...]) -> Cause:
    shown = ", ".join(json.dumps(v) for v in allowed)
    return Cause(
        path, f"Unsupported value: {_show(value)}: supported values: {shown}", "FieldValueNotSupported"
    )


def _forbidden(path: str, detail: str) -> Cause:
    return Cause(path, f"Forbidden: {detail}", "FieldValueForbidden")


# ---------------------------------------------------------------------------------------------------------
# Defaults


def _pull_policy(image: str) -> str:
    """Always for :latest or untagged images, IfNotPresent otherwise (digests included)."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    if isinstance(probe.get("httpGet"), dict):
        probe["httpGet"].setdefault("path", "/")
        probe["httpGet"].setdefault("scheme", "HTTP")


def _default_container(container: dict[str, Any]) -> None:
    container.setdefault("imagePullPolicy", _pull_policy(str(container.get("image", ""))))
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    resources = container.setdefault("resources", {})
    if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        # Requests default to limits for resources that have a limit and no request.
        requests = resources.setdefault("requests", {})
        for name, limit in resources["limits"].items():
            requests.setdefault(name, limit)
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        field_ref = (env.get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        if isinstance(field_ref, dict):
            field_ref.setdefault("apiVersion", "v1")
    for name in ("readinessProbe", "livenessProbe", "startupProbe"):
        _default_probe(container.get(name))


def _default_volume(volume: dict[str, Any]) -> None:
    for source in ("configMap", "secret", "downwardAPI", "projected"):
        if isinstance(volume.get(source), dict):
            volume[source].setdefault("defaultMode", 420)
    if isinstance(volume.get("hostPath"), dict):
        volume["hostPath"].setdefault("type", "")


def qos_class(spec: dict[str, Any]) -> str:
    """The pod's QoS class from its containers' requests and limits (status.qosClass)."""
    containers = [c for g in _CONTAINER_GROUPS for c in spec.get(g) or [] if isinstance(c, dict)]
    any_resources = False
    guaranteed = bool(containers)
    for container in containers:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = resources.get("requests") or {}
        if limits or requests:
            any_resources = True
        for name in ("cpu", "memory"):
            if name not in limits or requests.get(name, limits[name]) != limits[name]:
                guaranteed = False
    if not any_resources:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def default_pod(pod: dict[str, Any], *, creating: bool = True) -> dict[str, Any]:
    """A copy of the pod with the defaults the API server fills in (scheme defaults and the admission
    plugins that always run: ServiceAccount, Priority, DefaultTolerationSeconds).

    On create the status is what a new pod has: Pending, with its QoS class.
    """
    result = copy.deepcopy(pod)
    spec = result.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    spec.setdefault("priority", 0)
    if creating or "serviceAccountName" in spec or "serviceAccount" in spec:
        account = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        spec["serviceAccountName"] = account
        spec["serviceAccount"] = account
    if creating:
        tolerations = spec.setdefault("tolerations", [])
        for default in _DEFAULT_TOLERATIONS:
            if not any(isinstance(t, dict) and t.get("key") == default["key"] for t in tolerations):
                tolerations.append(dict(default))
    for group in (*_CONTAINER_GROUPS, "ephemeralContainers"):
        for container in spec.get(group) or []:
            if isinstance(container, dict):
                _default_container(container)
    for volume in spec.get("volumes") or []:
        if isinstance(volume, dict):
            _default_volume(volume)
    if creating:
        result["status"] = {"phase": "Pending", "qosClass": qos_class(spec)}
    return result


# ---------------------------------------------------------------------------------------------------------
# Create


def validate_pod_create(pod: dict[str, Any]) -> list[Cause]:
    """Field errors of a new pod, worded as the API server words them."""
    causes: list[Cause] = []
    name = (pod.get("metadata") or {}).get("name")
    if not name:
        causes.append(
            Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired")
        )
    elif len(name) > 253:
        causes.append(_invalid("metadata.name", name, "must be no more than 253 characters"))
    elif not _DNS1123_SUBDOMAIN.match(name):
        causes.append(_invalid("metadata.name", name, _SUBDOMAIN_MESSAGE))
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        return [*causes, _required("spec")]
    causes.extend(_spec_causes(spec))
    return causes


def _spec_causes(spec: dict[str, Any]) -> Iterator[Cause]:
    if not spec.get("containers"):
        yield _required("spec.containers")
    volumes = [v for v in spec.get("volumes") or [] if isinstance(v, dict)]
    volume_names: set[str] = set()
    for i, volume in enumerate(volumes):
        path = f"spec.volumes[{i}].name"
        volume_name = volume.get("name")
        if not volume_name:
            yield _required(path)
        elif not _DNS1123_LABEL.match(str(volume_name)):
            yield _invalid(path, volume_name, _LABEL_MESSAGE)
        elif volume_name in volume_names:
            yield Cause(path, f"Duplicate value: {_show(volume_name)}", "FieldValueDuplicate")
        volume_names.add(str(volume_name))
    names: set[str] = set()
    for group in _CONTAINER_GROUPS:
        for i, container in enumerate(spec.get(group) or []):
            yield from _container_causes(container, f"spec.{group}[{i}]", names, volume_names)
    restart = spec.get("restartPolicy")
    if restart is not None and restart not in ("Always", "OnFailure", "Never"):
        yield _not_supported("spec.restartPolicy", restart, ("Always", "OnFailure", "Never"))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"):
        yield _not_supported(
            "spec.dnsPolicy", dns, ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
        )
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline < 1):
        yield _invalid("spec.activeDeadlineSeconds", deadline, "must be between 1 and 2147483647, inclusive")
    grace = spec.get("terminationGracePeriodSeconds")
    if grace is not None and not isinstance(grace, int):
        yield _invalid("spec.terminationGracePeriodSeconds", grace, "must be an integer")


def _container_causes(container: Any, path: str, names: set[str], volumes: set[str]) -> Iterator[Cause]:
    if not isinstance(container, dict):
        yield _invalid(path, container, "must be an object")
        return
    name = container.get("name")
    if not name:
        yield _required(f"{path}.name")
    elif not _DNS1123_LABEL.match(str(name)) or len(str(name)) > 63:
        yield _invalid(f"{path}.name", name, _LABEL_MESSAGE)
    elif name in names:
        yield Cause(f"{path}.name", f"Duplicate value: {_show(name)}", "FieldValueDuplicate")
    if name:
        names.add(str(name))
    if not container.get("image"):
        yield _required(f"{path}.image")
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        yield _not_supported(f"{path}.imagePullPolicy", policy, ("Always", "IfNotPresent", "Never"))
    for i, port in enumerate(container.get("ports") or []):
        port_path = f"{path}.ports[{i}]"
        number = port.get("containerPort") if isinstance(port, dict) else None
        if number is None:
            yield _required(f"{port_path}.containerPort")
        elif not isinstance(number, int) or not 1 <= number <= 65535:
            yield _invalid(f"{port_path}.containerPort", number, "must be between 1 and 65535, inclusive")
        protocol = port.get("protocol") if isinstance(port, dict) else None
        if protocol is not None and protocol not in ("TCP", "UDP", "SCTP"):
            yield _not_supported(f"{port_path}.protocol", protocol, ("SCTP", "TCP", "UDP"))
    for i, mount in enumerate(container.get("volumeMounts") or []):
        mount_path = f"{path}.volumeMounts[{i}]"
        volume = mount.get("name") if isinstance(mount, dict) else None
        if not volume:
            yield _required(f"{mount_path}.name")
        elif volume not in volumes:
            yield Cause(f"{mount_path}.name", f"Not found: {_show(volume)}", "FieldValueNotFound")
        if not (isinstance(mount, dict) and mount.get("mountPath")):
            yield _required(f"{mount_path}.mountPath")


# ---------------------------------------------------------------------------------------------------------
# Update


def validate_pod_update(old: dict[str, Any], new: dict[str, Any]) -> list[Cause]:
    """Field errors of a pod update: a pod's spec is immutable but for a few fields (ValidatePodUpdate)."""
    old_spec: dict[str, Any] = copy.deepcopy(old.get("spec") or {})
    new_spec: dict[str, Any] = copy.deepcopy(new.get("spec") or {})
    causes: list[Cause] = []
    for group in _CONTAINER_GROUPS:
        for i, container in enumerate(new_spec.get(group) or []):
            if isinstance(container, dict) and not container.get("image"):
                causes.append(_required(f"spec.{group}[{i}].image"))
    causes.extend(
        _deadline_causes(old_spec.get("activeDeadlineSeconds"), new_spec.get("activeDeadlineSeconds"))
    )
    toleration_causes = _toleration_causes(
        old_spec.get("tolerations") or [], new_spec.get("tolerations") or []
    )
    causes.extend(toleration_causes)
    gate_causes = _scheduling_gate_causes(
        old_spec.get("schedulingGates") or [], new_spec.get("schedulingGates") or []
    )
    causes.extend(gate_causes)

    # Carry the mutable fields over from old, then anything still different is a forbidden change.
    munged = copy.deepcopy(new_spec)
    for group in _CONTAINER_GROUPS:
        old_containers = old_spec.get(group) or []
        new_containers = munged.get(group) or []
        if len(old_containers) == len(new_containers):
            for before, after in zip(old_containers, new_containers, strict=True):
                if isinstance(before, dict) and isinstance(after, dict):
                    if "image" in before:
                        after["image"] = before["image"]
                    else:
                        after.pop("image", None)
    # These have their own checks above; a bad change to them is reported there, not as a spec change.
    for key in ("activeDeadlineSeconds", "tolerations", "schedulingGates"):
        _carry(munged, old_spec, key)
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and munged.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    # Binding a pod to a node sets nodeName once.
    if not old_spec.get("nodeName") and munged.get("nodeName"):
        _carry(munged, old_spec, "nodeName")
    # Ephemeral containers change through their own subresource, never through an update.
    _carry(munged, old_spec, "ephemeralContainers")
    if munged != old_spec:
        diff = "\n".join(_differences(old_spec, munged, "spec"))
        causes.append(
            _forbidden("spec", f"{UPDATE_FORBIDDEN_MESSAGE}\n{diff}" if diff else UPDATE_FORBIDDEN_MESSAGE)
        )
    return causes


def _carry(target: dict[str, Any], source: dict[str, Any], key: str) -> None:
    if key in source:
        target[key] = copy.deepcopy(source[key])
    else:
        target.pop(key, None)


def _deadline_causes(old: Any, new: Any) -> Iterator[Cause]:
    path = "spec.activeDeadlineSeconds"
    if old is None or old == new:
        if new is not None and (not isinstance(new, int) or new < 1):
            yield _invalid(path, new, "must be between 1 and 2147483647, inclusive")
        return
    if new is None:
        yield _invalid(path, None, "must not update from a positive integer to nil value")
    elif not isinstance(new, int) or new < 1:
        yield _invalid(path, new, "must be between 1 and 2147483647, inclusive")
    elif new > old:
        yield _invalid(path, new, "must be less than or equal to previous value")


def _toleration_causes(old: list[Any], new: list[Any]) -> list[Cause]:
    """Existing tolerations must stay (only their tolerationSeconds may change); new ones may be added."""
    for before in old:
        if not isinstance(before, dict):
            continue
        wanted = {k: v for k, v in before.items() if k != "tolerationSeconds"}
        if not any(
            isinstance(after, dict) and {k: v for k, v in after.items() if k != "tolerationSeconds"} == wanted
            for after in new
        ):
            return [
                _forbidden(
                    "spec.tolerations", "existing toleration can not be modified except its tolerationSeconds"
                )
            ]
    return []


def _scheduling_gate_causes(old: list[Any], new: list[Any]) -> list[Cause]:
    """Scheduling gates can only be removed once a pod exists."""
    old_names = {g.get("name") for g in old if isinstance(g, dict)}
    for gate in new:
        name = gate.get("name") if isinstance(gate, dict) else gate
        if name not in old_names:
            return [
                _forbidden(
                    "spec.schedulingGates",
                    f"only deletion is allowed, but found new scheduling gate '{name}'",
                )
            ]
    return []


def _differences(old: Any, new: Any, path: str) -> Iterator[str]:
    """The changed fields, one line each, to say what an update tried to change."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key, _MISSING) != new.get(key, _MISSING):
                yield from _differences(old.get(key, _MISSING), new.get(key, _MISSING), f"{path}.{key}")
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (before, after) in enumerate(zip(old, new, strict=True)):
            if before != after:
                yield from _differences(before, after, f"{path}[{i}]")
    else:
        yield f"  {path}: {_describe(old)} -> {_describe(new)}"


class _Missing:
    def __repr__(self) -> str:
        return "<unset>"


_MISSING: Any = _Missing()


def _describe(value: Any) -> str:
    return "<unset>" if value is _MISSING else _show(value)
