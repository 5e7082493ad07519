"""Admission: the defaults, admission plugins and validation a write goes through before it is stored.

`Admission.prepare` is what the store runs on every create, update and status write: metadata
validation, the scheme defaults and validation of built-in kinds (pods through kubesim.podrules, events
through kubesim.eventrules), unknown-field pruning (fieldValidation), the ServiceAccount and
StorageObjectInUseProtection plugins, Service defaults and cluster IPs, CRD validation, and the
structural schemas of custom resources (kubesim.schema).
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
import re
from typing import TYPE_CHECKING, Any

from kubesim.errors import ApiError, Cause, bad_request, invalid, not_found
from kubesim.eventrules import convert_event, validate_event
from kubesim.microtime import check_micro_times
from kubesim.resources import CRD_GROUP, ResourceType
from kubesim.store import (
    FINALIZER_CRD_CLEANUP,
    FINALIZER_PVC_PROTECTION,
    NAMESPACE_FINALIZER,
    Warnings,
    meta_of,
    optional,
)

if TYPE_CHECKING:
    from kubesim.store import Store

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL_KINDS = {("", "namespaces"), ("", "services")}
_PATH_SEGMENT_KINDS = {"rbac.authorization.k8s.io"}


class Admission:
    """The store's admission chain; it keeps the state admission needs (the next cluster IP, schemas)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._next_cluster_ip = 2  # 10.96.0.1 is the default/kubernetes Service

    def prepare(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        operation: str,
        field_validation: str | None,
        warnings: Warnings | None,
    ) -> dict[str, Any]:
        """Apply the defaults and validation of the kind; `operation` is create, update or status."""
        key = rt.storage_key
        meta = meta_of(obj)
        validate_metadata(rt, obj)
        if not rt.is_custom:
            check_micro_times(rt.group, rt.version, rt.kind, obj)
            self._drop_unknown_fields(rt, obj, field_validation, warnings)
        if rt.is_custom:
            obj = self._admit_custom(rt, obj, old, operation, field_validation, warnings)
        elif key == ("", "pods"):
            podrules = optional("podrules")
            if podrules is not None:
                # Scheme defaults on every write, so that an update compares like with like.
                obj = podrules.default_pod(obj, creating=operation == "create")
                meta = meta_of(obj)
                if operation == "create":
                    self._admit_service_account(obj)
                    causes = podrules.validate_pod_create(obj)
                elif operation == "update" and old is not None:
                    causes = podrules.validate_pod_update(old, obj)
                else:
                    causes = []
                if causes:
                    raise invalid("Pod", meta["name"], list(causes))
        elif key == ("", "namespaces"):
            meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
            obj.setdefault("spec", {}).setdefault("finalizers", [NAMESPACE_FINALIZER])
            if operation == "create":
                obj["status"] = {"phase": "Active"}
        elif key == ("", "secrets"):
            fold_string_data(obj)
        elif key == ("", "services"):
            self._default_service(obj, old)
        elif key == ("", "persistentvolumeclaims"):
            obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
            if operation == "create":
                obj["status"] = {"phase": "Pending"}
                # The StorageObjectInUseProtection admission plugin: a claim in use outlives its deletion.
                if FINALIZER_PVC_PROTECTION not in (meta.get("finalizers") or []):
                    meta["finalizers"] = [*(meta.get("finalizers") or []), FINALIZER_PVC_PROTECTION]
        elif key == ("", "persistentvolumes"):
            spec = obj.setdefault("spec", {})
            spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
            spec.setdefault("volumeMode", "Filesystem")
            if operation == "create":
                obj["status"] = {"phase": "Pending"}
        elif key == ("", "events"):
            obj = convert_event(obj, "v1")
            obj.setdefault("involvedObject", {})
            strict = rt.group == "events.k8s.io"
            causes = validate_event(obj, strict=strict, creating=operation == "create")
            if causes:
                raise invalid("Event", meta_of(obj)["name"], causes, rt.group)
        elif key == (CRD_GROUP, "customresourcedefinitions"):
            obj = self._prepare_crd(obj, old, operation)
        elif key in (("apps", "deployments"), ("apps", "statefulsets")):
            obj.setdefault("spec", {}).setdefault("replicas", 1)
            if operation == "create":
                obj.pop("status", None)
        return obj

    def _admit_service_account(self, pod: dict[str, Any]) -> None:
        """The ServiceAccount admission plugin: a new pod's ServiceAccount must exist (403 otherwise)."""
        meta = meta_of(pod)
        namespace, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        account = str((pod.get("spec") or {}).get("serviceAccountName") or "default")
        sa_rt = self.store.registry.get("", "v1", "serviceaccounts")
        if sa_rt is None or self.store.exists(sa_rt, namespace, account):
            return
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{name}" is forbidden: error looking up service account {namespace}/{account}: '
            f'serviceaccount "{account}" not found',
            kind="pods",
            name=name,
        )

    def _drop_unknown_fields(
        self, rt: ResourceType, obj: dict[str, Any], field_validation: str | None, warnings: Warnings | None
    ) -> None:
        """Built-in kinds lose fields their types lack, as decoding into Go structs does (fieldValidation)."""
        schemas = optional("builtin_schemas")
        if schemas is None or not hasattr(schemas, "prune_unknown_fields"):
            return
        if field_validation == "Strict":
            unknown = schemas.unknown_fields(rt.group, rt.version, rt.kind, obj)
            if unknown:
                details = ", ".join(f'unknown field "{p}"' for p in unknown)
                raise bad_request(f"strict decoding error: {details}")
            return
        unknown = schemas.prune_unknown_fields(rt.group, rt.version, rt.kind, obj)
        if unknown and field_validation != "Ignore" and warnings is not None:
            warnings.extend(f'unknown field "{p}"' for p in unknown)

    def _admit_custom(
        self,
        rt: ResourceType,
        obj: dict[str, Any],
        old: dict[str, Any] | None,
        operation: str,
        field_validation: str | None,
        warnings: Warnings | None,
    ) -> dict[str, Any]:
        schema_module = optional("schema")
        if schema_module is None or rt.crd is None:
            return obj
        schema = self._schema(rt, schema_module)
        before = copy.deepcopy(obj)
        admitted = schema.admit_status(obj, old) if operation == "status" else schema.admit(obj, old)
        unknown = pruned_paths(before, admitted)
        if unknown:
            if field_validation == "Strict":
                details = ", ".join(f'unknown field "{p}"' for p in unknown)
                raise bad_request(f"strict decoding error: {details}")
            if field_validation != "Ignore" and warnings is not None:
                warnings.extend(f'unknown field "{p}"' for p in unknown)
        return dict(admitted)

    def _schema(self, rt: ResourceType, schema_module: Any) -> Any:
        cache: dict[tuple[str, str, int], Any] = self.__dict__.setdefault("_schema_cache", {})
        assert rt.crd is not None
        key = (rt.crd["metadata"]["name"], rt.version, id(rt.crd))
        if key not in cache:
            cache[key] = schema_module.CustomResourceSchema(rt.crd, rt.version)
        return cache[key]

    def _prepare_crd(self, crd: dict[str, Any], old: dict[str, Any] | None, operation: str) -> dict[str, Any]:
        if operation == "status":
            return crd
        schema_module = optional("schema")
        from kubesim.resources import crd_types

        for rt in crd_types(crd):  # names, scope, versions: 422 if malformed
            existing = self.store.registry.get(rt.group, rt.version, rt.plural)
            if existing is not None and not existing.is_custom:
                raise invalid(
                    "CustomResourceDefinition",
                    crd["metadata"]["name"],
                    [
                        Cause(
                            "spec.group",
                            f"{rt.group}/{rt.version} {rt.plural} is served by the API server itself",
                        )
                    ],
                    CRD_GROUP,
                )
        if schema_module is not None:
            schema_module.validate_crd(crd)
        if operation == "update" and old is not None:
            for immutable in ("group", "scope"):
                if crd["spec"].get(immutable) != old["spec"].get(immutable):
                    raise invalid(
                        "CustomResourceDefinition",
                        crd["metadata"]["name"],
                        [Cause(f"spec.{immutable}", "Invalid value: field is immutable")],
                        CRD_GROUP,
                    )
        meta = meta_of(crd)
        if FINALIZER_CRD_CLEANUP not in (meta.get("finalizers") or []) and not meta.get("deletionTimestamp"):
            meta["finalizers"] = [*(meta.get("finalizers") or []), FINALIZER_CRD_CLEANUP]
        for version in crd["spec"].get("versions", []):
            version.setdefault("served", True)
        return crd

    def _default_service(self, svc: dict[str, Any], old: dict[str, Any] | None) -> None:
        spec = svc.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))
        if spec["type"] == "ExternalName":
            return
        if old is not None and old.get("spec", {}).get("clusterIP") and not spec.get("clusterIP"):
            spec["clusterIP"] = old["spec"]["clusterIP"]
        if not spec.get("clusterIP"):
            spec["clusterIP"] = str(ipaddress.IPv4Address("10.96.0.0") + self._next_cluster_ip)
            self._next_cluster_ip += 1
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        svc.setdefault("status", {"loadBalancer": {}})


