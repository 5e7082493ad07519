"""Hostile input through the API server: every spec is refused naming its field, or accepted and reported.

Whatever arrives, the operator keeps running and never touches an instance of another ScaleSet.
"""

from __future__ import annotations

import copy
import logging
import time
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scaleset_operator.control.kube import ApiError, Kube, fleet_path
from scaleset_operator.runner import OperatorThread
from tests.integration.helpers import create, pods_of, policy_body, scaleset_body, scaleset_ready, wait_for

pytestmark = [pytest.mark.e2e]

TIMEOUT = 60

NUMBERS = st.one_of(
    st.integers(-(10**13), 10**13),
    st.sampled_from([0, -1, 1001, 10**12, 2**63]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
    st.none(),
)

# Each mutation sets one path of a valid ScaleSet to a hostile value.
MUTATIONS = st.one_of(
    st.tuples(st.just(("spec", "replicas")), NUMBERS),
    st.tuples(st.just(("spec", "upgradeDomainCount")), NUMBERS),
    st.tuples(st.just(("spec", "walkUpgradeDomain")), NUMBERS),
    st.tuples(st.just(("spec", "revisionHistoryLimit")), NUMBERS),
    st.tuples(st.just(("spec", "paused")), st.one_of(st.text(max_size=4), st.integers(), st.none())),
    st.tuples(
        st.just(("spec", "template")),
        st.sampled_from(
            [
                {},
                {"spec": {}},
                {"spec": {"containers": []}},
                {"spec": {"containers": [{"name": "os"}]}},
                {"spec": {"containers": [{"image": "x"}]}},
                {"spec": {"containers": "os"}},
                "a template",
            ]
        ),
    ),
    st.tuples(
        st.just(("spec", "upgradePolicyRef")),
        st.sampled_from([{"name": "no-such-policy"}, {"name": ""}, {}, "policy", {"name": "x" * 300}]),
    ),
    st.tuples(
        st.just(("spec", "persistentVolumeClaimRetentionPolicy")),
        st.sampled_from([{"whenScaled": "Sometimes"}, {"whenDeleted": 3}, []]),
    ),
    st.tuples(
        st.just(("spec", "scheduledEvents")),
        st.sampled_from([{"notBeforeTimeout": "forever"}, {"enabled": "yes"}, {"notBeforeTimeout": -5}]),
    ),
    st.tuples(st.just(("spec", "osContainer")), st.sampled_from(["", "missing", 7])),
    st.tuples(
        st.just(("spec", "extensions")),
        st.sampled_from([[{"name": "x"}], [{"name": "m", "container": "nope"}], "ext", [{}]]),
    ),
    st.tuples(st.just(("spec", "unknownField")), st.integers()),
    st.tuples(
        st.just(("metadata", "name")),
        st.sampled_from(["", "a" * 53, "a" * 300, "UPPER", "under_score", "-x"]),
    ),
)

POLICY_MUTATIONS = st.fixed_dictionaries(
    {},
    optional={
        "mode": st.sampled_from(["Rolling", "Automatic", "Manual", "Sideways", 3]),
        "rollingUpgrade": st.fixed_dictionaries(
            {},
            optional={
                "maxBatchInstancePercent": st.integers(-5, 150),
                "maxUnhealthyInstancePercent": st.integers(-5, 150),
                "maxUnhealthyUpgradedInstancePercent": st.integers(-5, 150),
                "pauseTimeBetweenBatches": st.sampled_from(["0s", "-1s", "1 hour", "PT5S", "99999999h"]),
            },
        ),
        "healthCheck": st.fixed_dictionaries(
            {},
            optional={
                "instanceStartTimeout": st.sampled_from(["1s", "0s", "never", "30m"]),
                "onInstanceStartTimeout": st.sampled_from(["Proceed", "Pause", "Rollback", "Panic"]),
            },
        ),
    },
)


def names_a_field(error: ApiError) -> bool:
    return error.status == 422 and any(part in error.message for part in ("spec.", "metadata.name", "spec:"))


def reported(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    """The ScaleSet once the operator has reported on its current generation."""
    obj = kube.get(fleet_path("scalesets", namespace, name))
    status = obj.get("status") or {}
    conditions = {c["type"]: c for c in status.get("conditions") or []}
    ready = conditions.get("Ready")
    generation = obj["metadata"].get("generation")
    if ready and ready.get("observedGeneration") == generation:
        return obj
    return None


@pytest.fixture(scope="module")
def bystander(kube: Kube) -> dict[str, Any]:
    """A healthy ScaleSet in a namespace of its own: nothing done to the others may touch it."""
    namespace = f"by-{uuid.uuid4().hex[:6]}"
    kube.create(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    )
    create(kube, namespace, scaleset_body("bystander", 3))
    return {"namespace": namespace}


def uids(kube: Kube, namespace: str) -> dict[str, str]:
    return {p["metadata"]["name"]: p["metadata"]["uid"] for p in pods_of(kube, namespace, "bystander")}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(mutation=MUTATIONS, policy=POLICY_MUTATIONS)
def test_hostile_specs_are_refused_naming_the_field_or_reported(
    kube: Kube,
    namespace: str,
    operator: OperatorThread,
    bystander: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    mutation: tuple[tuple[str, str], Any],
    policy: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO)
    wait_for(
        lambda: scaleset_ready(kube, bystander["namespace"], "bystander"), TIMEOUT, "the bystander Ready"
    )
    before = uids(kube, bystander["namespace"])
    suffix = uuid.uuid4().hex[:6]
    policy_name = f"p-{suffix}"
    try:
        create(kube, namespace, policy_body(policy_name, **copy.deepcopy(policy)))
    except ApiError as error:
        assert names_a_field(error), f"a refused policy must name its field: {error}"
        policy_name = ""
    body = scaleset_body(f"h-{suffix}", 2, policy=policy_name or None)
    (section, key), value = mutation
    body[section][key] = value
    name = body["metadata"]["name"]
    try:
        create(kube, namespace, body)
    except ApiError as error:
        assert names_a_field(error), f"a refused ScaleSet must name its field: {error}"
    else:
        # Accepted: the operator reports on it (Ready, or why not) and does not crash.
        obj = wait_for(lambda: reported(kube, namespace, name), TIMEOUT, f"a report on {name}")
        conditions = {c["type"]: c for c in obj["status"]["conditions"]}
        if conditions["Ready"]["status"] != "True":
            assert conditions["Ready"]["message"], "a ScaleSet that is not Ready says why"
        kube.delete(fleet_path("scalesets", namespace, name))
    assert operator.error is None
    assert uids(kube, bystander["namespace"]) == before, "an instance of another ScaleSet was touched"
    tracebacks = [
        r.getMessage() for r in caplog.records if r.name.startswith("scaleset_operator") and r.exc_info
    ]
    assert not tracebacks, f"the operator logged tracebacks: {tracebacks[:2]}"


def test_a_thousand_instances_over_twenty_domains_at_five_percent_is_accepted_and_a_trillion_is_not(
    kube: Kube, namespace: str, operator: OperatorThread
) -> None:
    with pytest.raises(ApiError) as refused:
        create(kube, namespace, scaleset_body("huge", 1_000_000_000_000))
    assert refused.value.status == 422 and "spec.replicas" in refused.value.message
    create(kube, namespace, policy_body("five", rollingUpgrade={"maxBatchInstancePercent": 5}))
    # Accepted at its largest; the operator starts creating instances and reports progress.
    create(kube, namespace, scaleset_body("big", 1000, policy="five", upgrade_domain_count=20))
    obj = wait_for(lambda: reported(kube, namespace, "big"), TIMEOUT, "a report on big")
    assert obj["status"]["conditions"]
    wait_for(lambda: len(pods_of(kube, namespace, "big")) >= 50, TIMEOUT, "instances being created")
    with pytest.raises(ApiError) as scaled:
        kube.patch(fleet_path("scalesets", namespace, "big", "scale"), {"spec": {"replicas": 5000}})
    assert scaled.value.status == 422
    kube.delete(fleet_path("scalesets", namespace, "big"))
    time.sleep(0.1)
