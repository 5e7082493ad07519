"""The metrics collector and JSON logs, fed by hand with a clock the test moves."""

from __future__ import annotations

import json
import logging
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from scaleset_operator import logs, metrics
from scaleset_operator.identity import LABEL_REVISION, LABEL_SCALESET, LABEL_SURGE, LABEL_UPGRADE_DOMAIN


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def scrape(collector: metrics.FleetCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    registry.register(collector)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return samples


def scaleset(upgrade: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "prod", "name": "web"},
        "spec": {"replicas": 3},
        "status": {"upgrade": upgrade, **status},
    }


def pod(name: str, domain: int, revision: str, ready: bool, surge: bool = False) -> dict[str, Any]:
    labels = {LABEL_SCALESET: "web", LABEL_UPGRADE_DOMAIN: str(domain), LABEL_REVISION: revision}
    if surge:
        labels[LABEL_SURGE] = "true"
    return {
        "metadata": {"namespace": "prod", "name": name, "labels": labels},
        "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


def test_instances_are_counted_by_domain_revision_and_health_without_surge_pods() -> None:
    collector = metrics.FleetCollector()
    collector.observe_pod(pod("web-0", 0, "web-a", True))
    collector.observe_pod(pod("web-1", 1, "web-b", False))
    collector.observe_pod(pod("web-2", 1, "web-b", True))
    collector.observe_pod(pod("web-surge-1", 1, "web-b", True, surge=True))
    collector.observe_pod(pod("web-0", 0, "web-a", True), deleted=True)
    rows = {
        (labels["upgrade_domain"], labels["revision"], labels["health"]): value
        for labels, value in scrape(collector)["scaleset_instances"]
    }
    assert rows == {("1", "web-b", "healthy"): 1, ("1", "web-b", "unhealthy"): 1}


def test_a_finished_batch_is_timed_once_however_often_it_is_seen() -> None:
    collector = metrics.FleetCollector()
    batch = {
        "startedAt": "2026-01-01T00:00:00Z",
        "finishedAt": "2026-01-01T00:00:42Z",
        "instances": ["web-0"],
    }
    for _ in range(3):
        collector.observe_scaleset(
            scaleset({"phase": "RollingForward", "locked": True, "currentBatch": batch})
        )
    samples = scrape(collector)
    assert samples["scaleset_batch_duration_seconds_count"] == [({}, 1.0)]
    assert samples["scaleset_batch_duration_seconds_sum"] == [({}, 42.0)]
    assert ({"le": "30.0"}, 0.0) in samples["scaleset_batch_duration_seconds_bucket"]
    assert ({"le": "60.0"}, 1.0) in samples["scaleset_batch_duration_seconds_bucket"]


def test_waiting_for_a_window_is_a_gauge_while_it_lasts_and_a_histogram_after() -> None:
    clock = Clock()
    collector = metrics.FleetCollector(clock=clock)
    collector.observe_scaleset(scaleset({"phase": "WaitingForMaintenanceWindow", "locked": True}))
    clock.now += 300
    waiting = scrape(collector)["scaleset_upgrade_waiting_seconds"]
    assert waiting == [
        ({"namespace": "prod", "scaleset": "web", "reason": "WaitingForMaintenanceWindow"}, 300.0)
    ]
    collector.observe_scaleset(scaleset({"phase": "RollingForward", "locked": True}))
    samples = scrape(collector)
    assert "scaleset_upgrade_waiting_seconds" not in samples
    assert samples["scaleset_upgrade_wait_duration_seconds_sum"] == [
        ({"reason": "WaitingForMaintenanceWindow"}, 300.0)
    ]


def test_phase_conditions_and_pending_updates_per_scaleset() -> None:
    collector = metrics.FleetCollector()
    collector.observe_scaleset(
        scaleset(
            {"phase": "Paused", "locked": True, "currentUpgradeDomain": 2},
            conditions=[{"type": "Stalled", "status": "True"}],
            pendingUpdates=[
                {"kind": "Patch", "name": "KB1", "classification": "Security"},
                {"kind": "Patch", "name": "KB2", "classification": "Security"},
                {"kind": "OSImage", "name": "nginx"},
            ],
        )
    )
    samples = scrape(collector)
    phases = {labels["phase"]: value for labels, value in samples["scaleset_upgrade_phase"]}
    assert phases["Paused"] == 1 and sum(phases.values()) == 1
    assert samples["scaleset_upgrade_current_domain"] == [({"namespace": "prod", "scaleset": "web"}, 2.0)]
    stalled = {labels["status"]: value for labels, value in samples["scaleset_status_condition"]}
    assert stalled == {"true": 1.0, "false": 0.0, "unknown": 0.0}
    pending = {
        (labels["kind"], labels["classification"]): value
        for labels, value in samples["scaleset_pending_updates"]
    }
    assert pending == {("Patch", "Security"): 2.0, ("OSImage", ""): 1.0}


def test_a_standby_exports_no_fleet_gauges() -> None:
    collector = metrics.FleetCollector()
    collector.observe_scaleset(scaleset({"phase": "Idle"}))
    collector.enabled = lambda: False
    assert scrape(collector) == {}


def test_api_requests_are_counted_by_kubernetes_verb() -> None:
    def count(verb: str, code: str) -> float:
        return metrics.API_REQUESTS.labels(verb=verb, code=code)._value.get()

    before = {verb: count(verb, "200") for verb in ("get", "list", "patch", "update")}
    metrics.api_request("GET", None, 200)
    metrics.api_request("GET", {"labelSelector": "a=b", "limit": 500}, 200)
    metrics.api_request("PATCH", None, 200)
    metrics.api_request("PUT", None, 200)
    for verb in ("get", "list", "patch", "update"):
        assert count(verb, "200") == before[verb] + 1, verb


def test_json_logs_are_one_object_per_line_with_extras_and_exceptions(capsys: Any) -> None:
    root = logging.getLogger()
    # configure() binds a handler to this test's captured stderr: it must not outlive the test, or the
    # suite's operator threads log into a closed stream once the capture ends.
    handlers, level = list(root.handlers), root.level
    logs.configure(log_format="json")
    try:
        log = logging.getLogger("scaleset.test")
        log.info("batch %s started", 3, extra={"scaleset": "prod/web"})
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            log.exception("pass failed")
        lines = capsys.readouterr().err.strip().splitlines()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    first, second = (json.loads(line) for line in lines)
    assert (first["level"], first["logger"], first["message"], first["scaleset"]) == (
        "info",
        "scaleset.test",
        "batch 3 started",
        "prod/web",
    )
    assert second["level"] == "error" and "RuntimeError: boom" in second["exception"]


def test_a_bad_metrics_address_is_one_sentence_naming_the_option() -> None:
    from typer.testing import CliRunner

    from scaleset_operator.cli.main import app

    result = CliRunner().invoke(app, ["operator", "--metrics-address", "nine-thousand"])
    assert result.exit_code == 2
    assert "--metrics-address must be HOST:PORT or :PORT, not 'nine-thousand'." in result.output


def test_build_info_names_the_installed_version() -> None:
    import importlib.metadata

    from prometheus_client import REGISTRY

    labels = {
        "version": importlib.metadata.version("scaleset-operator"),
        "python_version": __import__("platform").python_version(),
        "kopf_version": importlib.metadata.version("kopf"),
    }
    assert REGISTRY.get_sample_value("scaleset_build_info", labels) == 1.0
