"""No traceback, ever: an unexpected exception is one line naming the command and a crash log; `ws generate`
writes all of its files or none."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, ROOT, run_ws


def boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("boom while connecting to postgresql://admin:hunter2@db.internal/app")


def test_an_unexpected_exception_is_one_line_with_the_command_and_a_crash_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.workspace import graph

    monkeypatch.setattr(graph, "selected_stages", boom)
    result = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "plan", "--env", "local",
        in_process=True, env={"XDG_STATE_HOME": str(tmp_path / "state")},
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert "ws plan" in line and "RuntimeError" in line
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr  # a password in the message is not printed
    logs = list((tmp_path / "state" / "ws" / "crash").glob("*.log"))
    assert len(logs) == 1
    assert str(logs[0]) in line
    text = logs[0].read_text(encoding="utf-8")
    assert "Traceback (most recent call last)" in text and "RuntimeError: boom" in text
    assert "in boom" in text  # the frame that raised
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(logs[0].parent.stat().st_mode) == 0o700


def test_no_traceback_reaches_the_terminal_of_a_real_process(tmp_path: Path) -> None:
    script = (
        "import infra.cli, infra.workspace.graph as g\n"
        "def boom(*a, **k):\n    raise KeyError('surprise')\n"
        "g.selected_stages = boom\n"
        f"infra.cli.main(['-w', {str(EXAMPLES / 'workspace.yaml')!r}, 'plan', '--env', 'local'])\n"
    )
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "ws plan" in result.stderr and "KeyError" in result.stderr
    assert list((tmp_path / "state" / "ws" / "crash").glob("*.log"))


def test_the_crash_log_falls_back_to_a_private_temporary_file_when_the_state_folder_is_unwritable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra.workspace import graph

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the state folder would go\n")
    monkeypatch.setattr(graph, "selected_stages", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    result = run_ws(
        "-w", str(EXAMPLES / "workspace.yaml"), "plan", "--env", "local",
        in_process=True, env={"XDG_STATE_HOME": str(blocked)},
    )  # fmt: skip
    assert result.returncode == 1
    logs = list((tmp_path / "tmp").glob("ws-crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in result.stderr
    assert stat.S_IMODE(logs[0].stat().st_mode) == 0o600


def copy_example(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns(".ws", "node_modules", "*.db", "__pycache__"))
    return root


def add_qa_environment(root: Path) -> None:
    path = root / "workspace.yaml"
    text = path.read_text(encoding="utf-8")
    assert "  prod:\n" in text
    path.write_text(text.replace("  prod:\n", "  qa:\n    runtime: pulumi\n  prod:\n", 1), encoding="utf-8")


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".ws" not in p.parts
    }


def test_generate_that_cannot_write_one_file_writes_none(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    add_qa_environment(root)
    (root / "Pulumi.qa.yaml").mkdir()  # a folder where the new stack file goes
    check = run_ws("-w", str(root / "workspace.yaml"), "generate", "--check", "--json")
    assert check.returncode == 1
    assert len([p for p in check.stdout.split('"') if p.endswith((".yml", ".yaml", ".json"))]) > 1, check.stdout
    before = snapshot(root)

    result = run_ws("-w", str(root / "workspace.yaml"), "generate")

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "Pulumi.qa.yaml" in result.stderr and "directory" in result.stderr
    assert "nothing was written" in result.stderr
    assert snapshot(root) == before  # every file as it was, no temporary file left behind
    assert (root / "Pulumi.qa.yaml").is_dir()


def test_generate_puts_back_the_files_it_replaced_when_a_later_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from infra import generate

    root = copy_example(tmp_path)
    add_qa_environment(root)
    before = snapshot(root)
    real_replace = os.replace
    calls: list[str] = []

    def failing_replace(src: str, dst: str) -> None:
        calls.append(str(dst))
        if len(calls) == 3:
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(generate.os, "replace", failing_replace)
    result = run_ws("-w", str(root / "workspace.yaml"), "generate", in_process=True)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "No space left on device" in result.stderr and "nothing was written" in result.stderr
    assert len(calls) >= 3
    assert snapshot(root) == before


def test_generate_writes_every_file_with_the_usual_permissions(tmp_path: Path) -> None:
    root = copy_example(tmp_path)
    add_qa_environment(root)
    result = run_ws("-w", str(root / "workspace.yaml"), "generate")
    assert result.returncode == 0, result.stderr
    assert "created  Pulumi.qa.yaml" in result.stdout
    assert stat.S_IMODE((root / "Pulumi.qa.yaml").stat().st_mode) == 0o644 & ~current_umask()
    assert run_ws("-w", str(root / "workspace.yaml"), "generate", "--check").returncode == 0
    assert not [p for p in root.rglob("*") if ".ws-tmp" in p.name]


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
