"""`scaleset plan`: the preview a user runs before applying a change, and its refusals of bad input."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scaleset_operator import demo
from scaleset_operator.cli.main import app

runner = CliRunner()


def scaleset(name: str = "web", replicas: int = 14, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "ScaleSet",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}},
            **spec,
        },
    }


def upgrade_policy(name: str = "rolling", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "UpgradePolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def run(*args: str | Path) -> Any:
    return runner.invoke(app, ["plan", *map(str, args)])


def test_json_preview_lists_each_domain_and_the_batches_in_order(tmp_path: Path) -> None:
    result = run(write(tmp_path / "web.yaml", scaleset()), "-o", "json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    assert preview["upgradeDomains"][0] == {"index": 0, "instances": ["web-0", "web-5", "web-10"]}
    assert [len(domain["instances"]) for domain in preview["upgradeDomains"]] == [3, 3, 3, 3, 2]
    assert preview["batches"][:3] == [
        {"upgradeDomain": 0, "instances": ["web-0", "web-5"]},
        {"upgradeDomain": 0, "instances": ["web-10"]},
        {"upgradeDomain": 1, "instances": ["web-1", "web-6"]},
    ]
    assert set(preview) == {"upgradeDomains", "batches"}
    assert sorted(name for batch in preview["batches"] for name in batch["instances"]) == sorted(
        f"web-{o}" for o in range(14)
    )


def test_policy_named_by_the_scaleset_is_taken_from_the_same_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "web.yaml",
        scaleset(upgradePolicyRef={"name": "whole-domains"}),
        upgrade_policy("other", mode="Automatic"),
        upgrade_policy(
            "whole-domains",
            rollingUpgrade={"maxBatchInstancePercent": 100, "maxUnhealthyInstancePercent": 100},
        ),
    )
    result = run(file, "-o", "json")
    assert result.exit_code == 0, result.output
    assert [batch["instances"] for batch in json.loads(result.stdout)["batches"]][:2] == [
        ["web-0", "web-5", "web-10"],
        ["web-1", "web-6", "web-11"],
    ]


def test_policy_option_overrides_the_policy_in_the_file(tmp_path: Path) -> None:
    file = write(tmp_path / "web.yaml", scaleset(upgradePolicyRef={"name": "rolling"}), upgrade_policy())
    policy = write(tmp_path / "auto.yaml", upgrade_policy("auto", mode="Automatic"))
    result = run(file, "--policy", policy, "-o", "json")
    assert result.exit_code == 0, result.output
    batches = json.loads(result.stdout)["batches"]
    assert len(batches) == 1
    assert batches[0]["upgradeDomain"] is None
    assert len(batches[0]["instances"]) == 14


def test_table_shows_the_header_the_domains_and_numbered_batches(tmp_path: Path) -> None:
    file = write(tmp_path / "web.yaml", scaleset(upgradePolicyRef={"name": "rolling"}), upgrade_policy())
    result = run(file)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "ScaleSet web" in out and "14 instance(s)" in out and "5 upgrade domain(s)" in out
    assert "Rolling mode" in out and "at most 2" in out
    assert 'UpgradePolicy "rolling"' in out
    assert "web-0, web-5, web-10" in out
    assert "│ 9 │" in out  # the ninth and last batch


def test_table_says_when_the_built_in_defaults_are_used(tmp_path: Path) -> None:
    result = run(write(tmp_path / "web.yaml", scaleset()))
    assert result.exit_code == 0, result.output
    assert "built-in defaults" in result.stdout


def test_table_says_when_the_named_policy_is_not_at_hand(tmp_path: Path) -> None:
    result = run(write(tmp_path / "web.yaml", scaleset(upgradePolicyRef={"name": "elsewhere"})))
    assert result.exit_code == 0, result.output
    assert "built-in defaults" in result.stdout and '"elsewhere"' in result.stdout


def _manual(tmp_path: Path, walk: int | None = None, status: dict[str, Any] | None = None) -> Path:
    worker = scaleset("worker", 6, upgradeDomainCount=3, upgradePolicyRef={"name": "manual"})
    if walk is not None:
        worker["spec"]["walkUpgradeDomain"] = walk
    if status is not None:
        worker["status"] = status
    return write(tmp_path / "worker.yaml", worker, upgrade_policy("manual", mode="Manual"))


def _walked(status_walk: dict[str, Any]) -> dict[str, Any]:
    """status.upgrade.walk as the operator writes it, for an earlier update revision."""
    return {"upgrade": {"walk": {"revision": "worker-8445575c4f", "source": "Spec", **status_walk}}}


def test_manual_mode_a_changed_walk_value_walks_the_next_update(tmp_path: Path) -> None:
    # planning/walk.py, as docs/behaviours.md row 9 says: a *change* of spec.walkUpgradeDomain walks the
    # update revision of that moment. Here the operator last read 0 and the file says 1.
    file = _manual(tmp_path, 1, _walked({"upgradeDomain": 2, "specWalkUpgradeDomain": 0}))
    table = run(file)
    assert table.exit_code == 0, table.output
    assert (
        "changes from 0" in table.stdout and "walks upgrade domains 0..1 of the next update" in table.stdout
    )
    assert "Waiting for a walk: worker-2, worker-5." in table.stdout
    batches = json.loads(run(file, "-o", "json").stdout)["batches"]
    assert {batch["upgradeDomain"] for batch in batches} == {0, 1}


def test_manual_mode_a_walk_value_left_unchanged_walks_nothing(tmp_path: Path) -> None:
    # The value the operator last read is 2: applied again with the next template, it walks nothing,
    # and the earlier revision's walk to domain 2 does not count for the new one.
    file = _manual(tmp_path, 2, _walked({"upgradeDomain": 2, "specWalkUpgradeDomain": 2}))
    table = run(file)
    assert table.exit_code == 0, table.output
    assert "is the value last read" in table.stdout and "walks nothing" in table.stdout
    assert "scaleset walk worker 0" in table.stdout
    assert json.loads(run(file, "-o", "json").stdout)["batches"] == []


def test_manual_mode_without_a_walk_waits_at_domain_zero_and_names_the_command(tmp_path: Path) -> None:
    table = run(_manual(tmp_path))
    assert table.exit_code == 0, table.output
    assert "the next update starts unwalked" in table.stdout and "scaleset walk worker 0" in table.stdout
    assert "Waiting for a walk: worker-0, worker-1, worker-2, worker-3, worker-4, worker-5." in table.stdout


def test_manual_mode_a_walk_value_without_status_says_it_counts_only_as_a_change(tmp_path: Path) -> None:
    # No status.upgrade.walk in the file: the value walks only if it differs from what the operator
    # last read, which the file cannot tell; the preview shows the change and says so.
    file = _manual(tmp_path, 1)
    table = run(file)
    assert table.exit_code == 0, table.output
    assert "only if it changes the value the operator last read" in table.stdout
    batches = json.loads(run(file, "-o", "json").stdout)["batches"]
    assert {batch["upgradeDomain"] for batch in batches} == {0, 1}


def test_single_instance_table_warns_of_downtime(tmp_path: Path) -> None:
    file = write(tmp_path / "one.yaml", scaleset("one", 1))
    result = run(file)
    assert result.exit_code == 0, result.output
    assert "without downtime" in result.stdout


@pytest.mark.parametrize(
    ("documents", "extra", "expected"),
    [
        (None, [], "no such file"),
        ([upgrade_policy()], [], "expected a ScaleSet, found an UpgradePolicy"),
        ([scaleset(replicas=-1)], [], "spec.replicas must be at least 0"),
        ([scaleset(upgradeDomainCount=21)], [], "spec.upgradeDomainCount must be at most 20"),
        ([scaleset()], ["-o", "yaml"], "-o/--output must be one of table, json"),
        ([scaleset(), scaleset("api")], [], "holds 2 ScaleSets"),
        ([], [], "holds no resource"),
        ([scaleset(replicas=10)], ["--unhealthy", "web-10"], "--unhealthy: 'web-10' is not an instance"),
        ([scaleset(replicas=10)], ["--unhealthy", "api-1"], "--unhealthy: 'api-1' is not an instance"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_code_two(
    tmp_path: Path, documents: list[dict[str, Any]] | None, extra: list[str], expected: str
) -> None:
    file = tmp_path / "input.yaml"
    if documents is not None:
        write(file, *documents)
    result = run(file, *extra)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_an_instance_down_shows_the_batches_it_shrinks_and_why(tmp_path: Path) -> None:
    # 2 of 10 may be unhealthy at once (maxUnhealthyInstancePercent 20 %); web-7 is one of them.
    file = write(tmp_path / "web.yaml", scaleset(replicas=10))
    result = run(file, "--unhealthy", "web-7", "-o", "json")
    assert result.exit_code == 0, result.output
    batches = json.loads(result.stdout)["batches"]
    assert [b["instances"] for b in batches[:5]] == [
        ["web-0"],
        ["web-5"],
        ["web-1"],
        ["web-6"],
        ["web-2", "web-7"],
    ]
    assert "1 of 2, as 1 of 10 instances is unhealthy (web-7)" in batches[0]["shrunk"]
    assert "shrunk" not in batches[1]
    table = run(file, "--unhealthy", "7")
    assert table.exit_code == 0, table.output
    assert "Smaller, because" in table.stdout and "maxUnhealthyInstancePercent" in table.stdout


def test_instances_down_that_fill_the_budget_show_where_the_rollout_stops(tmp_path: Path) -> None:
    file = write(tmp_path / "web.yaml", scaleset(replicas=10))
    result = run(file, "--unhealthy", "web-3,web-7", "-o", "json")
    assert result.exit_code == 0, result.output
    preview = json.loads(result.stdout)
    assert preview["batches"] == []
    assert preview["stoppedBy"]["reason"] == "TooManyUnhealthy"
    table = run(file, "--unhealthy", "web-3,web-7")
    assert "stops before its first batch (TooManyUnhealthy)" in " ".join(table.stdout.split())
    assert "Nothing to update" not in table.stdout


def test_unreadable_yaml_names_the_line(tmp_path: Path) -> None:
    file = tmp_path / "broken.yaml"
    file.write_text("kind: ScaleSet\nspec: [unclosed\n")
    result = run(file)
    assert result.exit_code == 2
    assert "not valid YAML" in result.stderr and str(file) in result.stderr


def test_policy_file_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    file = write(tmp_path / "web.yaml", scaleset())
    result = run(file, "--policy", file)
    assert result.exit_code == 2
    assert "expected an UpgradePolicy, found a ScaleSet" in result.stderr


def test_invalid_policy_field_is_named(tmp_path: Path) -> None:
    file = write(tmp_path / "web.yaml", scaleset())
    policy = write(tmp_path / "policy.yaml", upgrade_policy(mode="Sideways"))
    result = run(file, "--policy", policy)
    assert result.exit_code == 2
    assert "spec.mode" in result.stderr and str(policy) in result.stderr


def test_demo_prints_the_plan_of_the_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.print_plan() == 0
    out = capsys.readouterr().out
    assert "ScaleSet web" in out
    assert "Batches, in order" in out


# --------------------------------------------------------------------------- the drawing

SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(root: ET.Element, css: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if css in (g.get("class") or "").split()]


def svg_title(element: ET.Element) -> str:
    title = element.find(f"{SVG}title")
    assert title is not None and title.text
    return title.text


def test_svg_has_a_row_per_upgrade_domain_and_a_box_per_batch_titled_with_its_instances_in_order(
    tmp_path: Path,
) -> None:
    file = write(
        tmp_path / "web.yaml",
        scaleset(upgradePolicyRef={"name": "rolling"}),
        upgrade_policy(
            rollingUpgrade={"pauseTimeBetweenBatches": "10s"}, healthCheck={"stabilizationPeriod": "10s"}
        ),
    )
    drawn = run(file, "-o", "svg")
    assert drawn.exit_code == 0, drawn.output
    root = ET.fromstring(drawn.stdout.encode())
    assert root.tag == f"{SVG}svg"
    rows = svg_groups(root, "upgrade-domain")
    assert [row.get("data-upgrade-domain") for row in rows] == ["0", "1", "2", "3", "4"]
    assert "web-0, web-5, web-10" in svg_title(rows[0])
    planned = json.loads(run(file, "-o", "json").stdout)["batches"]
    boxes = svg_groups(root, "batch")
    assert len(boxes) == len(planned) == 9
    for box, batch in zip(boxes, planned, strict=True):
        assert box.get("data-upgrade-domain") == str(batch["upgradeDomain"])
        assert f": {', '.join(batch['instances'])} (" in svg_title(box)
    # On the time axis each batch starts after the one before: 10s of stabilisation, then 10s of pause.
    lefts = [float(box.find(f"{SVG}rect").get("x")) for box in boxes]
    assert lefts == sorted(lefts) and len(set(lefts)) == len(lefts)
    assert "(starts at 40s, healthy at 50s)" in svg_title(boxes[2])


def test_svg_file_is_written_beside_the_table(tmp_path: Path) -> None:
    drawing = tmp_path / "plan.svg"
    result = run(write(tmp_path / "web.yaml", scaleset()), "--svg", drawing, "--instance-start", "30s")
    assert result.exit_code == 0, result.output
    assert "Batches, in order" in result.stdout
    assert "Instance starts, stabilisation and pauses between batches take at least 4m30s." in result.stdout
    root = ET.parse(drawing).getroot()
    assert len(svg_groups(root, "batch")) == 9
    assert "(starts at 1m30s, healthy at 2m)" in svg_title(svg_groups(root, "batch")[3])


def test_svg_of_an_automatic_plan_is_one_box_across_every_domain(tmp_path: Path) -> None:
    file = write(
        tmp_path / "web.yaml",
        scaleset(upgradePolicyRef={"name": "auto"}),
        upgrade_policy("auto", mode="Automatic"),
    )
    root = ET.fromstring(run(file, "-o", "svg").stdout.encode())
    (box,) = svg_groups(root, "batch")
    assert box.get("data-upgrade-domain") == ""
    assert "every upgrade domain: web-0, web-1" in svg_title(box)


def test_svg_of_a_plan_that_takes_no_time_draws_the_batches_in_order(tmp_path: Path) -> None:
    root = ET.fromstring(run(write(tmp_path / "web.yaml", scaleset()), "-o", "svg").stdout.encode())
    lefts = [float(box.find(f"{SVG}rect").get("x")) for box in svg_groups(root, "batch")]
    assert lefts == sorted(lefts) and len(set(lefts)) == 9
    assert any(text.text == "batches in the order they go" for text in root.iter(f"{SVG}text"))


def test_a_bad_instance_start_is_one_line_and_exit_code_two(tmp_path: Path) -> None:
    result = run(write(tmp_path / "web.yaml", scaleset()), "--instance-start", "soon")
    assert result.exit_code == 2
    assert "--instance-start: 'soon' is not a duration" in result.stderr
