"""The effective template: what automatic updates chose, laid over spec.template, stable under GitOps."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import (
    AppliedPatches,
    AutomaticExtensionImage,
    AutomaticImage,
    AutomaticUpdatesStatus,
    RolledBackVersion,
)
from scaleset_operator.planning.automatic import (
    APPLIED_ANNOTATION,
    HOTPATCHES_ANNOTATION,
    automatic_rollback_wanted,
    choose,
    effective_template,
    hotpatches_of,
    overlay_after_rollback,
    overlay_after_template_change,
    overlay_of,
    prune,
    record_patches,
    rolled_back_by,
)
from scaleset_operator.planning.catalog import Release, Resolution, ResolutionReason
from scaleset_operator.planning.images import parse_image, tag_version

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NGINX = "docker.io/library/nginx"


def template(
    image: str = "nginx:1.25", sidecar: str = "example.com/log:2.0", **annotations: str
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"labels": {"app": "web"}}
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {
        "metadata": metadata,
        "spec": {"containers": [{"name": "app", "image": image}, {"name": "log", "image": sidecar}]},
    }


def os_entry(version: str = "1.27", repository: str = NGINX, image: str | None = None) -> AutomaticImage:
    return AutomaticImage(
        container="app",
        repository=repository,
        version=version,
        image=image or f"nginx:{version}",
        reason="AutomaticOSUpgrade",
    )


def image_of(result: dict[str, Any], container: str = "app") -> str:
    return next(c["image"] for c in result["spec"]["containers"] if c["name"] == container)


def test_an_empty_overlay_leaves_the_template_as_it_is() -> None:
    for overlay in (
        None,
        AutomaticUpdatesStatus(),
        AutomaticUpdatesStatus(rolled_back=[RolledBackVersion(repository=NGINX, version="1.26")]),
    ):
        assert effective_template(template(), overlay) == template()


def test_the_upgraded_os_image_runs_and_the_user_template_is_untouched() -> None:
    user = template()
    result = effective_template(user, AutomaticUpdatesStatus(os_image=os_entry()))
    assert image_of(result) == "nginx:1.27"
    assert user == template()
    assert overlay_of(result).os_image == os_entry()
    assert result["metadata"]["labels"] == {"app": "web"}


@pytest.mark.parametrize(
    ("written", "runs", "why"),
    [
        ("nginx:1.25", "nginx:1.27", "the same manifest applied again"),
        ("nginx:1.26", "nginx:1.27", "an older version in the same repository: the manifest lags behind"),
        ("docker.io/library/nginx:1.24", "nginx:1.27", "the same repository written in full"),
        ("nginx:1.27", "nginx:1.27", "the template caught up"),
        ("nginx:1.28", "nginx:1.28", "the template names a newer version"),
        ("nginx:1.25-alpine", "nginx:1.25-alpine", "another variant"),
        ("registry.example/nginx:1.25", "registry.example/nginx:1.25", "another repository"),
        ("nginx:latest", "nginx:latest", "a tag that is no version"),
        (f"nginx@sha256:{'b' * 64}", f"nginx@sha256:{'b' * 64}", "pinned by digest"),
    ],
)
def test_a_template_change_keeps_the_upgrade_unless_the_user_speaks(
    written: str, runs: str, why: str
) -> None:
    overlay = AutomaticUpdatesStatus(os_image=os_entry())
    new = template(written)
    assert image_of(effective_template(new, overlay_after_template_change(overlay, new))) == runs, why
    assert image_of(effective_template(new, overlay)) == runs, why


def test_a_template_without_the_container_drops_the_entry() -> None:
    new = {"spec": {"containers": [{"name": "other", "image": "nginx:1.20"}]}}
    assert prune(AutomaticUpdatesStatus(os_image=os_entry()), new).os_image is None


def test_user_annotations_and_other_containers_are_kept() -> None:
    user = template(note="mine")
    result = effective_template(user, AutomaticUpdatesStatus(os_image=os_entry()))
    assert result["metadata"]["annotations"]["note"] == "mine"
    assert image_of(result, "log") == "example.com/log:2.0"


def test_extension_images_are_laid_over_their_sidecars() -> None:
    entry = AutomaticExtensionImage(
        name="log-agent",
        container="log",
        repository="example.com/log",
        version="2.1",
        image="example.com/log:2.1",
        reason="AutomaticExtensionUpgrade",
    )
    result = effective_template(template(), AutomaticUpdatesStatus(extensions=[entry]))
    assert (image_of(result), image_of(result, "log")) == ("nginx:1.25", "example.com/log:2.1")
    assert (
        prune(AutomaticUpdatesStatus(extensions=[entry]), template(sidecar="example.com/log:3.0")).extensions
        == []
    )


def patched(
    base: str = "nginx:1.27", image: str | None = "nginx:1.27-kb1", hotpatches: tuple[str, ...] = ()
) -> AppliedPatches:
    return AppliedPatches(
        container="app",
        base_image=base,
        image=image,
        patch_ids=["KB1"] if image else [],
        hotpatch_ids=list(hotpatches),
    )


def test_patches_apply_to_their_base_image_and_lapse_when_it_changes() -> None:
    overlay = AutomaticUpdatesStatus(os_image=os_entry(), patches=patched(hotpatches=("HP1", "HP2")))
    result = effective_template(template(), overlay)
    assert image_of(result) == "nginx:1.27-kb1"
    assert hotpatches_of(result["metadata"]) == ["HP1", "HP2"]
    assert result["metadata"]["annotations"][HOTPATCHES_ANNOTATION] == "HP1,HP2"
    # the user moves to 1.28: a newer OS image carries the patches, they lapse
    newer = template("nginx:1.28")
    assert image_of(effective_template(newer, overlay)) == "nginx:1.28"
    assert HOTPATCHES_ANNOTATION not in (
        effective_template(newer, overlay)["metadata"].get("annotations") or {}
    )
    assert prune(overlay, newer).patches is None


def test_hotpatches_alone_change_only_an_annotation() -> None:
    overlay = AutomaticUpdatesStatus(patches=patched("nginx:1.25", None, ("HP1",)))
    result = effective_template(template(), overlay)
    assert result["spec"] == template()["spec"]
    assert hotpatches_of(result["metadata"]) == ["HP1"]


def resolution(
    version: str,
    kind: str = "OSImage",
    name: str = NGINX,
    container: str = "app",
    running: str = "nginx:1.25",
) -> Resolution:
    release = Release(NGINX if kind == "OSImage" else "example.com/log", version, NOW, tag_version(version))
    return Resolution(
        kind, name, container, running, release.repository, ResolutionReason.NEWER_VERSION, "", release
    )


def test_choose_records_the_chosen_versions_with_reason_and_time() -> None:
    overlay = choose(
        None,
        template(),
        [resolution("1.27"), resolution("2.1", "Extension", "log-agent", "log", "example.com/log:2.0")],
        NOW,
    )
    assert overlay.os_image is not None
    assert (overlay.os_image.image, overlay.os_image.reason, overlay.os_image.since) == (
        "nginx:1.27",
        "AutomaticOSUpgrade",
        "2026-12-01T12:00:00Z",
    )
    assert [(e.name, e.image, e.reason) for e in overlay.extensions] == [
        ("log-agent", "example.com/log:2.1", "AutomaticExtensionUpgrade")
    ]
    manual = choose(overlay, template(), [resolution("1.26")], NOW, reason="ManualUpgrade")
    assert manual.os_image is not None and manual.os_image.reason == "ManualUpgrade"


def test_record_patches_accumulates_on_one_base() -> None:
    overlay = AutomaticUpdatesStatus(os_image=os_entry())
    first = record_patches(overlay, template(), "app", "nginx:1.27-kb1", ["KB1"], ["HP1"], NOW)
    second = record_patches(first, template(), "app", None, [], ["HP2", "HP1"], NOW)
    assert second.patches is not None
    assert (second.patches.base_image, second.patches.image) == ("nginx:1.27", "nginx:1.27-kb1")
    assert (second.patches.patch_ids, second.patches.hotpatch_ids) == (["KB1"], ["HP1", "HP2"])
    assert record_patches(overlay, template(), "app", None, [], [], NOW) == overlay


def test_a_rollback_remembers_what_it_undid_and_returns_to_the_restored_choice() -> None:
    user = template()
    before = AutomaticUpdatesStatus(os_image=os_entry("1.26"))
    after = AutomaticUpdatesStatus(os_image=os_entry("1.27"), patches=patched("nginx:1.27", None, ("HP1",)))
    restored, undone = effective_template(user, before), effective_template(user, after)
    assert automatic_rollback_wanted(False, undone, restored)
    assert not automatic_rollback_wanted(True, undone, restored)
    assert not automatic_rollback_wanted(
        False, template("nginx:1.30"), template("nginx:1.25")
    )  # a user's change
    overlay = overlay_after_rollback(after, user, undone, restored, NOW)
    assert overlay.os_image == os_entry("1.26")
    assert [(item.repository, item.version, item.at) for item in overlay.rolled_back] == [
        (NGINX, "1.27", "2026-12-01T12:00:00Z")
    ]
    assert overlay.failed_patch_ids == ["HP1"]
    # no second roll-out: the instances already run the restored template
    assert effective_template(user, overlay) == restored
    # remembered once however often the same rollback is seen
    assert overlay_after_rollback(overlay, user, undone, restored, NOW).rolled_back == overlay.rolled_back


def test_rolled_back_by_reads_the_revisions_only() -> None:
    assert rolled_back_by(template(), template()) == AutomaticUpdatesStatus()
    broken = template(**{APPLIED_ANNOTATION: "{not json"})
    assert overlay_of(broken) == AutomaticUpdatesStatus()


# --------------------------------------------------------------------------- properties

minor = st.integers(20, 30)
written_images = st.one_of(
    minor.map(lambda m: f"nginx:1.{m}"),
    minor.map(lambda m: f"docker.io/library/nginx:1.{m}"),
    minor.map(lambda m: f"nginx:1.{m}-alpine"),
    minor.map(lambda m: f"registry.example/nginx:1.{m}"),
    st.sampled_from(["nginx:latest", "nginx", f"nginx@sha256:{'c' * 64}"]),
)
overlays = st.builds(
    lambda os_minor, ext_minor, hot: AutomaticUpdatesStatus(
        os_image=None if os_minor is None else os_entry(f"1.{os_minor}"),
        extensions=[]
        if ext_minor is None
        else [
            AutomaticExtensionImage(
                name="log-agent",
                container="log",
                repository="example.com/log",
                version=f"2.{ext_minor}",
                image=f"example.com/log:2.{ext_minor}",
                reason="AutomaticExtensionUpgrade",
            )
        ],
        patches=None if not hot or os_minor is None else patched(f"nginx:1.{os_minor}", None, ("HP1",)),
    ),
    st.one_of(st.none(), minor),
    st.one_of(st.none(), st.integers(0, 5)),
    st.booleans(),
)


@settings(deadline=None)
@given(written_images, overlays)
def test_reapplying_the_same_manifest_never_undoes_an_automatic_upgrade(
    written: str, overlay: AutomaticUpdatesStatus
) -> None:
    user = template(written)
    kept = overlay_after_template_change(overlay, user)
    assert effective_template(user, kept) == effective_template(user, overlay)
    assert overlay_after_template_change(kept, user) == kept
    # re-applying the manifest again and again changes nothing
    again = copy.deepcopy(user)
    assert effective_template(again, overlay_after_template_change(kept, again)) == effective_template(
        user, overlay
    )


@settings(deadline=None)
@given(written_images, overlays)
def test_the_effective_os_image_is_never_older_than_the_template_in_the_same_repository(
    written: str, overlay: AutomaticUpdatesStatus
) -> None:
    user = template(written)
    runs = image_of(effective_template(user, overlay))
    before, after = parse_image(written, "t"), parse_image(runs, "t")
    if runs == written:
        return
    # only an overlay entry of the same repository and variant, newer than the template, replaces it
    assert after.repository == before.repository
    assert before.version is not None and after.version is not None
    assert after.version.variant == before.version.variant
    assert after.version.newer_than(before.version)


@settings(deadline=None)
@given(written_images, overlays)
def test_the_effective_template_differs_only_in_images_and_annotations(
    written: str, overlay: AutomaticUpdatesStatus
) -> None:
    user = template(written)
    result = effective_template(user, overlay)
    assert [c["name"] for c in result["spec"]["containers"]] == ["app", "log"]
    assert result["metadata"]["labels"] == user["metadata"]["labels"]
    assert set(result["metadata"].get("annotations") or {}) <= {APPLIED_ANNOTATION, HOTPATCHES_ANNOTATION}


def test_the_revision_does_not_depend_on_when_a_version_was_chosen() -> None:
    early = choose(None, template(), [resolution("1.27")], NOW)
    late = choose(None, template(), [resolution("1.27")], NOW.replace(year=2027))
    assert early != late
    assert effective_template(template(), early) == effective_template(template(), late)


@settings(deadline=None)
@given(written_images, overlays, overlays)
def test_after_a_rollback_the_instances_already_run_the_effective_template(
    written: str, before: AutomaticUpdatesStatus, after: AutomaticUpdatesStatus
) -> None:
    user = template(written)
    restored, undone = effective_template(user, before), effective_template(user, after)
    overlay = overlay_after_rollback(after, user, undone, restored, NOW)
    assert effective_template(user, overlay) == restored

    # every version the rollback undid is remembered, and none it kept
    def versions(chosen: AutomaticUpdatesStatus) -> set[tuple[str, str]]:
        entries = [*chosen.extensions, *([chosen.os_image] if chosen.os_image else [])]
        return {(entry.repository, entry.version) for entry in entries}

    remembered = {(item.repository, item.version) for item in overlay.rolled_back}
    assert remembered == versions(overlay_of(undone)) - versions(overlay_of(restored))
