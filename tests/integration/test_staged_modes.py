"""Staged mode under the same rules as every mode: spec.paused, maintenance windows, a swap the user takes.

- "spec.paused: true starts no new batch": in Staged mode nothing is created or swapped.
- An automatic package rolled out in Staged mode waits for its maintenance window like any other:
  the second set is not started, and the Services are not swapped, while the window is closed.
- The seed's VIP swap is an action the user takes: with `staged.swap: Manual` the second set is built
  and health-checked, then waits in phase ReadyToSwap until `scaleset swap NAME`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from scaleset_operator.cli.main import app
from scaleset_operator.control.kube import MERGE_PATCH, Kube, core_path, fleet_path
from scaleset_operator.identity import LABEL_SLOT
from tests.integration.helpers import (
    IMAGE,
    create,
    maintenance_configuration,
    pods_of,
    policy_body,
    scaleset_body,
    set_image,
    wait_for,
)
from tests.integration.test_automatic_updates import catalog_name, publish, repository, version
from tests.integration.test_staged import create_service, production_on, staged_fleet

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("operator")]
__all__ = ["repository"]  # the fixture, imported for these tests

TIMEOUT = 60


def upgrade(kube: Kube, namespace: str) -> dict[str, Any]:
    status = kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}
    return dict(status.get("upgrade") or {})


def phase_is(kube: Kube, namespace: str, phase: str) -> dict[str, Any] | None:
    found = upgrade(kube, namespace)
    return found if found.get("phase") == phase else None


def slots(kube: Kube, namespace: str) -> set[str]:
    return {
        (p["metadata"].get("labels") or {}).get(LABEL_SLOT, "blue") for p in pods_of(kube, namespace, "web")
    }


def service_slot(kube: Kube, namespace: str) -> str | None:
    selector = kube.get(core_path("services", namespace, "web"))["spec"]["selector"]
    slot: str | None = selector.get(LABEL_SLOT)
    return slot


def swap(kubeconfig: str, namespace: str) -> Any:
    return CliRunner().invoke(
        app, ["swap", "web", "-n", namespace, "--kubeconfig", kubeconfig, "--timeout", "20"]
    )


def test_spec_paused_holds_a_staged_upgrade_until_resumed(kube: Kube, namespace: str) -> None:
    staged_fleet(kube, namespace, 2)
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": True}}, MERGE_PATCH)
    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    held = wait_for(lambda: phase_is(kube, namespace, "Paused"), TIMEOUT, "phase Paused")
    assert held["reason"] == "Paused" and "spec.paused" in held["message"]
    time.sleep(1)  # passes go by: still no second set
    assert slots(kube, namespace) == {"blue"} and len(pods_of(kube, namespace, "web")) == 2
    kube.patch(fleet_path("scalesets", namespace, "web"), {"spec": {"paused": False}}, MERGE_PATCH)
    wait_for(lambda: production_on(kube, namespace, "green"), TIMEOUT, "production on green once resumed")


def test_a_manual_swap_waits_ready_to_swap_until_scaleset_swap(
    kube: Kube, namespace: str, kubeconfig: str
) -> None:
    create_service(kube, namespace, "web")
    staged_fleet(kube, namespace, 2, swap="Manual")
    nothing = swap(kubeconfig, namespace)
    assert nothing.exit_code == 1 and "Refused: No staged set is ready to swap to" in nothing.output

    set_image(kube, namespace, "web", f"{IMAGE}:v2")
    ready = wait_for(lambda: phase_is(kube, namespace, "ReadyToSwap"), TIMEOUT, "phase ReadyToSwap")
    assert ready["reason"] == "ReadyToSwap" and "scaleset swap" in ready["message"]
    time.sleep(1)  # healthy and built, the set waits for the user
    assert service_slot(kube, namespace) == "blue"
    green = [p for p in pods_of(kube, namespace, "web") if p["metadata"]["labels"].get(LABEL_SLOT) == "green"]
    assert len(green) == 2

    accepted = swap(kubeconfig, namespace)
    assert accepted.exit_code == 0, accepted.output
    assert "Accepted: Swapping every Service to slot green" in accepted.output
    done = wait_for(lambda: production_on(kube, namespace, "green"), TIMEOUT, "production on green")
    assert service_slot(kube, namespace) == "green"
    assert done["status"]["upgrade"]["lastAction"]["action"] == "Swap"
    assert "fleet.scaleset.dev/swap" not in (done["metadata"].get("annotations") or {})


def test_a_staged_automatic_package_waits_for_its_window_to_start_and_to_swap(
    kube: Kube, namespace: str, repository: str, configurations: list[str]
) -> None:
    tag = catalog_name(repository)
    closed = datetime.now(UTC) + timedelta(days=2)
    opened = datetime.now(UTC) - timedelta(hours=1)
    kube.create(
        fleet_path("maintenanceconfigurations"),
        maintenance_configuration(tag, "OSImage", {"fleet": tag}, closed),
    )
    configurations.append(tag)
    create_service(kube, namespace, "web")
    create(
        kube,
        namespace,
        policy_body(
            "staged",
            mode="Staged",
            automaticOSUpgrade={"enabled": True},
            healthCheck={"stabilizationPeriod": "4s"},
        ),
    )
    body = scaleset_body("web", 2, image=f"{repository}:1.0.0", policy="staged")
    body["metadata"]["labels"] = {"fleet": tag}
    create(kube, namespace, body)
    wait_for(lambda: production_on(kube, namespace, "blue"), TIMEOUT, "web Ready on slot blue")

    publish(kube, repository, version("1.1.0"))
    wait_for(
        lambda: any(
            p.get("version") == "1.1.0" and "MaintenanceConfiguration" in (p.get("waitingFor") or "")
            for p in (kube.get(fleet_path("scalesets", namespace, "web")).get("status") or {}).get(
                "pendingUpdates"
            )
            or []
        ),
        TIMEOUT,
        "1.1.0 waiting for its window",
    )
    time.sleep(1)
    assert slots(kube, namespace) == {"blue"}  # not staged outside the window

    # The window opens: the set is built; it closes before the set has stabilised: the swap waits.
    window = fleet_path("maintenanceconfigurations", name=tag)
    kube.patch(window, {"spec": {"window": {"startDateTime": opened.strftime("%Y-%m-%d %H:%M")}}})
    wait_for(lambda: "green" in slots(kube, namespace), TIMEOUT, "the staged set started in the window")
    kube.patch(window, {"spec": {"window": {"startDateTime": closed.strftime("%Y-%m-%d %H:%M")}}})
    waiting = wait_for(
        lambda: phase_is(kube, namespace, "WaitingForMaintenanceWindow"),
        TIMEOUT,
        "the swap waiting for the window",
    )
    assert closed.strftime("%Y-%m-%d") in waiting["message"]
    time.sleep(5)  # past the stabilisation period: healthy, and still not swapped
    assert service_slot(kube, namespace) == "blue"
    assert phase_is(kube, namespace, "WaitingForMaintenanceWindow")

    kube.patch(window, {"spec": {"window": {"startDateTime": opened.strftime("%Y-%m-%d %H:%M")}}})
    done = wait_for(
        lambda: production_on(kube, namespace, "green"), TIMEOUT, "swapped once the window reopened"
    )
    assert service_slot(kube, namespace) == "green"
    images = {
        c["image"]
        for p in pods_of(kube, namespace, "web")
        if p["metadata"]["labels"].get(LABEL_SLOT) == "green"
        for c in p["spec"]["containers"]
    }
    assert images == {f"{repository}:1.1.0"}
    assert done["status"]["automaticUpdates"]["osImage"]["version"] == "1.1.0"
