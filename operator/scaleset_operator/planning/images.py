"""Container image references and the semantic versions of their tags, as automatic upgrades compare them.

References are parsed by ``docker-image-py``, a port of the reference grammar of the container
registry distribution project, with Docker's familiar-name normalisation: ``nginx``,
``library/nginx`` and ``docker.io/library/nginx`` name one repository, and ``localhost:5000/os``
keeps its registry port.

Tags are compared by semantic version (the ``semver`` package, semver.org 2.0 precedence). Container
tags are looser than semver, so a tag counts as a version when, after an optional leading ``v``, it
is ``MAJOR[.MINOR[.PATCH]][-SUFFIX]``: ``1.27`` is 1.27.0. A suffix (``1.27-alpine``,
``2.0.0-rc.1``) is a variant: a tagged image only ever moves to a tag with the same suffix, as a
running ``1.25-alpine`` must not become ``1.27`` and a release must not become a release candidate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import semver
from docker_image import reference as distribution_reference

_LOOSE_VERSION = re.compile(r"^v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?(?:-([0-9A-Za-z.-]+))?$")


class ImageReferenceError(ValueError):
    """An image reference that does not follow the reference grammar; the message names the field."""

    def __init__(self, field: str, reference: str, problem: str) -> None:
        super().__init__(f"{field}: {reference!r} is not an image reference ({problem}).")
        self.field = field


@dataclass(frozen=True)
class ImageReference:
    """A parsed image reference: the normalised repository, and the tag and digest if written."""

    text: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def written_name(self) -> str:
        """The repository as the user wrote it (``nginx``, not ``docker.io/library/nginx``)."""
        name = self.text.split("@", 1)[0]
        if self.tag is not None:
            name = name[: -(len(self.tag) + 1)]
        return name

    def with_tag(self, tag: str) -> str:
        """The reference to the same repository, as the user wrote it, at another tag (no digest)."""
        return f"{self.written_name}:{tag}"

    @property
    def version(self) -> TagVersion | None:
        return tag_version(self.tag) if self.tag is not None and self.digest is None else None


def parse_image(text: str, field: str) -> ImageReference:
    """Parse an image reference; ImageReferenceError names `field` when it is not one."""
    try:
        parsed: Any = distribution_reference.Reference.parse_normalized_named(text)
    except distribution_reference.InvalidReference as error:
        raise ImageReferenceError(field, text, str(error)) from None
    except Exception as error:  # the digest module raises its own types for a malformed digest
        raise ImageReferenceError(field, text, str(error) or type(error).__name__) from None
    return ImageReference(
        text=text,
        repository=str(parsed["name"]),
        tag=None if parsed["tag"] is None else str(parsed["tag"]),
        digest=None if parsed["digest"] is None else str(parsed["digest"]),
    )


def normalize_repository(text: str, field: str) -> str:
    """The normalised name of a repository written with no tag and no digest."""
    reference = parse_image(text, field)
    if reference.tag is not None or reference.digest is not None:
        raise ImageReferenceError(field, text, "a repository has no tag and no digest")
    return reference.repository


@dataclass(frozen=True)
class TagVersion:
    """The semantic version of a tag and its variant suffix ('' for a plain release)."""

    version: semver.Version
    variant: str

    def newer_than(self, other: TagVersion) -> bool:
        return self.version.compare(other.version) > 0

    def same_precedence(self, other: TagVersion) -> bool:
        return self.version.compare(other.version) == 0


def tag_version(tag: str) -> TagVersion | None:
    """The version a tag names, or None for a tag that is no version (``latest``, ``stable``, ``22.04.x``)."""
    match = _LOOSE_VERSION.match(tag)
    if match is None:
        return None
    major, minor, patch, suffix = match.groups()
    text = f"{major}.{minor or 0}.{patch or 0}"
    try:
        # semver validates the suffix as a pre-release (dot-separated identifiers, no leading zeros
        # in numeric ones) and gives the precedence rules; a suffix it refuses makes no version.
        version = semver.Version.parse(f"{text}-{suffix}" if suffix else text)
    except ValueError:
        return None
    return TagVersion(version, suffix or "")


def compatible(candidate: TagVersion, running: TagVersion) -> bool:
    """Whether an image at `running` may move to `candidate`: the same variant suffix.

    The whole suffix is the variant, so ``2.0.0-rc.1`` never moves to ``2.0.0-rc.2`` by itself; a
    user who runs a release candidate chose it and names the next one.
    """
    return candidate.variant == running.variant
