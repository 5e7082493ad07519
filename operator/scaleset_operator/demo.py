"""`make demo`: the plan preview of the example ScaleSet, then the same rollout live on kubesim."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from rich.console import Console

from scaleset_operator.api.loading import InvalidResource
from scaleset_operator.cli.plan import PlanError, preview_files, render_table

# The examples live beside the source folder: <repo>/operator/scaleset_operator/demo.py -> <repo>/examples.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def print_plan(examples: Path = EXAMPLES) -> int:
    try:
        scaleset, choice, preview = preview_files(examples / "scaleset.yaml", examples / "upgradepolicy.yaml")
    except (InvalidResource, PlanError) as problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    render_table(Console(highlight=False), scaleset, choice, preview)
    return 0


def main() -> int:
    from scaleset_operator import livedemo

    # Logging is the command's to set up, not livedemo.run's: run() also runs inside the test suite,
    # where a root handler on the captured stderr outlives the test that installed it.
    logging.basicConfig(level=logging.ERROR)
    print("The plan (scaleset plan examples/scaleset.yaml --policy examples/upgradepolicy.yaml):\n")
    if print_plan() != 0:
        return 2
    print("\nThe same rollout, live on kubesim with the operator:\n", flush=True)
    return livedemo.run()


if __name__ == "__main__":
    sys.exit(main())
