"""An approval is a write: a replica whose fence refuses it answers 503 in the service's error JSON."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import aiohttp

from scaleset_operator.control.kube import Fenced
from scaleset_operator.imds.callers import Instance
from scaleset_operator.imds.server import start_server
from scaleset_operator.planning.scheduled_events import EventDocument, EventType, announce

NOW = datetime(2025, 1, 1, tzinfo=UTC)


class StandbyEvents:
    """The cluster as a standby sees it: reads work, the approval's patch is refused by the fence."""

    def __init__(self) -> None:
        self.document = announce(
            EventDocument(),
            event_id="EV-1",
            event_type=EventType.REBOOT,
            instance="web-0",
            now=NOW,
            description="Update of the OS image",
        )
        self.approvals = 0

    def ready(self, timeout: float) -> bool:
        return True

    def by_address(self, ip: str) -> Instance:
        return Instance("default", "web-0", ip)

    def by_token(self, pod: object) -> Instance:
        raise AssertionError("address identity only")

    def read_events(self, instance: Instance) -> EventDocument:
        return self.document

    def approve(self, instance: Instance, event_ids: Sequence[str]) -> EventDocument:
        self.approvals += 1
        raise Fenced("not sent: this replica is not sure it holds the Lease")


async def test_a_standby_refuses_an_approval_with_503_and_the_caller_may_retry() -> None:
    source = StandbyEvents()
    runner = await start_server(source, "127.0.0.1:0")  # type: ignore[arg-type]
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}/metadata/scheduledevents?api-version=2020-07-01"
    try:
        async with aiohttp.ClientSession(headers={"Metadata": "true"}) as session:
            async with session.get(url) as response:
                assert response.status == 200, "reading is no write: a standby answers it"
            async with session.post(url, json={"StartRequests": [{"EventId": "EV-1"}]}) as response:
                assert response.status == 503
                assert response.headers["Retry-After"] == "1"
                assert "standby" in (await response.json())["error"]
    finally:
        await runner.cleanup()
    assert source.approvals == 1
