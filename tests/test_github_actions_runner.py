"""The local step runner: expressions, command files, job order and conditions, local actions, masking, and
hostile dispatch inputs driven through the generated workflow (they reach `ws` as plain strings, never a shell).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from infra.github import actions, workflows
from infra.github.pins import CACHE, CHECKOUT, SETUP_PYTHON
from infra.github.steprunner import (
    ExpressionScope,
    LocalRunner,
    RunnerError,
    Status,
    condition,
    evaluate,
    hash_files,
    interpolate,
    parse_command_file,
)
from infra.workspace.loader import load_workspace
from tests.fake_github import FakeGitHub
from tests.helpers import ROOT

GOLDEN_WORKSPACE = ROOT / "tests" / "golden" / "github" / "workspace.yaml"


def scope(tmp_path: Path, *, success: bool = True, failure: bool = False, **contexts: Any) -> ExpressionScope:
    return ExpressionScope(contexts, Status(success=success, failure=failure), tmp_path)


# --- expressions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("needs.plan.outputs.deploy_api == 'true'", True),
        ("needs.plan.outputs.deploy_web == 'true'", False),
        ("needs.plan.outputs.missing == ''", True),
        ("'ABC' == 'abc'", True),
        ("1 == '1'", True),
        ("'1.0' == 1", True),
        ("null == ''", True),
        ("inputs.dry_run", False),
        ("!inputs.dry_run", True),
        ("inputs.name || 'fallback'", "fallback"),
        ("inputs.environment && 'x' || 'y'", "x"),
        ("(1 < 2) && (2 >= 2) && !(3 <= 2)", True),
        ("contains('a,b,c', 'B')", True),
        ("startsWith('deploy-api', 'deploy-')", True),
        ("endsWith('deploy-api', '-web')", False),
        ("format('{0}-{1}', 'a', 2)", "a-2"),
        ("steps.select.outputs['deploy_api']", "true"),
        ("'it''s'", "it's"),
    ],
)
def test_expressions(tmp_path: Path, text: str, expected: Any) -> None:
    contexts: dict[str, Any] = {
        "needs": {"plan": {"result": "success", "outputs": {"deploy_api": "true", "deploy_web": "false"}}},
        "inputs": {"dry_run": False, "name": "", "environment": "local"},
        "steps": {"select": {"outputs": {"deploy_api": "true"}}},
    }
    assert evaluate(text, ExpressionScope(contexts, Status(success=True, failure=False), tmp_path)) == expected


def test_status_functions_and_implied_success(tmp_path: Path) -> None:
    guard = "${{ !cancelled() && !failure() && needs.plan.outputs.x == 'true' }}"
    needs = {"plan": {"outputs": {"x": "true"}}}
    assert condition(guard, scope(tmp_path, success=False, failure=False, needs=needs))  # a need was skipped
    assert not condition(guard, scope(tmp_path, success=False, failure=True, needs=needs))
    # no status function: success() is implied
    assert not condition("needs.plan.outputs.x == 'true'", scope(tmp_path, success=False, needs=needs))
    assert condition("needs.plan.outputs.x == 'true'", scope(tmp_path, needs=needs))
    assert condition(
        "failure() && needs.plan.outputs.x != ''", scope(tmp_path, success=False, failure=True, needs=needs)
    )
    assert condition(None, scope(tmp_path)) and not condition(None, scope(tmp_path, success=False))
    assert condition("always()", scope(tmp_path, success=False, failure=True))


def test_unsupported_expressions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RunnerError, match="unknown context"):
        evaluate("nope.x", scope(tmp_path))
    with pytest.raises(RunnerError, match="unsupported function"):
        evaluate("fromJSON('{}')", scope(tmp_path))
    with pytest.raises(RunnerError, match="cannot parse"):
        evaluate("inputs.x === 1", scope(tmp_path, inputs={}))


def test_interpolation_keeps_values_as_text(tmp_path: Path) -> None:
    hostile = "$(touch pwned) ${{ secrets.TOKEN }} 'q' \"qq\""
    text = interpolate("value: ${{ inputs.x }}!", scope(tmp_path, inputs={"x": hostile}, secrets={"TOKEN": "s3"}))
    assert text == f"value: {hostile}!"  # the value's own ${{ is not evaluated again


def test_hash_files(tmp_path: Path) -> None:
    (tmp_path / "requirements.lock").write_text("a==1\n")
    first = hash_files(tmp_path, ["requirements.lock"])
    assert len(first) == 64 and hash_files(tmp_path, ["missing.txt"]) == ""
    (tmp_path / "requirements.lock").write_text("a==2\n")
    assert hash_files(tmp_path, ["requirements.lock"]) != first


def test_command_files() -> None:
    text = "a=1\nb=x=y\n\nlong<<EOF_1\nline one\nline=two\nEOF_1\nc=\n"
    assert parse_command_file(text) == {"a": "1", "b": "x=y", "long": "line one\nline=two", "c": ""}
    with pytest.raises(RunnerError, match="no closing"):
        parse_command_file("x<<END\nnever closed\n")


# --- workflows ------------------------------------------------------------------------------------------------


def tree(tmp_path: Path, workflow: str, action_files: dict[str, str] | None = None) -> Path:
    root = tmp_path / "repo"
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "w.yml").write_text(textwrap.dedent(workflow))
    for name, text in (action_files or {}).items():
        (root / "actions" / name).mkdir(parents=True)
        (root / "actions" / name / "action.yml").write_text(textwrap.dedent(text))
    return root


def one_job(body: str) -> str:
    """A workflow_dispatch workflow of one job, ``only`` (on ubuntu-24.04), whose other keys are ``body``."""
    return "on: workflow_dispatch\njobs:\n  only:\n    runs-on: ubuntu-24.04\n" + textwrap.indent(
        textwrap.dedent(body), "    "
    )


GREET_ACTION = """\
    name: greet
    description: test action
    inputs:
      who: {description: who, required: true}
      greeting: {description: greeting, required: false, default: hello}
    outputs:
      said: {description: what was said, value: "${{ steps.say.outputs.said }}"}
    runs:
      using: composite
      steps:
        - id: say
          shell: bash
          env: {WHO: "${{ inputs.who }}", GREETING: "${{ inputs.greeting }}"}
          run: |
            echo "said=$GREETING $WHO" >> "$GITHUB_OUTPUT"
            echo "action path $GITHUB_ACTION_PATH"
    """

PIPELINE = f"""\
    name: t
    on:
      workflow_dispatch:
        inputs:
          fail_at: {{type: string, default: ''}}
          skip_b: {{type: boolean, default: false}}
    permissions: {{}}
    jobs:
      a:
        runs-on: ubuntu-24.04
        outputs:
          value: ${{{{ steps.one.outputs.value }}}}
          run_b: ${{{{ steps.one.outputs.run_b }}}}
        steps:
          - uses: {CHECKOUT.uses}
          - uses: {SETUP_PYTHON.uses}
            with: {{python-version: '3.11'}}
          - id: one
            shell: bash
            env: {{SKIP_B: "${{{{ inputs.skip_b }}}}"}}
            run: |
              echo "value=from-a" >> "$GITHUB_OUTPUT"
              if [ "$SKIP_B" = "true" ]; then echo "run_b=false"; else echo "run_b=true"; fi >> "$GITHUB_OUTPUT"
              echo "CARRIED=carried" >> "$GITHUB_ENV"
              mkdir -p "$RUNNER_TEMP/bin" && printf '#!/bin/sh\\necho tool-ran\\n' > "$RUNNER_TEMP/bin/mytool"
              chmod +x "$RUNNER_TEMP/bin/mytool" && echo "$RUNNER_TEMP/bin" >> "$GITHUB_PATH"
              echo "## summary of a" >> "$GITHUB_STEP_SUMMARY"
          - shell: bash
            run: |
              echo "carried=$CARRIED"
              mytool
              python -c 'import sys; print("python", sys.version_info[:2])'
          - id: greet
            uses: ./actions/greet
            with: {{who: world}}
          - shell: bash
            env: {{SAID: "${{{{ steps.greet.outputs.said }}}}"}}
            run: echo "greet said $SAID"
      b:
        needs: a
        if: ${{{{ needs.a.outputs.run_b == 'true' }}}}
        runs-on: ubuntu-24.04
        steps:
          - shell: bash
            env: {{FROM_A: "${{{{ needs.a.outputs.value }}}}", FAIL_AT: "${{{{ inputs.fail_at }}}}"}}
            run: |
              echo "b got $FROM_A"
              if [ "$FAIL_AT" = "b" ]; then echo "failing on purpose"; exit 3; fi
      c:
        needs: [a, b]
        if: ${{{{ !cancelled() && !failure() }}}}
        runs-on: ubuntu-24.04
        steps:
          - shell: bash
            run: echo c ran
      d:
        needs: c
        runs-on: ubuntu-24.04
        steps:
          - shell: bash
            run: echo d ran
      undo:
        needs: [a, b, c, d]
        if: failure()
        runs-on: ubuntu-24.04
        steps:
          - shell: bash
            run: echo undo ran
    """


def test_a_workflow_runs_in_order_with_outputs_env_path_and_summary(tmp_path: Path) -> None:
    root = tree(tmp_path, PIPELINE, {"greet": GREET_ACTION})
    result = LocalRunner(root).run_workflow(".github/workflows/w.yml")
    assert result.order == ["a", "b", "c", "d", "undo"]
    assert {j: r.result for j, r in result.jobs.items()} == {
        "a": "success",
        "b": "success",
        "c": "success",
        "d": "success",
        "undo": "skipped",
    }
    a = result.jobs["a"]
    assert a.outputs == {"value": "from-a", "run_b": "true"}
    assert "carried=carried" in a.steps[3].log and "tool-ran" in a.steps[3].log
    assert "python (3, 11)" in a.steps[3].log
    assert "the working copy" in a.steps[0].log
    assert "greet said hello world" in a.steps[5].log
    assert f"action path {root / 'actions' / 'greet'}" in a.steps[4].log
    assert a.summary.strip() == "## summary of a"
    assert "b got from-a" in result.jobs["b"].steps[0].log
    assert result.conclusion == "success"


def test_a_skipped_job_does_not_block_guarded_dependents(tmp_path: Path) -> None:
    root = tree(tmp_path, PIPELINE, {"greet": GREET_ACTION})
    result = LocalRunner(root).run_workflow(".github/workflows/w.yml", {"skip_b": True})
    assert result.jobs["b"].result == "skipped"
    assert result.jobs["c"].result == "success"  # guarded by !cancelled() && !failure()
    assert result.jobs["d"].result == "success"
    assert result.jobs["undo"].result == "skipped"


def test_a_failure_skips_dependents_and_runs_the_failure_job(tmp_path: Path) -> None:
    root = tree(tmp_path, PIPELINE, {"greet": GREET_ACTION})
    result = LocalRunner(root).run_workflow(".github/workflows/w.yml", {"fail_at": "b"})
    b = result.jobs["b"]
    assert b.result == "failure" and b.steps[0].exit_code == 3 and "failing on purpose" in b.steps[0].log
    assert result.jobs["c"].result == "skipped"
    assert result.jobs["d"].result == "skipped"
    assert result.jobs["undo"].result == "success"
    assert result.conclusion == "failure"


def test_steps_after_a_failure_are_skipped_unless_always(tmp_path: Path) -> None:
    workflow = one_job(
        """\
            steps:
              - {shell: bash, run: exit 1}
              - {shell: bash, run: echo never}
              - {if: always(), shell: bash, run: echo cleanup}
              - {if: failure(), shell: bash, run: echo on-failure}
    """
    )
    result = LocalRunner(tree(tmp_path, workflow)).run_workflow(".github/workflows/w.yml")
    outcomes = [step.outcome for step in result.jobs["only"].steps]
    assert outcomes == ["failure", "skipped", "success", "success"]
    assert result.jobs["only"].result == "failure"


def test_masks_and_secrets_never_reach_the_logs(tmp_path: Path) -> None:
    workflow = one_job(
        """\
            env: {TOKEN: "${{ secrets.TOKEN }}"}
            outputs: {derived: "${{ steps.s.outputs.derived }}"}
            steps:
              - id: s
                shell: bash
                run: |
                  derived="db://user:$TOKEN-derived@host"
                  echo "::add-mask::$derived"
                  echo "derived=$derived" >> "$GITHUB_OUTPUT"
                  echo "token is $TOKEN and derived is $derived"
              - {shell: bash, run: 'echo "again db://user:$TOKEN-derived@host"'}
    """
    )
    lines: list[str] = []
    runner = LocalRunner(tree(tmp_path, workflow), secrets={"TOKEN": "hunter2"}, echo=lines.append)
    result = runner.run_workflow(".github/workflows/w.yml")
    everything = "\n".join(lines) + result.jobs["only"].log + str(result.jobs["only"].outputs)
    assert "hunter2" not in everything
    assert "token is *** and derived is ***" in result.jobs["only"].steps[0].log
    assert "again ***" in result.jobs["only"].steps[1].log


def test_local_action_inputs_are_checked(tmp_path: Path) -> None:
    workflow = one_job(
        """\
            steps:
              - uses: ./actions/greet
                with: {who: x, shout: loud}
    """
    )
    with pytest.raises(RunnerError, match="has no input"):
        LocalRunner(tree(tmp_path / "one", workflow, {"greet": GREET_ACTION})).run_workflow(".github/workflows/w.yml")
    missing = workflow.replace("with: {who: x, shout: loud}", "with: {greeting: hi}")
    with pytest.raises(RunnerError, match="needs input who"):
        LocalRunner(tree(tmp_path / "two", missing, {"greet": GREET_ACTION})).run_workflow(".github/workflows/w.yml")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ("{uses: actions/checkout@v4}", "not pinned to a full commit SHA"),
        ("{uses: someone/else@" + "a" * 40 + "}", "has no local equivalent"),
        ("{run: echo hi}", "needs shell:"),
        ("{shell: pwsh, run: echo hi}", "is not supported"),
    ],
)
def test_unsupported_steps_are_refused(tmp_path: Path, step: str, message: str) -> None:
    workflow = one_job(
        f"""\
            steps:
              - {step}
    """
    )
    with pytest.raises(RunnerError, match=message):
        LocalRunner(tree(tmp_path, workflow)).run_workflow(".github/workflows/w.yml")


def test_cache_equivalent_hits_when_the_path_exists(tmp_path: Path) -> None:
    workflow = one_job(
        f"""\
            steps:
              - {{id: c1, uses: {CACHE.uses}, with: {{path: present, key: k}}}}
              - {{id: c2, uses: {CACHE.uses}, with: {{path: absent, key: k}}}}
              - shell: bash
                env: {{ONE: "${{{{ steps.c1.outputs.cache-hit }}}}", TWO: "${{{{ steps.c2.outputs.cache-hit }}}}"}}
                run: echo "hits $ONE $TWO"
    """
    )
    root = tree(tmp_path, workflow)
    (root / "present").mkdir()
    result = LocalRunner(root).run_workflow(".github/workflows/w.yml")
    assert "hits true false" in result.jobs["only"].steps[2].log


def test_dispatch_inputs_are_validated(tmp_path: Path) -> None:
    root = tree(tmp_path, PIPELINE, {"greet": GREET_ACTION})
    with pytest.raises(RunnerError, match="unknown input"):
        LocalRunner(root).run_workflow(".github/workflows/w.yml", {"nope": "1"})


# --- the generated workflow with hostile inputs ---------------------------------------------------------------


@pytest.fixture(scope="module")
def golden_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden workspace's coordination repository as a runner checks it out (``coordination/`` in the runner's
    workspace folder, its repos beside it), with one bare git repository per repo under ``git/`` to clone from."""
    base = tmp_path_factory.mktemp("golden")
    root = base / "runner" / "coordination"
    root.mkdir(parents=True)
    shutil.copy(GOLDEN_WORKSPACE, root / "workspace.yaml")
    loaded = load_workspace(root / "workspace.yaml")
    for relative, content in {**actions.generate_actions(loaded), **workflows.generate_workflows(loaded)}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(content)
    for repo in loaded.model.repos:
        source = base / "sources" / repo
        source.mkdir(parents=True)
        (source / "README.md").write_text(f"# {repo}\n")
        bare_repo(base / "git" / repo, source, "main")
    return root


