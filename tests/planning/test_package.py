"""Pending updates, one package per instance, extension ordering and the extension batch rule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import (
    AutomaticUpdatesStatus,
    Extension,
    ImageCatalog,
    InstallPatches,
    MaintenanceConfiguration,
    MaintenanceScope,
    ScaleSetSpec,
    UpgradePolicySpec,
)
from scaleset_operator.planning.automatic import HOTPATCHES_ANNOTATION, effective_template
from scaleset_operator.planning.catalog import index_catalogs
from scaleset_operator.planning.maintenance import AssignedMaintenance, Closed, Open, assign
from scaleset_operator.planning.package import (
    ExtensionOrderError,
    automatic_scopes,
    gate_package_batch,
    instance_template,
    order_sidecars,
    plan_package,
    provision_order,
    restart_due,
    restarts_in_place,
)
from scaleset_operator.planning.revisions import UpdateKind, classify_update
from scaleset_operator.planning.updates import extension_policy, pending_updates, rolling_out, scope_of

NIGHT = datetime(2026, 12, 1, 23, 0, tzinfo=UTC)  # off-peak in UTC
NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OS = "registry.example/os/ubuntu"


def at(day: int) -> str:
    return f"2026-11-{day:02d}T00:00:00Z"


CATALOG = ImageCatalog.model_validate(
    {
        "metadata": {"name": "publisher"},
        "spec": {
            "images": [
                {
                    "repository": OS,
                    "versions": [
                        {"version": "22.4.1", "publishedAt": at(1)},
                        {"version": "22.4.2", "publishedAt": at(12)},
                    ],
                }
            ],
            "extensions": [
                {
                    "name": "log-agent",
                    "repository": "registry.example/ext/log",
                    "versions": [{"version": "2.1.0", "publishedAt": at(5)}],
                }
            ],
            "patches": [
                {
                    "id": "HP-OLD",
                    "classification": "Critical",
                    "appliesTo": [OS],
                    "hotpatch": True,
                    "publishedAt": at(10),
                },
                {
                    "id": "HP-NEW",
                    "classification": "Security",
                    "appliesTo": [OS],
                    "hotpatch": True,
                    "publishedAt": at(20),
                },
                {
                    "id": "OTHER",
                    "classification": "Other",
                    "appliesTo": [OS],
                    "hotpatch": True,
                    "publishedAt": at(20),
                },
            ],
        },
    }
)


def scaleset(os_image: str = f"{OS}:22.4.1", **spec: Any) -> ScaleSetSpec:
    return ScaleSetSpec.model_validate(
        {
            "replicas": 10,
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "os", "image": os_image},
                        {"name": "log", "image": "registry.example/ext/log:2.0.0"},
                    ]
                },
            },
            "extensions": [{"name": "log-agent", "container": "log", "enableAutomaticUpgrade": True}],
            **spec,
        }
    )


# Guest patches are installed only with automaticGuestPatching, hotpatches without a restart only with
# enableHotpatching (the VM API's patchMode AutomaticByPlatform and enableHotpatching).
GUEST_PATCHING = {"automaticGuestPatching": {"enabled": True, "enableHotpatching": True}}
PATCHING = UpgradePolicySpec.model_validate(GUEST_PATCHING)
ALL_ON = UpgradePolicySpec.model_validate(
    {
        "automaticOSUpgrade": {"enabled": True},
        "automaticExtensionUpgrade": {"enabled": True},
        **GUEST_PATCHING,
    }
)


def images(template: dict[str, Any]) -> list[str]:
    return [container["image"] for container in template["spec"]["containers"]]


def window(scope: str, start: str = "2026-11-01 10:00") -> MaintenanceConfiguration:
    return MaintenanceConfiguration.model_validate(
        {
            "metadata": {"name": scope.lower()},
            "spec": {
                "maintenanceScope": scope,
                "window": {"startDateTime": start, "duration": "4h", "recurEvery": "Day"},
            },
        }
    )


def test_pending_updates_by_kind_classification_scope_and_since() -> None:
    pending = pending_updates(scaleset(), ALL_ON, index_catalogs([CATALOG]), None, NOON)
    assert [(u.kind, u.name, u.classification, u.version, u.since, u.scope) for u in pending] == [
        ("OSImage", OS, None, "22.4.2", "2026-11-12T00:00:00Z", "OSImage"),
        ("Extension", "log-agent", None, "2.1.0", "2026-11-05T00:00:00Z", "Extension"),
        ("Patch", "HP-NEW", "Security", "hotpatch", "2026-11-20T00:00:00Z", "InGuestPatch"),
        ("Patch", "HP-OLD", "Critical", "hotpatch", "2026-11-10T00:00:00Z", "InGuestPatch"),
    ]
    assert {str(scope_of(update)) for update in pending} == {"OSImage", "Extension", "InGuestPatch"}


def test_disabled_policies_leave_only_patches_pending() -> None:
    pending = pending_updates(scaleset(), UpgradePolicySpec(), index_catalogs([CATALOG]), None, NOON)
    assert [update.kind for update in pending] == ["Patch", "Patch"]
    opted_out = scaleset(extensions=[{"name": "log-agent", "container": "log"}])
    assert [u.kind for u in pending_updates(opted_out, ALL_ON, index_catalogs([CATALOG]), None, NOON)] == [
        "OSImage",
        "Patch",
        "Patch",
    ]


def test_one_package_one_in_place_update_per_instance() -> None:
    spec = scaleset()
    package = plan_package(spec, ALL_ON, index_catalogs([CATALOG]), None, NIGHT)
    assert images(package.template) == [f"{OS}:22.4.2", "registry.example/ext/log:2.1.0"]
    # the new OS image carries HP-OLD (published before it); HP-NEW comes on top, with no restart
    assert package.template["metadata"]["annotations"][HOTPATCHES_ANNOTATION] == "HP-NEW"
    assert [(u.kind, u.name) for u in package.included] == [
        ("OSImage", OS),
        ("Extension", "log-agent"),
        ("Patch", "HP-NEW"),
    ]
    assert classify_update(spec.template, package.template) == UpdateKind.IN_PLACE
    assert package.policy.rolling_upgrade.max_batch_instance_percent == 20
    assert package.waiting == ()
    # nothing is left to do once the overlay is stored
    again = plan_package(spec, ALL_ON, index_catalogs([CATALOG]), package.overlay, NIGHT + timedelta(hours=1))
    assert again.included == () and again.pending == ()
    assert again.template == package.template


def test_closed_windows_leave_their_updates_for_a_later_package() -> None:
    spec = scaleset()
    assigned = assign([window("OSImage")], {}, {})  # 10:00-14:00 UTC daily
    at_night = plan_package(spec, ALL_ON, index_catalogs([CATALOG]), None, NIGHT, assigned)
    assert [u.kind for u in at_night.included] == ["Extension", "Patch", "Patch"]
    assert images(at_night.template)[0] == f"{OS}:22.4.1"
    (waiting, gate), *_ = at_night.waiting
    assert waiting.kind == "OSImage" and isinstance(gate, Closed)
    # at noon the OS window is open, patches wait for the night
    at_noon = plan_package(
        spec, ALL_ON, index_catalogs([CATALOG]), at_night.overlay, NOON + timedelta(days=1), assigned
    )
    assert [u.kind for u in at_noon.included] == ["OSImage"]
    assert images(at_noon.template)[0] == f"{OS}:22.4.2"


def test_hotpatches_alone_restart_nothing() -> None:
    spec = scaleset(os_image=f"{OS}:22.4.2")
    package = plan_package(spec, PATCHING, index_catalogs([CATALOG]), None, NIGHT)
    assert [u.name for u in package.included] == ["HP-NEW"]
    assert package.template["spec"] == spec.template["spec"]
    assert classify_update(spec.template, package.template) == UpdateKind.IN_PLACE
    assert not package.restart
    assert not restart_due(spec.template, package.template, spec.os_container_name)
    always = InstallPatches(reboot_setting="Always")
    rebooting = plan_package(spec, PATCHING, index_catalogs([CATALOG]), None, NIGHT, settings=always)
    assert rebooting.restart
    # Under Always the hotpatch is recorded with the patches that restart, and the move restarts.
    assert rebooting.overlay.patches is not None and rebooting.overlay.patches.patch_ids == ["HP-NEW"]
    assert HOTPATCHES_ANNOTATION not in rebooting.template["metadata"]["annotations"]
    assert restart_due(spec.template, rebooting.template, spec.os_container_name)
    # Once there, nothing more is due.
    assert not restart_due(rebooting.template, rebooting.template, spec.os_container_name)


@pytest.mark.parametrize(
    ("before", "after", "due"),
    [
        ((), (), False),
        ((), ("KB1",), True),  # a restart patch with no image: restart
        (("KB1",), ("KB1",), False),  # had it already
        (("KB1",), ("KB1", "KB2"), True),
        (("KB1", "KB2"), ("KB1",), False),  # dropped, nothing to apply
    ],
)
def test_restart_due_when_restart_patches_arrive_without_an_image(
    before: tuple[str, ...], after: tuple[str, ...], due: bool
) -> None:
    spec = scaleset()

    def with_patches(ids: tuple[str, ...], image: str | None = None) -> dict[str, Any]:
        overlay = AutomaticUpdatesStatus.model_validate(
            {
                "patches": {
                    "container": "os",
                    "baseImage": f"{OS}:22.4.1",
                    "patchIds": list(ids),
                    "image": image,
                }
            }
        )
        return effective_template(spec.template, overlay)

    assert restart_due(with_patches(before), with_patches(after), "os") == due
    # A patched image restarts the container by itself: no restart is due on top of it.
    assert not restart_due(with_patches(before), with_patches(after, f"{OS}:22.4.1-p1"), "os")


def test_guest_patches_are_assessed_but_never_installed_until_the_policy_enables_them() -> None:
    # Off by default, as the VM API's patchMode is not AutomaticByPlatform unless asked for: update
    # management still lists what would apply, with what it waits for.
    spec = scaleset(os_image=f"{OS}:22.4.2")
    for policy in (UpgradePolicySpec(), ALL_ON.model_copy(update={"automatic_guest_patching": PATCHING_OFF})):
        package = plan_package(spec, policy, index_catalogs([CATALOG]), None, NIGHT)
        assert [u.name for u in package.included if u.kind == "Patch"] == []
        assert package.overlay.patches is None
        assert HOTPATCHES_ANNOTATION not in package.template["metadata"].get("annotations", {})
        assert [(u.name, gate.reason) for u, gate in package.waiting] == [
            ("HP-NEW", "AutomaticGuestPatchingDisabled")
        ]
        assert "automaticGuestPatching.enabled" in package.waiting[0][1].message
    enabled = plan_package(spec, PATCHING, index_catalogs([CATALOG]), None, NIGHT)
    assert [u.name for u in enabled.included] == ["HP-NEW"] and enabled.waiting == ()


PATCHING_OFF = UpgradePolicySpec().automatic_guest_patching


@settings(max_examples=60, deadline=None)
@given(
    hours=st.integers(0, 24 * 14),
    reboot=st.sampled_from(["IfRequired", "Never", "Always"]),
    os_upgrade=st.booleans(),
)
def test_no_patch_ever_touches_a_scaleset_without_automatic_guest_patching(
    hours: int, reboot: str, os_upgrade: bool
) -> None:
    policy = UpgradePolicySpec.model_validate(
        {"automaticOSUpgrade": {"enabled": os_upgrade}, "automaticExtensionUpgrade": {"enabled": True}}
    )
    spec = scaleset()
    now = NOON + timedelta(hours=hours)
    package = plan_package(
        spec, policy, index_catalogs([CATALOG]), None, now, settings=InstallPatches(reboot_setting=reboot)
    )
    assert package.overlay.patches is None
    assert HOTPATCHES_ANNOTATION not in (package.template.get("metadata") or {}).get("annotations", {})
    assert not [u for u in package.included if u.kind == "Patch"]
    assert {u.name for u in package.pending if u.kind == "Patch"} <= {u.name for u, _ in package.waiting}


def test_a_hotpatch_without_hotpatching_restarts_each_instance_once() -> None:
    spec = scaleset(os_image=f"{OS}:22.4.2")
    no_hotpatching = UpgradePolicySpec.model_validate({"automaticGuestPatching": {"enabled": True}})
    package = plan_package(spec, no_hotpatching, index_catalogs([CATALOG]), None, NIGHT)
    assert [u.name for u in package.included] == ["HP-NEW"]
    assert package.restart
    assert package.overlay.patches is not None and package.overlay.patches.patch_ids == ["HP-NEW"]
    assert restart_due(spec.template, package.template, spec.os_container_name)


def test_an_update_being_rolled_out_stays_pending_until_every_instance_runs_it() -> None:
    spec = scaleset()
    package = plan_package(spec, ALL_ON, index_catalogs([CATALOG]), None, NIGHT)
    brought = rolling_out(spec.template, package.template, index_catalogs([CATALOG]))
    assert [(u.kind, u.name, u.version, u.classification, u.scope) for u in brought] == [
        ("OSImage", OS, "22.4.2", None, "OSImage"),
        ("Extension", "log-agent", "2.1.0", None, "Extension"),
        ("Patch", "HP-NEW", "hotpatch", "Security", "InGuestPatch"),
    ]
    assert [u.since for u in brought] == [at(12), at(5), at(20)]
    assert rolling_out(package.template, package.template, index_catalogs([CATALOG])) == []


@pytest.mark.parametrize(
    ("change", "restarts"),
    [
        ({"metadata": {"annotations": {HOTPATCHES_ANNOTATION: "HP-1"}}}, False),  # a hotpatch
        ({"metadata": {"labels": {"tier": "front"}}}, False),
        ({"spec": {"containers": [{"name": "os", "image": f"{OS}:22.4.2"}]}}, True),
    ],
)
def test_only_an_image_change_restarts_an_instance_updated_in_place(
    change: dict[str, Any], restarts: bool
) -> None:
    before = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "os", "image": f"{OS}:22.4.1"}]},
    }
    after = {**before, **{key: {**before[key], **value} for key, value in change.items()}}
    assert restarts_in_place(before, after) is restarts


def test_an_os_image_not_in_the_catalog_gets_every_patch() -> None:
    spec = scaleset(os_image=f"{OS}:22.4.0")
    package = plan_package(spec, PATCHING, index_catalogs([CATALOG]), None, NIGHT)
    assert sorted(u.name for u in package.included) == ["HP-NEW", "HP-OLD"]


def test_gate_of_a_package_batch_is_the_first_closed_scope() -> None:
    assigned = assign([window("Extension")], {}, {})
    scopes = frozenset({MaintenanceScope.EXTENSION, MaintenanceScope.IN_GUEST_PATCH})
    assert isinstance(gate_package_batch(assigned, scopes, None, NOON), Closed)  # patches wait for night
    assert isinstance(gate_package_batch(assigned, scopes, None, NIGHT), Closed)  # extension window shut
    assert isinstance(gate_package_batch(AssignedMaintenance(), scopes, None, NIGHT), Open)
    assert gate_package_batch(assigned, frozenset(), None, NOON) is None


# --------------------------------------------------------------------------- extension batches


@pytest.mark.parametrize(("percent", "expected"), [(5, 5), (20, 20), (25, 20), (100, 20)])
def test_extension_batches_are_at_most_20_percent(percent: int, expected: int) -> None:
    policy = UpgradePolicySpec.model_validate(
        {
            "mode": "Rolling",
            "rollingUpgrade": {"maxBatchInstancePercent": percent, "maxUnhealthyInstancePercent": 100},
        }
    )
    capped = extension_policy(policy)
    assert capped.rolling_upgrade.max_batch_instance_percent == expected
    assert capped.rolling_upgrade.max_unhealthy_instance_percent == 100
    assert capped.mode == policy.mode


# --------------------------------------------------------------------------- provisionAfterExtensions


def extensions(*pairs: tuple[str, list[str]]) -> list[Extension]:
    return [Extension(name=name, container=name, provision_after_extensions=after) for name, after in pairs]


@pytest.mark.parametrize(
    ("pairs", "order"),
    [
        ((("a", []), ("b", []), ("c", [])), ["a", "b", "c"]),
        ((("a", ["c"]), ("b", []), ("c", [])), ["b", "c", "a"]),
        ((("a", ["b"]), ("b", ["c"]), ("c", [])), ["c", "b", "a"]),
        ((("a", []), ("b", ["a"]), ("c", ["a", "b"])), ["a", "b", "c"]),
    ],
)
def test_provision_order(pairs: tuple[tuple[str, list[str]], ...], order: list[str]) -> None:
    assert provision_order(extensions(*pairs)) == order


def test_a_cycle_is_an_error_naming_the_field() -> None:
    with pytest.raises(
        ExtensionOrderError, match=r"^spec\.extensions\[a\]\.provisionAfterExtensions: .*\(a -> b -> a\)"
    ):
        provision_order(extensions(("a", ["b"]), ("b", ["a"]), ("c", [])))


def test_sidecars_take_provision_order_in_their_own_places() -> None:
    template = {
        "spec": {
            "containers": [
                {"name": "app", "image": "app:1"},
                {"name": "b", "image": "b:1"},
                {"name": "x", "image": "x:1"},
                {"name": "a", "image": "a:1"},
            ]
        }
    }
    ordered = order_sidecars(template, extensions(("b", ["a"]), ("a", [])))
    assert [c["name"] for c in ordered["spec"]["containers"]] == ["app", "a", "x", "b"]
    assert order_sidecars(ordered, extensions(("b", ["a"]), ("a", []))) == ordered


def test_the_instance_template_of_an_empty_overlay_is_the_spec_template() -> None:
    spec = scaleset()
    assert instance_template(spec, None) == spec.template == effective_template(spec.template, None)


names = st.lists(st.sampled_from("abcdefg"), min_size=1, max_size=7, unique=True)


@st.composite
def acyclic(draw: st.DrawFn) -> list[Extension]:
    # Edges only point to earlier names in a random ranking, so the graph has no cycle.
    order = draw(names)
    shuffled = draw(st.permutations(order))
    result = []
    for name in shuffled:
        earlier = order[: order.index(name)]
        after = draw(st.lists(st.sampled_from(earlier), unique=True)) if earlier else []
        result.append(Extension(name=name, container=name, provision_after_extensions=after))
    return result


@settings(deadline=None)
@given(acyclic())
def test_provision_order_respects_every_constraint_and_keeps_an_order_that_holds(
    items: list[Extension],
) -> None:
    order = provision_order(items)
    assert sorted(order) == sorted(item.name for item in items)
    for item in items:
        for before in item.provision_after_extensions:
            assert order.index(before) < order.index(item.name)
    by_name = {item.name: item for item in items}
    assert provision_order([by_name[name] for name in order]) == order


def test_an_extension_upgrade_changes_only_its_sidecar() -> None:
    spec = scaleset(os_image=f"{OS}:22.4.2")
    policy = UpgradePolicySpec.model_validate({"automaticExtensionUpgrade": {"enabled": True}})
    package = plan_package(spec, policy, index_catalogs([CATALOG]), None, NOON)
    changed = [
        (old["name"], new["image"])
        for old, new in zip(
            spec.template["spec"]["containers"], package.template["spec"]["containers"], strict=True
        )
        if old != new
    ]
    assert changed == [("log", "registry.example/ext/log:2.1.0")]
    assert classify_update(spec.template, package.template) == UpdateKind.IN_PLACE


os_versions = st.lists(
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(1, 40)),
    min_size=0,
    max_size=6,
    unique_by=lambda t: t[:2],
)
patch_days = st.lists(
    st.tuples(st.integers(1, 40), st.booleans(), st.sampled_from(["Critical", "Security", "Other"])),
    max_size=4,
)


@settings(deadline=None, max_examples=60)
@given(os_versions, patch_days, st.integers(0, 3), st.integers(0, 48))
def test_a_stored_package_leaves_nothing_to_do_and_never_downgrades(
    versions: list[tuple[int, int, int]], patches: list[tuple[int, bool, str]], running_minor: int, hours: int
) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    now = start + timedelta(days=20, hours=hours)
    catalog = ImageCatalog.model_validate(
        {
            "metadata": {"name": "random"},
            "spec": {
                "images": [
                    {
                        "repository": OS,
                        "versions": [
                            {
                                "version": f"22.{minor}.{patch}",
                                "publishedAt": (start + timedelta(days=day)).isoformat(),
                            }
                            for minor, patch, day in versions
                        ],
                    }
                ],
                "patches": [
                    {
                        "id": f"P{index}",
                        "classification": classification,
                        "appliesTo": [OS],
                        **({"image": f"{OS}:patched-{index}"} if with_image else {"hotpatch": True}),
                        "publishedAt": (start + timedelta(days=day)).isoformat(),
                    }
                    for index, (day, with_image, classification) in enumerate(patches)
                ],
            },
        }
    )
    spec = scaleset(os_image=f"{OS}:22.{running_minor}.0")
    indexed = index_catalogs([catalog])
    package = plan_package(spec, ALL_ON, indexed, None, now)
    again = plan_package(spec, ALL_ON, indexed, package.overlay, now)
    assert again.included == ()
    assert again.template == package.template
    # an OS image chosen by version is never older than the template's
    chosen = package.overlay.os_image
    if chosen is not None:
        assert tuple(int(part) for part in chosen.version.split(".")) > (22, running_minor, 0)
    # outside off-peak hours no patch is applied
    if not (now.hour >= 22 or now.hour < 6):
        assert package.overlay.patches is None


def test_the_scopes_of_a_roll_out_are_read_from_its_revisions() -> None:
    spec = scaleset()
    package = plan_package(spec, ALL_ON, index_catalogs([CATALOG]), None, NIGHT)
    assert automatic_scopes(spec.template, package.template) == {
        MaintenanceScope.OS_IMAGE,
        MaintenanceScope.EXTENSION,
        MaintenanceScope.IN_GUEST_PATCH,
    }
    assert automatic_scopes(package.template, package.template) == frozenset()
    # a template change of the user alone carries no automatic scope
    assert automatic_scopes(spec.template, scaleset(os_image=f"{OS}:23.0.0").template) == frozenset()


@settings(deadline=None)
@given(acyclic(), st.data())
def test_order_sidecars_is_a_permutation_that_respects_the_order(
    items: list[Extension], data: st.DataObject
) -> None:
    names = [item.name for item in items]
    placed = data.draw(st.permutations([*names, "app", "other"]))
    template = {"spec": {"containers": [{"name": name, "image": f"{name}:1"} for name in placed]}}
    ordered = [c["name"] for c in order_sidecars(template, items)["spec"]["containers"]]
    assert sorted(ordered) == sorted(placed)
    assert ordered.index("app") == placed.index("app") and ordered.index("other") == placed.index("other")
    for item in items:
        for before in item.provision_after_extensions:
            assert ordered.index(before) < ordered.index(item.name)
