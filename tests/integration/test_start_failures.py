"""Instances that will not start by themselves are reported at once (Stalled, naming the instances and the
kubelet's waiting reason), and the rollout treats them as past instanceStartTimeout, so that the policy's
onInstanceStartTimeout applies at once. The waiting reasons are kubesim's kubelet simulator's on both
beds (it is the testbed's kubelet too), made as the kubelet makes them.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from scaleset_operator.control.kube import Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_REVISION
from tests.integration.helpers import (
    IMAGE,
    create,
    pods_of,
    policy_body,
    scaleset_body,
    scaleset_ready,
    set_image,
    stalled,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]

# Every instance here is down for a reason that never passes; the start timeout, never reached, is 30m.
AT_ONCE = 30


def _uids(kube: Kube, namespace: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "web")}


def _upgrade(kube: Kube, namespace: str) -> dict[str, Any]:
    upgrade: dict[str, Any] = (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
        "upgrade"
    ) or {}
    return upgrade


def test_a_new_scaleset_whose_image_name_does_not_parse_is_stalled_at_once(
    kube: Kube, namespace: str
) -> None:
    # Tried as a new user would: every pod says InvalidImageName; the ScaleSet must not stay "starting".
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 2, image="bad image name"))
    started = time.monotonic()
    report = wait_for(
        # Each pod's kubelet reports its own waiting reason; the message names both once both have.
        lambda: (
            (s := stalled(kube, namespace, "web"))
            and "web-0, web-1 cannot start by themselves" in s["message"]
            and s
        ),
        AT_ONCE,
        "Stalled, naming both instances",
    )
    assert time.monotonic() - started < AT_ONCE
    message = report["message"]
    assert "web-0, web-1 cannot start by themselves" in message
    assert 'container "os" is waiting with InvalidImageName' in message
    assert 'couldn\'t parse image name "bad image name"' in message
    before = _uids(kube, namespace)
    time.sleep(2)
    assert _uids(kube, namespace) == before, "nothing is deleted or restarted for it"


def test_an_image_never_pulled_under_pull_policy_never_is_stalled_at_once(kube: Kube, namespace: str) -> None:
    body = scaleset_body("web", 1, image=f"{IMAGE}:never-pulled-anywhere")
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "Never"
    kube.create(fleet_path("scalesets", namespace), body)
    report = wait_for(lambda: stalled(kube, namespace, "web"), AT_ONCE, "Stalled")
    assert "web-0 cannot start by itself" in report["message"]
    assert "ErrImageNeverPull" in report["message"]
    assert "is not present with pull policy of Never" in report["message"]


def test_env_naming_a_secret_that_does_not_exist_is_stalled_at_once_and_starts_once_it_does(
    kube: Kube, namespace: str
) -> None:
    body = scaleset_body("web", 1)
    body["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
    ]
    kube.create(fleet_path("scalesets", namespace), body)
    report = wait_for(lambda: stalled(kube, namespace, "web"), AT_ONCE, "Stalled")
    assert "web-0 cannot start by itself" in report["message"]
    assert 'CreateContainerConfigError (secret "api" not found)' in report["message"]
    before = _uids(kube, namespace)
    kube.create(
        core_path("secrets", namespace),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "api"}, "data": {"token": "czNjcjN0"}},
    )
    wait_for(lambda: scaleset_ready(kube, namespace, "web"), 60, "web Ready once the Secret exists")
    assert _uids(kube, namespace) == before, "the same instance started, not a new one"


def test_a_rollout_to_an_image_that_cannot_start_is_rolled_back_at_once(kube: Kube, namespace: str) -> None:
    create(
        kube,
        namespace,
        policy_body(
            "careful", healthCheck={"instanceStartTimeout": "30m", "onInstanceStartTimeout": "Rollback"}
        ),
    )
    create(kube, namespace, scaleset_body("web", 5, policy="careful"))
    ready = wait_for(lambda: scaleset_ready(kube, namespace, "web"), 60, "web Ready")
    good = ready["status"]["currentRevision"]
    set_image(kube, namespace, "web", "bad image name")
    wait_for(
        lambda: (_upgrade(kube, namespace).get("history") or [{}])[-1].get("result") == "RolledBack",
        AT_ONCE + 30,
        "the rollback of the batch that cannot start",
    )
    wait_for(
        lambda: all(p["metadata"]["labels"][LABEL_REVISION] == good for p in pods_of(kube, namespace, "web")),
        60,
        "every instance back on the revision it came from",
    )


def test_an_image_that_keeps_failing_to_pull_is_stalled_past_the_kubelet_back_off(
    kube: Kube, namespace: str
) -> None:
    # ErrImagePull, then ImagePullBackOff between pulls: reported once it outlasts PULL_FAILURE_BOUND (60 s).
    kube.create(fleet_path("scalesets", namespace), scaleset_body("web", 1, image=f"{IMAGE}:v9-pull-error"))
    wait_for(
        lambda: any(
            ((s.get("state") or {}).get("waiting") or {}).get("reason")
            in ("ErrImagePull", "ImagePullBackOff")
            for p in pods_of(kube, namespace, "web")
            for s in (p.get("status") or {}).get("containerStatuses") or []
        ),
        AT_ONCE,
        "the pull to fail",
    )
    assert not stalled(kube, namespace, "web"), "one failed pull may be a registry's hiccup"
    report = wait_for(lambda: stalled(kube, namespace, "web"), 60 + AT_ONCE, "Stalled")
    assert "web-0 cannot start by itself" in report["message"]
    assert "ImagePullBackOff" in report["message"] or "ErrImagePull" in report["message"]
