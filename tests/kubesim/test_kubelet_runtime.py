"""Pod and container lives in the kubelet simulator, played on simulated time with no server."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from kubesim.behaviour import DEFAULT_SHUTDOWN
from kubesim.images import image_reference_problem
from kubesim.podlife import (
    ContainerRuntime,
    EnvReference,
    PodRuntime,
    SimClock,
    env_references,
    reference_problem,
)

WALL0 = 1_700_000_000.0
CLOCK = SimClock(1.0, monotonic=lambda: 0.0, wall=lambda: WALL0)
# Image pulls take at most this long, so every container has started by then.
PULLED = 2.0


def container(name: str = "app", image: str = "app:v1", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": image, **extra}


def make_pod(*containers: dict[str, Any], uid: str = "uid-1", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web-0", "namespace": "default", "uid": uid},
        "spec": {"containers": list(containers) or [container()], **spec},
    }


def admitted(pod: dict[str, Any], at: float = 0.0) -> PodRuntime:
    runtime = PodRuntime(pod, "kubesim-node-0", "127.0.1.1", at, seed=0)
    runtime.start_sandbox(at, "127.1.0.1", {})
    return runtime


def app(runtime: PodRuntime, name: str = "app") -> ContainerRuntime:
    return next(c for c in runtime.containers if c.name == name)


def status_of(runtime: PodRuntime, at: float, name: str = "app") -> dict[str, Any]:
    runtime.advance(at)
    status = runtime.status(CLOCK)
    every = status["containerStatuses"] + status.get("initContainerStatuses", [])
    return next(s for s in every if s["name"] == name)


def condition(runtime: PodRuntime, at: float, kind: str) -> dict[str, Any]:
    runtime.advance(at)
    return next(c for c in runtime.status(CLOCK)["conditions"] if c["type"] == kind)


def stamp(at: float) -> str:
    return datetime.fromtimestamp(WALL0 + at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def readiness_probe(**timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": "/healthz", "port": 8080}, **timing}


def test_pod_pulls_its_image_then_runs_and_is_ready_without_a_probe() -> None:
    runtime = admitted(make_pod())
    assert status_of(runtime, 0.5)["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert runtime.phase() == "Pending"
    start = app(runtime).start_at
    assert start is not None and 1.0 <= start <= 2.0
    status = status_of(runtime, PULLED)
    assert status["state"] == {"running": {"startedAt": stamp(start)}}
    assert status["ready"] and status["started"] and status["restartCount"] == 0
    assert status["imageID"].startswith("app@sha256:")
    assert runtime.phase() == "Running"
    assert condition(runtime, PULLED, "Ready") == {
        "type": "Ready",
        "status": "True",
        "lastProbeTime": None,
        "lastTransitionTime": stamp(start),
    }


def test_readiness_waits_for_initial_delay_and_success_threshold() -> None:
    probe = readiness_probe(initialDelaySeconds=5, periodSeconds=10, successThreshold=2)
    runtime = admitted(make_pod(container(readinessProbe=probe)))
    start = app(runtime).start_at
    assert start is not None
    assert not status_of(runtime, start + 14.9)["ready"]
    assert status_of(runtime, start + 15)["ready"]
    assert condition(runtime, start + 20, "ContainersReady")["lastTransitionTime"] == stamp(start + 15)


def test_unready_pod_says_which_containers_are_unready() -> None:
    runtime = admitted(make_pod(container(image="app:v2-never-ready"), container("sidecar")))
    ready = condition(runtime, 100, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ContainersNotReady"
    assert ready["message"] == "containers with unready status: [app]"


def test_ready_after_image_becomes_ready_at_the_next_probe_after_the_delay() -> None:
    probe = readiness_probe(periodSeconds=10)
    runtime = admitted(make_pod(container(image="app:v2-ready-after-30s", readinessProbe=probe)))
    start = app(runtime).start_at
    assert start is not None
    assert not status_of(runtime, start + 29)["ready"]
    assert status_of(runtime, start + 30)["ready"]


def test_never_ready_instance_runs_but_never_becomes_ready() -> None:
    runtime = admitted(make_pod(container(image="app:v2-never-ready", readinessProbe=readiness_probe())))
    status = status_of(runtime, 3600)
    assert "running" in status["state"]
    assert not status["ready"] and status["restartCount"] == 0
    assert runtime.phase() == "Running"


def test_crashloop_restarts_with_growing_backoff_and_is_never_ready() -> None:
    runtime = admitted(make_pod(container(image="app:v3-crashloop")))
    start = app(runtime).start_at
    assert start is not None
    # Runs 1s, exits; restarted at once, exits again; then 10s, 20s, 40s back-off between restarts.
    expected = {
        start + 0.5: 0,
        start + 1.5: 1,
        start + 11.5: 1,
        start + 12.5: 2,
        start + 32.5: 2,
        start + 33.5: 3,
    }
    for at, restarts in expected.items():
        assert status_of(runtime, at)["restartCount"] == restarts, at
    status = status_of(runtime, start + 40)
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status["state"]["waiting"]["message"].startswith("back-off 40s restarting failed container=app")
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"
    assert not status["ready"]
    assert runtime.phase() == "Running"
    assert condition(runtime, start + 40, "Ready")["status"] == "False"


def test_crashloop_backoff_caps_at_five_minutes() -> None:
    runtime = admitted(make_pod(container(image="app:v3-crashloop")))
    runtime.advance(3 * 3600)
    crashing = app(runtime)
    if crashing.exit is not None:
        runtime.advance(crashing.exit.at)
    assert crashing.state == "backoff" and crashing.last_terminated is not None
    assert crashing.start_at == crashing.last_terminated["finishedAt"] + 300
    assert status_of(runtime, 3 * 3600 + 1)["state"]["waiting"]["message"].startswith("back-off 300s")


def test_fail_after_drops_readiness_and_restarts_the_container() -> None:
    probe = readiness_probe(initialDelaySeconds=5, periodSeconds=10)
    runtime = admitted(make_pod(container(image="app:v4-fail-after-60s", readinessProbe=probe)))
    start = app(runtime).start_at
    assert start is not None
    assert status_of(runtime, start + 59)["ready"]
    status = status_of(runtime, start + 60)
    # The first restart is immediate; the new container is unready until its first probe.
    assert status["restartCount"] == 1 and "running" in status["state"]
    assert not status["ready"]
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["finishedAt"] == stamp(start + 60)
    assert condition(runtime, start + 60, "Ready")["lastTransitionTime"] == stamp(start + 60)
    assert status_of(runtime, start + 65.001)["ready"]
    # The second failure waits out a 10s back-off, unready.
    status = status_of(runtime, start + 125)
    assert not status["ready"]
    assert status["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert status_of(runtime, start + 135.001)["ready"]


def test_env_behaviour_wins_over_the_image_tag() -> None:
    env = [{"name": "KUBESIM_BEHAVIOUR", "value": "never-ready"}]
    runtime = admitted(make_pod(container(image="app:v2-ready-after-1s", env=env)))
    assert not status_of(runtime, 100)["ready"]


def test_malformed_env_behaviour_is_reported_as_a_config_error() -> None:
    env = [{"name": "KUBESIM_BEHAVIOUR", "value": "explode"}]
    runtime = admitted(make_pod(container(env=env)))
    waiting = status_of(runtime, 10)["state"]["waiting"]
    assert waiting["reason"] == "CreateContainerConfigError"
    assert "unknown behaviour 'explode'" in waiting["message"]


def test_pull_error_image_waits_in_image_pull_backoff() -> None:
    runtime = admitted(make_pod(container(image="app:v6-pull-error")))
    status = status_of(runtime, 10)
    assert status["state"]["waiting"] == {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "app:v6-pull-error"',
    }
    assert runtime.phase() == "Pending"


def test_an_image_that_cannot_be_pulled_alternates_err_image_pull_and_back_off_as_the_kubelet() -> None:
    # pkg/kubelet/images: a failed pull is ErrImagePull (the runtime's error), the syncs in the back-off
    # that follows are ImagePullBackOff ("Back-off pulling image"), and the back-off doubles from 10 s.
    runtime = admitted(make_pod(container(image="registry.example/app:v6-pull-error")))
    pull = app(runtime)
    first_failure = pull.start_at
    assert first_failure is not None
    error = status_of(runtime, first_failure)["state"]["waiting"]
    assert error["reason"] == "ErrImagePull"
    assert error["message"] == (
        'rpc error: code = NotFound desc = failed to pull and unpack image "registry.example/app:v6-pull-error": '
        'failed to resolve reference "registry.example/app:v6-pull-error": registry.example/app:v6-pull-error: '
        "not found"
    )
    assert status_of(runtime, first_failure + 1.5)["state"]["waiting"] == {
        "reason": "ImagePullBackOff",
        "message": 'Back-off pulling image "registry.example/app:v6-pull-error"',
    }
    failures = []
    at = first_failure
    while len(failures) < 7:
        at += 0.25
        runtime.advance(at)
        if pull.pull_failures > len(failures):
            failures.append(at)
    gaps = [b - a for a, b in itertools.pairwise(failures)]
    # Each gap is the back-off plus the next pull (1-2 s): 10, 20, 40, 80, 160, then at most 300.
    for gap, backoff in zip(gaps, [10, 20, 40, 80, 160, 300], strict=True):
        assert backoff <= gap <= backoff + 2.5
    assert runtime.phase() == "Pending" and not status_of(runtime, at)["ready"]


def test_a_short_image_name_is_reported_as_the_runtime_pulls_it() -> None:
    runtime = admitted(make_pod(container(image="app:v6-pull-error")))
    failed = app(runtime).start_at
    assert failed is not None
    assert (
        '"docker.io/library/app:v6-pull-error"' in status_of(runtime, failed)["state"]["waiting"]["message"]
    )


def test_pull_policy_never_without_the_image_on_the_node_is_err_image_never_pull() -> None:
    runtime = admitted(make_pod(container(image="app:v1", imagePullPolicy="Never")))
    assert status_of(runtime, 60)["state"]["waiting"] == {
        "reason": "ErrImageNeverPull",
        "message": 'Container image "app:v1" is not present with pull policy of Never',
    }
    assert runtime.phase() == "Pending"


def test_pull_policy_never_runs_an_image_the_node_pulled_before() -> None:
    node_images: set[str] = set()
    first = PodRuntime(
        make_pod(container(image="app:v1")), "kubesim-node-0", "127.0.1.1", 0.0, 0, None, node_images
    )
    first.start_sandbox(0.0, "127.1.0.1", {})
    first.advance(PULLED)
    assert node_images == {"app:v1"}
    pod = make_pod(container(image="app:v1", imagePullPolicy="Never"), uid="uid-2")
    second = PodRuntime(pod, "kubesim-node-0", "127.1.0.2", PULLED, 0, None, node_images)
    second.start_sandbox(PULLED, "127.1.0.2", {})
    second.advance(PULLED)
    assert second.status(CLOCK)["containerStatuses"][0]["ready"]


def test_env_naming_a_missing_secret_waits_in_create_container_config_error_until_it_exists() -> None:
    # kubelet_pods.go makeEnvironmentVariables: the container is made after the pull, and not at all
    # while a Secret or ConfigMap key it names is missing; the kubelet tries again on each sync.
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
    runtime = admitted(make_pod(container(env=env)))
    assert runtime.references() == {"app": [EnvReference("secret", "api", "token", False)]}
    runtime.set_reference_errors({"app": reference_problem(runtime.references()["app"], "default", {})}, 0.1)
    assert status_of(runtime, 10)["state"]["waiting"] == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "api" not found',
    }
    runtime.set_reference_errors({"app": None}, 20)
    assert status_of(runtime, 20)["state"] == {"running": {"startedAt": stamp(20)}}


@pytest.mark.parametrize(
    ("env", "found", "problem"),
    [
        (
            [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "a"}}}],
            {("configmap", "cfg"): {"data": {"b": "1"}}},
            "couldn't find key a in ConfigMap default/cfg",
        ),
        (
            [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "api", "key": "a", "optional": True}}}],
            {},
            None,
        ),
        (
            [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "api", "key": "a"}}}],
            {("secret", "api"): {"data": {"a": "MQ=="}}},
            None,
        ),
    ],
)
def test_a_reference_problem_is_the_kubelets_sentence(
    env: list[dict[str, Any]], found: dict[tuple[str, str], Any], problem: str | None
) -> None:
    assert reference_problem(env_references(container(env=env)), "default", found) == problem


def test_env_from_a_missing_config_map_is_refused_and_an_optional_one_is_not() -> None:
    refs = env_references(
        container(envFrom=[{"configMapRef": {"name": "cfg"}}, {"secretRef": {"name": "s", "optional": True}}])
    )
    assert reference_problem(refs, "default", {}) == 'configmap "cfg" not found'


def test_image_name_that_does_not_parse_is_never_started() -> None:
    runtime = admitted(make_pod(container(image="bad image name")))
    status = status_of(runtime, 600)
    assert status["state"]["waiting"]["reason"] == "InvalidImageName"
    assert (
        'couldn\'t parse image name "bad image name": invalid reference format'
        in status["state"]["waiting"]["message"]
    )
    assert not status["ready"] and not status["started"] and status["restartCount"] == 0
    assert runtime.phase() == "Pending"
    assert condition(runtime, 600, "Ready")["status"] == "False"


def test_fixing_an_invalid_image_name_starts_the_container() -> None:
    runtime = admitted(make_pod(container(image="App:v1")))
    assert status_of(runtime, 10)["state"]["waiting"]["reason"] == "InvalidImageName"
    runtime.update_spec(make_pod(container(image="app:v1")), 20)
    assert status_of(runtime, 30)["ready"]


@pytest.mark.parametrize(
    "image",
    ["nginx", "app:v1", "registry:5000/app:v4-ready-after-30s", "ghcr.io/org/app@sha256:" + "a" * 64],
)
def test_valid_image_references_parse(image: str) -> None:
    assert image_reference_problem(image) is None


@pytest.mark.parametrize("image", ["bad image name", "App:v1", "app:", "a:b:c", "app:v1 ", "-app"])
def test_invalid_image_references_are_refused(image: str) -> None:
    assert image_reference_problem(image) is not None


def test_in_place_image_change_restarts_only_that_container() -> None:
    pod = make_pod(container(readinessProbe=readiness_probe(periodSeconds=10)), container("sidecar"))
    runtime = admitted(pod)
    assert status_of(runtime, 20)["ready"]
    changed = make_pod(
        container(image="app:v2", readinessProbe=readiness_probe(periodSeconds=10)), container("sidecar")
    )
    runtime.update_spec(changed, 100)
    status = status_of(runtime, 100)
    assert status["image"] == "app:v2"
    assert status["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert not status["ready"]
    assert status["lastState"]["terminated"]["finishedAt"] == stamp(100)
    assert condition(runtime, 100, "Ready")["status"] == "False"
    restarted = app(runtime).start_at
    assert restarted is not None and 101 <= restarted <= 102
    status = status_of(runtime, restarted)
    assert status["restartCount"] == 1 and status["ready"]
    assert status["imageID"].startswith("app@sha256:")
    assert status_of(runtime, restarted, "sidecar")["restartCount"] == 0
    assert runtime.pod_ip == "127.1.0.1"


def test_in_place_image_change_to_a_broken_version_leaves_the_instance_unready() -> None:
    runtime = admitted(make_pod(container(readinessProbe=readiness_probe())))
    status_of(runtime, 20)
    runtime.update_spec(
        make_pod(container(image="app:v2-never-ready", readinessProbe=readiness_probe())), 100
    )
    status = status_of(runtime, 1000)
    assert status["restartCount"] == 1 and "running" in status["state"] and not status["ready"]


def test_in_place_image_change_clears_crashloop_backoff() -> None:
    runtime = admitted(make_pod(container(image="app:v3-crashloop")))
    status_of(runtime, 600)
    runtime.update_spec(make_pod(container(image="app:v4")), 600)
    started = app(runtime).start_at
    assert started is not None and started <= 602
    assert status_of(runtime, 602)["ready"]


def test_behaviour_set_on_a_live_pod_takes_effect_through_the_probe() -> None:
    probe = readiness_probe(periodSeconds=10, failureThreshold=3)
    runtime = admitted(make_pod(container(readinessProbe=probe)))
    start = app(runtime).start_at
    assert start is not None
    assert status_of(runtime, start + 100)["ready"]
    runtime.set_behaviour(app(runtime).behaviour.with_clause("never-ready"), None, start + 100)
    # Probes at start+100, +110, +120 fail: unready at the third.
    assert status_of(runtime, start + 119)["ready"]
    assert not status_of(runtime, start + 120)["ready"]
    runtime.set_behaviour(None, None, start + 200)
    assert status_of(runtime, start + 200)["ready"]


def test_fail_after_set_live_counts_from_when_it_was_set() -> None:
    runtime = admitted(make_pod())
    runtime.set_behaviour(app(runtime).behaviour.with_clause("fail-after-30s"), "app", 100)
    assert status_of(runtime, 129)["restartCount"] == 0
    assert status_of(runtime, 130)["restartCount"] == 1


def test_setting_behaviour_of_an_unknown_container_is_refused() -> None:
    runtime = admitted(make_pod())
    with pytest.raises(LookupError, match="no container named 'nope'"):
        runtime.set_behaviour(None, "nope", 10)


def test_liveness_probe_failures_restart_the_container() -> None:
    liveness = {"exec": {"command": ["true"]}, "periodSeconds": 10, "failureThreshold": 3}
    runtime = admitted(make_pod(container(image="app:v1-never-ready", livenessProbe=liveness)))
    start = app(runtime).start_at
    assert start is not None
    assert status_of(runtime, start + 19)["restartCount"] == 0
    status = status_of(runtime, start + 20.5)
    assert status["restartCount"] == 1
    assert status["lastState"]["terminated"]["exitCode"] == 137


def test_startup_probe_holds_readiness_until_it_passes() -> None:
    startup = {"exec": {"command": ["true"]}, "periodSeconds": 10, "failureThreshold": 5}
    runtime = admitted(make_pod(container(image="app:v1-ready-after-25s", startupProbe=startup)))
    start = app(runtime).start_at
    assert start is not None
    status = status_of(runtime, start + 29)
    assert not status["started"] and not status["ready"]
    status = status_of(runtime, start + 30)
    assert status["started"] and status["ready"]


def test_init_containers_run_in_order_before_the_app() -> None:
    pod = make_pod(
        initContainers=[container("migrate", "tool:v1"), container("warm", "tool:v1-ready-after-5s")]
    )
    runtime = admitted(pod)
    assert status_of(runtime, 0)["state"] == {"waiting": {"reason": "PodInitializing"}}
    initialised = condition(runtime, 0, "Initialized")
    assert initialised["status"] == "False"
    assert initialised["message"] == "containers with incomplete status: [migrate warm]"
    status_of(runtime, 20)
    migrate, warm = runtime.inits
    assert migrate.terminated is not None and warm.terminated is not None
    # Each init container is pulled only after the one before it completed.
    assert warm.terminated["startedAt"] > migrate.terminated["finishedAt"]
    assert warm.terminated["finishedAt"] - warm.terminated["startedAt"] == 5
    assert app(runtime).run_start > warm.terminated["finishedAt"]
    assert condition(runtime, 20, "Initialized")["lastTransitionTime"] == stamp(warm.terminated["finishedAt"])
    init_status = status_of(runtime, 20, "migrate")
    assert init_status["state"]["terminated"]["reason"] == "Completed"
    assert status_of(runtime, 20)["ready"]


def test_crashing_init_container_keeps_the_pod_initialising() -> None:
    runtime = admitted(make_pod(initContainers=[container("migrate", "tool:v1-crashloop")]))
    status = status_of(runtime, 100, "migrate")
    assert status["restartCount"] >= 2
    assert runtime.phase() == "Pending"
    assert status_of(runtime, 100)["state"] == {"waiting": {"reason": "PodInitializing"}}


def test_sidecar_init_container_keeps_running_and_counts_for_readiness() -> None:
    sidecar = container("proxy", "proxy:v1-ready-after-10s", restartPolicy="Always")
    runtime = admitted(make_pod(initContainers=[sidecar]))
    status_of(runtime, 60)
    assert "running" in status_of(runtime, 60, "proxy")["state"]
    assert condition(runtime, 60, "Ready")["status"] == "True"
    runtime.set_behaviour(app(runtime, "proxy").behaviour.with_clause("never-ready"), "proxy", 60)
    assert condition(runtime, 61, "Ready")["status"] == "False"


def test_restart_policy_never_fails_the_pod_when_its_container_fails() -> None:
    runtime = admitted(make_pod(container(image="job:v1-fail-after-10s"), restartPolicy="Never"))
    status = status_of(runtime, 30)
    assert status["state"]["terminated"]["exitCode"] == 1
    assert runtime.phase() == "Failed"


def test_restart_policy_on_failure_restarts_a_failed_container() -> None:
    runtime = admitted(make_pod(container(image="job:v1-fail-after-10s"), restartPolicy="OnFailure"))
    assert status_of(runtime, 14)["restartCount"] == 1
    assert runtime.phase() == "Running"


def test_deleted_pod_stops_its_containers_within_the_grace_period() -> None:
    runtime = admitted(make_pod())
    status_of(runtime, 10)
    runtime.begin_termination(10, grace=30)
    assert not runtime.finished
    status = status_of(runtime, 10 + DEFAULT_SHUTDOWN)
    assert runtime.finished
    assert status["state"]["terminated"]["exitCode"] == 0
    assert runtime.phase() == "Succeeded"
    assert condition(runtime, 11, "Ready")["status"] == "False"


def test_process_ignoring_sigterm_is_killed_when_the_grace_period_ends() -> None:
    runtime = admitted(make_pod(container(image="app:v1-shutdown-after-5m")))
    status_of(runtime, 10)
    runtime.begin_termination(10, grace=30)
    runtime.advance(39)
    assert not runtime.finished
    status = status_of(runtime, 40)
    assert runtime.finished
    assert status["state"]["terminated"]["exitCode"] == 137
    assert runtime.phase() == "Failed"


def test_terminating_pod_does_not_restart_a_crashing_container() -> None:
    runtime = admitted(make_pod(container(image="app:v3-crashloop")))
    status_of(runtime, 3.5)
    runtime.begin_termination(3.5, grace=30)
    status_of(runtime, 100)
    assert runtime.finished


def test_evicted_pod_is_killed_at_once_and_stays_failed_with_reason_evicted() -> None:
    # As the kubelet's eviction manager leaves a pod: phase Failed, reason Evicted, its message, a
    # DisruptionTarget condition (reason TerminationByKubelet); nothing restarts it, nothing deletes it.
    runtime = admitted(make_pod(container(image="app:v1-shutdown-after-5m")))
    assert condition(runtime, 10, "Ready")["status"] == "True"
    runtime.evict(10, "The node was low on resource: memory.")
    status = runtime.status(CLOCK)
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed",
        "Evicted",
        "The node was low on resource: memory.",
    )
    assert status_of(runtime, 10)["state"]["terminated"]["exitCode"] == 137
    target = condition(runtime, 10, "DisruptionTarget")
    assert (target["status"], target["reason"]) == ("True", "TerminationByKubelet")
    assert condition(runtime, 10, "Ready")["status"] == "False"
    status_of(runtime, 1000)
    assert runtime.phase() == "Failed" and not runtime.finished
    assert status_of(runtime, 1000)["restartCount"] == 0


def test_pod_waiting_for_its_volumes_stays_container_creating() -> None:
    runtime = PodRuntime(make_pod(), "kubesim-node-0", "127.0.1.1", 0, seed=0)
    runtime.advance(100)
    status = runtime.status(CLOCK)
    assert status["phase"] == "Pending"
    assert "podIP" not in status
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    sandbox = next(c for c in status["conditions"] if c["type"] == "PodReadyToStartContainers")
    assert sandbox["status"] == "False"


def test_readiness_gates_hold_the_pod_unready_until_their_condition_is_true() -> None:
    pod = make_pod(readinessGates=[{"conditionType": "example.com/lb"}])
    runtime = admitted(pod)
    ready = condition(runtime, 10, "Ready")
    assert ready["status"] == "False"
    assert ready["reason"] == "ReadinessGatesNotReady"
    assert condition(runtime, 10, "ContainersReady")["status"] == "True"
    with_gate = {**pod, "status": {"conditions": [{"type": "example.com/lb", "status": "True"}]}}
    runtime.update_spec(with_gate, 20)
    assert condition(runtime, 20, "Ready")["status"] == "True"
    # Conditions owned by others are reported back untouched.
    assert {"type": "example.com/lb", "status": "True"} in runtime.status(CLOCK)["conditions"]


def test_container_statuses_are_sorted_by_name_like_the_kubelet() -> None:
    runtime = admitted(make_pod(container("zeta"), container("alpha")))
    names = [s["name"] for s in runtime.status(CLOCK)["containerStatuses"]]
    assert names == ["alpha", "zeta"]


def test_pull_times_are_seeded_and_independent_of_event_order() -> None:
    first = admitted(make_pod(uid="a"))
    second = admitted(make_pod(uid="b"))
    assert app(first).start_at == app(second).start_at
    other_seed = PodRuntime(make_pod(), "kubesim-node-0", "127.0.1.1", 0, seed=1)
    other_seed.start_sandbox(0, "127.1.0.2", {})
    assert app(other_seed).start_at != app(first).start_at


def test_long_fast_forward_stays_cheap() -> None:
    # A week of crash looping is about 2,000 restarts at the 5 minute cap; closed forms keep it quick.
    runtime = admitted(
        make_pod(
            container(image="app:v3-crashloop"),
            container("web", readinessProbe=readiness_probe(periodSeconds=1)),
        )
    )
    status = status_of(runtime, 7 * 24 * 3600)
    assert status["restartCount"] > 2000


def test_sidecar_image_change_restarts_the_sidecar_only() -> None:
    sidecar = container("proxy", "proxy:v1", restartPolicy="Always")
    runtime = admitted(make_pod(initContainers=[sidecar]))
    status_of(runtime, 10)
    changed = make_pod(initContainers=[container("proxy", "proxy:v2", restartPolicy="Always")])
    runtime.update_spec(changed, 10)
    status = status_of(runtime, 15, "proxy")
    assert status["image"] == "proxy:v2" and status["restartCount"] == 1
    assert status_of(runtime, 15)["restartCount"] == 0


def test_completed_init_container_is_not_run_again_for_a_new_image() -> None:
    runtime = admitted(make_pod(initContainers=[container("migrate", "tool:v1")]))
    status_of(runtime, 10)
    runtime.update_spec(make_pod(initContainers=[container("migrate", "tool:v2")]), 10)
    status = status_of(runtime, 20, "migrate")
    assert status["restartCount"] == 0 and "terminated" in status["state"]
    assert status_of(runtime, 20)["restartCount"] == 0