def golden_runner(golden_tree: Path, **options: Any) -> LocalRunner:
    remote = str(golden_tree.parent.parent / "git" / "{name}" / "bare.git")
    return LocalRunner(golden_tree, workdir=golden_tree.parent, remote=remote, **options)


HOSTILE = [
    "$(touch pwned)",
    "core`touch pwned`",
    "core'; touch pwned; echo '",
    'core"; touch pwned; echo "',
    "${{ secrets.API_KEY }}",
    "core,api\ntouch pwned",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_repositories_input_reaches_ws_as_a_plain_string(golden_tree: Path, hostile: str) -> None:
    """The generated plan job hands the input to `ws plan` through env:; ws refuses the unknown repo (exit 2)
    naming it literally; nothing is executed and the secret is never expanded or shown."""
    runner = golden_runner(golden_tree, secrets={"API_KEY": "the-api-key-value"})
    result = runner.run_workflow(workflows.DEPLOYMENT_WORKFLOW, {"environment": "local", "repositories": hostile})
    plan = result.jobs["plan"]
    assert plan.result == "failure"
    failed = next(step for step in plan.steps if step.outcome == "failure")
    assert failed.name == "Plan the stages (Mermaid graph in the job summary)"
    assert failed.exit_code == 2
    assert "unknown repo" in failed.log
    assert not (golden_tree / "pwned").exists()
    assert "the-api-key-value" not in plan.log
    if hostile.startswith("${{"):
        assert "${{ secrets.API_KEY }}" in failed.log
    # nothing ran after the failed plan, and rollback has no deployment to roll back
    assert result.ran() == ["plan"]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_the_generated_selection_step_treats_hostile_input_as_data(golden_tree: Path, hostile: str) -> None:
    """The select step of the generated plan job, run on its own: outputs stay booleans, nothing executes."""
    document = YAML(typ="safe").load((golden_tree / workflows.DEPLOYMENT_WORKFLOW).read_text())
    select = next(s for s in document["jobs"]["plan"]["steps"] if s.get("id") == "select")
    workflow = {
        "on": {"workflow_dispatch": {"inputs": {"repositories": {"type": "string", "default": "all"}}}},
        "jobs": {
            "plan": {
                "runs-on": "ubuntu-24.04",
                "outputs": document["jobs"]["plan"]["outputs"],
                "steps": [select],
            }
        },
    }
    root = golden_tree.parent / f"select-{abs(hash(hostile))}"
    (root / ".github" / "workflows").mkdir(parents=True, exist_ok=True)
    (root / ".github" / "workflows" / "select.yml").write_text(json.dumps(workflow))
    runner = LocalRunner(root)
    outputs = runner.run_workflow(".github/workflows/select.yml", {"repositories": hostile}).jobs["plan"].outputs
    assert not (root / "pwned").exists() and not (golden_tree / "pwned").exists()
    # whitespace is dropped and the rest split on commas: only exact repo names select anything
    names = set("".join(hostile.split()).split(","))
    for repo in ("core", "api", "worker", "web"):
        assert outputs[f"deploy_{repo}"] == ("true" if repo in names else "false")
    assert outputs["deploy_core"] == ("true" if hostile.startswith("core,") else "false")
    assert outputs["deployment_id"] == ""
    everything = runner.run_workflow(".github/workflows/select.yml", {"repositories": " all "}).jobs["plan"].outputs
    # (the plan job's other outputs, deployment_id and the ref_<repo> commits, come from steps not run here)
    assert {k: v for k, v in everything.items() if k.startswith("deploy_")} == {
        "deploy_core": "true",
        "deploy_api": "true",
        "deploy_worker": "true",
        "deploy_web": "true",
    }


def test_command_line(tmp_path: Path) -> None:
    root = tree(tmp_path, PIPELINE, {"greet": GREET_ACTION})
    base = [sys.executable, "-m", "infra.github.steprunner", ".github/workflows/w.yml", "--root", str(root)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(base, cwd=root, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "b got from-a" in ok.stdout and "undo: skipped" in ok.stdout
    failed = subprocess.run([*base, "-i", "fail_at=b"], cwd=root, capture_output=True, text=True, env=env)
    assert failed.returncode == 1 and "undo: success" in failed.stdout
    bad = subprocess.run([*base, "-i", "nope=1"], cwd=root, capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "unknown input(s) nope" in bad.stderr and "Traceback" not in bad.stderr


# --- the generated pull-request workflow ----------------------------------------------------------------------


def test_the_pr_checks_pass_on_the_example_workspace_and_catch_a_stale_file(tmp_path: Path) -> None:
    root = tmp_path / "workspace"
    shutil.copytree(ROOT / "examples", root, ignore=shutil.ignore_patterns(".ws", "node_modules", "__pycache__"))
    generated = subprocess.run(
        [sys.executable, "-m", "infra.cli", "generate"], cwd=root, capture_output=True, text=True
    )
    assert generated.returncode == 0, generated.stderr
    with pytest.raises(RunnerError, match="needs check; run those too"):
        LocalRunner(root).run_workflow(workflows.PR_WORKFLOW, jobs=["preview"])

    clean = LocalRunner(root).run_workflow(workflows.PR_WORKFLOW, jobs=["check"])
    check = clean.jobs["check"]
    assert check.result == "success", check.log
    ran = [step.name for step in check.steps if step.outcome == "success"]
    assert ["ws check", "Generated files are up to date", "Check schema alignment"] == ran[-3:]

    # a pull request that edits workspace.yaml without regenerating: the checks fail on the stale files
    text = (root / "workspace.yaml").read_text()
    (root / "workspace.yaml").write_text(
        text.replace("  dev:\n    runtime: pulumi\n", "  qa:\n    runtime: local\n  dev:\n    runtime: pulumi\n", 1)
    )
    stale = LocalRunner(root).run_workflow(workflows.PR_WORKFLOW, jobs=["check"]).jobs["check"]
    assert stale.result == "failure"
    failed = next(step for step in stale.steps if step.outcome == "failure")
    assert failed.name == "ws check" and "checks failed: generated files" in failed.log


def test_the_generated_setup_action_masks_the_named_variables(tmp_path: Path) -> None:
    """The setup action's own ::add-mask:: step (not the runner's masking of declared secrets) hides values,
    and a variable name that is not a plain identifier is refused before bash could expand it."""
    root = tmp_path / "repo"
    (root / "actions" / "setup").mkdir(parents=True)
    (root / "actions" / "setup" / "action.yml").write_text(actions.yaml_text(actions.setup_action()))
    workflow = one_job(
        """\
            env: {TOKEN: not-a-declared-secret-42, OTHER: visible-value}
            steps:
              - uses: ./actions/setup
                with: {mask-variables: "TOKEN EMPTY_ONE"}
              - {shell: bash, run: 'echo "token=$TOKEN other=$OTHER"; command -v ws'}
    """
    )
    (root / ".github" / "workflows").mkdir(parents=True)
    (root / ".github" / "workflows" / "w.yml").write_text(textwrap.dedent(workflow))
    result = LocalRunner(root).run_workflow(".github/workflows/w.yml")
    job = result.jobs["only"]
    assert job.result == "success", job.log
    assert "token=*** other=visible-value" in job.steps[-1].log
    assert "not-a-declared-secret-42" not in job.log
    assert str(Path(sys.executable).parent / "ws") in job.steps[-1].log  # setup put this Python's ws first

    hostile = workflow.replace('"TOKEN EMPTY_ONE"', '"TOKEN x[$(touch pwned)]"')
    (root / ".github" / "workflows" / "w.yml").write_text(textwrap.dedent(hostile))
    refused = LocalRunner(root).run_workflow(".github/workflows/w.yml").jobs["only"]
    assert refused.result == "failure"
    assert "is not an environment variable name" in refused.steps[0].log
    assert not (root / "pwned").exists()


def bare_repo(folder: Path, files_from: Path, branch: str) -> Path:
    """A bare git repository whose ``branch`` holds a copy of ``files_from`` (what the fake GitHub serves)."""
    folder.mkdir(parents=True)
    work = folder / "work"
    shutil.copytree(files_from, work, ignore=shutil.ignore_patterns(".ws", "node_modules", "__pycache__", "*.db"))

    def git(*args: str, cwd: Path = work) -> None:
        subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)

    git("init", "-q", "-b", branch)
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "schema")
    git("clone", "-q", "--bare", str(work), str(folder / "bare.git"), cwd=folder)
    return folder / "bare.git"


def test_the_pr_schema_check_reads_every_repo_at_the_pull_requests_branch(tmp_path: Path) -> None:
    """A workspace whose repos are sibling checkouts (absent from the pull request's checkout): the generated
    check reads every repo's schema at the PR's head branch through the GitHub API (here the local fake, backed
    by real git repositories); a repo without that branch is read at its default branch, and the log says which;
    a hostile branch name reaches ws as one plain string, never a shell."""
    root = tmp_path / "workspace"
    root.mkdir()
    repos = ("saas-ecosystem-architecture", "app-agents", "saas-spec-driven-development")
    branch = "feature/shared-models"
    with FakeGitHub() as github:
        for repo in repos:
            bare = bare_repo(tmp_path / "git" / repo, ROOT / "examples" / repo, "main")
            if repo != "saas-spec-driven-development":  # the change spans only the other two repos
                subprocess.run(["git", "branch", branch, "main"], cwd=bare, check=True)
            github.add_repo(f"example-ecosystem/{repo}", bare)
        text = (ROOT / "examples" / "workspace.yaml").read_text()
        for repo in repos:
            assert f"    path: {repo}\n" in text
            text = text.replace(f"    path: {repo}\n", f"    path: ../{repo}\n")  # not in this checkout
        text = text.replace("  repo: workspace\n", f"  repo: workspace\n  api_url: {github.api_url}\n", 1)
        (root / "workspace.yaml").write_text(text)
        generated = subprocess.run(
            [sys.executable, "-m", "infra.cli", "generate"], cwd=root, capture_output=True, text=True
        )
        assert generated.returncode == 0, generated.stderr
        machine = {k: v for k, v in os.environ.items() if k != "GITHUB_TOKEN"}
        secrets = {"WS_CHECKOUT_TOKEN": github.token}

        def check(head_ref: str) -> Any:
            runner = LocalRunner(
                root, env=machine, secrets=secrets, github={"event_name": "pull_request", "head_ref": head_ref}
            )
            return runner.run_workflow(workflows.PR_WORKFLOW, jobs=["check"]).jobs["check"]

        passed = check(branch)
        assert passed.result == "success", passed.log
        assert passed.environment == "workspace-pr"  # the token is used only behind the environment's reviewers
        assert "alignment: 100% (" in passed.log and "Check schema alignment: success" in passed.log
        reads = [path for method, path in github.calls() if method == "GET" and "/contents/" in path]
        assert {path.split("/")[3] for path in reads} == set(repos)  # every repo's schema came from the API
        notes = [line for line in passed.log.splitlines() if "read at its default branch" in line]
        assert notes == [
            f"saas-spec-driven-development: no branch {branch!r} on GitHub; read at its default branch main"
        ]

        hostile = "x$(touch${IFS}pwned)`touch pwned`"
        fallen_back = check(hostile)
        assert fallen_back.result == "success", fallen_back.log
        for repo in repos:
            assert f"{repo}: no branch {hostile!r} on GitHub; read at its default branch main" in fallen_back.log
        assert not (root / "pwned").exists() and not (tmp_path / "pwned").exists()


# --- actions/checkout of other repositories -------------------------------------------------------------------


def checkout_workflow(with_: str) -> str:
    return one_job(
        f"""\
            steps:
              - id: co
                uses: {CHECKOUT.uses}
                with: {with_}
              - {{shell: bash, run: 'git -C other log -1 --format=%s; ls other'}}
    """
    )


def test_checkout_of_another_repository_clones_it_from_the_remote(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file.txt").write_text("v1\n")
    bare = bare_repo(tmp_path / "git" / "other", source, "main")
    subprocess.run(["git", "tag", "v1", "main"], cwd=bare, check=True)
    root = tree(
        tmp_path, checkout_workflow("{repository: acme/other, ref: v1, path: other, persist-credentials: false}")
    )
    remote = str(tmp_path / "git" / "{name}" / "bare.git")
    result = LocalRunner(root, remote=remote).run_workflow(".github/workflows/w.yml")
    job = result.jobs["only"]
    assert job.result == "success", job.log
    assert job.steps[0].outputs["ref"] == "v1" and len(job.steps[0].outputs["commit"]) == 40
    assert "schema" in job.steps[1].log and "file.txt" in job.steps[1].log
    # a second run fetches into the same clone instead of failing on the existing folder
    again = LocalRunner(root, remote=remote).run_workflow(".github/workflows/w.yml")
    assert again.jobs["only"].result == "success", again.jobs["only"].log


@pytest.mark.parametrize(
    ("with_", "remote", "message"),
    [
        ("{repository: acme/other, path: other}", None, "this runner has no remote to clone it from"),
        ("{repository: acme/other, path: ../outside}", "/nowhere/{name}.git", "is not under GITHUB_WORKSPACE"),
        ("{repository: acme/other, path: other}", "/nowhere/{name}.git", "cannot clone acme/other"),
        ("{path: elsewhere}", None, "(this workflow's repository) is checked out at"),
    ],
)
def test_checkout_refuses_what_it_cannot_do(tmp_path: Path, with_: str, remote: str | None, message: str) -> None:
    root = tree(tmp_path, checkout_workflow(with_))
    with pytest.raises(RunnerError, match=re.escape(message)):
        LocalRunner(root, remote=remote).run_workflow(".github/workflows/w.yml")


def test_checkout_of_an_unknown_ref_is_an_error_naming_it(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "file.txt").write_text("v1\n")
    bare_repo(tmp_path / "git" / "other", source, "main")
    root = tree(tmp_path, checkout_workflow("{repository: acme/other, ref: no-such-branch, path: other}"))
    with pytest.raises(RunnerError, match="acme/other has no branch, tag or commit 'no-such-branch'"):
        LocalRunner(root, remote=str(tmp_path / "git" / "{name}" / "bare.git")).run_workflow(".github/workflows/w.yml")
