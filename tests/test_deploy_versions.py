"""`--versions` parsing: safe tags only (they become Docker tags, git refs and process arguments), known repos only."""

from __future__ import annotations

import pytest

from infra.deploy.versions import VERSION_RULE, parse_versions
from infra.errors import UsageError
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.helpers import EXAMPLES


@pytest.fixture(scope="module")
def loaded() -> LoadedWorkspace:
    return load_workspace(EXAMPLES / "workspace.yaml")


def test_safe_versions_are_accepted(loaded: LoadedWorkspace) -> None:
    text = "app-agents=1.4.2, saas-spec-driven-development=v2.0.0-rc.1_build.7,saas-ecosystem-architecture=abc1234"
    assert parse_versions(loaded, text) == {
        "app-agents": "1.4.2",
        "saas-spec-driven-development": "v2.0.0-rc.1_build.7",
        "saas-ecosystem-architecture": "abc1234",
    }
    assert parse_versions(loaded, None) == {} and parse_versions(loaded, " , ") == {}
    assert parse_versions(loaded, "app-agents=" + "a" * 128) == {"app-agents": "a" * 128}


@pytest.mark.parametrize(
    "version",
    ["1.0; touch pwned", "$(id)", "1.0`id`", "-rf", ".hidden", "a/b", "a b", "1.0&&x", "a" * 129, "tag\n1", "é1"],
)
def test_unsafe_versions_are_one_usage_error_naming_the_item_and_the_rule(
    loaded: LoadedWorkspace, version: str
) -> None:
    with pytest.raises(UsageError) as raised:
        parse_versions(loaded, f"app-agents=1.0,saas-spec-driven-development={version}")
    message = str(raised.value)
    assert f"saas-spec-driven-development={version.strip()!r}" in message
    assert VERSION_RULE in message


def test_unknown_repos_and_malformed_items_are_usage_errors(loaded: LoadedWorkspace) -> None:
    with pytest.raises(UsageError, match=r"unknown repo 'nope' in nope=1\.0; the repo must be one workspace\.yaml"):
        parse_versions(loaded, "nope=1.0")
    with pytest.raises(UsageError, match="is not repo=tag"):
        parse_versions(loaded, "app-agents")
    with pytest.raises(UsageError, match="app-agents is named twice"):
        parse_versions(loaded, "app-agents=1,app-agents=2")
