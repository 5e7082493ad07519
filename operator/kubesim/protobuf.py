r"""Protobuf request bodies.

kubectl's typed clients (`kubectl create namespace|configmap|secret|deployment|service|role|...`) send
built-in objects as `application/vnd.kubernetes.protobuf`: the magic `k8s\0`, then a runtime.Unknown
holding apiVersion, kind and the object's own protobuf encoding. These tables name the fields of the
kinds kubectl creates that way (numbers from k8s.io/api generated.proto); anything else is refused
with 415 as before. Field spec: (json name, type); a type ending in "*" keeps zero values (a pointer
in Go, so zero is meaningful), a leading "[]" marks repeated fields.
"""

from __future__ import annotations

import base64
from typing import Any

from kubesim.errors import ApiError, bad_request

PROTOBUF = "application/vnd.kubernetes.protobuf"
_PB: dict[str, dict[int, tuple[str, str]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta"), 2: ("raw", "raw")},
    "TypeMeta": {1: ("apiVersion", "string"), 2: ("kind", "string")},
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "[]OwnerReference"),
        14: ("finalizers", "[]string"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool*"),
        7: ("blockOwnerDeletion", "bool*"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "[]string")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "map-bytes"),
        4: ("immutable", "bool*"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map-bytes"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool*"),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta"),
        2: ("secrets", "[]ObjectReference"),
        3: ("imagePullSecrets", "[]LocalObjectReference"),
        4: ("automountServiceAccountToken", "bool*"),
    },
    "ObjectReference": {1: ("kind", "string"), 2: ("namespace", "string"), 3: ("name", "string")},
    "LocalObjectReference": {1: ("name", "string")},
    "Service": {1: ("metadata", "ObjectMeta"), 2: ("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: ("ports", "[]ServicePort"),
        2: ("selector", "map"),
        3: ("clusterIP", "string"),
        4: ("type", "string"),
        5: ("externalIPs", "[]string"),
        7: ("sessionAffinity", "string"),
        10: ("externalName", "string"),
        18: ("clusterIPs", "[]string"),
    },
    "ServicePort": {
        1: ("name", "string"),
        2: ("protocol", "string"),
        3: ("port", "int"),
        4: ("targetPort", "IntOrString"),
        5: ("nodePort", "int"),
    },
    "IntOrString": {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")},
    "Deployment": {1: ("metadata", "ObjectMeta"), 2: ("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: ("replicas", "int*"),
        2: ("selector", "LabelSelector"),
        3: ("template", "PodTemplateSpec"),
        4: ("strategy", "DeploymentStrategy"),
        5: ("minReadySeconds", "int"),
        6: ("revisionHistoryLimit", "int*"),
        7: ("paused", "bool"),
        9: ("progressDeadlineSeconds", "int*"),
    },
    "DeploymentStrategy": {1: ("type", "string")},
    "LabelSelector": {1: ("matchLabels", "map"), 2: ("matchExpressions", "[]LabelSelectorRequirement")},
    "LabelSelectorRequirement": {1: ("key", "string"), 2: ("operator", "string"), 3: ("values", "[]string")},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodSpec")},
    "PodSpec": {
        2: ("containers", "[]Container"),
        3: ("restartPolicy", "string"),
        4: ("terminationGracePeriodSeconds", "int*"),
        6: ("dnsPolicy", "string"),
        7: ("nodeSelector", "map"),
        8: ("serviceAccountName", "string"),
        10: ("nodeName", "string"),
        20: ("initContainers", "[]Container"),
    },
    "Container": {
        1: ("name", "string"),
        2: ("image", "string"),
        3: ("command", "[]string"),
        4: ("args", "[]string"),
        5: ("workingDir", "string"),
        6: ("ports", "[]ContainerPort"),
        7: ("env", "[]EnvVar"),
        8: ("resources", "ResourceRequirements"),
        14: ("imagePullPolicy", "string"),
    },
    "ContainerPort": {1: ("name", "string"), 3: ("containerPort", "int"), 4: ("protocol", "string")},
    "EnvVar": {1: ("name", "string"), 2: ("value", "string")},
    "ResourceRequirements": {1: ("limits", "map-quantity"), 2: ("requests", "map-quantity")},
    "Quantity": {1: ("string", "string")},
    "PodDisruptionBudget": {1: ("metadata", "ObjectMeta"), 2: ("spec", "PodDisruptionBudgetSpec")},
    "PodDisruptionBudgetSpec": {
        1: ("minAvailable", "IntOrString"),
        2: ("selector", "LabelSelector"),
        3: ("maxUnavailable", "IntOrString"),
        4: ("unhealthyPodEvictionPolicy", "string"),
    },
    "Role": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "ClusterRole": {1: ("metadata", "ObjectMeta"), 2: ("rules", "[]PolicyRule")},
    "PolicyRule": {
        1: ("verbs", "[]string"),
        2: ("apiGroups", "[]string"),
        3: ("resources", "[]string"),
        4: ("resourceNames", "[]string"),
        5: ("nonResourceURLs", "[]string"),
    },
    "RoleBinding": {1: ("metadata", "ObjectMeta"), 2: ("subjects", "[]Subject"), 3: ("roleRef", "RoleRef")},
    "ClusterRoleBinding": {
        1: ("metadata", "ObjectMeta"),
        2: ("subjects", "[]Subject"),
        3: ("roleRef", "RoleRef"),
    },
    "Subject": {
        1: ("kind", "string"),
        2: ("apiGroup", "string"),
        3: ("name", "string"),
        4: ("namespace", "string"),
    },
    "RoleRef": {1: ("apiGroup", "string"), 2: ("kind", "string"), 3: ("name", "string")},
}


def _pb_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _pb_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """The (field number, value) pairs of one message: ints for varints, bytes for length-delimited."""
    fields: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _pb_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _pb_varint(data, pos)
            fields.append((number, value))
        elif wire == 2:
            length, pos = _pb_varint(data, pos)
            fields.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


def _pb_message(data: bytes, message: str) -> dict[str, Any]:
    schema = _PB[message]
    out: dict[str, Any] = {}
    for number, value in _pb_fields(data):
        if number not in schema:
            continue  # a field kubesim does not model: dropped, as pruning would
        name, kind = schema[number]
        repeated = kind.startswith("[]")
        kind = kind.removeprefix("[]")
        keep_zero = kind.endswith("*") or repeated
        kind = kind.rstrip("*")
        decoded: Any
        if kind in ("map", "map-bytes", "map-quantity"):
            assert isinstance(value, bytes)
            entry = dict(_pb_fields(value))
            key = entry.get(1, b"")
            raw = entry.get(2, b"")
            assert isinstance(key, bytes) and isinstance(raw, bytes)
            if kind == "map-bytes":
                item: Any = base64.b64encode(raw).decode()
            elif kind == "map-quantity":
                item = _pb_message(raw, "Quantity").get("string", "")
            else:
                item = raw.decode()
            out.setdefault(name, {})[key.decode()] = item
            continue
        if kind == "string":
            assert isinstance(value, bytes)
            decoded = value.decode()
            if not decoded and not keep_zero:
                continue
        elif kind in ("int", "bool"):
            assert isinstance(value, int)
            signed = value - (1 << 64) if value >= 1 << 63 else value  # int64 fields go out two's complement
            decoded = bool(value) if kind == "bool" else signed
            if not value and not keep_zero:
                continue
        elif kind == "raw":
            decoded = value
        elif kind == "IntOrString":
            assert isinstance(value, bytes)
            parts = _pb_message(value, "IntOrString")
            decoded = parts.get("strVal", "") if parts.get("type") == 1 else parts.get("intVal", 0)
        else:
            assert isinstance(value, bytes)
            decoded = _pb_message(value, kind)
            if not decoded and not repeated and name not in ("resources", "strategy"):
                continue
        if repeated:
            out.setdefault(name, []).append(decoded)
        else:
            out[name] = decoded
    return out


def decode_protobuf(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a Kubernetes protobuf body; ApiError 415 for kinds kubesim cannot read."""
    unsupported = ApiError(
        415,
        "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml",
    )
    if not body.startswith(b"k8s\x00"):
        raise unsupported
    try:
        envelope = _pb_message(body[4:], "Unknown")
        type_meta = envelope.get("typeMeta", {})
        kind = type_meta.get("kind", "")
        if kind not in _PB or "metadata" not in {name for name, _ in _PB[kind].values()}:
            raise unsupported
        obj = _pb_message(envelope.get("raw", b""), kind)
    except (ValueError, AssertionError, UnicodeDecodeError) as error:
        raise bad_request(f"the protobuf body could not be decoded: {error}") from None
    return {"apiVersion": type_meta.get("apiVersion", ""), "kind": kind, **obj}
