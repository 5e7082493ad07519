"""Which maintenance configurations apply to a ScaleSet, and whether disruptive work of a scope may start now.

The controller asks :func:`gate_batch` before it starts each batch of maintenance work of a scope
(OSImage: automatic OS image upgrades; Extension: automatic extension upgrades; InGuestPatch: guest
patches; Host: moving instances off nodes under maintenance). A batch already running when its
window closes finishes; only the next one waits. A change of the template made by the user is not
maintenance and is never gated (scope ``None``), and a ScaleSet with no configuration of a scope is
not gated for that scope. Several configurations of one scope that apply to the same ScaleSet are
united: work may start while any of them is open, and the strictest (shortest) ``maxDeferral`` holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from scaleset_operator.api.durations import format_duration, parse_duration
from scaleset_operator.api.models import (
    InstallPatches,
    LabelSelector,
    MaintenanceConfiguration,
    MaintenanceScope,
    MaintenanceStatus,
    MaintenanceWindowStatus,
)
from scaleset_operator.api.rules import MAX_DEFERRAL_DAYS
from scaleset_operator.planning.windows import Schedule, Window, WindowError, iter_union, parse_window

LONGEST_DEFERRAL = timedelta(days=MAX_DEFERRAL_DAYS)


# --------------------------------------------------------------------------- assignment


def selector_matches(selector: LabelSelector | None, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics; an absent or empty selector matches everything."""
    if selector is None:
        return True
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        if requirement.operator == "In" and not (present and value in requirement.values):
            return False
        if requirement.operator == "NotIn" and present and value in requirement.values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


def applies_to(
    configuration: MaintenanceConfiguration,
    scale_set_labels: Mapping[str, str],
    namespace_labels: Mapping[str, str],
) -> bool:
    """Whether the configuration's assignment selects a ScaleSet with these labels in a namespace with those."""
    assignment = configuration.spec.assignment
    return selector_matches(assignment.namespace_selector, namespace_labels) and selector_matches(
        assignment.scale_set_selector, scale_set_labels
    )


@dataclass(frozen=True)
class ScopeMaintenance:
    """The configurations of one scope that apply to a ScaleSet, with their windows united."""

    scope: MaintenanceScope
    configurations: tuple[str, ...]
    schedules: tuple[Schedule, ...]
    max_deferral: timedelta

    def window_at(self, now: datetime) -> Window | None:
        """The united opening that holds `now`, if any."""
        opening = next(iter_union(self.schedules, now), None)
        return opening if opening is not None and opening.contains(now) else None

    def is_open(self, now: datetime) -> bool:
        return self.window_at(now) is not None

    def next_window(self, now: datetime) -> Window | None:
        """The opening that holds `now`, or else the next one; None when no window will open again."""
        return next(iter_union(self.schedules, now), None)

    def next_start(self, now: datetime) -> datetime | None:
        """The start of the next opening that begins after `now`; None when no window will open again."""
        for opening in iter_union(self.schedules, now):
            if opening.start_utc > now.astimezone(UTC):
                return opening.start
        return None


@dataclass(frozen=True)
class AssignedMaintenance:
    """Everything about maintenance windows that one ScaleSet is subject to."""

    scopes: Mapping[MaintenanceScope, ScopeMaintenance] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    # The installPatches of the first assigned InGuestPatch configuration by name (patches.install_settings).
    install_patches: InstallPatches | None = None

    @property
    def configurations(self) -> tuple[str, ...]:
        """Names of the configurations that apply, of every scope, sorted."""
        return tuple(sorted(name for scope in self.scopes.values() for name in scope.configurations))

    def for_scope(self, scope: MaintenanceScope) -> ScopeMaintenance | None:
        return self.scopes.get(scope)


def assign(
    configurations: Iterable[MaintenanceConfiguration],
    scale_set_labels: Mapping[str, str],
    namespace_labels: Mapping[str, str],
) -> AssignedMaintenance:
    """The configurations that select a ScaleSet, grouped and united by scope.

    A configuration whose window cannot be scheduled still applies but never opens, so its scope
    waits until maxDeferral; its problem is in `problems`, one sentence naming the configuration
    and the field, for an Event.
    """
    grouped: dict[MaintenanceScope, list[MaintenanceConfiguration]] = {}
    for configuration in configurations:
        if applies_to(configuration, scale_set_labels, namespace_labels):
            scope = MaintenanceScope(configuration.spec.maintenance_scope)
            grouped.setdefault(scope, []).append(configuration)
    scopes: dict[MaintenanceScope, ScopeMaintenance] = {}
    problems: list[str] = []
    for scope, members in sorted(grouped.items()):
        members.sort(key=lambda item: item.metadata.name or "")
        schedules: list[Schedule] = []
        for member in members:
            try:
                schedules.append(parse_window(member.spec.window))
            except WindowError as error:
                problems.append(f"MaintenanceConfiguration {member.metadata.name}: {error}")
        deferral = min(min(parse_duration(member.spec.max_deferral), LONGEST_DEFERRAL) for member in members)
        scopes[scope] = ScopeMaintenance(
            scope, tuple(member.metadata.name or "" for member in members), tuple(schedules), deferral
        )
    in_guest = grouped.get(MaintenanceScope.IN_GUEST_PATCH)
    return AssignedMaintenance(
        scopes, tuple(problems), in_guest[0].spec.install_patches if in_guest else None
    )