def validate_metadata(rt: ResourceType, obj: dict[str, Any]) -> None:
    meta = obj["metadata"]
    causes: list[Cause] = []
    for mapping in ("labels", "annotations"):
        value = meta.get(mapping)
        if value is None:
            continue
        if not isinstance(value, dict):
            causes.append(Cause(f"metadata.{mapping}", "Invalid value: must be a map of strings"))
            continue
        for k, v in value.items():
            if not isinstance(v, str):
                causes.append(Cause(f"metadata.{mapping}", f'Invalid value: "{k}": value must be a string'))
    labels = meta.get("labels") or {}
    if isinstance(labels, dict):
        from kubesim.selectors import _KEY_RE, _VALUE_RE

        for k, v in labels.items():
            if not _KEY_RE.match(str(k)):
                causes.append(
                    Cause(
                        "metadata.labels",
                        f"Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.'",
                    )
                )
            elif isinstance(v, str) and not _VALUE_RE.match(v):
                causes.append(
                    Cause(
                        "metadata.labels",
                        f"Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    )
                )
    finalizers = meta.get("finalizers")
    if finalizers is not None and not (
        isinstance(finalizers, list) and all(isinstance(f, str) for f in finalizers)
    ):
        causes.append(Cause("metadata.finalizers", "Invalid value: must be a list of strings"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        for required in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(required):
                causes.append(
                    Cause(f"metadata.ownerReferences[{i}].{required}", "Required value", "FieldValueRequired")
                )
    controllers = [r for r in meta.get("ownerReferences") or [] if r.get("controller")]
    if len(controllers) > 1:
        causes.append(
            Cause(
                "metadata.ownerReferences",
                "Invalid value: Only one reference can have Controller set to true",
            )
        )
    if causes:
        raise invalid(rt.kind, str(meta.get("name", "")), causes, rt.group)


def validate_name(rt: ResourceType, name: str) -> None:
    """A new object's name: an RFC 1123 subdomain, a label for namespaces and services, a path segment for
    RBAC kinds."""
    if rt.group in _PATH_SEGMENT_KINDS:
        ok = name not in (".", "..") and "/" not in name and "%" not in name
        message = 'may not contain "/" or "%"'
    elif rt.storage_key in _DNS_LABEL_KINDS:
        ok = len(name) <= 63 and bool(_DNS_LABEL.match(name))
        message = (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
            "and must start and end with an alphanumeric character"
        )
    else:
        ok = len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))
        message = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character"
        )
    if not ok:
        raise invalid(
            rt.kind, name, [Cause("metadata.name", f'Invalid value: "{name}": {message}')], rt.group
        )


