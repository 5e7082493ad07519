"""The registry of resource types kubesim serves: built-in kinds and the kinds that CRDs add."""

from __future__ import annotations

import datetime
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from kubesim.errors import Cause, invalid

ALL_VERBS: tuple[str, ...] = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)
CRD_GROUP = "apiextensions.k8s.io"


@dataclass(frozen=True)
class ScaleSubresource:
    """Where a custom resource keeps its replica counts (CustomResourceSubresourceScale)."""

    spec_replicas_path: str
    status_replicas_path: str
    label_selector_path: str | None = None


@dataclass(frozen=True)
class PrinterColumn:
    """One column of `kubectl get` output (CustomResourceColumnDefinition).

    Built-in kinds compute some cells (a pod's READY, RESTARTS) rather than follow a JSONPath;
    `compute` does that and takes precedence over `json_path`.
    """

    name: str
    type: str
    json_path: str = ""
    description: str = ""
    priority: int = 0
    format: str = ""
    compute: Callable[[dict[str, Any]], Any] | None = field(default=None, compare=False, repr=False)

    def definition(self) -> dict[str, Any]:
        """The meta.k8s.io/v1 TableColumnDefinition for this column."""
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


@dataclass(frozen=True)
class ResourceType:
    """A resource the server serves at one group/version, with what a client needs to know about it."""

    group: str
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    status_subresource: bool = False
    scale: ScaleSubresource | None = None
    printer_columns: tuple[PrinterColumn, ...] = ()
    # The openAPIV3Schema of a CRD version; None for built-ins (openapi.py describes those itself).
    schema: dict[str, Any] | None = None
    # The CRD that defines this type, None for built-ins.
    crd: dict[str, Any] | None = None
    list_kind: str = ""
    # Whether metadata.generation moves on spec changes (CRDs and workload kinds; not pods).
    tracks_generation: bool = False
    # The storage version of a multi-version CRD; objects are stored once and served at any version.
    storage_version: str = ""
    # Other subresources served on this type (e.g. pods/binding, pods/eviction).
    extra_subresources: tuple[str, ...] = ()
    # The group whose store holds these objects when it is not the type's own: events.k8s.io/v1 Events
    # are core/v1 Events served in another shape.
    storage_group: str | None = None

    def __post_init__(self) -> None:
        if not self.list_kind:
            object.__setattr__(self, "list_kind", self.kind + "List")
        if not self.storage_version:
            object.__setattr__(self, "storage_version", self.version)

    @property
    def api_version(self) -> str:
        """The apiVersion objects of this type carry: "v1" for the core group, else "group/version"."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        return (self.group, self.version)

    @property
    def storage_key(self) -> tuple[str, str]:
        """Objects of all versions of one kind share a store under this key."""
        return (self.group if self.storage_group is None else self.storage_group, self.plural)

    @property
    def storage_api_version(self) -> str:
        """The apiVersion objects are stored at (they are converted to `api_version` when served)."""
        group = self.group if self.storage_group is None else self.storage_group
        return f"{group}/{self.storage_version}" if group else self.storage_version

    @property
    def is_custom(self) -> bool:
        return self.crd is not None

    @property
    def subresources(self) -> tuple[str, ...]:
        """Names of the subresources served below this type, for discovery."""
        names: list[str] = []
        if self.status_subresource:
            names.append("status")
        if self.scale is not None:
            names.append("scale")
        names.extend(self.extra_subresources)
        return tuple(names)

    @property
    def qualified_name(self) -> str:
        """`plural.group` as `kubectl get` and error messages name it (just `plural` in the core group)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


# ---------------------------------------------------------------------------------------------------------
# Printer columns for built-in kinds: what `kubectl get` shows (as the Kubernetes table printers do).


def _pod_ready(pod: dict[str, Any]) -> str:
    containers = pod.get("spec", {}).get("containers", []) or []
    statuses = pod.get("status", {}).get("containerStatuses", []) or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(pod: dict[str, Any]) -> str:
    """The STATUS column: the phase, or the reason a container is waiting/terminated, as kubectl shows."""
    if pod.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status", {}) or {}
    reason = str(status.get("reason") or status.get("phase") or "Pending")
    for cs in status.get("initContainerStatuses", []) or []:
        state = cs.get("state", {}) or {}
        if "terminated" in state and state["terminated"].get("exitCode", 0) != 0:
            return "Init:" + str(state["terminated"].get("reason") or "Error")
        if "waiting" in state and state["waiting"].get("reason") not in (None, "PodInitializing"):
            return "Init:" + str(state["waiting"]["reason"])
    for cs in reversed(status.get("containerStatuses", []) or []):
        state = cs.get("state", {}) or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = str(state["waiting"]["reason"])
        elif "terminated" in state:
            reason = str(
                state["terminated"].get("reason") or f"ExitCode:{state['terminated'].get('exitCode', 0)}"
            )
    return reason


