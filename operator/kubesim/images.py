"""Image references as a kubelet reads them: a name that does not parse is never pulled or run."""

from __future__ import annotations

import re

# The grammar of container image references (the distribution "reference" package, as kubelets use it).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[_.]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_REFERENCE = re.compile(
    rf"(?P<name>(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*)(?::{_TAG})?(?:@{_DIGEST})?"
)
_ANY_CASE = re.compile(_REFERENCE.pattern.replace("[a-z0-9]+", "[a-zA-Z0-9]+"))
_NAME_LIMIT = 255


def image_reference_problem(image: str) -> str | None:
    """Why a kubelet would refuse `image` (its InvalidImageName message), or None when it parses."""
    prefix = f'Failed to apply default image tag "{image}": couldn\'t parse image name "{image}": '
    match = _REFERENCE.fullmatch(image)
    if match is None:
        if _ANY_CASE.fullmatch(image):
            return prefix + "repository name must be lowercase"
        return prefix + "invalid reference format"
    if len(match.group("name")) > _NAME_LIMIT:
        return prefix + "repository name must not be more than 255 characters"
    if re.fullmatch(r"[a-f0-9]{64}", match.group("name")):
        return prefix + "invalid repository name (64-byte hexadecimal strings are digests, not names)"
    return None


def fully_qualified(image: str) -> str:
    """The reference a container runtime pulls: `app:v1` is `docker.io/library/app:v1`, `nginx` is
    `docker.io/library/nginx:latest`, `registry.example/app` keeps its registry."""
    first, _, rest = image.partition("/")
    has_domain = bool(rest) and ("." in first or ":" in first or first == "localhost")
    if not has_domain:
        image = f"docker.io/{image}" if rest else f"docker.io/library/{image}"
    if "@" not in image and ":" not in image.rsplit("/", 1)[-1]:
        image += ":latest"
    return image
