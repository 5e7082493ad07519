"""Which OS image and extension versions automatic upgrades choose from the ImageCatalogs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.api.models import ImageCatalog, RolledBackVersion, ScaleSetSpec
from scaleset_operator.planning.catalog import (
    Release,
    ResolutionReason,
    index_catalogs,
    newest_release,
    requested_os_image,
    resolve_extensions,
    resolve_os_image,
)
from scaleset_operator.planning.images import tag_version

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
NGINX = "docker.io/library/nginx"


def published(version: str, days_ago: float = 10) -> dict[str, str]:
    return {"version": version, "publishedAt": (NOW - timedelta(days=days_ago)).isoformat()}


def catalog(name: str = "os", **spec: Any) -> ImageCatalog:
    return ImageCatalog.model_validate({"metadata": {"name": name}, "spec": spec})


def scaleset(image: str = "nginx:1.25", **spec: Any) -> ScaleSetSpec:
    containers = [{"name": "app", "image": image}, *spec.pop("sidecars", [])]
    return ScaleSetSpec.model_validate({"template": {"spec": {"containers": containers}}, **spec})


def nginx_catalog(*versions: dict[str, str], repository: str = "nginx") -> ImageCatalog:
    return catalog(images=[{"repository": repository, "versions": list(versions)}])


def choose_os(image: str, *versions: dict[str, str], rolled_back: tuple[str, ...] = ()) -> str | None:
    spec = scaleset(image)
    resolution = resolve_os_image(
        spec,
        spec.template,
        index_catalogs([nginx_catalog(*versions)]),
        NOW,
        [RolledBackVersion(repository=NGINX, version=version) for version in rolled_back],
    )
    return resolution.release.version if resolution.release else None


@pytest.mark.parametrize(
    ("running", "versions", "rolled_back", "chosen"),
    [
        ("nginx:1.25", ["1.26", "1.27.1", "1.27"], (), "1.27.1"),
        ("nginx:1.25", ["1.9", "1.10"], (), None),  # 1.10 < 1.25: never a downgrade
        ("nginx:1.9", ["1.10", "1.9.1"], (), "1.10"),  # numeric, not textual order
        ("nginx:1.25", ["latest", "mainline", "1.26"], (), "1.26"),  # tags that are no version never win
        ("nginx:1.25", ["1.25", "1.25.0"], (), None),  # the same version is no upgrade
        ("nginx:1.25-alpine", ["1.27", "1.26-alpine", "1.27-perl"], (), "1.26-alpine"),
        ("nginx:1.25", ["2.0.0-rc.1", "1.26"], (), "1.26"),  # a release never becomes a release candidate
        ("nginx:1.25", ["1.26", "1.27"], ("1.27",), "1.26"),  # rolled back: the next one is chosen
        ("nginx:1.25", ["1.26", "1.27", "1.28"], ("1.28",), "1.27"),
        ("nginx:1.25", ["1.27"], ("1.27",), None),
        ("nginx:v1.25", ["1.26"], (), "1.26"),
        ("nginx:latest", ["1.26"], (), None),  # a template pinned to no version is never upgraded
        ("nginx", ["1.26"], (), None),
        (f"nginx@sha256:{'a' * 64}", ["1.26"], (), None),
    ],
)
def test_newest_published_version_by_semantic_version(
    running: str, versions: list[str], rolled_back: tuple[str, ...], chosen: str | None
) -> None:
    assert choose_os(running, *(published(v) for v in versions), rolled_back=rolled_back) == chosen


def test_a_version_published_after_now_is_not_chosen_yet() -> None:
    assert choose_os("nginx:1.25", published("1.26", 1), published("1.27", -1)) == "1.26"
    assert choose_os("nginx:1.25", published("1.26", 0)) == "1.26"  # published at now counts


def test_reasons_say_why_nothing_is_chosen() -> None:
    spec = scaleset("nginx:latest")
    empty = index_catalogs([])
    assert resolve_os_image(spec, spec.template, empty, NOW).reason == ResolutionReason.NOT_IN_CATALOG
    cat = index_catalogs([nginx_catalog(published("1.26"))])
    pinned = resolve_os_image(spec, spec.template, cat, NOW)
    assert pinned.reason == ResolutionReason.NOT_A_VERSION
    assert "'latest', which is no semantic version" in pinned.message
    spec = scaleset("nginx:1.26")
    assert resolve_os_image(spec, spec.template, cat, NOW).reason == ResolutionReason.UP_TO_DATE


def test_the_os_container_is_spec_os_container_or_the_first() -> None:
    cat = index_catalogs([catalog(images=[{"repository": "busybox", "versions": [published("1.37")]}])])
    spec = scaleset("nginx:1.25", sidecars=[{"name": "os", "image": "busybox:1.36"}], osContainer="os")
    resolution = resolve_os_image(spec, spec.template, cat, NOW)
    assert (resolution.container, resolution.image) == ("os", "busybox:1.37")


def test_catalogs_are_merged_and_repositories_normalised() -> None:
    first = nginx_catalog(published("1.26"), repository="docker.io/library/nginx")
    second = catalog("b", images=[{"repository": "nginx", "versions": [published("1.27")]}])
    spec = scaleset("library/nginx:1.25")
    resolution = resolve_os_image(spec, spec.template, index_catalogs([first, second]), NOW)
    assert resolution.image == "library/nginx:1.27"  # written as the template wrote it


def test_unusable_catalog_entries_are_skipped_and_named() -> None:
    bad = catalog(
        "broken",
        images=[
            {"repository": "Nginx", "versions": [published("9.0")]},
            {
                "repository": "nginx",
                "versions": [{"version": "1.30", "publishedAt": "yesterday"}, published("1.26")],
            },
        ],
    )
    indexed = index_catalogs([bad])
    assert [release.version for release in indexed.images[NGINX]] == ["1.26"]
    assert indexed.problems[0].startswith("ImageCatalog broken: spec.images[0].repository: 'Nginx'")
    assert (
        "spec.images[1].versions[0].publishedAt: 'yesterday' is not an RFC 3339 time" in indexed.problems[1]
    )


def test_extensions_opt_in_one_by_one_and_match_by_name() -> None:
    cat = index_catalogs(
        [
            catalog(
                extensions=[
                    {
                        "name": "log-agent",
                        "repository": "example.com/agents/log",
                        "versions": [published("2.1.0")],
                    },
                    {
                        "name": "monitor",
                        "repository": "example.com/agents/mon",
                        "versions": [published("5.0")],
                    },
                    {
                        "name": "proxy",
                        "repository": "example.com/other/proxy",
                        "versions": [published("9.0")],
                    },
                ]
            )
        ]
    )
    spec = scaleset(
        sidecars=[
            {"name": "log", "image": "example.com/agents/log:2.0.3"},
            {"name": "mon", "image": "example.com/agents/mon:4.0"},
            {"name": "proxy", "image": "example.com/agents/proxy:1.0"},
        ],
        extensions=[
            {"name": "log-agent", "container": "log", "enableAutomaticUpgrade": True},
            {"name": "monitor", "container": "mon"},
            {"name": "proxy", "container": "proxy", "enableAutomaticUpgrade": True},
            {"name": "unknown", "container": "mon", "enableAutomaticUpgrade": True},
        ],
    )
    resolutions = {item.name: item for item in resolve_extensions(spec, spec.template, cat, NOW)}
    assert set(resolutions) == {"log-agent", "proxy", "unknown"}
    assert resolutions["log-agent"].image == "example.com/agents/log:2.1.0"
    assert resolutions["proxy"].reason == ResolutionReason.OTHER_REPOSITORY
    assert "spec.extensions[proxy]" in resolutions["proxy"].message
    assert resolutions["unknown"].reason == ResolutionReason.NOT_IN_CATALOG


def test_an_upgrade_asked_for_by_hand_takes_the_named_version() -> None:
    cat = index_catalogs([nginx_catalog(published("1.26"), published("1.27"), published("1.28", -3))])
    spec = scaleset("nginx:1.25")
    assert requested_os_image(spec, spec.template, cat, "1.26", NOW).image == "nginx:1.26"
    assert requested_os_image(spec, spec.template, cat, "", NOW).image == "nginx:1.27"
    with pytest.raises(
        ValueError, match=r"^--to: no ImageCatalog has published docker.io/library/nginx:1.28\."
    ):
        requested_os_image(spec, spec.template, cat, "1.28", NOW)


tags = st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)).map(lambda t: ".".join(map(str, t)))
releases = st.lists(
    st.tuples(st.one_of(tags, st.sampled_from(["latest", "stable", "1.2-alpine"])), st.integers(-5, 5)),
    max_size=12,
)


@settings(deadline=None)
@given(tags, releases, st.sets(tags, max_size=3))
def test_the_choice_is_newer_published_not_rolled_back_and_newest(
    running: str, offered: list[tuple[str, int]], rolled_back: set[str]
) -> None:
    current = tag_version(running)
    assert current is not None
    candidates = [
        Release(NGINX, version, NOW - timedelta(days=age), tag_version(version)) for version, age in offered
    ]
    chosen = newest_release(candidates, current, NOW, rolled_back)
    eligible = [
        release
        for release in candidates
        if release.tag is not None
        and release.tag.variant == ""
        and release.published_at <= NOW
        and release.version not in rolled_back
        and release.tag.newer_than(current)
    ]
    if chosen is None:
        assert not eligible
        return
    assert chosen in eligible
    assert chosen.tag is not None
    assert all(not (release.tag and release.tag.newer_than(chosen.tag)) for release in eligible)
    # the answer does not depend on the order of the catalog
    assert newest_release(list(reversed(candidates)), current, NOW, rolled_back) == chosen
