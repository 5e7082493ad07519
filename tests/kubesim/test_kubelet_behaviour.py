"""The behaviour grammar and the probe arithmetic of the kubelet simulator, with no server."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubesim.behaviour import (
    HEALTHY,
    Behaviour,
    BehaviourError,
    Probe,
    behaviour_from_image,
    container_behaviour,
    direct_flips,
    parse_behaviour,
    parse_duration,
    probe_flips,
    restart_delay,
    startup_outcome,
    value_at,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h", 3600), ("1m30s", 90), ("500ms", 0.5), ("45", 45), ("1.5s", 1.5)],
)
def test_durations_use_kubernetes_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "30x", "s30", "1m x"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(BehaviourError):
        parse_duration(text)


def test_env_clauses_combine_and_later_ones_win() -> None:
    assert parse_behaviour("ready-after-30s, fail-after=2m") == Behaviour(ready_after=30, fail_after=120)
    assert parse_behaviour("never-ready ready-after 5s") == Behaviour(ready_after=5)
    assert parse_behaviour("crashloop;healthy") == HEALTHY
    assert parse_behaviour("") == HEALTHY


def test_unknown_env_clause_names_the_grammar() -> None:
    with pytest.raises(BehaviourError, match=r"unknown behaviour 'explode'.*never-ready"):
        parse_behaviour("explode")


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("app:v2-never-ready", Behaviour(never_ready=True)),
        ("registry.local:5000/team/app:v3-crashloop", Behaviour(crashloop=True)),
        ("app:v1-ready-after-30s", Behaviour(ready_after=30)),
        ("app:v4-fail-after-60s", Behaviour(fail_after=60)),
        ("app:v5-ready-after-10s-fail-after-1m30s", Behaviour(ready_after=10, fail_after=90)),
        ("app:v6-pull-error", Behaviour(pull_error=True)),
        ("app:V2-NEVER-READY", Behaviour(never_ready=True)),
        ("app:v2-crashloop@sha256:" + "a" * 64, Behaviour(crashloop=True)),
    ],
)
def test_image_tags_name_behaviours(image: str, expected: Behaviour) -> None:
    assert behaviour_from_image(image) == expected


@pytest.mark.parametrize(
    "image", ["app:v1", "app", "registry.local:5000/app", "app:never-readyish", "app:v1-ready-after-x"]
)
def test_tags_without_clauses_name_no_behaviour(image: str) -> None:
    assert behaviour_from_image(image) is None


def test_env_var_wins_over_image_tag() -> None:
    container = {
        "image": "app:v2-crashloop",
        "env": [{"name": "KUBESIM_BEHAVIOUR", "value": "ready-after-5s"}],
    }
    assert container_behaviour(container) == Behaviour(ready_after=5)
    assert container_behaviour({"image": "app:v2-crashloop"}) == Behaviour(crashloop=True)
    assert container_behaviour({"image": "app:v2"}) == HEALTHY


def test_behaviour_prints_in_its_own_grammar() -> None:
    behaviour = Behaviour(ready_after=30, fail_after=90)
    assert str(behaviour) == "ready-after-30s,fail-after-90s"
    assert parse_behaviour(str(behaviour)) == behaviour
    assert str(HEALTHY) == "healthy"


def test_probe_defaults_follow_kubernetes() -> None:
    assert Probe.from_spec({"httpGet": {"path": "/"}}) == Probe(0, 10, 1, 3)
    assert Probe.from_spec(None) is None
    assert Probe.from_spec({"initialDelaySeconds": 5, "periodSeconds": 2, "successThreshold": 2}) == Probe(
        5, 2, 2, 3
    )


def test_healthy_container_is_ready_at_first_probe_after_initial_delay() -> None:
    assert probe_flips(100, Probe(initial_delay=5), [(100, True)], initial=False) == [(105, True)]


def test_success_threshold_needs_consecutive_successes() -> None:
    assert probe_flips(0, Probe(period=10, success_threshold=3), [(0, True)], initial=False) == [(20, True)]


def test_ready_after_waits_for_the_next_probe() -> None:
    outcomes = [(0.0, False), (30.0, True)]
    assert probe_flips(0, Probe(period=10), outcomes, initial=False) == [(30, True)]
    assert probe_flips(0, Probe(initial_delay=7, period=10), outcomes, initial=False) == [(37, True)]


def test_readiness_drops_after_failure_threshold_failures() -> None:
    outcomes = [(0.0, True), (95.0, False)]
    assert probe_flips(0, Probe(period=10, failure_threshold=3), outcomes, initial=False) == [
        (0, True),
        (120, False),
    ]


def test_a_short_blip_shorter_than_the_failure_threshold_keeps_readiness() -> None:
    outcomes = [(0.0, True), (15.0, False), (35.0, True)]
    assert probe_flips(0, Probe(period=10, failure_threshold=3), outcomes, initial=False) == [(0, True)]


def test_never_ready_never_flips() -> None:
    assert probe_flips(0, Probe(), [(0.0, False)], initial=False) == []
    assert direct_flips([(0.0, False)], initial=False) == []


def test_without_probe_readiness_follows_the_process() -> None:
    flips = direct_flips([(0.0, False), (30.0, True)], initial=False)
    assert flips == [(30.0, True)]
    assert not value_at(flips, False, 29.9)
    assert value_at(flips, False, 30.0)


def test_startup_probe_passes_on_first_success_or_kills_after_threshold() -> None:
    probe = Probe(period=10, failure_threshold=3)
    assert startup_outcome(0, probe, [(0.0, False), (15.0, True)]) == (True, 20)
    assert startup_outcome(0, probe, [(0.0, False), (25.0, True)]) == (False, 20)
    assert startup_outcome(0, probe, [(0.0, False)]) == (False, 20)


def test_restart_backoff_is_immediate_then_doubles_to_five_minutes() -> None:
    assert [restart_delay(n) for n in range(1, 9)] == [0, 10, 20, 40, 80, 160, 300, 300]
    assert restart_delay(5000) == 300


def _simulated(origin: float, probe: Probe, outcomes: list[tuple[float, bool]], horizon: float) -> list:
    """Probe by probe, as a kubelet's worker would, for comparison with the closed form."""
    state, successes, failures, flips = False, 0, 0, []
    k = 0
    while (at := probe.tick(origin, k)) < horizon:
        result = [r for since, r in outcomes if since <= at][-1]
        successes, failures = (successes + 1, 0) if result else (0, failures + 1)
        if not state and successes >= probe.success_threshold:
            state = True
            flips.append((at, True))
        elif state and failures >= probe.failure_threshold:
            state = False
            flips.append((at, False))
        k += 1
    return flips


@given(
    initial_delay=st.integers(0, 20),
    period=st.integers(1, 15),
    success_threshold=st.integers(1, 4),
    failure_threshold=st.integers(1, 4),
    boundaries=st.lists(st.integers(1, 300), max_size=6, unique=True),
    first=st.booleans(),
)
def test_closed_form_probe_flips_match_probing_one_by_one(
    initial_delay: int,
    period: int,
    success_threshold: int,
    failure_threshold: int,
    boundaries: list[int],
    first: bool,
) -> None:
    probe = Probe(initial_delay, period, success_threshold, failure_threshold)
    outcomes = [(0.0, first)]
    for i, since in enumerate(sorted(boundaries)):
        outcomes.append((float(since), (i % 2 == 1) == first))
    horizon = 300.0 + initial_delay + period * (success_threshold + failure_threshold + 2)
    closed = [flip for flip in probe_flips(0.0, probe, outcomes, initial=False) if flip[0] < horizon]
    assert closed == _simulated(0.0, probe, outcomes, horizon)
    assert not math.isinf(horizon)
