"""What the ImageCatalogs have published, and which OS image and extension versions automatic upgrades choose.

Rules, each from the issue and the VM behaviour it mirrors:

- Newest by semantic version (see :mod:`planning.images`); a tag that is no version is never chosen.
- Never a downgrade: only a version newer than the one the instances run (or target) is chosen, and
  an image the template pins by digest or by a tag that is no version is never upgraded.
- Only versions published at or before ``now``: a catalog may announce a release ahead of time.
- A version that was rolled back is skipped; the next published one is chosen.
- Several ImageCatalogs are one catalog: their versions of the same repository are merged.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from scaleset_operator.api.models import (
    ImageCatalog,
    PatchClassification,
    RolledBackVersion,
    ScaleSetSpec,
)
from scaleset_operator.planning.images import (
    ImageReference,
    ImageReferenceError,
    TagVersion,
    compatible,
    normalize_repository,
    parse_image,
    tag_version,
)


def parse_time(text: str, field: str) -> datetime:
    """An RFC 3339 time with an offset; ValueError naming `field` otherwise."""
    try:
        instant = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not an RFC 3339 time such as 2026-11-20T08:00:00Z.") from None
    if instant.tzinfo is None:
        raise ValueError(f"{field}: {text!r} has no offset; write Z or +hh:mm.")
    return instant


def format_time(instant: datetime) -> str:
    return instant.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Release:
    """One published version of a repository."""

    repository: str
    version: str
    published_at: datetime
    tag: TagVersion | None


@dataclass(frozen=True)
class Patch:
    """One published guest patch, its repositories normalised."""

    id: str
    classification: PatchClassification
    applies_to: frozenset[str]
    image: str | None
    hotpatch: bool
    reboot_required: bool
    published_at: datetime | None

    @property
    def restarts(self) -> bool:
        """Applying it restarts the OS container: a patched image, or a patch that says so."""
        return self.image is not None or self.reboot_required


@dataclass(frozen=True)
class Catalog:
    """Every ImageCatalog merged; `problems` holds one sentence per entry that could not be used."""

    images: Mapping[str, tuple[Release, ...]] = field(default_factory=dict)
    extensions: Mapping[str, tuple[Release, ...]] = field(default_factory=dict)
    extension_repositories: Mapping[str, str] = field(default_factory=dict)
    patches: tuple[Patch, ...] = ()
    problems: tuple[str, ...] = ()

    def release(self, repository: str, version: str) -> Release | None:
        """The published release of `repository` at tag `version`, OS image or extension."""
        for releases in (self.images.get(repository, ()), *self.extensions.values()):
            for release in releases:
                if release.repository == repository and release.version == version:
                    return release
        return None


def _releases(source: str, repository: str, versions: Iterable[Any], problems: list[str]) -> list[Release]:
    releases = []
    for index, published in enumerate(versions):
        try:
            when = parse_time(published.published_at, f"{source}.versions[{index}].publishedAt")
        except ValueError as error:
            problems.append(str(error))
            continue
        releases.append(Release(repository, published.version, when, tag_version(published.version)))
    return releases


def index_catalogs(catalogs: Iterable[ImageCatalog]) -> Catalog:
    """Merge ImageCatalogs into one Catalog; unusable entries are skipped and named in `problems`."""
    images: dict[str, list[Release]] = {}
    extensions: dict[str, list[Release]] = {}
    extension_repositories: dict[str, str] = {}
    patches: dict[str, Patch] = {}
    problems: list[str] = []
    for catalog in sorted(catalogs, key=lambda item: item.metadata.name or ""):
        prefix = f"ImageCatalog {catalog.metadata.name}: spec"
        for index, image in enumerate(catalog.spec.images):
            source = f"{prefix}.images[{index}]"
            try:
                repository = normalize_repository(image.repository, f"{source}.repository")
            except ImageReferenceError as error:
                problems.append(str(error))
                continue
            images.setdefault(repository, []).extend(_releases(source, repository, image.versions, problems))
        for index, extension in enumerate(catalog.spec.extensions):
            source = f"{prefix}.extensions[{index}]"
            try:
                repository = normalize_repository(extension.repository, f"{source}.repository")
            except ImageReferenceError as error:
                problems.append(str(error))
                continue
            known = extension_repositories.setdefault(extension.name, repository)
            if known != repository:
                problems.append(
                    f"{source}.repository: extension {extension.name!r} is published from {known} already, "
                    f"not {repository}."
                )
                continue
            extensions.setdefault(extension.name, []).extend(
                _releases(source, repository, extension.versions, problems)
            )
        for index, published in enumerate(catalog.spec.patches):
            source = f"{prefix}.patches[{index}]"
            try:
                applies_to = frozenset(
                    normalize_repository(text, f"{source}.appliesTo[{number}]")
                    for number, text in enumerate(published.applies_to)
                )
                if published.image is not None:
                    parse_image(published.image, f"{source}.image")
                when = (
                    None
                    if published.published_at is None
                    else parse_time(published.published_at, f"{source}.publishedAt")
                )
            except ValueError as error:
                problems.append(str(error))
                continue
            if published.id in patches:
                problems.append(f"{source}.id: patch {published.id!r} is published twice; the first counts.")
                continue
            patches[published.id] = Patch(
                published.id,
                PatchClassification(published.classification),
                applies_to,
                published.image,
                published.hotpatch and published.image is None,
                published.reboot_required,
                when,
            )
    return Catalog(
        {repository: tuple(releases) for repository, releases in images.items()},
        {name: tuple(releases) for name, releases in extensions.items()},
        extension_repositories,
        tuple(patches.values()),
        tuple(problems),
    )


# --------------------------------------------------------------------------- choosing a version


def newest_release(
    releases: Iterable[Release],
    running: TagVersion,
    now: datetime,
    rolled_back: Collection[str] = (),
) -> Release | None:
    """The newest release newer than `running`, of its variant, published by `now`, not rolled back.

    Ties of precedence (``1.27`` and ``1.27.0``) go to the earlier publication, then the shorter tag,
    so the answer never depends on the order of the catalog.
    """
    candidates = [
        release
        for release in releases
        if release.tag is not None
        and release.published_at <= now
        and release.version not in rolled_back
        and compatible(release.tag, running)
        and release.tag.newer_than(running)
    ]
    if not candidates:
        return None
    newest = max(release.tag.version for release in candidates if release.tag is not None)
    return min(
        (release for release in candidates if release.tag is not None and release.tag.version == newest),
        key=lambda release: (release.published_at, len(release.version), release.version),
    )


class ResolutionReason(StrEnum):
    """Why a container gets, or does not get, a new version; CamelCase for conditions and Events."""

    NEWER_VERSION = "NewerVersionPublished"
    UP_TO_DATE = "UpToDate"
    NOT_IN_CATALOG = "NotInCatalog"
    NOT_A_VERSION = "ImageNotVersioned"
    OTHER_REPOSITORY = "RepositoryNotInCatalog"
    REQUESTED = "RequestedVersion"


@dataclass(frozen=True)
class Resolution:
    """The answer for one container: the release to move to, if any, and why."""

    kind: str  # OSImage or Extension
    name: str  # the repository for an OS image, the extension's name for an extension
    container: str
    running_image: str
    repository: str | None
    reason: ResolutionReason
    message: str
    release: Release | None = None

    @property
    def image(self) -> str | None:
        """The reference the container gets, written like the template's (``nginx:1.27``)."""
        if self.release is None:
            return None
        return parse_image(self.running_image, "image").with_tag(self.release.version)