def _pod_restarts(pod: dict[str, Any]) -> str:
    # A string, as the API server's column is ("3", or "3 (2m ago)" when it knows the last restart).
    return str(
        sum(int(s.get("restartCount", 0)) for s in pod.get("status", {}).get("containerStatuses", []) or [])
    )


def _node_status(node: dict[str, Any]) -> str:
    for cond in node.get("status", {}).get("conditions", []) or []:
        if cond.get("type") == "Ready":
            text = "Ready" if cond.get("status") == "True" else "NotReady"
            if node.get("spec", {}).get("unschedulable"):
                text += ",SchedulingDisabled"
            return text
    return "Unknown"


def _node_roles(node: dict[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    roles = [
        k[len(prefix) :] for k in node.get("metadata", {}).get("labels", {}) or {} if k.startswith(prefix)
    ]
    return ",".join(sorted(roles)) or "<none>"


def _count(path: tuple[str, ...]) -> Callable[[dict[str, Any]], int]:
    def count(obj: dict[str, Any]) -> int:
        value: Any = obj
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return len(value) if isinstance(value, dict | list) else 0

    return count


def _pvc_capacity(pvc: dict[str, Any]) -> str:
    return str(pvc.get("status", {}).get("capacity", {}).get("storage", ""))


def _pvc_access_modes(obj: dict[str, Any]) -> str:
    short = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    return ",".join(short.get(m, m) for m in obj.get("spec", {}).get("accessModes", []) or [])


def _event_object(event: dict[str, Any]) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _lease_holder(lease: dict[str, Any]) -> str:
    return str(lease.get("spec", {}).get("holderIdentity", "") or "")


def _service_ports(svc: dict[str, Any]) -> str:
    ports = svc.get("spec", {}).get("ports", []) or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _crd_created_at(crd: dict[str, Any]) -> str:
    return str(crd.get("metadata", {}).get("creationTimestamp", ""))


NAME = PrinterColumn("Name", "string", ".metadata.name", "Name must be unique within a namespace.", 0, "name")
AGE = PrinterColumn("Age", "date", ".metadata.creationTimestamp", "CreationTimestamp of the object.")


def _columns(*middle: PrinterColumn) -> tuple[PrinterColumn, ...]:
    return (NAME, *middle, AGE)


POD_COLUMNS = _columns(
    PrinterColumn("Ready", "string", description="The number of ready containers.", compute=_pod_ready),
    PrinterColumn("Status", "string", description="The aggregate pod status.", compute=_pod_status),
    PrinterColumn(
        "Restarts", "string", description="The number of container restarts.", compute=_pod_restarts
    ),
)
POD_COLUMNS = (
    *POD_COLUMNS,
    PrinterColumn("IP", "string", ".status.podIP", "The pod IP.", priority=1),
    PrinterColumn("Node", "string", ".spec.nodeName", "The node the pod runs on.", priority=1),
)


# Deployments and StatefulSets scale like CRDs with these paths; the selector is a LabelSelector object.
WORKLOAD_SCALE = ScaleSubresource(".spec.replicas", ".status.replicas", ".spec.selector")


def _builtin(
    group: str,
    version: str,
    kind: str,
    plural: str,
    *,
    namespaced: bool = True,
    short_names: Iterable[str] = (),
    categories: Iterable[str] = (),
    status: bool = False,
    columns: tuple[PrinterColumn, ...] = (),
    generation: bool = False,
    extra: Iterable[str] = (),
    scale: ScaleSubresource | None = None,
    storage_group: str | None = None,
) -> ResourceType:
    return ResourceType(
        group=group,
        version=version,
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        short_names=tuple(short_names),
        categories=tuple(categories),
        status_subresource=status,
        printer_columns=columns or _columns(),
        tracks_generation=generation,
        extra_subresources=tuple(extra),
        scale=scale,
        storage_group=storage_group,
    )


def builtin_types() -> list[ResourceType]:
    """Every built-in resource type, in discovery order."""
    return [
        _builtin(
            "",
            "v1",
            "Namespace",
            "namespaces",
            namespaced=False,
            short_names=["ns"],
            status=True,
            columns=_columns(PrinterColumn("Status", "string", ".status.phase", "The namespace phase.")),
        ),
        _builtin(
            "",
            "v1",
            "Pod",
            "pods",
            short_names=["po"],
            categories=["all"],
            status=True,
            columns=POD_COLUMNS,
            extra=("binding", "eviction"),
        ),
        _builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            short_names=["pvc"],
            status=True,
            columns=_columns(
                PrinterColumn("Status", "string", ".status.phase"),
                PrinterColumn("Volume", "string", ".spec.volumeName"),
                PrinterColumn("Capacity", "string", compute=_pvc_capacity),
                PrinterColumn("Access Modes", "string", compute=_pvc_access_modes),
                PrinterColumn("StorageClass", "string", ".spec.storageClassName"),
            ),
        ),
        _builtin(
            "",
            "v1",
            "PersistentVolume",
            "persistentvolumes",
            namespaced=False,
            short_names=["pv"],
            status=True,
            columns=_columns(
                PrinterColumn("Capacity", "string", ".spec.capacity.storage"),
                PrinterColumn("Access Modes", "string", compute=_pvc_access_modes),
                PrinterColumn("Reclaim Policy", "string", ".spec.persistentVolumeReclaimPolicy"),
                PrinterColumn("Status", "string", ".status.phase"),
                PrinterColumn("Claim", "string", ".spec.claimRef.name"),
            ),
        ),
        _builtin(
            "",
            "v1",
            "Event",
            "events",
            short_names=["ev"],
            columns=(
                PrinterColumn("Last Seen", "date", ".lastTimestamp"),
                PrinterColumn("Type", "string", ".type"),
                PrinterColumn("Reason", "string", ".reason"),
                PrinterColumn("Object", "string", compute=_event_object),
                PrinterColumn("Message", "string", ".message"),
            ),
        ),
        _builtin(
            "",
            "v1",
            "ConfigMap",
            "configmaps",
            short_names=["cm"],
            columns=_columns(PrinterColumn("Data", "integer", compute=_count(("data",)))),
        ),
        _builtin(
            "",
            "v1",
            "Secret",
            "secrets",
            columns=_columns(
                PrinterColumn("Type", "string", ".type"),
                PrinterColumn("Data", "integer", compute=_count(("data",))),
            ),
        ),
        _builtin(
            "",
            "v1",
            "Service",
            "services",
            short_names=["svc"],
            categories=["all"],
            status=True,
            columns=_columns(
                PrinterColumn("Type", "string", ".spec.type"),
                PrinterColumn("Cluster-IP", "string", ".spec.clusterIP"),
                PrinterColumn("Port(s)", "string", compute=_service_ports),
            ),
        ),
        _builtin(
            "",
            "v1",
            "Node",
            "nodes",
            namespaced=False,
            short_names=["no"],
            status=True,
            columns=_columns(
                PrinterColumn("Status", "string", compute=_node_status),
                PrinterColumn("Roles", "string", compute=_node_roles),
                PrinterColumn("Version", "string", ".status.nodeInfo.kubeletVersion"),
            ),
        ),
        _builtin(
            "",
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            short_names=["sa"],
            columns=_columns(PrinterColumn("Secrets", "integer", compute=_count(("secrets",)))),
        ),
        _builtin(
            "",
            "v1",
            "Endpoints",
            "endpoints",
            short_names=["ep"],
        ),
        _builtin(
            "apps",
            "v1",
            "ControllerRevision",
            "controllerrevisions",
            columns=_columns(PrinterColumn("Revision", "integer", ".revision")),
        ),
        _builtin(
            "apps",
            "v1",
            "Deployment",
            "deployments",
            short_names=["deploy"],
            categories=["all"],
            status=True,
            generation=True,
            scale=WORKLOAD_SCALE,
        ),
        _builtin(
            "apps",
            "v1",
            "StatefulSet",
            "statefulsets",
            short_names=["sts"],
            categories=["all"],
            status=True,
            generation=True,
            scale=WORKLOAD_SCALE,
        ),
        _builtin(
            "events.k8s.io",
            "v1",
            "Event",
            "events",
            short_names=["ev"],
            columns=(
                PrinterColumn("Last Seen", "date", ".eventTime"),
                PrinterColumn("Type", "string", ".type"),
                PrinterColumn("Reason", "string", ".reason"),
                PrinterColumn("Object", "string", compute=_event_object),
                PrinterColumn("Message", "string", ".note"),
            ),
            storage_group="",
        ),
        _builtin(
            "coordination.k8s.io",
            "v1",
            "Lease",
            "leases",
            columns=_columns(PrinterColumn("Holder", "string", compute=_lease_holder)),
        ),
        _builtin(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            short_names=["pdb"],
            status=True,
            # As the API server's strategy: generation 1 at create, one more for each change of spec,
            # which status.observedGeneration then acknowledges (an eviction waits until it does).
            generation=True,
        ),
        # Stored and served, never enforced: kubesim has no network between pods.
        _builtin("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", short_names=["netpol"]),
        _builtin("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        _builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings"),
        _builtin("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", namespaced=False),
        _builtin(
            "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", namespaced=False
        ),
        _builtin(
            CRD_GROUP,
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            namespaced=False,
            short_names=["crd", "crds"],
            categories=["api-extensions"],
            status=True,
            columns=(NAME, PrinterColumn("Created At", "date", compute=_crd_created_at)),
            generation=True,
        ),
    ]


# ---------------------------------------------------------------------------------------------------------
# CustomResourceDefinitions


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CRD serves, one per served version (storage version first).

    Raises ApiError 422 when the CRD lacks what a served type needs (names, group, a storage version).
    """
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = crd.get("metadata", {}).get("name", "")
    causes: list[Cause] = []
    group = spec.get("group") or ""
    plural = names.get("plural") or ""
    kind = names.get("kind") or ""
    if not group:
        causes.append(Cause("spec.group", "Required value", "FieldValueRequired"))
    if not plural:
        causes.append(Cause("spec.names.plural", "Required value", "FieldValueRequired"))
    if not kind:
        causes.append(Cause("spec.names.kind", "Required value", "FieldValueRequired"))
    if plural and group and name != f"{plural}.{group}":
        causes.append(Cause("metadata.name", f'must be spec.names.plural+"."+spec.group ({plural}.{group})'))
    scope = spec.get("scope")
    if scope not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "spec.scope", 'Unsupported value: must be "Cluster" or "Namespaced"', "FieldValueNotSupported"
            )
        )
    versions = spec.get("versions") or []
    storage = [v for v in versions if v.get("storage")]
    if not versions:
        causes.append(Cause("spec.versions", "Required value", "FieldValueRequired"))
    elif len(storage) != 1:
        causes.append(Cause("spec.versions", "must have exactly one version marked as storage version"))
    if causes:
        raise invalid("CustomResourceDefinition", name, causes, group=CRD_GROUP)

    storage_version = storage[0]["name"]
    types: list[ResourceType] = []
    for version in sorted(versions, key=lambda v: not v.get("storage")):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or spec.get("subresources") or {}
        scale_spec = subresources.get("scale")
        scale = (
            ScaleSubresource(
                spec_replicas_path=scale_spec.get("specReplicasPath", ".spec.replicas"),
                status_replicas_path=scale_spec.get("statusReplicasPath", ".status.replicas"),
                label_selector_path=scale_spec.get("labelSelectorPath"),
            )
            if isinstance(scale_spec, dict)
            else None
        )
        raw_columns = version.get("additionalPrinterColumns")
        if raw_columns is None:
            raw_columns = spec.get("additionalPrinterColumns")
        if raw_columns:
            columns = (
                NAME,
                *(
                    PrinterColumn(
                        name=c.get("name", ""),
                        type=c.get("type", "string"),
                        json_path=c.get("jsonPath", ""),
                        description=c.get("description", ""),
                        priority=int(c.get("priority", 0)),
                        format=c.get("format", ""),
                    )
                    for c in raw_columns
                ),
            )
        else:
            columns = (NAME, AGE)
        schema = (version.get("schema") or spec.get("validation") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=group,
                version=version["name"],
                kind=kind,
                plural=plural,
                singular=names.get("singular") or kind.lower(),
                namespaced=scope == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                status_subresource="status" in subresources,
                scale=scale,
                printer_columns=columns,
                schema=schema,
                crd=crd,
                list_kind=names.get("listKind") or kind + "List",
                tracks_generation=True,
                storage_version=storage_version,
            )
        )
    return types


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha > other, higher numbers first (sort ascending)."""
    match = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not match:
        return (3, 0, 0, version)
    major = int(match.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[match.group(2) or ""]
    minor = int(match.group(3) or 0)
    return (stage, -major, -minor, version)


@dataclass(frozen=True)
class ApiGroup:
    """A group with its served versions, preferred first, as discovery lists them."""

    name: str
    versions: tuple[str, ...]

    @property
    def preferred_version(self) -> str:
        return self.versions[0]


class ResourceRegistry:
    """Which types are served where. Thread-safe: the server thread writes, test threads read."""

    def __init__(self, types: Iterable[ResourceType] | None = None) -> None:
        self._lock = threading.RLock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        self._crd_types: dict[str, list[ResourceType]] = {}
        # Bumped on every change, so discovery documents can be cached and their ETag derived.
        self.generation = 0
        for rt in builtin_types() if types is None else types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def all(self) -> list[ResourceType]:
        """Every served type: built-ins first, then custom types, in the order they were added."""
        with self._lock:
            return list(self._types.values())

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> ResourceType | None:
        with self._lock:
            for rt in self._types.values():
                if rt.group == group and rt.version == version and rt.kind == kind:
                    return rt
            return None

    def by_api_version(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        return self.by_kind(group, version, kind)

    def versions_of(self, group: str, plural: str) -> list[ResourceType]:
        """All served versions of one kind (they share storage)."""
        with self._lock:
            return [rt for rt in self._types.values() if rt.group == group and rt.plural == plural]

    def group_versions(self, group: str, version: str) -> list[ResourceType]:
        with self._lock:
            return [rt for rt in self._types.values() if rt.group == group and rt.version == version]

    def groups(self) -> list[ApiGroup]:
        """Served groups in discovery order: the core group "" first, then built-in groups, then CRD groups."""
        with self._lock:
            order: list[str] = []
            versions: dict[str, set[str]] = {}
            for rt in self._types.values():
                if rt.group not in versions:
                    order.append(rt.group)
                    versions[rt.group] = set()
                versions[rt.group].add(rt.version)
            return [ApiGroup(g, tuple(sorted(versions[g], key=_version_priority))) for g in order]

    def add_crd(self, crd: dict[str, Any]) -> list[ResourceType]:
        """Serve (or re-serve, after an update) the types of a CRD; returns them."""
        types = crd_types(crd)
        name = crd["metadata"]["name"]
        with self._lock:
            for old in self._crd_types.pop(name, []):
                self._types.pop((old.group, old.version, old.plural), None)
            for rt in types:
                existing = self._types.get((rt.group, rt.version, rt.plural))
                if existing is not None and not existing.is_custom:
                    raise invalid(
                        "CustomResourceDefinition",
                        name,
                        [Cause("spec.group", f"{rt.group}/{rt.version} {rt.plural} is a built-in resource")],
                        group=CRD_GROUP,
                    )
            for rt in types:
                self._types[(rt.group, rt.version, rt.plural)] = rt
            self._crd_types[name] = types
            self.generation += 1
        return types

    def remove_crd(self, name: str) -> list[ResourceType]:
        """Stop serving the types of a CRD; returns what was removed."""
        with self._lock:
            removed = self._crd_types.pop(name, [])
            for rt in removed:
                self._types.pop((rt.group, rt.version, rt.plural), None)
            if removed:
                self.generation += 1
            return removed

    def resolve(self, name: str) -> ResourceType | None:
        """Find a type by plural, singular, short name or kind, optionally `.group`-qualified (as kubectl does)."""
        lowered = name.lower()
        with self._lock:
            for rt in self._types.values():
                candidates = {rt.plural, rt.singular, rt.kind.lower(), *rt.short_names}
                qualified = {f"{c}.{rt.group}" for c in candidates} if rt.group else set()
                if lowered in candidates or lowered in qualified:
                    return rt
        return None

    def with_type(self, rt: ResourceType) -> None:
        """Serve an extra built-in type (tests use this for kinds outside the default set)."""
        with self._lock:
            self._types[(rt.group, rt.version, rt.plural)] = replace(rt)
            self.generation += 1


# ---------------------------------------------------------------------------------------------------------
# Table cells: JSONPath evaluation and the human-readable ages `kubectl get` shows


def _jsonpath_tokens(path: str) -> list[str]:
    """Split a Kubernetes JSONPath (`.a.b[0].c`, `.a[*].b`, `.a[?(@.x=="y")].z`, `['k.with.dots']`)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    tokens: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == ".":
            if text.startswith("..", i):
                raise ValueError("recursive descent is not supported")
            i += 1
            j = i
            while j < len(text) and text[j] not in ".[":
                j += 1
            if j > i:
                tokens.append(text[i:j])
            i = j
        elif ch == "[":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "[":
                    depth += 1
                elif text[j] == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            tokens.append(text[i : j + 1])
            i = j + 1
        elif ch == "$" or ch == "@":
            i += 1
        else:
            j = i
            while j < len(text) and text[j] not in ".[":
                j += 1
            tokens.append(text[i:j])
            i = j
    return tokens


def _filter_matches(item: Any, expression: str) -> bool:
    """Evaluate `@.a.b == "x"` (also !=, and bare `@.a` for existence) against one list item."""
    for op in ("==", "!="):
        if op in expression:
            left, right = (part.strip() for part in expression.split(op, 1))
            values = jsonpath_values(item, left.lstrip("@"))
            wanted: Any = right.strip("'\"") if right[:1] in "'\"" else _literal(right)
            found = bool(values) and values[0] == wanted
            return found if op == "==" else not found
    return bool(jsonpath_values(item, expression.strip().lstrip("@")))


def _literal(text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def jsonpath_values(obj: Any, path: str) -> list[Any]:
    """All values a Kubernetes JSONPath selects in `obj` (empty when nothing matches)."""
    current: list[Any] = [obj]
    for token in _jsonpath_tokens(path):
        selected: list[Any] = []
        if token.startswith("["):
            inner = token[1:-1].strip()
            for value in current:
                if inner == "*":
                    if isinstance(value, list):
                        selected.extend(value)
                    elif isinstance(value, dict):
                        selected.extend(value.values())
                elif inner.startswith("?(") and inner.endswith(")"):
                    if isinstance(value, list):
                        selected.extend(v for v in value if _filter_matches(v, inner[2:-1]))
                elif inner[:1] in "'\"":
                    if isinstance(value, dict) and inner.strip("'\"") in value:
                        selected.append(value[inner.strip("'\"")])
                elif isinstance(value, list):
                    try:
                        if ":" in inner:
                            start, _, stop = inner.partition(":")
                            selected.extend(value[int(start or 0) : int(stop) if stop else None])
                        else:
                            selected.append(value[int(inner)])
                    except (ValueError, IndexError):
                        continue
        else:
            for value in current:
                if token == "*" and isinstance(value, dict):
                    selected.extend(value.values())
                elif isinstance(value, dict) and token in value:
                    selected.append(value[token])
        current = selected
    return current


def human_duration(seconds: float) -> str:
    """Kubernetes' duration.HumanDuration: `45s`, `3m20s`, `12m`, `5h3m`, `3d4h`, `120d`, `2y10d`."""
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    s = int(seconds)
    if s < 60 * 2:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m{rem}s" if rem else f"{minutes}m"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = (s % 3600) // 60
        return f"{hours}h{rem}m" if rem else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d{rem}h" if rem else f"{hours // 24}d"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y{days}d" if days else f"{hours // 24 // 365}y"
    return f"{hours // 24 // 365}y"


def _age(value: Any, now: datetime.datetime) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        then = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if then.tzinfo is None:
        then = then.replace(tzinfo=datetime.UTC)
    return human_duration((now - then).total_seconds())


def table_cells(rt: ResourceType, obj: dict[str, Any], now: datetime.datetime) -> list[Any]:
    """One table row's cells for `obj`, column by column (None where a column has no value)."""
    cells: list[Any] = []
    for column in rt.printer_columns:
        if column.compute is not None:
            value: Any = column.compute(obj)
            cells.append(_age(value, now) if column.type == "date" else value)
            continue
        try:
            values = jsonpath_values(obj, column.json_path)
        except ValueError:
            values = []
        if not values:
            cells.append(None)
        elif column.type == "date":
            cells.append(_age(values[0], now))
        elif len(values) == 1:
            value = values[0]
            if column.type == "string" and not isinstance(value, str):
                value = (
                    json.dumps(value, separators=(",", ":"))
                    if isinstance(value, dict | list)
                    else _go_string(value)
                )
            cells.append(value)
        else:
            cells.append(",".join(v if isinstance(v, str) else _go_string(v) for v in values))
    return cells


def _go_string(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
