"""Workflows that live in each repo of the workspace (not in the coordination repository), and `ws repo-files`.

``ws generate`` writes them under ``.github/repo-files/<repo>/`` of the coordination repository (GitHub runs
only ``.github/workflows/*.yml`` at the top, so there they are inert and reviewed like any generated file);
``ws repo-files`` copies them into the repos' checkouts and, with ``--pr``, commits them on a branch, pushes it
and opens the linked pull requests (infra.github.prs).

Per repo:

* ``release.yml`` (repos with a ``service.image``): on a push to the default branch, build the repo's image
  from its ``Dockerfile`` and push it to its registry tagged with the commit SHA (docker/login-action,
  docker/setup-buildx-action and docker/build-push-action pinned by SHA; ``packages: write`` on that job
  only). Those SHAs are the versions the coordinated deployment deploys.
  The primary's also publishes the shared types package when workspace.yaml declares ``types:``
  (infra.github.types_release).
* ``workspace-integration.yml``: on a pull request, check out the coordination repository and the sibling repos
  beside this one (each at the pull request's branch name when it has that branch, else at its default branch,
  and the log says which), bring the workspace up on the runner (``ws up --env local``: embedded PostgreSQL
  and Redis-compatible server, no Docker), run every repo's integration tests (``ws deploy --env local``, whose
  integration step runs them against the running services), then ``ws down``. The job reads the repos with
  the read-only ``WS_CHECKOUT_TOKEN`` and so runs in the ``workspace-pr`` environment.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infra.errors import UsageError
from infra.github.actions import expression, mapping, run_step, safe_name, uses_step, yaml_text
from infra.github.git import Checkout
from infra.github.layout import CHECKOUT_TOKEN_SECRET, PR_ENVIRONMENT, RUNNER, SAFE_REF, layout_of, ref_key
from infra.github.pins import BUILD_PUSH, CHECKOUT, LOGIN, SETUP_BUILDX, check_pins
from infra.github.reviews import CODEOWNERS, codeowners, has_codeowners
from infra.github.types_release import types_job, types_only_release
from infra.workspace.images import registry_of
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import Workspace
from infra.workspace.yamlwrite import YamlMap, YamlSeq

if TYPE_CHECKING:  # the client and prs import github3 and requests, which `ws generate` and `ws check` never need
    from infra.github.client import GitHub
    from infra.github.prs import PullRecord

REPO_FILES_DIR = ".github/repo-files"
RELEASE_WORKFLOW = ".github/workflows/release.yml"
INTEGRATION_WORKFLOW = ".github/workflows/workspace-integration.yml"
BRANCH = "ws/repo-files"
Progress = Callable[[str], None]


def _quiet(message: str) -> None:
    return None


def release_workflow(workspace: Workspace, repo: str) -> YamlMap | None:
    """The release workflow of ``repo`` (None when it has no image to build)."""
    spec = workspace.repos[repo]
    publish_types = types_job(workspace, repo)  # the primary with workspace.yaml's `types:` (types_release.py)
    if spec.service is None or spec.service.image is None:
        return None if publish_types is None else types_only_release(workspace, repo, publish_types)
    image = spec.service.image
    registry = registry_of(image)
    branch = spec.default_branch
    if not SAFE_REF.fullmatch(branch):
        raise UsageError(f"cannot generate GitHub automation: repos.{repo}.default_branch {branch!r} is not a safe ref")
    if registry == "ghcr.io":
        # the workflow's own token may push packages of its repository's owner (packages: write below)
        login = {"registry": registry, "username": expression("github.actor"), "password": expression("github.token")}
        environment = None
    else:
        login = {
            "registry": registry,
            "username": expression("secrets.REGISTRY_USERNAME"),
            "password": expression("secrets.REGISTRY_PASSWORD"),
        }
        environment = mapping(("name", "release"))  # the registry's credentials stay in that environment
    steps = [
        uses_step("Check out", CHECKOUT, {"persist-credentials": False}),
        uses_step("Set up Docker Buildx", SETUP_BUILDX),
        uses_step("Log in to the registry", LOGIN, login),
        uses_step(
            "Build and push the image tagged with the commit",
            BUILD_PUSH,
            {"context": ".", "push": True, "tags": f"{image}:" + expression("github.sha")},
            step_id="image",
        ),
    ]
    permissions = mapping(("contents", "read"), ("packages", "write"))
    permissions.yaml_add_eol_comment("read the repository to build it", "contents")
    permissions.yaml_add_eol_comment("push the image to the registry (ghcr.io: this repository's packages)", "packages")
    job = mapping(
        ("name", f"image {image}"),
        ("runs-on", RUNNER),
        ("timeout-minutes", 30),
        ("permissions", permissions),
        ("environment", environment),
        ("steps", YamlSeq(steps)),
    )
    return mapping(
        ("name", "release image"),
        ("on", mapping(("push", mapping(("branches", YamlSeq([branch])))))),
        ("permissions", mapping()),
        ("concurrency", mapping(("group", "release-" + expression("github.ref")), ("cancel-in-progress", False))),
        ("jobs", mapping(("image", job), *([("types", publish_types)] if publish_types is not None else []))),
    )


def _branch_script(targets: Mapping[str, tuple[str, str]]) -> list[str]:
    """Bash writing ``ref_<name>=`` the pull request's branch when that repo has it, else its default branch.

    ``targets``: output name -> (owner/name, default branch). The branch name and the token arrive through env
    only; each part of the branch name is URL-encoded before it goes into the API path.
    """
    lines = [
        'encoded="$(jq -rn --arg branch "$BRANCH" \'$branch | split("/") | map(@uri) | join("/")\')"',
        "ref_for() {",
        '  if curl -fs -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Accept: application/vnd.github+json" \\',
        '    "$GITHUB_API_URL/repos/$1/git/ref/heads/$encoded"; then',
        "    printf '%s' \"$BRANCH\"",
        "  else",
        "    printf '%s' \"$2\"",
        "  fi",
        "}",
    ]
    for key, (full_name, default) in targets.items():
        lines += [
            f'ref="$(ref_for {full_name} {default})"',
            f'echo "{key}=$ref" >> "$GITHUB_OUTPUT"',
            f'echo "{full_name}: checked at $ref"',
        ]
    return lines


def integration_workflow(workspace: Workspace, repo: str) -> YamlMap:
    """The pull-request workflow of ``repo``: the workspace up on the runner with every repo's integration tests."""
    layout = layout_of(workspace)
    if layout.folder is None or repo not in layout.checkouts:
        raise UsageError(
            f"cannot generate the integration workflow of {repo}: it lives inside the coordination repository "
            "(repos.<name>.path), so its pull requests are the coordination repository's own"
        )
    coordination = f"{workspace.github.owner}/{workspace.github.repo or layout.folder}"
    own_path = layout.checkouts[repo][1]
    others = {name: where for name, where in layout.checkouts.items() if name != repo}
    targets: dict[str, tuple[str, str]] = {"ref_workspace": (coordination, "main")}
    for name, (full_name, _path) in others.items():
        branch = workspace.repos[name].default_branch
        if not SAFE_REF.fullmatch(branch):
            raise UsageError(f"cannot generate GitHub automation: repos.{name}.default_branch {branch!r} is unsafe")
        targets[ref_key(name)] = (full_name, branch)
    token = expression(f"secrets.{CHECKOUT_TOKEN_SECRET}")

    def checkout(name: str, full_name: str, path: str, key: str) -> YamlMap:
        return uses_step(
            f"Check out {name}",
            CHECKOUT,
            {
                "repository": full_name,
                "ref": expression(f"steps.branches.outputs.{key}"),
                "path": path,
                "token": token,
                "persist-credentials": False,
            },
        )

    steps = [
        uses_step(f"Check out {repo} (this pull request)", CHECKOUT, {"path": own_path, "persist-credentials": False}),
        run_step(
            "Find the pull request's branch in the other repositories",
            _branch_script(targets),
            env={"BRANCH": expression("github.head_ref"), "TOKEN": token},
            step_id="branches",
        ),
        checkout("the workspace", coordination, layout.folder, "ref_workspace"),
        *(checkout(name, full_name, path, ref_key(name)) for name, (full_name, path) in others.items()),
        layout.action("Set up ws", "setup", {"working-directory": layout.folder}),
        run_step("Bring the workspace up (embedded PostgreSQL and Redis)", ["ws up --env local"]),
        run_step(
            "Run every repo's integration tests against the running services",
            ["ws deploy --env local"],
        ),
        run_step("Stop the workspace", ["ws down --env local"], condition="always()"),
    ]
    job = mapping(
        ("name", "workspace integration"),
        ("runs-on", RUNNER),
        ("timeout-minutes", 30),
        ("permissions", mapping(("contents", "read"))),
        ("environment", mapping(("name", PR_ENVIRONMENT))),
        ("steps", YamlSeq(steps)),
    )
    return mapping(
        ("name", "workspace integration"),
        ("on", mapping(("pull_request", mapping()))),
        ("permissions", mapping()),
        (
            "concurrency",
            mapping(
                ("group", "workspace-integration-" + expression("github.event.pull_request.number")),
                ("cancel-in-progress", True),
            ),
        ),
        ("env", mapping(("WS_WORKSPACE", f"{layout.folder}/workspace.yaml"))),
        ("jobs", mapping(("integration", job))),
    )


