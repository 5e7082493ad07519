"""`scaleset rollback`, `restart`, `upgrade`, `swap` and `swap-back`: ask the operator for an imperative action and report its answer.

Each sets the action's annotation on the ScaleSet, as `kubectl annotate` would, then waits until the
operator has consumed it and prints what it decided (status.upgrade.lastAction).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from scaleset_operator.cli.main import app
from scaleset_operator.identity import (
    ANNOTATION_OS_UPGRADE,
    ANNOTATION_RESTART,
    ANNOTATION_ROLLBACK,
    ANNOTATION_SWAP,
    ANNOTATION_SWAP_BACK,
)

if TYPE_CHECKING:
    from scaleset_operator.control.kube import Kube

KUBECONFIG_OPTION = typer.Option(
    None, "--kubeconfig", help="Kubeconfig file; default $KUBECONFIG or ~/.kube/config."
)
CONTEXT_OPTION = typer.Option(None, "--context", help="Kubeconfig context; default the current one.")
NAMESPACE_OPTION = typer.Option(None, "--namespace", "-n", help="Namespace; default the context's.")
WAIT_OPTION = typer.Option(True, "--wait/--no-wait", help="Wait for the operator's answer.")
TIMEOUT_OPTION = typer.Option(30.0, "--timeout", help="Seconds to wait for the operator's answer.")


def context_namespace(kubeconfig: Path | None, context: str | None) -> str:
    """The namespace of the kubeconfig context, as kubectl picks it; `default` when it names none."""
    import kubernetes

    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None
        )
    except (kubernetes.config.ConfigException, OSError):
        return "default"
    chosen = next((c for c in contexts if c.get("name") == context), None) if context else active
    return str(((chosen or {}).get("context") or {}).get("namespace") or "default")


def ask(
    action: str,
    annotation: str,
    name: str,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    wait: bool,
    timeout: float,
    value: str = "true",
) -> None:
    from scaleset_operator.control.kube import Kube

    namespace = namespace or context_namespace(kubeconfig, context)
    try:
        kube = Kube.from_kubeconfig(str(kubeconfig) if kubeconfig else None, context)
    except Exception as error:  # the client's config errors have no common base class
        typer.echo(f"error: cannot load the kubeconfig: {error}", err=True)
        raise typer.Exit(2) from None
    ask_with(kube, action, annotation, name, namespace, wait, timeout, value)


def ask_with(
    kube: Kube,
    action: str,
    annotation: str,
    name: str,
    namespace: str,
    wait: bool,
    timeout: float,
    value: str = "true",
) -> None:
    """Set the annotation, then wait until the operator has consumed it and print its answer."""
    from scaleset_operator.control.kube import ApiError, fleet_path

    path = fleet_path("scalesets", namespace, name)
    try:
        kube.patch(path, {"metadata": {"annotations": {annotation: value}}})
    except ApiError as error:
        if error.status == 404:
            typer.echo(f'error: ScaleSet "{name}" not found in namespace "{namespace}".', err=True)
        else:
            typer.echo(f"error: {error.message or error.reason}", err=True)
        raise typer.Exit(2) from None
    title = {"OSUpgrade": "OS upgrade"}.get(action, action)
    typer.echo(f'{title} of ScaleSet "{name}" in namespace "{namespace}" asked for ({annotation}={value}).')
    if not wait:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        scaleset = kube.get(path)
        consumed = annotation not in (scaleset["metadata"].get("annotations") or {})
        answer = _last_action(scaleset)
        if consumed and answer and answer.get("action") == action:
            typer.echo(f"{answer.get('result')}: {answer.get('message')}")
            if answer.get("result") != "Accepted":
                raise typer.Exit(1)
            typer.echo(f"Follow it with: kubectl get scaleset {name} -n {namespace} -w")
            return
        time.sleep(0.2)
    typer.echo(f"error: the operator did not answer within {timeout:g}s; is it running?", err=True)
    raise typer.Exit(1)


def _last_action(scaleset: dict[str, Any]) -> dict[str, Any] | None:
    found: dict[str, Any] | None = ((scaleset.get("status") or {}).get("upgrade") or {}).get("lastAction")
    return found


@app.command("rollback")
def rollback_command(
    name: str = typer.Argument(..., help="The ScaleSet whose running upgrade to roll back."),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Roll back the running upgrade: updated instances go back to the revision they came from."""
    ask("Rollback", ANNOTATION_ROLLBACK, name, namespace, kubeconfig, context, wait, timeout)


