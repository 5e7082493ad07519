"""The scheduled-events endpoint over HTTP, with the Instance Metadata Service's paths, JSON and refusals.

A caller is the instance whose pod IP it connects from: it reads only its own events and approves
only its own. Requests must carry ``Metadata: true`` and must not carry ``X-Forwarded-For`` (a request
relayed by a proxy cannot be told apart from the proxy's own), as with the cloud service.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from typing import Any

from aiohttp import web

from scaleset_operator.control.kube import Fenced
from scaleset_operator.imds.instances import Instance, InstanceEvents
from scaleset_operator.planning.scheduled_events import (
    API_VERSIONS,
    SCHEDULED_EVENTS_PATH,
    UnknownEvent,
    imds_document,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "0.0.0.0:8090"
_SOURCE: web.AppKey[InstanceEvents] = web.AppKey("instance_events", InstanceEvents)
_NEWEST = sorted(API_VERSIONS, reverse=True)[:3]


def _error(status: int, message: str, **more: Any) -> web.Response:
    return web.json_response({"error": message, **more}, status=status)


def _refusal(request: web.Request) -> web.Response | None:
    """The service's answer to a request it does not serve, or None when the request may go on."""
    if "X-Forwarded-For" in request.headers:
        return _error(400, "Bad request. Requests with an X-Forwarded-For header are not accepted")
    if request.headers.get("Metadata", "").lower() != "true":
        return _error(400, "Bad request. Required metadata header not specified")
    version = request.query.get("api-version")
    if not version:
        return _error(
            400,
            "Bad request. api-version was not specified in the request. "
            "For more information refer to aka.ms/azureimds",
            **{"newest-versions": _NEWEST},
        )
    if version not in API_VERSIONS:
        return _error(
            400,
            "Bad request. api-version is invalid or was not specified in the request. "
            "For more information refer to aka.ms/azureimds",
            **{"newest-versions": _NEWEST},
        )
    return None


def caller_address(remote: str | None) -> str | None:
    """The caller's IP as pods report theirs: an IPv4 address that came in over IPv6 loses its prefix."""
    try:
        address = ipaddress.ip_address(remote or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


async def _caller(request: web.Request) -> Instance | None:
    address = caller_address(request.remote)
    if address is None:
        return None
    return await asyncio.to_thread(request.app[_SOURCE].find_instance_by_ip, address)


async def get_scheduled_events(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    instance = await _caller(request)
    if instance is None:
        return _error(403, "Forbidden. The caller is not an instance")
    document = await asyncio.to_thread(request.app[_SOURCE].read_events, instance)
    return web.json_response(imds_document(document, request.query["api-version"]))


def _event_ids(body: Any) -> list[str] | None:
    """The EventIds of a {"StartRequests": [{"EventId": ...}]} body; None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("StartRequests"), list):
        return None
    ids: list[str] = []
    for item in body["StartRequests"]:
        event_id = item.get("EventId") if isinstance(item, dict) else None
        if not isinstance(event_id, str) or not event_id:
            return None
        ids.append(event_id)
    return ids


async def post_start_requests(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    instance = await _caller(request)
    if instance is None:
        return _error(403, "Forbidden. The caller is not an instance")
    try:
        event_ids = _event_ids(await request.json())
    except (json.JSONDecodeError, UnicodeDecodeError):
        event_ids = None
    if event_ids is None:
        return _error(400, 'Bad request. The body must be {"StartRequests": [{"EventId": "..."}]}')
    source = request.app[_SOURCE]
    own = {event.event_id for event in (await asyncio.to_thread(source.read_events, instance)).events}
    foreign = [event_id for event_id in event_ids if event_id not in own]
    if foreign:
        return _error(403, f"Forbidden. Event {foreign[0]} is not an event of this instance")
    for event_id in event_ids:
        try:
            await asyncio.to_thread(source.approve, instance, event_id)
        except UnknownEvent:
            # Finished between the read and the approval: nothing is left to approve.
            continue
    log.info("instance %s/%s approved scheduled events %s", instance.namespace, instance.name, event_ids)
    return web.Response(status=200)


@web.middleware
async def _internal_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException:
        raise
    except Fenced:
        # An approval is a write: only the replica that holds the Lease makes it. The caller retries.
        response = _error(503, "Service unavailable. This replica is a standby; retry the request")
        response.headers["Retry-After"] = "1"
        return response
    except Exception:
        log.exception("scheduled events request failed")
        return _error(500, "Internal server error")


def make_app(source: InstanceEvents) -> web.Application:
    """The endpoint's application over `source`."""
    app = web.Application(middlewares=[_internal_errors])
    app[_SOURCE] = source
    app.router.add_get(SCHEDULED_EVENTS_PATH, get_scheduled_events)
    app.router.add_post(SCHEDULED_EVENTS_PATH, post_start_requests)
    return app


def parse_address(address: str) -> tuple[str, int]:
    """'HOST:PORT' (an IPv6 host in brackets); ValueError names the option when it is not one."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--scheduled-events-address {address!r} is not HOST:PORT, e.g. 0.0.0.0:8090.")
    return host, int(port)


async def start_server(source: InstanceEvents, address: str = DEFAULT_ADDRESS) -> web.AppRunner:
    """Serve the endpoint at `address` until the returned runner's cleanup()."""
    host, port = parse_address(address)
    runner = web.AppRunner(make_app(source), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("scheduled events served at http://%s:%d%s", host, port, SCHEDULED_EVENTS_PATH)
    return runner
