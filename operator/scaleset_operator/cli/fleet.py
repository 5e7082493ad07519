"""`scaleset status | history | walk | pause | resume`: look at and steer a ScaleSet on a cluster."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import typer
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from scaleset_operator.cli.actions import TIMEOUT_OPTION, WAIT_OPTION, ask_with
from scaleset_operator.cli.main import app
from scaleset_operator.cli.rollout_svg import Box, Drawing, render_svg
from scaleset_operator.cli.target import (
    CONTEXT_OPTION,
    KUBECONFIG_OPTION,
    NAMESPACE_OPTION,
    CommandError,
    Target,
    connect,
    explain,
)
from scaleset_operator.control.kube import MERGE_PATCH, ApiError, core_path, fleet_path, group_path
from scaleset_operator.identity import (
    ANNOTATION_UPDATED_AT,
    ANNOTATION_WALK,
    LABEL_REVISION,
    LABEL_SCALESET,
    LABEL_UPGRADE_DOMAIN,
)
from scaleset_operator.planning.instances import parse_time


@contextmanager
def _errors() -> Iterator[None]:
    """A user's mistake ends the command with one line and exit code 1; tracebacks are for bugs."""
    try:
        yield
    except CommandError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


# --------------------------------------------------------------------------- status


def _condition(scaleset: dict[str, Any], kind: str) -> dict[str, Any]:
    for item in (scaleset.get("status") or {}).get("conditions") or []:
        if item.get("type") == kind:
            return dict(item)
    return {}


