"""`scaleset plan`: preview the upgrade domains and ordered batches of a ScaleSet's next rollout."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from scaleset_operator.api.durations import format_duration, parse_duration
from scaleset_operator.api.loading import InvalidResource, load_documents, parse_resource
from scaleset_operator.api.models import ScaleSet, UpgradeMode, UpgradePolicy, UpgradePolicySpec
from scaleset_operator.cli.main import app
from scaleset_operator.cli.rollout_svg import Box, Drawing, render_svg
from scaleset_operator.identity import instance_name
from scaleset_operator.planning.batches import Stop, Wait, batch_size
from scaleset_operator.planning.preview import RolloutPreview, plan_rollout
from scaleset_operator.planning.walk import Walk, effective_walk, observe_spec

OUTPUT_FORMATS = ("table", "json", "svg")


class PlanError(Exception):
    """Input the preview cannot use; str() is the one line shown to the user."""


# The preview is of the next update: a revision of its own, which no recorded walk names yet.
_NEXT_UPDATE = "(the next update)"


@dataclass(frozen=True)
class ManualWalk:
    """Manual mode in a preview: what the next update has walked, and why.

    A walk belongs to one update revision (status.upgrade.walk), so the next update starts unwalked;
    only a change of spec.walkUpgradeDomain from the value the operator last read walks it
    (planning/walk.py). `recorded` is false when the file holds no status.upgrade.walk, so the last
    value read is not known.
    """

    upgrade_domain: int | None
    spec_value: int | None
    last_read: int | None
    recorded: bool


def manual_walk(scaleset: ScaleSet) -> ManualWalk:
    """What walks the next update of this ScaleSet, as the operator would record it."""
    upgrade = scaleset.status.upgrade if scaleset.status is not None else None
    stored = upgrade.walk if upgrade is not None else None
    record = Walk.from_status(stored.model_dump(by_alias=True) if stored is not None else None)
    spec_value = scaleset.spec.walk_upgrade_domain
    # The clock does not matter here: only the domain the record ends up with is read.
    observed = observe_spec(record, spec_value, _NEXT_UPDATE, datetime.now(UTC))
    return ManualWalk(
        upgrade_domain=effective_walk(observed if observed is not None else record, _NEXT_UPDATE),
        spec_value=spec_value,
        last_read=record.spec_value if record is not None else None,
        recorded=stored is not None,
    )


@dataclass(frozen=True)
class PolicyChoice:
    """The UpgradePolicy a preview uses and, in words, where it came from."""

    spec: UpgradePolicySpec
    source: str


def load_scaleset(path: Path) -> tuple[ScaleSet, list[dict[str, Any]]]:
    """The one ScaleSet of a file, with every document of the file (it may hold the policy too)."""
    documents = load_documents(path)
    found = [document for document in documents if document.get("kind") == ScaleSet.KIND]
    if not found:
        if not documents:
            raise PlanError(f"{path}: holds no resource; expected a ScaleSet.")
        # Parsing the first document names the kind that was found instead.
        parse_resource(documents[0], ScaleSet, source=path)
    if len(found) > 1:
        raise PlanError(f"{path}: holds {len(found)} ScaleSets; preview them one file at a time.")
    scaleset = parse_resource(found[0], ScaleSet, source=path)
    if not scaleset.metadata.name:
        raise PlanError(f"{path}: ScaleSet: metadata.name is required, it names the instances.")
    return scaleset, documents


def _named(documents: list[dict[str, Any]], name: str | None) -> list[dict[str, Any]]:
    return [
        document
        for document in documents
        if document.get("kind") == UpgradePolicy.KIND
        and (name is None or (document.get("metadata") or {}).get("name") == name)
    ]


def choose_policy(
    scaleset: ScaleSet, scaleset_path: Path, documents: list[dict[str, Any]], policy_path: Path | None
) -> PolicyChoice:
    """--policy FILE when given; else the policy spec.upgradePolicyRef names, when FILE holds it; else defaults."""
    ref = scaleset.spec.upgrade_policy_ref.name if scaleset.spec.upgrade_policy_ref else None
    if policy_path is not None:
        policy_documents = load_documents(policy_path)
        candidates = _named(policy_documents, None)
        if not candidates:
            if not policy_documents:
                raise PlanError(f"{policy_path}: holds no resource; expected an UpgradePolicy.")
            parse_resource(policy_documents[0], UpgradePolicy, source=policy_path)
        if len(candidates) > 1:
            candidates = _named(candidates, ref)
            if len(candidates) != 1:
                wanted = f'named "{ref}"' if ref else "to choose from"
                raise PlanError(
                    f"{policy_path}: holds several UpgradePolicies and not exactly one {wanted}; "
                    "pass a file with one."
                )
        policy = parse_resource(candidates[0], UpgradePolicy, source=policy_path)
        return PolicyChoice(policy.spec, f'UpgradePolicy "{policy.metadata.name}" from {policy_path}')
    if ref is not None:
        candidates = _named(documents, ref)
        if candidates:
            policy = parse_resource(candidates[0], UpgradePolicy, source=scaleset_path)
            return PolicyChoice(policy.spec, f'UpgradePolicy "{ref}" from {scaleset_path}')
        return PolicyChoice(
            UpgradePolicySpec(),
            f'built-in defaults (UpgradePolicy "{ref}" is not in {scaleset_path}; pass it with --policy)',
        )
    return PolicyChoice(UpgradePolicySpec(), "built-in defaults (spec.upgradePolicyRef is not set)")


def unhealthy_ordinals(scaleset: ScaleSet, names: list[str]) -> set[int]:
    """The ordinals of the instances --unhealthy names (`web-3`, or `3`), each one of the ScaleSet's."""
    name = scaleset.metadata.name or ""
    ordinals = set()
    for given in (part.strip() for value in names for part in value.split(",")):
        if not given:
            continue
        tail = given.removeprefix(f"{name}-")
        if not tail.isdigit() or int(tail) >= scaleset.spec.replicas:
            raise PlanError(
                f"--unhealthy: {given!r} is not an instance of ScaleSet {name} "
                f"({instance_name(name, 0)} to {instance_name(name, max(0, scaleset.spec.replicas - 1))})."
            )
        ordinals.add(int(tail))
    return ordinals


