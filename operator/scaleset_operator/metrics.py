"""Prometheus metrics of the operator: fleet state derived from what it observes, plus its own work."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from scaleset_operator.api.models import UpgradePhase
from scaleset_operator.identity import LABEL_REVISION, LABEL_SCALESET, LABEL_SURGE, LABEL_UPGRADE_DOMAIN

# Batches take from seconds (kubesim, small fleets) to the 30 minute start timeout and beyond.
BATCH_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
WAIT_BUCKETS = (1, 10, 60, 300, 900, 1800, 3600, 7200, 21600, 86400, 604800)

RECONCILE_PASSES = Counter(
    "scaleset_reconcile_passes_total", "Reconcile passes of a ScaleSet, by result.", ["result"]
)
RECONCILE_ERRORS = Counter(
    "scaleset_reconcile_errors_total", "Reconcile passes that ended in an unexpected error."
)
RECONCILE_FAILURES = Counter(
    "scaleset_reconcile_failures_total",
    "Reconcile passes that could not do their work, by reason: the condition reason of a refusal "
    "(QuotaExceeded, PodSecurityViolation, InvalidSpec, ...) or the API error's (TooManyRequests, ...).",
    ["reason"],
)
RECONCILE_DURATION = Histogram(
    "scaleset_reconcile_duration_seconds",
    "Wall time of one reconcile pass.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEADER = Gauge(
    "scaleset_leader", "1 while this replica acts (holds the Lease, or runs alone); 0 on a standby."
)
INSTANCE_UPDATES = Counter(
    "scaleset_instance_updates_total",
    "Instances put on a new revision, by how (Reimage or InPlace).",
    ["method"],
)
BUILD_INFO = Info("scaleset_build", "The operator's version and what it runs on (always 1).")
API_REQUESTS = Counter(
    "scaleset_api_requests_total",
    "Requests of the control layer to the Kubernetes API, by verb and HTTP status code.",
    ["verb", "code"],
)


def build_info() -> dict[str, str]:
    """The operator's own version, Python's and kopf's: the labels of scaleset_build_info."""
    import importlib.metadata
    import platform

    return {
        "version": importlib.metadata.version("scaleset-operator"),
        "python_version": platform.python_version(),
        "kopf_version": importlib.metadata.version("kopf"),
    }


BUILD_INFO.info(build_info())


def reconcile_pass(ok: bool, duration_seconds: float | None = None, failure: str | None = None) -> None:
    """Count one reconcile pass; `ok` is False when it raised, `failure` the reason it could not do its
    work (a refusal reported in conditions when `ok`, the error's reason when not)."""
    result = "error" if not ok else "refused" if failure is not None else "success"
    RECONCILE_PASSES.labels(result=result).inc()
    if not ok:
        RECONCILE_ERRORS.inc()
    if failure is not None:
        RECONCILE_FAILURES.labels(reason=failure).inc()
    if duration_seconds is not None:
        RECONCILE_DURATION.observe(duration_seconds)


def instance_updated(method: str) -> None:
    """Count one instance update; the reconciler calls it where it reimages or patches an instance."""
    INSTANCE_UPDATES.labels(method=method).inc()


def api_request(method: str, query: Mapping[str, Any] | None, code: int | str) -> None:
    """Count one API request; a GET with a page size is a list, as the control layer only pages lists."""
    verb = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(method.upper())
    if verb is None:
        verb = "list" if query and ("limit" in query or "labelSelector" in query) else "get"
    API_REQUESTS.labels(verb=verb, code=str(code)).inc()


def _parse_time(value: Any) -> float | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _is_ready(pod: Mapping[str, Any]) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def waiting_reason(upgrade: Mapping[str, Any]) -> str | None:
    """The reason an upgrade waits on something outside it (a window, an approval, a walk), or None."""
    phase = upgrade.get("phase")
    reason = upgrade.get("reason") or ""
    if phase == UpgradePhase.WAITING_FOR_MAINTENANCE_WINDOW:
        return reason or str(phase)
    if upgrade.get("locked") and reason.startswith("WaitingFor"):
        return str(reason)
    return None


