"""`kubectl-scaleset`: the `scaleset` command as a kubectl plugin, so `kubectl scaleset status web` works."""

from __future__ import annotations

import contextlib
import io
import os
import sys

from scaleset_operator.cli.main import app

PROG_NAME = "kubectl scaleset"
COMPLETE_VAR = "_KUBECTL_SCALESET_COMPLETE"

# Cobra's ShellCompDirectiveNoFileComp: kubectl offers no file names after the candidates.
NO_FILE_COMPLETION = 4


def main() -> None:
    # The same commands, options and completion as `scaleset`; only the name in help and usage differs.
    app(prog_name=PROG_NAME, complete_var=COMPLETE_VAR)


def complete() -> None:
    """`kubectl_complete-scaleset`: kubectl (1.26+) asks it for the candidates of `kubectl scaleset ...`.

    kubectl calls it with the words after `scaleset`, the last one being the word under the cursor,
    and reads Cobra's format back: one candidate a line, then `:<directive>`.
    """
    words = [word for word in sys.argv[1:] if word != "__complete"] or [""]
    os.environ[COMPLETE_VAR] = "complete_bash"
    os.environ["COMP_WORDS"] = " ".join(["kubectl-scaleset", *words])
    os.environ["COMP_CWORD"] = str(len(words))
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), contextlib.suppress(SystemExit):
        app(prog_name=PROG_NAME, complete_var=COMPLETE_VAR)
    for candidate in captured.getvalue().splitlines():
        if candidate:
            print(candidate)
    print(f":{NO_FILE_COMPLETION}")
