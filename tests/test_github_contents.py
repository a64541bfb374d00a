"""Remote schema reading through the contents API (what `ws schema check --ref NAME` uses)."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.github.client import GitHubError
from infra.github.contents import list_dir, read_files
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.fake_github import FakeGitHub
from tests.workspace_builder import OWNER, REPO_SCHEMAS, commit_file, git_in

PRIMARY = "saas-ecosystem-architecture"
SCHEMA = REPO_SCHEMAS[PRIMARY]


@pytest.fixture
def setup(github_workspace: Path, fake: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, LoadedWorkspace]:
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    return github_workspace, load_workspace(github_workspace / "workspace.yaml")


def test_read_files_at_a_branch_and_at_a_sha(setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub) -> None:
    root, loaded = setup
    original = (root / PRIMARY / SCHEMA).read_text()
    main_sha = git_in(root / PRIMARY, "rev-parse", "main")
    git_in(root / PRIMARY, "checkout", "-q", "-b", "feat")
    changed = original + "\n/// added on the branch\nmodel Extra {\n  id Int @id\n}\n"
    commit_file(root / PRIMARY, SCHEMA, changed, "schema change")
    git_in(root / PRIMARY, "push", "-q", "origin", "feat")

    assert read_files(loaded, PRIMARY, "feat", [SCHEMA]) == {SCHEMA: changed}
    assert read_files(loaded, PRIMARY, main_sha, [SCHEMA]) == {SCHEMA: original}
    reads = [(r.method, r.path, r.query) for r in fake.requests if "/contents/" in r.path]
    assert reads == [
        ("GET", f"/repos/{OWNER}/{PRIMARY}/contents/{SCHEMA}", {"ref": "feat"}),
        ("GET", f"/repos/{OWNER}/{PRIMARY}/contents/{SCHEMA}", {"ref": main_sha}),
    ]


def test_a_missing_file_is_left_out_and_a_missing_ref_is_one_line(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    _root, loaded = setup
    assert read_files(loaded, PRIMARY, "main", ["docs/missing.md", SCHEMA]).keys() == {SCHEMA}
    assert ("GET", f"/repos/{OWNER}/{PRIMARY}/commits/main") in fake.calls()  # the ref itself was checked
    with pytest.raises(GitHubError) as caught:
        read_files(loaded, PRIMARY, "no-such-branch", [SCHEMA])
    message = str(caught.value)
    assert message == (
        f"GitHub: {OWNER}/{PRIMARY}: no branch, tag or commit 'no-such-branch' (repo {PRIMARY}); push it or check --ref"
    )


def test_list_dir_lists_the_files_of_a_multi_file_schema_folder(
    setup: tuple[Path, LoadedWorkspace], fake: FakeGitHub
) -> None:
    root, loaded = setup
    commit_file(root / PRIMARY, "db/schema/models.prisma", "model A {\n  id Int @id\n}\n", "split schema")
    commit_file(root / PRIMARY, "db/schema/base.prisma", "// base\n", "split schema")
    commit_file(root / PRIMARY, "db/schema/migrations/0001/migration.sql", "SELECT 1;\n", "migration")
    git_in(root / PRIMARY, "push", "-q", "origin", "main")
    assert list_dir(loaded, PRIMARY, "main", "db/schema") == [
        "db/schema/base.prisma",
        "db/schema/migrations",
        "db/schema/models.prisma",
    ]
    assert list_dir(loaded, PRIMARY, "main", "db/schema/migrations") == ["db/schema/migrations/0001"]
    files = read_files(loaded, PRIMARY, "main", ["db/schema/base.prisma", "db/schema/models.prisma"])
    assert files["db/schema/base.prisma"] == "// base\n"
    with pytest.raises(GitHubError, match="folder nope does not exist at 'main'"):
        list_dir(loaded, PRIMARY, "main", "nope")
    listing = [r for r in fake.requests if r.path == f"/repos/{OWNER}/{PRIMARY}/contents/db/schema"]
    assert listing and listing[0].query == {"ref": "main"}
