"""The pulumi runtime: environments provisioned by the Pulumi program (infra/pulumi_program/) via the Automation API.

It selects the environment's stack in the project at the workspace root, sets a repo's image tag in the
stack config (``ws:services.<repo>.image_tag``, the key the Pulumi program reads), and runs ``up`` targeted at
that repo's resources (one update at a time: Pulumi locks a stack during an update, so the repos of a stage take
turns for their config and ``up`` while their health gates run in parallel) (the ``ws:stack:Service`` component named after the repo and its children), or at the
network, database and cache for the infra step. URLs come from the stack outputs (``service_urls``,
``database_superuser_url``, ``cache_url``). Dry runs use ``preview``. On a Docker stack, a repo's migrate.command runs
in its one-off migration container (:meth:`PulumiRuntime.migrate`): the setting ``ws:services.<repo>.migration_tag``
names the release and an update targeted at (and replacing) that container runs it, before any service updates.
On a Kubernetes stack the same setting names the image of the repo's migration Job, and an update targeted at the
Job (and the ConfigMap and Secret it reads its env from) runs it; the repo's deploy update later finds the Job
unchanged, so each release's migration runs once, in the cluster, never from the checkout.

The Pulumi CLI cannot run on this machine; the tests drive this class through a fake stack object with the
same methods as ``pulumi.automation.Stack`` (``stack_factory``).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from infra.deploy.runtime import Infra, MigrationRun, process_env, rendered_env
from infra.errors import CheckFailed, UsageError, WorkspaceError
from infra.workspace import images
from infra.workspace.env import CACHE_PASSWORD_SECRET, SecretSource, database_password_secret, environ_secrets
from infra.workspace.loader import read_document
from infra.workspace.located import LoadedWorkspace

INFRA_NAMES = ("network", "postgres", "redis")
DEFAULT_TAG = "latest"


def tag_key(repo: str) -> str:
    return f'ws:services["{repo}"].image_tag'


def enabled_key(repo: str) -> str:
    """The stack setting that declares the repo's container at all (absent: true; see infra.stack.stackfiles)."""
    return f'ws:services["{repo}"].enabled'


def migration_key(repo: str) -> str:
    """The stack setting naming the release whose migrate.command the one-off container runs (absent: image_tag)."""
    return f'ws:services["{repo}"].migration_tag'


def migration_resources(repo: str) -> tuple[tuple[str, str], ...]:
    """(type of its URN, name) of each resource of a repo's one-off migration on Docker
    (infra.stack.components.MigrationContainer, named "<repo>-migrate"): targeted by URN even before the stack's
    state holds them."""
    return (
        ("ws:stack:Migration", f"{repo}-migrate"),
        ("ws:stack:Migration$docker:index/remoteImage:RemoteImage", f"{repo}-migrate-image"),
        ("ws:stack:Migration$docker:index/container:Container", f"{repo}-migrate-container"),
    )


