"""The one small interface every runtime implements (`infra.deploy.runtimes` picks one per environment).

A runtime provisions the shared infrastructure (PostgreSQL, Redis), deploys one repo's service at a version,
tells the version running now and the service's URL, and stops a service. The pipeline only talks to this
interface, so the same staged deploy, health gates and rollback run locally (subprocesses) and on Pulumi stacks.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from infra.errors import UsageError
from infra.workspace.env import SecretSource, environ_secrets, missing_secrets, render, resolve
from infra.workspace.located import LoadedWorkspace


@dataclass(frozen=True)
class Infra:
    """Where the shared infrastructure of an environment is reached from this machine."""

    database_url: str  # libpq URL of the workspace database (no ?schema=), with rights to migrate
    cache_url: str
    database_source: str  # e.g. "DATABASE_URL", "local server", "embedded (pid 123)", "stack output"
    cache_source: str

    def describe(self) -> dict[str, str]:
        return {
            "database": redact(self.database_url),
            "database_source": self.database_source,
            "cache": redact(self.cache_url),
            "cache_source": self.cache_source,
        }


@dataclass(frozen=True)
class MigrationRun:
    """What a runtime's one-off migration container came to (:meth:`Runtime.migrate`)."""

    ok: bool
    detail: str  # one line: what ran where, and how it ended
    log: str = ""  # the container's last log lines, for the ledger's log excerpt


class Runtime(Protocol):
    name: str

    def provision(self) -> Infra:
        """Make sure PostgreSQL (with the workspace database) and Redis exist; where they are."""
        ...

    def locate(self) -> Infra | None:
        """Where the infrastructure is, without creating or starting anything (None when unknown)."""
        ...

    def default_version(self, repo: str) -> str:
        """The version deployed when none is asked for."""
        ...

    def current_version(self, repo: str) -> str | None:
        """The version of the repo's service running now (None when not running)."""
        ...

    def deploy(self, repo: str, version: str) -> str:
        """Run ``repo`` at ``version`` (replacing what runs); returns a one-line detail. Not health-gated."""
        ...

    def stop(self, repo: str) -> None: ...

    def alive(self, repo: str) -> bool:
        """Whether the repo's service process (or container) still exists; a dead one fails its gate at once."""
        ...

    def ledger_url(self) -> str:
        """libpq URL of the database holding the deploy ledger (the `ws` namespace)."""
        ...

    def endpoint(self, repo: str) -> str | None:
        """Base URL of the repo's service as reached from this machine."""
        ...

    def command_env(self, repo: str, infra: Infra) -> dict[str, str]:
        """The environment for the repo's migrate and integration-test commands run from this machine."""
        ...

    def logs(self, repo: str, lines: int = 20) -> str:
        """The last lines of the service's log, for the ledger's log excerpts."""
        ...

    def preview(self, versions: Mapping[str, str]) -> str | None:
        """The runtime's own forecast of deploying ``versions`` (a dry run shows it); None when it has none."""
        ...

    def migrate(self, repo: str, version: str) -> MigrationRun | None:
        """Run ``repo``'s migrate.command where the database is reachable: a one-off container from the repo's
        image at ``version`` (Docker stacks). None: this runtime leaves it to the deployer, who runs the command
        from the repo's checkout with :meth:`command_env`."""
        ...

    def image(self, repo: str, version: str) -> str | None:
        """The container image ``repo`` runs at ``version`` (``registry/name:tag``); None when the runtime runs
        no images (its versions are checkouts), so there is nothing to look up in a registry."""
        ...


def redact(url: str) -> str:
    """A URL (or libpq key=value string) with its password replaced by ***, safe to print."""
    if "://" not in url:
        import psycopg

        try:
            info = psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            return "***"
        if "password" in info:
            info["password"] = "***"
        return psycopg.conninfo.make_conninfo(**{k: str(v) for k, v in info.items() if v is not None})
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def rendered_env(
    loaded: LoadedWorkspace,
    environment: str,
    repo: str,
    local_urls: Mapping[str, str] | None = None,
    secrets: SecretSource = environ_secrets,
) -> dict[str, str]:
    """The repo's resolved env as text, secrets from ``secrets`` (by default this process's environment; missing
    ones: one clear error)."""
    values = resolve(loaded.model, environment, repo, local_urls=local_urls)
    missing = missing_secrets(values, secrets)
    if missing:
        raise UsageError(
            f"{repo} in {environment} needs secret(s) {', '.join(missing)}; export them in this shell "
            "(or as CI secrets) before deploying"
        )
    return {key: render(value, secrets) for key, value in values.items()}


# What a service or a repo's command (migrate, integration tests) inherits from ws's own environment: where programs
# are, who and where the user is, language, time zone, terminal, temporary folder and CA certificates. Nothing else:
# ws's own tokens (GITHUB_TOKEN, PULUMI_ACCESS_TOKEN) and every repo's secrets stay out; a repo gets its own
# secrets through its resolved env.
INHERITED = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    }
)
INHERITED_PREFIXES = ("LC_",)


def inherited_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``environ`` (this process's environment by default)."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k in INHERITED or k.startswith(INHERITED_PREFIXES)}


def process_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a service or repo command: ``extra`` (the repo's resolved env) over the allow-listed part
    of this process's environment (:data:`INHERITED`), with the running interpreter's folder first on PATH.

    Example services and tests are Python; running them with the interpreter of the running `ws` means they
    find psycopg and redis without a second install.
    """
    env = {**inherited_env(), **extra}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env
