"""The pydantic model of workspace.yaml: the one declaration everything else is derived from.

Every model forbids unknown keys and is immutable; semantic rules that span objects (cycles, references,
ports, secrets) live in :mod:`infra.workspace.rules` so that each can name the exact key that breaks them.
"""

from __future__ import annotations

import posixpath
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StringConstraints, WithJsonSchema, model_validator

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
ENV_VAR_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
SECRET_NAME_PATTERN = r"^[A-Z][A-Z0-9_]*$"

Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
EnvVarName = Annotated[str, StringConstraints(pattern=ENV_VAR_PATTERN)]
GitHubRepo = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")]
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]{0,62}$")]
Command = Annotated[str, StringConstraints(min_length=1)]
SecretName = Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN)]
# Kubernetes resource quantity (CPU in cores or millicores, memory/storage in bytes with a suffix): 250m, 1, 512Mi
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")]
HostName = Annotated[
    str,
    StringConstraints(
        max_length=253, pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
    ),
]


class Strict(BaseModel):
    # strict: a value has the type it is written with (YAML's `true` is no port 1, "5" no number)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class SecretRef(Strict):
    """A reference to a secret held outside workspace.yaml (CI secret, Pulumi secret config, shell env)."""

    secret: Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN)] = Field(
        description="Name of the secret, e.g. OPENAI_API_KEY; its value never appears in workspace.yaml."
    )


def _env_value(value: Any) -> str | int | float | bool | SecretRef:
    if isinstance(value, SecretRef | str | bool | int | float):
        return value
    if isinstance(value, dict) and set(value) == {"secret"}:
        name = value["secret"]
        if not isinstance(name, str) or not re.fullmatch(SECRET_NAME_PATTERN, name):
            raise ValueError(f"secret name {name!r} must match {SECRET_NAME_PATTERN} (e.g. OPENAI_API_KEY)")
        return SecretRef(secret=name)
    raise ValueError("an env value is a string, a number, a boolean or {secret: NAME}")


