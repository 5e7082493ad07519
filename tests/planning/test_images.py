"""Image references and the semantic versions of their tags."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaleset_operator.planning.images import (
    ImageReferenceError,
    TagVersion,
    compatible,
    normalize_repository,
    parse_image,
    tag_version,
)

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("text", "repository", "tag", "digest"),
    [
        ("nginx", "docker.io/library/nginx", None, None),
        ("nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("library/nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("docker.io/library/nginx:1.27", "docker.io/library/nginx", "1.27", None),
        ("index.docker.io/nginx", "docker.io/library/nginx", None, None),
        ("bitnami/redis:7.2", "docker.io/bitnami/redis", "7.2", None),
        ("localhost:5000/os/ubuntu:22.04", "localhost:5000/os/ubuntu", "22.04", None),
        ("registry.example:443/os/ubuntu", "registry.example:443/os/ubuntu", None, None),
        (f"registry.example/os/ubuntu@{DIGEST}", "registry.example/os/ubuntu", None, DIGEST),
        (f"nginx:1.27@{DIGEST}", "docker.io/library/nginx", "1.27", DIGEST),
    ],
)
def test_references_are_normalised_as_the_registry_does(
    text: str, repository: str, tag: str | None, digest: str | None
) -> None:
    reference = parse_image(text, "image")
    assert (reference.repository, reference.tag, reference.digest) == (repository, tag, digest)


@pytest.mark.parametrize("text", ["", "Nginx:1.2", "nginx:", "nginx@sha256:abc", "a b", "nginx:1.2:3"])
def test_a_reference_that_breaks_the_grammar_names_the_field(text: str) -> None:
    with pytest.raises(ImageReferenceError, match=r"^spec\.x: .* is not an image reference"):
        parse_image(text, "spec.x")


@pytest.mark.parametrize(
    ("text", "tag", "expected"),
    [
        ("nginx:1.25", "1.27", "nginx:1.27"),
        ("localhost:5000/os/ubuntu:22.4.1", "22.4.2", "localhost:5000/os/ubuntu:22.4.2"),
        ("localhost:5000/os/ubuntu", "1.0", "localhost:5000/os/ubuntu:1.0"),
        (f"registry.example:443/os@{DIGEST}", "2.0", "registry.example:443/os:2.0"),
        (f"nginx:1.2@{DIGEST}", "1.3", "nginx:1.3"),
    ],
)
def test_a_new_tag_keeps_the_repository_as_written(text: str, tag: str, expected: str) -> None:
    assert parse_image(text, "image").with_tag(tag) == expected


def test_a_repository_has_no_tag() -> None:
    assert normalize_repository("ubuntu", "f") == "docker.io/library/ubuntu"
    with pytest.raises(ImageReferenceError, match="a repository has no tag"):
        normalize_repository("ubuntu:22.04", "spec.images[0].repository")


@pytest.mark.parametrize(
    ("tag", "version", "variant"),
    [
        ("1", "1.0.0", ""),
        ("1.27", "1.27.0", ""),
        ("v1.27.3", "1.27.3", ""),
        ("22.04", None, None),  # a leading zero is no semantic version
        ("22.4", "22.4.0", ""),
        ("1.27-alpine", "1.27.0-alpine", "alpine"),
        ("2.0.0-rc.1", "2.0.0-rc.1", "rc.1"),
        ("latest", None, None),
        ("stable-slim", None, None),
        ("1.2.3.4", None, None),
        ("1.2.3-01", None, None),  # semver refuses a numeric identifier with a leading zero
        ("", None, None),
    ],
)
def test_which_tags_are_versions(tag: str, version: str | None, variant: str | None) -> None:
    parsed = tag_version(tag)
    if version is None:
        assert parsed is None
    else:
        assert parsed is not None
        assert (str(parsed.version), parsed.variant) == (version, variant)


def test_a_variant_only_moves_to_the_same_variant() -> None:
    def v(tag: str) -> TagVersion:
        parsed = tag_version(tag)
        assert parsed is not None
        return parsed

    assert compatible(v("1.27-alpine"), v("1.25-alpine"))
    assert not compatible(v("1.27"), v("1.25-alpine"))
    assert not compatible(v("1.27-alpine"), v("1.25"))
    assert not compatible(v("2.0.0-rc.2"), v("2.0.0-rc.1"))


versions = st.tuples(st.integers(0, 50), st.integers(0, 50), st.integers(0, 50))


@settings(deadline=None)
@given(versions, versions)
def test_tag_order_is_numeric_not_textual(a: tuple[int, int, int], b: tuple[int, int, int]) -> None:
    left, right = tag_version(".".join(map(str, a))), tag_version(".".join(map(str, b)))
    assert left is not None and right is not None
    assert left.newer_than(right) == (a > b)
    assert left.same_precedence(right) == (a == b)