def repo_files(loaded: LoadedWorkspace) -> dict[str, dict[str, str]]:
    """repo -> {path inside the repo: content} of the workflows (and the CODEOWNERS) that repo should carry."""
    check_pins()
    workspace = loaded.model
    layout = layout_of(workspace)
    source = loaded.path.name
    files: dict[str, dict[str, str]] = {}
    for repo in workspace.repos:
        safe_name(repo, "repo")
        own: dict[str, str] = {}
        release = release_workflow(workspace, repo)
        if release is not None:
            own[RELEASE_WORKFLOW] = yaml_text(release, source)
        if layout.folder is not None and repo in layout.checkouts:
            own[INTEGRATION_WORKFLOW] = yaml_text(integration_workflow(workspace, repo), source)
        if has_codeowners(workspace, repo):
            own[CODEOWNERS] = codeowners(workspace, repo)
        if own:
            files[repo] = own
    return files


def generate_repo_files(loaded: LoadedWorkspace) -> dict[str, str]:
    """``ws generate``: every repo's files under ``.github/repo-files/<repo>/`` of the coordination repository."""
    return {
        posixpath.join(REPO_FILES_DIR, repo, path): content
        for repo, own in repo_files(loaded).items()
        for path, content in own.items()
    }


@dataclass
class RepoFilesResult:
    repo: str
    files: list[tuple[str, str]]  # (path, created | updated | unchanged)
    commit: str | None = None
    pushed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_repo_files(
    loaded: LoadedWorkspace,
    repos: list[str] | None = None,
    *,
    dry_run: bool = False,
    pr: bool = False,
    github: GitHub | None = None,
    progress: Progress = _quiet,
) -> tuple[list[RepoFilesResult], list[PullRecord]]:
    """Write each repo's files into its checkout; with ``pr``, on branch ``ws/repo-files`` (from the default
    branch), commit, push and open the linked pull requests. Refuses, before writing anything, checkouts that
    are missing or (with ``pr``) have uncommitted changes."""
    from infra.github.prs import open_pulls  # here: it imports github3, which generating the files never needs

    wanted = repo_files(loaded)
    names = [r for r in (repos or list(loaded.model.repos)) if r in wanted]
    missing = [f"{r} ({loaded.repo_dir(r)})" for r in names if not Path(loaded.repo_dir(r)).is_dir()]
    if missing:
        raise UsageError(f"not checked out: {', '.join(missing)}; clone them or pass --repos")
    if pr and not dry_run:
        if github is None:
            raise UsageError("ws repo-files --pr opens pull requests: set GITHUB_TOKEN (or use --dry-run)")
        dirty = [f"{r} ({', '.join(f[:3])})" for r in names if (f := Checkout(r, loaded.repo_dir(r)).dirty_files())]
        if dirty:
            raise UsageError(f"uncommitted changes in {'; '.join(dirty)}; commit or stash them first")
    results: list[RepoFilesResult] = []
    for repo in names:
        directory = Path(loaded.repo_dir(repo))
        checkout = Checkout(repo, directory)
        if pr and not dry_run:
            default = loaded.model.repos[repo].default_branch
            if checkout.has_branch(BRANCH):
                checkout.checkout(BRANCH)
            else:
                start = default if checkout.has_branch(default) else f"origin/{default}"
                checkout.create_branch(BRANCH, start)
        states = []
        for path, content in wanted[repo].items():
            target = directory / path
            data = content.encode("utf-8")
            if target.is_file() and target.read_bytes() == data:
                states.append((path, "unchanged"))
                continue
            states.append((path, "updated" if target.exists() else "created"))
            if not dry_run:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
        result = RepoFilesResult(repo, states)
        changed = [path for path, state in states if state != "unchanged"]
        if pr and not dry_run and changed:
            result.commit = checkout.commit_all(
                "Add the workspace's generated workflows\n\nWritten by `ws repo-files` from the coordination "
                "repository's workspace.yaml: the image release and the cross-repo integration checks.",
                changed,
            )
            checkout.push(BRANCH)
            result.pushed = True
            progress(f"{repo}: committed and pushed {len(changed)} file(s) on {BRANCH}")
        results.append(result)
    pulls: list[PullRecord] = []
    touched = [r.repo for r in results if r.pushed]
    if pr and touched and github is not None:
        pulls = open_pulls(
            loaded,
            github,
            BRANCH,
            "Add the workspace's generated workflows",
            None,
            repos=touched,
            body_for_new="The image release workflow and the cross-repo integration checks, written by "
            "`ws repo-files` from the coordination repository's workspace.yaml (`ws generate` keeps them current).",
            progress=progress,
        )
    return results, pulls
