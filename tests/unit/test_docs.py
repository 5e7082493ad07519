"""The docs a newcomer walks: the README's budget, links that resolve, the README's picture up to date,
and a troubleshooting index that names every reason the operator can emit."""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scaleset_operator.cli.main import app
from scaleset_operator.planning.batches import StepReason
from scaleset_operator.planning.maintenance import Deferred
from scaleset_operator.planning.repairs import RepairReason, RepairResult
from scaleset_operator.planning.rollback import Refusal
from scaleset_operator.planning.walk import WalkRefusal

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "scaleset_operator"
DOCS = ROOT / "docs"
TROUBLESHOOTING = DOCS / "troubleshooting.md"
README_BUDGET = 15 * 1024  # bytes: "a README of at most 15 KB"

# ---------------------------------------------------------------------------------------- links

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _prose(text: str) -> Iterator[str]:
    """The lines of a Markdown file outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"`|\*\*|__|<[^>]+>", "", heading)
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor a Markdown file has: its headings' slugs, numbered as GitHub numbers repeats."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(path.read_text()):
        heading = _HEADING.match(line)
        if heading is None:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def links(path: Path) -> Iterator[str]:
    for line in _prose(path.read_text()):
        # Inline code spans hold examples, not links.
        for target in _LINK.findall(re.sub(r"`[^`]*`", "", line)):
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not checked
                yield target


def broken(source: Path, target: str) -> str | None:
    """Why a link from `source` does not resolve, or None when it does."""
    file_part, _, anchor = target.partition("#")
    resolved = (source.parent / file_part).resolve() if file_part else source
    if not resolved.exists():
        return f"{resolved.relative_to(ROOT) if resolved.is_relative_to(ROOT) else resolved} does not exist"
    if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
        return f"{resolved.relative_to(ROOT)} has no heading #{anchor}"
    return None


def test_slugs_follow_githubs_rules() -> None:
    assert slug("Preview a rollout: `scaleset plan`") == "preview-a-rollout-scaleset-plan"
    assert slug("Two operators, killed operators, a flaky API server") == (
        "two-operators-killed-operators-a-flaky-api-server"
    )
    assert slug("Steer a fleet: `status`, `history` (also as `kubectl scaleset`)") == (
        "steer-a-fleet-status-history-also-as-kubectl-scaleset"
    )


def test_every_link_in_the_readme_and_docs_resolves_to_a_file_and_heading() -> None:
    problems = [
        f"{path.relative_to(ROOT)}: ({target}): {why}"
        for path in markdown_files()
        for target in links(path)
        if (why := broken(path, target)) is not None
    ]
    assert problems == []


def test_links_from_code_and_tests_into_the_docs_resolve() -> None:
    pattern = re.compile(r"((?:README|docs/[\w/-]+)\.md)#([\w-]+)")
    problems = []
    for path in [*PACKAGE.rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        for file, anchor in pattern.findall(path.read_text()):
            if anchor not in anchors(ROOT / file):
                problems.append(f"{path.relative_to(ROOT)}: {file}#{anchor}")
    assert problems == []


def test_the_readme_is_within_its_budget() -> None:
    assert (ROOT / "README.md").stat().st_size <= README_BUDGET


def test_the_readme_picture_is_what_make_readme_picture_draws() -> None:
    makefile = (ROOT / "Makefile").read_text()
    picture = re.search(r"^README_PICTURE := (\S+)$", makefile, re.M)
    plan = re.search(r"^README_PICTURE_PLAN := (.+)$", makefile, re.M)
    assert picture and plan, "the Makefile names the picture and the plan it draws"
    assert f"]({picture.group(1)})" in (ROOT / "README.md").read_text(), "the README shows the picture"
    result = CliRunner().invoke(
        app,
        [
            "plan",
            *(str(ROOT / a) if a.endswith(".yaml") else a for a in shlex.split(plan.group(1))),
            "-o",
            "svg",
        ],
    )
    assert result.exit_code == 0, result.output
    drawn = result.stdout.replace(str(ROOT) + "/", "")
    assert drawn == (ROOT / picture.group(1)).read_text(), "run make readme-picture"


# ---------------------------------------------------------------------------------------- reasons


def _literal(node: ast.expr) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _call_name(node: ast.Call) -> str | None:
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return node.func.id if isinstance(node.func, ast.Name) else None


def _receiver(node: ast.Call) -> str:
    return ast.unparse(node.func.value) if isinstance(node.func, ast.Attribute) else ""


# Event reasons the operator computes rather than writes out: each expression, in its module, and the
# reasons it can take. An expression not listed here fails the scan, so a new one is looked at.
COMPUTED_EVENT_REASONS: dict[tuple[str, str], set[str]] = {
    ("control/actions.py", "str(decision.reason)"): {*Refusal, *WalkRefusal},
    ("control/maintenance.py", "decision.reason"): {Deferred.reason},
    ("control/reconcile.py", "decision.reason"): {Deferred.reason},
    ("control/staged.py", "decision.reason"): {Deferred.reason},
    ("control/reconcile.py", "step.reason"): set(StepReason),
    ("control/reconcile.py", "StepReason.WAITING_FOR_APPROVAL"): {StepReason.WAITING_FOR_APPROVAL},
    # A refusal's Events, made as Notices in planning/status.py (scanned there) and posted here.
    ("control/reconcile.py", "notice.reason"): set(),
    ("planning/rollout.py", "str(reason)"): {StepReason.WAITING_FOR_APPROVAL, StepReason.EVICTION_BLOCKED},
    ("planning/status.py", "str(StepReason.EVICTION_BLOCKED)"): {StepReason.EVICTION_BLOCKED},
    ("planning/status.py", "reason"): set(),  # a refusal's: InvalidInput's, collected below
    ("control/repairs.py", "reason"): set(RepairReason),
    # A repair still unhealthy is the RepairFailed Warning beside it; every other result is Repair<result>.
    ("control/repairs.py", "f'Repair{finished.result}'"): {
        f"Repair{result}" for result in RepairResult if result != RepairResult.STILL_UNHEALTHY
    },
    ("control/staged.py", "reason"): {"SwapRefused", "SwapBackRefused"},  # f"{action}Refused"
}


def emitted_reasons() -> dict[str, set[str]]:
    """Every reason the operator can put in a condition or an Event, by where it comes from."""
    found: dict[str, set[str]] = {
        "StepReason": {str(reason) for reason in StepReason},
        "InvalidInput": set(),
        "condition": set(),
        "Event": set(),
    }
    unknown = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        if module == "control/events.py":  # the recorder itself passes its argument on
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = _call_name(node)
            if name == "InvalidInput" and node.args:
                reason = _literal(node.args[0])
                assert reason is not None, f"{module}:{node.lineno}: InvalidInput's reason is not written out"
                found["InvalidInput"].add(reason)
            elif name == "ConditionUpdate" and len(node.args) >= 3:
                if (reason := _literal(node.args[2])) is not None:
                    found["condition"].add(reason)
            elif (
                (name in ("normal", "warning") and _receiver(node).endswith("events")) or name == "Notice"
            ) and len(node.args) >= 2:
                # An Event posted, or one a planner returns as a Notice(type, reason, message).
                argument = node.args[1]
                if (reason := _literal(argument)) is not None:
                    found["Event"].add(reason)
                elif (module, ast.unparse(argument)) in COMPUTED_EVENT_REASONS:
                    found["Event"] |= {str(r) for r in COMPUTED_EVENT_REASONS[module, ast.unparse(argument)]}
                else:
                    unknown.append(f"{module}:{node.lineno}: {ast.unparse(argument)}")
    assert unknown == [], "Event reasons the scan cannot name: add them to COMPUTED_EVENT_REASONS"
    return found


def indexed_reasons() -> set[str]:
    """The reasons the troubleshooting page's tables start a row with."""
    return set(re.findall(r"^\| `(\w+)` \|", TROUBLESHOOTING.read_text(), re.M))


def test_the_scan_finds_reasons_of_every_source() -> None:
    found = emitted_reasons()
    assert {"TooManyUnhealthyUpgraded", "WaitingForWalk"} <= found["StepReason"]
    assert {"QuotaExceeded", "PodSecurityViolation", "InvalidSpec", "NameConflict"} <= found["InvalidInput"]
    assert {"AllInstancesHealthy", "SingleInstance"} <= found["condition"]
    assert {"DriftReverted", "RepairRepaired", "RollbackWouldShrink", "MaxDeferralExceeded"} <= found["Event"]
    assert {"UpgradeStarted", "InstancesCannotStart"} <= found["Event"]  # returned by planners as Notices


@pytest.mark.parametrize("source", ["StepReason", "InvalidInput", "condition", "Event"])
def test_every_reason_the_operator_can_emit_is_in_the_troubleshooting_index(source: str) -> None:
    missing = sorted(emitted_reasons()[source] - indexed_reasons())
    assert missing == [], f"add a row to docs/troubleshooting.md for each of these {source} reasons"
