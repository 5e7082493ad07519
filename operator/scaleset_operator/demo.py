"""`python -m scaleset_operator.demo`: the plan preview of the example ScaleSet and its UpgradePolicy."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console

from scaleset_operator.api.loading import InvalidResource
from scaleset_operator.cli.plan import PlanError, preview_files, render_table

# The examples live beside the source folder: <repo>/operator/scaleset_operator/demo.py -> <repo>/examples.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def main(examples: Path = EXAMPLES) -> int:
    try:
        scaleset, choice, preview = preview_files(examples / "scaleset.yaml", examples / "upgradepolicy.yaml")
    except (InvalidResource, PlanError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    render_table(Console(highlight=False), scaleset, choice, preview)
    return 0


if __name__ == "__main__":
    sys.exit(main())
