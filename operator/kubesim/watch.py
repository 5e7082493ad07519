"""The watch log's entries and the watch streams fed from it: `Change` (one write), `WatchEvent` (what a
stream sends) and `Watcher` (one stream's subscription, with its own queue).

The store appends a `Change` to its log for every write and offers it to each `Watcher`; a watcher turns it
into the event its selectors make of it (a change of match becomes ADDED or DELETED) and queues it.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubesim.listing import field_of
from kubesim.resources import ResourceType
from kubesim.selectors import FieldSelector, LabelSelector

if TYPE_CHECKING:
    from kubesim.store import Store

StorageKey = tuple[str, str]  # (group, plural)


@dataclass
class Change:
    """One entry of the watch log: a write at resource version `rv`.

    For DELETED, `obj` is the last state with the deletion's resource version. `old` is the state before
    the write, which watchers with selectors need to turn a change of match into ADDED or DELETED.
    """

    type: str
    rv: int
    storage_key: StorageKey
    obj: dict[str, Any]
    old: dict[str, Any] | None
    # Serialised watch lines per served apiVersion, so that fan-out to many watchers encodes once.
    lines: dict[str, bytes] = field(default_factory=dict)

    @property
    def namespace(self) -> str:
        return str(self.obj.get("metadata", {}).get("namespace") or "")


@dataclass
class WatchEvent:
    """What a watcher is sent: a change (shared, pre-encoded) or an object of its own."""

    type: str
    change: Change | None = None
    obj: dict[str, Any] | None = None


class Watcher:
    """One watch stream's subscription: filters changes and queues them for its reader.

    Each watcher has its own queue so a slow reader never holds up the writer or other watchers;
    one that falls more than `max_backlog` events behind is closed (its client re-lists, as with
    a real API server's watch cache).
    """

    def __init__(
        self,
        store: Store,
        rt: ResourceType,
        namespace: str | None,
        labels: LabelSelector,
        fields: FieldSelector,
        max_backlog: int,
    ) -> None:
        self.store = store
        self.rt = rt
        self.namespace = namespace or None
        self.labels = labels
        self.fields = fields
        self.max_backlog = max_backlog
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue()
        self.loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self.closed = False
        self.overflowed = False

    def _passes(self, obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if not self.labels.matches(meta.get("labels")):
            return False
        return self.fields.empty or self.fields.matches(functools.partial(field_of, self.rt, obj))

    def event_for(self, change: Change) -> WatchEvent | None:
        """The event this watcher sees for a change, or None if neither old nor new state matches."""
        if change.storage_key != self.rt.storage_key:
            return None
        new_passes = change.type != "DELETED" and self._passes(change.obj)
        old_passes = self._passes(change.old) if change.type != "ADDED" else False
        if new_passes and old_passes:
            return WatchEvent("MODIFIED", change)
        if new_passes:
            return (
                WatchEvent("ADDED", change) if change.type == "ADDED" else WatchEvent("ADDED", obj=change.obj)
            )
        if old_passes:
            if change.type == "DELETED":
                return WatchEvent("DELETED", change)
            # The object left the selection: a DELETED event with its previous state at the new version.
            gone_obj = copy.deepcopy(change.old) if change.old is not None else {}
            gone_obj.setdefault("metadata", {})["resourceVersion"] = str(change.rv)
            return WatchEvent("DELETED", obj=gone_obj)
        return None

    def offer(self, change: Change) -> None:
        if self.closed:
            return
        event = self.event_for(change)
        if event is not None:
            self._put(event)

    def _put(self, event: WatchEvent | None) -> None:
        if threading.get_ident() == self._thread:
            self._put_now(event)
        else:
            self.loop.call_soon_threadsafe(self._put_now, event)

    def _put_now(self, event: WatchEvent | None) -> None:
        if self.closed and event is not None:
            return
        if event is not None and self.queue.qsize() >= self.max_backlog:
            self.overflowed = True
            self.close()
            return
        self.queue.put_nowait(event)

    def close(self) -> None:
        """End the stream: the reader gets None after what is already queued."""
        if not self.closed:
            self.closed = True
            self.store.unsubscribe(self)
            self._put(None)

    async def next(self, timeout: float | None = None) -> WatchEvent | None:
        """The next event; None when the watch is closed. Raises TimeoutError after `timeout` seconds."""
        if timeout is None:
            return await self.queue.get()
        return await asyncio.wait_for(self.queue.get(), timeout)
