"""The scheduled health-probe workflow that `ws generate` writes: its shape, and the real linters on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from infra.generate import generated_files, stale_files
from infra.github.actions import generate_actions
from infra.github.workflows import PULUMI_CLOUD
from infra.monitoring.workflow import WORKFLOW, generate_workflow
from infra.workspace.loader import load_workspace
from tests.helpers import EXAMPLES, ROOT
from tests.test_github_actions import actionlint, check_jsonschema, write_tree, zizmor


def workflow(path: Path) -> dict[str, Any]:
    text = generate_workflow(load_workspace(path))[WORKFLOW]
    document: dict[str, Any] = YAML(typ="safe", pure=True).load(text)
    return document


def test_every_non_local_environment_is_probed_every_five_minutes_one_run_at_a_time() -> None:
    document = workflow(ROOT / "workspace.yaml")
    assert document["on"]["schedule"] == [{"cron": "*/5 * * * *"}]
    assert document["concurrency"] == {"group": "health-probes", "cancel-in-progress": False}
    assert document["permissions"] == {}
    probe = document["jobs"]["probe"]
    assert probe["strategy"]["matrix"]["include"] == [
        {"environment": name, "github_environment": github, "runtime": "pulumi", "pulumi_backend": PULUMI_CLOUD}
        for name, github in (("dev", "dev"), ("staging", "staging-monitoring"), ("prod", "prod-monitoring"))
    ]
    # the repos live beside this repository: checked out there at their default branch, as the deployment does
    assert document["env"] == {"WS_WORKSPACE": "workspace/workspace.yaml"}
    checkouts = [step["with"] for step in probe["steps"] if "actions/checkout@" in step.get("uses", "")]
    assert [(c.get("repository"), c.get("ref"), c["path"]) for c in checkouts] == [
        (None, None, "workspace"),
        ("saas-ecosystem/saas-ecosystem-architecture", "main", "saas-ecosystem-architecture"),
        ("saas-ecosystem/app-agents", "main", "app-agents"),
        ("saas-ecosystem/saas-spec-driven-development", "main", "saas-spec-driven-development"),
    ]
    assert all(c["persist-credentials"] is False for c in checkouts)
    pulumi = next(step for step in probe["steps"] if step.get("name") == "Install the Pulumi CLI of the pinned SDK")
    assert pulumi["if"] == "${{ matrix.runtime == 'pulumi' }}"
    assert probe["environment"] == {"name": "${{ matrix.github_environment }}"}
    assert probe["permissions"] == {"contents": "read"} and probe["timeout-minutes"] == 10
    run = probe["steps"][-1]
    assert run["run"].endswith('ws health --env "$ENVIRONMENT" --record --interval 5m\n')
    assert run["env"] == {"ENVIRONMENT": "${{ matrix.environment }}", "PULUMI_BACKEND": "${{ matrix.pulumi_backend }}"}


def test_repos_inside_the_workspace_need_no_checkout_of_their_own() -> None:
    document = workflow(EXAMPLES / "workspace.yaml")
    assert "env" not in document
    steps = document["jobs"]["probe"]["steps"]
    assert [s["with"] for s in steps if "actions/checkout@" in s.get("uses", "")] == [{"persist-credentials": False}]


def test_a_workspace_with_only_local_environments_gets_no_workflow(tmp_path: Path) -> None:
    text = (EXAMPLES / "workspace.yaml").read_text()
    start, end = text.index("  dev:\n"), text.index("database:")
    local_only = tmp_path / "workspace.yaml"
    local_only.write_text(text[:start] + "\n" + text[end:])
    assert generate_workflow(load_workspace(local_only)) == {}


def test_ws_generate_writes_it_and_the_committed_copies_are_current() -> None:
    for path in (ROOT / "workspace.yaml", EXAMPLES / "workspace.yaml"):
        loaded = load_workspace(path)
        assert WORKFLOW in generated_files(loaded)
        assert WORKFLOW not in stale_files(loaded)


def test_actionlint_zizmor_and_the_workflow_schema_accept_it(tmp_path: Path) -> None:
    loaded = load_workspace(ROOT / "workspace.yaml")
    tree = write_tree(tmp_path, {**generate_actions(loaded), **generate_workflow(loaded)})
    schema = check_jsonschema(tree)
    assert schema.returncode == 0, schema.stdout + schema.stderr
    lint = actionlint(tree, [WORKFLOW])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = zizmor(tree)
    assert audit.returncode == 0, audit.stdout + audit.stderr


def test_each_matrix_job_gets_only_the_secrets_its_environment_reads(tmp_path: Path) -> None:
    """Least privilege: the probe of a stack on an S3 backend gets the AWS keys and no Pulumi Cloud token, the
    others the token and no AWS key; no probe gets REDIS_URL (a stack's servers' addresses come from the stack)."""
    text = (ROOT / "workspace.yaml").read_text(encoding="utf-8")
    old = "  prod:\n    runtime: pulumi\n"
    assert old in text
    path = tmp_path / "workspace.yaml"
    path.write_text(text.replace(old, old + "    pulumi:\n      backend: s3://acme-pulumi-state\n"), encoding="utf-8")
    probe = workflow(path)["jobs"]["probe"]
    cloud = "(matrix.environment == 'dev' || matrix.environment == 'staging')"
    assert probe["env"] == {
        "DATABASE_URL": "${{ secrets.DATABASE_URL }}",
        "PULUMI_ACCESS_TOKEN": f"${{{{ {cloud} && secrets.PULUMI_ACCESS_TOKEN || '' }}}}",
        "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
        "AWS_ACCESS_KEY_ID": "${{ (matrix.environment == 'prod') && secrets.AWS_ACCESS_KEY_ID || '' }}",
        "AWS_SECRET_ACCESS_KEY": "${{ (matrix.environment == 'prod') && secrets.AWS_SECRET_ACCESS_KEY || '' }}",
    }
    loaded = load_workspace(path)
    tree = write_tree(tmp_path / "tree", {**generate_actions(loaded), **generate_workflow(loaded)})
    lint = actionlint(tree, [WORKFLOW])
    assert lint.returncode == 0, lint.stdout + lint.stderr
    audit = zizmor(tree)
    assert audit.returncode == 0, audit.stdout + audit.stderr
