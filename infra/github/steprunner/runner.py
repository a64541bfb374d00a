"""The runner: jobs in ``needs:`` order, their steps, composite actions and the process each ``run:`` step gets."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from infra.github.steprunner.commandfiles import parse_command_file
from infra.github.steprunner.equivalents import LOCAL_EQUIVALENTS, SHA_REF, JobState, Machine
from infra.github.steprunner.expressions import (
    ExpressionScope,
    RunnerError,
    Status,
    condition,
    interpolate,
    number,
    to_text,
    truthy,
)
from infra.github.steprunner.results import JobResult, RunResult, StepRun
from infra.workspace.graph import closure


def _load_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunnerError(f"{path}: file not found") from None


@dataclass
class StepCall:
    """One step about to run: where it is (for messages), its label, its YAML, its scope and process env."""

    where: str
    label: str
    step: Mapping[str, Any]
    scope: ExpressionScope
    env: dict[str, str]


class LocalRunner:
    """Runs a generated workflow (or one composite action) on this machine.

    ``root`` holds ``.github/workflows`` and ``actions/`` (where ``./actions/x`` points, like the repository
    root on GitHub); steps run in ``workdir`` (default ``root``), which is also ``GITHUB_WORKSPACE``.
    ``env`` is the environment the runner machine gives every step (default: this process's), ``secrets``
    and ``vars`` fill those contexts (a missing secret is the empty string, as on GitHub); ``github`` adds to
    (or replaces) properties of the ``github`` context, e.g. ``head_ref`` for a pull request's checks, or
    ``repository`` (``owner/name`` of the workflow's own repository, whose working copy is ``root``). ``remote``
    is where ``actions/checkout`` clones other repositories from: a template with ``{repository}``, ``{owner}`` and
    ``{name}``, e.g. ``/srv/git/{name}.git``. Local actions (``uses: ./x``) are found under ``workdir``, as GitHub
    finds them under ``GITHUB_WORKSPACE``.
    """

    def __init__(
        self,
        root: Path,
        *,
        workdir: Path | None = None,
        env: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        variables: Mapping[str, str] | None = None,
        github: Mapping[str, Any] | None = None,
        remote: str | None = None,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.workdir = (workdir or root).resolve()
        self.base_env = dict(os.environ if env is None else env)
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.github = dict(github or {})
        self.remote = remote
        self.echo = echo or (lambda line: None)
        self.masks: set[str] = {value for value in self.secrets.values() if value}
        self.run_id = str(int(time.time() * 1000) % 10**9)
        self.temp = Path(tempfile.gettempdir())

    def _repository(self) -> str:
        return str(self.github.get("repository") or self.base_env.get("GITHUB_REPOSITORY") or "")

    # -- masking ---------------------------------------------------------------------------------------

    def mask(self, text: str) -> str:
        for value in sorted(self.masks, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    # -- workflows --------------------------------------------------------------------------------------

    def run_workflow(
        self, workflow: str | Path, inputs: Mapping[str, Any] | None = None, *, jobs: Iterable[str] | None = None
    ) -> RunResult:
        """Run the workflow's jobs in order; ``jobs`` limits the run to those (and must include what they need)."""
        path = workflow if isinstance(workflow, Path) else self.root / workflow
        document = _load_yaml(path)
        if not isinstance(document, dict) or not isinstance(document.get("jobs"), dict):
            raise RunnerError(f"{path}: not a workflow (no jobs: mapping)")
        trigger = document.get("on") or document.get(True) or {}
        declared = (trigger.get("workflow_dispatch") or {}).get("inputs") or {} if isinstance(trigger, dict) else {}
        values = self._dispatch_inputs(path, declared, dict(inputs or {}))
        workflow_env = {str(k): v for k, v in (document.get("env") or {}).items()}
        specs: dict[str, Any] = document["jobs"]
        order = self._job_order(path, specs)
        if jobs is not None:
            wanted = set(jobs)
            unknown = sorted(wanted - set(specs))
            if unknown:
                raise RunnerError(f"{path}: no job(s) {', '.join(unknown)}")
            for job_id in wanted:
                missing = sorted(set(_needs(specs[job_id])) - wanted)
                if missing:
                    raise RunnerError(f"{path}: job {job_id} needs {', '.join(missing)}; run those too")
            order = [job_id for job_id in order if job_id in wanted]
        results: dict[str, JobResult] = {}
        self.temp = Path(tempfile.mkdtemp(prefix="ws-steprunner-"))  # RUNNER_TEMP and the steps' files
        try:
            for job_id in order:
                results[job_id] = self._run_job(path, document, job_id, specs[job_id], values, workflow_env, results)
        finally:
            shutil.rmtree(self.temp, ignore_errors=True)
        return RunResult(results)

    def _dispatch_inputs(self, path: Path, declared: Mapping[str, Any], given: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise RunnerError(f"{path}: unknown input(s) {', '.join(unknown)}; declared: {', '.join(declared)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            spec = spec or {}
            value = given.get(name, spec.get("default", ""))
            kind = spec.get("type", "string")
            if kind == "boolean":
                value = value if isinstance(value, bool) else str(value).lower() == "true"
            elif kind == "choice" and str(value) not in [str(o) for o in spec.get("options", [])]:
                raise RunnerError(f"{path}: input {name}={value!r} is not one of {spec.get('options')}")
            elif kind == "number":
                value = number(value)
            else:
                value = to_text(value)
            if spec.get("required") and value in ("", None):
                raise RunnerError(f"{path}: input {name} is required")
            values[name] = value
        return values

    @staticmethod
    def _job_order(path: Path, jobs: Mapping[str, Any]) -> list[str]:
        needs = {job_id: _needs(spec) for job_id, spec in jobs.items()}
        for job_id, deps in needs.items():
            missing = [d for d in deps if d not in jobs]
            if missing:
                raise RunnerError(f"{path}: job {job_id} needs unknown job(s) {', '.join(missing)}")
        order: list[str] = []
        while len(order) < len(jobs):
            ready = [j for j in jobs if j not in order and all(d in order for d in needs[j])]
            if not ready:
                raise RunnerError(f"{path}: the jobs' needs: form a cycle")
            order.append(ready[0])
        return order

    def _run_job(
        self,
        path: Path,
        document: Mapping[str, Any],
        job_id: str,
        spec: Mapping[str, Any],
        inputs: Mapping[str, Any],
        workflow_env: Mapping[str, Any],
        done: Mapping[str, JobResult],
    ) -> JobResult:
        for unsupported in ("strategy", "services", "container", "uses"):
            if unsupported in spec:
                raise RunnerError(f"{path}: job {job_id}: `{unsupported}:` is not supported by the local runner")
        direct = _needs(spec)
        # the jobs it needs, directly or through others (the same transitive closure as depends_on's)
        ancestors = closure({j: _needs(s) for j, s in document["jobs"].items()}, direct) & set(done)
        needs_context = {d: {"result": done[d].result, "outputs": dict(done[d].outputs)} for d in direct}
        status = Status(
            success=all(done[d].result == "success" for d in direct),
            failure=any(done[a].result == "failure" for a in ancestors),
        )
        github = {
            "workspace": str(self.workdir),
            "event_name": "workflow_dispatch",
            "job": job_id,
            "run_id": self.run_id,
            "workflow": str(document.get("name", path.name)),
            "event": {"inputs": dict(inputs)},
            "repository": self._repository(),
            **self.github,
        }
        scope = ExpressionScope(
            {
                "inputs": dict(inputs),
                "needs": needs_context,
                "github": github,
                "runner": {"os": "Linux", "arch": "X64", "temp": str(self.temp)},
                "secrets": self.secrets,
                "vars": self.variables,
                "env": {},
                "matrix": {},
                "job": {"status": "success"},
                "steps": {},
                "strategy": {},
            },
            status,
            self.workdir,
        )
        name = interpolate(spec.get("name", job_id), scope)
        if not condition(spec.get("if"), scope):
            self.echo(f"job {job_id}: skipped")
            return JobResult(job_id, name, "skipped")
        self.echo(f"job {job_id}: running")
        environment = spec.get("environment")
        environment_name = None
        if environment is not None:
            environment_name = interpolate(
                environment.get("name") if isinstance(environment, dict) else environment, scope
            )
        env_scope = scope.child(env={})
        job_env = {k: interpolate(v, env_scope) for k, v in workflow_env.items()}
        job_env.update(
            {str(k): interpolate(v, env_scope.child(env=job_env)) for k, v in (spec.get("env") or {}).items()}
        )
        timeout = spec.get("timeout-minutes")
        job_dir = self.temp / f"{job_id}-{uuid.uuid4().hex[:8]}"
        job_dir.mkdir(parents=True)
        state = JobState(
            job_id,
            job_dir,
            env=dict(job_env),
            path=[],
            deadline=time.monotonic() + float(timeout) * 60 if timeout else None,
        )
        steps_context: dict[str, Any] = {}
        results: list[StepRun] = []
        base = scope.child(steps=steps_context, github={**github}, env=job_env)
        for index, step in enumerate(spec.get("steps") or []):
            results.extend(self._run_step(path, index, step, base, state, steps_context, action_dir=None))
        result = "failure" if state.failed else "success"
        outputs_scope = base.child(steps=steps_context)
        outputs = {str(k): self.mask(interpolate(v, outputs_scope)) for k, v in (spec.get("outputs") or {}).items()}
        self.echo(f"job {job_id}: {result}")
        return JobResult(job_id, name, result, outputs, results, "".join(state.summary), environment_name)

    # -- steps -----------------------------------------------------------------------------------------------

    def _run_step(
        self,
        path: Path,
        index: int,
        step: Mapping[str, Any],
        scope: ExpressionScope,
        state: JobState,
        steps_context: dict[str, Any],
        action_dir: Path | None,
    ) -> list[StepRun]:
        where = f"{path}: job {state.job_id}, step {index + 1}"
        step_scope = scope.child(steps=steps_context, env={**scope.contexts["env"], **state.env})
        step_scope.status = Status(success=not state.failed, failure=state.failed)
        label = interpolate(step.get("name") or step.get("run", "") or step.get("uses", ""), step_scope)
        label = label.splitlines()[0] if label else f"step {index + 1}"
        step_id = step.get("id")
        if not condition(step.get("if"), step_scope):
            self.echo(f"  {label}: skipped")
            if step_id:
                steps_context[step_id] = {"outputs": {}, "outcome": "skipped", "conclusion": "skipped"}
            return [StepRun(label, "skipped")]
        # The process gets the env context (job env, GITHUB_ENV additions and, inside a composite action, the env
        # of the step that uses it, as on GitHub) and then the step's own env.
        step_env = {
            **step_scope.contexts["env"],
            **{str(k): interpolate(v, step_scope) for k, v in (step.get("env") or {}).items()},
        }
        call = StepCall(where, label, step, step_scope, step_env)
        if "run" in step:
            result = self._run_script(call, state, action_dir)
            results = [result]
        elif "uses" in step:
            result, results = self._run_uses(call, state)
        else:
            raise RunnerError(f"{where}: a step needs run: or uses:")
        outcome = result.outcome
        if outcome == "failure" and truthy(step.get("continue-on-error", False)):
            conclusion = "success"
        else:
            conclusion = outcome
            if outcome == "failure":
                state.failed = True
        if step_id:
            steps_context[step_id] = {"outputs": dict(result.outputs), "outcome": outcome, "conclusion": conclusion}
        self.echo(f"  {label}: {outcome}")
        return results

    def _environment(self, state: JobState, step_env: Mapping[str, str], files: Mapping[str, Path]) -> dict[str, str]:
        env = dict(self.base_env)
        env.update(state.env)
        env.update(step_env)
        if state.path:
            env["PATH"] = os.pathsep.join([*reversed(state.path), env.get("PATH", "")])
        env.update(
            {
                "CI": "true",
                "GITHUB_ACTIONS": "true",
                "GITHUB_WORKSPACE": str(self.workdir),
                "GITHUB_RUN_ID": self.run_id,
                "GITHUB_EVENT_NAME": "workflow_dispatch",
                "RUNNER_OS": "Linux",
                "RUNNER_TEMP": str(self.temp),
                **{name: str(file) for name, file in files.items()},
            }
        )
        return env

    def _run_script(self, call: StepCall, state: JobState, action_dir: Path | None) -> StepRun:
        where, step, scope = call.where, call.step, call.scope
        shell = step.get("shell")
        if shell is None:
            raise RunnerError(f"{where}: a run: step needs shell: (the generated steps always name it)")
        commands = {
            "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"],
            "sh": ["sh", "-e"],
        }
        if shell not in commands:
            raise RunnerError(f"{where}: shell {shell!r} is not supported (bash or sh)")
        body = interpolate(step["run"], scope)
        step_dir = Path(tempfile.mkdtemp(prefix="step-", dir=state.job_dir))
        files = {
            "GITHUB_OUTPUT": step_dir / "output",
            "GITHUB_ENV": step_dir / "env",
            "GITHUB_PATH": step_dir / "path",
            "GITHUB_STEP_SUMMARY": step_dir / "summary",
        }
        for file in files.values():
            file.touch()
        script_file = step_dir / "script.sh"
        script_file.write_text(body, encoding="utf-8")
        env = self._environment(state, call.env, files)
        if action_dir is not None:
            env["GITHUB_ACTION_PATH"] = str(action_dir)
        cwd = (
            self.workdir / interpolate(step["working-directory"], scope)
            if "working-directory" in step
            else self.workdir
        )
        timeout = _timeout(step.get("timeout-minutes"), state.deadline)
        log_file = step_dir / "log"
        with open(log_file, "wb") as log:
            process = subprocess.Popen(
                [*commands[shell], str(script_file)],
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                code = -1
        text = log_file.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if line.startswith("::add-mask::") and line[len("::add-mask::") :].strip():
                self.masks.add(line[len("::add-mask::") :].strip())
        if code == -1:
            text += f"\n(step timed out after {timeout:.0f} s)\n"
        outputs = parse_command_file(files["GITHUB_OUTPUT"].read_text(encoding="utf-8"))
        state.env.update(parse_command_file(files["GITHUB_ENV"].read_text(encoding="utf-8")))
        state.path += [line for line in files["GITHUB_PATH"].read_text(encoding="utf-8").splitlines() if line]
        summary = files["GITHUB_STEP_SUMMARY"].read_text(encoding="utf-8")
        if summary:
            state.summary.append(self.mask(summary))
        masked = self.mask(text)
        for line in masked.splitlines():
            self.echo(f"    {line}")
        return StepRun(call.label, "success" if code == 0 else "failure", code, masked, outputs)

    def _run_uses(self, call: StepCall, state: JobState) -> tuple[StepRun, list[StepRun]]:
        where = call.where
        uses = str(call.step["uses"])
        with_ = {str(k): interpolate(v, call.scope) for k, v in (call.step.get("with") or {}).items()}
        if uses.startswith("./"):
            return self._run_local_action(call, uses, with_, state)
        action, _, ref = uses.partition("@")
        if not SHA_REF.fullmatch(ref):
            raise RunnerError(f"{where}: {uses} is not pinned to a full commit SHA")
        equivalent = LOCAL_EQUIVALENTS.get(action)
        if equivalent is None:
            raise RunnerError(f"{where}: {action} has no local equivalent in this runner")
        machine = Machine(self.workdir, self.root, self._repository(), self.remote)
        outputs, note = equivalent(machine, with_, state)
        self.echo(f"    {note}")
        result = StepRun(call.label, "success", 0, note, outputs)
        return result, [result]

    def _run_local_action(
        self, call: StepCall, uses: str, with_: Mapping[str, str], state: JobState
    ) -> tuple[StepRun, list[StepRun]]:
        where, scope = call.where, call.scope
        action_dir = (self.workdir / uses).resolve()
        metadata = next((action_dir / n for n in ("action.yml", "action.yaml") if (action_dir / n).is_file()), None)
        if metadata is None:
            raise RunnerError(f"{where}: {uses} has no action.yml under {self.workdir}")
        document = _load_yaml(metadata)
        runs = document.get("runs") or {}
        if runs.get("using") != "composite":
            raise RunnerError(f"{metadata}: only composite actions (runs.using: composite) are supported")
        declared = document.get("inputs") or {}
        unknown = sorted(set(with_) - set(declared))
        if unknown:
            raise RunnerError(f"{where}: {uses} has no input(s) {', '.join(unknown)}")
        inputs: dict[str, str] = {}
        for name, spec in declared.items():
            spec = spec or {}
            if name in with_:
                inputs[name] = with_[name]
            elif spec.get("required") and "default" not in spec:
                raise RunnerError(f"{where}: {uses} needs input {name}")
            else:
                inputs[name] = interpolate(spec.get("default", ""), scope)
        inner_steps: dict[str, Any] = {}
        inner = scope.child(inputs=inputs, steps=inner_steps, env={**scope.contexts["env"], **call.env})
        failed_before = state.failed
        results: list[StepRun] = []
        for index, inner_step in enumerate(runs.get("steps") or []):
            results.extend(
                self._run_step(metadata, index, inner_step, inner, state, inner_steps, action_dir=action_dir)
            )
        failed = state.failed and not failed_before
        state.failed = failed_before  # the outer step decides (continue-on-error applies to the whole action)
        outputs = {
            str(name): interpolate((spec or {}).get("value", ""), inner.child(steps=inner_steps))
            for name, spec in (document.get("outputs") or {}).items()
        }
        result = StepRun(call.label, "failure" if failed else "success", None, "", outputs)
        return result, results


def _needs(spec: Mapping[str, Any]) -> list[str]:
    needs = spec.get("needs") or []
    return [needs] if isinstance(needs, str) else [str(n) for n in needs]


def _timeout(step_minutes: Any, deadline: float | None) -> float | None:
    limits = []
    if step_minutes:
        limits.append(float(step_minutes) * 60)
    if deadline is not None:
        limits.append(max(deadline - time.monotonic(), 1.0))
    return min(limits) if limits else None