def container_image(template: Mapping[str, Any], container: str) -> str | None:
    for item in (template.get("spec") or {}).get("containers") or []:
        if item.get("name") == container:
            image = item.get("image")
            return str(image) if image is not None else None
    return None


def _rolled_back(rolled_back: Iterable[RolledBackVersion], repository: str) -> set[str]:
    return {item.version for item in rolled_back if item.repository == repository}


def _resolve(
    kind: str,
    name: str,
    container: str,
    running_image: str,
    running: ImageReference,
    releases: Sequence[Release],
    now: datetime,
    rolled_back: Iterable[RolledBackVersion],
) -> Resolution:
    version = running.version
    if version is None:
        pinned = f"digest {running.digest}" if running.digest else f"tag {running.tag or 'latest'!r}"
        return Resolution(
            kind,
            name,
            container,
            running_image,
            running.repository,
            ResolutionReason.NOT_A_VERSION,
            f"{running_image} is pinned by {pinned}, which is no semantic version, so it is never upgraded.",
        )
    release = newest_release(releases, version, now, _rolled_back(rolled_back, running.repository))
    if release is None:
        return Resolution(
            kind,
            name,
            container,
            running_image,
            running.repository,
            ResolutionReason.UP_TO_DATE,
            f"{running_image} is the newest published version.",
        )
    return Resolution(
        kind,
        name,
        container,
        running_image,
        running.repository,
        ResolutionReason.NEWER_VERSION,
        f"{running.repository}:{release.version} was published at {format_time(release.published_at)}.",
        release,
    )


