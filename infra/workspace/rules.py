"""Rules that span objects of workspace.yaml; each problem names the key that breaks the rule and the fix."""

from __future__ import annotations

import difflib
import ipaddress
import math
import posixpath
import re
from collections import Counter
from collections.abc import Iterator
from urllib.parse import urlsplit

from infra.errors import Problem
from infra.workspace.env import REFERENCE, control_character, references
from infra.workspace.graph import edges_of, find_cycle
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import EnvValue, SecretRef

SECRET_KEY = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.IGNORECASE)
SECRET_VALUE = [
    (re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"), "a GitHub token"),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), "a GitHub token"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API key"),
    (re.compile(r"\bAKIA[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a JSON web token"),
    (re.compile(r"://[^/\s:@]+:(?!\$\{)[^@\s/]+@"), "a URL with a password"),
]
PLACEHOLDERS = {"", "changeme", "change-me", "placeholder", "none", "null", "false", "true", "disabled"}


def rule_problems(loaded: LoadedWorkspace) -> list[Problem]:
    return list(_all(loaded))


def _all(loaded: LoadedWorkspace) -> Iterator[Problem]:
    yield from _roles(loaded)
    yield from _dependencies(loaded)
    yield from _environments(loaded)
    yield from _ingress_hosts(loaded)
    yield from _env_values(loaded)
    yield from _ports(loaded)
    yield from _namespaces(loaded)
    yield from _paths(loaded)
    yield from _github(loaded)
    yield from _review_rules(loaded)
    yield from _types_package(loaded)


def _types_package(loaded: LoadedWorkspace) -> Iterator[Problem]:
    """GitHub Packages publishes a scoped package only under the owner of the repository that publishes it."""
    types = loaded.model.types
    if types is None or not types.registry.startswith("https://npm.pkg.github.com"):
        return
    primary = next((r for r in loaded.model.repos.values() if r.role == "primary"), None)
    if primary is None:
        return  # _roles reports it
    owner = primary.github.split("/")[0].lower()
    scope = types.package.split("/")[0][1:]
    if scope != owner:
        yield loaded.problem(
            ("types", "package"),
            f"GitHub Packages refuses scope @{scope}: the primary's release publishes it from {primary.github}",
            f"write package: '@{owner}/{types.package.split('/', 1)[-1]}'",
        )


def _review_rules(loaded: LoadedWorkspace) -> Iterator[Problem]:
    """A review rule names only declared repos, and a repo reviewer that has maintainers to ask."""
    ws = loaded.model
    for index, rule in enumerate(ws.review_rules):
        for position, repo in enumerate(rule.repos):
            if repo not in ws.repos:
                yield _unknown_repo(loaded, ("review_rules", index, "repos", position), repo, "review rule")
        for position, reviewer in enumerate(rule.reviewers):
            if reviewer in ws.repos and not ws.repos[reviewer].maintainers:
                yield loaded.problem(
                    ("review_rules", index, "reviewers", position),
                    f"{reviewer} has no maintainers to review {rule.name!r}",
                    f"add GitHub logins or org/team names to repos.{reviewer}.maintainers",
                )


def _roles(loaded: LoadedWorkspace) -> Iterator[Problem]:
    ws = loaded.model
    primaries = [name for name, repo in ws.repos.items() if repo.role == "primary"]
    if len(primaries) != 1:
        where = ("repos", primaries[1], "role") if len(primaries) > 1 else ("repos",)
        yield loaded.problem(
            where,
            f"exactly one repo must have role: primary, found {len(primaries)} ({', '.join(primaries) or 'none'})",
            "mark the repo that owns the shared models `role: primary` and the others `role: secondary`",
        )


def _unknown_repo(loaded: LoadedWorkspace, loc: tuple[str | int, ...], name: str, what: str) -> Problem:
    known = list(loaded.model.repos)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    fix = f"did you mean {close[0]!r}?" if close else f"use one of: {', '.join(known)}"
    return loaded.problem(loc, f"{what} names unknown repo {name!r}", fix)


def _dependencies(loaded: LoadedWorkspace) -> Iterator[Problem]:
    ws = loaded.model
    broken = False
    for name, repo in ws.repos.items():
        for index, dep in enumerate(repo.depends_on):
            loc: tuple[str | int, ...] = ("repos", name, "depends_on", index)
            if dep not in ws.repos:
                broken = True
                yield _unknown_repo(loaded, loc, dep, "depends_on")
            elif dep == name:
                broken = True
                yield loaded.problem(loc, f"{name} depends on itself", "remove it from its own depends_on")
        if repo.schema_ and repo.schema_.extends:
            parent = repo.schema_.extends
            loc = ("repos", name, "schema", "extends")
            if parent not in ws.repos:
                yield _unknown_repo(loaded, loc, parent, "schema.extends")
            elif ws.repos[parent].schema_ is None:
                yield loaded.problem(loc, f"{parent} has no schema to extend", f"add a schema to {parent}")
            elif parent == name:
                yield loaded.problem(loc, f"{name} extends itself", "extend the primary repo")
            elif parent not in repo.depends_on:
                yield loaded.problem(
                    loc,
                    f"{name} extends {parent}'s schema but does not depend on it",
                    f"add {parent} to repos.{name}.depends_on so its migrations run first",
                )
        for environment in repo.environments:
            if environment not in ws.environments:
                close = difflib.get_close_matches(environment, list(ws.environments), n=1)
                yield loaded.problem(
                    ("repos", name, "environments", environment),
                    f"unknown environment {environment!r}",
                    f"did you mean {close[0]!r}?"
                    if close
                    else f"declare it under environments: ({', '.join(ws.environments)})",
                )
    if not broken:
        cycle = find_cycle(edges_of(ws))
        if cycle:
            first, second = cycle[0], cycle[1]
            index = ws.repos[first].depends_on.index(second)
            yield loaded.problem(
                ("repos", first, "depends_on", index),
                f"dependency cycle: {' -> '.join(cycle)}",
                "remove one of these depends_on edges; deploys need an order",
            )


STACK_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,99}$")  # also a file name (Pulumi.<stack>.yaml) and a job key


