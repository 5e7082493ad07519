"""Every read of a reconcile pass from the API, in one place: the ScaleSet, its policy, its
ControllerRevisions, pods and claims, the nodes, the Services and PodDisruptionBudget it may change,
returned as one frozen `PassReads` before anything is decided.

The other methods are the reads a pass makes later, each named for why (see docs/operator.md): the
holder of a name a create was refused for, an object again after a write's conflict, the pods on a node
the pass may label (after its own writes to them), the namespace's ResourceQuotas when a staged set is
to be created. No other module of control/ reads the API (tests/control/test_reads_only_in_reader.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.loading import describe_error
from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.control.context import InvalidInput, owned_by
from scaleset_operator.control.disruption_budget import budget_looked_at, budget_path
from scaleset_operator.control.kube import ApiError, Kube, core_path, fleet_path, group_path
from scaleset_operator.identity import LABEL_REVISION, LABEL_SCALESET, label_selector, ordinal_of
from scaleset_operator.planning.staged import is_staged


@dataclass(frozen=True)
class PassReads:
    """What one pass read of a ScaleSet, as the API server answered.

    `revisions`: its own ControllerRevisions by revision label; `pods`: its own pods with an ordinal
    label (instances and surge pods; pods it does not own are never touched); `claims`: the claims
    labelled with its name, by name (its own, and any kept from an earlier ScaleSet of the name);
    `maintenance_configurations`: every MaintenanceConfiguration, as stored; `namespace_labels`: the
    labels of the ScaleSet's namespace (configurations select by them); `image_catalogs`: every
    ImageCatalog, as stored; `nodes`: every node, as stored (host maintenance and freezes decide from
    them); `services`: the Services of the namespace by name, read only when the ScaleSet is staged or
    was (None otherwise: nothing selects a slot); `disruption_budget_read`: whether the ScaleSet asks
    for a PodDisruptionBudget or had one (`disruption_budget`: the one of its name, None when there is none).
    """

    scaleset: dict[str, Any]
    spec: ScaleSetSpec
    policy: UpgradePolicySpec
    revisions: Mapping[str, dict[str, Any]]
    pods: tuple[dict[str, Any], ...]
    claims: Mapping[str, dict[str, Any]]
    maintenance_configurations: tuple[dict[str, Any], ...] = ()
    namespace_labels: Mapping[str, str] = field(default_factory=dict)
    image_catalogs: tuple[dict[str, Any], ...] = ()
    nodes: tuple[dict[str, Any], ...] = ()
    services: Mapping[str, dict[str, Any]] | None = None
    disruption_budget_read: bool = False
    disruption_budget: dict[str, Any] | None = None


class Reader:
    """Reads a pass's view of one ScaleSet; writes nothing."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    def scaleset(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kube.get_or_none(fleet_path("scalesets", namespace, name))

    def read(self, scaleset: dict[str, Any]) -> PassReads:
        """The spec (InvalidSpec), the policy (PolicyNotFound, InvalidPolicy), then what the ScaleSet owns."""
        namespace, name = scaleset["metadata"]["namespace"], scaleset["metadata"]["name"]
        uid = scaleset["metadata"]["uid"]
        try:
            spec = ScaleSetSpec.model_validate(scaleset.get("spec") or {})
        except ValidationError as error:
            raise InvalidInput("InvalidSpec", describe_validation_error(error, prefix="spec")) from None
        policy = self.policy(namespace, spec)
        revisions = {
            stored["metadata"]["labels"].get(LABEL_REVISION, ""): stored
            for stored in self.kube.list(
                group_path("apps", "v1", "controllerrevisions", namespace), label_selector(name)
            )
            if owned_by(stored, uid)
        }
        pods = tuple(
            pod
            for pod in self.kube.list(core_path("pods", namespace), label_selector(name))
            if owned_by(pod, uid) and ordinal_of(pod) is not None
        )
        claims = {
            claim["metadata"]["name"]: claim
            for claim in self.kube.list(core_path("persistentvolumeclaims", namespace), label_selector(name))
        }
        configurations = tuple(self.kube.list(fleet_path("maintenanceconfigurations")))
        space = self.kube.get_or_none(core_path("namespaces", name=namespace)) or {}
        labels = (space.get("metadata") or {}).get("labels") or {}
        catalogs = tuple(self.kube.list(fleet_path("imagecatalogs")))
        nodes = tuple(self.kube.list(core_path("nodes")))
        stored = scaleset.get("status") or {}
        services = None
        if is_staged(policy) or stored.get("staged"):
            services = MappingProxyType(
                {s["metadata"]["name"]: s for s in self.kube.list(core_path("services", namespace))}
            )
        budget_read = budget_looked_at(spec, stored)
        budget = self.kube.get_or_none(budget_path(namespace, name)) if budget_read else None
        return PassReads(
            scaleset,
            spec,
            policy,
            MappingProxyType(revisions),
            pods,
            MappingProxyType(claims),
            configurations,
            MappingProxyType(labels),
            catalogs,
            nodes,
            services,
            budget_read,
            budget,
        )

    def revision(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ControllerRevision by name: the one holding a name whose create was refused."""
        return self.kube.get_or_none(group_path("apps", "v1", "controllerrevisions", namespace, name))

    def pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A pod by name: the one holding a name whose create was refused, or one again after a conflict."""
        return self.kube.get_or_none(core_path("pods", namespace, name))

    def claim(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A PersistentVolumeClaim by name: the one holding a name whose create was refused."""
        return self.kube.get_or_none(core_path("persistentvolumeclaims", namespace, name))

    def pods_on_node(self, node: str) -> list[dict[str, Any]]:
        """The pods of every ScaleSet on `node`, as they are now: read when the pass may label the node,
        after its own writes to them (a freeze's marks, an eviction), which it must see."""
        listed = self.kube.request(
            "GET",
            core_path("pods"),
            query={"labelSelector": LABEL_SCALESET, "fieldSelector": f"spec.nodeName={node}"},
        )
        items: list[dict[str, Any]] = listed.get("items") or []
        return items

    def resource_quotas(self, namespace: str) -> tuple[dict[str, Any], ...]:
        """The namespace's ResourceQuotas: read only when a staged set is to be made (how many pods
        fit). An API server that serves none (404) enforces none."""
        try:
            return tuple(self.kube.list(core_path("resourcequotas", namespace)))
        except ApiError as error:
            if error.status != 404:
                raise
            return ()

    def policy(self, namespace: str, spec: ScaleSetSpec) -> UpgradePolicySpec:
        if spec.upgrade_policy_ref is None:
            return UpgradePolicySpec()
        ref = spec.upgrade_policy_ref.name
        policy = self.kube.get_or_none(fleet_path("upgradepolicies", namespace, ref))
        if policy is None:
            raise InvalidInput(
                "PolicyNotFound",
                f'spec.upgradePolicyRef names UpgradePolicy "{ref}", which does not exist in namespace "{namespace}".',
            )
        try:
            return UpgradePolicySpec.model_validate(policy.get("spec") or {})
        except ValidationError as error:
            raise InvalidInput(
                "InvalidPolicy", f'UpgradePolicy "{ref}": ' + describe_validation_error(error, prefix="spec")
            ) from None


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """The first problem of a spec as one sentence naming the field from the top of the resource."""
    first = error.errors()[0]
    sentence = describe_error({**first, "loc": (prefix, *first["loc"])})
    return sentence + ("" if sentence.endswith(".") else ".")
