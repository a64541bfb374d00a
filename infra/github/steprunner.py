"""A small local step runner: runs the generated workflows' and composite actions' ``run:`` steps here.

It exists so that the generated automation is executed for real, not only linted: the same YAML that GitHub
runs is read and its shell steps run on this machine, with the files GitHub provides.

What it supports (the subset the generators emit; anything else is refused with a message, never skipped):

* **Jobs** run one at a time in the workflow's order: topologically by ``needs:``, ties in file order (GitHub
  may run independent jobs in parallel; a sequential order is one of the orders it may choose). A job's
  ``if:`` is evaluated with the ``needs`` context (direct needs' ``result`` and ``outputs``); without a status
  function ``success()`` is implied. Job-level ``success()`` is true when every direct need succeeded,
  ``failure()`` when any job it needs, directly or through others, failed; ``cancelled()`` is always false
  (nothing is cancelled here) and ``always()`` true. ``outputs:``, ``env:``, ``timeout-minutes:`` and
  ``environment:`` (evaluated and recorded; there are no approvals here) are honoured. ``strategy.matrix``,
  ``services:``, ``container:`` and reusable workflows are not supported. ``permissions``, ``concurrency``,
  ``runs-on`` and ``run-name`` only mean something to GitHub and are not read.
* **Steps**: ``run:`` with ``shell: bash`` (``bash --noprofile --norc -eo pipefail``, as GitHub runs it) or
  ``sh``; ``id``, ``if``, ``env``, ``working-directory``, ``continue-on-error``, ``timeout-minutes``.
  Step-level ``success()``/``failure()`` look at the earlier steps of the same job.
* **Files**: every step gets fresh ``GITHUB_OUTPUT``, ``GITHUB_ENV``, ``GITHUB_PATH`` and
  ``GITHUB_STEP_SUMMARY`` files (``name=value`` and ``name<<DELIMITER`` forms); outputs become
  ``steps.<id>.outputs``, env and path entries apply to the later steps of the job, summaries are collected
  per job. ``::add-mask::VALUE`` lines mask VALUE in every log from then on, as do the secrets given.
* **Local actions** (``uses: ./actions/x``) are expanded from ``x/action.yml`` (``runs.using: composite``):
  ``with:`` is checked against the declared inputs (unknown or missing required inputs are errors), defaults
  apply, and the action's steps run with their own ``inputs`` and ``steps`` contexts. The ``env:`` of the step
  that uses the action reaches the action's steps (their own ``env:`` wins), as GitHub's runner does it.
* **Third-party actions** must be pinned to a full commit SHA; the pinned ones the generators use have local
  equivalents instead of being downloaded:

  - ``actions/checkout``: the working copy is the checkout; nothing is fetched and no credentials are written.
  - ``actions/setup-python``: the Python running this runner (with ws installed in it) stands for the one
    setup-python installs: its folder goes first on PATH, and ``python-version`` is its version. The pip
    download cache it would restore is not used.
  - ``actions/cache``: nothing is stored; ``cache-hit`` is ``'true'`` when every listed path already exists
    in the working copy (a local working copy keeps what a cache would bring back), else ``'false'``.
* **Expressions** ``${{ }}``: literals (``'string'`` with ``''`` escapes, numbers, ``true``, ``false``,
  ``null``), context properties (``inputs``, ``needs``, ``steps``, ``secrets``, ``vars``, ``env``, ``github``,
  ``runner``, ``job``, ``matrix``), ``!``, ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``&&``, ``||``
  (returning operand values, as GitHub does), parentheses, and the functions ``success``, ``failure``,
  ``cancelled``, ``always``, ``contains``, ``startsWith``, ``endsWith``, ``format``, ``toJSON`` and
  ``hashFiles``. Comparisons follow GitHub: strings case-insensitively, mixed types as numbers.

Processes a step leaves running (the local runtime's services) keep running, as they must for the later jobs
that test them; step output goes to a file, never a pipe, so such processes cannot hold a step open.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from infra.errors import UsageError
from infra.workspace.graph import closure

SHA_REF = re.compile(r"^[0-9a-f]{40}$")
EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
STATUS_FUNCTIONS = ("success", "failure", "cancelled", "always")


class RunnerError(UsageError):
    """The workflow uses something this runner does not support, or is malformed (exit code 2)."""


# --- expressions ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What the status functions answer where an expression is evaluated."""

    success: bool
    failure: bool