def check_namespace_open(store: Store, rt: ResourceType, namespace: str, name: str) -> None:
    """The NamespaceLifecycle admission plugin: objects go into a namespace that exists (404) and is not
    terminating (403)."""
    found = store.lookup(("", "namespaces"), ("", namespace))
    if found is None:
        raise not_found("namespaces", namespace)
    if found[1].get("metadata", {}).get("deletionTimestamp"):
        raise ApiError(
            403,
            "Forbidden",
            f'{rt.qualified_name} "{name}" is forbidden: unable to create new content in namespace '
            f"{namespace} because it is being terminated",
            kind=rt.plural,
            name=name,
            group=rt.group,
            causes=[Cause("", f"namespace {namespace} is being terminated", "NamespaceTerminating")],
        )


def fold_string_data(secret: dict[str, Any]) -> None:
    """Secrets accept `stringData` as a write-only convenience merged into base64 `data`."""
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {}) if string_data or "data" in secret else None
    if data is None:
        return
    for k, v in string_data.items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    for k, v in data.items():
        try:
            base64.b64decode(str(v), validate=True)
        except (binascii.Error, ValueError):
            name = secret.get("metadata", {}).get("name", "")
            raise invalid(
                "Secret", name, [Cause(f"data[{k}]", "Invalid value: illegal base64 data")]
            ) from None
    secret.setdefault("type", "Opaque")


def pruned_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths present in `before` but dropped from `after`: the unknown fields pruning removed."""
    paths: list[str] = []
    if isinstance(before, dict) and isinstance(after, dict):
        for k, v in before.items():
            path = f"{prefix}.{k}" if prefix else str(k)
            if k not in after:
                paths.append(path)
            else:
                paths.extend(pruned_paths(v, after[k], path))
    elif isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            paths.extend(pruned_paths(b, a, f"{prefix}[{i}]"))
    return paths