def render_status(scaleset: dict[str, Any]) -> RenderableType:
    """The ScaleSet's status as the command prints it: summary, rollout progress, upgrade domains."""
    meta, spec, status = scaleset["metadata"], scaleset.get("spec") or {}, scaleset.get("status") or {}
    upgrade = status.get("upgrade") or {}
    desired = int(spec.get("replicas") or 0)
    updated, ready = int(status.get("updatedReplicas") or 0), int(status.get("readyReplicas") or 0)
    phase = upgrade.get("phase") or "Idle"
    lines: list[RenderableType] = [
        Text.assemble(
            ("ScaleSet ", "bold"),
            (f"{meta.get('namespace')}/{meta['name']}", "bold cyan"),
            f"  {ready}/{desired} ready, {updated}/{desired} updated, phase ",
            (phase, "bold"),
            f", revision {status.get('currentRevision') or '-'}",
        )
    ]
    staged = status.get("staged") or {}
    if staged:
        lines.append(Text(_staged_line(staged)))
    staged_upgrade = bool(staged) and (
        phase in ("Staging", "ReadyToSwap", "Swapping") or bool(staged.get("staging"))
    )
    if upgrade.get("locked") and not staged_upgrade:  # a staged set has no batches
        batch = upgrade.get("currentBatch") or {}
        where = (
            f"upgrade domain {upgrade['currentUpgradeDomain']}"
            if upgrade.get("currentUpgradeDomain") is not None
            else "all domains"
        )
        lines.append(
            Text(
                f"Rolling {upgrade.get('fromRevision') or '-'} -> {upgrade.get('toRevision') or '-'}, "
                f"{where}, batch {', '.join(batch.get('instances') or []) or '-'}"
            )
        )
        bar = Table.grid(padding=(0, 1))
        bar.add_row(ProgressBar(total=max(desired, 1), completed=updated, width=40), f"{updated}/{desired}")
        lines.append(bar)
    if upgrade.get("reason") and upgrade.get("locked"):
        lines.append(Text(f"{upgrade['reason']}: {upgrade.get('message') or ''}".rstrip(": ")))
    for kind in ("Ready", "Progressing", "Stalled"):
        found = _condition(scaleset, kind)
        if found:
            style = "red" if (kind == "Stalled") == (found.get("status") == "True") else "green"
            if kind == "Progressing":
                style = "yellow" if found.get("status") == "True" else "green"
            lines.append(Text(f"{kind}={found.get('status')} {found.get('reason') or ''}", style=style))
    table = Table(title="Upgrade domains", title_justify="left")
    for column, justify in (("UD", "right"), ("Instances", "right"), ("Revision", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("Updated", justify="right")
    table.add_column("Healthy", justify="right")
    table.add_column("", justify="left")
    current = upgrade.get("currentUpgradeDomain") if upgrade.get("locked") else None
    for domain in status.get("upgradeDomains") or []:
        count = len(domain.get("instances") or [])
        table.add_row(
            str(domain.get("index")),
            str(count),
            domain.get("revision") or "(mixed)",
            f"{domain.get('updated', 0)}/{count}",
            f"{domain.get('healthy', 0)}/{count}",
            "<- upgrading" if domain.get("index") == current else "",
        )
    lines.append(table)
    lines.extend(_updates(status))
    return Group(*lines)


def _short(image: str) -> str:
    return image.removeprefix("docker.io/library/").removeprefix("docker.io/")


def _updates(status: dict[str, Any]) -> list[RenderableType]:
    """What automatic updates chose, what is pending and what it waits for, and the next windows."""
    lines: list[RenderableType] = []
    chosen = status.get("automaticUpdates") or {}
    runs = ([chosen["osImage"]] if chosen.get("osImage") else []) + list(chosen.get("extensions") or [])
    for entry in runs:
        lines.append(Text(f"{entry['container']} runs {_short(entry['image'])} ({entry['reason']})"))
    patches = chosen.get("patches") or {}
    applied = [*(patches.get("patchIds") or []), *(patches.get("hotpatchIds") or [])]
    if applied:
        lines.append(Text(f"Guest patches applied: {', '.join(applied)}"))
    for item in chosen.get("rolledBack") or []:
        lines.append(Text(f"Rolled back, not tried again: {_short(item['repository'])}:{item['version']}"))
    pending = status.get("pendingUpdates") or []
    if pending:
        table = Table(title="Pending updates", title_justify="left")
        for column in ("Kind", "Name", "Version", "Class", "Since", "Waiting for"):
            table.add_column(column)
        for update in pending:
            table.add_row(
                update.get("kind") or "-",
                _short(update.get("name") or "-"),
                _short(update.get("version") or "-"),
                update.get("classification") or "-",
                (update.get("since") or "-")[:10],
                update.get("waitingFor") or "rolling out",
            )
        lines.append(table)
    maintenance = status.get("maintenance") or {}
    for window in maintenance.get("nextWindows") or []:
        lines.append(Text(f"{window['scope']} window: {window['start']} to {window['end']}"))
    return lines


def status_json(scaleset: dict[str, Any]) -> dict[str, Any]:
    """`scaleset status -o json`: the data the table shows."""
    meta, status = scaleset["metadata"], scaleset.get("status") or {}
    upgrade = status.get("upgrade") or {}
    return {
        "name": meta["name"],
        "namespace": meta.get("namespace"),
        "replicas": (scaleset.get("spec") or {}).get("replicas"),
        "readyReplicas": status.get("readyReplicas", 0),
        "updatedReplicas": status.get("updatedReplicas", 0),
        "phase": upgrade.get("phase") or "Idle",
        "reason": upgrade.get("reason"),
        "message": upgrade.get("message"),
        "currentRevision": status.get("currentRevision"),
        "updateRevision": status.get("updateRevision"),
        "currentBatch": upgrade.get("currentBatch") if upgrade.get("locked") else None,
        "upgradeDomains": status.get("upgradeDomains") or [],
        "conditions": status.get("conditions") or [],
        "automaticUpdates": status.get("automaticUpdates") or {},
        "pendingUpdates": status.get("pendingUpdates") or [],
        "nextWindows": (status.get("maintenance") or {}).get("nextWindows") or [],
    }


def _staged_line(staged: dict[str, Any]) -> str:
    """Staged mode: which slot serves, and what runs beside it."""
    parts = [f"Production slot {staged.get('production')} ({staged.get('productionRevision') or '-'})"]
    if staged.get("swap"):
        parts.append(f"swapping to {staged['swap']['toSlot']} ({staged['swap']['revision']})")
    elif staged.get("staging"):
        parts.append(f"staging {staged['staging']['revision']} in slot {staged['staging']['slot']}")
    if staged.get("previous"):
        previous = staged["previous"]
        parts.append(
            f"previous {previous['slot']} ({previous['revision']}) kept until {previous.get('keptUntil') or '-'}"
        )
    return "; ".join(parts)


def _poll(target: Target, name: str, interval: float) -> Iterator[dict[str, Any]]:
    while True:
        yield target.scaleset(name)
        time.sleep(interval)


@app.command()
def status(
    name: str = typer.Argument(..., help="The ScaleSet."),
    watch: bool = typer.Option(False, "--watch", "-w", help="Keep showing the status as it changes."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between reads with --watch."),
    output: str = typer.Option("table", "--output", "-o", help="table or json."),
    namespace: str | None = NAMESPACE_OPTION,
    context: str | None = CONTEXT_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
) -> None:
    """Show a ScaleSet's upgrade domains, revisions, health, the running rollout, pending updates and windows."""
    with _errors():
        if output not in ("table", "json"):
            raise CommandError(f"-o/--output must be table or json (got {output!r}).")
        target = connect(kubeconfig, context, namespace)
        console = Console()
        if output == "json":
            typer.echo(json.dumps(status_json(target.scaleset(name)), indent=2))
            return
        if not watch:
            console.print(render_status(target.scaleset(name)))
            return
        with suppress(KeyboardInterrupt):
            _watch(console, _poll(target, name, interval))


def _watch(console: Console, states: Iterator[dict[str, Any]]) -> None:
    """On a terminal, redraw in place; otherwise print the status again each time it changes."""
    if console.is_terminal:
        with Live(console=console, auto_refresh=False) as live:
            for scaleset in states:
                live.update(render_status(scaleset), refresh=True)
        return
    last: Any = None
    for scaleset in states:
        if scaleset.get("status") != last:
            last = scaleset.get("status")
            console.print(render_status(scaleset))
            console.print()


# --------------------------------------------------------------------------- history


def render_history(scaleset: dict[str, Any], revisions: list[dict[str, Any]]) -> RenderableType:
    status = scaleset.get("status") or {}
    upgrades = Table(title="Upgrades", title_justify="left")
    for column in ("From", "To", "Started", "Finished", "Result"):
        upgrades.add_column(column)
    for entry in (status.get("upgrade") or {}).get("history") or []:
        upgrades.add_row(
            entry.get("fromRevision") or "-",
            entry.get("toRevision") or "-",
            entry.get("startedAt") or "-",
            entry.get("finishedAt") or "-",
            entry.get("result") or "-",
        )
    kept = Table(title="Revisions kept (ControllerRevisions)", title_justify="left")
    kept.add_column("Revision", justify="right")
    kept.add_column("Name")
    kept.add_column("Created")
    kept.add_column("")
    current, update = status.get("currentRevision"), status.get("updateRevision")
    for revision in sorted(revisions, key=lambda r: int(r.get("revision") or 0)):
        revision_name = revision["metadata"]["name"]
        marks = [m for m, r in (("current", current), ("update", update)) if r == revision_name]
        kept.add_row(
            str(revision.get("revision") or "-"),
            revision_name,
            revision["metadata"].get("creationTimestamp") or "-",
            ", ".join(marks),
        )
    return Group(upgrades, kept)


# status.upgrade.history holds each upgrade's span and result, not its batches: the drawing shows the
# span, and in it each instance's update as its pod records it (fleet.scaleset.dev/updated-at).
HISTORY_HAS_NO_BATCHES = (
    "status.upgrade.history records no batches: each mark is one instance's update, from its pod's "
    f"{ANNOTATION_UPDATED_AT} (an instance updated since is not drawn)"
)


def history_drawing(scaleset: dict[str, Any], pods: list[dict[str, Any]]) -> Drawing:
    """The last finished upgrade of status.upgrade.history on a time axis, one row per upgrade domain."""
    meta, status = scaleset["metadata"], scaleset.get("status") or {}
    entries = (status.get("upgrade") or {}).get("history") or []
    if not entries:
        raise CommandError(
            f'ScaleSet "{meta["name"]}" has no finished upgrade in status.upgrade.history to draw.'
        )
    entry = entries[-1]
    started, finished = parse_time(entry.get("startedAt")), parse_time(entry.get("finishedAt"))
    if started is None or finished is None:
        raise CommandError(
            f'The last upgrade of ScaleSet "{meta["name"]}" lacks startedAt or finishedAt in '
            "status.upgrade.history, so it cannot be put on a time axis."
        )
    domains = {int(d["index"]): list(d.get("instances") or []) for d in status.get("upgradeDomains") or []}
    marks: list[tuple[float, int, str]] = []
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        at = parse_time((pod["metadata"].get("annotations") or {}).get(ANNOTATION_UPDATED_AT))
        domain = labels.get(LABEL_UPGRADE_DOMAIN)
        if at is None or domain is None:
            continue
        domains.setdefault(int(domain), [])
        # The history's times are whole seconds: an update in the finishing second belongs to it.
        offset = (at - started).total_seconds()
        if 0 <= offset < (finished - started).total_seconds() + 1:
            revision = labels.get(LABEL_REVISION) or "-"
            marks.append(
                (offset, int(domain), f"{pod['metadata']['name']} put on {revision} at {at.isoformat()}")
            )
    span = max((finished - started).total_seconds(), max((m[0] for m in marks), default=0.0))
    result = str(entry.get("result") or "-")
    boxes = [
        Box(
            upgrade_domain=None,
            start=0.0,
            end=span,
            title=f"{entry.get('fromRevision') or '-'} -> {entry.get('toRevision') or '-'}: {result}, "
            f"{entry.get('startedAt')} to {entry.get('finishedAt')}",
            kind="upgrade",
            classes=(result,),
        )
    ]
    for offset, domain, title in sorted(marks):
        boxes.append(Box(upgrade_domain=domain, start=offset, end=offset, title=title, kind="instance"))
    count = max(domains, default=-1) + 1
    return Drawing(
        title=f"ScaleSet {meta.get('namespace')}/{meta['name']}: {entry.get('fromRevision') or '-'} -> "
        f"{entry.get('toRevision') or '-'}, {result}",
        subtitle=HISTORY_HAS_NO_BATCHES,
        upgrade_domains=[domains.get(index, []) for index in range(count)],
        boxes=boxes,
        origin_label=f"time from {entry.get('startedAt')}",
    )


@app.command()
def history(
    name: str = typer.Argument(..., help="The ScaleSet."),
    svg: Path | None = typer.Option(
        None,
        "--svg",
        help="Draw the last finished upgrade, per upgrade domain over time, into this SVG file.",
    ),
    namespace: str | None = NAMESPACE_OPTION,
    context: str | None = CONTEXT_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
) -> None:
    """List a ScaleSet's recent upgrades and the template revisions kept for rollback."""
    with _errors():
        target = connect(kubeconfig, context, namespace)
        scaleset = target.scaleset(name)
        try:
            revisions = target.kube.list(
                group_path("apps", "v1", "controllerrevisions", target.namespace), f"{LABEL_SCALESET}={name}"
            )
        except ApiError as error:
            raise explain(error, "list the ControllerRevisions") from None
        if svg is not None:
            try:
                pods = target.kube.list(core_path("pods", target.namespace), f"{LABEL_SCALESET}={name}")
            except ApiError as error:
                raise explain(error, "list the instances") from None
            svg.write_text(render_svg(history_drawing(scaleset, pods)))
        Console().print(render_history(scaleset, revisions))


# --------------------------------------------------------------------------- walk, pause, resume


def _patch_spec(target: Target, name: str, spec: dict[str, Any], what: str) -> dict[str, Any]:
    target.scaleset(name)
    try:
        patched: dict[str, Any] = target.kube.patch(
            fleet_path("scalesets", target.namespace, name), {"spec": spec}, MERGE_PATCH
        )
    except ApiError as error:
        raise explain(error, what) from None
    return patched


@app.command()
def walk(
    name: str = typer.Argument(..., help="The ScaleSet."),
    upgrade_domain: int = typer.Argument(..., min=0, help="Upgrade domains 0..UD may be upgraded."),
    namespace: str | None = NAMESPACE_OPTION,
    context: str | None = CONTEXT_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Release upgrade domains 0..UD of the update in progress of a Manual-mode ScaleSet.

    The walk names the update revision (annotation fleet.scaleset.dev/walk=UD@REVISION), so it never
    releases a later update: a new update starts unwalked.
    """
    with _errors():
        target = connect(kubeconfig, context, namespace)
        scaleset = target.scaleset(name)
        count = int((scaleset.get("spec") or {}).get("upgradeDomainCount") or 5)
        if upgrade_domain >= count:
            raise CommandError(
                f"upgrade domain {upgrade_domain} does not exist: spec.upgradeDomainCount of "
                f'ScaleSet "{name}" is {count}, so domains are 0 to {count - 1}.'
            )
        revision = _update_revision(target, name, scaleset, timeout)
    value = f"{upgrade_domain}@{revision}" if revision else str(upgrade_domain)
    ask_with(target.kube, "Walk", ANNOTATION_WALK, name, target.namespace, wait, timeout, value)


def _update_revision(target: Target, name: str, scaleset: dict[str, Any], timeout: float) -> str | None:
    """The update revision once the operator has seen the ScaleSet's current spec (a template applied a
    moment ago is the one to walk), or the last one it wrote when it does not catch up in time."""
    deadline = time.monotonic() + min(timeout, 10.0)
    while True:
        status = scaleset.get("status") or {}
        current = status.get("observedGeneration") == scaleset["metadata"].get("generation")
        if current or time.monotonic() > deadline:
            revision = status.get("updateRevision")
            return str(revision) if revision else None
        time.sleep(0.2)
        scaleset = target.scaleset(name)


def _set_paused(name: str, paused: bool, target_of: Callable[[], Target]) -> None:
    with _errors():
        target = target_of()
        _patch_spec(target, name, {"paused": paused}, "set spec.paused")
        typer.echo(f"scaleset.fleet.scaleset.dev/{name} {'paused' if paused else 'resumed'}")


@app.command()
def pause(
    name: str = typer.Argument(..., help="The ScaleSet."),
    namespace: str | None = NAMESPACE_OPTION,
    context: str | None = CONTEXT_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
) -> None:
    """Start no new batch (sets spec.paused); the running batch finishes."""
    _set_paused(name, True, lambda: connect(kubeconfig, context, namespace))


@app.command()
def resume(
    name: str = typer.Argument(..., help="The ScaleSet."),
    namespace: str | None = NAMESPACE_OPTION,
    context: str | None = CONTEXT_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
) -> None:
    """Let a paused rollout go on (clears spec.paused)."""
    _set_paused(name, False, lambda: connect(kubeconfig, context, namespace))