def _environments(loaded: LoadedWorkspace) -> Iterator[Problem]:
    for name, env in loaded.model.environments.items():
        if env.stack is not None and not STACK_NAME.fullmatch(env.stack):
            yield loaded.problem(
                ("environments", name, "stack"),
                f"stack name {_shown(env.stack)} is not a safe name",
                "stack names match ^[A-Za-z_][A-Za-z0-9_-]{0,99}$ (they name the Pulumi.<stack>.yaml file), e.g. "
                f"stack: {name}",
            )
        if env.runtime == "local" and env.stack:
            yield loaded.problem(
                ("environments", name, "stack"),
                "a local environment has no Pulumi stack",
                "remove `stack:` or set `runtime: pulumi`",
            )


def _env_layers(loaded: LoadedWorkspace) -> Iterator[tuple[tuple[str, ...], dict[str, EnvValue]]]:
    ws = loaded.model
    yield ("env",), ws.env
    for name, env in ws.environments.items():
        yield ("environments", name, "env"), env.env
    for name, repo in ws.repos.items():
        yield ("repos", name, "env"), repo.env
        for environment, override in repo.environments.items():
            yield ("repos", name, "environments", environment, "env"), override.env


def _env_values(loaded: LoadedWorkspace) -> Iterator[Problem]:
    known = references(loaded.model)
    for prefix, layer in _env_layers(loaded):
        for key, value in layer.items():
            loc = (*prefix, key)
            if isinstance(value, SecretRef):
                continue
            text = str(value)
            if (what := control_character(text)) is not None:
                yield loaded.problem(
                    loc,
                    f"the value holds a control character ({what}); env files (.env, docker --env-file) cannot carry "
                    "it safely",
                    "remove it; put multi-line data in a file and pass its path, or in a {secret: NAME}",
                )
                continue
            for match in REFERENCE.finditer(text):
                ref = match.group(1).strip()
                if ref not in known:
                    close = difflib.get_close_matches(ref, list(known), n=1, cutoff=0.6)
                    yield loaded.problem(
                        loc,
                        f"undefined reference ${{{ref}}}",
                        f"did you mean ${{{close[0]}}}?" if close else f"use one of: {', '.join(known)}",
                    )
            if "${" in REFERENCE.sub("", text):
                yield loaded.problem(loc, "unterminated ${ reference", "close it with }")
            if isinstance(value, str) and (reason := _looks_secret(key, REFERENCE.sub("", value))):
                yield loaded.problem(
                    loc,
                    f"value looks like a literal secret ({reason}); secrets never go in workspace.yaml",
                    f"store it in your secret store and write `{key}: {{secret: {key}}}`",
                )


def _looks_secret(key: str, value: str) -> str | None:
    for pattern, what in SECRET_VALUE:
        if pattern.search(value):
            return what
    if SECRET_KEY.search(key) and value.strip().lower() not in PLACEHOLDERS and not value.isdigit():
        return f"{key} holds a literal value"
    if len(value) >= 32 and re.fullmatch(r"[A-Za-z0-9+/=_-]+", value) and _entropy(value) > 4.0:
        return "a long random-looking string"
    return None


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def _ports(loaded: LoadedWorkspace) -> Iterator[Problem]:
    ws = loaded.model
    taken: dict[int, str] = {ws.database.port: "database.port", ws.cache.port: "cache.port"}
    for name, repo in ws.repos.items():
        if repo.service is None:
            continue
        port = repo.service.port
        if port in taken:
            yield loaded.problem(
                ("repos", name, "service", "port"),
                f"port {port} is already used by {taken[port]}",
                "give every service its own port",
            )
        else:
            taken[port] = f"repos.{name}.service.port"