def preview_files(
    file: Path,
    policy_file: Path | None = None,
    unhealthy: list[str] | None = None,
    instance_start: timedelta = timedelta(0),
) -> tuple[ScaleSet, PolicyChoice, RolloutPreview]:
    """The ScaleSet of `file`, the policy it is upgraded by and the preview of its rollout, with the
    instances `unhealthy` names down before it starts, each instance Ready `instance_start` after its update.

    Raises InvalidResource or PlanError, each one sentence for the user.
    """
    scaleset, documents = load_scaleset(file)
    choice = choose_policy(scaleset, file, documents, policy_file)
    name = scaleset.metadata.name or ""
    preview = plan_rollout(
        replicas=scaleset.spec.replicas,
        upgrade_domain_count=scaleset.spec.upgrade_domain_count,
        policy=choice.spec,
        walk_upgrade_domain=manual_walk(scaleset).upgrade_domain,
        instance_names=lambda ordinal: instance_name(name, ordinal),
        unhealthy=unhealthy_ordinals(scaleset, unhealthy or []),
        instance_start=instance_start,
    )
    return scaleset, choice, preview


def preview_json(scaleset: ScaleSet, preview: RolloutPreview) -> dict[str, Any]:
    name = scaleset.metadata.name or ""
    return {
        "upgradeDomains": [
            {"index": index, "instances": [instance_name(name, o) for o in ordinals]}
            for index, ordinals in enumerate(preview.upgrade_domains)
        ],
        "batches": [
            {
                "upgradeDomain": batch.upgrade_domain,
                "instances": [instance_name(name, o) for o in batch.ordinals],
                **({"shrunk": why} if why else {}),
            }
            for batch, why in zip(preview.batches, preview.shrunk, strict=True)
        ],
        **(
            {"stoppedBy": {"reason": str(preview.held_by.reason), "message": preview.held_by.message}}
            if isinstance(preview.held_by, Stop)
            else {}
        ),
    }


