"""The `types` job of the primary's release workflow: build the shared types package and publish it.

Generated when workspace.yaml declares ``types:`` (see infra.schema.types_package and docs/schema.md) and the
primary lives in its own repository. On a push to the primary's default branch the job checks out the primary
and, beside it, the coordination repository (with the read-only ``WS_CHECKOUT_TOKEN``, so it runs in the
``release`` environment), installs the primary's Node dependencies (``npm ci``; TypeScript comes from there),
runs ``prisma generate``, builds the package with ``ws schema package`` (its version is derived from the
schema's content) and publishes it unless that version is already in the registry. Only this job holds
``packages: write``; the registry token reaches npm through ``NODE_AUTH_TOKEN`` in the step's env (GitHub
Packages: the workflow's own token; another registry: the ``NPM_TOKEN`` secret of the ``release`` environment).
"""

from __future__ import annotations

from infra.errors import UsageError
from infra.github.actions import expression, mapping, run_step, uses_step
from infra.github.layout import CHECKOUT_TOKEN_SECRET, RUNNER, SAFE_REF, layout_of
from infra.github.pins import CHECKOUT
from infra.workspace.model import Workspace
from infra.workspace.yamlwrite import YamlMap, YamlSeq

PACKAGE_DIR = "${RUNNER_TEMP}/types-package"  # expanded by bash, never by GitHub
NPM_TOKEN_SECRET = "NPM_TOKEN"


def types_job(workspace: Workspace, repo: str) -> YamlMap | None:
    """The job publishing the types package from ``repo`` (None unless it is the primary and ``types:`` is set)."""
    types = workspace.types
    spec = workspace.repos[repo]
    if types is None or spec.role != "primary" or spec.schema_ is None:
        return None
    layout = layout_of(workspace)
    if layout.folder is None or repo not in layout.checkouts:
        return None  # the primary is part of the coordination repository: nothing to release from on its own
    coordination = f"{workspace.github.owner}/{workspace.github.repo or layout.folder}"
    own_path = layout.checkouts[repo][1]
    github_packages = types.registry.startswith("https://npm.pkg.github.com")
    token = expression("github.token") if github_packages else expression(f"secrets.{NPM_TOKEN_SECRET}")
    steps = [
        uses_step(f"Check out {repo}", CHECKOUT, {"path": own_path, "persist-credentials": False}),
        uses_step(
            "Check out the workspace",
            CHECKOUT,
            {
                "repository": coordination,
                "path": layout.folder,
                "token": expression(f"secrets.{CHECKOUT_TOKEN_SECRET}"),
                "persist-credentials": False,
            },
        ),
        layout.action("Set up ws", "setup", {"working-directory": layout.folder}),
        run_step("Install the primary's Node dependencies", ["npm ci --ignore-scripts"], working_directory=own_path),
        run_step(
            "Generate the Prisma client",
            ['npx --no-install prisma generate --schema "$SCHEMA"'],
            env={"SCHEMA": spec.schema_.prisma},
            working_directory=own_path,
        ),
        run_step(
            "Build the types package (version from the schema's content)",
            [f'ws schema package --out "{PACKAGE_DIR}"'],
        ),
        run_step(
            f"Publish {types.package} unless this version is published already",
            [
                f'cd "{PACKAGE_DIR}"',
                'version="$(jq -r .version package.json)"',
                'if npm view "$PACKAGE@$version" version >/dev/null 2>&1; then',
                '  echo "$PACKAGE@$version is published already (the shared schema did not change)"',
                "else",
                "  npm publish --tag latest",
                '  echo "published $PACKAGE@$version"',
                "fi",
            ],
            env={"PACKAGE": types.package, "NODE_AUTH_TOKEN": token},
        ),
    ]
    if github_packages:  # GitHub Packages offers no trusted (OIDC) publishing: the job's own token it is
        steps[-1].yaml_add_eol_comment("zizmor: ignore[use-trusted-publishing] GitHub Packages has none", "shell")
    permissions = mapping(("contents", "read"), ("packages", "write"))
    permissions.yaml_add_eol_comment("read the repository", "contents")
    permissions.yaml_add_eol_comment("publish the types package", "packages")
    return mapping(
        ("name", f"types package {types.package}"),
        ("runs-on", RUNNER),
        ("timeout-minutes", 20),
        ("permissions", permissions),
        ("environment", mapping(("name", "release"))),  # WS_CHECKOUT_TOKEN (and NPM_TOKEN) stay in it
        ("env", mapping(("WS_WORKSPACE", f"{layout.folder}/workspace.yaml"))),
        ("steps", YamlSeq(steps)),
    )


def types_only_release(workspace: Workspace, repo: str, job: YamlMap) -> YamlMap:
    """The release workflow of a primary without an image to build: the types job alone, on a push."""
    branch = workspace.repos[repo].default_branch
    if not SAFE_REF.fullmatch(branch):
        raise UsageError(f"cannot generate GitHub automation: repos.{repo}.default_branch {branch!r} is not a safe ref")
    return mapping(
        ("name", "release types package"),
        ("on", mapping(("push", mapping(("branches", YamlSeq([branch])))))),
        ("permissions", mapping()),
        ("concurrency", mapping(("group", "release-" + expression("github.ref")), ("cancel-in-progress", False))),
        ("jobs", mapping(("types", job))),
    )
