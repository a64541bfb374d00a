"""mypy checks the components against pulumi-docker's own types: a wrong argument name fails (as in CI)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT


def mypy(*targets: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--cache-dir",
            str(cache),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            *map(str, targets),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_components_type_check_and_a_misspelt_docker_argument_is_caught(tmp_path: Path) -> None:
    source = (ROOT / "infra" / "stack" / "components.py").read_text(encoding="utf-8")
    assert source.count("wait_timeout=") >= 3
    clean = mypy(ROOT / "infra" / "stack", ROOT / "infra" / "pulumi_program", cache=tmp_path / "cache")
    assert clean.returncode == 0, clean.stdout

    broken = tmp_path / "broken_components.py"
    broken.write_text(source.replace("wait_timeout=", "wait_timout=", 1).replace("tests=", "test=", 1))
    done = mypy(broken, cache=tmp_path / "cache")
    assert done.returncode == 1
    assert 'Unexpected keyword argument "wait_timout" for overloaded function "Container"' in done.stdout
    assert 'Unexpected keyword argument "test" for "ContainerHealthcheckArgs"' in done.stdout
