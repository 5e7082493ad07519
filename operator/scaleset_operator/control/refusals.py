"""API refusals that retrying cannot fix, as a condition reason and one sentence naming object and field."""

from __future__ import annotations

from scaleset_operator.control.context import InvalidInput
from scaleset_operator.control.kube import ApiError

# What the user changes to lift a refusal of a write to each kind the operator writes.
_KINDS: dict[str, tuple[str, str]] = {
    "pods": ("Pod", "spec.template"),
    "persistentvolumeclaims": ("PersistentVolumeClaim", "spec.volumeClaimTemplates"),
    "controllerrevisions": ("ControllerRevision", "spec.template"),
    "scalesets": ("ScaleSet", "spec"),
    "services": ("Service", "the Service's selector"),
    "nodes": ("Node", "the node's labels"),
    "poddisruptionbudgets": ("PodDisruptionBudget", "spec"),
}

_VERBS = {
    "create": "Creating",
    "update": "Updating",
    "patch": "Updating",
    "delete": "Deleting",
    "get": "Reading",
}


def refusal_of(error: ApiError) -> InvalidInput | None:
    """The condition a refusal becomes, or None when it may pass by itself (retry it, with back-off).

    400 and 422 (the object is invalid), and 403 (PodSecurity admission, a ResourceQuota, a webhook or
    admission policy's denial, RBAC, a namespace being deleted) stay the same until someone changes
    the spec, the namespace or the cluster's policy; 404, 409, 429, 5xx and network errors do not.
    """
    if error.status not in (400, 403, 422):
        return None
    resource, _, name = error.target.partition("/")
    kind, field = _KINDS.get(resource, (resource or "object", "spec"))
    subject = f"{kind} {name}" if name else kind
    doing = f"{_VERBS.get(error.verb, 'Writing')} {subject}"
    detail = error.message.strip().rstrip(".")
    lowered = detail.lower()
    if "exceeded quota" in lowered:
        # The API server's sentence names the quota and the figures; what to change is ours to say.
        return InvalidInput(
            "QuotaExceeded",
            f"{doing} was refused by the namespace's ResourceQuota ({_after_forbidden(detail)}); "
            "lower spec.replicas or the template's resource requests, or raise the quota.",
        )
    if "violates podsecurity" in lowered:
        return InvalidInput(
            "PodSecurityViolation",
            f"{doing} was refused by Pod Security admission ({_after_forbidden(detail)}); make "
            f"{field}'s security settings meet the namespace's level, or change its "
            "pod-security.kubernetes.io labels.",
        )
    if "being terminated" in lowered:
        return InvalidInput(
            "NamespaceTerminating", f"{doing} was refused: the namespace is being deleted ({detail})."
        )
    if "denied the request" in lowered or "denied request" in lowered:
        return InvalidInput(
            "AdmissionDenied",
            f"{doing} was denied by admission control ({_after_forbidden(detail)}); change {field} "
            "or the policy that denies it.",
        )
    if error.status == 403 and "cannot " in lowered and ("user " in lowered or "serviceaccount" in lowered):
        return InvalidInput(
            "Forbidden",
            f"{doing} was refused by RBAC ({detail}); the operator's ClusterRole (manifests/rbac.yaml) "
            "must grant it.",
        )
    if error.status == 403:
        return InvalidInput(
            "AdmissionDenied",
            f"{doing} was refused by an admission plugin ({_after_forbidden(detail)}); change {field}.",
        )
    return InvalidInput("Invalid", f"{doing} was refused as invalid ({detail}); change {field}.")


def _after_forbidden(message: str) -> str:
    """`pods "web-3" is forbidden: exceeded quota: ...` without the part the sentence says already."""
    head, sep, tail = message.partition(" is forbidden: ")
    return tail if sep and '"' in head else message