def kubernetes_migration_resources(repo: str) -> tuple[tuple[str, str], ...]:
    """(type of its URN, name) of the objects a Kubernetes migration update targets (infra.stack.kubernetes)."""
    return (
        ("kubernetes:core/v1:ConfigMap", f"{repo}-env"),
        ("kubernetes:core/v1:Secret", f"{repo}-secret-env"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", f"{repo}-migrate-network"),
        ("kubernetes:batch/v1:Job", f"{repo}-migrate"),
    )


def generated_secrets(outputs: Mapping[str, Any], cache_url: str) -> SecretSource:
    """Secrets from this process's environment, else the ones ws generates in a stack (each repo's database role
    password, Redis's password) as the stack's output URLs carry them. An environment value wins: an external
    Redis's password is the user's, not generated. A URL without a password, or one that does not parse, gives
    nothing (the command then names the missing secret)."""
    generated: dict[str, str] = {}
    database_urls = outputs.get("database_urls") or {}
    urls = (
        [(database_password_secret(str(r)), str(u)) for r, u in database_urls.items()]
        if isinstance(database_urls, dict)
        else []
    )
    for name, url in [*urls, (CACHE_PASSWORD_SECRET, cache_url)]:
        try:
            # as written into the URL template (env.endpoints puts the secret's text in as it is): no unquoting
            password = urlsplit(url).password
        except ValueError:
            continue
        if password:
            generated[name] = password

    def lookup(name: str) -> str | None:
        found = environ_secrets(name)
        return found if found is not None else generated.get(name)

    return lookup


def _matches(urn: str, names: Iterable[str]) -> bool:
    name = urn.rsplit("::", 1)[-1]
    return any(name == n or name.startswith(f"{n}-") for n in names)


class PulumiRuntime:
    name = "pulumi"

    def __init__(
        self,
        loaded: LoadedWorkspace,
        environment: str,
        *,
        stack_factory: Callable[[], Any] | None = None,
        progress: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.loaded = loaded
        self.environment = environment
        self.stack_name = loaded.model.stack_of(environment)
        self._factory = stack_factory or self._select_stack
        self._stack: Any = None
        self.progress = progress
        # one stack runs one update at a time (Pulumi locks it): the repos of a stage, deployed by parallel
        # threads, take turns for config+up while their health gates still run in parallel
        self._stack_lock = threading.Lock()

    def _select_stack(self) -> Any:
        from pulumi import automation as auto  # imported when a stack is used: it costs ~0.5 s at start-up

        try:
            return auto.select_stack(stack_name=self.stack_name, work_dir=str(self.loaded.root))
        except Exception as exc:
            raise CheckFailed(
                f"pulumi: cannot select stack {self.stack_name} in {self.loaded.root}: {exc}; install the Pulumi CLI, "
                f"log in, and create the stack (`pulumi stack init {self.stack_name}`)"
            ) from exc

    @property
    def stack(self) -> Any:
        if self._stack is None:
            self._stack = self._factory()
        return self._stack

    def outputs(self) -> dict[str, Any]:
        return {key: getattr(value, "value", value) for key, value in self.stack.outputs().items()}

    def _urns(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        exported = self.stack.export_stack()
        deployment = getattr(exported, "deployment", exported) or {}
        resources = deployment.get("resources", []) if isinstance(deployment, dict) else []
        return [r["urn"] for r in resources if _matches(str(r.get("urn", "")), names)]

    def _project(self) -> str | None:
        """The project name of Pulumi.yaml at the workspace root (part of every URN)."""
        path = self.loaded.root / "Pulumi.yaml"
        try:
            document = read_document(path.read_text(encoding="utf-8"), str(path))
        except (OSError, UnicodeDecodeError, WorkspaceError):
            return None
        name = document.get("name") if isinstance(document, Mapping) else None
        return str(name) if name else None

    def _state_or_declared(self, found: list[str], declared: Iterable[tuple[str, str]]) -> list[str]:
        """``found`` (URNs from the stack's state) and, for each declared (type, name) not among them, the URN the
        program will give it (a first migration, or a stack made before migrations ran this way). Without a
        project name in Pulumi.yaml no URN can be built: ``found`` alone."""
        project = self._project()
        if project is None:
            return found
        names = {urn.rsplit("::", 1)[-1] for urn in found}
        stack = self.stack_name.rsplit("/", 1)[-1]
        missing = [f"urn:pulumi:{stack}::{project}::{kind}::{name}" for kind, name in declared if name not in names]
        return [*found, *missing]

    def migration_urns(self, repo: str) -> list[str]:
        """The URNs of ``repo``'s one-off migration container and its image, on a Docker stack."""
        return self._state_or_declared(self._urns([f"{repo}-migrate"]), migration_resources(repo))

    def _up(
        self,
        names: Iterable[str],
        what: str,
        *,
        dependents: bool = False,
        targets: list[str] | None = None,
        replace: list[str] | None = None,
    ) -> str:
        if targets is not None and not targets:  # an explicit empty list: nothing to update (never "everything")
            return f"pulumi up {what} on stack {self.stack_name}: no targets, nothing updated"
        targets = targets if targets is not None else self._urns(names)
        from pulumi import automation as auto  # imported when a stack is used: it costs ~0.5 s at start-up

        try:
            extra: dict[str, Any] = {"replace": replace} if replace else {}
            result = self.stack.up(
                target=targets or None, target_dependents=dependents, on_output=self.progress, **extra
            )
        except auto.CommandError as exc:  # the update failed (a Job, a container or a Deployment that never got ready)
            lines = [line.strip() for line in str(exc).splitlines() if "error" in line.lower()]
            raise CheckFailed(
                f"pulumi up ({what}) on stack {self.stack_name} failed: {'; '.join(lines[-3:])}"
            ) from None
        summary = getattr(result, "summary", None)
        changes = getattr(summary, "resource_changes", None) or {}
        state = getattr(summary, "result", "succeeded")
        if state not in ("succeeded", None):
            raise CheckFailed(f"pulumi up ({what}) on stack {self.stack_name}: {state}")
        counted = ", ".join(f"{k} {v}" for k, v in sorted(changes.items())) or "no changes"
        return f"pulumi up {what} on stack {self.stack_name} ({len(targets)} targets): {counted}"

    # ---- Runtime interface -------------------------------------------------------------------------------
    def provision(self) -> Infra:
        with self._stack_lock:
            self.last_detail = self._up(INFRA_NAMES, "infra")
        infra = self.locate()
        if infra is None:
            raise CheckFailed(f"stack {self.stack_name} has no database_superuser_url/cache_url outputs after up")
        return infra

    def locate(self) -> Infra | None:
        outputs = self.outputs()
        db, cache = outputs.get("database_superuser_url"), outputs.get("cache_url")
        if not db or not cache:
            return None
        return Infra(str(db), str(cache), f"stack {self.stack_name} output", f"stack {self.stack_name} output")

    def ledger_url(self) -> str:
        explicit = os.environ.get("WS_LEDGER_URL") or os.environ.get("DATABASE_URL")
        if explicit:
            return explicit
        infra = self.locate()
        if infra is None:
            raise UsageError(
                f"no deploy ledger for {self.environment}: set WS_LEDGER_URL (a PostgreSQL URL) or run the infra "
                f"step first so stack {self.stack_name} exports database_superuser_url"
            )
        return infra.database_url

    def default_version(self, repo: str) -> str:
        return self.current_version(repo) or DEFAULT_TAG

    def _config(self, key: str) -> str | None:
        from pulumi import automation as auto

        try:
            value = self.stack.get_config(key, path=True)
        except auto.CommandError:  # `pulumi config get` fails when the key is unset
            return None
        return str(getattr(value, "value", value)) if value is not None else None

    def current_version(self, repo: str) -> str | None:
        """The deployed image tag; None when nothing was deployed yet or a rollback stopped the service."""
        if (self._config(enabled_key(repo)) or "true").strip().lower() == "false":
            return None
        return self._config(tag_key(repo))

    def deploy(self, repo: str, version: str) -> str:
        from pulumi import automation as auto

        with self._stack_lock:
            self.stack.set_config(tag_key(repo), auto.ConfigValue(value=version), path=True)
            if self._config(enabled_key(repo)) is not None:
                self.stack.set_config(enabled_key(repo), auto.ConfigValue(value="true"), path=True)
            return self._up([repo], f"{repo}={version}")

    def runs_migration(self, repo: str) -> bool:
        """Whether the stack runs ``repo``'s migrate.command itself, from the repo's image where the database is
        reachable: a Docker stack in a one-off migration container (repos with a service image), a Kubernetes stack
        in the repo's migration Job (infra.stack.kubernetes declares one for every repo with a command). Otherwise
        the deployer runs it from the repo's checkout."""
        return images.stack_runs_migration(self.loaded.model, self.environment, repo)

    def migrate(self, repo: str, version: str) -> MigrationRun | None:
        """Run ``repo``'s migrate.command where the database is reachable, from its image at ``version``: the stack
        setting ``migration_tag`` names ``version`` and an update targeted at the migration's resources runs it.

        On a Docker stack that is the one-off migration container, on the stack's network (the database is
        ``postgres`` there, the repo's DATABASE_URL reaches the container through its env); the update replaces
        the container, so it runs on every deploy. On a Kubernetes stack it is the repo's migration Job (with the
        repo's ConfigMap and Secret, which it reads its env from): a new tag is a new Job, which Pulumi waits for,
        and the repo's deploy update later finds it unchanged, so the migration runs once per release. A repo the
        stack does not migrate (no service image on Docker) is left to the deployer (None)."""
        spec = self.loaded.model.repos[repo]
        if not self.runs_migration(repo) or spec.migrate is None or not spec.migrate.command:
            return None
        if self.loaded.model.environments[self.environment].target == "kubernetes":
            return self._migration_job(repo, version, spec.migrate.command)
        from pulumi import automation as auto

        image = self.image(repo, version)
        with self._stack_lock:
            urns = self.migration_urns(repo)
            if not urns:  # an update targeted at nothing would update the whole stack: refuse before any change
                raise CheckFailed(
                    f"pulumi: cannot target {repo}'s one-off migration container ({repo}-migrate-container): "
                    f"stack {self.stack_name}'s state has none yet and {self.loaded.root / 'Pulumi.yaml'} is "
                    "unreadable or names no project (`name:`) to build its URN from; give Pulumi.yaml the `name:` of "
                    "the stack's Pulumi project and deploy again. Nothing was updated"
                )
            self.stack.set_config(migration_key(repo), auto.ConfigValue(value=version), path=True)
            container = [urn for urn in urns if urn.endswith(f"::{repo}-migrate-container")]
            detail = self._up([], f"{repo} migration at {version}", targets=urns, replace=container)
        outcome = (self.outputs().get("migrations") or {}).get(repo)
        if not isinstance(outcome, dict):
            raise CheckFailed(
                f"stack {self.stack_name} has no migrations output for {repo} after `pulumi up`; run `ws generate` "
                "and deploy with this version of ws, whose program declares the migration container"
            )
        name, code, log = outcome.get("container"), outcome.get("exit_code"), str(outcome.get("log") or "")
        ran = f"`{spec.migrate.command}` in one-off container {name} ({image}) on the stack's network"
        if code != 0:
            last = log.strip().splitlines()[-1] if log.strip() else "no output"
            ended = f"exited with {code}" if code is not None else "reported no exit code (it did not finish)"
            return MigrationRun(
                False,
                f"{ran} {ended}: {last}; read `docker logs {name}` on the Docker host "
                "(nothing was deployed for this release; migrations already applied stay applied)",
                log,
            )
        return MigrationRun(True, f"{ran}: exited 0 ({detail})", log)

    def kubernetes_migration_urns(self, repo: str) -> list[str]:
        """The URNs of ``repo``'s migration Job, its NetworkPolicy and the ConfigMap and Secret it reads its env
        from, on a Kubernetes stack."""
        found = self._urns([f"{repo}-migrate", f"{repo}-env", f"{repo}-secret-env"])
        return self._state_or_declared(found, kubernetes_migration_resources(repo))

    def _migration_job(self, repo: str, version: str, command: str) -> MigrationRun:
        """The repo's migration Job at ``version``, run by an update targeted at it (see :meth:`migrate`)."""
        from pulumi import automation as auto

        # a repo without a service has no image of its own to deploy, but its Job runs ghcr.io/<owner>/<name>
        image = self.image(repo, version) or f"ghcr.io/{self.loaded.model.repos[repo].github.lower()}:{version}"
        ran = f"`{command}` in migration Job {repo}-migrate ({image}) in the cluster"
        with self._stack_lock:
            self.stack.set_config(migration_key(repo), auto.ConfigValue(value=version), path=True)
            try:
                detail = self._up([], f"{repo} migration at {version}", targets=self.kubernetes_migration_urns(repo))
            except CheckFailed as exc:
                return MigrationRun(
                    False,
                    f"{ran} failed: {exc}; read its pod's log with `kubectl logs` in the environment's namespace "
                    "(nothing was deployed for this release; migrations already applied stay applied)",
                    str(exc),
                )
        return MigrationRun(True, f"{ran}: completed ({detail})", "")

    def preview(self, versions: Mapping[str, str]) -> str | None:
        """`pulumi preview` with the tags of a planned deploy; the stack config is restored afterwards."""
        from pulumi import automation as auto

        # the raw settings (a stopped service keeps its tag), restored exactly afterwards
        migrating = [repo for repo in versions if self.runs_migration(repo)]
        keys = [key for repo in versions for key in (tag_key(repo), enabled_key(repo))]
        previous = {key: self._config(key) for key in [*keys, *(migration_key(repo) for repo in migrating)]}
        try:
            for repo, version in versions.items():
                self.stack.set_config(tag_key(repo), auto.ConfigValue(value=version), path=True)
                if repo in migrating:  # the deploy's migrate step runs this release's migration first
                    self.stack.set_config(migration_key(repo), auto.ConfigValue(value=version), path=True)
                if previous[enabled_key(repo)] is not None:  # a deploy enables a stopped service again
                    self.stack.set_config(enabled_key(repo), auto.ConfigValue(value="true"), path=True)
            result = self.stack.preview(on_output=self.progress)
            changes = getattr(result, "change_summary", None) or {}
            return ", ".join(f"{k} {v}" for k, v in sorted(changes.items())) or "no changes"
        finally:
            for key, old in previous.items():
                if old is None:
                    self.stack.remove_config(key, path=True)
                else:
                    self.stack.set_config(key, auto.ConfigValue(value=old), path=True)

    def stop(self, repo: str) -> None:
        """Take the service back to "not deployed" (a rollback of its first deployment): the stack setting
        ``enabled: false`` makes the program declare no container for it, and an update targeted at its
        resources deletes them. Its image tag stays in the config; the next deploy enables it again."""
        from pulumi import automation as auto

        with self._stack_lock:
            self.stack.set_config(enabled_key(repo), auto.ConfigValue(value="false"), path=True)
            # with its dependents: a container that still depends on this one is updated to run without it
            # (Pulumi refuses to delete a resource others depend on)
            self.last_detail = self._up([repo], f"{repo} stopped", dependents=True)

    def image(self, repo: str, version: str) -> str | None:
        """``<service.image>:<version>`` (``@<digest>`` for a sha256: version), the image the program runs
        (infra.workspace.images names it for both)."""
        if self.loaded.model.repos[repo].service is None:
            return None
        return images.service_image_reference(self.loaded.model, repo, version)

    def alive(self, repo: str) -> bool:
        return True  # containers are restarted by Docker; the health probe decides

    def endpoint(self, repo: str) -> str | None:
        urls = self.outputs().get("service_urls") or {}
        url = urls.get(repo) if isinstance(urls, dict) else None
        return str(url) if url else None

    def command_env(self, repo: str, infra: Infra) -> dict[str, str]:
        """The repo's env as seen from this machine: outputs replace the container-network addresses, and give the
        passwords the stack generated (no CI job holds them as secrets)."""
        outputs = self.outputs()
        env = rendered_env(self.loaded, self.environment, repo, secrets=generated_secrets(outputs, infra.cache_url))
        database_urls = outputs.get("database_urls") or {}
        if isinstance(database_urls, dict) and database_urls.get(repo):
            env["DATABASE_URL"] = str(database_urls[repo])
        env["REDIS_URL"] = infra.cache_url
        service_urls = outputs.get("service_urls") or {}
        for name, other in self.loaded.model.repos.items():
            if other.service and isinstance(service_urls, dict) and service_urls.get(name):
                internal = f"http://{name}:{other.service.port}"
                for key, value in env.items():
                    env[key] = value.replace(internal, str(service_urls[name]))
        return process_env(env)

    def logs(self, repo: str, lines: int = 20) -> str:
        return ""
