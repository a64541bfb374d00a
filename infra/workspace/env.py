"""Environment resolution: shared -> environment -> repo -> repo-in-environment, with ${...} references.

A resolved value is a tuple of parts, each a literal string or a :class:`SecretRef`, so that consumers
decide what a secret becomes: a reference (``ws env``), a value from a source (``--secrets-from env``),
or a Pulumi secret Output (the Pulumi program). Nothing here ever reads a secret's value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from infra.errors import UsageError
from infra.workspace.model import EnvValue, SecretRef, Workspace

REFERENCE = re.compile(r"\$\{([^}]*)\}")
Part = str | SecretRef
Value = tuple[Part, ...]
SecretSource = Callable[[str], str | None]

LOCAL_HOST = "127.0.0.1"
DATABASE_HOST = "postgres"  # container name of the database in container runtimes
CACHE_HOST = "redis"


def database_password_secret(repo: str) -> str:
    """Name of the generated secret holding a repo's own database role password (container runtimes)."""
    return f"WS_DB_PASSWORD_{repo.upper().replace('-', '_')}"


CACHE_PASSWORD_SECRET = "WS_CACHE_PASSWORD"


def role_name(repo: str) -> str:
    """The PostgreSQL login role of a repo in provisioned environments."""
    return repo.replace("-", "_")


@dataclass(frozen=True)
class Endpoints:
    """Where the shared infrastructure is reached from a repo in one environment."""

    database: Value
    cache: Value
    services: Mapping[str, str]
    database_host: str
    database_port: int


# A URL that names the server's maintenance database (or none) names the server only: the workspace database on
# it is database.name. Any other database the URL names is the workspace database.
MAINTENANCE_DATABASE = "postgres"


def workspace_database_url(workspace: Workspace, url: str) -> str:
    """The workspace database's URL (no query) on the server of the postgresql:// ``url``: the database ``url``
    names, unless it names none or the maintenance database, then ``database.name``. Every command (env, schema
    drift, migrate, deploy, up, health) resolves the local database this way."""
    from urllib.parse import quote, unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    name = unquote(parts.path.lstrip("/"))
    if name in ("", MAINTENANCE_DATABASE):
        name = workspace.database.name
    return urlunsplit(parts._replace(path=f"/{quote(name, safe='')}", query=""))


def _local_database_base(workspace: Workspace) -> str:
    base = os.environ.get("DATABASE_URL")
    if base and not base.startswith(("postgresql://", "postgres://")):
        base = _conninfo_to_url(base)
    if base:
        return workspace_database_url(workspace, base)
    return f"postgresql://postgres@{LOCAL_HOST}:{workspace.database.port}/{workspace.database.name}"


def _conninfo_to_url(conninfo: str) -> str:
    """A libpq key=value DATABASE_URL as a URL (Prisma and the services read URLs only)."""
    from urllib.parse import quote

    from psycopg.conninfo import conninfo_to_dict

    try:
        info = conninfo_to_dict(conninfo)
    except Exception as exc:  # psycopg.ProgrammingError: not a valid conninfo either
        raise UsageError(f"DATABASE_URL is neither a postgresql:// URL nor a libpq conninfo: {exc}") from None
    user = quote(str(info.get("user", "postgres")), safe="")
    password = f":{quote(str(info['password']), safe='')}" if info.get("password") else ""
    host = str(info.get("host", LOCAL_HOST))
    port = str(info.get("port", "5432"))
    return f"postgresql://{user}{password}@{host}:{port}/{quote(str(info.get('dbname', 'postgres')), safe='')}"


def endpoints(
    workspace: Workspace, environment: str, repo: str, *, local_urls: Mapping[str, str] | None = None
) -> Endpoints:
    """Endpoints seen by ``repo`` in ``environment``.

    Local runtime: the server from DATABASE_URL/REDIS_URL (or the defaults on 127.0.0.1, the embedded servers
    use those ports too), services on http://127.0.0.1:<port>. Container runtimes: container names on the
    workspace network, and the repo's own database role whose password is a generated secret.
    ``local_urls`` lets a running local runtime pass the real addresses of the servers it started.
    """
    env = workspace.environments[environment]
    schema = workspace.repos[repo].schema_
    namespace = schema.namespace if schema else "public"
    services: dict[str, str] = {}
    if env.runtime == "local":
        db_base = (local_urls or {}).get("database") or _local_database_base(workspace)
        cache_url = (
            (local_urls or {}).get("cache")
            or os.environ.get("REDIS_URL")
            or (f"redis://{LOCAL_HOST}:{workspace.cache.port}/{workspace.cache.db}")
        )
        for name, other in workspace.repos.items():
            if other.service:
                services[name] = f"http://{LOCAL_HOST}:{other.service.port}"
        host = db_base.split("@")[-1].split("/")[0].rsplit(":", 1)
        return Endpoints(
            database=(f"{db_base}?schema={namespace}",),
            cache=(cache_url,),
            services=services,
            database_host=host[0],
            database_port=int(host[1]) if len(host) == 2 and host[1].isdigit() else workspace.database.port,
        )
    for name, other in workspace.repos.items():
        if other.service:
            services[name] = f"http://{name}:{other.service.port}"
    database: Value = (
        f"postgresql://{role_name(repo)}:",
        SecretRef(secret=database_password_secret(repo)),
        f"@{DATABASE_HOST}:5432/{workspace.database.name}?schema={namespace}",
    )
    cache: Value = ("redis://:", SecretRef(secret=CACHE_PASSWORD_SECRET), f"@{CACHE_HOST}:6379/{workspace.cache.db}")
    return Endpoints(database, cache, services, DATABASE_HOST, 5432)


