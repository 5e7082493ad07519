"""Which API refusals become a condition (retrying cannot lift them), with a sentence naming object and field.

The messages are the API server's own (kube-apiserver 1.37: its admission plugins, RBAC and validation).
"""

from __future__ import annotations

import pytest

from scaleset_operator.control.kube import ApiError, _target
from scaleset_operator.control.refusals import refusal_of

POD_SECURITY = (
    'pods "web-0" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false '
    '(container "os" must set securityContext.allowPrivilegeEscalation=false), runAsNonRoot != true '
    '(pod or container "os" must set securityContext.runAsNonRoot=true)'
)
QUOTA = 'pods "web-2" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=2, limited: pods=2'
WEBHOOK = 'admission webhook "deny.example.com" denied the request: images must come from the mirror'
POLICY = (
    "pods \"web-0\" is forbidden: ValidatingAdmissionPolicy 'no-latest' with binding 'no-latest' denied "
    "request: failed expression: object.spec.containers.all(c, !c.image.endsWith(':latest'))"
)
RBAC = (
    'pods is forbidden: User "system:serviceaccount:scaleset-system:scaleset-operator" cannot create '
    'resource "pods" in API group "" in the namespace "t-1"'
)
SERVICE_ACCOUNT = 'pods "web-0" is forbidden: error looking up service account t-1/missing: serviceaccount "missing" not found'
TERMINATING = (
    'pods "web-0" is forbidden: unable to create new content in namespace t-1 because it is being terminated'
)
INVALID_CLAIM = 'PersistentVolumeClaim "data-web-0" is invalid: spec.resources[storage]: Required value'


def _error(
    status: int, reason: str, message: str, target: str = "pods/web-0", verb: str = "create"
) -> ApiError:
    return ApiError(status, reason, message, verb=verb, target=target)


@pytest.mark.parametrize(
    ("status", "message", "target", "reason", "names"),
    [
        (
            403,
            POD_SECURITY,
            "pods/web-0",
            "PodSecurityViolation",
            ["Pod web-0", "spec.template", "runAsNonRoot"],
        ),
        (403, QUOTA, "pods/web-2", "QuotaExceeded", ["Pod web-2", "spec.replicas", "limited: pods=2"]),
        (403, WEBHOOK, "pods/web-0", "AdmissionDenied", ["Pod web-0", "spec.template", "deny.example.com"]),
        (403, POLICY, "pods/web-0", "AdmissionDenied", ["Pod web-0", "spec.template", "no-latest"]),
        (
            403,
            RBAC,
            "pods/web-0",
            "Forbidden",
            ["Pod web-0", "manifests/rbac.yaml", 'cannot create resource "pods"'],
        ),
        (403, SERVICE_ACCOUNT, "pods/web-0", "AdmissionDenied", ["Pod web-0", "spec.template", '"missing"']),
        (403, TERMINATING, "pods/web-0", "NamespaceTerminating", ["Pod web-0", "being terminated"]),
        (
            422,
            INVALID_CLAIM,
            "persistentvolumeclaims/data-web-0",
            "Invalid",
            ["PersistentVolumeClaim data-web-0", "spec.volumeClaimTemplates", "spec.resources[storage]"],
        ),
        (400, WEBHOOK, "pods/web-0", "AdmissionDenied", ["Pod web-0", "deny.example.com"]),
    ],
)
def test_a_refusal_retrying_cannot_lift_becomes_one_sentence_naming_object_and_field(
    status: int, message: str, target: str, reason: str, names: list[str]
) -> None:
    refusal = refusal_of(_error(status, "Forbidden" if status == 403 else "Invalid", message, target))
    assert refusal is not None
    assert refusal.reason == reason
    for name in names:
        assert name in refusal.message
    assert refusal.message.endswith(".")
    assert refusal.message.count(". ") == 0, "one sentence"


@pytest.mark.parametrize(
    ("status", "reason"),
    [(404, "NotFound"), (409, "Conflict"), (429, "TooManyRequests"), (500, "InternalError"), (503, "")],
)
def test_what_may_pass_by_itself_is_retried_not_reported(status: int, reason: str) -> None:
    assert refusal_of(_error(status, reason, "try again")) is None


@pytest.mark.parametrize(
    ("method", "path", "body", "verb", "target"),
    [
        ("POST", "/api/v1/namespaces/t-1/pods", {"metadata": {"name": "web-3"}}, "create", "pods/web-3"),
        ("DELETE", "/api/v1/namespaces/t-1/pods/web-3", None, "delete", "pods/web-3"),
        (
            "PATCH",
            "/apis/fleet.scaleset.dev/v1alpha1/namespaces/t-1/scalesets/web/status",
            {},
            "patch",
            "scalesets/web",
        ),
        ("PATCH", "/api/v1/nodes/node-1", {}, "patch", "nodes/node-1"),
        ("GET", "/api/v1/namespaces/t-1/pods", None, "get", "pods"),
    ],
)
def test_an_error_knows_what_was_asked(
    method: str, path: str, body: dict | None, verb: str, target: str
) -> None:
    assert _target(method, path, body) == (verb, target)
