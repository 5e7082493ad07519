"""Which cluster and namespace a command talks to, chosen the way kubectl chooses them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer

from scaleset_operator.cli.kubeconfig import context_of, kubeconfig_files, merged
from scaleset_operator.control.kube import ApiError, Kube, fleet_path

KUBECONFIG_OPTION: Any = typer.Option(
    None, "--kubeconfig", help="Kubeconfig file; default $KUBECONFIG, then ~/.kube/config, then in-cluster."
)
CONTEXT_OPTION: Any = typer.Option(None, "--context", help="The kubeconfig context to use.")
NAMESPACE_OPTION: Any = typer.Option(
    None, "--namespace", "-n", help="Namespace of the ScaleSet; default the context's namespace."
)


class CommandError(Exception):
    """A problem the user can fix; str() is the one sentence shown."""


@dataclass
class Target:
    """A client for the chosen cluster and the namespace commands act in."""

    kube: Kube
    namespace: str

    def scaleset(self, name: str) -> dict[str, Any]:
        found = self.kube.get_or_none(fleet_path("scalesets", self.namespace, name))
        if found is None:
            raise CommandError(f'ScaleSet "{name}" not found in namespace "{self.namespace}".')
        return found


def connect(kubeconfig: Path | None, context: str | None, namespace: str | None) -> Target:
    """kubectl's rules: --kubeconfig, else $KUBECONFIG (its files merged), else ~/.kube/config, else the
    pod's account."""
    import kubernetes
    from kubernetes import config

    files = kubeconfig_files(kubeconfig)
    try:
        if not files:
            return Target(Kube.from_kubeconfig(None, context), namespace or _pod_namespace() or "default")
        merged_config = merged(files, explicit=kubeconfig is not None)
        client = kubernetes.config.new_client_from_config_dict(merged_config, context=context)  # type: ignore[no-untyped-call]
    except (config.ConfigException, FileNotFoundError) as error:
        raise CommandError(f"cannot use the kubeconfig: {str(error).rstrip('.')}.") from None
    chosen = context_of(merged_config, context)
    return Target(Kube(client), namespace or chosen.get("namespace") or "default")


def _pod_namespace() -> str | None:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    return path.read_text().strip() if path.exists() else None


def explain(error: ApiError, what: str) -> CommandError:
    """An API refusal as one sentence; the API server's own message names the field."""
    message = error.message.rstrip(".")
    if error.status == 403:
        return CommandError(f"not allowed to {what}: {message}.")
    return CommandError(f"cannot {what}: {message}.")
