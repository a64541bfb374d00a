"""What a run produced: per step, per job and for the whole workflow."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class StepRun:
    name: str
    outcome: str  # success | failure | skipped
    exit_code: int | None = None
    log: str = ""
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class JobResult:
    job_id: str
    name: str
    result: str  # success | failure | skipped
    outputs: dict[str, str] = field(default_factory=dict)
    steps: list[StepRun] = field(default_factory=list)
    summary: str = ""
    environment: str | None = None

    @property
    def log(self) -> str:
        return "\n".join(f"--- {step.name}: {step.outcome}\n{step.log}" for step in self.steps)


@dataclass
class RunResult:
    jobs: dict[str, JobResult]

    @property
    def conclusion(self) -> str:
        return "failure" if any(job.result == "failure" for job in self.jobs.values()) else "success"

    @property
    def order(self) -> list[str]:
        return list(self.jobs)

    def ran(self) -> list[str]:
        return [job_id for job_id, job in self.jobs.items() if job.result != "skipped"]

    def report(self) -> str:
        lines = []
        for job in self.jobs.values():
            lines.append(f"{job.job_id}: {job.result}")
            lines += [f"  {step.name}: {step.outcome}" for step in job.steps]
        return "\n".join(lines)
