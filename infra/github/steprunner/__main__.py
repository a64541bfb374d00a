"""``python -m infra.github.steprunner WORKFLOW``: run a generated workflow's steps on this machine."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from infra.github.steprunner.expressions import RunnerError
from infra.github.steprunner.runner import LocalRunner


def _pairs(items: list[str]) -> Iterator[tuple[str, str]]:
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise RunnerError(f"{item!r}: expected NAME=VALUE")
        yield name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.github.steprunner",
        description="Run a generated workflow's steps on this machine (see the module's docstring for the subset).",
    )
    parser.add_argument("workflow", type=Path, help="e.g. .github/workflows/coordinated-deployment.yml")
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="folder holding actions/ (default: here)")
    parser.add_argument("--input", "-i", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument(
        "--secret", action="append", default=[], metavar="NAME", help="pass this environment variable as a secret"
    )
    parser.add_argument("--job", action="append", default=None, metavar="ID", help="run only these jobs")
    args = parser.parse_args(argv)
    try:
        secrets = {name: os.environ.get(name, "") for name in args.secret}
        runner = LocalRunner(args.root, secrets=secrets, echo=print)
        result = runner.run_workflow(args.workflow.resolve(), dict(_pairs(args.input)), jobs=args.job)
    except RunnerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(result.report())
    return 0 if result.conclusion == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
