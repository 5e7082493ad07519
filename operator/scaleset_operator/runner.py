"""Starting the operator: kopf settings, credentials from a kubeconfig, and a run that can be stopped."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import kopf

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP
from scaleset_operator.control.context import RESYNC_SECONDS
from scaleset_operator.control.kube import Kube
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.handlers import observe, scalesets  # noqa: F401  (registers the handlers)
from scaleset_operator.handlers.scalesets import OperatorMemo
from scaleset_operator.leader import Leadership


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: Any, **_: Any) -> None:
    if not isinstance(memo.get("scaleset"), OperatorMemo):
        # Started by `kopf run` rather than `scaleset operator`: credentials come from the environment
        # (in-cluster, then $KUBECONFIG), as for any kopf operator.
        memo["scaleset"] = OperatorMemo(reconciler=Reconciler(Kube.from_kubeconfig()))
    # No handler needs a finalizer (no daemons, timers or deletion handlers: the loops of passes are the
    # operator's own), so kopf adds none. It still knows this name, the one its daemons used to put on
    # every ScaleSet, and takes it off each ScaleSet it sees as one no handler requires: a ScaleSet of
    # an older operator is released, and deleting it never waits for an operator that is gone.
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # The reconciler posts the Events a user should read; kopf's own chatter stays in the log.
    settings.posting.enabled = False
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.peering.standalone = True


@kopf.on.login()
def login(memo: Any, **_: Any) -> kopf.ConnectionInfo:
    config = _memo_of(memo).kube.api_client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme,
        token=token,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


def _memo_of(memo: Any) -> Reconciler:
    state = memo.get("scaleset")
    assert isinstance(state, OperatorMemo) and state.reconciler is not None
    return state.reconciler


@dataclass(frozen=True)
class LeaderElection:
    """Where the replicas' Lease lives and how fast a standby takes over (client-go's defaults)."""

    namespace: str
    name: str = "scaleset-operator"
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


async def run(
    *,
    kubeconfig: str | None = None,
    namespaces: Sequence[str] = (),
    stop_flag: asyncio.Event | threading.Event | None = None,
    ready_flag: asyncio.Event | threading.Event | None = None,
    resync_seconds: float = RESYNC_SECONDS,
    liveness_endpoint: str | None = None,
    scheduled_events_address: str | None = None,
    metrics_address: str | None = None,
    leader_election: LeaderElection | None = None,
) -> None:
    """Run until `stop_flag` is set (or forever); all namespaces when `namespaces` is empty.

    With `scheduled_events_address` ('HOST:PORT'), the scheduled-events endpoint is served beside it.
    With `leader_election`, every replica watches, serves health and metrics, but only the holder of
    the Lease reconciles.
    """
    kube = Kube.from_kubeconfig(kubeconfig)
    leadership = None
    if leader_election is not None:
        leadership = Leadership(
            # A Lease call must not outlive the renew deadline, or a hung request would keep a
            # replica acting after its Lease may have passed to another.
            Kube(kube.api_client, request_timeout=max(1.0, leader_election.renew_deadline / 2)),
            leader_election.namespace,
            leader_election.name,
            lease_duration=leader_election.lease_duration,
            renew_deadline=leader_election.renew_deadline,
            retry_period=leader_election.retry_period,
        )
    else:
        metrics.LEADER.set(1)
    state = OperatorMemo(reconciler=Reconciler(kube), resync_seconds=resync_seconds, leadership=leadership)
    # Fleet gauges come from the acting replica only, so that a sum over replicas counts each once.
    metrics.FLEET.enabled = state.is_active
    stop_metrics = metrics.serve(metrics_address) if metrics_address else None
    lease_stop = asyncio.Event()
    lease_task = asyncio.create_task(leadership.run(lease_stop)) if leadership else None
    events_server = None
    if scheduled_events_address:
        from scaleset_operator.imds.instances import KubeInstanceEvents
        from scaleset_operator.imds.server import start_server

        events_server = await start_server(KubeInstanceEvents(kube), scheduled_events_address)
    try:
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            stop_flag=stop_flag,
            ready_flag=ready_flag,
            memo=kopf.Memo(scaleset=state),
            liveness_endpoint=liveness_endpoint,
            standalone=True,
        )
    finally:
        if events_server is not None:
            await events_server.cleanup()
        # The Lease is released only once kopf has stopped every daemon: nothing acts after it.
        lease_stop.set()
        if lease_task is not None:
            await lease_task
        metrics.FLEET.forget_all()
        if stop_metrics is not None:
            stop_metrics()


class OperatorThread:
    """The operator in a background thread with its own event loop: for tests and the demo."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: Sequence[str] = (),
        resync_seconds: float = RESYNC_SECONDS,
        scheduled_events_address: str | None = None,
        metrics_address: str | None = None,
    ):
        self.kubeconfig = kubeconfig
        self.scheduled_events_address = scheduled_events_address
        self.namespaces = namespaces
        self.resync_seconds = resync_seconds
        self.metrics_address = metrics_address
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="scaleset-operator", daemon=True)
        self.error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(
                run(
                    kubeconfig=self.kubeconfig,
                    namespaces=self.namespaces,
                    stop_flag=self._stop,
                    ready_flag=self._ready,
                    resync_seconds=self.resync_seconds,
                    scheduled_events_address=self.scheduled_events_address,
                    metrics_address=self.metrics_address,
                )
            )
        except BaseException as error:  # surfaced to the test that started it
            self.error = error
            self._ready.set()

    def start(self, timeout: float = 30.0) -> OperatorThread:
        self._thread.start()
        if not self._ready.wait(timeout) or self.error is not None:
            raise RuntimeError(f"the operator did not start: {self.error!r}")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


logging.getLogger("kopf.objects").setLevel(logging.WARNING)
