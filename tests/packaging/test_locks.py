"""The locks match pyproject.toml: every requirement pinned at a version it allows, every pin hashed.

requirements.lock is what the image installs (the operator's dependencies alone), requirements-dev.lock
what `make test` installs (with the sim and dev extras); `make lock` writes both. Read offline: a
dependency added to pyproject, or a bound raised past the pinned version, fails here until the locks
are written again.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# The environment the locks are for: the image's and CI's Python on Linux.
ENVIRONMENT = {
    "python_version": "3.11",
    "python_full_version": "3.11.7",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "platform_machine": "x86_64",
}
_PIN = re.compile(r"^(?P<name>[A-Za-z0-9._-]+)==(?P<version>\S+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$")


def pins(lock: str) -> dict[str, tuple[Version, list[str]]]:
    """name -> (version, hashes) of the pins of a lock that apply to ENVIRONMENT."""
    found: dict[str, tuple[Version, list[str]]] = {}
    current: str | None = None
    for line in (ROOT / lock).read_text().splitlines():
        match = _PIN.match(line)
        if match:
            marker = match["marker"]
            applies = marker is None or Marker(marker).evaluate(ENVIRONMENT)
            current = canonicalize_name(match["name"]) if applies else None
            if current:
                found[current] = (Version(match["version"]), [])
        elif current and line.strip().startswith("--hash=sha256:"):
            found[current][1].append(line.strip().removeprefix("--hash=sha256:").rstrip(" \\"))
    return found


def requirements(*extras: str) -> list[Requirement]:
    listed = [
        *PROJECT["dependencies"],
        *(r for extra in extras for r in PROJECT["optional-dependencies"][extra]),
    ]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(
    ("lock", "extras"), [("requirements.lock", ()), ("requirements-dev.lock", ("sim", "dev"))]
)
def test_every_requirement_is_pinned_at_a_version_it_allows_and_every_pin_is_hashed(
    lock: str, extras: tuple[str, ...]
) -> None:
    pinned = pins(lock)
    assert pinned, lock
    for requirement in requirements(*extras):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{lock} has no pin for {requirement}: run make lock"
        version = pinned[name][0]
        assert requirement.specifier.contains(version, prereleases=True), (
            f"{lock} pins {name}=={version}, which {requirement} does not allow: run make lock"
        )
    for name, (version, hashes) in pinned.items():
        assert hashes and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in hashes), (
            f"{name}=={version} has no hash"
        )


def test_the_image_lock_holds_nothing_of_the_sim_or_dev_extras() -> None:
    runtime = set(pins("requirements.lock"))
    for extra in ("sim", "dev"):
        for requirement in map(Requirement, PROJECT["optional-dependencies"][extra]):
            name = canonicalize_name(requirement.name)
            # jsonpatch comes with kopf anyway; whatever else only an extra wants stays out of the image.
            if name != "jsonpatch":
                assert name not in runtime, f"{name} (extra {extra}) is in the image's lock"


def test_both_locks_agree_on_what_they_share() -> None:
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert set(runtime) <= set(dev)
    assert {n: v for n, (v, _) in runtime.items()} == {n: dev[n][0] for n in runtime}, (
        "the tests run what the image runs"
    )


def test_make_test_installs_from_the_lock_and_the_image_from_its_own() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/pip install -q --require-hashes -r $(DEV_LOCK)" in makefile
    assert "$(BIN)/pip install -q --no-deps --no-build-isolation -e ." in makefile
    assert not re.search(r"pip install[^\n]*-e '\.\[", makefile), "no install that resolves afresh"
