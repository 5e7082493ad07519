"""Every write to instances and their disks: create, remove, update in place, restart, surge, repair.

The reconcile pass decides what should happen (from the planner's step and the batch recorded in
status); this is the one place that touches pods and PVCs to make it so, as StatefulSet keeps its
pod writes in stateful_pod_control.go. Every pod the operator takes away goes through one verb,
`remove_instance`: an eviction, so that PodDisruptionBudgets hold, fenced by the pod's uid and
resourceVersion as the pass read it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime
from typing import Any

from scaleset_operator.api.durations import parse_duration
from scaleset_operator.api.models import UpgradeMode
from scaleset_operator.control import manifests
from scaleset_operator.control.context import (
    Conflict,
    EvictionRefused,
    InvalidInput,
    Outcome,
    Snapshot,
    batch_ordinals,
    owned_by,
    timestamp,
    timestamp_precise,
)
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.kube import STRATEGIC_MERGE_PATCH, ApiError, Kube, core_path
from scaleset_operator.control.reader import Reader
from scaleset_operator.control.scheduled_events import ScheduledEventsControl, event_id, events_of
from scaleset_operator.control.snapshot import instance_state, is_terminating, pod_images
from scaleset_operator.identity import (
    ANNOTATION_CREATED_BY,
    ANNOTATION_UPDATED_AT,
    LABEL_ORDINAL,
    LABEL_REVISION,
    LABEL_SCALESET,
    LABEL_SLOT,
    LABEL_UPGRADE_DOMAIN,
    instance_name,
)
from scaleset_operator.planning.claims import (
    Claim,
    Fit,
    claims_to_release,
    fit,
    foreign_claim_message,
    owner_change,
)
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instance_actions import (
    BatchPlan,
    Member,
    Reimage,
    RevertDrift,
    Surge,
    UpdateInPlace,
    drift_of,
    leaving_ordinals,
    missing_ordinals,
    plan_batch,
    revision_for_new_instance,
)
from scaleset_operator.planning.instances import HealthGate, InstanceState, parse_time
from scaleset_operator.planning.repairs import is_finished
from scaleset_operator.planning.restart import restart_revision, restarted
from scaleset_operator.planning.scheduled_events import BatchTiming, EventType
from scaleset_operator.planning.staged import is_staged

# How soon a pass looks again after a PodDisruptionBudget refused an eviction.
EVICTION_RETRY_SECONDS = 2.0
_BUDGET_NAMED = re.compile(r"^The disruption budget (\S+) ")


def disrupts_nothing(pod: dict[str, Any]) -> bool:
    """A pod whose removal takes nothing away: finished (Failed or Succeeded) or never scheduled.

    The disruption controller counts neither as healthy, and the Eviction API deletes both without
    consulting a PodDisruptionBudget; such a pod is deleted outright. Everything else is evicted.
    """
    return is_finished((pod.get("status") or {}).get("phase")) or not (pod.get("spec") or {}).get("nodeName")


def eviction_refusal(instance: str, error: ApiError) -> EvictionRefused | None:
    """The refusal of a PodDisruptionBudget in an eviction's answer, or None for any other error.

    The API server answers 429 with a cause of type DisruptionBudget ("The disruption budget web needs 4
    healthy pods and has 3 currently"), and 500 when more than one budget selects the pod.
    """
    if error.status == 429:
        for kind, message in error.causes:
            if kind == "DisruptionBudget":
                named = _BUDGET_NAMED.match(message)
                return EvictionRefused(instance, named.group(1) if named else None, message)
    if error.status == 500 and "more than one PodDisruptionBudget" in error.message:
        return EvictionRefused(instance, None, error.message)
    return None


class InstanceControl:
    """Creates, updates, restarts and deletes the instances of a ScaleSet, and their claims."""

    def __init__(self, kube: Kube, events: EventRecorder) -> None:
        self.kube = kube
        self.reader = Reader(kube)
        self.events = events
        self.notices = ScheduledEventsControl(kube, events)

    # ------------------------------------------------------------------ removal

    def remove_instance(self, snapshot: Snapshot, pod: dict[str, Any], outcome: Outcome, doing: str) -> bool:
        """Take one pod of the ScaleSet away (an instance, a surge or a staged one); every removal the
        operator plans (reimage, restart, host move, scale-in, repair, surge clean-up) comes here.

        It is an eviction, so that a PodDisruptionBudget over the instances (the user's, or the one
        spec.disruptionBudget keeps) is honoured; a finished or unscheduled pod is deleted outright (see
        `disrupts_nothing`). Both carry the uid and resourceVersion of the pod as this pass read it: a pod
        changed since, or replaced by another of its name, is left alone and the pass ends (Conflict) to
        read again. A refused eviction deletes nothing: it is recorded in `outcome.refused`, the pass
        looks again soon, and False is returned. True: the pod is gone or going.
        """
        metadata = pod["metadata"]
        name = metadata["name"]
        if is_terminating(pod):
            return True
        uid, version = metadata.get("uid"), metadata.get("resourceVersion")
        try:
            if disrupts_nothing(pod):
                self.kube.delete_exactly(core_path("pods", snapshot.namespace, name), uid, version)
            else:
                self.kube.evict(snapshot.namespace, name, uid, version)
        except ApiError as error:
            if error.status == 409:
                raise Conflict(f"pod {name} changed since this pass read it: {error.message}") from None
            refusal = eviction_refusal(name, error)
            if refusal is None:
                raise
            outcome.refused.append(refusal)
            if outcome.requeue_after is not None:
                outcome.requeue_after = min(outcome.requeue_after, EVICTION_RETRY_SECONDS)
            return False
        outcome.notes.append(f"{doing} {name}")
        return True

    def replace_finished(self, snapshot: Snapshot, outcome: Outcome) -> dict[int, tuple[str | None, str]]:
        """An instance whose pod has finished (Failed: evicted, its node shut down, OOM-killed under
        restartPolicy Never; or Succeeded) never runs again: its pod is deleted, and the pass creates it
        again with the same name, ordinal, upgrade domain and claims, on the revision it should run, as
        StatefulSet replaces a failed pod.

        Returns, by ordinal, the revision each deleted pod ran and when it was put on it (its
        `updated-at`): created again on that revision, the instance keeps that time, so that its start
        timeout runs on rather than from zero, and the record of its update stays."""
        replaced: dict[int, tuple[str | None, str]] = {}
        for ordinal, pod in sorted(snapshot.pods.items()):
            status = pod.get("status") or {}
            if (
                ordinal >= snapshot.spec.replicas
                or is_terminating(pod)
                or not is_finished(status.get("phase"))
            ):
                continue
            name = pod["metadata"]["name"]
            if not self.remove_instance(snapshot, pod, outcome, "replacing finished"):
                continue
            del snapshot.pods[ordinal]
            metadata = pod["metadata"]
            updated_at = (metadata.get("annotations") or {}).get(ANNOTATION_UPDATED_AT)
            if updated_at or metadata.get("creationTimestamp"):
                revision = (metadata.get("labels") or {}).get(LABEL_REVISION)
                replaced[ordinal] = (revision, updated_at or metadata["creationTimestamp"])
            why = ": ".join(str(part) for part in (status.get("reason"), status.get("message")) if part)
            self.events.warning(
                snapshot.scaleset,
                "InstanceFailed",
                f"{name} is {status.get('phase')}{f' ({why})' if why else ''}; it is created again with its "
                "name, upgrade domain and data disks.",
            )
        return replaced

    # ------------------------------------------------------------------ scheduled events

    def notice(
        self,
        snapshot: Snapshot,
        pods_by_type: dict[EventType, list[dict[str, Any]]],
        work: str,
        now: datetime,
    ) -> BatchTiming | None:
        """Tell each instance of its coming disruption when the ScaleSet asks for scheduled events.

        None when it does not (the work goes ahead); otherwise the work may start once the timing is
        ready (every instance approved, or its NotBefore passed), and each event is then Started.
        """
        wanted = {kind: pods for kind, pods in pods_by_type.items() if pods}
        if not snapshot.spec.scheduled_events.enabled or not wanted:
            return None
        timeout = parse_duration(snapshot.spec.scheduled_events.not_before_timeout)
        timings = [self.notices.prepare(pods, kind, work, now, timeout) for kind, pods in wanted.items()]
        waiting = tuple(sorted({name for timing in timings for name in timing.waiting_for}))
        deadlines = [timing.starts_by for timing in timings if not timing.ready]
        starts_by = (
            None if any(d is None for d in deadlines) else max((d for d in deadlines if d), default=None)
        )
        timing = BatchTiming(not waiting, waiting, starts_by)
        if timing.ready:
            for kind, pods in wanted.items():
                self.notices.start(pods, kind, work, now)
        return timing

    def _finish_notices(
        self, snapshot: Snapshot, done: list[dict[str, Any]], kind: EventType, work: str
    ) -> None:
        """Remove the events of instances that are back after work done in place (a deleted pod took its own)."""
        if not snapshot.spec.scheduled_events.enabled:
            return
        for pod in done:
            if events_of(pod).find(event_id(pod, kind, work)) is not None:
                self.notices.finish(pod, kind, work)

    def hold(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        """While a change is refused, keep what runs: bring back instances that went missing (a reimage
        in flight, a deleted pod) on the last accepted revision, and change nothing else."""
        # In Staged mode toRevision is the staged set's revision: production instances stay on theirs.
        accepted = None if is_staged(snapshot.policy) else snapshot.upgrade.get("toRevision")
        if accepted in snapshot.revisions:
            snapshot.update_revision = accepted
        elif snapshot.current_revision in snapshot.revisions:
            snapshot.update_revision = snapshot.current_revision
        else:
            return
        kept = min(snapshot.spec.replicas, int((snapshot.scaleset.get("status") or {}).get("replicas") or 0))
        replaced = self.replace_finished(snapshot, outcome)
        self._create_missing(snapshot, now, outcome, kept, replaced)

    def _revision_for_new_instance(self, snapshot: Snapshot, ordinal: int) -> str:
        repair = (snapshot.stored_status.get("repairs") or {}).get("current") or {}
        restarted = (
            repair["revision"]
            if repair.get("action") == "Restart"
            and repair.get("instance") == instance_name(snapshot.instance_base, ordinal)
            and repair.get("revision") in snapshot.revisions
            else None
        )
        batch = snapshot.upgrade.get("currentBatch") or {}
        batch_domain = batch.get("upgradeDomain")
        return revision_for_new_instance(
            ordinal,
            current_revision=snapshot.current_revision,
            update_revision=snapshot.update_revision,
            batch=frozenset(batch_ordinals(batch)),
            batch_domain=batch_domain if isinstance(batch_domain, int) else None,
            domain_count=snapshot.spec.upgrade_domain_count,
            automatic_locked=snapshot.policy.mode == UpgradeMode.AUTOMATIC
            and bool(snapshot.upgrade.get("locked")),
            restarted_on=restarted,
        )

    def scale(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        replicas = snapshot.spec.replicas
        replaced = self.replace_finished(snapshot, outcome)
        self.sync_claim_owners(snapshot)
        self._create_missing(snapshot, now, outcome, replicas, replaced)
        going = {o: is_terminating(pod) for o, pod in snapshot.pods.items()}
        leaving = [snapshot.pods[o] for o in leaving_ordinals(replicas, going)]
        timing = self.notice(snapshot, {EventType.TERMINATE: leaving}, "scale-in", now)
        if timing is not None and not timing.ready:
            outcome.wait_until(timing.starts_by, now)
            leaving = []
        for pod in leaving:
            self.remove_instance(snapshot, pod, outcome, "removed")
        for ordinal, pod in list(snapshot.surges.items()):
            if ordinal >= replicas and not is_terminating(pod):
                self.remove_instance(snapshot, pod, outcome, "removed surge")
        self._release_claims(snapshot)

    def _create_missing(
        self,
        snapshot: Snapshot,
        now: datetime,
        outcome: Outcome,
        replicas: int,
        replaced: dict[int, tuple[str | None, str]] | None = None,
    ) -> None:
        """Create the instances below `replicas` that have no pod; one that `replace_finished` just
        deleted and that comes back on the revision it ran keeps the time it was put on it."""
        for ordinal in missing_ordinals(replicas, snapshot.pods):
            revision = self._revision_for_new_instance(snapshot, ordinal)
            ran, updated_at = (replaced or {}).get(ordinal, (None, None))
            created = self._create_instance(
                snapshot,
                ordinal,
                revision,
                snapshot.slot,
                now,
                outcome,
                updated_at if ran == revision else None,
            )
            if created is not None:
                snapshot.pods[ordinal] = created

    def _create_instance(
        self,
        snapshot: Snapshot,
        ordinal: int,
        revision: str,
        slot: str | None,
        now: datetime,
        outcome: Outcome,
        updated_at: str | None = None,
    ) -> dict[str, Any] | None:
        """Create one instance of `slot` on `revision`, its claims first; None while a terminating
        predecessor still holds the name or one of its claims is being deleted. Its `updated-at` is
        `updated_at` when given (a finished pod replaced on its own revision), else now."""
        if not self._ensure_claims(snapshot, ordinal, slot):
            outcome.wait_until(None, now)
            return None
        template = snapshot.template_of(revision) or snapshot.spec.template
        pod = manifests.instance_pod(
            snapshot.scaleset,
            snapshot.spec,
            template,
            revision,
            ordinal,
            updated_at or timestamp_precise(now),
            slot=slot,
        )
        try:
            created = self.kube.create(core_path("pods", snapshot.namespace), pod)
        except ApiError as error:
            if error.status == 409:
                self._refuse_foreign_holder(snapshot, pod["metadata"]["name"])
                return None
            if error.status in (400, 422):
                raise InvalidInput(
                    "TemplateRejected", f"spec.template was refused: {error.message}"
                ) from None
            raise
        outcome.notes.append(f"created {pod['metadata']['name']}")
        return created

    # ------------------------------------------------------------------ Staged mode's second set

    def create_standby(
        self,
        snapshot: Snapshot,
        slot: str,
        revision: str,
        ordinals: Iterable[int],
        now: datetime,
        outcome: Outcome,
    ) -> None:
        """Create instances of the staged set (the slot that does not serve) on `revision`."""
        self.check_template(snapshot, now)
        for ordinal in ordinals:
            created = self._create_instance(snapshot, ordinal, revision, slot, now, outcome)
            if created is not None:
                snapshot.standby[ordinal] = created

    def remove_standby(self, snapshot: Snapshot, ordinals: Iterable[int], outcome: Outcome) -> None:
        """Delete instances of the slot that does not serve: a staged set given up, or the kept set."""
        for ordinal in ordinals:
            pod = snapshot.standby.get(ordinal)
            if pod is None or is_terminating(pod):
                continue
            self.remove_instance(snapshot, pod, outcome, "removed")

    def release_standby_claims(self, snapshot: Snapshot, slot: str) -> None:
        """whenScaled: Delete removes the claims of a slot whose set is gone, as of instances scaled away;
        with Retain (the default) they stay, and the slot's next set mounts them again."""
        self._release(snapshot, slot, needed=(), live=snapshot.standby.keys())

    def label_slot(self, snapshot: Snapshot) -> None:
        """Put the production slot's label on its instances (those made before the ScaleSet was first
        staged have none), so that a Service may select the slot before a second set exists."""
        if snapshot.slot is None:
            return
        for ordinal, pod in list(snapshot.pods.items()):
            if (pod["metadata"].get("labels") or {}).get(LABEL_SLOT) == snapshot.slot or is_terminating(pod):
                continue
            path = core_path("pods", snapshot.namespace, pod["metadata"]["name"])
            try:
                snapshot.pods[ordinal] = self.kube.patch(
                    path, {"metadata": {"labels": {LABEL_SLOT: snapshot.slot}}}, STRATEGIC_MERGE_PATCH
                )
            except ApiError as error:
                if error.status != 404:
                    raise

    # ------------------------------------------------------------------ data disks

    def _ensure_claims(self, snapshot: Snapshot, ordinal: int, slot: str | None) -> bool:
        """Create the claims an instance mounts; False while one of them is being deleted.

        A claim of the instance's name is mounted only when its labels name the instance (one kept from
        an earlier ScaleSet of the same name included); any other object holding the name is reported.
        """
        ready = True
        bodies = manifests.instance_claims(snapshot.scaleset, snapshot.spec, ordinal, slot)
        for index, body in enumerate(bodies):
            name = body["metadata"]["name"]
            existing = snapshot.claims.get(name)
            if existing is None:
                existing = self._create_claim(snapshot, body, index)
            claim = Claim.of(existing) if existing is not None else None
            verdict = fit(claim, snapshot.name, ordinal, slot)
            if claim is None or verdict == Fit.WAIT:
                ready = False  # being deleted, or gone again since the create was refused: next pass
            elif verdict == Fit.FOREIGN:
                raise InvalidInput("NameConflict", foreign_claim_message(claim, snapshot.name, ordinal, slot))
            elif not claim.owned_by(snapshot.uid):
                self.events.normal(
                    snapshot.scaleset,
                    "ClaimReused",
                    f"PersistentVolumeClaim {name} was not created by this ScaleSet (it was kept from an "
                    "earlier one of this name, or handed over by its labels): the instance mounts it, and "
                    "this ScaleSet never deletes it.",
                )
        return ready

    def _create_claim(self, snapshot: Snapshot, body: dict[str, Any], index: int) -> dict[str, Any] | None:
        """Create one claim; on a name already taken, the object that holds it (None if gone since)."""
        name = body["metadata"]["name"]
        path = core_path("persistentvolumeclaims", snapshot.namespace)
        try:
            created = self.kube.create(path, body)
        except ApiError as error:
            if error.status == 409:
                holder = self.reader.claim(snapshot.namespace, name)
                if holder is not None:
                    snapshot.claims[name] = holder
                return holder
            if error.status in (400, 422):
                template = snapshot.spec.volume_claim_templates[index]["metadata"]["name"]
                raise InvalidInput(
                    "ClaimRejected",
                    f"spec.volumeClaimTemplates[{index}] ({template}) was refused for "
                    f"PersistentVolumeClaim {name}: {error.message}",
                ) from None
            raise
        snapshot.claims[name] = created
        return created

    def _refuse_foreign_holder(self, snapshot: Snapshot, name: str) -> None:
        """A pod create refused because the name is taken: fine when this ScaleSet's own pod holds it (a
        predecessor still terminating), reported when anything else does, which is never adopted."""
        holder = self.reader.pod(snapshot.namespace, name)
        if holder is not None and not owned_by(holder, snapshot.uid):
            raise InvalidInput(
                "NameConflict",
                f"Pod {name} exists and is not owned by this ScaleSet, so this ScaleSet does not create "
                "it until that pod is removed.",
            )

    def sync_claim_owners(self, snapshot: Snapshot) -> None:
        """Give the claims this ScaleSet created the owner references whenDeleted asks for, now: a policy
        changed to Retain takes the ScaleSet's reference off every claim, one changed to Delete puts it on
        (KEP-1847: the policy applies to existing claims)."""
        ref = manifests.scaleset_ref(snapshot.scaleset)
        when_deleted = snapshot.spec.persistent_volume_claim_retention_policy.when_deleted
        for name, obj in list(snapshot.claims.items()):
            claim = Claim.of(obj)
            change = owner_change(claim, ref, when_deleted)
            if change is None:
                continue
            metadata: dict[str, Any] = {
                "resourceVersion": claim.resource_version,
                "ownerReferences": [dict(r) for r in change.owner_references] or None,
            }
            if change.mark_created_by:
                metadata["annotations"] = {ANNOTATION_CREATED_BY: snapshot.uid}
            path = core_path("persistentvolumeclaims", snapshot.namespace, name)
            try:
                snapshot.claims[name] = self.kube.patch(path, {"metadata": metadata})
            except ApiError as error:
                if error.status == 404:
                    snapshot.claims.pop(name, None)
                    continue
                if error.status == 409:
                    raise Conflict(f"PersistentVolumeClaim {name} changed since it was read") from None
                raise

    def _release_claims(self, snapshot: Snapshot) -> None:
        """whenScaled: Delete removes the claims of instances scaled away, once their pods are gone."""
        self._release(
            snapshot,
            snapshot.slot or "blue",
            needed=range(snapshot.spec.replicas),
            live=snapshot.pods.keys(),
        )

    def _release(self, snapshot: Snapshot, slot: str, needed: Collection[int], live: Collection[int]) -> None:
        when_scaled = snapshot.spec.persistent_volume_claim_retention_policy.when_scaled
        claims = [Claim.of(obj) for obj in snapshot.claims.values()]
        ref = manifests.scaleset_ref(snapshot.scaleset)
        for claim in claims_to_release(claims, ref, when_scaled, slot, needed, live):
            self._delete_claim(snapshot, claim)

    def _delete_claim(self, snapshot: Snapshot, claim: Claim) -> None:
        """Delete a claim exactly as the pass read it: uid and resourceVersion preconditions, so a claim
        replaced or changed since (relabelled, handed to another owner) is not deleted; that refusal
        ends the pass, and the next one decides again from a fresh read."""
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": claim.uid, "resourceVersion": claim.resource_version},
        }
        path = core_path("persistentvolumeclaims", snapshot.namespace, claim.name)
        try:
            self.kube.request("DELETE", path, body=options)
        except ApiError as error:
            if error.status == 409:
                raise Conflict(f"PersistentVolumeClaim {claim.name} changed since it was read") from None
            if error.status != 404:
                raise
        snapshot.claims.pop(claim.name, None)

    def repair_drift(self, snapshot: Snapshot, now: datetime, outcome: Outcome) -> None:
        """Put back what a foreign edit changed on a managed pod: identity labels and container images."""
        count = snapshot.spec.upgrade_domain_count
        locked = bool(snapshot.upgrade.get("locked"))
        for ordinal, pod in snapshot.pods.items():
            if is_terminating(pod) or ordinal >= snapshot.spec.replicas:
                continue
            labels = pod["metadata"].get("labels") or {}
            drift = drift_of(
                ordinal,
                labels,
                pod_images(pod),
                snapshot.template_of(labels.get(LABEL_REVISION)),
                identity={LABEL_SCALESET: snapshot.name, LABEL_ORDINAL: str(ordinal)},
                domain_label=None
                if locked
                else (LABEL_UPGRADE_DOMAIN, str(upgrade_domain_of(ordinal, count))),
            )
            if drift is not None:
                self._revert_drift(snapshot, pod, drift, outcome)

    def _revert_drift(
        self, snapshot: Snapshot, pod: dict[str, Any], drift: RevertDrift, outcome: Outcome
    ) -> None:
        patch: dict[str, Any] = {}
        if drift.labels:
            patch["metadata"] = {"labels": dict(drift.labels)}
        if drift.images:
            patch["spec"] = {"containers": [{"name": n, "image": image} for n, image in drift.images]}
        name = pod["metadata"]["name"]
        try:
            snapshot.pods[drift.ordinal] = self.kube.patch(
                core_path("pods", snapshot.namespace, name), patch, STRATEGIC_MERGE_PATCH
            )
        except ApiError as error:
            if error.status == 404:
                return
            raise
        self.events.warning(
            snapshot.scaleset, "DriftReverted", f"Reverted a foreign edit to {name} ({drift.what})."
        )
        outcome.notes.append(f"reverted drift on {name}")

    def carry_out_batch(
        self, snapshot: Snapshot, instances: list[InstanceState], now: datetime, outcome: Outcome
    ) -> BatchTiming | None:
        """Move the members of the recorded batch that are not there yet; returns the timing of their
        scheduled events when the batch waits for them."""
        batch = snapshot.upgrade.get("currentBatch")
        restart = snapshot.upgrade.get("restart")
        surges_wanted: set[int] = set()
        gate = HealthGate.of(snapshot.policy.health_check)
        healthy = {
            i.ordinal for i in instances if i.revision == snapshot.update_revision and gate.is_healthy(i, now)
        }
        timing = None
        if batch and snapshot.upgrade.get("locked") and restart:
            requested_at = parse_time(restart.get("requestedAt")) or now
            timing = self._restart_batch(snapshot, batch, requested_at, now, outcome)
        elif batch and snapshot.upgrade.get("locked"):
            plan = self._plan_batch(snapshot, batch, gate, now)
            surges_wanted = set(plan.surges_wanted)
            for action in plan.actions:
                if isinstance(action, Surge):
                    self._create_surge(snapshot, action, now)
            due = [a for a in plan.actions if isinstance(a, UpdateInPlace | Reimage)]
            timing = self.notice(
                snapshot,
                {
                    EventType.REBOOT: [
                        snapshot.pods[a.ordinal] for a in due if isinstance(a, UpdateInPlace) and a.reboots
                    ],
                    EventType.REDEPLOY: [snapshot.pods[a.ordinal] for a in due if isinstance(a, Reimage)],
                },
                snapshot.update_revision,
                now,
            )
            if timing is None or timing.ready:
                for action in due:
                    self._update_instance(snapshot, action, now, outcome)
        # Instances back on their new revision after an update in place: their events are done (the
        # batch may have moved on already, so every instance is looked at).
        back = [pod for ordinal, pod in snapshot.pods.items() if ordinal in healthy and events_of(pod).events]
        self._finish_notices(snapshot, back, EventType.REBOOT, snapshot.update_revision)
        for ordinal, pod in snapshot.surges.items():
            done = ordinal in healthy
            if (ordinal not in surges_wanted or done) and not is_terminating(pod):
                self.remove_instance(snapshot, pod, outcome, "removed surge")
        return timing

    def _restart_batch(
        self,
        snapshot: Snapshot,
        batch: dict[str, Any],
        requested_at: datetime,
        now: datetime,
        outcome: Outcome,
    ) -> BatchTiming | None:
        """Recreate each member not restarted since the restart was asked for; the next pass creates it
        again (same name, same data disks). Kubernetes has no call that restarts a container in place."""
        due = []
        for ordinal in batch_ordinals(batch):
            pod = snapshot.pods.get(ordinal)
            if pod is None or is_terminating(pod) or ordinal >= snapshot.spec.replicas:
                continue
            if not restarted(instance_state(snapshot.instance_base, ordinal, pod), requested_at):
                due.append(pod)
        timing = self.notice(snapshot, {EventType.REBOOT: due}, restart_revision(requested_at), now)
        if timing is not None and not timing.ready:
            return timing
        for pod in due:
            self.remove_instance(snapshot, pod, outcome, "restarting")
        return timing

    def _plan_batch(
        self, snapshot: Snapshot, batch: dict[str, Any], gate: HealthGate, now: datetime
    ) -> BatchPlan:
        members = [
            Member(
                ordinal,
                (pod["metadata"].get("labels") or {}).get(LABEL_REVISION),
                is_terminating(pod),
                snapshot.template_of((pod["metadata"].get("labels") or {}).get(LABEL_REVISION)),
            )
            for ordinal in batch_ordinals(batch)
            if (pod := snapshot.pods.get(ordinal)) is not None
        ]
        return plan_batch(
            members,
            replicas=snapshot.spec.replicas,
            update_revision=snapshot.update_revision,
            target_template=snapshot.target_template,
            method=snapshot.policy.update_method,
            os_container=snapshot.spec.os_container_name,
            max_surge=snapshot.policy.rolling_upgrade.max_surge,
            surges={o: instance_state(snapshot.name, o, pod) for o, pod in snapshot.surges.items()},
            gate=gate,
            now=now,
        )

    def _create_surge(self, snapshot: Snapshot, action: Surge, now: datetime) -> None:
        """maxSurge: the new instance first, on the revision the batch moves to."""
        body = manifests.instance_pod(
            snapshot.scaleset,
            snapshot.spec,
            snapshot.target_template,
            action.revision,
            action.ordinal,
            timestamp_precise(now),
            surge=True,
            slot=snapshot.slot,
        )
        try:
            snapshot.surges[action.ordinal] = self.kube.create(core_path("pods", snapshot.namespace), body)
        except ApiError as error:
            if error.status != 409:
                raise
            self._refuse_foreign_holder(snapshot, body["metadata"]["name"])

    def check_template(self, snapshot: Snapshot, now: datetime) -> None:
        """Ask the API server (dry run) whether it accepts a pod of the update revision, before any
        instance is taken down for it: a template it refuses must cost nothing that runs."""
        if snapshot.template_checked:
            return
        probe = manifests.instance_pod(
            snapshot.scaleset,
            snapshot.spec,
            snapshot.target_template,
            snapshot.update_revision,
            0,
            timestamp(now),
        )
        # A generated name: a pod that holds a fixed one (a 409) would let the template go unchecked.
        del probe["metadata"]["name"]
        probe["metadata"]["generateName"] = f"{snapshot.name}-template-check-"
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
            raise
        snapshot.template_checked = True

    def _update_instance(
        self, snapshot: Snapshot, action: UpdateInPlace | Reimage, now: datetime, outcome: Outcome
    ) -> None:
        self.check_template(snapshot, now)
        pod = snapshot.pods[action.ordinal]
        name = pod["metadata"]["name"]
        path = core_path("pods", snapshot.namespace, name)
        if isinstance(action, Reimage):
            self.remove_instance(snapshot, pod, outcome, "reimaging")
            return
        patch = manifests.image_patch(
            snapshot.target_template, snapshot.update_revision, timestamp_precise(now)
        )
        try:
            snapshot.pods[action.ordinal] = self.kube.patch(path, patch, STRATEGIC_MERGE_PATCH)
            outcome.notes.append(f"updated {name} in place")
        except ApiError as error:
            if error.status == 404:
                return
            if error.status == 422:
                raise InvalidInput(
                    "TemplateRejected", f"Updating {name} was refused: {error.message}"
                ) from None
            raise
