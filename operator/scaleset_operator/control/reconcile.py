"""One reconcile pass of a ScaleSet: read a snapshot from the API, ask the planner, act, write status."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from scaleset_operator.api.loading import validate_scaleset_update
from scaleset_operator.control import manifests
from scaleset_operator.control.actions import ImperativeActions, lock_of, rolled_back_message
from scaleset_operator.control.automatic import AutomaticUpdates, stored_overlay
from scaleset_operator.control.context import (
    RESYNC_SECONDS,
    Conflict,
    EvictionRefused,
    InvalidInput,
    Outcome,
    Snapshot,
    batch_ordinals,
    merge_patch,
    owned_by,
    utcnow,
)
from scaleset_operator.control.disruption_budget import DisruptionBudgetControl
from scaleset_operator.control.events import EventRecorder
from scaleset_operator.control.instance_control import InstanceControl
from scaleset_operator.control.kube import (
    ApiError,
    Kube,
    group_path,
)
from scaleset_operator.control.maintenance import MaintenanceActor
from scaleset_operator.control.reader import Reader
from scaleset_operator.control.refusals import refusal_of
from scaleset_operator.control.repairs import RepairControl
from scaleset_operator.control.snapshot import instance_state
from scaleset_operator.control.staged import StagedControl, partition, production_slot
from scaleset_operator.control.status_updater import ScaleSetGone, StatusUpdater
from scaleset_operator.identity import (
    ANNOTATION_ROLLBACK,
    LABEL_REVISION,
    LABEL_SURGE,
    LABEL_UPGRADE_DOMAIN,
    instance_name,
    ordinal_of,
)
from scaleset_operator.planning import rollout
from scaleset_operator.planning.batches import Complete, StartBatch, Step, StepReason, Stop, Wait, next_step
from scaleset_operator.planning.domains import upgrade_domain_of
from scaleset_operator.planning.instances import (
    Batch,
    HealthGate,
    InstanceState,
    RolloutState,
    parse_time,
)
from scaleset_operator.planning.maintenance import Closed, Deferred, GateDecision
from scaleset_operator.planning.package import instance_template
from scaleset_operator.planning.restart import restart_revision, restart_step, restart_view
from scaleset_operator.planning.revisions import revision_name
from scaleset_operator.planning.rollback import (
    Accepted,
    Action,
    held_view,
    policy_rollback,
    rollback_step,
)
from scaleset_operator.planning.rollout import members_of
from scaleset_operator.planning.staged import is_staged, staged_refusal
from scaleset_operator.planning.status import ScaleSetView, plan_conditions, plan_refusal, plan_status
from scaleset_operator.planning.walk import Walk, effective_walk, explain_wait

log = logging.getLogger(__name__)


class Reconciler:
    """Level-triggered: every pass reads everything it needs from the API, so a restart loses nothing."""

    def __init__(
        self,
        kube: Kube,
        clock: Callable[[], datetime] = utcnow,
        test_only_repair_grace_divisor: float = 1.0,
    ) -> None:
        """`test_only_repair_grace_divisor`: automatic repairs' grace periods pass this many times faster,
        for tests on a live API (the API's minimum grace period is 10 minutes); 1 everywhere else."""
        self.kube = kube
        self.clock = clock
        self.events = EventRecorder(kube)
        self.status = StatusUpdater(kube)
        self.reader = Reader(kube)
        self.actions = ImperativeActions(kube, self.events, self.status)
        self.instance_control = InstanceControl(kube, self.events)
        self.maintenance = MaintenanceActor(kube, self.events, self.instance_control, self.status)
        self.automatic = AutomaticUpdates(kube, self.events)
        self.staged = StagedControl(kube, self.events, self.instance_control, self.status)
        self.repairs = RepairControl(
            self.events, self.instance_control, test_only_repair_grace_divisor, self.status
        )
        self.disruption_budget = DisruptionBudgetControl(kube, self.events)

    # ------------------------------------------------------------------ entry point

    def reconcile(self, namespace: str, name: str) -> Outcome:
        now = self.clock()
        scaleset = self.reader.scaleset(namespace, name)
        if scaleset is None or scaleset["metadata"].get("deletionTimestamp"):
            return Outcome(requeue_after=None, step="Gone")
        try:
            snapshot = self._snapshot(scaleset, now)
        except (InvalidInput, ApiError) as problem:
            return self._refused(scaleset, problem, now)
        outcome = Outcome()
        try:
            self.actions.consume(snapshot, now)
            if self.automatic.consume_upgrade_request(snapshot, now, self.status.record):
                return Outcome(requeue_after=0.05, step="OSUpgradeRequested")
            self._choose_target(snapshot)
            self._remember_rolled_back(snapshot, now)
            self.actions.consume_walk(snapshot, now)  # Manual mode: for the revision chosen above
            refused = self._refused_change(snapshot)
            if refused is not None:
                self.instance_control.hold(snapshot, now, outcome)
                raise refused
            assigned = self.maintenance.assigned(snapshot)
            package = self.automatic.plan(snapshot, assigned, now)
            if package is not None and self.automatic.store(snapshot, package, self.status.record):
                # The next pass makes the revision from the stored overlay (and rolls it out).
                return Outcome(requeue_after=0.05, step="UpdatesPackaged")
            scopes = self.automatic.rollout_scopes(snapshot)
            self.automatic.adjust_policy(snapshot, scopes)
            self.instance_control.scale(snapshot, now, outcome)
            self.instance_control.repair_drift(snapshot, now, outcome)
            staged_step = self.staged.reconcile(  # may swap the production set
                snapshot, now, outcome, lambda: self.automatic.gate(snapshot, scopes, assigned, now)
            )
            instances = self._instances(snapshot)
            step = staged_step or self._roll(
                snapshot,
                instances,
                now,
                outcome,
                lambda: self.automatic.gate(snapshot, scopes, assigned, now),
            )
            extra = {
                "repairs": self.repairs.reconcile(snapshot, now, outcome),
                "disruptionBudget": self.disruption_budget.reconcile(snapshot),
                "maintenance": self.maintenance.summary(assigned, now),
                "hostMaintenance": self.maintenance.host(snapshot, assigned, now, outcome),
                "pendingUpdates": self.automatic.pending(package, snapshot) or None,
            }
            self._prune_revisions(snapshot)
            # Host maintenance may have taken instances down in this pass: status counts what is left.
            self._write_status(snapshot, self._instances(snapshot), step, now, extra, outcome.refused)
        except (InvalidInput, ApiError) as problem:
            return self._refused(snapshot.scaleset, problem, now)
        except ScaleSetGone:
            return Outcome(requeue_after=None, step="Gone")
        except Conflict as conflict:
            # Another writer (a second operator, a user, a kubelet) changed the ScaleSet or a pod since it
            # was read: what this pass decided may be stale, so nothing more is written and the next pass
            # reads again.
            log.info(
                "%s/%s: %s; reading it again", namespace, name, conflict or "changed while it was reconciled"
            )
            return Outcome(requeue_after=0.05, step="Conflict")
        return outcome

    # ------------------------------------------------------------------ reading

    def _snapshot(self, scaleset: dict[str, Any], now: datetime) -> Snapshot:
        reads = self.reader.read(scaleset)
        namespace, name = scaleset["metadata"]["namespace"], scaleset["metadata"]["name"]
        spec, policy, uid = reads.spec, reads.policy, scaleset["metadata"]["uid"]
        revisions = dict(reads.revisions)
        try:
            # What instances run: the user's template with what automatic updates chose laid over it.
            template = instance_template(spec, stored_overlay(scaleset))
        except ValueError as error:
            raise InvalidInput("InvalidSpec", str(error)) from None
        update_revision = revision_name(name, template)
        if update_revision not in revisions:
            number = max((int(r.get("revision") or 0) for r in revisions.values()), default=0) + 1
            body = manifests.controller_revision(
                scaleset, update_revision, template, number, revision_name(name, spec.template)
            )
            try:
                revisions[update_revision] = self.kube.create(
                    group_path("apps", "v1", "controllerrevisions", namespace), body
                )
            except ApiError as error:
                if error.status != 409:
                    raise
                existing = self.reader.revision(namespace, body["metadata"]["name"])
                if existing is None:
                    raise error from None  # the create was refused, not done: a transient conflict, retried
                if not owned_by(existing, uid):
                    raise InvalidInput(
                        "NameConflict",
                        f"ControllerRevision {update_revision} exists and is not owned by this ScaleSet, so "
                        "the template's revision is not recorded until that object is removed.",
                    ) from None
                revisions[update_revision] = existing
        status = scaleset.get("status") or {}
        current_revision = status.get("currentRevision") or update_revision
        if current_revision not in revisions:
            current_revision = update_revision

        surges: dict[int, dict[str, Any]] = {}
        instances = []
        for pod in reads.pods:
            if (pod["metadata"].get("labels") or {}).get(LABEL_SURGE) == "true":
                surges[ordinal_of(pod) or 0] = pod
            else:
                instances.append(pod)
        slot = production_slot(status, is_staged(policy))
        production, standby = partition(instances, slot)
        pods: dict[int, dict[str, Any]] = {ordinal_of(pod) or 0: pod for pod in production}

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
            template_revision=update_revision,
            slot=slot,
            standby={ordinal_of(pod) or 0: pod for pod in standby},
            claims=dict(reads.claims),
            maintenance_configurations=reads.maintenance_configurations,
            namespace_labels=dict(reads.namespace_labels),
            image_catalogs=reads.image_catalogs,
            nodes=reads.nodes,
            services=None if reads.services is None else dict(reads.services),
            disruption_budget_read=reads.disruption_budget_read,
            disruption_budget=reads.disruption_budget,
        )
        return snapshot

    def _choose_target(self, snapshot: Snapshot) -> None:
        """Which revision instances go to: the template's, except during a rollback (the revision the
        upgrade came from) and after one while the template still asks for the revision rolled back."""
        upgrade = snapshot.upgrade
        rollback = upgrade.get("rollback") if upgrade.get("locked") else None
        if rollback:
            asked = snapshot.template_revision in (rollback.get("fromRevision"), rollback.get("toRevision"))
            if asked and rollback.get("toRevision") in snapshot.revisions:
                snapshot.update_revision = rollback["toRevision"]
            return  # a new template supersedes the rollback: _roll rolls forward to it
        rolled_back = upgrade.get("rolledBackRevision")
        if upgrade.get("locked") or not rolled_back:
            return
        if rolled_back == snapshot.template_revision and snapshot.current_revision != rolled_back:
            snapshot.update_revision = snapshot.current_revision
        else:
            # The template moved on: the revision rolled back may be tried again once asked for again.
            for key in ("rolledBackRevision", "reason", "message"):
                upgrade.pop(key, None)

    def _remember_rolled_back(self, snapshot: Snapshot, now: datetime) -> None:
        """While a rollback undoes automatic updates, status.automaticUpdates holds the restored
        revision's choices and remembers what was undone, never chosen again (written once)."""
        rollback = snapshot.upgrade.get("rollback") if snapshot.upgrade.get("locked") else None
        if not rollback:
            return
        overlay = self.automatic.after_rollback(
            snapshot, rollback.get("toRevision"), rollback.get("fromRevision"), now
        )
        stored = (snapshot.scaleset.get("status") or {}).get("automaticUpdates")
        if overlay is not None and overlay != stored:
            self.status.record(
                snapshot, merge_patch({"automaticUpdates": stored}, {"automaticUpdates": overlay})
            )

    def _refused_change(self, snapshot: Snapshot) -> InvalidInput | None:
        """Changes refused while an upgrade runs; the API server checks some too (CEL), not all can."""
        try:
            self._check_update_rules(snapshot)
        except InvalidInput as problem:
            return problem
        return None

    def _check_update_rules(self, snapshot: Snapshot) -> None:
        if is_staged(snapshot.policy):
            # A staged set takes what an in-place update refuses (a shrunk emptyDir), not a port change.
            production = snapshot.template_of(snapshot.current_revision)
            swapping = (snapshot.stored_status.get("staged") or {}).get("swap")
            refusal = (
                None if production is None or swapping else staged_refusal(production, snapshot.spec.template)
            )
            if refusal is not None:
                raise InvalidInput("RefusedInStagedMode", refusal)
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
        if old_template is not None and not is_staged(snapshot.policy):
            old_spec = snapshot.spec.model_copy(update={"template": old_template})
            problems = validate_scaleset_update(old_spec, snapshot.spec, upgrade_in_progress=True)
            if problems:
                raise InvalidInput("RefusedDuringUpgrade", problems[0])

    # ------------------------------------------------------------------ scaling and repair

    # ------------------------------------------------------------------ rolling

    def _instances(self, snapshot: Snapshot) -> list[InstanceState]:
        states = []
        for ordinal in range(snapshot.spec.replicas):
            pod = snapshot.pods.get(ordinal)
            states.append(instance_state(snapshot.instance_base, ordinal, pod))
        return states

    def _rollout_state(
        self, snapshot: Snapshot, view: list[InstanceState], target: str, now: datetime
    ) -> RolloutState:
        upgrade = snapshot.upgrade
        batch = upgrade.get("currentBatch")
        batch_revision = (batch or {}).get("revision") or upgrade.get("toRevision")
        finished_at = parse_time(batch.get("finishedAt")) if batch else None
        # Conditions are stamped to the second; the moment this pass sees the batch healthy is the
        # precise one, so it is recorded (once) and the pause between batches counts from it.
        members = [i for i in view if i.ordinal in set(batch_ordinals(batch or {}))]
        gate = HealthGate.of(snapshot.policy.health_check)
        finished = rollout.batch_finished(batch, batch_revision, target, members, gate, now)
        if finished is not None:
            finished_at, batch = now, finished
            self.status.record(snapshot, {"upgrade": {"currentBatch": batch}})
        return RolloutState(
            batch=Batch(upgrade_domain=batch.get("upgradeDomain"), ordinals=tuple(batch_ordinals(batch)))
            if batch
            else None,
            revision=batch_revision,
            batch_started_at=parse_time(batch.get("startedAt")) if batch else None,
            batch_finished_at=finished_at,
        )

    def _plan(
        self, snapshot: Snapshot, instances: list[InstanceState], upgrade: dict[str, Any], now: datetime
    ) -> tuple[Step, str]:
        """Ask the planner that fits what runs: a rollback, a restart, or the rollout of the template.
        Returns the step and the revision its batches move instances to."""
        spec = snapshot.spec
        restart = upgrade.get("restart") if upgrade.get("locked") else None
        if restart:
            requested_at = parse_time(restart.get("requestedAt")) or now
            target = restart_revision(requested_at)
            view = restart_view(instances, requested_at)
            rollout = self._rollout_state(snapshot, view, target, now)
            return restart_step(
                replicas=spec.replicas,
                upgrade_domain_count=spec.upgrade_domain_count,
                paused=spec.paused,
                policy=snapshot.policy,
                instances=instances,
                rollout=rollout,
                requested_at=requested_at,
                now=now,
            ), target
        rollback = upgrade.get("rollback") if upgrade.get("locked") else None
        if not rollback:
            # After a rollback of the failed instances only, the healthy ones stay where they are.
            instances = held_view(instances, upgrade.get("rolledBackRevision"), snapshot.update_revision)
        rollout = self._rollout_state(snapshot, instances, snapshot.update_revision, now)
        if rollback:
            only = rollback.get("instances")
            return rollback_step(
                replicas=spec.replicas,
                upgrade_domain_count=spec.upgrade_domain_count,
                paused=spec.paused,
                policy=snapshot.policy,
                target_revision=snapshot.update_revision,
                instances=instances,
                rollout=rollout,
                now=now,
                only=None if only is None else set(batch_ordinals({"instances": only})),
            ), snapshot.update_revision
        walk = Walk.from_status(upgrade.get("walk"))
        step = next_step(
            replicas=spec.replicas,
            upgrade_domain_count=spec.upgrade_domain_count,
            walk_upgrade_domain=effective_walk(walk, snapshot.update_revision),
            paused=spec.paused,
            policy=snapshot.policy,
            update_revision=snapshot.update_revision,
            instances=instances,
            rollout=rollout,
            now=now,
        )
        outdated = [i.ordinal for i in instances if i.running and i.revision != snapshot.update_revision]
        return explain_wait(
            step, walk, snapshot.update_revision, spec.upgrade_domain_count, outdated, snapshot.name
        ), snapshot.update_revision

    def _begin(
        self, snapshot: Snapshot, upgrade: dict[str, Any], instances: list[InstanceState], now: datetime
    ) -> dict[str, Any]:
        """Start, re-target or supersede the upgrade as the template asks; returns status.upgrade."""
        upgrade, notices = rollout.begin(
            upgrade, _revisions(snapshot), str(snapshot.policy.mode), len(instances), now
        )
        self._post(snapshot, notices)
        return upgrade

    def _post(self, snapshot: Snapshot, notices: list[rollout.Notice]) -> None:
        for notice in notices:
            post = self.events.warning if notice.type == "Warning" else self.events.normal
            post(snapshot.scaleset, notice.reason, notice.message)

    def _roll(
        self,
        snapshot: Snapshot,
        instances: list[InstanceState],
        now: datetime,
        outcome: Outcome,
        gate: Callable[[], GateDecision | None] = lambda: None,
    ) -> Step:
        upgrade = self._begin(snapshot, dict(snapshot.upgrade), instances, now)
        snapshot.scaleset.setdefault("status", {})["upgrade"] = upgrade
        step, target = self._plan(snapshot, instances, upgrade, now)
        upgrade = dict(snapshot.upgrade)  # _plan may have recorded when the last batch finished
        action = lock_of(upgrade).action
        phase = rollout.phase_of(action)

        if isinstance(step, Stop) and action is None:
            step, upgrade = self._stopped(snapshot, upgrade, step, now, outcome)
            if lock_of(upgrade).action is Action.ROLLBACK:
                outcome.step = "RollbackStarted"
                return step  # the next pass plans the rollback's first batch
        if (
            isinstance(step, StartBatch)
            and action is None
            and step.reason == StepReason.BATCH_STARTED
            and not _is_recorded(upgrade, step, target)
        ):
            decision = gate()  # automatic work starts a new batch only inside its window
            if isinstance(decision, Closed):
                phase = "WaitingForMaintenanceWindow"
                step = Wait(StepReason(decision.reason), decision.message, decision.next_start)
            elif isinstance(decision, Deferred):
                self.events.warning(snapshot.scaleset, decision.reason, decision.message)
        if isinstance(step, StartBatch) and _is_recorded(upgrade, step, target):
            # The recorded batch, not carried out yet (its instances wait for their scheduled events, or
            # the operator stopped before touching them): it keeps its record and its start time.
            step = Wait(StepReason.BATCH_IN_PROGRESS, step.message)
        elif isinstance(step, StartBatch):
            if step.reason == StepReason.BATCH_STARTED:  # not a re-issue of the running batch
                self._batch_completed(snapshot, upgrade)
            names = [i.name for i in instances if i.ordinal in step.batch.ordinals]
            upgrade, started = rollout.record_batch(
                upgrade,
                step,
                names,
                phase=phase,
                action=action,
                revisions=_revisions(snapshot),
                target=target,
                now=now,
            )
            if action is not Action.RESTART:
                self.instance_control.check_template(snapshot, now)
            # Record the batch before touching any instance: a restarted operator finishes it. The write
            # is guarded by the resourceVersion read, so of two operators only one records a batch.
            # With the conditions of a batch under way: automatic work changes no generation, so the
            # Ready=True of the pass before would otherwise read as at rest until the next status write.
            self.status.record(
                snapshot,
                merge_patch(
                    snapshot.stored_status,
                    {
                        "upgrade": upgrade,
                        "updateRevision": snapshot.update_revision,
                        "conditions": self._conditions(snapshot, instances, step, now),
                    },
                ),
            )
            self._post(snapshot, started)
            outcome.requeue_after = 1.0
        elif isinstance(step, Complete):
            walk = upgrade.get("walk")  # kept past the upgrade: it remembers spec.walkUpgradeDomain
            if action is Action.ROLLBACK:
                self._batch_completed(snapshot, upgrade)
                upgrade = self.actions.finish_rollback(snapshot, upgrade, now)
            elif action is Action.RESTART:
                self._batch_completed(snapshot, upgrade)
                upgrade = self.actions.finish_restart(snapshot, upgrade, now)
            elif upgrade.get("locked") or snapshot.current_revision != snapshot.update_revision:
                upgrade = self._complete(snapshot, upgrade, now)
            if walk:
                upgrade["walk"] = walk
            snapshot.current_revision = snapshot.update_revision
        elif isinstance(step, Wait):
            if upgrade.get("locked"):
                held = step.reason in ("Paused", "WaitingForWalk") and action is None
                upgrade["phase"] = "Paused" if held else phase
            if step.until is not None:
                outcome.requeue_after = max(0.05, min(RESYNC_SECONDS, (step.until - now).total_seconds()))
            upgrade, notices = rollout.announce(upgrade, rollout.Notice("Normal", step.reason, step.message))
            self._post(snapshot, notices)
        elif isinstance(step, Stop):
            upgrade, notices = rollout.announce(upgrade, rollout.Notice("Warning", step.reason, step.message))
            self._post(snapshot, notices)
        snapshot.scaleset.setdefault("status", {})["upgrade"] = upgrade

        # Whatever the planner said, the recorded batch must be carried out (the operator may have died
        # between recording it and acting on it, or the template may have changed under it).
        timing = self.instance_control.carry_out_batch(snapshot, instances, now, outcome)
        if upgrade.get("currentBatch") and timing is not None:
            upgrade, step, notices = rollout.waiting_for_notices(upgrade, step, timing)
            self._post(snapshot, notices)
            if not timing.ready:
                outcome.wait_until(timing.starts_by, now)
        blocked = [refusal for refusal in outcome.refused if refusal.instance in members_of(upgrade)]
        if blocked:
            upgrade, step, notices = rollout.eviction_blocked(upgrade, [r.describe() for r in blocked])
            self._post(snapshot, notices)
        snapshot.scaleset["status"]["upgrade"] = upgrade
        outcome.step = type(step).__name__
        return step

    def _stopped(
        self, snapshot: Snapshot, upgrade: dict[str, Any], step: Stop, now: datetime, outcome: Outcome
    ) -> tuple[Step, dict[str, Any]]:
        """A rollout stopped on a breach: roll it back when the policy says so, else say what can be done."""
        automatic = self.automatic.rollback_wanted(
            snapshot, upgrade.get("fromRevision"), upgrade.get("toRevision")
        )
        wanted = policy_rollback(snapshot.policy, step, automatic_os_upgrade=automatic)
        refusal = ""
        if wanted is not None:
            decision = self.actions.decide_rollback(snapshot, now)
            if isinstance(decision, Accepted):
                only = None
                if wanted.instances is not None:
                    only = [instance_name(snapshot.instance_base, ordinal) for ordinal in wanted.instances]
                upgrade = self.actions.start_rollback(
                    snapshot, upgrade, str(wanted.reason), decision.message, now, only
                )
                outcome.requeue_after = 0.05
                return Wait(StepReason.ROLLBACK_STARTED, f"{step.message}; rolling back"), upgrade
            refusal = f" The policy's automatic rollback was refused: {decision.message}"
        remedies = (
            f"{step.message}.{refusal} To recover, roll back "
            f"(kubectl annotate scaleset {snapshot.name} {ANNOTATION_ROLLBACK}=true, or scaleset rollback "
            f"{snapshot.name}) or apply a newer template."
        )
        return replace(step, message=remedies), upgrade

    def _complete(self, snapshot: Snapshot, upgrade: dict[str, Any], now: datetime) -> dict[str, Any]:
        upgrade, notices = rollout.complete(upgrade, _revisions(snapshot), now)
        self._post(snapshot, notices)
        return upgrade

    def _batch_completed(self, snapshot: Snapshot, upgrade: dict[str, Any]) -> None:
        self._post(snapshot, rollout.batch_completed(upgrade))

    # ------------------------------------------------------------------ revisions and status

    def _prune_revisions(self, snapshot: Snapshot) -> None:
        """Delete the oldest revisions no instance runs beyond spec.revisionHistoryLimit, each exactly as
        the pass read it (uid and resourceVersion preconditions): a revision changed or replaced since is
        not deleted, and that refusal (409) ends the pass for the next one to decide again."""
        keep = {snapshot.current_revision, snapshot.update_revision}
        keep.update(
            (p["metadata"].get("labels") or {}).get(LABEL_REVISION, "")
            for p in [*snapshot.pods.values(), *snapshot.standby.values()]
        )
        old = sorted(
            (r for h, r in snapshot.revisions.items() if h not in keep),
            key=lambda r: int(r.get("revision") or 0),
        )
        excess = len(old) - snapshot.spec.revision_history_limit
        for stored in old[: max(0, excess)]:
            metadata = stored["metadata"]
            path = group_path("apps", "v1", "controllerrevisions", snapshot.namespace, metadata["name"])
            try:
                self.kube.delete_exactly(path, metadata.get("uid"), metadata.get("resourceVersion"))
            except ApiError as error:
                if error.status == 409:
                    raise Conflict(
                        f"ControllerRevision {metadata['name']} changed since it was read: {error.message}"
                    ) from None
                raise

    def _write_status(
        self,
        snapshot: Snapshot,
        instances: list[InstanceState],
        step: Step,
        now: datetime,
        extra: dict[str, Any] | None = None,
        refused: list[EvictionRefused] | None = None,
    ) -> None:
        plan = plan_status(_view(snapshot, instances), instances, step, now, extra, refused or ())
        self._post(snapshot, plan.notices)
        self.status.write(snapshot, plan.status)

    def _conditions(
        self, snapshot: Snapshot, instances: list[InstanceState], step: Step, now: datetime
    ) -> list[dict[str, Any]]:
        """The conditions for what the pass saw and decided, transition times kept where unchanged."""
        conditions, notices = plan_conditions(_view(snapshot, instances), instances, step, now)
        self._post(snapshot, notices)
        return conditions

    def _refused(self, scaleset: dict[str, Any], problem: InvalidInput | ApiError, now: datetime) -> Outcome:
        """A pass that cannot go on: input the operator cannot honour, or a write the API server refuses
        until someone changes something, is reported in conditions and retried after the back-off;
        any other API error (a conflict, a timeout, a server error) goes to the caller as it is."""
        if isinstance(problem, ApiError):
            refusal = refusal_of(problem)
            if refusal is None:
                raise problem
            problem = refusal
        self._report_invalid(scaleset, problem, now)
        return Outcome.failed(problem.reason)

    def _report_invalid(self, scaleset: dict[str, Any], problem: InvalidInput, now: datetime) -> None:
        generation = int(scaleset["metadata"].get("generation") or 1)
        plan = plan_refusal(scaleset.get("status") or {}, generation, problem.reason, problem.message, now)
        if plan is not None:
            for notice in plan.notices:  # a refusal's Events are Warnings
                self.events.warning(scaleset, notice.reason, notice.message)
            self.status.report(scaleset, plan.status)


