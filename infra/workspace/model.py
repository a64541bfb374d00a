"""The model of workspace.yaml: the one declaration everything else is derived from.

Every model is an immutable :class:`~infra.workspace.shape.Model` whose field types carry their rules (:mod:`infra.workspace.shape` checks a
document against them, strictly, and refuses unknown keys); a rule across the fields of one object is its
``__post_init__``. Rules that span objects (cycles, references, ports, secrets) live in
:mod:`infra.workspace.rules` so that each can name the exact key that breaks them.
"""

import posixpath
import re
from dataclasses import field
from typing import Annotated, Any, Literal

from infra.workspace.shape import Alias, Convert, Doc, Ge, Gt, Le, MaxLen, MinLen, Model, Pattern

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
ENV_VAR_PATTERN = r"^[A-Z_][A-Z0-9_]*$"
SECRET_NAME_PATTERN = r"^[A-Z][A-Z0-9_]*$"

Name = Annotated[str, Pattern(NAME_PATTERN)]
EnvVarName = Annotated[str, Pattern(ENV_VAR_PATTERN)]
GitHubRepo = Annotated[str, Pattern(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")]
Identifier = Annotated[str, Pattern(r"^[a-z_][a-z0-9_]{0,62}$")]
Command = Annotated[str, MinLen(1)]
SecretName = Annotated[str, Pattern(SECRET_NAME_PATTERN)]
# Kubernetes resource quantity (CPU in cores or millicores, memory/storage in bytes with a suffix): 250m, 1, 512Mi
Quantity = Annotated[str, Pattern(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")]
HostName = Annotated[
    str,
    MaxLen(253),
    Pattern(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"),
]


class SecretRef(Model):
    """A reference to a secret held outside workspace.yaml (CI secret, Pulumi secret config, shell env)."""

    secret: Annotated[
        str,
        Pattern(SECRET_NAME_PATTERN),
        Doc("Name of the secret, e.g. OPENAI_API_KEY; its value never appears in workspace.yaml."),
    ]


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
    Convert(
        _env_value,
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
        },
    ),
]
EnvMap = dict[EnvVarName, EnvValue]


class GitHubOrg(Model):
    owner: Annotated[
        str,
        Pattern(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}$"),
        Doc("GitHub user or organization that owns the coordination repository."),
    ]
    repo: Annotated[str | None, Doc("Name of the coordination repository itself.")] = None
    api_url: Annotated[str, Doc("REST API root (GitHub Enterprise).")] = "https://api.github.com"


class Kubernetes(Model):
    """Cluster settings of a `target: kubernetes` environment (see docs/kubernetes.md)."""

    namespace: Annotated[Name | None, Doc("Namespace of its objects (default <workspace>-<env>).")] = None
    kubeconfig: Annotated[
        SecretName | None, Doc("Secret (Pulumi secret config) holding the cluster's kubeconfig (default: ambient).")
    ] = None
    ingress_class: Annotated[Name | None, Doc("IngressClass of the services' Ingresses.")] = None
    ingress_namespace: Annotated[Name, Doc("Namespace of the ingress controller (may reach the services).")] = (
        "ingress-nginx"
    )
    hosts: Annotated[
        dict[Name, HostName], Doc("repo -> public host name; each such repo's service gets an Ingress.")
    ] = field(default_factory=dict)


# A Pulumi backend URL and a Docker engine address: written into generated workflows, so no shell characters.
PulumiBackend = Annotated[str, Pattern(r"^(https://[A-Za-z0-9.-]+|(s3|azblob|gs)://[A-Za-z0-9._~/?=&%+:-]+)$")]
DockerHost = Annotated[str, Pattern(r"^(ssh://[A-Za-z0-9._-]+@[A-Za-z0-9.-]+(:[0-9]+)?|tcp://[A-Za-z0-9.-]+:[0-9]+)$")]


class PulumiSettings(Model):
    """Where a `runtime: pulumi` environment keeps its state and runs its containers (docs/github-actions.md)."""

    backend: Annotated[
        PulumiBackend | None,
        Doc(
            "Pulumi backend: Pulumi Cloud (https://api.pulumi.com, the default) or a self-managed "
            "s3://, azblob:// or gs:// URL (with PULUMI_CONFIG_PASSPHRASE)."
        ),
    ] = None
    docker_host: Annotated[
        DockerHost | None, Doc("The remote Docker engine the containers run on (DOCKER_HOST), e.g. ssh://deploy@host.")
    ] = None


class Environment(Model):
    runtime: Annotated[
        Literal["local", "pulumi"],
        Doc("local: subprocesses on this machine; pulumi: containers provisioned by the Pulumi program."),
    ]
    target: Annotated[
        Literal["docker", "kubernetes"],
        Doc("runtime pulumi: containers on one Docker host, or a Kubernetes cluster (pulumi-kubernetes)."),
    ] = "docker"
    kubernetes: Annotated[Kubernetes | None, Doc("Cluster settings (target: kubernetes).")] = None
    pulumi: Annotated[PulumiSettings | None, Doc("Backend and Docker host (runtime: pulumi).")] = None
    stack: Annotated[str | None, Doc("Pulumi stack name (default: the environment name).")] = None
    protected: Annotated[bool, Doc("Deploys wait for a GitHub environment approval.")] = False
    description: str = ""
    env: Annotated[EnvMap, Doc("Variables set for every repo in this environment.")] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target == "kubernetes" and self.runtime != "pulumi":
            raise ValueError("`target: kubernetes` needs `runtime: pulumi`")
        if self.kubernetes is not None and self.target != "kubernetes":
            raise ValueError("a `kubernetes:` block needs `target: kubernetes`")
        if self.pulumi is not None and self.runtime != "pulumi":
            raise ValueError("a `pulumi:` block needs `runtime: pulumi`")


class Database(Model):
    name: Annotated[Identifier, Doc("Name of the shared PostgreSQL database.")]
    version: Annotated[str, Doc("PostgreSQL major version for provisioned servers.")] = "15"
    port: Annotated[int, Ge(1), Le(65535)] = 5432
    max_connections: Annotated[int, Ge(1)] = 100
    provider: Annotated[
        Literal["cloudnative-pg", "external"],
        Doc("Kubernetes targets: a CloudNativePG Cluster in the namespace, or a managed server (external)."),
    ] = "cloudnative-pg"
    pooler: Annotated[bool, Doc("cloudnative-pg: put a PgBouncer Pooler in front of it.")] = False
    instances: Annotated[int, Ge(1), Le(9), Doc("cloudnative-pg: PostgreSQL instances (1 primary).")] = 2
    storage: Annotated[Quantity, Doc("cloudnative-pg: volume size of each instance.")] = "10Gi"
    host: Annotated[HostName | None, Doc("external: host name of the managed server.")] = None
    admin_url: Annotated[
        SecretName | None, Doc("external: secret holding the managed server's admin URL (creates the roles).")
    ] = None

    def __post_init__(self) -> None:
        if self.provider == "external" and (self.host is None or self.admin_url is None):
            raise ValueError("`provider: external` needs `host` and `admin_url` (the name of the admin URL's secret)")


class Cache(Model):
    version: Annotated[str, Doc("Redis major version for provisioned servers.")] = "7"
    port: Annotated[int, Ge(1), Le(65535)] = 6379
    db: Annotated[int, Ge(0), Le(15)] = 0
    provider: Annotated[
        Literal["in-cluster", "external"], Doc("Kubernetes targets: a Redis StatefulSet in the namespace, or external.")
    ] = "in-cluster"
    storage: Annotated[Quantity, Doc("in-cluster: volume size of the Redis StatefulSet.")] = "1Gi"
    host: Annotated[HostName | None, Doc("external: host name of the managed Redis.")] = None

    def __post_init__(self) -> None:
        if self.provider == "external" and self.host is None:
            raise ValueError("`provider: external` needs `host` (the managed Redis's host name)")


class Health(Model):
    path: Annotated[str, Pattern(r"^/[A-Za-z0-9/._~-]*$")] = "/health"
    timeout: Annotated[float, Gt(0), Doc("Seconds one probe may take.")] = 5.0
    retries: Annotated[int, Ge(0), Doc("Failed probes tolerated before the service is unhealthy.")] = 3
    interval: Annotated[float, Gt(0), Doc("Seconds between probes.")] = 2.0
    start_period: Annotated[float, Ge(0), Doc("Seconds of start-up during which failures don't count.")] = 0.0


class RunCommands(Model):
    local: Annotated[Command | None, Doc("Command that starts the service on this machine.")] = None
    container: Annotated[Command | None, Doc("Command override inside the container image.")] = None


class Replicas(Model):
    min: Annotated[int, Ge(1), Doc("Kubernetes: replicas always running.")] = 1
    max: Annotated[int | None, Ge(1), Doc("Above min: a HorizontalPodAutoscaler (default: min).")] = None
    cpu_percent: Annotated[int, Ge(1), Le(100), Doc("Average CPU utilization the autoscaler aims at.")] = 70

    @property
    def most(self) -> int:
        return self.max if self.max is not None else self.min

    def __post_init__(self) -> None:
        if self.max is not None and self.max < self.min:
            raise ValueError(f"max ({self.max}) is below min ({self.min})")


class Requests(Model):
    cpu: Quantity = "100m"
    memory: Quantity = "128Mi"


class Limits(Model):
    cpu: Quantity = "1"
    memory: Quantity = "512Mi"


class Resources(Model):
    requests: Requests = field(default_factory=Requests)
    limits: Limits = field(default_factory=Limits)


class Service(Model):
    port: Annotated[int, Ge(1), Le(65535), Doc("Port the service listens on (PORT is set to it).")]
    health: Health = field(default_factory=Health)
    image: Annotated[str | None, Doc("Container image repository (tag comes from the stack).")] = None
    run: RunCommands = field(default_factory=RunCommands)
    replicas: Annotated[Replicas, Doc("Kubernetes targets: replica count or range.")] = field(default_factory=Replicas)
    resources: Annotated[Resources, Doc("Kubernetes targets: requests and limits.")] = field(default_factory=Resources)
    pool_size: Annotated[int, Ge(1), Doc("Database connections one replica opens at most (the connection budget).")] = (
        10
    )


class SchemaSettings(Model):
    prisma: Annotated[str, Doc("Path of the Prisma schema file or folder, relative to the repo.")]
    extends: Annotated[Name | None, Doc("Repo whose shared models this schema copies.")] = None
    namespace: Annotated[Identifier, Doc("The PostgreSQL schema (namespace) this repo owns.")]
    shared_models: Annotated[list[str], Doc("Models (and enums) shared with others.")] = field(default_factory=list)
    migrations: Annotated[str | None, Doc("Prisma migrations folder (default beside schema).")] = None

    @property
    def migrations_dir(self) -> str:
        if self.migrations:
            return self.migrations
        base = self.prisma if not self.prisma.endswith(".prisma") else posixpath.dirname(self.prisma)
        return posixpath.join(base, "migrations")


class Migrate(Model):
    command: Annotated[Command | None, Doc("Command that applies this repo's migrations.")] = None
    builtin: Annotated[bool, Doc("Apply Prisma migration folders with ws's own applier.")] = False

    def __post_init__(self) -> None:
        if bool(self.command) == self.builtin:
            raise ValueError("set exactly one of `command` or `builtin: true`")


class Tests(Model):
    unit: Command | None = None
    integration: Command | None = None


class SqliteMigration(Model):
    source: Annotated[str, Doc("Glob of per-agent SQLite files relative to the repo, e.g. agents/*/memory.db")]
    agent_id: Annotated[
        Literal["parent", "stem"], Doc("Where the agent id comes from: the file's folder name or its file stem.")
    ] = "parent"
    tables: Annotated[dict[str, Identifier], Doc("Source table -> target table (default: the same name).")] = field(
        default_factory=dict
    )
    namespace: Annotated[Identifier | None, Doc("Target schema (default: the repo's namespace).")] = None
    archive: Annotated[str, Doc("Where cleanup moves validated files.")] = ".ws/sqlite-archive"


class RepoEnvironment(Model):
    env: EnvMap = field(default_factory=dict)


class ReviewRule(Model):
    """Who must approve changes to some paths (written into each repo's CODEOWNERS; `ws pr status` checks it)."""

    name: Annotated[str, MinLen(1), Doc("What the rule protects, e.g. 'schema changes'.")]
    repos: Annotated[list[Name], Doc("Repos the rule applies to (empty: every repo).")] = field(default_factory=list)
    paths: Annotated[
        list[str],
        MinLen(1),
        Doc("CODEOWNERS patterns in the repo; 'schema' stands for its Prisma schema and migrations."),
    ]
    reviewers: Annotated[
        list[str],
        MinLen(1),
        Doc(
            "Who must approve, each one: a repo name (any of its maintainers), 'all' (every repo's "
            "maintainers, one approval per repo), or a GitHub team 'org/team' or login."
        ),
    ]


class Pushgateway(Model):
    """The Prometheus Pushgateway the services push cross-repository metrics to (trackCrossRepositoryMetric)."""

    port: Annotated[int, Ge(1), Le(65535), Doc("Local environments: `ws up` starts one here.")] = 9091
    url: Annotated[
        str | None,
        Pattern(r"^https?://[^\s/?#]+(/[^\s?#]*)?$"),
        Doc("Where the services of non-local environments push, e.g. http://pushgateway.monitoring:9091."),
    ] = None


class Monitoring(Model):
    pushgateway: Annotated[
        Pushgateway | None, Doc("Resolved into each repo's env as WS_PUSHGATEWAY_URL (${monitoring.pushgateway_url}).")
    ] = None


NpmPackageName = Annotated[str, MaxLen(214), Pattern(r"^(@[a-z0-9][a-z0-9._-]*/)?[a-z0-9][a-z0-9._-]*$")]
RegistryUrl = Annotated[str, Pattern(r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/[A-Za-z0-9._~/-]*)?$")]
BaseVersion = Annotated[str, Pattern(r"^(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})\.(0|[1-9][0-9]{0,8})$")]
PythonDistribution = Annotated[str, Pattern(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,98}[A-Za-z0-9])?$")]


class TypesPackage(Model):
    """The shared types as a versioned npm package (`ws schema package`, docs/schema.md)."""

    package: Annotated[
        NpmPackageName,
        Doc("npm package name, e.g. @saas-ecosystem/shared-database-types (GitHub Packages: @<owner>/...)."),
    ]
    registry: Annotated[RegistryUrl, Doc("npm registry it is published to.")] = "https://npm.pkg.github.com"
    version: Annotated[
        BaseVersion, Doc("Base version; the schema's content hash is appended: <base>-schema-<sha12>.")
    ] = "0.1.0"
    python_package: Annotated[
        PythonDistribution | None, Doc("Python distribution name of the pydantic types (python/pyproject.toml).")
    ] = None

    def __post_init__(self) -> None:
        if self.registry.startswith("https://npm.pkg.github.com") and not self.package.startswith("@"):
            raise ValueError(
                f"GitHub Packages takes scoped names only: write package: '@<github owner>/{self.package}'"
            )


class Repo(Model):
    github: Annotated[GitHubRepo, Doc("owner/name of the repository on GitHub.")]
    path: Annotated[str | None, Doc("Local checkout, relative to workspace.yaml (default ../<name>).")] = None
    role: Literal["primary", "secondary"]
    default_branch: str = "main"
    description: str = ""
    depends_on: list[Name] = field(default_factory=list)
    schema_: Annotated[SchemaSettings | None, Alias("schema"), Doc("Its Prisma schema (read as repo.schema_).")] = None
    service: Service | None = None
    migrate: Migrate | None = None
    test: Tests = field(default_factory=Tests)
    requires: Annotated[list[EnvVarName], Doc("Variables this repo needs to start.")] = field(default_factory=list)
    env: EnvMap = field(default_factory=dict)
    environments: dict[Name, RepoEnvironment] = field(default_factory=dict)
    sqlite_migration: SqliteMigration | None = None
    maintainers: Annotated[list[str], Doc("GitHub logins that review its changes.")] = field(default_factory=list)


class Workspace(Model):
    version: Annotated[Literal[1], Doc("Format version of workspace.yaml; currently 1.")]
    name: Name
    description: str = ""
    github: GitHubOrg
    environments: Annotated[dict[Name, Environment], MinLen(1)]
    database: Database
    cache: Cache = field(default_factory=Cache)
    env: Annotated[EnvMap, Doc("Variables shared by every repo in every environment.")] = field(default_factory=dict)
    repos: Annotated[dict[Name, Repo], MinLen(1)]
    monitoring: Annotated[Monitoring, Doc("Where cross-repository metrics go.")] = field(default_factory=Monitoring)
    review_rules: Annotated[
        list[ReviewRule], Doc("Cross-repo review rules: who must approve changes to which paths.")
    ] = field(default_factory=list)
    types: Annotated[
        TypesPackage | None, Doc("Publish the shared types as an npm package; propagate then bumps its version.")
    ] = None

    @property
    def primary(self) -> str:
        return next(name for name, repo in self.repos.items() if repo.role == "primary")

    def stack_of(self, environment: str) -> str:
        env = self.environments[environment]
        return env.stack or environment
