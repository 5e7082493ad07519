"""The garbage collector: dependents follow their owners (ownerReferences), as kube-controller-manager's.

- Background deletion: once every owner of an object is gone, the object is deleted; an owner of several
  that goes is dropped from the references of the dependents that keep another. An object created with
  only owners that do not exist is collected too.
- Orphan deletion (the `orphan` finalizer): the owner's dependents lose their reference to it, then the
  finalizer is dropped.
- Foreground deletion (the `foregroundDeletion` finalizer): the dependents are deleted in the foreground
  too, and the owner goes once no dependent whose reference sets `blockOwnerDeletion` is left.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from kubesim.resources import ResourceType
from kubesim.store import FINALIZER_FOREGROUND, FINALIZER_ORPHAN, Controller, Key, owner_uids
from kubesim.watch import StorageKey


class GarbageCollector(Controller):
    def created(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        owners = owner_uids(obj)
        if owners and not any(self.store.located(uid) for uid in owners):
            # Every owner is absent (a uid that never existed or is already gone): collect the dependent.
            meta = obj["metadata"]
            key = (meta.get("namespace") or "", meta["name"])
            self.store.queue(lambda: self.collect_orphan(rt.storage_key, key))

    def terminating(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        finalizers = meta.get("finalizers") or []
        key, uid = (meta.get("namespace") or "", meta["name"]), meta["uid"]
        if FINALIZER_ORPHAN in finalizers:
            self.store.queue(lambda: self.orphan_dependents(rt.storage_key, key, uid), once=("orphan", uid))
        if FINALIZER_FOREGROUND in finalizers:
            self.store.queue(lambda: self.delete_dependents_foreground(uid), once=("fg-delete", uid))
            self.store.queue(lambda: self.finish_foreground(uid), once=("fg", uid))

    def removed(self, rt: ResourceType, obj: dict[str, Any]) -> None:
        uid = str(obj["metadata"].get("uid", ""))
        if self.store.dependents_of(uid):
            self.store.queue(lambda: self.collect_dependents(uid), once=("gc", uid))
        for owner_uid in owner_uids(obj):
            # An owner deleted in the foreground waits for its dependents; this one is gone now.
            where = self.store.located(owner_uid)
            owner = self.store.lookup(*where) if where is not None else None
            if owner is not None and FINALIZER_FOREGROUND in (owner[1]["metadata"].get("finalizers") or []):
                self.store.queue(functools.partial(self.finish_foreground, owner_uid), once=("fg", owner_uid))

    def collect_orphan(self, storage_key: StorageKey, key: Key) -> None:
        found = self.store.lookup(storage_key, key)
        if found is None:
            return
        rt, obj = found
        if not any(self.store.located(uid) for uid in owner_uids(obj)):
            self.store.remove(rt, key[0] or None, key[1])

    def collect_dependents(self, owner_uid: str) -> None:
        """Background cascading deletion: dependents whose owners are all gone are deleted."""
        for storage_key, key in self.store.dependents_of(owner_uid):
            found = self.store.lookup(storage_key, key)
            if found is None:
                continue
            rt, obj = found
            if obj["metadata"].get("deletionTimestamp"):
                continue
            refs = obj["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r.get("uid") and self.store.located(r["uid"])]
            if alive:
                if len(alive) != len(refs):
                    new = copy.deepcopy(obj)
                    new["metadata"]["ownerReferences"] = alive
                    self.store.replace(rt, obj, new)
                continue
            self.store.remove(rt, key[0] or None, key[1])

    def orphan_dependents(self, storage_key: StorageKey, key: Key, owner_uid: str) -> None:
        for dep_key, dep in self.store.dependents_of(owner_uid):
            found = self.store.lookup(dep_key, dep)
            if found is None:
                continue
            rt, obj = found
            new = copy.deepcopy(obj)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != owner_uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.store.replace(rt, obj, new)
        self.store.remove_finalizer(storage_key, key, FINALIZER_ORPHAN)

    def delete_dependents_foreground(self, owner_uid: str) -> None:
        for storage_key, key in self.store.dependents_of(owner_uid):
            found = self.store.lookup(storage_key, key)
            if found is None or found[1]["metadata"].get("deletionTimestamp"):
                continue
            self.store.remove(found[0], key[0] or None, key[1], "Foreground")

    def finish_foreground(self, owner_uid: str) -> None:
        where = self.store.located(owner_uid)
        if where is None:
            return
        found = self.store.lookup(*where)
        if found is None or FINALIZER_FOREGROUND not in (found[1]["metadata"].get("finalizers") or []):
            return
        # As the garbage collector: only dependents whose reference sets blockOwnerDeletion hold it.
        blocking = [
            d
            for d in self.store.dependents_of(owner_uid)
            if (dependent := self.store.lookup(*d)) is not None
            and any(
                ref.get("uid") == owner_uid and ref.get("blockOwnerDeletion") is True
                for ref in dependent[1]["metadata"].get("ownerReferences") or []
            )
        ]
        if not blocking:
            self.store.remove_finalizer(where[0], where[1], FINALIZER_FOREGROUND)