def plan_drawing(
    scaleset: ScaleSet,
    choice: PolicyChoice,
    preview: RolloutPreview,
    instance_start: timedelta = timedelta(0),
) -> Drawing:
    """The planned batches on a time axis, one row per upgrade domain; in batch order when the plan
    takes no time at all (no stabilisation, pause or instance start to wait for)."""
    spec, policy = scaleset.spec, choice.spec
    name = scaleset.metadata.name or ""
    names = [instance_name(name, o) for o in range(spec.replicas)]
    timed = preview.minimum_duration > timedelta(0)
    boxes = []
    for number, (batch, why, timing) in enumerate(
        zip(preview.batches, preview.shrunk, preview.timeline, strict=True), start=1
    ):
        where = (
            "every upgrade domain"
            if batch.upgrade_domain is None
            else f"upgrade domain {batch.upgrade_domain}"
        )
        when = (
            f" (starts at {format_duration(timing.started)}, healthy at {format_duration(timing.healthy)})"
            if timed
            else ""
        )
        start, end = (
            (timing.started.total_seconds(), timing.healthy.total_seconds())
            if timed
            else (number - 1 + 0.06, number - 0.06)
        )
        boxes.append(
            Box(
                upgrade_domain=batch.upgrade_domain,
                start=start,
                end=end,
                title=f"Batch {number}, {where}: {', '.join(names[o] for o in batch.ordinals)}{when}"
                + (f"; smaller, because {why}" if why else ""),
                label=str(number),
                classes=("shrunk",) if why else (),
            )
        )
    subtitle = f"{len(preview.batches)} batch(es), {choice.source}"
    if policy.mode == UpgradeMode.STAGED:
        subtitle = "Staged mode: a second set beside production, then one swap; no batches"
    elif isinstance(preview.held_by, (Stop, Wait)):
        subtitle += f"; then held: {preview.held_by.reason}"
    origin = "time from the first batch"
    if instance_start:
        origin += f"; each instance Ready {format_duration(instance_start)} after its update"
    return Drawing(
        title=f"ScaleSet {name}: {spec.replicas} instance(s) over {spec.upgrade_domain_count} upgrade domain(s), "
        f"{policy.mode} mode",
        subtitle=subtitle,
        upgrade_domains=[[names[o] for o in ordinals] for ordinals in preview.upgrade_domains],
        boxes=boxes,
        axis="time" if timed else "order",
        origin_label=origin if timed else "",
    )


def _percent(policy: UpgradePolicySpec) -> str:
    return f"{policy.rolling_upgrade.max_batch_instance_percent} %"


def render_table(
    console: Console,
    scaleset: ScaleSet,
    choice: PolicyChoice,
    preview: RolloutPreview,
    instance_start: timedelta = timedelta(0),
) -> None:
    """What a person reads before applying a change: who is in which domain, and what goes when."""
    spec, policy = scaleset.spec, choice.spec
    name = scaleset.metadata.name or ""
    names = [instance_name(name, o) for o in range(spec.replicas)]
    if policy.mode == UpgradeMode.AUTOMATIC:
        sizing = "all instances at once"
    elif policy.mode == UpgradeMode.STAGED:
        sizing = f"a second set of {spec.replicas} instance(s) beside production, then one swap"
    else:
        sizing = (
            f"batches of at most {batch_size(spec.replicas, policy)} ({_percent(policy)}, one domain each)"
        )
    console.print(
        f"[bold]ScaleSet {name}[/bold]: {spec.replicas} instance(s) over {spec.upgrade_domain_count} "
        f"upgrade domain(s), {policy.mode} mode, {sizing}"
    )
    console.print(f"Policy: {choice.source}")

    domains = Table(title="Upgrade domains", title_justify="left")
    domains.add_column("Domain", justify="right")
    domains.add_column("Count", justify="right")
    domains.add_column("Instances")
    for index, ordinals in enumerate(preview.upgrade_domains):
        domains.add_row(str(index), str(len(ordinals)), ", ".join(names[o] for o in ordinals) or "-")
    console.print(domains)

    batches = Table(title="Batches, in order", title_justify="left")
    batches.add_column("#", justify="right")
    batches.add_column("Domain", justify="right")
    batches.add_column("Instances")
    shrunk = any(preview.shrunk)
    if shrunk:
        batches.add_column("Smaller, because")
    for number, (batch, why) in enumerate(zip(preview.batches, preview.shrunk, strict=True), start=1):
        domain = "all" if batch.upgrade_domain is None else str(batch.upgrade_domain)
        row = [str(number), domain, ", ".join(names[o] for o in batch.ordinals)]
        batches.add_row(*row, *([why or "-"] if shrunk else []))
    if policy.mode != UpgradeMode.STAGED:  # no batches: the staged set is created whole
        console.print(batches)

    for line in _notes(scaleset, policy, preview, names, instance_start):
        console.print(line)


def _notes(
    scaleset: ScaleSet,
    policy: UpgradePolicySpec,
    preview: RolloutPreview,
    names: list[str],
    instance_start: timedelta = timedelta(0),
) -> list[str]:
    spec = scaleset.spec
    notes: list[str] = []
    if policy.mode == UpgradeMode.MANUAL:
        planned = {o for batch in preview.batches for o in batch.ordinals}
        waiting = [names[o] for o in range(spec.replicas) if o not in planned]
        notes.append(_manual_note(scaleset, manual_walk(scaleset)))
        if waiting:
            notes.append(f"Waiting for a walk: {', '.join(waiting)}.")
    if policy.mode == UpgradeMode.STAGED:
        notes.append(
            "Staged mode: the new revision runs beside production in the other slot; once it is healthy "
            "as a whole, every Service selecting the instances is swapped to it in one update each."
        )
    elif spec.replicas == 1 and not policy.rolling_upgrade.max_surge:
        notes.append("A single instance cannot be upgraded without downtime; use two or more replicas.")
    if isinstance(preview.held_by, Stop):
        count = len(preview.batches)
        when = f"after {count} batch{'es' if count > 1 else ''}" if count else "before its first batch"
        notes.append(f"The rollout stops {when} ({preview.held_by.reason}): {preview.held_by.message}.")
    if spec.paused:
        notes.append("spec.paused is true: no batch starts until it is false.")
    if preview.minimum_duration:
        notes.append(
            f"Instance starts, stabilisation and pauses between batches take at least "
            f"{format_duration(preview.minimum_duration)}."
            if instance_start
            else f"Stabilisation and pauses between batches take at least {format_duration(preview.minimum_duration)}."
        )
    if (
        not preview.batches
        and spec.replicas
        and policy.mode != UpgradeMode.MANUAL
        and preview.held_by is None
    ):
        notes.append("Nothing to update.")
    return notes


