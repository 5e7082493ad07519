"""`make demo` end to end: the plan, then the live rollout on its own kubesim, walking the domains in order."""

from __future__ import annotations

import io
import logging
import re

import pytest

from scaleset_operator import livedemo

pytestmark = pytest.mark.e2e


def test_live_demo_walks_every_domain_in_order_and_completes(caplog: pytest.LogCaptureFixture) -> None:
    out = io.StringIO()
    with caplog.at_level(logging.WARNING, logger="kopf"):
        assert livedemo.run(out=out, timeout=120) == 0
    # The operator stops cleanly: its daemons end on kopf's stop flag, none is cancelled by force.
    assert not [r.getMessage() for r in caplog.records if "cancelled" in r.getMessage()]
    text = out.getvalue()
    assert "rollout complete: 14 instances" in text
    assert "9 batches" in text
    # The second scene: the published OS image waits for its window, then the fleet takes it by itself.
    assert "pending: OSImage nginx 1.28.1. OSImage maintenance waits for the next window" in text
    assert "14 instances run nginx:1.28.1" in text and "spec.template still says nginx:1.28 " in text
    scene = text.split("the window opens", 1)[1]
    assert "RollingForward" in scene.split("automatic OS upgrade complete", 1)[0]
    # Each line of the walk shows the domains; a domain starts moving only after the ones before it finished.
    walk = [line for line in text.splitlines() if "RollingForward" in line]  # both scenes
    assert walk
    for line in walk:
        states = re.findall(r"UD(\d) ([●◐○x ]+?)(?=   UD|$)", line.split("RollingForward", 1)[1].strip())
        touched = [int(ud) for ud, cells in states if set(cells.split()) != {"○"}]
        if touched:
            last = max(touched)
            before_last = [ud for ud, cells in states if int(ud) < last]
            for ud in before_last:
                cells = dict(states)[ud].split()
                assert set(cells) == {"●"}, f"UD{ud} not finished while UD{last} moves: {line}"