def _namespaces(loaded: LoadedWorkspace) -> Iterator[Problem]:
    owners: dict[str, str] = {}
    for name, repo in loaded.model.repos.items():
        if repo.schema_ is None:
            continue
        namespace = repo.schema_.namespace
        if namespace in owners:
            yield loaded.problem(
                ("repos", name, "schema", "namespace"),
                f"namespace {namespace!r} is already owned by {owners[namespace]}",
                "give every repo its own PostgreSQL schema",
            )
        else:
            owners[namespace] = name
        if namespace == "public" and name == loaded.model.primary:
            continue  # the primary may keep the tables it has in public (docs/adopting.md)
        if namespace in {"public", "pg_catalog", "information_schema", "ws"} or namespace.startswith("pg_"):
            fix = "choose a namespace named after the repo, e.g. app_agents"
            if namespace == "public":
                fix += " (only the primary repo may keep public)"
            yield loaded.problem(("repos", name, "schema", "namespace"), f"namespace {namespace!r} is reserved", fix)


def _ingress_hosts(loaded: LoadedWorkspace) -> Iterator[Problem]:
    """A Kubernetes environment's `hosts` name repos with a service (each gets an Ingress to it)."""
    for name, env in loaded.model.environments.items():
        for repo in env.kubernetes.hosts if env.kubernetes is not None else {}:
            loc = ("environments", name, "kubernetes", "hosts", repo)
            if repo not in loaded.model.repos:
                yield _unknown_repo(loaded, loc, repo, "an ingress host")
            elif loaded.model.repos[repo].service is None:
                yield loaded.problem(loc, f"repo {repo!r} has no service to route a host to", "declare its service:")


def _paths(loaded: LoadedWorkspace) -> Iterator[Problem]:
    """Checkouts sit inside the workspace folder or beside it; a repo's own files sit inside the repo."""
    for name, repo in loaded.model.repos.items():
        if repo.path is not None and (why := _escapes(repo.path, levels_up=1)):
            yield loaded.problem(
                ("repos", name, "path"),
                f"path {_shown(repo.path)} {why}",
                f"write the checkout relative to workspace.yaml, inside its folder or beside it (e.g. ../{name})",
            )
        inside: list[tuple[tuple[str, ...], str | None]] = []
        if repo.schema_ is not None:
            inside += [(("schema", "prisma"), repo.schema_.prisma), (("schema", "migrations"), repo.schema_.migrations)]
        if repo.sqlite_migration is not None:
            spec = repo.sqlite_migration
            inside += [(("sqlite_migration", "source"), spec.source), (("sqlite_migration", "archive"), spec.archive)]
        for loc, value in inside:
            if value is not None and (why := _escapes(value, levels_up=0)):
                yield loaded.problem(
                    ("repos", name, *loc),
                    f"path {_shown(value)} {why}",
                    "write a path inside the repo's checkout, relative to it (e.g. prisma/schema.prisma)",
                )


def _escapes(path: str, *, levels_up: int) -> str | None:
    """Why ``path`` leaves its allowed folder (``levels_up`` parent folders allowed), or None."""
    if not path.strip():
        return "is empty"
    if any(ord(c) < 32 or ord(c) == 127 for c in path):
        return "holds a control character"
    if path.startswith("~"):
        return "starts in a home folder"
    if path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:[\\/]", path):
        return "is absolute"
    parts = posixpath.normpath(path.replace("\\", "/")).split("/")
    ups = next((i for i, part in enumerate(parts) if part != ".."), len(parts))
    if levels_up == 0 and ups:
        return "leads outside the repo"
    if ups > levels_up or (ups and ups == len(parts)):
        return "leads more than one folder above workspace.yaml's folder"
    return None


def _shown(path: str) -> str:
    return repr(path if len(path) <= 60 else path[:57] + "...")


def _github(loaded: LoadedWorkspace) -> Iterator[Problem]:
    """The API root receives the token: https only, except a server on this machine (loopback)."""
    url = loaded.model.github.api_url
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        parts, host = None, ""
    fix = "write https://api.github.com or your GitHub Enterprise https://<host>/api/v3"
    if parts is None or not host or parts.scheme not in ("https", "http"):
        yield loaded.problem(("github", "api_url"), f"{_shown(url)} is not an http(s) URL", fix)
    elif parts.username is not None or parts.password is not None:
        yield loaded.problem(
            ("github", "api_url"), "the URL holds credentials", "remove them; the token comes from GITHUB_TOKEN"
        )
    elif parts.scheme == "http" and not is_loopback(host):
        yield loaded.problem(
            ("github", "api_url"),
            f"{_shown(url)} would send the GitHub token unencrypted (http is allowed for loopback hosts only)",
            fix,
        )


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a host name or address, without port) is this machine: ``localhost`` and its subdomains
    (RFC 6761), 127.0.0.0/8, ::1. Plain HTTP is allowed to such a host only (registries, the GitHub API root)."""
    name = host.lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