def _domains(last: int) -> str:
    return "upgrade domain 0" if last == 0 else f"upgrade domains 0..{last}"


def _manual_note(scaleset: ScaleSet, walk: ManualWalk) -> str:
    """Manual mode in words: a walk belongs to one update, so say what walks the next one and how."""
    name = scaleset.metadata.name or ""
    command = f"scaleset walk {name} 0"
    if walk.upgrade_domain is not None:
        walked = _domains(walk.upgrade_domain)
        if walk.recorded:
            before = "unset" if walk.last_read is None else str(walk.last_read)
            return (
                f"Manual mode: spec.walkUpgradeDomain changes from {before} (the value last read, "
                f"status.upgrade.walk) to {walk.spec_value}, which walks {walked} of the next update."
            )
        return (
            f"Manual mode: spec.walkUpgradeDomain {walk.spec_value} walks {walked} of the next update "
            "only if it changes the value the operator last read (status.upgrade.walk.specWalkUpgradeDomain, "
            "which this file does not hold); left unchanged, it walks nothing and the update waits at "
            f"upgrade domain 0 for {command}."
        )
    if walk.spec_value is not None:
        return (
            f"Manual mode: spec.walkUpgradeDomain {walk.spec_value} is the value last read "
            "(status.upgrade.walk), so it walks nothing: a walk belongs to one update, and the next "
            f"update waits at upgrade domain 0 for {command} (or a change of spec.walkUpgradeDomain)."
        )
    return (
        "Manual mode: the next update starts unwalked: nothing moves until upgrade domain 0 is walked "
        f"({command}, or a change of spec.walkUpgradeDomain)."
    )


@app.command()
def plan(
    file: Annotated[
        Path, typer.Argument(help="YAML file holding the ScaleSet (and perhaps its UpgradePolicy).")
    ],
    policy_file: Annotated[
        Path | None,
        typer.Option("--policy", help="YAML file holding the UpgradePolicy; overrides one found in FILE."),
    ] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table, json or svg.")] = "table",
    svg_file: Annotated[
        Path | None,
        typer.Option(
            "--svg", help="Also draw the batches on a time axis per upgrade domain into this SVG file."
        ),
    ] = None,
    instance_start: Annotated[
        str | None,
        typer.Option(
            "--instance-start",
            help="How long an updated instance takes to become Ready (e.g. 30s): the drawing's time axis "
            "and the minimum duration count it.",
        ),
    ] = None,
    unhealthy: Annotated[
        list[str] | None,
        typer.Option(
            "--unhealthy",
            help="Instances down before the rollout starts (web-3,web-7 or 3,7; may repeat): shows how "
            "maxUnhealthyInstancePercent shrinks or stops the batches.",
        ),
    ] = None,
) -> None:
    """Preview a rollout: the upgrade domains with their instances, and the batches in the order they go."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        if output not in OUTPUT_FORMATS:
            raise PlanError(f"-o/--output must be one of {', '.join(OUTPUT_FORMATS)} (got {output!r}).")
        starting = timedelta(0)
        if instance_start is not None:
            try:
                starting = parse_duration(instance_start)
            except ValueError as error:
                raise PlanError(f"--instance-start: {error}.") from None
        scaleset, choice, preview = preview_files(file, policy_file, unhealthy, starting)
    except (InvalidResource, PlanError) as problem:
        err.print(f"error: {problem}", markup=False)
        raise typer.Exit(2) from None
    if output == "svg" or svg_file is not None:
        drawn = render_svg(plan_drawing(scaleset, choice, preview, starting))
        if svg_file is not None:
            svg_file.write_text(drawn)
        if output == "svg":
            typer.echo(drawn, nl=False)
            return
    if output == "json":
        typer.echo(json.dumps(preview_json(scaleset, preview), indent=2))
    else:
        render_table(Console(highlight=False), scaleset, choice, preview, starting)