@dataclass
class Scope:
    """Contexts and status for evaluating expressions at one place of a run."""

    contexts: dict[str, Any]
    status: Status
    workdir: Path

    def child(self, **contexts: Any) -> Scope:
        return Scope({**self.contexts, **contexts}, self.status, self.workdir)


_TOKEN = re.compile(
    r"\s*(?:(?P<number>-?\d+(?:\.\d+)?)|(?P<string>'(?:[^']|'')*')|(?P<ident>[A-Za-z_][A-Za-z0-9_-]*)"
    r"|(?P<op>==|!=|<=|>=|&&|\|\||[!<>().,\[\]*]))"
)


def _tokens(text: str) -> list[tuple[str, str]]:
    result = []
    position = 0
    text = text.strip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise RunnerError(f"cannot parse expression {text!r} at {text[position:]!r}")
        kind = match.lastgroup or ""
        result.append((kind, match.group(kind)))
        position = match.end()
    return result


def to_text(value: Any) -> str:
    """How GitHub turns a value into a string when it is interpolated."""
    if value is None:
        return ""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict | list):
        return json.dumps(value, indent=2)
    return str(value)


def truthy(value: Any) -> bool:
    if isinstance(value, float):
        return value != 0 and not math.isnan(value)
    if isinstance(value, dict | list):
        return True
    return bool(value)


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value.strip() == "":
            return 0.0
        try:
            return float(value.strip())
        except ValueError:
            return math.nan
    return math.nan


def _same_kind(a: Any, b: Any) -> bool:
    def kind(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, int | float):
            return "number"
        if isinstance(v, str):
            return "string"
        return "object"

    return kind(a) == kind(b)


