"""`scaleset windows`: the next openings of a MaintenanceConfiguration, from a file or from the cluster."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from scaleset_operator.cli.main import app

runner = CliRunner()


def configuration(name: str = "weekend-nights", **window: str) -> dict[str, Any]:
    return {
        "apiVersion": "fleet.scaleset.dev/v1alpha1",
        "kind": "MaintenanceConfiguration",
        "metadata": {"name": name},
        "spec": {
            "maintenanceScope": "OSImage",
            "window": {
                "startDateTime": "2026-11-01 22:00",
                "duration": "04:00",
                "timeZone": "Pacific Standard Time",
                "recurEvery": "Week Saturday,Sunday",
                **window,
            },
        },
    }


def write(path: Path, *documents: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(documents))
    return path


def run(*args: str | Path) -> Any:
    return runner.invoke(app, ["windows", *map(str, args)])


def test_json_lists_windows_in_the_zone_offset_at_each_instant(tmp_path: Path) -> None:
    result = run(
        write(tmp_path / "m.yaml", configuration()),
        "--from",
        "2026-11-20T00:00:00Z",
        "--count",
        "3",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"start": "2026-11-21T22:00:00-08:00", "end": "2026-11-22T02:00:00-08:00"},
        {"start": "2026-11-22T22:00:00-08:00", "end": "2026-11-23T02:00:00-08:00"},
        {"start": "2026-11-28T22:00:00-08:00", "end": "2026-11-29T02:00:00-08:00"},
    ]


def test_offsets_follow_daylight_saving(tmp_path: Path) -> None:
    path = write(
        tmp_path / "m.yaml",
        configuration(recurEvery="Day", startDateTime="2026-03-01 22:00", timeZone="Europe/Amsterdam"),
    )
    result = run(path, "--from", "2026-03-28 12:00", "--count", "2", "-o", "json")
    assert result.exit_code == 0, result.output
    assert [window["start"] for window in json.loads(result.stdout)] == [
        "2026-03-28T22:00:00+01:00",
        "2026-03-29T22:00:00+02:00",
    ]


def test_table_shows_each_window_in_the_zone_and_in_utc(tmp_path: Path) -> None:
    result = run(
        write(tmp_path / "m.yaml", configuration()), "--from", "2026-11-20T00:00:00Z", "--count", "1"
    )
    assert result.exit_code == 0, result.output
    assert "Pacific Standard Time (America/Los_Angeles)" in result.stdout
    assert "Sat 2026-11-21 22:00 PST" in result.stdout
    assert "2026-11-22 06:00" in result.stdout
    assert "Sun 10:00" in result.stdout


@pytest.mark.parametrize(
    ("document", "args", "field"),
    [
        (configuration(recurEvery="Month day32"), [], "spec.window.recurEvery"),
        (configuration(timeZone="Atlantis Standard Time"), [], "spec.window.timeZone"),
        (configuration(duration="00:45"), [], "spec.window.duration"),
        (configuration(startDateTime="tomorrow"), [], "spec.window.startDateTime"),
        (configuration(), ["--from", "next week"], "--from"),
        (configuration(), ["--count", "0"], "--count"),
        (configuration(), ["-o", "yaml"], "-o/--output"),
    ],
)
def test_bad_input_is_one_line_naming_the_field_and_exit_2(
    tmp_path: Path, document: dict[str, Any], args: list[str], field: str
) -> None:
    result = run(write(tmp_path / "m.yaml", document), *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert field in lines[0]


def test_missing_file_is_named(tmp_path: Path) -> None:
    result = run(tmp_path / "absent.yaml")
    assert result.exit_code == 2
    assert "absent.yaml: no such file" in result.stderr


@pytest.fixture(scope="module")
def cluster_kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from tests.integration.helpers import wait_for

    from kubesim.cluster import ThreadedCluster
    from scaleset_operator.control.kube import Kube, fleet_path

    root = Path(__file__).resolve().parents[2]
    path = tmp_path_factory.mktemp("kubesim") / "kubeconfig"
    with ThreadedCluster(nodes=1, kubeconfig_path=str(path)) as cluster:
        kube = Kube.from_kubeconfig(str(cluster.kubeconfig_path))
        crd = yaml.safe_load(
            (root / "crds" / "maintenanceconfigurations.fleet.scaleset.dev.yaml").read_text()
        )
        kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)

        def created() -> bool:
            try:
                kube.create(fleet_path("maintenanceconfigurations"), configuration())
                return True
            except Exception:
                return False

        wait_for(created, 10, "MaintenanceConfiguration created")
        yield Path(cluster.kubeconfig_path)


def test_name_reads_the_configuration_from_the_cluster(cluster_kubeconfig: Path) -> None:
    result = run(
        "weekend-nights",
        "--kubeconfig",
        cluster_kubeconfig,
        "--from",
        "2026-11-20T00:00:00Z",
        "--count",
        "1",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [
        {"start": "2026-11-21T22:00:00-08:00", "end": "2026-11-22T02:00:00-08:00"}
    ]


def test_unknown_name_is_one_line_and_exit_2(cluster_kubeconfig: Path) -> None:
    result = run("nobody", "--kubeconfig", cluster_kubeconfig)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == 'error: NAME|FILE: "nobody" is neither a file nor a MaintenanceConfiguration in the cluster.'
    )


def test_a_file_with_several_configurations_needs_name(tmp_path: Path) -> None:
    path = write(tmp_path / "m.yaml", configuration("a"), configuration("b", recurEvery="Day"))
    refused = run(path)
    assert refused.exit_code == 2
    assert "holds 2 MaintenanceConfigurations (a, b); choose one with --name" in refused.stderr
    chosen = run(path, "--name", "b", "--from", "2026-11-20T00:00:00Z", "--count", "2", "-o", "json")
    assert chosen.exit_code == 0, chosen.output
    assert [w["start"] for w in json.loads(chosen.stdout)] == [
        "2026-11-19T22:00:00-08:00",
        "2026-11-20T22:00:00-08:00",
    ]
    assert run(path, "--name", "c").exit_code == 2
