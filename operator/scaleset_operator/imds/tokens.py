"""Token mode: an instance presents a projected ServiceAccount token, and a TokenReview says whose it is.

The API server issued the token for the pod (a projected `serviceAccountToken` volume with the
operator's audience), so it alone can say whether it is valid, for that audience, and bound to
which pod: `authentication.kubernetes.io/pod-uid` and `pod-name` in the review's `user.extra`. The
operator needs `create` on `tokenreviews` for this (manifests/components/token-review), nothing more.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scaleset_operator.control.kube import ApiError, Kube, group_path

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "scaleset-operator"
EXTRA_POD_UID = "authentication.kubernetes.io/pod-uid"
EXTRA_POD_NAME = "authentication.kubernetes.io/pod-name"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# A reviewed token's answer is kept this long: a flood of requests with one token costs one review.
# A bound token stops being valid when its pod goes, and the endpoint checks the pod in the index on
# every request, so a kept answer never outlives the pod it names.
REVIEW_TTL_SECONDS = 30.0
_MAX_KEPT = 10_000


@dataclass(frozen=True)
class BoundPod:
    """The pod a valid token was issued for."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class Rejected:
    """Why a token is not accepted (a sentence for the error JSON)."""

    reason: str


def bound_pod(review: dict[str, Any], audience: str) -> BoundPod | Rejected:
    """What a TokenReview's answer says about the token: the pod it is bound to, or why it is refused."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        detail = status.get("error") or "it is not valid"
        return Rejected(f"Forbidden. The ServiceAccount token was not accepted by the API server: {detail}")
    if audience not in (status.get("audiences") or []):
        return Rejected(f"Forbidden. The ServiceAccount token is not issued for the audience {audience}")
    user = status.get("user") or {}
    extra = user.get("extra") or {}
    uids, names = extra.get(EXTRA_POD_UID) or [], extra.get(EXTRA_POD_NAME) or []
    username = str(user.get("username") or "")
    if len(uids) != 1 or len(names) != 1 or not username.startswith(SERVICE_ACCOUNT_PREFIX):
        return Rejected("Forbidden. The ServiceAccount token is bound to no pod: mount a projected token")
    namespace = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
    return BoundPod(namespace, str(names[0]), str(uids[0]))


class TokenReviewer:
    """Reviews tokens with the API server's TokenReview, keeping each answer for a short while."""

    def __init__(
        self,
        kube: Kube,
        audience: str = DEFAULT_AUDIENCE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.audience = audience
        self.clock = clock
        self.reviews = 0
        self._kept: dict[str, tuple[float, BoundPod | Rejected]] = {}

    def review(self, token: str) -> BoundPod | Rejected:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = self.clock()
        kept = self._kept.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token, "audiences": [self.audience]},
        }
        try:
            answer = self.kube.create(group_path("authentication.k8s.io", "v1", "tokenreviews"), body)
        except ApiError as error:
            if error.status == 403:
                log.error(
                    "the operator may not create TokenReviews: apply manifests/components/token-review (%s)",
                    error.message,
                )
            # Not kept: the next request tries again once the API server answers.
            return Rejected(
                f"Forbidden. The ServiceAccount token could not be reviewed ({error.status} {error.reason})"
            )
        self.reviews += 1
        result = bound_pod(answer, self.audience)
        if len(self._kept) >= _MAX_KEPT:
            self._kept = {k: v for k, v in self._kept.items() if v[0] > now}
            if len(self._kept) >= _MAX_KEPT:
                self._kept.clear()
        self._kept[key] = (now + REVIEW_TTL_SECONDS, result)
        return result
