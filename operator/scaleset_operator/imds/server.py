"""The scheduled-events endpoint over HTTP, with the Instance Metadata Service's paths, JSON and refusals.

A caller is an instance: a Running pod of a ScaleSet, named by its uid. It reads only its own events
and approves only its own. How the caller is told:

- ``address`` mode (the default): the address the request comes from, when that address is one
  instance's alone (see ``imds.callers`` for what is refused and why);
- ``token`` mode: ``Authorization: Bearer <token>`` with a projected ServiceAccount token of the
  operator's audience, checked by a TokenReview and bound to the instance's pod (``imds.tokens``);
  the address is then not used, and a request without a token is refused.

Requests must carry ``Metadata: true`` and must not carry ``X-Forwarded-For``, as with the cloud
service: the header is never believed (any client can send it), and a request relayed by a proxy
cannot be told apart from the proxy's own, so it is refused rather than attributed to the proxy.
Each instance may make at most five requests a second (429 beyond, ``imds.limits``); a body over
64 KiB is refused (413).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from enum import StrEnum
from typing import Any

from aiohttp import web

from scaleset_operator.control.kube import Fenced, Kube
from scaleset_operator.imds.callers import Instance, Refusal
from scaleset_operator.imds.index import InstanceIndex
from scaleset_operator.imds.instances import IndexedInstanceEvents, InstanceEvents
from scaleset_operator.imds.limits import MAX_BODY_BYTES, RequestRate, retry_after
from scaleset_operator.imds.tokens import DEFAULT_AUDIENCE, Rejected, TokenReviewer
from scaleset_operator.planning.scheduled_events import (
    API_VERSIONS,
    SCHEDULED_EVENTS_PATH,
    imds_document,
)

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "0.0.0.0:8090"
_NEWEST = sorted(API_VERSIONS, reverse=True)[:3]
# A request that comes while the index is being listed waits this long for it.
SYNC_WAIT_SECONDS = 10.0


class Identity(StrEnum):
    """How the endpoint tells which instance calls: `--scheduled-events-identity`."""

    ADDRESS = "address"
    TOKEN = "token"


class Endpoint:
    """What one endpoint serves from: the instances, how callers are identified, and the rate limit."""

    def __init__(
        self,
        source: InstanceEvents,
        identity: Identity = Identity.ADDRESS,
        reviewer: TokenReviewer | None = None,
        rate: RequestRate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if identity == Identity.TOKEN and reviewer is None:
            raise ValueError("token identity needs a TokenReviewer")
        self.source = source
        self.identity = identity
        self.reviewer = reviewer
        self.rate = rate or RequestRate()
        self.clock = clock


_ENDPOINT: web.AppKey[Endpoint] = web.AppKey("endpoint", Endpoint)


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


def _bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def _caller(request: web.Request) -> Instance | web.Response:
    """The calling instance, or the refusal to answer with (403; 429 past its rate)."""
    endpoint = request.app[_ENDPOINT]
    if not await asyncio.to_thread(endpoint.source.ready, SYNC_WAIT_SECONDS):
        return _error(503, "Service unavailable. The endpoint has not read the cluster's pods yet")
    if endpoint.identity == Identity.TOKEN:
        token = _bearer_token(request)
        if token is None:
            return _error(
                403,
                "Forbidden. This endpoint identifies instances by ServiceAccount token: "
                "send Authorization: Bearer with the projected token",
            )
        assert endpoint.reviewer is not None
        bound = await asyncio.to_thread(endpoint.reviewer.review, token)
        found = Refusal(bound.reason) if isinstance(bound, Rejected) else endpoint.source.by_token(bound)
    else:
        address = caller_address(request.remote)
        if address is None:
            return _error(403, "Forbidden. The caller is not an instance")
        found = endpoint.source.by_address(address)
    if isinstance(found, Refusal):
        return _error(403, found.reason)
    wait = endpoint.rate.allow(found.uid or f"{found.namespace}/{found.name}", endpoint.clock())
    if wait is not None:
        return web.json_response(
            {"error": "Too many requests. At most 5 requests a second per instance"},
            status=429,
            headers={"Retry-After": retry_after(wait)},
        )
    return found


async def get_scheduled_events(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    instance = await _caller(request)
    if isinstance(instance, web.Response):
        return instance
    document = request.app[_ENDPOINT].source.read_events(instance)
    return web.json_response(imds_document(document, request.query["api-version"]))


def _event_ids(body: Any) -> list[str] | None:
    """The EventIds of a {"StartRequests": [{"EventId": ...}]} body, each once; None when it is not one."""
    if not isinstance(body, dict) or not isinstance(body.get("StartRequests"), list):
        return None
    ids: list[str] = []
    for item in body["StartRequests"]:
        event_id = item.get("EventId") if isinstance(item, dict) else None
        if not isinstance(event_id, str) or not event_id:
            return None
        ids.append(event_id)
    # An EventId named twice is approved once: one approval, one write.
    return list(dict.fromkeys(ids))


def _too_large() -> web.Response:
    return _error(413, f"Request entity too large. The body may be at most {MAX_BODY_BYTES} bytes")


async def post_start_requests(request: web.Request) -> web.Response:
    refusal = _refusal(request)
    if refusal is not None:
        return refusal
    instance = await _caller(request)
    if isinstance(instance, web.Response):
        return instance
    if (request.content_length or 0) > MAX_BODY_BYTES:
        return _too_large()
    try:
        event_ids = _event_ids(json.loads(await request.read()))
    except web.HTTPRequestEntityTooLarge:
        return _too_large()
    except (json.JSONDecodeError, UnicodeDecodeError):
        event_ids = None
    if event_ids is None:
        return _error(400, 'Bad request. The body must be {"StartRequests": [{"EventId": "..."}]}')
    source = request.app[_ENDPOINT].source
    own = {event.event_id for event in source.read_events(instance).events}
    foreign = [event_id for event_id in event_ids if event_id not in own]
    if foreign:
        return _error(403, f"Forbidden. Event {foreign[0]} is not an event of this instance")
    # Events that finished between the read and the write have nothing left to approve.
    await asyncio.to_thread(source.approve, instance, event_ids)
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


def make_app(endpoint: Endpoint | InstanceEvents) -> web.Application:
    """The endpoint's application (address identity when given only the instances)."""
    if not isinstance(endpoint, Endpoint):
        endpoint = Endpoint(endpoint)
    # aiohttp refuses a larger body itself while reading it (a body sent without Content-Length).
    app = web.Application(middlewares=[_internal_errors], client_max_size=MAX_BODY_BYTES)
    app[_ENDPOINT] = endpoint
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


async def start_server(endpoint: Endpoint | InstanceEvents, address: str = DEFAULT_ADDRESS) -> web.AppRunner:
    """Serve the endpoint at `address` until the returned runner's cleanup()."""
    host, port = parse_address(address)
    runner = web.AppRunner(make_app(endpoint), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("scheduled events served at http://%s:%d%s", host, port, SCHEDULED_EVENTS_PATH)
    return runner


async def serve(
    kube: Kube,
    address: str = DEFAULT_ADDRESS,
    *,
    namespaces: Collection[str] = (),
    identity: Identity = Identity.ADDRESS,
    audience: str = DEFAULT_AUDIENCE,
) -> Callable[[], Awaitable[None]]:
    """Index the cluster's pods and nodes and serve the endpoint at `address`; returns the stop."""
    index = InstanceIndex(kube).start()
    source = IndexedInstanceEvents(kube, index, namespaces or None)
    reviewer = TokenReviewer(kube, audience) if identity == Identity.TOKEN else None
    runner = await start_server(Endpoint(source, identity, reviewer), address)
    log.info("scheduled events: callers identified by %s", identity)

    async def stop() -> None:
        await runner.cleanup()
        await asyncio.to_thread(index.stop)

    return stop
