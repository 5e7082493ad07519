"""Starting the operator: kopf settings, credentials from a kubeconfig, and a run that can be stopped."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import signal
import threading
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import kopf
from kopf._cogs.clients import errors as kopf_errors

from scaleset_operator import metrics
from scaleset_operator.api.models import GROUP
from scaleset_operator.control.context import RESYNC_SECONDS
from scaleset_operator.control.kube import READ_METHODS, Fenced, Kube, WriteFence
from scaleset_operator.control.reconcile import Reconciler
from scaleset_operator.handlers import observe, scalesets  # noqa: F401  (registers the handlers)
from scaleset_operator.handlers.scalesets import OperatorMemo
from scaleset_operator.leader import Leadership, default_identity

kopf_version = importlib.metadata.version("kopf")


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
async def login(memo: Any, **_: Any) -> kopf.AiohttpSession:
    """kopf talks to the cluster of the `Kube` client, naming itself after it in the audit log, and its
    own writes (the finalizer on each ScaleSet) ask the same fence as the reconciler's."""
    kube = _memo_of(memo).kube
    config = kube.api_client.configuration
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    info = kopf.ConnectionInfo(
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
    # The session kopf would build from `info`, with a user agent and the fence added.
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ssl=info.as_ssl_context()),
        headers={**info.as_http_headers(), "User-Agent": f"{kube.user_agent} kopf/{kopf_version}"},
        middlewares=(_fenced(kube.fence),) if kube.fence is not None else (),
    )
    return kopf.AiohttpSession(aiohttp_session=session, server=info.server)


class _KopfWriteFenced(kopf_errors.APINotFoundError):
    """A write of kopf's that the fence refused. kopf skips a patch whose object answers "not found"
    (a finalizer added later, by the leader's kopf) where any other error would stop the operator."""


def _fenced(fence: WriteFence) -> Callable[..., Awaitable[aiohttp.ClientResponse]]:
    """An aiohttp middleware: a write asks `fence` first, and does not outlive what the fence allows."""

    async def middleware(
        request: aiohttp.ClientRequest,
        handler: Callable[[aiohttp.ClientRequest], Awaitable[aiohttp.ClientResponse]],
    ) -> aiohttp.ClientResponse:
        if request.method.upper() in READ_METHODS:
            return await handler(request)
        try:
            with fence.writing() as remaining:
                return await asyncio.wait_for(handler(request), remaining)
        except Fenced as error:
            raise _KopfWriteFenced(str(error), status=404, headers={}) from None

    return middleware


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
    scheduled_events_identity: str = "address",
    scheduled_events_audience: str = "scaleset-operator",
    metrics_address: str | None = None,
    leader_election: LeaderElection | None = None,
    test_only_repair_grace_divisor: float = 1.0,
) -> None:
    """Run until `stop_flag` is set (or forever); all namespaces when `namespaces` is empty.

    `test_only_repair_grace_divisor` makes automatic repairs' grace periods pass that many times faster,
    so that tests on a live API need not wait the API's minimum of 10 minutes; it is 1 in production
    and no command line or manifest sets it.

    With `scheduled_events_address` ('HOST:PORT'), the scheduled-events endpoint is served beside it,
    its callers identified by `scheduled_events_identity` ('address' or 'token', with tokens of
    `scheduled_events_audience`).
    With `leader_election`, every replica watches, serves health and metrics, but only the holder of
    the Lease reconciles, and every write of the process asks the Lease's fence (leader.Leadership).
    """
    identity = default_identity()
    # Each replica names itself in the API server's audit log: its writes can be told apart there.
    user_agent = f"scaleset-operator/{identity}"
    leadership = None
    if leader_election is not None:
        leadership = Leadership(
            # The Lease's own client and connections: a renewal never waits for the reconciler's.
            Kube.from_kubeconfig(kubeconfig, user_agent=user_agent),
            leader_election.namespace,
            leader_election.name,
            identity=identity,
            lease_duration=leader_election.lease_duration,
            renew_deadline=leader_election.renew_deadline,
            retry_period=leader_election.retry_period,
        )
    else:
        metrics.LEADER.set(1)
    # Every write of the reconciler, the scheduled-events endpoint and kopf asks the Lease's fence.
    kube = Kube.from_kubeconfig(kubeconfig, user_agent=user_agent, fence=leadership)
    reconciler = Reconciler(kube, test_only_repair_grace_divisor=test_only_repair_grace_divisor)
    state = OperatorMemo(reconciler=reconciler, resync_seconds=resync_seconds, leadership=leadership)
    # Fleet gauges come from the acting replica only, so that a sum over replicas counts each once.
    metrics.FLEET.enabled = state.is_active
    stop_metrics = metrics.serve(metrics_address) if metrics_address else None
    lease_stop = asyncio.Event()
    lease_task = asyncio.create_task(leadership.run(lease_stop)) if leadership else None
    stop_events = None
    if scheduled_events_address:
        from scaleset_operator.imds.server import Identity, serve

        stop_events = await serve(
            kube,
            scheduled_events_address,
            namespaces=namespaces,
            identity=Identity(scheduled_events_identity),
            audience=scheduled_events_audience,
        )
    # kopf stops its watchers at once when asked to, but runs its cleanup handlers only after all its
    # tasks are done, seconds later; the loops of passes are the operator's own, so they are stopped
    # here, the moment the operator is asked to stop (by `stop_flag` or a signal, see `_on_signals`).
    halt = asyncio.Event()
    kopf_ready = asyncio.Event()
    halting = asyncio.create_task(_stop_passes_on(halt, stop_flag, state))
    readying = asyncio.create_task(_when_ready(kopf_ready, ready_flag, halt))
    try:
        await kopf.operator(
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            stop_flag=halt,
            ready_flag=kopf_ready,
            memo=kopf.Memo(scaleset=state),
            liveness_endpoint=liveness_endpoint,
            standalone=True,
        )
    finally:
        halt.set()
        readying.cancel()
        await halting
        if stop_events is not None:
            await stop_events()
        # kopf has stopped its daemons, but a pass may still run in a worker thread: the Lease's run
        # closes the fence, waits for the last admitted write to end, and only then releases it.
        lease_stop.set()
        if lease_task is not None:
            await lease_task
        metrics.FLEET.forget_all()
        if stop_metrics is not None:
            stop_metrics()


