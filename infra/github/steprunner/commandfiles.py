"""The files GitHub gives every step (GITHUB_OUTPUT, GITHUB_ENV, ...): reading what a step wrote to them."""

from __future__ import annotations

from infra.github.steprunner.expressions import RunnerError


def parse_command_file(text: str) -> dict[str, str]:
    """``name=value`` lines and ``name<<DELIMITER`` ... ``DELIMITER`` blocks (GITHUB_OUTPUT, GITHUB_ENV)."""
    values: dict[str, str] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            body: list[str] = []
            while index < len(lines) and lines[index] != delimiter:
                body.append(lines[index])
                index += 1
            if index >= len(lines):
                raise RunnerError(f"{name}: no closing {delimiter!r} line in a command file")
            index += 1
            values[name] = "\n".join(body)
        elif "=" in line:
            name, value = line.split("=", 1)
            values[name] = value
        else:
            raise RunnerError(f"cannot read command file line {line!r} (expected name=value or name<<DELIMITER)")
    return values
