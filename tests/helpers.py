"""The one CLI harness of the tests: run the real `ws` command and capture what it prints and its exit code."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_ws(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    in_process: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run `ws` as a user would and capture its output.

    By default in a subprocess (``python -m infra.cli``, ``cwd`` default the project root, ``env`` added to this
    process's environment, terminal width 200). ``in_process=True`` calls the same entry point and error handling
    in this process, without the start-up cost (terminal width 300, ``env`` set only for the call; ``cwd`` and
    ``timeout`` do not apply there).
    """
    if in_process:
        if cwd is not None:
            raise ValueError("run_ws(in_process=True) runs in this process's folder; pass -w instead of cwd")
        return _run_in_process(list(args), env or {})
    full_env = {**os.environ, **(env or {})}
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", *args],
        cwd=cwd or ROOT,
        env={**full_env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _run_in_process(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from infra.cli import main
    from infra.cli._common import console, err_console

    widths = (console._width, err_console._width)  # rich reads COLUMNS once, when the console is created
    console.width = err_console.width = 300
    changes = {"COLUMNS": "300", **env}
    saved = {key: os.environ.get(key) for key in changes}
    out, err = io.StringIO(), io.StringIO()
    code = 0
    try:
        os.environ.update(changes)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(args)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        console._width, err_console._width = widths
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return subprocess.CompletedProcess(["ws", *args], code, out.getvalue(), err.getvalue())