async def _when_ready(
    kopf_ready: asyncio.Event, ready_flag: asyncio.Event | threading.Event | None, halt: asyncio.Event
) -> None:
    """Once kopf is ready: say so, and in the main thread let SIGINT and SIGTERM set `halt`.

    kopf answers those signals with a stop of its own tasks, installed as it starts (hence after it is
    ready); pointing them at `halt`, which kopf waits for too, stops the loops of passes at once
    rather than after kopf's shutdown.
    """
    await kopf_ready.wait()
    if ready_flag is not None:
        ready_flag.set()
    if threading.current_thread() is threading.main_thread():
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, halt.set)


async def _stop_passes_on(
    halt: asyncio.Event, stop_flag: asyncio.Event | threading.Event | None, state: OperatorMemo
) -> None:
    """Set `halt` when `stop_flag` is set, and end every loop of passes as soon as `halt` is set."""
    while not halt.is_set():
        if stop_flag is not None and stop_flag.is_set():
            halt.set()
            break
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(halt.wait(), timeout=0.1)
    await state.stop()


class OperatorThread:
    """The operator in a background thread with its own event loop: for tests and the demo."""

    def __init__(
        self,
        kubeconfig: str,
        namespaces: Sequence[str] = (),
        resync_seconds: float = RESYNC_SECONDS,
        scheduled_events_address: str | None = None,
        metrics_address: str | None = None,
        scheduled_events_identity: str = "address",
        test_only_repair_grace_divisor: float = 1.0,
    ):
        self.kubeconfig = kubeconfig
        self.test_only_repair_grace_divisor = test_only_repair_grace_divisor
        self.scheduled_events_address = scheduled_events_address
        self.scheduled_events_identity = scheduled_events_identity
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
                    scheduled_events_identity=self.scheduled_events_identity,
                    metrics_address=self.metrics_address,
                    test_only_repair_grace_divisor=self.test_only_repair_grace_divisor,
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