def references(workspace: Workspace) -> dict[str, str]:
    """Every name usable as ${name} in env values, with what it stands for."""
    names = {
        "database.url": "the repo's own PostgreSQL URL (Prisma form, ?schema=<namespace>)",
        "database.host": "host of the PostgreSQL server",
        "database.port": "port of the PostgreSQL server",
        "database.name": "name of the shared database",
        "cache.url": "the Redis URL",
        "environment": "the environment's name",
        "repo": "the repo's name",
    }
    for name, repo in workspace.repos.items():
        if repo.service:
            names[f"services.{name}.url"] = f"base URL of {name}'s service"
    if workspace.monitoring.pushgateway is not None:
        names["monitoring.pushgateway_url"] = "the Prometheus Pushgateway of the environment (monitoring.pushgateway)"
    return names


def pushgateway_url(workspace: Workspace, environment: str) -> str | None:
    """Where the environment's services push metrics: 127.0.0.1:<port> locally, else monitoring.pushgateway.url."""
    gateway = workspace.monitoring.pushgateway
    if gateway is None:
        return None
    if workspace.environments[environment].runtime == "local":
        return f"http://{LOCAL_HOST}:{gateway.port}"
    return gateway.url or ""


def declared_layers(workspace: Workspace, environment: str, repo: str) -> Iterator[tuple[str, Mapping[str, EnvValue]]]:
    """The env layers in precedence order (later wins), each with its YAML location prefix."""
    yield "env", workspace.env
    yield f"environments.{environment}.env", workspace.environments[environment].env
    yield f"repos.{repo}.env", workspace.repos[repo].env
    override = workspace.repos[repo].environments.get(environment)
    if override:
        yield f"repos.{repo}.environments.{environment}.env", override.env


def resolve(
    workspace: Workspace, environment: str, repo: str, *, local_urls: Mapping[str, str] | None = None
) -> dict[str, Value]:
    """The resolved environment of ``repo`` in ``environment`` (variables sorted by name).

    Also sets PORT to the repo's service port and WS_* identity variables, which every service may rely on.
    """
    ends = endpoints(workspace, environment, repo, local_urls=local_urls)
    table: dict[str, Value] = {
        "database.url": ends.database,
        "database.host": (ends.database_host,),
        "database.port": (str(ends.database_port),),
        "database.name": (workspace.database.name,),
        "cache.url": ends.cache,
        "environment": (environment,),
        "repo": (repo,),
    }
    for name, url in ends.services.items():
        table[f"services.{name}.url"] = (url,)
    gateway = pushgateway_url(workspace, environment)
    if gateway is not None:
        table["monitoring.pushgateway_url"] = (gateway,)

    merged: dict[str, EnvValue] = {}
    for _, layer in declared_layers(workspace, environment, repo):
        merged.update(layer)
    result: dict[str, Value] = {}
    for key, raw in merged.items():
        result[key] = expand(raw, table)
    service = workspace.repos[repo].service
    if service is not None:
        result.setdefault("PORT", (str(service.port),))
    result["WS_ENVIRONMENT"] = (environment,)
    result["WS_REPO"] = (repo,)
    result["WS_WORKSPACE"] = (workspace.name,)
    if gateway:  # where trackCrossRepositoryMetric pushes (none in an environment without a Pushgateway URL)
        result["WS_PUSHGATEWAY_URL"] = (gateway,)
    return dict(sorted(result.items()))


def expand(raw: EnvValue, table: Mapping[str, Value]) -> Value:
    if isinstance(raw, SecretRef):
        return (raw,)
    if isinstance(raw, bool):
        return ("true" if raw else "false",)
    text = str(raw)
    parts: list[Part] = []
    cursor = 0
    for match in REFERENCE.finditer(text):
        parts.append(text[cursor : match.start()])
        parts.extend(table[match.group(1).strip()])  # unknown names are rejected when loading
        cursor = match.end()
    parts.append(text[cursor:])
    return _merge_literals(parts)


