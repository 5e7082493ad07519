"""`scaleset updates`: what automatic updates would choose for a ScaleSet file against an ImageCatalog, and what waits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from scaleset_operator.api.loading import InvalidResource, load_resources
from scaleset_operator.api.models import (
    AutomaticUpdatesStatus,
    ImageCatalog,
    MaintenanceConfiguration,
    MaintenanceScope,
    ScaleSet,
)

# `plan` imports `main`, which imports this module: the module, not its names, so either may load first.
from scaleset_operator.cli import plan as plan_command
from scaleset_operator.cli.main import app
from scaleset_operator.planning.maintenance import Closed, GateDecision, applies_to, assign

if TYPE_CHECKING:
    from scaleset_operator.planning.catalog import Resolution
    from scaleset_operator.planning.package import Package
    from scaleset_operator.planning.updates import Pending

OUTPUT_FORMATS = ("table", "json")


class UpdatesError(Exception):
    """Input the listing cannot use; str() is the one line shown to the user."""


def parse_now(text: str | None) -> datetime:
    """--now: ISO 8601 with an offset (Z or +hh:mm); the current time when absent."""
    if text is None:
        return datetime.now(UTC)
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UpdatesError(f"--now {text!r} is not a time such as 2026-12-01T23:00:00Z.") from None
    if instant.tzinfo is None:
        raise UpdatesError(f"--now {text!r} has no offset; write Z or +hh:mm.")
    return instant


def _gate_json(gate: GateDecision) -> dict[str, Any]:
    result: dict[str, Any] = {
        "open": not isinstance(gate, Closed),
        "reason": gate.reason,
        "message": gate.message,
    }
    if isinstance(gate, Closed) and gate.next_start is not None:
        result["nextStart"] = gate.next_start.isoformat()
    return result


def _resolution_json(resolution: Resolution) -> dict[str, Any]:
    return {
        "kind": resolution.kind,
        "name": resolution.name,
        "container": resolution.container,
        "running": resolution.running_image,
        "image": resolution.image,
        "reason": str(resolution.reason),
        "message": resolution.message,
    }


def updates_json(scaleset: ScaleSet, now: datetime, found: Pending, package: Package) -> dict[str, Any]:
    return {
        "scaleSet": scaleset.metadata.name,
        "now": now.isoformat(),
        "resolutions": [
            _resolution_json(item)
            for item in ([found.os_image] if found.os_image else []) + list(found.extensions)
        ],
        "pendingUpdates": [update.model_dump(by_alias=True, exclude_none=True) for update in package.pending],
        "package": {
            "updates": [update.model_dump(by_alias=True, exclude_none=True) for update in package.included],
            "images": {c["name"]: c["image"] for c in package.template["spec"]["containers"]},
            "hotpatches": [] if package.overlay.patches is None else package.overlay.patches.hotpatch_ids,
            "restart": package.restart,
            "maxBatchInstancePercent": package.policy.rolling_upgrade.max_batch_instance_percent,
        },
        "gates": {str(scope): _gate_json(gate) for scope, gate in package.gates.items()},
        "automaticUpdates": package.overlay.model_dump(
            by_alias=True, exclude_none=True, exclude_defaults=True
        ),
    }


def _short(name: str) -> str:
    return name.removeprefix("docker.io/library/").removeprefix("docker.io/")


def render_table(
    console: Console,
    scaleset: ScaleSet,
    choice: plan_command.PolicyChoice,
    now: datetime,
    found: Pending,
    package: Package,
) -> None:
    """Resolutions, pending updates with what each waits for, then the package that would roll out now."""
    console.print(f"[bold]ScaleSet {scaleset.metadata.name}[/bold] at {now.isoformat(timespec='minutes')}")
    console.print(f"Policy: {choice.source}")
    if found.os_image is None:
        console.print("automaticOSUpgrade is not enabled: the OS image is not upgraded by itself.")
    resolved = Table(title="Resolved", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Kind", "Name", "Runs", "Moves to", "Reason"):
        resolved.add_column(column)
    for item in ([found.os_image] if found.os_image else []) + list(found.extensions):
        resolved.add_row(
            item.kind, _short(item.name), item.running_image, item.image or "-", str(item.reason)
        )
    if resolved.row_count:
        console.print(resolved)
    if not package.pending:
        console.print("Nothing is pending.")
        return
    pending = Table(title="Pending updates", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("Kind", "Name", "Class", "Version", "Since", "Now"):
        pending.add_column(column)
    included = {(update.kind, update.name) for update in package.included}
    for update in package.pending:
        gate = package.gates.get(MaintenanceScope(update.scope)) if update.scope else None
        state = "in package" if (update.kind, update.name) in included else (gate.reason if gate else "-")
        pending.add_row(
            update.kind,
            _short(update.name),
            update.classification or "-",
            _short(update.version or "-"),
            (update.since or "-")[:10],
            state,
        )
    console.print(pending)
    for scope, gate in package.gates.items():
        console.print(f"{scope}: {gate.message}")
    if package.included:
        images = ", ".join(f"{c['name']}={c['image']}" for c in package.template["spec"]["containers"])
        restart = "restarts each changed container once" if package.restart else "restarts nothing"
        console.print(
            f"Package now: {len(package.included)} update(s), {restart}; instances run {images}; "
            f"batches of at most {package.policy.rolling_upgrade.max_batch_instance_percent} %."
        )
    else:
        console.print(f"Package now: empty; {_why_nothing_now(package)}.")


def _why_nothing_now(package: Package) -> str:
    """What holds each pending update, gate by gate: a closed window is not the same as a switch that is off."""
    from scaleset_operator.planning.patches import patching_disabled

    disabled = patching_disabled().reason
    held: dict[str, list[str]] = {}
    for update, gate in package.waiting:
        held.setdefault(gate.reason, []).append(f"{update.kind} {_short(update.name)}")
    parts = []
    for reason, names in held.items():
        if reason == disabled:
            parts.append(
                f"{', '.join(names)} assessed, never installed: spec.automaticGuestPatching.enabled is off"
            )
        else:
            parts.append(f"{', '.join(names)} {'waits' if len(names) == 1 else 'wait'} ({reason})")
    return "; ".join(parts) or "nothing pending is due now"


@app.command("updates")
def updates(
    file: Annotated[
        Path, typer.Argument(help="YAML file holding the ScaleSet (and perhaps its UpgradePolicy).")
    ],
    catalog: Annotated[Path, typer.Option("--catalog", help="YAML file holding one or more ImageCatalogs.")],
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="YAML file holding the UpgradePolicy; overrides one in FILE."),
    ] = None,
    maintenance: Annotated[
        Path | None,
        typer.Option(
            "--maintenance", help="YAML file of MaintenanceConfigurations (namespace labels taken as none)."
        ),
    ] = None,
    now_text: Annotated[
        str | None, typer.Option("--now", help="Resolve at this time (ISO 8601 with offset); default now.")
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table or json.")] = "table",
) -> None:
    """Show what automatic OS image, extension and patch updates would choose now, and what waits for a window."""
    # The image-reference grammar and semver load here, so that other commands start without them.
    from scaleset_operator.planning.catalog import index_catalogs
    from scaleset_operator.planning.package import plan_package
    from scaleset_operator.planning.patches import install_settings
    from scaleset_operator.planning.updates import find_pending

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if output not in OUTPUT_FORMATS:
            raise UpdatesError(f"-o/--output must be one of {', '.join(OUTPUT_FORMATS)} (got {output!r}).")
        now = parse_now(now_text)
        scaleset, documents = plan_command.load_scaleset(file)
        choice = plan_command.choose_policy(scaleset, file, documents, policy_file)
        catalogs = load_resources(catalog, ImageCatalog, skip_other_kinds=True)
        if not catalogs:
            raise UpdatesError(f"--catalog: {catalog} holds no ImageCatalog.")
        indexed = index_catalogs(catalogs)
        if indexed.problems:
            raise UpdatesError(indexed.problems[0])
        configurations = (
            []
            if maintenance is None
            else load_resources(maintenance, MaintenanceConfiguration, skip_other_kinds=True)
        )
        labels = scaleset.metadata.labels
        assigned = assign(configurations, labels, {})
        if assigned.problems:
            raise UpdatesError(assigned.problems[0])
        settings = install_settings(c for c in configurations if applies_to(c, labels, {}))
        overlay = (scaleset.status.automatic_updates if scaleset.status else None) or AutomaticUpdatesStatus()
        try:
            found = find_pending(scaleset.spec, choice.spec, indexed, overlay, now, settings)
            package = plan_package(scaleset.spec, choice.spec, indexed, overlay, now, assigned, settings)
        except ValueError as error:
            raise UpdatesError(f'{file}: ScaleSet "{scaleset.metadata.name}": {error}') from None
    except (InvalidResource, plan_command.PlanError, UpdatesError) as problem:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(2) from None
    if output == "json":
        typer.echo(json.dumps(updates_json(scaleset, now, found, package), indent=2))
    else:
        render_table(Console(highlight=False), scaleset, choice, now, found, package)