EnvValue = Annotated[
    str | int | float | bool | SecretRef,
    PlainValidator(_env_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": ["string", "number", "boolean"]},
                {
                    "type": "object",
                    "properties": {"secret": {"type": "string", "pattern": SECRET_NAME_PATTERN}},
                    "required": ["secret"],
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
EnvMap = dict[EnvVarName, EnvValue]


class GitHubOrg(Strict):
    owner: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$")] = Field(
        description="GitHub user or organization that owns the coordination repository."
    )
    repo: str | None = Field(default=None, description="Name of the coordination repository itself.")
    api_url: str = Field(default="https://api.github.com", description="REST API root (GitHub Enterprise).")


class Kubernetes(Strict):
    """Cluster settings of a `target: kubernetes` environment (see docs/kubernetes.md)."""

    namespace: Name | None = Field(default=None, description="Namespace of its objects (default <workspace>-<env>).")
    kubeconfig: SecretName | None = Field(
        default=None, description="Secret (Pulumi secret config) holding the cluster's kubeconfig (default: ambient)."
    )
    ingress_class: Name | None = Field(default=None, description="IngressClass of the services' Ingresses.")
    ingress_namespace: Name = Field(
        default="ingress-nginx", description="Namespace of the ingress controller (may reach the services)."
    )
    hosts: dict[Name, HostName] = Field(
        default_factory=dict, description="repo -> public host name; each such repo's service gets an Ingress."
    )


# A Pulumi backend URL and a Docker engine address: written into generated workflows, so no shell characters.
PulumiBackend = Annotated[
    str, StringConstraints(pattern=r"^(https://[A-Za-z0-9.-]+|(s3|azblob|gs)://[A-Za-z0-9._~/?=&%+:-]+)$")
]
DockerHost = Annotated[
    str, StringConstraints(pattern=r"^(ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:[0-9]+)?|tcp://[A-Za-z0-9.-]+:[0-9]+)$")
]


class PulumiSettings(Strict):
    """Where a `runtime: pulumi` environment keeps its state and runs its containers (docs/github-actions.md)."""

    backend: PulumiBackend | None = Field(
        default=None,
        description="Pulumi backend: Pulumi Cloud (https://api.pulumi.com, the default) or a self-managed "
        "s3://, azblob:// or gs:// URL (with PULUMI_CONFIG_PASSPHRASE).",
    )
    docker_host: DockerHost | None = Field(
        default=None,
        description="The remote Docker engine the containers run on (DOCKER_HOST), e.g. ssh://deploy@host.",
    )


class Environment(Strict):
    runtime: Literal["local", "pulumi"] = Field(
        description="local: subprocesses on this machine; pulumi: containers provisioned by the Pulumi program."
    )
    target: Literal["docker", "kubernetes"] = Field(
        default="docker",
        description="runtime pulumi: containers on one Docker host, or a Kubernetes cluster (pulumi-kubernetes).",
    )
    kubernetes: Kubernetes | None = Field(default=None, description="Cluster settings (target: kubernetes).")
    pulumi: PulumiSettings | None = Field(default=None, description="Backend and Docker host (runtime: pulumi).")
    stack: str | None = Field(default=None, description="Pulumi stack name (default: the environment name).")
    protected: bool = Field(default=False, description="Deploys wait for a GitHub environment approval.")
    description: str = ""
    env: EnvMap = Field(default_factory=dict, description="Variables set for every repo in this environment.")

    @model_validator(mode="after")
    def _kubernetes_target(self) -> Environment:
        if self.target == "kubernetes" and self.runtime != "pulumi":
            raise ValueError("`target: kubernetes` needs `runtime: pulumi`")
        if self.kubernetes is not None and self.target != "kubernetes":
            raise ValueError("a `kubernetes:` block needs `target: kubernetes`")
        if self.pulumi is not None and self.runtime != "pulumi":
            raise ValueError("a `pulumi:` block needs `runtime: pulumi`")
        return self


class Database(Strict):
    name: Identifier = Field(description="Name of the shared PostgreSQL database.")
    version: str = Field(default="15", description="PostgreSQL major version for provisioned servers.")
    port: int = Field(default=5432, ge=1, le=65535)
    max_connections: int = Field(default=100, ge=1)
    provider: Literal["cloudnative-pg", "external"] = Field(
        default="cloudnative-pg",
        description="Kubernetes targets: a CloudNativePG Cluster in the namespace, or a managed server (external).",
    )
    pooler: bool = Field(default=False, description="cloudnative-pg: put a PgBouncer Pooler in front of it.")
    instances: int = Field(default=2, ge=1, le=9, description="cloudnative-pg: PostgreSQL instances (1 primary).")
    storage: Quantity = Field(default="10Gi", description="cloudnative-pg: volume size of each instance.")
    host: HostName | None = Field(default=None, description="external: host name of the managed server.")
    admin_url: SecretName | None = Field(
        default=None, description="external: secret holding the managed server's admin URL (creates the roles)."
    )

    @model_validator(mode="after")
    def _external(self) -> Database:
        if self.provider == "external" and (self.host is None or self.admin_url is None):
            raise ValueError("`provider: external` needs `host` and `admin_url` (the name of the admin URL's secret)")
        return self


class Cache(Strict):
    version: str = Field(default="7", description="Redis major version for provisioned servers.")
    port: int = Field(default=6379, ge=1, le=65535)
    db: int = Field(default=0, ge=0, le=15)
    provider: Literal["in-cluster", "external"] = Field(
        default="in-cluster", description="Kubernetes targets: a Redis StatefulSet in the namespace, or external."
    )
    storage: Quantity = Field(default="1Gi", description="in-cluster: volume size of the Redis StatefulSet.")
    host: HostName | None = Field(default=None, description="external: host name of the managed Redis.")

    @model_validator(mode="after")
    def _external(self) -> Cache:
        if self.provider == "external" and self.host is None:
            raise ValueError("`provider: external` needs `host` (the managed Redis's host name)")
        return self


class Health(Strict):
    path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9/._~-]*$")] = "/health"
    timeout: float = Field(default=5.0, gt=0, description="Seconds one probe may take.")
    retries: int = Field(default=3, ge=0, description="Failed probes tolerated before the service is unhealthy.")
    interval: float = Field(default=2.0, gt=0, description="Seconds between probes.")
    start_period: float = Field(default=0.0, ge=0, description="Seconds of start-up during which failures don't count.")


class RunCommands(Strict):
    local: Command | None = Field(default=None, description="Command that starts the service on this machine.")
    container: Command | None = Field(default=None, description="Command override inside the container image.")


class Replicas(Strict):
    min: int = Field(default=1, ge=1, description="Kubernetes: replicas always running.")
    max: int | None = Field(default=None, ge=1, description="Above min: a HorizontalPodAutoscaler (default: min).")
    cpu_percent: int = Field(default=70, ge=1, le=100, description="Average CPU utilization the autoscaler aims at.")

    @property
    def most(self) -> int:
        return self.max if self.max is not None else self.min

    @model_validator(mode="after")
    def _ordered(self) -> Replicas:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")
        return self


class Requests(Strict):
    cpu: Quantity = "100m"
    memory: Quantity = "128Mi"


class Limits(Strict):
    cpu: Quantity = "1"
    memory: Quantity = "512Mi"


class Resources(Strict):
    requests: Requests = Field(default_factory=Requests)
    limits: Limits = Field(default_factory=Limits)


class Service(Strict):
    port: int = Field(ge=1, le=65535, description="Port the service listens on (PORT is set to it).")
    health: Health = Field(default_factory=Health)
    image: str | None = Field(default=None, description="Container image repository (tag comes from the stack).")
    run: RunCommands = Field(default_factory=RunCommands)
    replicas: Replicas = Field(default_factory=Replicas, description="Kubernetes targets: replica count or range.")
    resources: Resources = Field(default_factory=Resources, description="Kubernetes targets: requests and limits.")
    pool_size: int = Field(
        default=10, ge=1, description="Database connections one replica opens at most (the connection budget)."
    )


class SchemaSettings(Strict):
    prisma: str = Field(description="Path of the Prisma schema file or folder, relative to the repo.")
    extends: Name | None = Field(default=None, description="Repo whose shared models this schema copies.")
    namespace: Identifier = Field(description="The PostgreSQL schema (namespace) this repo owns.")
    shared_models: list[str] = Field(default_factory=list, description="Models (and enums) shared with others.")
    migrations: str | None = Field(default=None, description="Prisma migrations folder (default beside schema).")

    @property
    def migrations_dir(self) -> str:
        if self.migrations:
            return self.migrations
        base = self.prisma if not self.prisma.endswith(".prisma") else posixpath.dirname(self.prisma)
        return posixpath.join(base, "migrations")


class Migrate(Strict):
    command: Command | None = Field(default=None, description="Command that applies this repo's migrations.")
    builtin: bool = Field(default=False, description="Apply Prisma migration folders with ws's own applier.")

    @model_validator(mode="after")
    def _one_way(self) -> Migrate:
        if bool(self.command) == self.builtin:
            raise ValueError("set exactly one of `command` or `builtin: true`")
        return self


class Tests(Strict):
    unit: Command | None = None
    integration: Command | None = None


class SqliteMigration(Strict):
    source: str = Field(description="Glob of per-agent SQLite files relative to the repo, e.g. agents/*/memory.db")
    agent_id: Literal["parent", "stem"] = Field(
        default="parent", description="Where the agent id comes from: the file's folder name or its file stem."
    )
    tables: dict[str, Identifier] = Field(
        default_factory=dict, description="Source table -> target table (default: the same name)."
    )
    namespace: Identifier | None = Field(default=None, description="Target schema (default: the repo's namespace).")
    archive: str = Field(default=".ws/sqlite-archive", description="Where cleanup moves validated files.")


class RepoEnvironment(Strict):
    env: EnvMap = Field(default_factory=dict)


class ReviewRule(Strict):
    """Who must approve changes to some paths (written into each repo's CODEOWNERS; `ws pr status` checks it)."""

    name: str = Field(min_length=1, description="What the rule protects, e.g. 'schema changes'.")
    repos: list[Name] = Field(default_factory=list, description="Repos the rule applies to (empty: every repo).")
    paths: list[str] = Field(
        min_length=1,
        description="CODEOWNERS patterns in the repo; 'schema' stands for its Prisma schema and migrations.",
    )
    reviewers: list[str] = Field(
        min_length=1,
        description="Who must approve, each one: a repo name (any of its maintainers), 'all' (every repo's "
        "maintainers, one approval per repo), or a GitHub team 'org/team' or login.",
    )


class Pushgateway(Strict):
    """The Prometheus Pushgateway the services push cross-repository metrics to (trackCrossRepositoryMetric)."""

    port: int = Field(default=9091, ge=1, le=65535, description="Local environments: `ws up` starts one here.")
    url: str | None = Field(
        default=None,
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
        description="Where the services of non-local environments push, e.g. http://pushgateway.monitoring:9091.",
    )


class Monitoring(Strict):
    pushgateway: Pushgateway | None = Field(
        default=None, description="Resolved into each repo's env as WS_PUSHGATEWAY_URL (${monitoring.pushgateway_url})."
    )


NpmPackageName = Annotated[
    str, StringConstraints(max_length=214, pattern=r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$")
]
RegistryUrl = Annotated[str, StringConstraints(pattern=r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")]
BaseVersion = Annotated[
    str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")
]
PythonDistribution = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")]


class TypesPackage(Strict):
    """The shared types as a versioned npm package (`ws schema package`, docs/schema.md)."""

    package: NpmPackageName = Field(
        description="npm package name, e.g. @saas-ecosystem/shared-database-types (GitHub Packages: @<owner>/...)."
    )
    registry: RegistryUrl = Field(default="https://npm.pkg.github.com", description="npm registry it is published to.")
    version: BaseVersion = Field(
        default="0.1.0", description="Base version; the schema's content hash is appended: <base>-schema-<sha12>."
    )
    python_package: PythonDistribution | None = Field(
        default=None, description="Python distribution name of the pydantic types (python/pyproject.toml)."
    )

    @model_validator(mode="after")
    def _github_packages_scope(self) -> TypesPackage:
        if self.registry.startswith("https://npm.pkg.github.com") and not self.package.startswith("@"):
            raise ValueError(
                f"GitHub Packages takes scoped names only: write package: '@<github owner>/{self.package}'"
            )
        return self


class Repo(Strict):
    github: GitHubRepo = Field(description="owner/name of the repository on GitHub.")
    path: str | None = Field(
        default=None, description="Local checkout, relative to workspace.yaml (default ../<name>)."
    )
    role: Literal["primary", "secondary"]
    default_branch: str = "main"
    description: str = ""
    depends_on: list[Name] = Field(default_factory=list)
    schema_: SchemaSettings | None = Field(
        default=None, alias="schema", description="Its Prisma schema (read as repo.schema_)."
    )
    service: Service | None = None
    migrate: Migrate | None = None
    test: Tests = Field(default_factory=Tests)
    requires: list[EnvVarName] = Field(default_factory=list, description="Variables this repo needs to start.")
    env: EnvMap = Field(default_factory=dict)
    environments: dict[Name, RepoEnvironment] = Field(default_factory=dict)
    sqlite_migration: SqliteMigration | None = None
    maintainers: list[str] = Field(default_factory=list, description="GitHub logins that review its changes.")

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


class Workspace(Strict):
    version: Literal[1] = Field(description="Format version of workspace.yaml; currently 1.")
    name: Name
    description: str = ""
    github: GitHubOrg
    environments: dict[Name, Environment] = Field(min_length=1)
    database: Database
    cache: Cache = Field(default_factory=Cache)
    env: EnvMap = Field(default_factory=dict, description="Variables shared by every repo in every environment.")
    repos: dict[Name, Repo] = Field(min_length=1)
    monitoring: Monitoring = Field(default_factory=Monitoring, description="Where cross-repository metrics go.")
    review_rules: list[ReviewRule] = Field(
        default_factory=list, description="Cross-repo review rules: who must approve changes to which paths."
    )
    types: TypesPackage | None = Field(
        default=None, description="Publish the shared types as an npm package; propagate then bumps its version."
    )

    @property
    def primary(self) -> str:
        return next(name for name, repo in self.repos.items() if repo.role == "primary")

    def stack_of(self, environment: str) -> str:
        env = self.environments[environment]
        return env.stack or environment