def _merge_literals(parts: list[Part]) -> Value:
    merged: list[Part] = []
    for part in parts:
        if isinstance(part, str) and merged and isinstance(merged[-1], str):
            merged[-1] = merged[-1] + part
        elif part != "":
            merged.append(part)
    return tuple(merged) or ("",)


def is_secret(value: Value) -> bool:
    return any(isinstance(p, SecretRef) for p in value)


def render(value: Value, secrets: SecretSource | None = None) -> str:
    """Text of a value: secrets as ``${secret:NAME}`` references, or their values from ``secrets``."""
    out = []
    for part in value:
        if isinstance(part, SecretRef):
            found = secrets(part.secret) if secrets else None
            out.append(found if found is not None else f"${{secret:{part.secret}}}")
        else:
            out.append(part)
    return "".join(out)


def missing_secrets(values: Mapping[str, Value], secrets: SecretSource) -> list[str]:
    names = {p.secret for v in values.values() for p in v if isinstance(p, SecretRef)}
    return sorted(n for n in names if secrets(n) is None)


# Characters no env file can carry safely: a line break adds a variable in docker --env-file and
# python-dotenv, NUL ends a C string; the others are refused along with them. A tab is fine (quoted).
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_BARE = re.compile(r"[A-Za-z0-9_./:@?=&%+,-]*")


def control_character(text: str) -> str | None:
    """A description of the first control character in ``text`` (e.g. "U+000A line feed"), or None."""
    found = CONTROL.search(text)
    if found is None:
        return None
    names = {"\n": "line feed", "\r": "carriage return", "\x00": "NUL"}
    char = found.group()
    return f"U+{ord(char):04X}" + (f" {names[char]}" if char in names else "")


def dotenv_line(key: str, text: str) -> str:
    """``KEY=value`` that bash's `source`, python-dotenv and docker --env-file read as exactly one variable.

    Bash reads every value exactly. python-dotenv does too, except that it expands ${NAME} (load with
    interpolate=False), keeps the backslash of \\$ and \\` in the rare value that holds a ' or a \\ as well
    as a $ or a `, and keeps the escaping backslashes of a value that ends with a backslash (its parser
    would take the closing quote for an escaped one). docker --env-file takes the rest of the line
    literally, quotes included.
    """
    if (what := control_character(text)) is not None:
        raise UsageError(
            f"{key}: its value holds a control character ({what}) that an env file cannot carry safely; "
            "use --format json, or remove it from the value"
        )
    if _BARE.fullmatch(text):
        return f"{key}={text}"
    if text.endswith("\\"):  # python-dotenv reads \" before a closing quote as an escaped quote: no quotes
        return f"{key}=" + re.sub(r"([^A-Za-z0-9_./:@%+,=-])", r"\\\1", text)
    if "'" not in text and "\\" not in text:
        return f"{key}='{text}'"
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    if "$" in text or "`" in text:
        escaped = escaped.replace("$", "\\$").replace("`", "\\`")
    return f'{key}="{escaped}"'


def dotenv(values: Mapping[str, Value], secrets: SecretSource | None = None) -> str:
    return "".join(dotenv_line(key, render(value, secrets)) + "\n" for key, value in values.items())


def environ_secrets(name: str) -> str | None:
    """Secret source that reads secrets from this process's environment (CI secrets arrive that way)."""
    return os.environ.get(name)


def required_report(workspace: Workspace) -> list[tuple[str, str, str]]:
    """(environment, repo, variable) for every variable a repo requires but an environment leaves undefined."""
    missing = []
    for environment in workspace.environments:
        for name, repo in workspace.repos.items():
            if not repo.requires:
                continue  # nothing to look for (resolving costs a pass over every repo's service)
            defined = set(resolve(workspace, environment, name))
            for variable in repo.requires:
                if variable not in defined:
                    missing.append((environment, name, variable))
    return missing


def shared_template(workspace: Workspace) -> str:
    """The `.env.shared` template: every shared variable with its declared value or secret reference."""
    lines = [
        f"# .env.shared for workspace {workspace.name}: generated by `ws env template`; edit workspace.yaml instead.",
        "# Secrets appear as ${secret:NAME} references; supply their values from your secret store.",
    ]
    for key, raw in sorted(workspace.env.items()):
        if isinstance(raw, SecretRef):
            lines.append(dotenv_line(key, f"${{secret:{raw.secret}}}"))
        elif isinstance(raw, bool):
            lines.append(f"{key}={'true' if raw else 'false'}")
        else:
            lines.append(dotenv_line(key, str(raw)))
    return "\n".join(lines) + "\n"
