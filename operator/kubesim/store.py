"""The in-memory object store: objects by type and key, the one resourceVersion, the watch event log, and
the verbs the rest of kubesim reads and writes through: the verbs' semantics (kubesim.verbs), admission
(kubesim.admission) and the built-in controllers (kubesim.controllers).

The watch log's types (`Change`, `WatchEvent`, `Watcher`) live in `kubesim.watch`; they are re-exported here.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import importlib
import json
import random
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeAlias

from kubesim.errors import (
    ApiError,
    Cause,
    bad_request,
    gone,
    invalid,
    not_found,
)
from kubesim.eventrules import convert_event
from kubesim.listing import ListResult, check_fields, list_objects
from kubesim.resources import CRD_GROUP, ResourceRegistry, ResourceType
from kubesim.selectors import FieldSelector, LabelSelector
from kubesim.watch import Change as Change  # re-exported: the watch log types callers import from here
from kubesim.watch import StorageKey
from kubesim.watch import Watcher as Watcher
from kubesim.watch import WatchEvent as WatchEvent

Key = tuple[str, str]  # (namespace, name); namespace is "" for cluster-scoped objects
# Aliases for use inside Store, whose `list` method shadows the builtin in annotations.
Objects: TypeAlias = list[dict[str, Any]]
Warnings: TypeAlias = list[str]
Keys: TypeAlias = list[Key]
Locations: TypeAlias = list[tuple[StorageKey, Key]]

PATCH_JSON = "application/json-patch+json"
PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (PATCH_JSON, PATCH_MERGE, PATCH_STRATEGIC, PATCH_APPLY)

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"
FINALIZER_CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
FINALIZER_PVC_PROTECTION = "kubernetes.io/pvc-protection"
NAMESPACE_FINALIZER = "kubernetes"
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def now_rfc3339(clock: Callable[[], dt.datetime]) -> str:
    return clock().astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def optional(module: str) -> Any:
    """Modules other parts of kubesim provide; absent ones mean the check they add is skipped."""
    try:
        return importlib.import_module(f"kubesim.{module}")
    except ImportError:
        return None


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def meta_of(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
        obj["metadata"] = meta
    return meta


def owner_uids(obj: dict[str, Any]) -> set[str]:
    """The uids an object's ownerReferences name."""
    return {str(r["uid"]) for r in obj.get("metadata", {}).get("ownerReferences") or [] if r.get("uid")}


class Controller:
    """A built-in controller (see kubesim.controllers): what kube-controller-manager does after a write.

    The store tells each controller it was given (`Store.add_controller`) of its writes, in the order they
    were added, under the store's lock and right after the write is committed. A controller writes at
    once through the store's verbs (`commit` and the controller-facing ones below it, or the public
    reads and writes), or queues work with `Store.queue` to run after the current write, as a
    controller's work queue; the store runs queued work until none is left (`run_background`).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def created(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """An object was created."""

    def updated(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
        """An object was replaced or patched (through `Store.commit` only with `updated`)."""

    def terminating(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """An object's deletion began, or an object being deleted was replaced or patched."""

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """An object is gone."""

    def changed(self, change: Change) -> None:
        """Any change was committed, a controller's `commit` included, as a watch of every kind would see
        it (told first, as the change is logged)."""


