"""Instances that will not start by themselves: reported at once, and treated by the rollout as having
used up their instanceStartTimeout, so that onInstanceStartTimeout applies without waiting 30 minutes.

The reasons are the kubelet's (pkg/kubelet/images, kuberuntime): InvalidImageName (a name that does not
parse), CreateContainerConfigError (a Secret or ConfigMap the container names that does not exist),
ErrImageNeverPull (imagePullPolicy Never and the image is not on the node) never pass without a change
to the pod's spec; ErrImagePull and ImagePullBackOff (the back-off between pulls, 10 s doubling to 5
minutes) may be a registry's hiccup, and count once they outlast PULL_FAILURE_BOUND.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rollout_sim import NEW, OLD, T0, healthy_fleet, make_policy

from scaleset_operator.planning.batches import Complete, StepReason, Stop, Wait, next_step
from scaleset_operator.planning.instances import (
    CANNOT_START,
    PULL_FAILURE_BOUND,
    PULL_FAILURES,
    Batch,
    ContainerWaiting,
    HealthGate,
    InstanceState,
    RolloutState,
    start_failures,
)

GATE = HealthGate(start_timeout=timedelta(minutes=30))
BAD_NAME = ContainerWaiting(
    "os",
    "InvalidImageName",
    'Failed to apply default image tag "bad image name": couldn\'t parse image name "bad image name": '
    "invalid reference format",
)
BACK_OFF = ContainerWaiting("os", "ImagePullBackOff", 'Back-off pulling image "registry.example/app:v9"')


def waiting(*containers: ContainerWaiting, at: timedelta = timedelta(0), ordinal: int = 0) -> InstanceState:
    """An instance put on NEW at T0 + `at`, not Ready, its containers waiting as given."""
    return InstanceState(
        f"web-{ordinal}",
        ordinal,
        NEW,
        ready=False,
        updated_at=T0 + at,
        started_at=T0 + at,
        waiting=containers,
    )


@pytest.mark.parametrize("reason", sorted(CANNOT_START))
def test_a_reason_that_never_passes_uses_the_start_timeout_up_at_once(reason: str) -> None:
    stuck = waiting(ContainerWaiting("os", reason, "..."))
    assert GATE.timed_out(stuck, NEW, T0)
    assert GATE.start_failure(stuck, T0) == ContainerWaiting("os", reason, "...")


@pytest.mark.parametrize("reason", sorted(PULL_FAILURES))
def test_an_image_that_fails_to_pull_counts_once_it_outlasts_the_bound(reason: str) -> None:
    pulling = waiting(ContainerWaiting("os", reason))
    assert not GATE.timed_out(pulling, NEW, T0 + PULL_FAILURE_BOUND - timedelta(seconds=1))
    assert GATE.start_failure(pulling, T0 + PULL_FAILURE_BOUND - timedelta(seconds=1)) is None
    assert GATE.timed_out(pulling, NEW, T0 + PULL_FAILURE_BOUND)
    assert GATE.start_deadline(pulling, NEW) == T0 + PULL_FAILURE_BOUND


def test_the_pull_bound_counts_from_when_a_kubelet_took_the_pod() -> None:
    # Pending for ten minutes without a node, then one failed pull: not yet past the kubelet's back-off.
    late = replace(waiting(BACK_OFF), started_at=T0 + timedelta(minutes=10))
    assert not GATE.timed_out(late, NEW, T0 + timedelta(minutes=10, seconds=30))
    assert GATE.timed_out(late, NEW, T0 + timedelta(minutes=10) + PULL_FAILURE_BOUND)


@pytest.mark.parametrize("reason", ["ContainerCreating", "PodInitializing", "CrashLoopBackOff"])
def test_a_container_on_its_way_or_crashing_keeps_its_whole_start_timeout(reason: str) -> None:
    # A crash loop may be an application waiting for something; the policy's timeout judges it.
    starting = waiting(ContainerWaiting("os", reason))
    assert not GATE.timed_out(starting, NEW, T0 + timedelta(minutes=29))
    assert GATE.start_deadline(starting, NEW) == T0 + timedelta(minutes=30)
    assert GATE.start_failure(starting, T0 + timedelta(hours=1)) is None


def test_only_the_update_revision_is_judged_and_ready_instances_never() -> None:
    # An instance still on the old revision is not being started: its image is not the rollout's doing.
    old = replace(waiting(BAD_NAME), revision=OLD)
    assert GATE.start_deadline(old, NEW) is None
    assert GATE.start_deadline(old, NEW, batch_started_at=T0) == T0 + timedelta(minutes=30)
    ready = replace(waiting(BAD_NAME), ready=True)
    assert GATE.start_failure(ready, T0) is None


@given(
    reasons=st.lists(
        st.sampled_from(sorted(CANNOT_START | PULL_FAILURES | {"ContainerCreating"})), max_size=3
    ),
    after=st.integers(min_value=0, max_value=7200),
)
def test_an_instance_that_cannot_start_never_gets_more_time_than_one_that_can(
    reasons: list[str], after: int
) -> None:
    now = T0 + timedelta(seconds=after)
    stuck = waiting(*(ContainerWaiting("os", r) for r in reasons))
    plain = waiting()
    deadline, plain_deadline = GATE.start_deadline(stuck, NEW), GATE.start_deadline(plain, NEW)
    assert deadline is not None and plain_deadline is not None and deadline <= plain_deadline
    assert GATE.timed_out(stuck, NEW, now) >= GATE.timed_out(plain, NEW, now)
    if set(reasons) & CANNOT_START:
        assert GATE.timed_out(stuck, NEW, now)


def _batch_of_bad_images(on_timeout: str) -> object:
    """Ten instances; the first batch (web-0, web-5 of domain 0) was put on a name that does not parse
    a second ago, under instanceStartTimeout 30m."""
    fleet = healthy_fleet(10)
    for ordinal in (0, 5):
        fleet[ordinal] = waiting(BAD_NAME, ordinal=ordinal)
    return next_step(
        replicas=10,
        upgrade_domain_count=5,
        walk_upgrade_domain=None,
        paused=False,
        policy=make_policy(healthCheck={"instanceStartTimeout": "30m", "onInstanceStartTimeout": on_timeout}),
        update_revision=NEW,
        instances=fleet,
        rollout=RolloutState(batch=Batch(0, (0, 5)), revision=NEW, batch_started_at=T0),
        now=T0 + timedelta(seconds=1),
    )


def test_under_pause_a_batch_that_cannot_start_stops_at_once() -> None:
    step = _batch_of_bad_images("Pause")
    assert isinstance(step, Stop)
    assert step.reason == StepReason.INSTANCE_START_TIMEOUT
    assert step.ordinals == (0, 5)


def test_under_rollback_a_batch_that_cannot_start_is_rolled_back_at_once() -> None:
    step = _batch_of_bad_images("Rollback")
    assert isinstance(step, Stop)
    assert step.reason == StepReason.ROLLBACK_REQUIRED


def test_under_proceed_a_batch_that_cannot_start_no_longer_holds_the_rollout() -> None:
    step = _batch_of_bad_images("Proceed")
    assert not (isinstance(step, Wait) and step.reason == StepReason.BATCH_IN_PROGRESS)


def test_a_new_scaleset_whose_image_name_does_not_parse_is_not_left_starting() -> None:
    # Tried as a new user would: every instance created on the bad name, none on any other revision.
    fleet = [waiting(BAD_NAME, ordinal=o) for o in range(2)]
    step = next_step(
        replicas=2,
        upgrade_domain_count=5,
        walk_upgrade_domain=None,
        paused=False,
        policy=make_policy(),
        update_revision=NEW,
        instances=fleet,
        rollout=RolloutState(),
        now=T0 + timedelta(seconds=1),
    )
    assert not (isinstance(step, Wait) and step.reason == StepReason.INSTANCES_STARTING)
    assert isinstance(step, (Stop, Complete))


def test_the_report_names_each_instance_and_its_waiting_reason() -> None:
    fleet = [waiting(BAD_NAME, ordinal=0), waiting(BAD_NAME, ordinal=1), *healthy_fleet(3)[2:]]
    fleet.append(waiting(BACK_OFF, ordinal=3))
    sentence = start_failures(fleet, GATE, NEW, T0 + PULL_FAILURE_BOUND)
    assert sentence == (
        'web-0, web-1 cannot start by themselves: container "os" is waiting with InvalidImageName '
        '(Failed to apply default image tag "bad image name": couldn\'t parse image name "bad image name": '
        'invalid reference format); web-3 cannot start by itself: container "os" is waiting with '
        'ImagePullBackOff (Back-off pulling image "registry.example/app:v9").'
    )
    assert start_failures(healthy_fleet(3, revision=NEW), GATE, NEW, T0) is None