class FleetCollector(Collector):
    """Gauges of ScaleSets and their instances, computed at scrape time from the objects last observed.

    The kopf event handlers feed it every ScaleSet and instance pod they see; nothing here reads the
    API. Batch durations and waits are taken from the status the operator writes (`currentBatch`
    start and finish, `upgrade.reason`), so they need no hook inside the reconciler.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._scalesets: dict[tuple[str, str], dict[str, Any]] = {}
        self._pods: dict[tuple[str, str], tuple[str, str, str, bool]] = {}
        self._batches_seen: set[tuple[str, str, str]] = set()
        self._waits: dict[tuple[str, str], tuple[str, float]] = {}
        self._batch_histogram = _Histogram(BATCH_BUCKETS)
        self._wait_histogram: dict[str, _Histogram] = {}
        self.enabled: Callable[[], bool] = lambda: True

    # ------------------------------------------------------------------ feeding

    def observe_scaleset(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        with self._lock:
            if deleted:
                self._scalesets.pop(key, None)
                self._waits.pop(key, None)
                return
            status = dict(body.get("status") or {})
            self._scalesets[key] = {"spec": dict(body.get("spec") or {}), "status": status}
            upgrade = status.get("upgrade") or {}
            self._observe_batch(key, upgrade.get("currentBatch") or {})
            self._observe_wait(key, upgrade)

    def _observe_batch(self, key: tuple[str, str], batch: Mapping[str, Any]) -> None:
        started, finished = _parse_time(batch.get("startedAt")), _parse_time(batch.get("finishedAt"))
        if started is None or finished is None:
            return
        seen = (*key, str(batch.get("startedAt")))
        if seen in self._batches_seen:
            return
        self._batches_seen.add(seen)
        if len(self._batches_seen) > 10_000:
            self._batches_seen.clear()
            self._batches_seen.add(seen)
        self._batch_histogram.observe(max(0.0, finished - started))

    def _observe_wait(self, key: tuple[str, str], upgrade: Mapping[str, Any]) -> None:
        reason = waiting_reason(upgrade)
        before = self._waits.get(key)
        if before is not None and before[0] != reason:
            del self._waits[key]
            histogram = self._wait_histogram.setdefault(before[0], _Histogram(WAIT_BUCKETS))
            histogram.observe(max(0.0, self._clock() - before[1]))
        if reason is not None and key not in self._waits:
            self._waits[key] = (reason, self._clock())

    def observe_pod(self, body: Mapping[str, Any], deleted: bool = False) -> None:
        meta = body.get("metadata") or {}
        labels = meta.get("labels") or {}
        key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
        with self._lock:
            if deleted or LABEL_SCALESET not in labels or labels.get(LABEL_SURGE) == "true":
                self._pods.pop(key, None)
                return
            self._pods[key] = (
                str(labels[LABEL_SCALESET]),
                str(labels.get(LABEL_UPGRADE_DOMAIN, "")),
                str(labels.get(LABEL_REVISION, "")),
                _is_ready(body),
            )

    def forget_all(self) -> None:
        with self._lock:
            self._scalesets.clear()
            self._pods.clear()
            self._waits.clear()

    # ------------------------------------------------------------------ scraping

    def describe(self) -> Iterator[Any]:
        return iter(())  # computed at collect time; no fixed series to check at registration

    def collect(self) -> Iterator[Any]:
        with self._lock:
            scalesets = dict(self._scalesets)
            pods = list(self._pods.items())
            waits = dict(self._waits)
            batch = self._batch_histogram.copy()
            wait_histograms = {reason: h.copy() for reason, h in self._wait_histogram.items()}
        if not self.enabled():
            return
        yield from self._scaleset_families(scalesets, waits)
        instances = GaugeMetricFamily(
            "scaleset_instances",
            "Instances of a ScaleSet by upgrade domain, revision and health (Ready pod or not).",
            labels=["namespace", "scaleset", "upgrade_domain", "revision", "health"],
        )
        counts: dict[tuple[str, str, str, str, str], int] = {}
        for (namespace, _), (scaleset, domain, revision, ready) in pods:
            key = (namespace, scaleset, domain, revision, "healthy" if ready else "unhealthy")
            counts[key] = counts.get(key, 0) + 1
        for labels, count in sorted(counts.items()):
            instances.add_metric(list(labels), count)
        yield instances
        yield batch.family(
            "scaleset_batch_duration_seconds", "Time from a batch's start to all of it healthy."
        )
        waited = HistogramMetricFamily(
            "scaleset_upgrade_wait_duration_seconds",
            "How long upgrades waited for a maintenance window, an approval or a walk, by reason.",
            labels=["reason"],
        )
        for reason, histogram in sorted(wait_histograms.items()):
            histogram.add_to(waited, [reason])
        yield waited

    def _scaleset_families(
        self,
        scalesets: dict[tuple[str, str], dict[str, Any]],
        waits: dict[tuple[str, str], tuple[str, float]],
    ) -> Iterator[Any]:
        labels = ["namespace", "scaleset"]
        phase = GaugeMetricFamily(
            "scaleset_upgrade_phase",
            "1 for the upgrade phase a ScaleSet is in, 0 for the others.",
            labels=[*labels, "phase"],
        )
        domain = GaugeMetricFamily(
            "scaleset_upgrade_current_domain", "The upgrade domain being upgraded.", labels=labels
        )
        replicas = GaugeMetricFamily("scaleset_replicas", "Instances wanted (spec.replicas).", labels=labels)
        ready = GaugeMetricFamily("scaleset_ready_replicas", "Instances whose pod is Ready.", labels=labels)
        updated = GaugeMetricFamily(
            "scaleset_updated_replicas", "Instances on the update revision.", labels=labels
        )
        condition = GaugeMetricFamily(
            "scaleset_status_condition",
            "1 when the ScaleSet's condition has this status.",
            labels=[*labels, "condition", "status"],
        )
        pending = GaugeMetricFamily(
            "scaleset_pending_updates",
            "Updates waiting to be applied, by kind and classification.",
            labels=[*labels, "kind", "classification"],
        )
        waiting = GaugeMetricFamily(
            "scaleset_upgrade_waiting_seconds",
            "How long the running upgrade has been waiting, by what it waits for.",
            labels=[*labels, "reason"],
        )
        now = self._clock()
        for (namespace, name), state in sorted(scalesets.items()):
            spec, status = state["spec"], state["status"]
            upgrade = status.get("upgrade") or {}
            current = str(upgrade.get("phase") or UpgradePhase.IDLE)
            for value in UpgradePhase:
                phase.add_metric([namespace, name, str(value)], 1.0 if value == current else 0.0)
            if upgrade.get("currentUpgradeDomain") is not None:
                domain.add_metric([namespace, name], float(upgrade["currentUpgradeDomain"]))
            replicas.add_metric([namespace, name], float(spec.get("replicas") or 0))
            ready.add_metric([namespace, name], float(status.get("readyReplicas") or 0))
            updated.add_metric([namespace, name], float(status.get("updatedReplicas") or 0))
            for item in status.get("conditions") or []:
                for truth in ("True", "False", "Unknown"):
                    condition.add_metric(
                        [namespace, name, str(item.get("type")), truth.lower()],
                        1.0 if item.get("status") == truth else 0.0,
                    )
            counts: dict[tuple[str, str], int] = {}
            for update in status.get("pendingUpdates") or []:
                key = (str(update.get("kind") or ""), str(update.get("classification") or ""))
                counts[key] = counts.get(key, 0) + 1
            for (kind, classification), count in sorted(counts.items()):
                pending.add_metric([namespace, name, kind, classification], float(count))
            if (namespace, name) in waits:
                reason, since = waits[(namespace, name)]
                waiting.add_metric([namespace, name, reason], max(0.0, now - since))
        yield from (phase, domain, replicas, ready, updated, condition, pending, waiting)


class _Histogram:
    """A plain histogram the collector fills itself, so its observations can be deduplicated."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[index] += 1
                break
        else:
            self.counts[-1] += 1
        self.total += value

    def copy(self) -> _Histogram:
        clone = _Histogram(self.buckets)
        clone.counts, clone.total = list(self.counts), self.total
        return clone

    def _cumulative(self) -> list[tuple[str, float]]:
        running, rows = 0, []
        for bound, count in zip([*map(floatToGoString, self.buckets), "+Inf"], self.counts, strict=True):
            running += count
            rows.append((bound, float(running)))
        return rows

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        family.add_metric(labels, self._cumulative(), sum_value=self.total)

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, documentation, labels=[])
        self.add_to(family, [])
        return family


FLEET = FleetCollector()
REGISTRY.register(FLEET)


def serve(address: str, registry: CollectorRegistry = REGISTRY) -> Callable[[], None]:
    """Serve /metrics on HOST:PORT (":9090" means every interface); returns a function that stops it."""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--metrics-address must be HOST:PORT or :PORT, not {address!r}.")
    server, thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
