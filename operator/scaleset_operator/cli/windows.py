"""`scaleset windows`: the next openings of a MaintenanceConfiguration's window, from a file or the cluster."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from scaleset_operator.api.durations import format_duration
from scaleset_operator.api.loading import InvalidResource, load_documents, parse_resource
from scaleset_operator.api.models import MaintenanceConfiguration
from scaleset_operator.cli.main import app
from scaleset_operator.planning.windows import (
    Schedule,
    Window,
    WindowError,
    localize,
    next_windows,
    parse_local_date_time,
    parse_window,
)

OUTPUT_FORMATS = ("table", "json")
MAX_COUNT = 1000
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


class WindowsError(Exception):
    """Input the listing cannot use; str() is the one line shown to the user."""


def load_configuration_file(path: Path, name: str | None = None) -> MaintenanceConfiguration:
    """The MaintenanceConfiguration of a YAML file: its only one, or the one called `name`."""
    documents = load_documents(path)
    found = [document for document in documents if document.get("kind") == MaintenanceConfiguration.KIND]
    if not found:
        if not documents:
            raise WindowsError(f"{path}: holds no resource; expected a MaintenanceConfiguration.")
        parse_resource(documents[0], MaintenanceConfiguration, source=path)
    names = [str((document.get("metadata") or {}).get("name")) for document in found]
    if name is not None:
        if name not in names:
            raise WindowsError(
                f'--name: {path} holds no MaintenanceConfiguration "{name}" (it holds {", ".join(names)}).'
            )
        found = [found[names.index(name)]]
    elif len(found) > 1:
        raise WindowsError(
            f"{path}: holds {len(found)} MaintenanceConfigurations ({', '.join(names)}); choose one with --name."
        )
    return parse_resource(found[0], MaintenanceConfiguration, source=path)


def load_configuration_from_cluster(
    name: str, kubeconfig: Path | None, context: str | None
) -> MaintenanceConfiguration:
    """The MaintenanceConfiguration `name` as the cluster of the kubeconfig holds it."""
    from kubernetes.config import ConfigException

    from scaleset_operator.control.kube import ApiError, Kube, fleet_path

    try:
        kube = Kube.from_kubeconfig(str(kubeconfig) if kubeconfig else None, context)
        body = kube.get_or_none(fleet_path(MaintenanceConfiguration.PLURAL, name=name))
    except ConfigException as error:
        raise WindowsError(f"--kubeconfig/--context: no usable cluster credentials ({error}).") from None
    except ApiError as error:
        raise WindowsError(
            f'MaintenanceConfiguration "{name}": the cluster refused to read it ({error}).'
        ) from None
    except OSError as error:
        raise WindowsError(f"the cluster of the kubeconfig cannot be reached ({error}).") from None
    if body is None:
        raise WindowsError(
            f'NAME|FILE: "{name}" is neither a file nor a MaintenanceConfiguration in the cluster.'
        )
    return parse_resource(body, MaintenanceConfiguration, source="cluster")


def parse_from(text: str | None, schedule: Schedule, now: datetime) -> datetime:
    """--from: ISO 8601 with an offset, or 'YYYY-MM-DD hh:mm' local to the window's zone; now when absent."""
    if text is None:
        return now
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        try:
            return localize(parse_local_date_time(text, "--from"), schedule.zone)
        except WindowError:
            raise WindowsError(
                f"--from {text!r} is not a time such as 2026-11-20T00:00:00Z or '2026-11-20 00:00'."
            ) from None
    return instant if instant.tzinfo is not None else localize(instant, schedule.zone)


def windows_json(openings: list[Window]) -> list[dict[str, str]]:
    return [{"start": opening.start.isoformat(), "end": opening.end.isoformat()} for opening in openings]


def _local(instant: datetime) -> str:
    return f"{instant:%a %Y-%m-%d %H:%M} {instant.tzname()}"


def render_table(
    console: Console, configuration: MaintenanceConfiguration, schedule: Schedule, openings: list[Window]
) -> None:
    """Each opening in the window's zone and in UTC (a window is shorter than a day: the end shows its weekday)."""
    window = configuration.spec.window
    zone = schedule.zone.key
    named = window.time_zone if window.time_zone == zone else f"{window.time_zone} ({zone})"
    console.print(
        f"[bold]MaintenanceConfiguration {configuration.metadata.name}[/bold]: scope "
        f"{configuration.spec.maintenance_scope}, {window.recur_every} at {schedule.first_start:%H:%M} "
        f"for {format_duration(schedule.duration)}, in {named}"
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("#", justify="right")
    table.add_column("Start")
    table.add_column("End")
    table.add_column("Start UTC")
    table.add_column("End UTC")
    for number, opening in enumerate(openings, start=1):
        table.add_row(
            str(number),
            _local(opening.start),
            f"{opening.end:%a %H:%M} {opening.end.tzname()}",
            f"{opening.start_utc:%Y-%m-%d %H:%M}",
            f"{opening.end_utc:%a %H:%M}",
        )
    console.print(table)
    if not openings:
        console.print("No window opens after this time.")


@app.command("windows")
def windows(
    target: Annotated[
        str,
        typer.Argument(metavar="NAME|FILE", help="A YAML file with a MaintenanceConfiguration, or its name."),
    ],
    from_: Annotated[
        str | None,
        typer.Option("--from", help="List windows from this time (ISO 8601, or local to the window's zone)."),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="How many windows to list.")] = 10,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
    kubeconfig: Annotated[
        Path | None, typer.Option("--kubeconfig", help="Kubeconfig file, for NAME; default $KUBECONFIG.")
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context, for NAME.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="The configuration to list, when FILE holds several.")
    ] = None,
) -> None:
    """List the next openings of a maintenance window, in its own time zone and in UTC."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if output not in OUTPUT_FORMATS:
            raise WindowsError(f"-o/--output must be one of {', '.join(OUTPUT_FORMATS)} (got {output!r}).")
        if not 1 <= count <= MAX_COUNT:
            raise WindowsError(f"--count must be between 1 and {MAX_COUNT} (got {count}).")
        path = Path(target)
        if path.exists() or path.suffix in (".yaml", ".yml", ".json") or not _NAME.match(target):
            configuration = load_configuration_file(path, name)
            source = str(path)
        else:
            configuration = load_configuration_from_cluster(target, kubeconfig, context)
            source = "cluster"
        try:
            schedule = parse_window(configuration.spec.window)
        except WindowError as error:
            raise WindowsError(
                f'{source}: MaintenanceConfiguration "{configuration.metadata.name}": {error}'
            ) from None
        after = parse_from(from_, schedule, datetime.now(UTC))
        openings = next_windows(schedule, after, count)
    except (InvalidResource, WindowsError) as problem:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(2) from None
    if output == "json":
        typer.echo(json.dumps(windows_json(openings), indent=2))
    else:
        render_table(Console(highlight=False), configuration, schedule, openings)