def _equal(a: Any, b: Any) -> bool:
    if _same_kind(a, b):
        if isinstance(a, str):
            return a.casefold() == b.casefold()
        if isinstance(a, dict | list):
            return a is b
        return bool(a == b)
    return _number(a) == _number(b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return _equal(a, b)
    if op == "!=":
        return not _equal(a, b)
    if isinstance(a, str) and isinstance(b, str):
        x: Any = a.casefold()
        y: Any = b.casefold()
    else:
        x, y = _number(a), _number(b)
        if math.isnan(x) or math.isnan(y):
            return False
    return bool({"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op])


def _lookup(value: Any, key: str) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        for name, item in value.items():
            if isinstance(name, str) and name.casefold() == key.casefold():
                return item
    return None


class _Parser:
    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.position = 0
        self.scope = scope

    def parse(self) -> Any:
        value = self.or_()
        if self.position != len(self.tokens):
            raise RunnerError(f"unexpected {self.tokens[self.position][1]!r} in expression {self.text!r}")
        return value

    def peek(self) -> str | None:
        return self.tokens[self.position][1] if self.position < len(self.tokens) else None

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.position >= len(self.tokens):
            raise RunnerError(f"expression {self.text!r} ends too early")
        token = self.tokens[self.position]
        if expected is not None and token[1] != expected:
            raise RunnerError(f"expected {expected!r}, found {token[1]!r} in expression {self.text!r}")
        self.position += 1
        return token

    def or_(self) -> Any:
        return self.chain("||", self.and_, lambda left, right: left if truthy(left) else right)

    def and_(self) -> Any:
        return self.chain("&&", self.comparison, lambda left, right: right if truthy(left) else left)

    def chain(self, operator: str, operand: Callable[[], Any], combine: Callable[[Any, Any], Any]) -> Any:
        """``operand (operator operand)*``, left to right; ``||`` and ``&&`` return an operand, as GitHub's do."""
        value = operand()
        while self.peek() == operator:
            self.take()
            value = combine(value, operand())
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while self.peek() in ("==", "!=", "<", "<=", ">", ">="):
            op = self.take()[1]
            value = _compare(op, value, self.unary())
        return value

    def unary(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            self.take(")")
            return value
        if kind == "number":
            return float(text)
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind != "ident":
            raise RunnerError(f"unexpected {text!r} in expression {self.text!r}")
        if text in ("true", "false"):
            return text == "true"
        if text == "null":
            return None
        if self.peek() == "(":
            return self.call(text)
        if text not in self.scope.contexts:
            raise RunnerError(f"unknown context {text!r} in expression {self.text!r}")
        value = self.scope.contexts[text]
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                kind, name = self.take()
                if kind != "ident":
                    raise RunnerError(f"expected a property name after '.' in expression {self.text!r}")
                value = _lookup(value, name)
            else:
                key = self.or_()
                self.take("]")
                value = value[int(_number(key))] if isinstance(value, list) else _lookup(value, to_text(key))
        return value

    def call(self, name: str) -> Any:
        self.take("(")
        args: list[Any] = []
        while self.peek() != ")":
            args.append(self.or_())
            if self.peek() == ",":
                self.take()
        self.take(")")
        status = self.scope.status
        folded = name.casefold()
        if folded == "success":
            return status.success
        if folded == "failure":
            return status.failure
        if folded == "cancelled":
            return False
        if folded == "always":
            return True
        if folded == "contains":
            haystack, needle = args
            if isinstance(haystack, list):
                return any(_equal(item, needle) for item in haystack)
            return to_text(needle).casefold() in to_text(haystack).casefold()
        if folded == "startswith":
            return to_text(args[0]).casefold().startswith(to_text(args[1]).casefold())
        if folded == "endswith":
            return to_text(args[0]).casefold().endswith(to_text(args[1]).casefold())
        if folded == "format":
            text = to_text(args[0])
            for index, arg in enumerate(args[1:]):
                text = text.replace("{" + str(index) + "}", to_text(arg))
            return text
        if folded == "tojson":
            return json.dumps(args[0], indent=2)
        if folded == "hashfiles":
            return hash_files(self.scope.workdir, [to_text(a) for a in args])
        raise RunnerError(f"unsupported function {name}() in expression {self.text!r}")


def evaluate(text: str, scope: Scope) -> Any:
    """Evaluate one expression (the part inside ``${{ }}``)."""
    return _Parser(text, scope).parse()


def interpolate(value: Any, scope: Scope) -> str:
    """A YAML value with ``${{ }}`` expressions replaced by their text."""
    if not isinstance(value, str):
        return to_text(value)
    return EXPRESSION.sub(lambda match: to_text(evaluate(match.group(1), scope)), value)


def condition(value: Any, scope: Scope) -> bool:
    """An ``if:``: with or without ``${{ }}``; ``success()`` is implied without a status function."""
    if value is None:
        return scope.status.success
    if isinstance(value, bool):
        return value and scope.status.success
    text = str(value).strip()
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", text, re.DOTALL)
    if whole:
        text = whole.group(1)
    if not re.search(r"\b(" + "|".join(STATUS_FUNCTIONS) + r")\s*\(", text):
        text = f"success() && ({text})"
    return truthy(evaluate(text, scope))


def hash_files(workdir: Path, patterns: list[str]) -> str:
    """GitHub's hashFiles(): SHA-256 over the SHA-256 of each matching file; '' when none matches."""
    matches: list[Path] = []
    for pattern in patterns:
        for path in sorted(workdir.rglob("*")):
            if path.is_file() and fnmatch.fnmatch(path.relative_to(workdir).as_posix(), pattern):
                matches.append(path)
    if not matches:
        return ""
    outer = hashlib.sha256()
    for path in dict.fromkeys(matches):
        outer.update(hashlib.sha256(path.read_bytes()).digest())
    return outer.hexdigest()


# --- the files GitHub provides to steps --------------------------------------------------------------------


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


# --- results ------------------------------------------------------------------------------------------------


@dataclass
class StepResult:
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
    steps: list[StepResult] = field(default_factory=list)
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


# --- the runner ---------------------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    try:
        return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunnerError(f"{path}: file not found") from None


@dataclass
class _JobState:
    """What the steps of one job share: env and PATH additions, failure so far, the summary, its folder."""

    job_id: str
    job_dir: Path
    env: dict[str, str]
    path: list[str]
    failed: bool = False
    summary: list[str] = field(default_factory=list)
    deadline: float | None = None


@dataclass
class _StepCall:
    """One step about to run: where it is (for messages), its label, its YAML, its scope and process env."""

    where: str
    label: str
    step: Mapping[str, Any]
    scope: Scope
    env: dict[str, str]


class LocalRunner:
    """Runs a generated workflow (or one composite action) on this machine.

    ``root`` holds ``.github/workflows`` and ``actions/`` (where ``./actions/x`` points, like the repository
    root on GitHub); steps run in ``workdir`` (default ``root``), which is also ``GITHUB_WORKSPACE``.
    ``env`` is the environment the runner machine gives every step (default: this process's), ``secrets``
    and ``vars`` fill those contexts (a missing secret is the empty string, as on GitHub); ``github`` adds to
    (or replaces) properties of the ``github`` context, e.g. ``head_ref`` for a pull request's checks.
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
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.workdir = (workdir or root).resolve()
        self.base_env = dict(os.environ if env is None else env)
        self.secrets = dict(secrets or {})
        self.variables = dict(variables or {})
        self.github = dict(github or {})
        self.echo = echo or (lambda line: None)
        self.masks: set[str] = {value for value in self.secrets.values() if value}
        self.run_id = str(int(time.time() * 1000) % 10**9)
        self.temp = Path(tempfile.gettempdir())

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
                value = _number(value)
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
            **self.github,
        }
        scope = Scope(
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
        state = _JobState(
            job_id,
            job_dir,
            env=dict(job_env),
            path=[],
            deadline=time.monotonic() + float(timeout) * 60 if timeout else None,
        )
        steps_context: dict[str, Any] = {}
        results: list[StepResult] = []
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
        scope: Scope,
        state: _JobState,
        steps_context: dict[str, Any],
        action_dir: Path | None,
    ) -> list[StepResult]:
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
            return [StepResult(label, "skipped")]
        # The process gets the env context (job env, GITHUB_ENV additions and, inside a composite action, the env
        # of the step that uses it, as on GitHub) and then the step's own env.
        step_env = {
            **step_scope.contexts["env"],
            **{str(k): interpolate(v, step_scope) for k, v in (step.get("env") or {}).items()},
        }
        call = _StepCall(where, label, step, step_scope, step_env)
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

    def _environment(self, state: _JobState, step_env: Mapping[str, str], files: Mapping[str, Path]) -> dict[str, str]:
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

    def _run_script(self, call: _StepCall, state: _JobState, action_dir: Path | None) -> StepResult:
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
        return StepResult(call.label, "success" if code == 0 else "failure", code, masked, outputs)

    def _run_uses(self, call: _StepCall, state: _JobState) -> tuple[StepResult, list[StepResult]]:
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
        outputs, note = equivalent(self, with_, state)
        self.echo(f"    {note}")
        result = StepResult(call.label, "success", 0, note, outputs)
        return result, [result]

    def _run_local_action(
        self, call: _StepCall, uses: str, with_: Mapping[str, str], state: _JobState
    ) -> tuple[StepResult, list[StepResult]]:
        where, scope = call.where, call.scope
        action_dir = (self.root / uses).resolve()
        metadata = next((action_dir / n for n in ("action.yml", "action.yaml") if (action_dir / n).is_file()), None)
        if metadata is None:
            raise RunnerError(f"{where}: {uses} has no action.yml under {self.root}")
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
        results: list[StepResult] = []
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
        result = StepResult(call.label, "failure" if failed else "success", None, "", outputs)
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


# --- local equivalents of the pinned third-party actions ------------------------------------------------------


def _checkout(runner: LocalRunner, with_: Mapping[str, str], state: _JobState) -> tuple[dict[str, str], str]:
    return {}, f"actions/checkout: the working copy {runner.workdir} is the checkout (nothing fetched, no credentials)"


def _setup_python(runner: LocalRunner, with_: Mapping[str, str], state: _JobState) -> tuple[dict[str, str], str]:
    folder = str(Path(sys.executable).parent)
    state.path.append(folder)
    version = platform.python_version()
    wanted = with_.get("python-version", "")
    note = f"actions/setup-python: using {sys.executable} (Python {version}; asked for {wanted or 'any'})"
    return {"python-version": version, "python-path": sys.executable, "cache-hit": "false"}, note


def _cache(runner: LocalRunner, with_: Mapping[str, str], state: _JobState) -> tuple[dict[str, str], str]:
    paths = [p.strip() for p in with_.get("path", "").splitlines() if p.strip()]
    hit = bool(paths) and all((runner.workdir / os.path.expanduser(p)).exists() for p in paths)
    return {"cache-hit": "true" if hit else "false"}, f"actions/cache: {'hit' if hit else 'miss'} for {paths}"


LocalEquivalent = Callable[[LocalRunner, Mapping[str, str], _JobState], tuple[dict[str, str], str]]
LOCAL_EQUIVALENTS: dict[str, LocalEquivalent] = {
    "actions/checkout": _checkout,
    "actions/setup-python": _setup_python,
    "actions/cache": _cache,
}


# --- command line ---------------------------------------------------------------------------------------------


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
