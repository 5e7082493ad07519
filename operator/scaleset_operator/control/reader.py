"""Every read of a reconcile pass from the API, in one place: the ScaleSet, its policy, its
ControllerRevisions, pods and claims, returned as one frozen `PassReads` before anything is decided.

Reads that still happen later in the pass (nodes, Services, quotas, the holder of a name taken) move here one at a time; see docs/operator.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.loading import describe_error
from scaleset_operator.api.models import ScaleSetSpec, UpgradePolicySpec
from scaleset_operator.control.context import InvalidInput, owned_by
from scaleset_operator.control.kube import Kube, core_path, fleet_path, group_path
from scaleset_operator.identity import LABEL_REVISION, label_selector, ordinal_of


@dataclass(frozen=True)
class PassReads:
    """What one pass read of a ScaleSet, as the API server answered.

    `revisions`: its own ControllerRevisions by revision label; `pods`: its own pods with an ordinal
    label (instances and surge pods; pods it does not own are never touched); `claims`: the claims
    labelled with its name, by name (its own, and any kept from an earlier ScaleSet of the name);
    `maintenance_configurations`: every MaintenanceConfiguration, as stored; `namespace_labels`: the
    labels of the ScaleSet's namespace (configurations select by them); `image_catalogs`: every
    ImageCatalog, as stored.
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
        return PassReads(scaleset, spec, policy, revisions, pods, claims, configurations, labels, catalogs)

    def revision(self, namespace: str, name: str) -> dict[str, Any] | None:
        """A ControllerRevision by name: the one holding a name whose create was refused."""
        return self.kube.get_or_none(group_path("apps", "v1", "controllerrevisions", namespace, name))

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