def resolve_os_image(
    spec: ScaleSetSpec,
    running_template: Mapping[str, Any],
    catalog: Catalog,
    now: datetime,
    rolled_back: Iterable[RolledBackVersion] = (),
) -> Resolution:
    """The OS image version an automatic OS upgrade moves to, from the template the instances run now.

    `running_template` is the effective template (spec.template with what automatic updates chose),
    so a version already chosen is the one newer versions are compared with.
    """
    container = spec.os_container_name
    running_image = container_image(running_template, container) or ""
    running = parse_image(running_image, f"spec.template.spec.containers[{container}].image")
    releases = catalog.images.get(running.repository)
    if not releases:
        return Resolution(
            "OSImage",
            running.repository,
            container,
            running_image,
            running.repository,
            ResolutionReason.NOT_IN_CATALOG,
            f"No ImageCatalog publishes {running.repository}.",
        )
    return _resolve(
        "OSImage", running.repository, container, running_image, running, releases, now, rolled_back
    )


def resolve_extensions(
    spec: ScaleSetSpec,
    running_template: Mapping[str, Any],
    catalog: Catalog,
    now: datetime,
    rolled_back: Iterable[RolledBackVersion] = (),
) -> list[Resolution]:
    """For each extension with enableAutomaticUpgrade, the version its sidecar moves to, in spec order.

    The catalog's extension of the same name is the source; its repository must be the sidecar's.
    """
    resolutions = []
    for extension in spec.extensions:
        if not extension.enable_automatic_upgrade:
            continue
        running_image = container_image(running_template, extension.container) or ""
        field_name = f"spec.template.spec.containers[{extension.container}].image"
        running = parse_image(running_image, field_name)
        repository = catalog.extension_repositories.get(extension.name)
        if repository is None:
            resolutions.append(
                Resolution(
                    "Extension",
                    extension.name,
                    extension.container,
                    running_image,
                    running.repository,
                    ResolutionReason.NOT_IN_CATALOG,
                    f"No ImageCatalog publishes extension {extension.name!r}.",
                )
            )
            continue
        if repository != running.repository:
            resolutions.append(
                Resolution(
                    "Extension",
                    extension.name,
                    extension.container,
                    running_image,
                    running.repository,
                    ResolutionReason.OTHER_REPOSITORY,
                    f"spec.extensions[{extension.name}]: the catalog publishes it from {repository}, "
                    f"but container {extension.container!r} runs {running.repository}.",
                )
            )
            continue
        resolutions.append(
            _resolve(
                "Extension",
                extension.name,
                extension.container,
                running_image,
                running,
                catalog.extensions[extension.name],
                now,
                rolled_back,
            )
        )
    return resolutions


def requested_os_image(
    spec: ScaleSetSpec, running_template: Mapping[str, Any], catalog: Catalog, version: str, now: datetime
) -> Resolution:
    """An OS upgrade asked for by hand (``--to VERSION``): that published version, or the newest when empty.

    A version asked for by hand may be any published semantic version of the running repository,
    older and rolled back ones included: the user decided. It must be published by `now`; one at or
    below the version spec.template names gives the template's image back.
    """
    if not version:
        return resolve_os_image(spec, running_template, catalog, now)
    container = spec.os_container_name
    running_image = container_image(running_template, container) or ""
    running = parse_image(running_image, f"spec.template.spec.containers[{container}].image")
    release = catalog.release(running.repository, version)
    if release is None or release.published_at > now:
        raise ValueError(f"--to: no ImageCatalog has published {running.repository}:{version}.")
    if release.tag is None:
        raise ValueError(
            f"--to: {version!r} is no semantic version, so it cannot be compared with the template's."
        )
    return Resolution(
        "OSImage",
        running.repository,
        container,
        running_image,
        running.repository,
        ResolutionReason.REQUESTED,
        f"{running.repository}:{version} was asked for.",
        release,
    )
