"""Revision names are stable hashes of the template; template changes are classified as in-place or reimage."""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from scaleset_operator.planning.revisions import (
    UpdateKind,
    _fnv32a,
    classify_update,
    revision_hash,
    revision_name,
)


def template(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "metadata": {"labels": {"app": "web"}},
        "spec": {
            "initContainers": [{"name": "setup", "image": "busybox:1.36"}],
            "containers": [
                {"name": "os", "image": "ubuntu:22.04", "ports": [{"containerPort": 80}]},
                {"name": "monitor", "image": "agent:1.0"},
            ],
        },
    }
    base.update(overrides)
    return base


def test_fnv32a_matches_the_reference_vectors() -> None:
    assert _fnv32a(b"") == 0x811C9DC5
    assert _fnv32a(b"a") == 0xE40C292C
    assert _fnv32a(b"foobar") == 0xBF9CF968


def test_revision_hash_is_short_and_uses_the_kubernetes_safe_alphabet() -> None:
    digest = revision_hash(template())
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", digest)


def test_revision_hash_ignores_key_order() -> None:
    reordered = {"spec": template()["spec"], "metadata": {"labels": {"app": "web"}}}
    assert revision_hash(reordered) == revision_hash(template())


def test_revision_hash_changes_with_the_image() -> None:
    changed = template()
    changed["spec"]["containers"][0]["image"] = "ubuntu:24.04"
    assert revision_hash(changed) != revision_hash(template())


def test_collision_count_steps_to_another_hash() -> None:
    assert revision_hash(template(), collision_count=1) != revision_hash(template())
    assert revision_hash(template(), collision_count=0) == revision_hash(template())


def test_revision_name_is_scaleset_dash_hash() -> None:
    assert revision_name("web", template()) == f"web-{revision_hash(template())}"


def test_equal_templates_need_no_update() -> None:
    assert classify_update(template(), copy.deepcopy(template())) is UpdateKind.NONE


def test_new_container_image_is_an_in_place_update() -> None:
    new = template()
    new["spec"]["containers"][0]["image"] = "ubuntu:24.04"
    assert classify_update(template(), new) is UpdateKind.IN_PLACE


def test_new_init_container_image_needs_a_reimage_because_completed_init_containers_never_rerun() -> None:
    new = template()
    new["spec"]["initContainers"][0]["image"] = "busybox:1.37"
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_template_label_and_annotation_changes_are_in_place_because_pod_metadata_is_mutable() -> None:
    new = template(metadata={"labels": {"app": "web", "tier": "front"}, "annotations": {"note": "x"}})
    assert classify_update(template(), new) is UpdateKind.IN_PLACE


def test_other_template_metadata_changes_need_a_reimage() -> None:
    new = template(metadata={"labels": {"app": "web"}, "generateName": "other-"})
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_environment_change_needs_a_reimage() -> None:
    new = template()
    new["spec"]["containers"][0]["env"] = [{"name": "MODE", "value": "fast"}]
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_added_container_needs_a_reimage() -> None:
    new = template()
    new["spec"]["containers"].append({"name": "extra", "image": "extra:1"})
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_renamed_container_with_new_image_needs_a_reimage() -> None:
    new = template()
    new["spec"]["containers"][1] = {"name": "watcher", "image": "agent:2.0"}
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_reordered_containers_need_a_reimage() -> None:
    new = template()
    new["spec"]["containers"].reverse()
    assert classify_update(template(), new) is UpdateKind.REIMAGE


def test_pod_spec_field_change_needs_a_reimage() -> None:
    new = template()
    new["spec"]["nodeSelector"] = {"zone": "a"}
    assert classify_update(template(), new) is UpdateKind.REIMAGE


images = st.text(alphabet="abcdefghij:.0123456789", min_size=1, max_size=12)


@given(os_image=images, monitor_image=images)
def test_any_container_image_only_change_is_in_place_and_gets_a_new_revision(
    os_image: str, monitor_image: str
) -> None:
    new = template()
    new["spec"]["containers"][0]["image"] = os_image
    new["spec"]["containers"][1]["image"] = monitor_image
    kind = classify_update(template(), new)
    if new == template():
        assert kind is UpdateKind.NONE
    else:
        assert kind is UpdateKind.IN_PLACE
        assert revision_hash(new) != revision_hash(template())