def _view(snapshot: Snapshot, instances: list[InstanceState]) -> ScaleSetView:
    """What the status is computed from, as the pass holds it now."""
    upgrade = snapshot.upgrade
    lock = lock_of(upgrade)
    held_back = None
    if snapshot.update_revision != snapshot.template_revision and not lock.locked:
        kept = [i.name for i in instances if i.revision == snapshot.template_revision]
        held_back = rolled_back_message(snapshot.template_revision, snapshot.update_revision, kept)
    return ScaleSetView(
        name=snapshot.name,
        generation=int(snapshot.scaleset["metadata"].get("generation") or 1),
        slot=snapshot.slot,
        replicas=snapshot.spec.replicas,
        upgrade_domain_count=snapshot.spec.upgrade_domain_count,
        policy=snapshot.policy,
        template_revision=snapshot.template_revision,
        current_revision=snapshot.current_revision,
        update_revision=snapshot.update_revision,
        upgrade=upgrade,
        conditions=(snapshot.scaleset.get("status") or {}).get("conditions") or [],
        lock=lock,
        scaling_away=sum(1 for ordinal in snapshot.pods if ordinal >= snapshot.spec.replicas),
        held_back=held_back,
    )


def _revisions(snapshot: Snapshot) -> rollout.Revisions:
    return rollout.Revisions(
        template=snapshot.template_revision,
        current=snapshot.current_revision,
        update=snapshot.update_revision,
    )


def _is_recorded(upgrade: dict[str, Any], step: StartBatch, target: str) -> bool:
    """The step starts the very batch status already records, unfinished, for the same revision."""
    recorded = upgrade.get("currentBatch") or {}
    return (
        step.reason == StepReason.BATCH_STARTED
        and bool(recorded)
        and not recorded.get("finishedAt")
        and sorted(batch_ordinals(recorded)) == sorted(step.batch.ordinals)
        and (recorded.get("revision") or upgrade.get("toRevision")) == target
    )