class Store:
    """Objects by type and (namespace, name), one global resource version, and a bounded event log.

    Every public method is thread-safe (tests call it from outside the server's loop). Writes run the
    object semantics of the API server: defaults, validation, generation, finalizers, optimistic
    concurrency; the garbage collector, namespace and CRD cleanup run as background work afterwards.
    """

    def __init__(
        self,
        registry: ResourceRegistry | None = None,
        *,
        event_window: int = 50_000,
        max_watch_backlog: int = 200_000,
        clock: Callable[[], dt.datetime] = _utcnow,
        seed: int | None = None,
    ) -> None:
        self.registry = registry or ResourceRegistry()
        from kubesim.admission import Admission  # it builds on this module's helpers

        self.admission = Admission(self)
        self.clock = clock
        self._lock = threading.RLock()
        self._rv = 0
        self._objects: dict[StorageKey, dict[Key, dict[str, Any]]] = {}
        self._encoded: dict[StorageKey, dict[Key, bytes]] = {}
        self._log: deque[Change] = deque(maxlen=event_window)
        # The resource version of the newest change that fell out of the log: watches must start after it.
        self._floor = 0
        self._watchers: set[Watcher] = set()
        self._by_uid: dict[str, tuple[StorageKey, Key]] = {}
        self._dependents: dict[str, set[tuple[StorageKey, Key]]] = {}
        self._pending: deque[tuple[tuple[Any, ...] | None, Callable[[], None]]] = deque()
        self._pending_once: set[Any] = set()
        # What names made from generateName draw on (seeded, for clusters that repeat a run).
        self.random = random.Random(seed)
        self.max_watch_backlog = max_watch_backlog
        # Called (from any thread) when background work is queued; without it the work runs inline.
        self.on_background: Callable[[], None] | None = None
        # The built-in controllers (kubesim.controllers), told of writes in the order they were added.
        self.controllers: list[Controller] = []
        self._told: dict[str, list[Callable[..., None]]] = {
            hook: [] for hook in ("created", "updated", "terminating", "removed", "changed")
        }

    # -----------------------------------------------------------------------------------------------------
    # Lookup helpers

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def log_floor(self) -> int:
        """The resource version of the newest change that fell out of the watch log: watches and continue
        tokens must start after it."""
        return self._floor

    @property
    def lock(self) -> threading.RLock:
        """The store's lock: hold it to read, check and write as one step (verbs in kubesim.verbs do)."""
        return self._lock

    def type(self, name: str) -> ResourceType:
        """A served type by plural, short name or kind (`"pods"`, `"po"`, `"widgets.test.kubesim.dev"`)."""
        rt = self.registry.resolve(name)
        if rt is None:
            raise not_found("resource", name)
        return rt

    def bucket(self, rt: ResourceType) -> dict[Key, dict[str, Any]]:
        """The stored objects of `rt`'s kind by (namespace, name): the store's own mapping, not a copy, to
        read (not change) under the lock."""
        return self._objects.setdefault(rt.storage_key, {})

    def _key(self, rt: ResourceType, namespace: str | None, name: str) -> Key:
        return ((namespace or "") if rt.namespaced else "", name)

    def _raw(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self.bucket(rt).get(self._key(rt, namespace, name))
        if obj is None:
            raise not_found(rt.plural, name, rt.group)
        return obj

    def present(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """The stored object as served at `rt`'s version (objects are stored at the storage version)."""
        if obj.get("apiVersion") == rt.api_version and obj.get("kind") == rt.kind:
            return obj
        if rt.storage_key == ("", "events") or rt.group == "events.k8s.io":
            return convert_event(obj, rt.api_version)
        served = dict(obj)
        served["apiVersion"] = rt.api_version
        return served

    def encoded(self, rt: ResourceType, obj: dict[str, Any]) -> bytes:
        """JSON of a stored object as served at `rt`, cached for objects at the storage version."""
        if obj.get("apiVersion") != rt.api_version:
            return _encode(self.present(rt, obj))
        meta = obj.get("metadata", {})
        key = (meta.get("namespace") or "", meta.get("name", ""))
        cache = self._encoded.setdefault(rt.storage_key, {})
        data = cache.get(key)
        stored = self._objects.get(rt.storage_key, {}).get(key)
        if data is None or stored is not obj:
            data = _encode(obj)
            if stored is obj:
                cache[key] = data
        return data

    def encoded_change(self, rt: ResourceType, change: Change, event_type: str) -> bytes:
        """A watch line (`{"type":...,"object":...}` and a newline), encoded once per served version."""
        cache_key = f"{event_type}:{rt.api_version}"
        line = change.lines.get(cache_key)
        if line is None:
            obj_json = self.encoded(rt, change.obj)
            line = b'{"type":"' + event_type.encode() + b'","object":' + obj_json + b"}\n"
            change.lines[cache_key] = line
        return line

    # -----------------------------------------------------------------------------------------------------
    # Reads

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """A deep copy of the object as served at `rt`; ApiError 404 if absent."""
        with self._lock:
            return copy.deepcopy(self.present(rt, self._raw(rt, namespace, name)))

    def get_raw(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """The stored object itself (not a copy, not converted): callers must not mutate it."""
        with self._lock:
            return self._raw(rt, namespace, name)

    def exists(self, rt: ResourceType, namespace: str | None, name: str) -> bool:
        with self._lock:
            return self._key(rt, namespace, name) in self.bucket(rt)

    # -----------------------------------------------------------------------------------------------------
    # Watches

    def watch(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        resource_version: str | None = None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
        send_initial_events: bool | None = None,
        allow_bookmarks: bool = False,
    ) -> Watcher:
        """Subscribe to changes; must be called from a running event loop (events are queued on it).

        Without a resource version (or with "0") the current objects come first as ADDED events, as the
        API server does; with one, the changes after it are replayed from the log, or ApiError 410 if the
        log no longer reaches back that far. With `send_initial_events`, the initial ADDED events end with
        a BOOKMARK annotated `k8s.io/initial-events-end`.
        """
        labels = labels or LabelSelector()
        fields = fields or FieldSelector()
        check_fields(rt, fields)
        if send_initial_events and not allow_bookmarks:
            raise invalid(
                "ListOptions",
                "",
                [
                    Cause(
                        "allowWatchBookmarks",
                        "Required value: allowWatchBookmarks must be true if sendInitialEvents = true",
                        "FieldValueRequired",
                    )
                ],
            )
        with self._lock:
            watcher = Watcher(
                self, rt, namespace if rt.namespaced else None, labels, fields, self.max_watch_backlog
            )
            initial = send_initial_events or resource_version in (None, "", "0")
            if initial:
                for obj in list_objects(
                    self, rt, namespace, labels=labels, fields=fields, copy_items=False
                ).items:
                    watcher.queue.put_nowait(WatchEvent("ADDED", obj=obj))
                if send_initial_events:
                    watcher.queue.put_nowait(
                        WatchEvent("BOOKMARK", obj=self.bookmark(rt, initial_events_end=True))
                    )
            else:
                try:
                    since = int(str(resource_version))
                except ValueError:
                    raise bad_request(f'invalid resource version "{resource_version}"') from None
                if since < self._floor:
                    raise gone(f"too old resource version: {since} ({self._floor + 1})")
                replay: list[Change] = []
                for change in reversed(self._log):
                    if change.rv <= since:
                        break
                    replay.append(change)
                for change in reversed(replay):
                    event = watcher.event_for(change)
                    if event is not None:
                        watcher.queue.put_nowait(event)
            self._watchers.add(watcher)
            return watcher

    def bookmark(self, rt: ResourceType, *, initial_events_end: bool = False) -> dict[str, Any]:
        """A BOOKMARK event object: only kind, apiVersion and the current resource version."""
        meta: dict[str, Any] = {"resourceVersion": str(self._rv)}
        if initial_events_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}

    def unsubscribe(self, watcher: Watcher) -> None:
        """Stop offering changes to a watcher (it calls this when it closes)."""
        with self._lock:
            self._watchers.discard(watcher)

    def close_watchers(self, predicate: Callable[[Watcher], bool] | None = None) -> int:
        """End watch streams (all, or those matching); returns how many. Fault injection uses this."""
        with self._lock:
            chosen = [w for w in self._watchers if predicate is None or predicate(w)]
        for watcher in chosen:
            watcher.close()
        return len(chosen)

    @property
    def watcher_count(self) -> int:
        return len(self._watchers)

    # -----------------------------------------------------------------------------------------------------
    # Writes: the common commit path

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _commit(
        self, rt: ResourceType, event_type: str, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        """Store (or remove) an object at a new resource version and fan the change out to watchers."""
        rv = self._next_rv()
        meta = meta_of(obj)
        meta["resourceVersion"] = str(rv)
        key = (meta.get("namespace") or "", meta["name"])
        bucket = self.bucket(rt)
        self._encoded.get(rt.storage_key, {}).pop(key, None)
        uid = str(meta.get("uid", ""))
        if event_type == "DELETED":
            bucket.pop(key, None)
            self._by_uid.pop(uid, None)
        else:
            bucket[key] = obj
            self._by_uid[uid] = (rt.storage_key, key)
        old_owners = owner_uids(old) if old is not None else set()
        new_owners = owner_uids(obj) if event_type != "DELETED" else set()
        for owner in old_owners - new_owners:
            dependents = self._dependents.get(owner)
            if dependents is not None:
                dependents.discard((rt.storage_key, key))
                if not dependents:
                    del self._dependents[owner]
        for owner in new_owners - old_owners:
            self._dependents.setdefault(owner, set()).add((rt.storage_key, key))
        if len(self._log) == self._log.maxlen:
            self._floor = self._log[0].rv
        change = Change(event_type, rv, rt.storage_key, obj, old)
        self._log.append(change)
        for watcher in list(self._watchers):
            watcher.offer(change)
        for tell in self._told["changed"]:
            tell(change)

    def _defer(self, work: Callable[[], None], once: tuple[Any, ...] | None = None) -> None:
        """Queue controller work; with `once`, work already queued under the same key is not queued again."""
        if once is not None:
            if once in self._pending_once:
                return
            self._pending_once.add(once)
        self._pending.append((once, work))

    def queue(self, work: Callable[[], None], once: tuple[Any, ...] | None = None) -> None:
        """Queue controller work to run after the current write (see `_defer`); for controllers that live
        in modules of their own."""
        with self._lock:
            self._defer(work, once)

    def holds_any(self, storage_key: StorageKey, namespace: str) -> bool:
        """Whether any object of the kind is stored in the namespace."""
        with self._lock:
            return any(key[0] == namespace for key in self._objects.get(storage_key, {}))

    def type_for_storage(self, storage_key: StorageKey) -> ResourceType | None:
        """The served type (its storage version) of objects stored under `storage_key`."""
        return self._type_for_storage(storage_key)

    # -----------------------------------------------------------------------------------------------------
    # The controller-facing API: what the built-in controllers (kubesim.controllers) write through

    def add_controller(self, controller: Controller) -> None:
        """Tell `controller` of every write from now on, after the controllers added before it."""
        with self._lock:
            self.controllers.append(controller)
            for hook, told in self._told.items():
                # Only the hooks a controller defines are called (every write calls them).
                if getattr(type(controller), hook) is not getattr(Controller, hook):
                    told.append(getattr(controller, hook))

    def commit(
        self,
        rt: ResourceType,
        new: dict[str, Any],
        current: dict[str, Any],
        *,
        gone: bool = False,
        terminating: bool = False,
        updated: bool = False,
    ) -> None:
        """Store a controller's new state of a stored object as it is (no admission, no controllers told),
        at a new resource version: for status a controller owns, as the API server's status strategy.
        With `gone`, remove the object in that state instead (the controllers are told it is gone); with
        `terminating`, the controllers are told it is terminating (its finalizers' work is queued); with
        `updated`, they are told it was updated, and that it is terminating if it is (as after a client's
        write: `kubesim.verbs.update.write` commits so)."""
        with self._lock:
            if gone:
                self._commit(rt, "DELETED", new, current)
                self._after_removal(rt, new)
            else:
                self._commit(rt, "MODIFIED", new, current)
                if updated:
                    self._after_update(rt, new, current)
                elif terminating:
                    self._queue_finalizer_work(rt, new)

    def add(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Store a new object as it is at its first resource version, and tell the controllers it was
        created (`kubesim.verbs.create` adds so, after admission)."""
        with self._lock:
            self._commit(rt, "ADDED", obj, None)
            for tell in self._told["created"]:
                tell(rt, obj)

    def lookup(self, storage_key: StorageKey, key: Key) -> tuple[ResourceType, dict[str, Any]] | None:
        """The stored object (not a copy) under (namespace, name) `key` with its storage type, if any."""
        with self._lock:
            return self._lookup(storage_key, key)

    def keys_of(self, storage_key: StorageKey) -> Keys:
        """The (namespace, name) keys of every stored object of a kind."""
        with self._lock:
            return list(self._objects.get(storage_key, {}))

    def remove(
        self, rt: ResourceType, namespace: str | None, name: str, propagation_policy: str | None = None
    ) -> None:
        """Delete an object as a controller: `delete`'s semantics, with the queued work left to the caller's
        run (controllers run inside one already)."""
        from kubesim.verbs.deletion import delete_locked  # it builds on this module

        with self._lock:
            delete_locked(self, rt, namespace, name, propagation_policy, {}, None, False)

    def stored_in(self, namespace: str) -> Locations:
        """Where every stored object of the namespace is (all kinds), in storage order."""
        with self._lock:
            return [
                (storage_key, key)
                for storage_key, bucket in list(self._objects.items())
                for key in bucket
                if key[0] == namespace
            ]

    def located(self, uid: str) -> tuple[StorageKey, Key] | None:
        """Where the stored object with this uid is: its storage key and (namespace, name); None if absent."""
        return self._by_uid.get(uid)

    def dependents_of(self, owner_uid: str) -> Locations:
        """Where the objects whose ownerReferences name `owner_uid` are, in order."""
        with self._lock:
            return sorted(self._dependents.get(owner_uid, set()))

    def replace(
        self,
        rt: ResourceType,
        current: dict[str, Any],
        new: dict[str, Any],
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        field_validation: str | None = None,
        warnings: Warnings | None = None,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        """Write a new state of a stored object through `update`'s semantics (admission, generation, the
        deletion it may complete, the controllers told), with queued work left to the caller's run (or
        `after_write`); returns the object as written. `new` is taken as it is, not copied."""
        from kubesim.verbs.update import write  # it builds on this module

        with self._lock:
            return write(
                self, rt, current, new, subresource, dry_run, field_validation, warnings, field_manager
            )

    def remove_finalizer(self, storage_key: StorageKey, key: Key, finalizer: str) -> None:
        """Drop one finalizer of a stored object, if it has it (the object goes when it was the last)."""
        with self._lock:
            self._remove_finalizer(storage_key, key, finalizer)

    def after_write(self) -> None:
        """Run (or hand to `on_background`) the controller work a write queued; call it outside the lock."""
        if not self._pending:
            return
        if self.on_background is not None:
            self.on_background()
        else:
            self.run_background()

    def run_background(self) -> int:
        """Run queued controller work (GC, namespace and CRD cleanup) until none is left; returns steps run."""
        steps = 0
        while True:
            with self._lock:
                if not self._pending:
                    return steps
                once, work = self._pending.popleft()
                self._pending_once.discard(once)
                # An ApiError means the object moved on (deleted, conflicting); a later change re-queues the work.
                with contextlib.suppress(ApiError):
                    work()
                steps += 1

    def check_kind(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        """Refuse a body of another kind or group; set the kind and apiVersion of `rt` on it."""
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        if kind is not None and kind != rt.kind:
            raise bad_request(
                f"the kind of the object ({kind}) does not match the kind of the resource ({rt.kind})"
            )
        if api_version is not None and api_version != rt.api_version:
            group = api_version.rpartition("/")[0]
            if group != rt.group:
                raise bad_request(
                    f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
                )
        obj["kind"] = rt.kind
        obj["apiVersion"] = rt.api_version

    # -----------------------------------------------------------------------------------------------------
    # Controllers: what the controller manager would do after a write

    def _after_update(self, rt: ResourceType, new: dict[str, Any], old: dict[str, Any]) -> None:
        for tell in self._told["updated"]:
            tell(rt, new, old)
        if new["metadata"].get("deletionTimestamp"):
            self._queue_finalizer_work(rt, new)

    def _after_removal(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        if rt.storage_key == (CRD_GROUP, "customresourcedefinitions"):
            # A CRD that is gone is no longer served: its objects and its watches go with it.
            removed = self.registry.remove_crd(meta["name"])
            for removed_rt in removed:
                self._objects.pop(removed_rt.storage_key, None)
                self._encoded.pop(removed_rt.storage_key, None)
            keys = {r.storage_key for r in removed}
            self._close_watchers_later(lambda w: w.rt.storage_key in keys)
        for tell in self._told["removed"]:
            tell(rt, obj)

    def _close_watchers_later(self, predicate: Callable[[Watcher], bool]) -> None:
        def close() -> None:
            self.close_watchers(predicate)

        self._defer(close)

    def _queue_finalizer_work(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        for tell in self._told["terminating"]:
            tell(rt, obj)

    def _lookup(self, storage_key: StorageKey, key: Key) -> tuple[ResourceType, dict[str, Any]] | None:
        obj = self._objects.get(storage_key, {}).get(key)
        if obj is None:
            return None
        rt = self._type_for_storage(storage_key)
        return (rt, obj) if rt is not None else None

    def _type_for_storage(self, storage_key: StorageKey) -> ResourceType | None:
        versions = self.registry.versions_of(*storage_key)
        for rt in versions:
            if rt.version == rt.storage_version:
                return rt
        return versions[0] if versions else None

    def _remove_finalizer(self, storage_key: StorageKey, key: Key, finalizer: str) -> None:
        found = self._lookup(storage_key, key)
        if found is None:
            return
        rt, obj = found
        finalizers = list(obj["metadata"].get("finalizers") or [])
        if finalizer not in finalizers:
            return
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in finalizers if f != finalizer]
        if not new["metadata"]["finalizers"]:
            del new["metadata"]["finalizers"]
        self.replace(rt, obj, new)

    # -----------------------------------------------------------------------------------------------------
    # Convenience for tests and in-process callers (a LoopBoundStore runs these on the cluster's loop)

    def create(
        self, rt: ResourceType, namespace: str | None, body: dict[str, Any], **options: Any
    ) -> dict[str, Any]:
        """`kubesim.verbs.create.create` on this store."""
        from kubesim.verbs.create import create  # it builds on this module

        return create(self, rt, namespace, body, **options)

    def update(
        self, rt: ResourceType, namespace: str | None, name: str, body: dict[str, Any], **options: Any
    ) -> dict[str, Any]:
        """`kubesim.verbs.update.update` on this store."""
        from kubesim.verbs.update import update  # it builds on this module

        return update(self, rt, namespace, name, body, **options)

    def objects(self, rt: ResourceType, namespace: str | None = None) -> Objects:
        """Copies of all objects of a type (optionally in one namespace), in key order."""
        return list_objects(self, rt, namespace).items

    def list(self, rt: ResourceType, namespace: str | None = None, **options: Any) -> ListResult:
        """`kubesim.listing.list_objects` on this store."""
        return list_objects(self, rt, namespace, **options)

    def apply_object(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create `obj`, or replace it if it exists (ignoring resourceVersion): a test fixture shortcut."""
        rt = self.registry.by_api_version(obj["apiVersion"], obj["kind"])
        if rt is None:
            raise not_found("resource", f"{obj['apiVersion']}/{obj['kind']}")
        meta = obj.get("metadata", {})
        namespace = meta.get("namespace") or ("default" if rt.namespaced else None)
        if self.exists(rt, namespace, meta["name"]):
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = self.get_raw(rt, namespace, meta["name"])["metadata"][
                "resourceVersion"
            ]
            return self.update(rt, namespace, meta["name"], body)
        return self.create(rt, namespace, obj)


# ---------------------------------------------------------------------------------------------------------
# Helpers


def set_condition(
    obj: dict[str, Any], type_: str, status: str, reason: str, message: str, clock: Callable[[], dt.datetime]
) -> None:
    conditions: list[dict[str, Any]] = obj.setdefault("status", {}).setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = now_rfc3339(clock)
            cond.update(status=status, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": type_,
            "status": status,
            "lastTransitionTime": now_rfc3339(clock),
            "reason": reason,
            "message": message,
        }
    )
