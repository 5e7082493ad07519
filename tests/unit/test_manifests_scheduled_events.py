"""Instance pods learn where the scheduled-events endpoint is when the ScaleSet asks for events."""

from __future__ import annotations

from typing import Any

import pytest

from scaleset_operator.api.models import ScaleSetSpec
from scaleset_operator.control.manifests import instance_pod

SCALESET = {"metadata": {"name": "web", "namespace": "shop", "uid": "u-1"}}


def spec(**fields: Any) -> ScaleSetSpec:
    return ScaleSetSpec.model_validate(
        {
            "replicas": 2,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "app", "image": "nginx:1.27", "env": [{"name": "MODE", "value": "prod"}]},
                        {"name": "agent", "image": "agent:1"},
                    ]
                }
            },
            **fields,
        }
    )


def env_of(pod: dict[str, Any]) -> list[dict[str, str] | None]:
    return [
        next((v for v in c.get("env") or [] if v["name"] == "SCHEDULED_EVENTS_ENDPOINT"), None)
        for c in pod["spec"]["containers"]
    ]


def pod_for(ss: ScaleSetSpec, **kw: Any) -> dict[str, Any]:
    return instance_pod(SCALESET, ss, ss.template, "web-abc", 0, "2026-01-01T00:00:00Z", **kw)


def test_enabled_scheduled_events_give_every_container_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SCHEDULED_EVENTS_ENDPOINT", raising=False)
    monkeypatch.setenv("POD_NAMESPACE", "ops")
    pod = pod_for(spec(scheduledEvents={"enabled": True}))
    url = "http://scaleset-operator.ops.svc:8090/metadata/scheduledevents"
    assert env_of(pod) == [{"name": "SCHEDULED_EVENTS_ENDPOINT", "value": url}] * 2
    assert pod["spec"]["containers"][0]["env"][0] == {"name": "MODE", "value": "prod"}


def test_the_operators_own_setting_and_an_explicit_endpoint_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULED_EVENTS_ENDPOINT", "http://events.example:9000/metadata/scheduledevents")
    assert env_of(pod_for(spec(scheduledEvents={"enabled": True})))[0] == {
        "name": "SCHEDULED_EVENTS_ENDPOINT",
        "value": "http://events.example:9000/metadata/scheduledevents",
    }
    explicit = pod_for(
        spec(scheduledEvents={"enabled": True}), scheduled_events_endpoint="http://x/metadata/scheduledevents"
    )
    assert env_of(explicit)[1] == {
        "name": "SCHEDULED_EVENTS_ENDPOINT",
        "value": "http://x/metadata/scheduledevents",
    }


def test_disabled_scheduled_events_leave_the_pod_alone() -> None:
    assert env_of(pod_for(spec())) == [None, None]


def test_a_template_that_sets_the_variable_keeps_its_value() -> None:
    ss = spec(scheduledEvents={"enabled": True})
    ss.template["spec"]["containers"][1]["env"] = [{"name": "SCHEDULED_EVENTS_ENDPOINT", "value": "mine"}]
    assert env_of(pod_for(ss))[1] == {"name": "SCHEDULED_EVENTS_ENDPOINT", "value": "mine"}


def test_the_template_itself_is_not_changed() -> None:
    ss = spec(scheduledEvents={"enabled": True})
    pod_for(ss)
    assert "SCHEDULED_EVENTS_ENDPOINT" not in str(ss.template)
