"""`make demo` end to end: the plan, then the live rollout on its own kubesim, walking the domains in order."""

from __future__ import annotations

import io
import re

import pytest

from scaleset_operator import livedemo

pytestmark = pytest.mark.e2e


def test_live_demo_walks_every_domain_in_order_and_completes() -> None:
    out = io.StringIO()
    assert livedemo.run(out=out, timeout=120) == 0
    text = out.getvalue()
    assert "rollout complete: 14 instances" in text
    assert "9 batches" in text
    # Each line of the walk shows the domains; a domain starts moving only after the ones before it finished.
    walk = [line for line in text.splitlines() if "RollingForward" in line]
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
