"""`scaleset history NAME --svg`: the last finished upgrade drawn from status and the instances' pods."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest
from tests.unit.test_cli_plan import SVG, svg_groups, svg_title

from scaleset_operator.cli.fleet import history_drawing
from scaleset_operator.cli.rollout_svg import render_svg
from scaleset_operator.cli.target import CommandError


def pod(name: str, domain: int, revision: str, updated_at: str) -> dict[str, Any]:
    """An instance pod as the operator writes it: its labels and fleet.scaleset.dev/updated-at."""
    return {
        "metadata": {
            "name": name,
            "labels": {
                "fleet.scaleset.dev/scaleset": "web",
                "fleet.scaleset.dev/upgrade-domain": str(domain),
                "fleet.scaleset.dev/revision": revision,
            },
            "annotations": {"fleet.scaleset.dev/updated-at": updated_at},
        }
    }


def scaleset(history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "demo"},
        "status": {
            "upgrade": {"history": history},
            "upgradeDomains": [
                {"index": 0, "instances": ["web-0", "web-2"]},
                {"index": 1, "instances": ["web-1", "web-3"]},
            ],
        },
    }


FINISHED = [
    {"fromRevision": "web-a", "toRevision": "web-b", "startedAt": "2026-12-02T10:00:00Z",
     "finishedAt": "2026-12-02T10:01:00Z", "result": "Completed"},
]  # fmt: skip


def test_the_last_upgrade_is_drawn_with_a_row_per_domain_and_each_instance_at_its_update() -> None:
    pods = [
        pod("web-1", 1, "web-b", "2026-12-02T10:00:40.250000Z"),
        pod("web-0", 0, "web-b", "2026-12-02T10:00:01.500000Z"),
        pod("web-2", 0, "web-b", "2026-12-02T10:00:01.500000Z"),
        pod("web-3", 1, "web-b", "2026-12-02T10:00:40.250000Z"),
    ]
    root = ET.fromstring(render_svg(history_drawing(scaleset(FINISHED), pods)))
    assert [row.get("data-upgrade-domain") for row in svg_groups(root, "upgrade-domain")] == ["0", "1"]
    (upgrade,) = svg_groups(root, "upgrade")
    assert svg_title(upgrade).startswith("web-a -> web-b: Completed")
    marks = svg_groups(root, "instance")
    # In the order they were updated: domain 0 first, then domain 1, as the walk went.
    assert [(m.get("data-upgrade-domain"), svg_title(m).split()[0]) for m in marks] == [
        ("0", "web-0"),
        ("0", "web-2"),
        ("1", "web-1"),
        ("1", "web-3"),
    ]
    assert "put on web-b at 2026-12-02T10:00:40.250000+00:00" in svg_title(marks[2])
    assert any("records no batches" in (text.text or "") for text in root.iter(f"{SVG}text"))


def test_an_instance_updated_outside_the_upgrade_is_not_drawn_in_it() -> None:
    pods = [
        pod("web-0", 0, "web-b", "2026-12-02T10:00:05Z"),
        pod("web-1", 1, "web-a", "2026-12-01T08:00:00Z"),  # before the upgrade: never touched by it
        pod("web-2", 0, "web-c", "2026-12-02T11:00:00Z"),  # since: a later update, not this one
    ]
    drawing = history_drawing(scaleset(FINISHED), pods)
    assert [box.title.split()[0] for box in drawing.boxes if box.kind == "instance"] == ["web-0"]


def test_a_scaleset_without_a_finished_upgrade_says_so() -> None:
    with pytest.raises(CommandError, match=r"no finished upgrade in status\.upgrade\.history"):
        history_drawing(scaleset([]), [])