# --------------------------------------------------------------------------- deferral and gating


def must_apply_anyway(pending_since: datetime, max_deferral: timedelta, now: datetime) -> bool:
    """Whether an update pending since `pending_since` has waited its maxDeferral (never more than 35 days)."""
    return now - pending_since >= min(max_deferral, LONGEST_DEFERRAL)


@dataclass(frozen=True)
class Open:
    """Work may start: no gate applies, or a window is open."""

    reason: str
    message: str
    window: Window | None = None


@dataclass(frozen=True)
class Closed:
    """Work of the scope waits for the next window; phase WaitingForMaintenanceWindow."""

    next_start: datetime | None
    message: str
    reason: str = "WaitingForMaintenanceWindow"


@dataclass(frozen=True)
class Deferred:
    """No window is open but the update has waited past maxDeferral: work starts, with a Warning Event."""

    pending_since: datetime
    max_deferral: timedelta
    message: str
    reason: str = "MaxDeferralExceeded"


GateDecision = Open | Closed | Deferred


def may_start(decision: GateDecision) -> bool:
    """Whether the controller may start the batch."""
    return not isinstance(decision, Closed)


def _names(scope: ScopeMaintenance) -> str:
    kind = "MaintenanceConfiguration" if len(scope.configurations) == 1 else "MaintenanceConfigurations"
    return f"{kind} {', '.join(scope.configurations)}"


def _when(instant: datetime) -> str:
    local = instant.isoformat(timespec="minutes")
    utc = instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return local if local.endswith("+00:00") else f"{local} ({utc})"


def gate_batch(
    assigned: AssignedMaintenance,
    scope: MaintenanceScope | None,
    now: datetime,
    pending_since: datetime | None = None,
) -> GateDecision:
    """May a batch of `scope` work start at `now`? `pending_since`: when the oldest pending update of the scope appeared.

    `scope` None is work the user asked for (a template change): never gated.
    """
    if scope is None:
        return Open(
            "NotMaintenance", "A template change made by the user is never held for a maintenance window."
        )
    maintenance = assigned.for_scope(scope)
    if maintenance is None:
        return Open("NoMaintenanceConfiguration", f"No MaintenanceConfiguration of scope {scope} applies.")
    opening = maintenance.window_at(now)
    if opening is not None:
        return Open(
            "InsideMaintenanceWindow",
            f"The {scope} window of {_names(maintenance)} is open until {_when(opening.end)}.",
            opening,
        )
    if pending_since is not None and must_apply_anyway(pending_since, maintenance.max_deferral, now):
        return Deferred(
            pending_since,
            maintenance.max_deferral,
            f"{scope} maintenance pending since {_when(pending_since)} has waited longer than the maxDeferral "
            f"of {format_duration(maintenance.max_deferral)} of {_names(maintenance)}, so it is applied "
            "outside a maintenance window.",
        )
    upcoming = maintenance.next_start(now)
    if upcoming is None:
        return Closed(None, f"{scope} maintenance waits: no window of {_names(maintenance)} opens again.")
    return Closed(
        upcoming,
        f"{scope} maintenance waits for the next window of {_names(maintenance)} at {_when(upcoming)}.",
    )


def status_summary(assigned: AssignedMaintenance, now: datetime) -> MaintenanceStatus | None:
    """status.maintenance: the configurations that apply and each scope's open or next window; None when none applies."""
    if not assigned.scopes:
        return None
    windows: list[MaintenanceWindowStatus] = []
    for scope, maintenance in sorted(assigned.scopes.items()):
        opening = maintenance.next_window(now)
        if opening is not None:
            windows.append(
                MaintenanceWindowStatus(
                    scope=str(scope), start=opening.start.isoformat(), end=opening.end.isoformat()
                )
            )
    return MaintenanceStatus(
        configurations=list(assigned.configurations), next_windows=windows, problems=list(assigned.problems)
    )
