"""One reconcile pass of a ScaleSet: read a snapshot from the API, ask the planner, act, write status."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from scaleset_operator.api.loading import describe_error, validate_scaleset_update
from scaleset_operator.api.models import ScaleSetSpec, UpdateMethod, UpgradeMode, UpgradePolicySpec
from scaleset_operator.control import manifests
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import (
    STRATEGIC_MERGE_PATCH,
    ApiError,
    Kube,
    core_path,
    fleet_path,
    group_path,
)
from scaleset_operator.control.snapshot import instance_state, is_terminating, parse_time, pod_images
from scaleset_operator.control.status import ConditionUpdate, merge_conditions, upgrade_domain_summaries
from scaleset_operator.identity import (
    LABEL_ORDINAL,
    LABEL_REVISION,
    LABEL_SCALESET,
    LABEL_SURGE,
    LABEL_UPGRADE_DOMAIN,
    label_selector,
    ordinal_of,
)
from scaleset_operator.planning.batches import Complete, StartBatch, StepReason, Stop, Wait, next_step
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import Batch, HealthGate, InstanceState, RolloutState
from scaleset_operator.planning.revisions import UpdateKind, classify_update, revision_name

log = logging.getLogger(__name__)

RESYNC_SECONDS = 30.0
HISTORY_KEPT = 10


def utcnow() -> datetime:
    return datetime.now(UTC)


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp_precise(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Outcome:
    """What a pass leaves for the caller: when to look again even if nothing changes."""

    requeue_after: float | None = RESYNC_SECONDS
    step: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class Snapshot:
    scaleset: dict[str, Any]
    spec: ScaleSetSpec
    policy: UpgradePolicySpec
    revisions: dict[str, dict[str, Any]]
    update_revision: str
    current_revision: str
    pods: dict[int, dict[str, Any]]
    surges: dict[int, dict[str, Any]]
    template_checked: bool = False
    # The status as the API server last returned it: what a merge patch is computed against.
    stored_status: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        name: str = self.scaleset["metadata"]["name"]
        return name

    @property
    def namespace(self) -> str:
        namespace: str = self.scaleset["metadata"]["namespace"]
        return namespace

    @property
    def upgrade(self) -> dict[str, Any]:
        upgrade: dict[str, Any] = (self.scaleset.get("status") or {}).get("upgrade") or {}
        return upgrade

    def template_of(self, revision: str | None) -> dict[str, Any] | None:
        stored = self.revisions.get(revision or "")
        if stored is None:
            return None
        template: dict[str, Any] = (stored.get("data") or {}).get("template") or {}
        return template


class InvalidInput(Exception):
    """Input the operator cannot honour; reported in conditions, never acted on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Reconciler:
    """Level-triggered: every pass reads everything it needs from the API, so a restart loses nothing."""

    def __init__(self, kube: Kube, clock: Callable[[], datetime] = utcnow) -> None:
        self.kube = kube
        self.clock = clock
        self.events = EventRecorder(kube)

    # ------------------------------------------------------------------ entry point

    def reconcile(self, namespace: str, name: str) -> Outcome:
        now = self.clock()
        scaleset = self.kube.get_or_none(fleet_path("scalesets", namespace, name))
        if scaleset is None or scaleset["metadata"].get("deletionTimestamp"):
            return Outcome(requeue_after=None, step="Gone")
        try:
            snapshot = self._snapshot(scaleset, now)
        except InvalidInput as problem:
            self._report_invalid(scaleset, problem, now)
            return Outcome(step=problem.reason)
        outcome = Outcome()
        try:
            refused = self._refused_change(snapshot)
            if refused is not None:
                self._hold(snapshot, now, outcome)
                raise refused
            self._scale(snapshot, now, outcome)
            self._repair_drift(snapshot, now, outcome)
            instances = self._instances(snapshot)
            step = self._roll(snapshot, instances, now, outcome)
        except InvalidInput as problem:
            self._report_invalid(snapshot.scaleset, problem, now)
            return Outcome(step=problem.reason)
        self._prune_revisions(snapshot)
        self._write_status(snapshot, instances, step, now)
        return outcome

    # ------------------------------------------------------------------ reading

    def _snapshot(self, scaleset: dict[str, Any], now: datetime) -> Snapshot:
        namespace, name = scaleset["metadata"]["namespace"], scaleset["metadata"]["name"]
        try:
            spec = ScaleSetSpec.model_validate(scaleset.get("spec") or {})
        except ValidationError as error:
            raise InvalidInput("InvalidSpec", describe_validation_error(error, prefix="spec")) from None
        policy = self._policy(namespace, spec)
        uid = scaleset["metadata"]["uid"]

        revisions: dict[str, dict[str, Any]] = {}
        for stored in self.kube.list(
            group_path("apps", "v1", "controllerrevisions", namespace), label_selector(name)
        ):
            if _owned_by(stored, uid):
                revisions[stored["metadata"]["labels"].get(LABEL_REVISION, "")] = stored
        update_revision = revision_name(name, spec.template)
        if update_revision not in revisions:
            number = max((int(r.get("revision") or 0) for r in revisions.values()), default=0) + 1
            body = manifests.controller_revision(scaleset, update_revision, spec.template, number)
            try:
                revisions[update_revision] = self.kube.create(
                    group_path("apps", "v1", "controllerrevisions", namespace), body
                )
            except ApiError as error:
                if error.status != 409:
                    raise
                revisions[update_revision] = self.kube.get(
                    group_path("apps", "v1", "controllerrevisions", namespace, body["metadata"]["name"])
                )
        status = scaleset.get("status") or {}
        current_revision = status.get("currentRevision") or update_revision
        if current_revision not in revisions:
            current_revision = update_revision

        pods: dict[int, dict[str, Any]] = {}
        surges: dict[int, dict[str, Any]] = {}
        for pod in self.kube.list(core_path("pods", namespace), label_selector(name)):
            ordinal = ordinal_of(pod)
            if not _owned_by(pod, uid) or ordinal is None:
                continue  # not this ScaleSet's instance: never touched
            if (pod["metadata"].get("labels") or {}).get(LABEL_SURGE) == "true":
                surges[ordinal] = pod
            else:
                pods[ordinal] = pod

        snapshot = Snapshot(
            scaleset,
            spec,
            policy,
            revisions,
            update_revision,
            current_revision,
            pods,
            surges,
            stored_status=copy.deepcopy(scaleset.get("status") or {}),
        )
        return snapshot

    def _policy(self, namespace: str, spec: ScaleSetSpec) -> UpgradePolicySpec:
        if spec.upgrade_policy_ref is None:
            return UpgradePolicySpec()
        ref = spec.upgrade_policy_ref.name
        policy = self.kube.get_or_none(fleet_path("upgradepolicies", namespace, ref))
        if policy is None:
            raise InvalidInput(
                "PolicyNotFound",
                f'spec.upgradePolicyRef names UpgradePolicy "{ref}", which does not exist in namespace "{namespace}".',
            )
        try:
            return UpgradePolicySpec.model_validate(policy.get("spec") or {})
        except ValidationError as error:
            raise InvalidInput(
                "InvalidPolicy", f'UpgradePolicy "{ref}": ' + describe_validation_error(error, prefix="spec")
            ) from None

    def _refused_change(self, snapshot: Snapshot) -> InvalidInput | None:
        """Changes refused while an upgrade runs; the API server checks some too (CEL), not all can."""
        try:
            self._check_update_rules(snapshot)
        except InvalidInput as problem:
            return problem
        return None

    def _hold(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        """While a change is refused, keep what runs: bring back instances that went missing (a reimage
        in flight, a deleted pod) on the last accepted revision, and change nothing else."""
        accepted = snapshot.upgrade.get("toRevision")
        if accepted in snapshot.revisions:
            snapshot.update_revision = accepted
        elif snapshot.current_revision in snapshot.revisions:
            snapshot.update_revision = snapshot.current_revision
        else:
            return
        kept = min(snapshot.spec.replicas, int((snapshot.scaleset.get("status") or {}).get("replicas") or 0))
        self._create_missing(snapshot, now, outcome, kept)

    def _check_update_rules(self, snapshot: Snapshot) -> None:
        if not snapshot.upgrade.get("locked"):
            return
        old_template = snapshot.template_of(snapshot.current_revision)
        count = snapshot.spec.upgrade_domain_count
        for ordinal, pod in snapshot.pods.items():
            labelled = (pod["metadata"].get("labels") or {}).get(LABEL_UPGRADE_DOMAIN)
            if labelled is not None and labelled != str(upgrade_domain_of(ordinal, count)):
                raise InvalidInput(
                    "UpgradeDomainCountLocked",
                    "spec.upgradeDomainCount cannot change while an upgrade is in progress.",
                )
        if old_template is not None:
            old_spec = snapshot.spec.model_copy(update={"template": old_template})
            problems = validate_scaleset_update(old_spec, snapshot.spec, upgrade_in_progress=True)
            if problems:
                raise InvalidInput("RefusedDuringUpgrade", problems[0])

    # ------------------------------------------------------------------ scaling and repair

    def _revision_for_new_instance(self, snapshot: Snapshot, ordinal: int) -> str:
        """A missing instance comes back on the revision the rollout has reached for it.

        Recreating it on the new revision everywhere would move instances the rollout has not reached
        (and, in Manual mode, domains the user has not walked); on the old one everywhere would undo work.
        """
        if snapshot.current_revision == snapshot.update_revision:
            return snapshot.update_revision
        batch = snapshot.upgrade.get("currentBatch") or {}
        in_batch = ordinal in _batch_ordinals(batch)
        domain = upgrade_domain_of(ordinal, snapshot.spec.upgrade_domain_count)
        batch_domain = batch.get("upgradeDomain")
        if in_batch or (isinstance(batch_domain, int) and domain < batch_domain):
            return snapshot.update_revision
        if snapshot.policy.mode == UpgradeMode.AUTOMATIC and snapshot.upgrade.get("locked"):
            return snapshot.update_revision
        return snapshot.current_revision

    def _scale(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        replicas = snapshot.spec.replicas
        self._create_missing(snapshot, now, outcome, replicas)
        for ordinal in sorted(snapshot.pods, reverse=True):
            if ordinal < replicas:
                continue
            pod = snapshot.pods[ordinal]
            if not is_terminating(pod):
                self.kube.delete(core_path("pods", snapshot.namespace, pod["metadata"]["name"]))
                outcome.notes.append(f"removed {pod['metadata']['name']}")
        for ordinal, pod in list(snapshot.surges.items()):
            if ordinal >= replicas and not is_terminating(pod):
                self.kube.delete(core_path("pods", snapshot.namespace, pod["metadata"]["name"]))
        self._release_claims(snapshot)

    def _create_missing(self, snapshot: Snapshot, now: datetime, outcome: Outcome, replicas: int) -> None:
        for ordinal in range(replicas):
            if ordinal in snapshot.pods:
                continue
            self._ensure_claims(snapshot, ordinal)
            revision = self._revision_for_new_instance(snapshot, ordinal)
            template = snapshot.template_of(revision) or snapshot.spec.template
            pod = manifests.instance_pod(
                snapshot.scaleset, snapshot.spec, template, revision, ordinal, timestamp_precise(now)
            )
            try:
                created = self.kube.create(core_path("pods", snapshot.namespace), pod)
            except ApiError as error:
                if error.status == 409:  # a terminating predecessor still holds the name
                    continue
                if error.status in (400, 422):
                    raise InvalidInput(
                        "TemplateRejected", f"spec.template was refused: {error.message}"
                    ) from None
                raise
            snapshot.pods[ordinal] = created
            outcome.notes.append(f"created {pod['metadata']['name']}")

    def _ensure_claims(self, snapshot: Snapshot, ordinal: int) -> None:
        for claim in manifests.instance_claims(snapshot.scaleset, snapshot.spec, ordinal):
            path = core_path("persistentvolumeclaims", snapshot.namespace, claim["metadata"]["name"])
            if self.kube.get_or_none(path) is None:
                try:
                    self.kube.create(core_path("persistentvolumeclaims", snapshot.namespace), claim)
                except ApiError as error:
                    if error.status != 409:
                        raise

    def _release_claims(self, snapshot: Snapshot) -> None:
        """whenScaled: Delete removes the claims of instances scaled away, once their pods are gone."""
        if snapshot.spec.persistent_volume_claim_retention_policy.when_scaled != "Delete":
            return
        if not snapshot.spec.volume_claim_templates:
            return
        claims = self.kube.list(
            core_path("persistentvolumeclaims", snapshot.namespace), label_selector(snapshot.name)
        )
        for claim in claims:
            ordinal = ordinal_of(claim)
            if ordinal is None or ordinal < snapshot.spec.replicas:
                continue
            if ordinal in snapshot.pods:
                continue
            self.kube.delete(
                core_path("persistentvolumeclaims", snapshot.namespace, claim["metadata"]["name"])
            )

    def _repair_drift(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        """Put back what a foreign edit changed on a managed pod: identity labels and container images."""
        count = snapshot.spec.upgrade_domain_count
        locked = bool(snapshot.upgrade.get("locked"))
        for ordinal, pod in snapshot.pods.items():
            if is_terminating(pod) or ordinal >= snapshot.spec.replicas:
                continue
            labels = pod["metadata"].get("labels") or {}
            revision = labels.get(LABEL_REVISION)
            template = snapshot.template_of(revision)
            patch: dict[str, Any] = {}
            wanted_labels = {LABEL_SCALESET: snapshot.name, LABEL_ORDINAL: str(ordinal)}
            if not locked:  # domains follow upgradeDomainCount only between upgrades
                wanted_labels[LABEL_UPGRADE_DOMAIN] = str(upgrade_domain_of(ordinal, count))
            changed = {k: v for k, v in wanted_labels.items() if labels.get(k) != v}
            if changed:
                patch["metadata"] = {"labels": changed}
            if template is not None:
                wanted = {c["name"]: c["image"] for c in (template.get("spec") or {}).get("containers") or []}
                have = pod_images(pod)
                wrong = [
                    {"name": n, "image": image} for n, image in wanted.items() if have.get(n, image) != image
                ]
                if wrong:
                    patch["spec"] = {"containers": wrong}
            if not patch:
                continue
            name = pod["metadata"]["name"]
            try:
                snapshot.pods[ordinal] = self.kube.patch(
                    core_path("pods", snapshot.namespace, name), patch, STRATEGIC_MERGE_PATCH
                )
            except ApiError as error:
                if error.status == 404:
                    continue
                raise
            what = ", ".join(
                sorted([*changed, *[c["name"] for c in patch.get("spec", {}).get("containers", [])]])
            )
            self.events.warning(
                snapshot.scaleset, "DriftReverted", f"Reverted a foreign edit to {name} ({what})."
            )
            outcome.notes.append(f"reverted drift on {name}")

    # ------------------------------------------------------------------ rolling

    def _instances(self, snapshot: Snapshot) -> list[InstanceState]:
        states = []
        for ordinal in range(snapshot.spec.replicas):
            pod = snapshot.pods.get(ordinal)
            states.append(instance_state(snapshot.name, ordinal, pod))
        return states

    def _rollout_state(
        self, snapshot: Snapshot, instances: list[InstanceState], now: datetime
    ) -> RolloutState:
        upgrade = snapshot.upgrade
        batch = upgrade.get("currentBatch")
        finished_at = parse_time(batch.get("finishedAt")) if batch else None
        if batch and finished_at is None and upgrade.get("toRevision") == snapshot.update_revision:
            # Conditions are stamped to the second; the moment this pass sees the batch healthy is the
            # precise one, so it is recorded (once) and the pause between batches counts from it.
            gate = HealthGate.of(snapshot.policy.health_check)
            members = [i for i in instances if i.ordinal in set(_batch_ordinals(batch))]
            if members and all(
                i.revision == snapshot.update_revision and gate.is_healthy(i, now) for i in members
            ):
                finished_at = now
                batch = {**batch, "finishedAt": timestamp_precise(now)}
                self._patch_status(snapshot, {"upgrade": {"currentBatch": batch}})
        return RolloutState(
            batch=Batch(upgrade_domain=batch.get("upgradeDomain"), ordinals=tuple(_batch_ordinals(batch)))
            if batch
            else None,
            revision=upgrade.get("toRevision"),
            batch_started_at=parse_time(batch.get("startedAt")) if batch else None,
            batch_finished_at=finished_at,
        )

    def _roll(
        self, snapshot: Snapshot, instances: list[InstanceState], now: datetime, outcome: Outcome
    ) -> Any:
        rollout = self._rollout_state(snapshot, instances, now)
        step = next_step(
            replicas=snapshot.spec.replicas,
            upgrade_domain_count=snapshot.spec.upgrade_domain_count,
            walk_upgrade_domain=snapshot.spec.walk_upgrade_domain,
            paused=snapshot.spec.paused,
            policy=snapshot.policy,
            update_revision=snapshot.update_revision,
            instances=instances,
            rollout=rollout,
            now=now,
        )
        upgrade = dict(snapshot.upgrade)
        if snapshot.current_revision != snapshot.update_revision and not upgrade.get("locked"):
            upgrade.update(
                phase="RollingForward",
                locked=True,
                rollbackAllowed=True,
                startedAt=timestamp(now),
                fromRevision=snapshot.current_revision,
                toRevision=snapshot.update_revision,
                currentBatch=None,
            )
            self.events.normal(
                snapshot.scaleset,
                "UpgradeStarted",
                f"Rolling {snapshot.current_revision} to {snapshot.update_revision} "
                f"({snapshot.policy.mode} mode, {len(instances)} instances).",
            )
        elif upgrade.get("locked") and upgrade.get("toRevision") != snapshot.update_revision:
            self.events.normal(
                snapshot.scaleset,
                "UpgradeRetargeted",
                f"The template changed during the upgrade; now rolling to {snapshot.update_revision}.",
            )
            upgrade["toRevision"] = snapshot.update_revision

        if isinstance(step, StartBatch):
            if step.reason == StepReason.BATCH_STARTED:  # not a re-issue of the running batch
                self._batch_completed(snapshot, upgrade)
            names = [i.name for i in instances if i.ordinal in step.batch.ordinals]
            upgrade.update(
                phase="RollingForward",
                currentUpgradeDomain=step.batch.upgrade_domain,
                currentBatch={
                    "upgradeDomain": step.batch.upgrade_domain,
                    "instances": names,
                    "startedAt": timestamp(now),
                },
                message=step.message or None,
                reason=str(step.reason),
            )
            self._check_template(snapshot, now)
            # Record the batch before touching any instance: a restarted operator finishes it.
            self._patch_status(
                snapshot,
                merge_patch(
                    snapshot.stored_status, {"upgrade": upgrade, "updateRevision": snapshot.update_revision}
                ),
            )
            self.events.normal(
                snapshot.scaleset,
                "BatchStarted",
                f"Upgrading {', '.join(names)} {_where(step.batch.upgrade_domain)} to {snapshot.update_revision}.",
            )
            outcome.requeue_after = 1.0
        elif isinstance(step, Complete):
            if upgrade.get("locked") or snapshot.current_revision != snapshot.update_revision:
                self._batch_completed(snapshot, upgrade)
                history = list(upgrade.get("history") or [])
                history.append(
                    {
                        "fromRevision": upgrade.get("fromRevision") or snapshot.current_revision,
                        "toRevision": snapshot.update_revision,
                        "startedAt": upgrade.get("startedAt"),
                        "finishedAt": timestamp(now),
                        "result": "Completed",
                    }
                )
                upgrade = {
                    "phase": "Completed",
                    "locked": False,
                    "rollbackAllowed": False,
                    "history": history[-HISTORY_KEPT:],
                    "fromRevision": upgrade.get("fromRevision"),
                    "toRevision": snapshot.update_revision,
                    "startedAt": upgrade.get("startedAt"),
                }
                self.events.normal(
                    snapshot.scaleset, "UpgradeCompleted", f"Every instance runs {snapshot.update_revision}."
                )
            snapshot.current_revision = snapshot.update_revision
        elif isinstance(step, Wait):
            phase = "Paused" if step.reason in ("Paused", "WaitingForWalk") else "RollingForward"
            if upgrade.get("locked"):
                upgrade["phase"] = phase
            upgrade["message"] = step.message
            if step.until is not None:
                outcome.requeue_after = max(0.05, min(RESYNC_SECONDS, (step.until - now).total_seconds()))
            if upgrade.get("reason") != step.reason:
                self.events.normal(snapshot.scaleset, step.reason, step.message)
            upgrade["reason"] = step.reason
        elif isinstance(step, Stop):
            upgrade["message"] = step.message
            if upgrade.get("reason") != step.reason:
                self.events.warning(snapshot.scaleset, step.reason, step.message)
            upgrade["reason"] = step.reason
        snapshot.scaleset.setdefault("status", {})["upgrade"] = upgrade

        # Whatever the planner said, the recorded batch must be carried out (the operator may have died
        # between recording it and acting on it, or the template may have changed under it).
        self._carry_out_batch(snapshot, instances, now, outcome)
        outcome.step = type(step).__name__
        return step

    def _batch_completed(self, snapshot: Snapshot, upgrade: dict[str, Any]) -> None:
        finished = upgrade.get("currentBatch")
        if finished:
            self.events.normal(
                snapshot.scaleset,
                "BatchCompleted",
                f"Batch {_where(finished.get('upgradeDomain'))} is healthy: "
                f"{', '.join(finished.get('instances') or [])}.",
            )

    def _carry_out_batch(
        self, snapshot: Snapshot, instances: list[InstanceState], now: datetime, outcome: Outcome
    ) -> None:
        batch = snapshot.upgrade.get("currentBatch")
        surges_wanted: set[int] = set()
        if batch and snapshot.upgrade.get("locked"):
            surge = snapshot.policy.rolling_upgrade.max_surge
            for ordinal in _batch_ordinals(batch):
                pod = snapshot.pods.get(ordinal)
                if pod is None or is_terminating(pod) or ordinal >= snapshot.spec.replicas:
                    continue
                revision = (pod["metadata"].get("labels") or {}).get(LABEL_REVISION)
                if revision == snapshot.update_revision:
                    if surge:
                        surges_wanted.add(ordinal)  # kept until the updated instance is healthy
                    continue
                if surge:
                    surges_wanted.add(ordinal)
                    if not self._surge_ready(snapshot, ordinal, now):
                        continue
                self._update_instance(snapshot, ordinal, pod, now, outcome)
        gate = HealthGate.of(snapshot.policy.health_check)
        healthy = {
            i.ordinal for i in instances if i.revision == snapshot.update_revision and gate.is_healthy(i, now)
        }
        for ordinal, pod in snapshot.surges.items():
            done = ordinal in healthy
            if (ordinal not in surges_wanted or done) and not is_terminating(pod):
                self.kube.delete(core_path("pods", snapshot.namespace, pod["metadata"]["name"]))

    def _surge_ready(self, snapshot: Snapshot, ordinal: int, now: datetime) -> bool:
        """maxSurge: the new instance first; True once it is up and the old one may go."""
        pod = snapshot.surges.get(ordinal)
        if pod is None:
            template = snapshot.spec.template
            body = manifests.instance_pod(
                snapshot.scaleset,
                snapshot.spec,
                template,
                snapshot.update_revision,
                ordinal,
                timestamp_precise(now),
                surge=True,
            )
            try:
                snapshot.surges[ordinal] = self.kube.create(core_path("pods", snapshot.namespace), body)
            except ApiError as error:
                if error.status != 409:
                    raise
            return False
        return HealthGate.of(snapshot.policy.health_check).is_healthy(
            instance_state(snapshot.name, ordinal, pod), now
        )

    def _check_template(self, snapshot: Snapshot, now: datetime) -> None:
        """Ask the API server (dry run) whether it accepts a pod of the update revision, before any
        instance is taken down for it: a template it refuses must cost nothing that runs."""
        if snapshot.template_checked:
            return
        probe = manifests.instance_pod(
            snapshot.scaleset,
            snapshot.spec,
            snapshot.spec.template,
            snapshot.update_revision,
            0,
            timestamp(now),
        )
        probe["metadata"]["name"] = f"{snapshot.name}-template-check"
        try:
            self.kube.request(
                "POST", core_path("pods", snapshot.namespace), body=probe, query={"dryRun": "All"}
            )
        except ApiError as error:
            if error.status in (400, 422):
                raise InvalidInput(
                    "TemplateRejected",
                    f"spec.template is refused by the API server, so no instance was touched: {error.message}",
                ) from None
            if error.status != 409:
                raise
        snapshot.template_checked = True

    def _update_instance(
        self, snapshot: Snapshot, ordinal: int, pod: dict[str, Any], now: datetime, outcome: Outcome
    ) -> None:
        self._check_template(snapshot, now)
        name = pod["metadata"]["name"]
        old_template = snapshot.template_of((pod["metadata"].get("labels") or {}).get(LABEL_REVISION))
        kind = UpdateKind.REIMAGE
        if old_template is not None and snapshot.policy.update_method == UpdateMethod.IN_PLACE_IF_POSSIBLE:
            kind = classify_update(old_template, snapshot.spec.template)
        path = core_path("pods", snapshot.namespace, name)
        try:
            if kind == UpdateKind.REIMAGE:
                self.kube.delete(path, preconditions_uid=pod["metadata"].get("uid"))
                outcome.notes.append(f"reimaging {name}")
            else:
                patch = manifests.image_patch(
                    snapshot.spec.template, snapshot.update_revision, timestamp_precise(now)
                )
                snapshot.pods[ordinal] = self.kube.patch(path, patch, STRATEGIC_MERGE_PATCH)
                outcome.notes.append(f"updated {name} in place")
        except ApiError as error:
            if error.status == 404:
                return
            if error.status == 422:
                raise InvalidInput(
                    "TemplateRejected", f"Updating {name} was refused: {error.message}"
                ) from None
            raise

    # ------------------------------------------------------------------ revisions and status

    def _prune_revisions(self, snapshot: Snapshot) -> None:
        keep = {snapshot.current_revision, snapshot.update_revision}
        keep.update(
            (p["metadata"].get("labels") or {}).get(LABEL_REVISION, "") for p in snapshot.pods.values()
        )
        old = sorted(
            (r for h, r in snapshot.revisions.items() if h not in keep),
            key=lambda r: int(r.get("revision") or 0),
        )
        excess = len(old) - snapshot.spec.revision_history_limit
        for stored in old[: max(0, excess)]:
            self.kube.delete(
                group_path(
                    "apps", "v1", "controllerrevisions", snapshot.namespace, stored["metadata"]["name"]
                )
            )

    def _patch_status(self, snapshot: Snapshot, status: dict[str, Any]) -> None:
        try:
            updated = self.kube.patch(
                fleet_path("scalesets", snapshot.namespace, snapshot.name, "status"), {"status": status}
            )
        except ApiError as error:
            if error.status == 404:
                return
            raise
        snapshot.scaleset["status"] = updated.get("status") or {}
        snapshot.stored_status = copy.deepcopy(snapshot.scaleset["status"])

    def _write_status(
        self, snapshot: Snapshot, instances: list[InstanceState], step: Any, now: datetime
    ) -> None:
        spec = snapshot.spec
        gate = HealthGate.of(snapshot.policy.health_check)
        healthy = {i.name for i in instances if gate.is_healthy(i, now)}
        ready = sum(1 for i in instances if i.ready)
        updated = sum(1 for i in instances if i.revision == snapshot.update_revision)
        existing = sum(1 for i in instances if i.exists)
        upgrade = (snapshot.scaleset.get("status") or {}).get("upgrade") or {}
        generation = int(snapshot.scaleset["metadata"].get("generation") or 1)
        converged = (
            isinstance(step, Complete)
            and existing == spec.replicas
            and len(healthy) == spec.replicas
            and not any(p for o, p in snapshot.pods.items() if o >= spec.replicas)
        )
        stalled = isinstance(step, Stop)
        settled_unhealthy = isinstance(step, Complete) and not converged and existing == spec.replicas
        if settled_unhealthy:
            # The rollout is done; instances failing past their start timeout are a health matter.
            message = f"{len(healthy)} of {spec.replicas} instances healthy on {snapshot.update_revision}."
            ready_condition = ConditionUpdate("Ready", False, "InstancesUnhealthy", message)
            progressing = ConditionUpdate("Progressing", False, "UpToDate", message)
        elif converged:
            ready_condition = ConditionUpdate(
                "Ready",
                True,
                "AllInstancesHealthy",
                f"{spec.replicas} of {spec.replicas} instances healthy on {snapshot.update_revision}.",
            )
            progressing = ConditionUpdate("Progressing", False, "UpToDate", "Nothing to do.")
        else:
            message = (
                getattr(step, "message", "")
                or f"{len(healthy)} of {spec.replicas} instances healthy, {updated} updated."
            )
            ready_condition = ConditionUpdate(
                "Ready", False, getattr(step, "reason", "Reconciling") or "Reconciling", message
            )
            progressing = ConditionUpdate(
                "Progressing", not stalled, "RollingUpgrade" if upgrade.get("locked") else "Scaling", message
            )
        conditions = [
            ready_condition,
            progressing,
            ConditionUpdate(
                "Stalled", stalled, step.reason if stalled else "NotStalled", step.message if stalled else ""
            ),
        ]
        if spec.replicas == 1 and not snapshot.policy.rolling_upgrade.max_surge:
            conditions.append(
                ConditionUpdate(
                    "DowntimeOnUpgrade",
                    True,
                    "SingleInstance",
                    "A ScaleSet with one instance cannot be upgraded without downtime; use two or more replicas.",
                )
            )
        previous = (snapshot.scaleset.get("status") or {}).get("conditions") or []
        status = {
            "observedGeneration": generation,
            "replicas": existing,
            "readyReplicas": ready,
            "updatedReplicas": updated,
            "labelSelector": label_selector(snapshot.name),
            "currentRevision": snapshot.current_revision,
            "updateRevision": snapshot.update_revision,
            "conditions": merge_conditions(previous, conditions, generation, timestamp(now)),
            "upgrade": {**upgrade, "phase": upgrade.get("phase") or "Idle"},
            "upgradeDomains": upgrade_domain_summaries(
                instances, spec.upgrade_domain_count, snapshot.update_revision, healthy
            ),
        }
        patch = merge_patch(snapshot.stored_status, status)
        if patch:
            self._patch_status(snapshot, patch)

    def _report_invalid(self, scaleset: dict[str, Any], problem: InvalidInput, now: datetime) -> None:
        status = scaleset.get("status") or {}
        generation = int(scaleset["metadata"].get("generation") or 1)
        conditions = merge_conditions(
            status.get("conditions") or [],
            [
                ConditionUpdate("Ready", False, problem.reason, problem.message),
                ConditionUpdate(
                    "Progressing", False, problem.reason, "Running instances are kept as they are."
                ),
                ConditionUpdate("Stalled", True, problem.reason, problem.message),
            ],
            generation,
            timestamp(now),
        )
        if conditions != status.get("conditions"):
            self.events.warning(scaleset, problem.reason, problem.message)
            path = fleet_path(
                "scalesets", scaleset["metadata"]["namespace"], scaleset["metadata"]["name"], "status"
            )
            try:
                self.kube.patch(
                    path, {"status": {"conditions": conditions, "observedGeneration": generation}}
                )
            except ApiError as error:
                if error.status != 404:
                    raise


def describe_validation_error(error: ValidationError, prefix: str) -> str:
    """The first problem of a spec as one sentence naming the field from the top of the resource."""
    first = error.errors()[0]
    sentence = describe_error({**first, "loc": (prefix, *first["loc"])})
    return sentence + ("" if sentence.endswith(".") else ".")


def _owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


def _batch_ordinals(batch: dict[str, Any]) -> list[int]:
    ordinals = []
    for name in batch.get("instances") or []:
        tail = str(name).rsplit("-", 1)[-1]
        if tail.isdigit():
            ordinals.append(int(tail))
    return ordinals


def _where(upgrade_domain: int | None) -> str:
    return "across all upgrade domains" if upgrade_domain is None else f"in upgrade domain {upgrade_domain}"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new` for the keys `new` names, nulling
    the keys of nested objects that `new` dropped (a plain merge would keep stale ones)."""
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            nested = merge_patch(before, value)
            for gone in before.keys() - value.keys():
                nested[gone] = None
            if nested:
                patch[key] = nested
        elif value != before:
            patch[key] = value
    return patch
