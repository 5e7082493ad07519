"""kstatus itself (the status library of Flux, kpt and cli-utils, built into tools/kstatus by
`make kstatus`) on ScaleSets as the operator writes them; the live states are in
tests/integration/test_gitops_status.py."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tests.unit.test_integrations import scaleset

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def kstatus_binary() -> Path:
    """The tool `make kstatus` builds (at once when it is cached)."""
    built = subprocess.run(
        ["make", "-s", "--no-print-directory", "kstatus"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return ROOT / built.stdout.strip().splitlines()[-1]


def kstatus_of(objects: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """kstatus's (status, message) for each object, in order."""
    result = subprocess.run(
        [str(kstatus_binary())],
        input="\n".join(json.dumps(o) for o in objects),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [(line["status"], line["message"]) for line in map(json.loads, result.stdout.splitlines())]


def with_kind(obj: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "fleet.scaleset.dev/v1alpha1", "kind": "ScaleSet", **obj}


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            scaleset(
                Ready=("True", "AllInstancesHealthy"),
                Stalled=("False", "NotStalled"),
                Reconciling=("False", "AllInstancesHealthy"),
            ),
            "Current",
        ),
        (
            scaleset(
                Ready=("False", "BatchInProgress"),
                Stalled=("False", "NotStalled"),
                Reconciling=("True", "BatchInProgress"),
            ),
            "InProgress",
        ),
        # Reconciling=True is read before Ready: a stale Ready=True does not make it Current.
        (scaleset(Ready=("True", "AllInstancesHealthy"), Reconciling=("True", "BatchStarted")), "InProgress"),
        (
            scaleset(
                Ready=("False", "TooManyUnhealthyUpgraded"),
                Stalled=("True", "TooManyUnhealthyUpgraded"),
                Reconciling=("False", "TooManyUnhealthyUpgraded"),
            ),
            "Failed",
        ),
        # Manual mode waiting for a walk, or paused: not ready, so in progress for kstatus.
        (
            scaleset(
                phase="Paused", Ready=("False", "WaitingForWalk"), Reconciling=("True", "WaitingForWalk")
            ),
            "InProgress",
        ),
        (scaleset(generation=3, observed=2, Ready=("True", "AllInstancesHealthy")), "InProgress"),
        # The library's own reading of an object the operator has not written a status for yet.
        ({"metadata": {"name": "web", "generation": 1}, "spec": {}}, "Current"),
    ],
)
def test_kstatus_reads_the_conditions_the_operator_writes(obj: dict[str, Any], expected: str) -> None:
    ((status, message),) = kstatus_of([with_kind(obj)])
    assert status == expected, message


def test_a_stalled_scaleset_carries_its_message_to_kstatus() -> None:
    obj = scaleset(Ready=("False", "TooManyUnhealthy"), Stalled=("True", "TooManyUnhealthy"))
    assert kstatus_of([with_kind(obj)]) == [("Failed", "Stalled says TooManyUnhealthy")]