@app.command("restart")
def restart_command(
    name: str = typer.Argument(..., help="The ScaleSet whose instances to restart."),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Restart every instance, upgrade domain by upgrade domain, under the policy's batch limits."""
    ask("Restart", ANNOTATION_RESTART, name, namespace, kubeconfig, context, wait, timeout)


@app.command("upgrade")
def upgrade_command(
    name: str = typer.Argument(..., help="The ScaleSet whose OS container to upgrade."),
    to: str | None = typer.Option(
        None, "--to", help="The published version to move to; default the newest published one."
    ),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Upgrade the OS container now to a version of its ImageCatalog, under the policy, outside any window."""
    ask(
        "OSUpgrade",
        ANNOTATION_OS_UPGRADE,
        name,
        namespace,
        kubeconfig,
        context,
        wait,
        timeout,
        to or "latest",
    )


@app.command("swap-back")
def swap_back_command(
    name: str = typer.Argument(..., help="The ScaleSet (Staged mode) whose Services to swap back."),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Swap every Service back to the set the last staged upgrade swapped away from, while it is kept."""
    ask("SwapBack", ANNOTATION_SWAP_BACK, name, namespace, kubeconfig, context, wait, timeout)


@app.command("swap")
def swap_command(
    name: str = typer.Argument(
        ..., help="The ScaleSet (Staged mode, staged.swap Manual) whose Services to swap."
    ),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
    wait: bool = WAIT_OPTION,
    timeout: float = TIMEOUT_OPTION,
) -> None:
    """Swap every Service to the staged set, once it is built and healthy (phase ReadyToSwap)."""
    ask("Swap", ANNOTATION_SWAP, name, namespace, kubeconfig, context, wait, timeout)


@app.command("approve")
def approve_command(
    instance: str = typer.Argument(..., help="The instance (pod) whose scheduled events to approve."),
    event: list[str] = typer.Option(
        [], "--event", help="EventId to approve (repeatable); default every event."
    ),
    namespace: str | None = NAMESPACE_OPTION,
    kubeconfig: Path | None = KUBECONFIG_OPTION,
    context: str | None = CONTEXT_OPTION,
) -> None:
    """Approve an instance's scheduled events on its behalf, as a POST of StartRequests from it would."""
    from scaleset_operator.control.kube import ApiError, Kube, core_path
    from scaleset_operator.imds.instances import Instance, KubeInstanceEvents
    from scaleset_operator.planning.scheduled_events import EventStatus, UnknownEvent

    namespace = namespace or context_namespace(kubeconfig, context)
    try:
        kube = Kube.from_kubeconfig(str(kubeconfig) if kubeconfig else None, context)
    except Exception as error:  # the client's config errors have no common base class
        typer.echo(f"error: cannot load the kubeconfig: {error}", err=True)
        raise typer.Exit(2) from None
    events = KubeInstanceEvents(kube)
    target = Instance(namespace, instance, "")
    try:
        if kube.get_or_none(core_path("pods", namespace, instance)) is None:
            typer.echo(f'error: instance "{instance}" not found in namespace "{namespace}".', err=True)
            raise typer.Exit(2)
        document = events.read_events(target)
        wanted = event or [e.event_id for e in document.events if e.status == EventStatus.SCHEDULED]
        if not wanted:
            typer.echo(f'Instance "{instance}" in namespace "{namespace}" has no scheduled event to approve.')
            return
        for event_id in wanted:
            events.approve(target, event_id)
            typer.echo(f"Approved event {event_id} of {instance}: its work starts at once.")
    except UnknownEvent as error:
        typer.echo(f'error: instance "{instance}" has no scheduled event {error.args[0]}.', err=True)
        raise typer.Exit(2) from None
    except ApiError as error:
        typer.echo(f"error: {error.message or error.reason}", err=True)
        raise typer.Exit(2) from None
