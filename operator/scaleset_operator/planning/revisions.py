"""Template revisions: a stable short hash naming each pod template, and what kind of update moves between two."""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

# The alphabet Kubernetes uses for generated names (k8s.io/apimachinery/pkg/util/rand): no vowels, so a
# hash never spells a word, and no look-alikes such as 0/o or 1/l.
_SAFE_ALPHABET: Final = "bcdfghjklmnpqrstvwxz2456789"
_FNV32_OFFSET: Final = 0x811C9DC5
_FNV32_PRIME: Final = 0x01000193

# Fields of a live pod that a client can change and the kubelet acts on: the image of each container (the
# kubelet restarts that container) and the pod's labels and annotations. The API also lets an init
# container's image change, but the kubelet never re-runs a completed init container, so the new image
# would not run until the pod is recreated: that is a reimage. Anything else needs a new pod too.
_CONTAINER_LISTS: Final = ("containers",)
_MUTABLE_METADATA: Final = frozenset({"labels", "annotations"})


class UpdateKind(StrEnum):
    """How an instance moves from one template to another."""

    NONE = "None"
    IN_PLACE = "InPlace"
    REIMAGE = "Reimage"


def _fnv32a(data: bytes) -> int:
    value = _FNV32_OFFSET
    for byte in data:
        value ^= byte
        value = (value * _FNV32_PRIME) & 0xFFFFFFFF
    return value


def _canonical(template: Mapping[str, Any]) -> bytes:
    # Sorted keys and fixed separators make the bytes independent of how the template was written or
    # parsed; default=str keeps YAML timestamps and the like hashable instead of failing.
    return json.dumps(
        template, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode()


def revision_hash(template: Mapping[str, Any], collision_count: int = 0) -> str:
    """A short stable hash of a pod template, shaped like Kubernetes' controller-revision-hash.

    fnv32a over the canonical JSON, written in decimal and each digit mapped to the safe alphabet, so
    the same template always gets the same name across operator restarts. `collision_count` is mixed in
    only when non-zero, to step past a ControllerRevision name that already holds another template.
    """
    data = _canonical(template)
    if collision_count:
        data += str(collision_count).encode()
    return "".join(_SAFE_ALPHABET[ord(digit) % len(_SAFE_ALPHABET)] for digit in str(_fnv32a(data)))


def revision_name(scaleset: str, template: Mapping[str, Any], collision_count: int = 0) -> str:
    """The ControllerRevision name of a template, also the value of each instance's revision label."""
    return f"{scaleset}-{revision_hash(template, collision_count)}"


def _immutable_part(template: Mapping[str, Any]) -> bytes:
    """The template with everything a live pod can take blanked out; equal parts mean IN_PLACE will do."""
    metadata = {
        key: value for key, value in (template.get("metadata") or {}).items() if key not in _MUTABLE_METADATA
    }
    spec = dict(template.get("spec") or {})
    for field in _CONTAINER_LISTS:
        # Containers keep their names and positions: the API server matches them by index on a pod
        # update, so a rename, reorder, addition or removal makes the parts differ.
        spec[field] = [{**container, "image": None} for container in spec.get(field) or []]
    return _canonical({**template, "metadata": metadata, "spec": spec})


def classify_update(old_template: Mapping[str, Any], new_template: Mapping[str, Any]) -> UpdateKind:
    """NONE for equal templates; IN_PLACE when a live pod can take the change; REIMAGE otherwise.

    IN_PLACE covers changed container images (matched by name, in the same order) and changed template
    labels or annotations, since pod metadata is mutable. Any other difference, an init container's
    image or adding and removing a container included, needs a new pod.
    """
    if _canonical(old_template) == _canonical(new_template):
        return UpdateKind.NONE
    if _immutable_part(old_template) == _immutable_part(new_template):
        return UpdateKind.IN_PLACE
    return UpdateKind.REIMAGE
