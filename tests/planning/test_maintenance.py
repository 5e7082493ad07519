"""Assignment of maintenance configurations to ScaleSets, deferral, and the gate before a batch."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.api.models import LabelSelector, MaintenanceConfiguration, MaintenanceScope
from scaleset_operator.planning.maintenance import (
    Closed,
    Deferred,
    Open,
    assign,
    gate_batch,
    may_start,
    must_apply_anyway,
    selector_matches,
    status_summary,
)

SATURDAY_NIGHT = datetime(2026, 11, 22, 7, 0, tzinfo=UTC)  # 23:00 Pacific, inside the window
MONDAY_NOON = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)


def configuration(
    name: str, scope: str = "OSImage", assignment: dict[str, Any] | None = None, **spec: Any
) -> MaintenanceConfiguration:
    window = {
        "startDateTime": "2026-11-01 22:00",
        "duration": "04:00",
        "timeZone": "Pacific Standard Time",
        "recurEvery": "Week Saturday,Sunday",
        **spec.pop("window", {}),
    }
    return MaintenanceConfiguration.model_validate(
        {
            "metadata": {"name": name},
            "spec": {"maintenanceScope": scope, "window": window, "assignment": assignment or {}, **spec},
        }
    )


def selector(**fields: Any) -> LabelSelector:
    return LabelSelector.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "labels", "matches"),
    [
        ({}, {}, True),
        ({"matchLabels": {"tier": "web"}}, {"tier": "web", "x": "y"}, True),
        ({"matchLabels": {"tier": "web"}}, {"tier": "db"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "db"]}]},
            {"tier": "db"},
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, {}, True),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]},
            {"tier": "web"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {"tier": ""}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {"tier": "x"}, False),
        (
            {"matchLabels": {"env": "prod"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]},
            {"env": "prod"},
            False,
        ),
    ],
)
def test_label_selector_semantics(fields: dict[str, Any], labels: dict[str, str], matches: bool) -> None:
    assert selector_matches(selector(**fields), labels) is matches


def test_absent_selector_matches_everything() -> None:
    assert selector_matches(None, {"anything": "at all"})


def test_both_selectors_must_match_for_a_configuration_to_apply() -> None:
    prod_web = configuration(
        "prod-web",
        assignment={
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "scaleSetSelector": {"matchLabels": {"tier": "web"}},
        },
    )
    assert assign([prod_web], {"tier": "web"}, {"env": "prod"}).configurations == ("prod-web",)
    assert assign([prod_web], {"tier": "web"}, {"env": "dev"}).configurations == ()
    assert assign([prod_web], {"tier": "db"}, {"env": "prod"}).configurations == ()


def test_configurations_of_one_scope_are_united_and_the_shortest_deferral_holds() -> None:
    weekend = configuration("weekend", maxDeferral="20d")
    monday = configuration(
        "monday", maxDeferral="10d", window={"recurEvery": "Week Monday", "startDateTime": "2026-11-01 10:00"}
    )
    assigned = assign([weekend, monday], {}, {})
    os_image = assigned.for_scope(MaintenanceScope.OS_IMAGE)
    assert os_image is not None
    assert os_image.configurations == ("monday", "weekend")
    assert os_image.max_deferral == timedelta(days=10)
    assert os_image.is_open(SATURDAY_NIGHT)
    assert os_image.is_open(MONDAY_NOON)  # 12:00 Pacific, the Monday window
    assert not os_image.is_open(datetime(2026, 11, 24, 20, tzinfo=UTC))


def test_user_template_change_is_never_gated() -> None:
    assigned = assign([configuration("weekend")], {}, {})
    decision = gate_batch(assigned, None, MONDAY_NOON)
    assert isinstance(decision, Open)
    assert decision.reason == "NotMaintenance"


def test_scale_set_without_configuration_of_the_scope_is_not_gated() -> None:
    assigned = assign([configuration("weekend", scope="Host")], {}, {})
    decision = gate_batch(assigned, MaintenanceScope.OS_IMAGE, MONDAY_NOON)
    assert isinstance(decision, Open)
    assert decision.reason == "NoMaintenanceConfiguration"


def test_inside_the_window_a_batch_may_start() -> None:
    decision = gate_batch(
        assign([configuration("weekend")], {}, {}), MaintenanceScope.OS_IMAGE, SATURDAY_NIGHT
    )
    assert isinstance(decision, Open)
    assert decision.window is not None
    assert decision.window.start.isoformat() == "2026-11-21T22:00:00-08:00"


def test_outside_the_window_the_batch_waits_for_the_next_start() -> None:
    decision = gate_batch(
        assign([configuration("weekend")], {}, {}),
        MaintenanceScope.OS_IMAGE,
        MONDAY_NOON,
        MONDAY_NOON - timedelta(days=2),
    )
    assert isinstance(decision, Closed)
    assert not may_start(decision)
    assert decision.reason == "WaitingForMaintenanceWindow"
    assert decision.next_start is not None
    assert decision.next_start.isoformat() == "2026-11-28T22:00:00-08:00"
    assert "2026-11-28T22:00-08:00" in decision.message
    assert "weekend" in decision.message


def test_past_max_deferral_work_starts_outside_the_window_with_a_reason() -> None:
    assigned = assign([configuration("weekend", maxDeferral="7d")], {}, {})
    decision = gate_batch(assigned, MaintenanceScope.OS_IMAGE, MONDAY_NOON, MONDAY_NOON - timedelta(days=7))
    assert isinstance(decision, Deferred)
    assert may_start(decision)
    assert "maxDeferral of 7d" in decision.message


def test_an_expired_configuration_never_opens_again() -> None:
    expired = configuration("old", window={"expirationDateTime": "2026-11-10 00:00"})
    decision = gate_batch(assign([expired], {}, {}), MaintenanceScope.OS_IMAGE, MONDAY_NOON)
    assert isinstance(decision, Closed)
    assert decision.next_start is None


def test_a_configuration_with_a_bad_window_applies_but_never_opens() -> None:
    broken = configuration("broken", window={"recurEvery": "Fortnight"})
    assigned = assign([broken], {}, {})
    assert assigned.problems == (
        "MaintenanceConfiguration broken: spec.window.recurEvery: 'Fortnight' is not a recurrence; use Day, 3Days, "
        "Week Saturday,Sunday, 2Weeks Friday, Month day1,day-1 or Month Last Sunday Offset2.",
    )
    assert isinstance(gate_batch(assigned, MaintenanceScope.OS_IMAGE, SATURDAY_NIGHT), Closed)


def test_status_names_configurations_and_next_windows() -> None:
    summary = status_summary(
        assign([configuration("weekend"), configuration("hosts", scope="Host")], {}, {}), MONDAY_NOON
    )
    assert summary is not None
    assert summary.model_dump(by_alias=True) == {
        "configurations": ["hosts", "weekend"],
        "nextWindows": [
            {"scope": "Host", "start": "2026-11-28T22:00:00-08:00", "end": "2026-11-29T02:00:00-08:00"},
            {"scope": "OSImage", "start": "2026-11-28T22:00:00-08:00", "end": "2026-11-29T02:00:00-08:00"},
        ],
        "problems": [],
    }


@given(
    st.integers(0, 60 * 24 * 40),
    st.integers(0, 60 * 24 * 40),
)
def test_deferral_never_exceeds_35_days(waited_minutes: int, deferral_minutes: int) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    waited = timedelta(minutes=waited_minutes)
    deferral = timedelta(minutes=deferral_minutes)
    anyway = must_apply_anyway(now - waited, deferral, now)
    assert anyway == (waited >= min(deferral, timedelta(days=35)))
    if waited >= timedelta(days=35):
        assert anyway


def test_status_has_no_maintenance_when_no_configuration_applies() -> None:
    assert status_summary(assign([], {}, {}), MONDAY_NOON) is None


@pytest.mark.parametrize(
    ("waited", "deferral", "anyway"),
    [
        (timedelta(days=6, hours=23), timedelta(days=7), False),
        (timedelta(days=7), timedelta(days=7), True),
        (timedelta(days=35), timedelta(days=40), True),
        (timedelta(days=34), timedelta(days=40), False),
    ],
)
def test_must_apply_anyway_at_max_deferral_and_never_later_than_35_days(
    waited: timedelta, deferral: timedelta, anyway: bool
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    assert must_apply_anyway(now - waited, deferral, now) is anyway
