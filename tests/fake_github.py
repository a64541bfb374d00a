"""A local HTTP server that answers like GitHub's REST API (v3), for the GitHub tests.

It serves the payloads GitHub documents (https://docs.github.com/rest) for the endpoints ws uses, under the
GitHub Enterprise prefix ``/api/v3`` so github3.py's ``GitHubEnterprise`` talks to it unchanged. Each repository
can be backed by a real bare git repository: refs, compare, contents and commit SHAs come from it, so a
``git push`` to that bare repo is what "GitHub" sees. Pull requests, commit statuses, check runs and deployments
live in memory.

Every request is recorded (method, path, query, JSON body, headers). Failures can be scripted: any status with
GitHub's error body (401 Bad credentials, 403, 404, 422, 500...), rate limits (403 with
``x-ratelimit-remaining: 0`` + ``x-ratelimit-reset``, or 429 with ``retry-after``) and dropped connections.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tests.background_http import BackgroundHTTPServer

PREFIX = "/api/v3"
DOCS = "https://docs.github.com/rest"
STAMP = "2026-01-01T00:00:00Z"


@dataclass
class Recorded:
    method: str
    path: str  # without the /api/v3 prefix, percent-decoded
    query: dict[str, str]
    body: Any
    headers: dict[str, str]

    @property
    def call(self) -> tuple[str, str]:
        return (self.method, self.path)


@dataclass
class Failure:
    status: int  # 0 = drop the connection without answering
    method: str | None
    path: str | None  # regex matched against the path (without prefix)
    times: int
    headers: dict[str, str]
    body: dict[str, Any] | None


@dataclass
class RepoState:
    full_name: str
    id: int
    bare: Path | None
    default_branch: str = "main"
    pulls: list[dict[str, Any]] = field(default_factory=list)
    statuses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # sha -> statuses (newest last)
    check_runs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


class FakeGitHub:
    """Start with ``with FakeGitHub() as fake:``; ``fake.api_url`` is what workspace.yaml's github.api_url takes."""

    def __init__(self, token: str = "test-token") -> None:
        self.token = token
        self.repos: dict[str, RepoState] = {}
        self.teams: dict[str, list[str]] = {}  # "org/team-slug" -> member logins
        self.requests: list[Recorded] = []
        self.failures: list[Failure] = []
        self.lock = threading.Lock()
        self._ids = 1000
        self.server = BackgroundHTTPServer(_handler_for(self))

    # ----------------------------------------------------------------- lifecycle and set-up
    def __enter__(self) -> FakeGitHub:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        return self.url + PREFIX

    def next_id(self) -> int:
        self._ids += 1
        return self._ids

    def add_repo(self, full_name: str, bare: Path | None = None, default_branch: str = "main") -> RepoState:
        state = RepoState(full_name, self.next_id(), bare, default_branch)
        self.repos[full_name] = state
        return state

    def fail(
        self,
        status: int,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        message: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` and GitHub's error body."""
        body = {"message": message or _REASONS.get(status, "Error"), "documentation_url": DOCS}
        self.failures.append(Failure(status, method, path, times, headers or {}, body))

    def drop(self, *, method: str | None = None, path: str | None = None, times: int = 1) -> None:
        """Close the connection of the next ``times`` matching requests without answering."""
        self.failures.append(Failure(0, method, path, times, {}, None))

    def rate_limit_exhausted(self, reset_in: float, *, times: int = 1, path: str | None = None) -> None:
        """The primary rate limit: 403, x-ratelimit-remaining 0 and the reset time (epoch seconds)."""
        reset = int(time.time() + reset_in)
        self.fail(
            403,
            times=times,
            path=path,
            headers={
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": "5000",
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            },
            message="API rate limit exceeded for user ID 1.",
        )

    def calls(self) -> list[tuple[str, str]]:
        return [r.call for r in self.requests]

    def set_status(self, repo: str, sha: str, state: str, context: str = "ci/test") -> None:
        self.repos[repo].statuses.setdefault(sha, []).append(
            {
                "url": f"{self.api_url}/repos/{repo}/statuses/{sha}",
                "avatar_url": None,
                "id": self.next_id(),
                "node_id": "SC_x",
                "state": state,
                "description": state,
                "target_url": None,
                "context": context,
                "created_at": STAMP,
                "updated_at": STAMP,
            }
        )

    def add_check_run(self, repo: str, sha: str, status: str, conclusion: str | None, name: str = "build") -> None:
        self.repos[repo].check_runs.setdefault(sha, []).append(
            {"id": self.next_id(), "name": name, "head_sha": sha, "status": status, "conclusion": conclusion}
        )

    def pull(self, repo: str, number: int) -> dict[str, Any]:
        return next(p for p in self.repos[repo].pulls if p["number"] == number)

    # ----------------------------------------------------------------- payloads (GitHub's documented shapes)
    def user(self, login: str, kind: str = "User") -> dict[str, Any]:
        base = f"{self.api_url}/users/{login}"
        return {
            "login": login,
            "id": abs(hash(login)) % 100000,
            "node_id": "U_x",
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{self.url}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def repository(self, state: RepoState) -> dict[str, Any]:
        owner, name = state.full_name.split("/")
        base = f"{self.api_url}/repos/{state.full_name}"
        templated = {
            "archive_url": "{/archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        payload: dict[str, Any] = {
            "id": state.id,
            "node_id": "R_x",
            "name": name,
            "full_name": state.full_name,
            "owner": self.user(owner, "Organization"),
            "private": True,
            "html_url": f"{self.url}/{state.full_name}",
            "description": None,
            "fork": False,
            "url": base,
        }
        payload.update({key: base + suffix for key, suffix in templated.items()})
        payload.update(
            {
                "archived": False,
                "clone_url": f"{self.url}/{state.full_name}.git",
                "created_at": STAMP,
                "default_branch": state.default_branch,
                "forks_count": 0,
                "git_url": f"git://example/{state.full_name}.git",
                "has_downloads": True,
                "has_issues": True,
                "has_pages": False,
                "has_projects": True,
                "has_wiki": False,
                "homepage": None,
                "language": "TypeScript",
                "mirror_url": None,
                "network_count": 0,
                "open_issues_count": 0,
                "pushed_at": STAMP,
                "size": 1,
                "ssh_url": f"git@example:{state.full_name}.git",
                "stargazers_count": 0,
                "subscribers_count": 0,
                "svn_url": f"{self.url}/{state.full_name}",
                "updated_at": STAMP,
                "watchers_count": 0,
                "visibility": "private",
                "permissions": {"admin": True, "push": True, "pull": True},
            }
        )
        return payload

    def ref(self, state: RepoState, ref: str, sha: str) -> dict[str, Any]:
        base = f"{self.api_url}/repos/{state.full_name}"
        return {
            "ref": ref,
            "node_id": "REF_x",
            "url": f"{base}/git/{ref}",
            "object": {"type": "commit", "sha": sha, "url": f"{base}/git/commits/{sha}"},
        }

    def pull_payload(self, state: RepoState, pull: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.api_url}/repos/{state.full_name}"
        number = pull["number"]
        owner = state.full_name.split("/")[0]
        repo = self.repository(state)

        def dest(branch: str) -> dict[str, Any]:
            return {
                "label": f"{owner}:{branch}",
                "ref": branch,
                "sha": self.sha_of(state, branch) or "0" * 40,
                "user": self.user(owner, "Organization"),
                "repo": repo,
            }

        return {
            "url": f"{base}/pulls/{number}",
            "id": pull["id"],
            "node_id": "PR_x",
            "html_url": f"{self.url}/{state.full_name}/pull/{number}",
            "diff_url": f"{self.url}/{state.full_name}/pull/{number}.diff",
            "patch_url": f"{self.url}/{state.full_name}/pull/{number}.patch",
            "issue_url": f"{base}/issues/{number}",
            "commits_url": f"{base}/pulls/{number}/commits",
            "review_comments_url": f"{base}/pulls/{number}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{base}/issues/{number}/comments",
            "statuses_url": f"{base}/statuses/{self.sha_of(state, pull['head']) or '0' * 40}",
            "number": number,
            "state": pull["state"],
            "locked": False,
            "title": pull["title"],
            "user": self.user("ws-bot"),
            "body": pull["body"],
            "body_html": pull["body"],
            "body_text": pull["body"],
            "labels": [],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": STAMP,
            "updated_at": STAMP,
            "closed_at": STAMP if pull["state"] == "closed" else None,
            "merged_at": STAMP if pull["merged"] else None,
            "merge_commit_sha": None,
            "assignee": None,
            "assignees": [],
            "requested_reviewers": [self.user(login) for login in pull["reviewers"]],
            "requested_teams": [
                {
                    "id": 1,
                    "node_id": "T_x",
                    "url": f"{self.api_url}/teams/1",
                    "html_url": "",
                    "name": slug,
                    "slug": slug,
                    "description": "",
                    "privacy": "closed",
                    "permission": "push",
                    "members_url": "",
                    "repositories_url": "",
                    "parent": None,
                }
                for slug in pull["teams"]
            ],
            "head": dest(pull["head"]),
            "base": dest(pull["base"]),
            "_links": {
                "self": {"href": f"{base}/pulls/{number}"},
                "html": {"href": f"{self.url}/{state.full_name}/pull/{number}"},
            },
            "author_association": "MEMBER",
            "auto_merge": None,
            "draft": False,
            "merged": pull["merged"],
            "mergeable": True,
            "rebaseable": True,
            "mergeable_state": "clean",
            "merged_by": None,
            "comments": 0,
            "review_comments": 0,
            "maintainer_can_modify": False,
            "commits": 1,
            "additions": 1,
            "deletions": 0,
            "changed_files": 1,
        }

    def deployment_payload(self, state: RepoState, deployment: dict[str, Any]) -> dict[str, Any]:
        base = f"{self.api_url}/repos/{state.full_name}/deployments/{deployment['id']}"
        return {
            "url": base,
            "id": deployment["id"],
            "node_id": "DE_x",
            "sha": deployment["sha"],
            "ref": deployment["ref"],
            "task": deployment.get("task", "deploy"),
            "payload": deployment.get("payload", {}),
            "original_environment": deployment["environment"],
            "environment": deployment["environment"],
            "description": deployment.get("description"),
            "creator": self.user("ws-bot"),
            "created_at": STAMP,
            "updated_at": STAMP,
            "statuses_url": f"{base}/statuses",
            "repository_url": f"{self.api_url}/repos/{state.full_name}",
            "transient_environment": deployment.get("transient_environment", False),
            "production_environment": deployment.get("production_environment", False),
        }

    def commit_payload(self, state: RepoState, sha: str) -> dict[str, Any]:
        fields = self.git(state, "show", "-s", "--format=%an%x00%ae%x00%aI%x00%cn%x00%ce%x00%cI%x00%P%x00%B", sha)
        an, ae, ad, cn, ce, cd, parents, message = fields.stdout.split("\x00", 7)
        base = f"{self.api_url}/repos/{state.full_name}"
        return {
            "url": f"{base}/commits/{sha}",
            "sha": sha,
            "node_id": "C_x",
            "html_url": f"{self.url}/{state.full_name}/commit/{sha}",
            "comments_url": f"{base}/commits/{sha}/comments",
            "commit": {
                "url": f"{base}/git/commits/{sha}",
                "author": {"name": an, "email": ae, "date": ad},
                "committer": {"name": cn, "email": ce, "date": cd},
                "message": message.strip(),
                "tree": {"url": "", "sha": "0" * 40},
                "comment_count": 0,
                "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None},
            },
            "author": None,
            "committer": None,
            "parents": [{"url": f"{base}/commits/{p}", "sha": p} for p in parents.split()],
        }

    # ----------------------------------------------------------------- git-backed data
    def git(self, state: RepoState, *args: str) -> subprocess.CompletedProcess[str]:
        assert state.bare is not None, f"{state.full_name} has no bare repository"
        return subprocess.run(["git", *args], cwd=state.bare, capture_output=True, text=True, check=False)

    def sha_of(self, state: RepoState, ref: str) -> str | None:
        if state.bare is None:
            return None
        name = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else f"refs/heads/{ref}"
        result = self.git(state, "rev-parse", "--verify", "--quiet", name + "^{commit}")
        return result.stdout.strip() or None


_REASONS = {
    400: "Problems parsing JSON",
    401: "Bad credentials",
    403: "Resource not accessible by personal access token",
    404: "Not Found",
    409: "Conflict",
    422: "Validation Failed",
    429: "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class _Answer(Exception):
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _error(status: int, message: str | None = None, errors: list[dict[str, Any]] | None = None) -> _Answer:
    body: dict[str, Any] = {"message": message or _REASONS.get(status, "Error"), "documentation_url": DOCS}
    if errors:
        body["errors"] = errors
    return _Answer(status, body)


def _handler_for(fake: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            self.handle_any("GET")

        def do_POST(self) -> None:
            self.handle_any("POST")

        def do_PATCH(self) -> None:
            self.handle_any("PATCH")

        def do_PUT(self) -> None:
            self.handle_any("PUT")

        def do_DELETE(self) -> None:
            self.handle_any("DELETE")

        def handle_any(self, method: str) -> None:
            parts = urlsplit(self.path)
            path = unquote(parts.path)
            if path.startswith(PREFIX):
                path = path[len(PREFIX) :]
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with fake.lock:
                fake.requests.append(
                    Recorded(method, path, query, body, {k.lower(): v for k, v in self.headers.items()})
                )
                failure = self.scripted_failure(method, path)
            if failure is not None:
                if failure.status == 0:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.answer(failure.status, failure.body, failure.headers)
                return
            # GitHub takes the token as "token X" (github3.py) or "Bearer X" (its docs, curl in workflows)
            if self.headers.get("Authorization") not in (f"token {fake.token}", f"Bearer {fake.token}"):
                self.answer(401, {"message": "Bad credentials", "documentation_url": DOCS})
                return
            try:
                with fake.lock:
                    status, payload = route(fake, method, path, query, body)
            except _Answer as answer:
                self.answer(answer.status, answer.body, answer.headers)
                return
            self.answer(status, payload)

        def scripted_failure(self, method: str, path: str) -> Failure | None:
            for failure in fake.failures:
                if failure.times <= 0:
                    continue
                if failure.method and failure.method != method:
                    continue
                if failure.path and not re.search(failure.path, path):
                    continue
                failure.times -= 1
                return failure
            return None

        def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ratelimit-limit", "5000")
            self.send_header("x-github-api-version-selected", "2022-11-28")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            if not headers or "x-ratelimit-remaining" not in headers:
                self.send_header("x-ratelimit-remaining", "4999")
            self.end_headers()
            if data:
                self.wfile.write(data)

    return Handler


# --------------------------------------------------------------------- routes
def route(fake: FakeGitHub, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
    team = re.fullmatch(r"/orgs/([^/]+)/teams/([^/]+)/members", path)
    if team and method == "GET":
        members = fake.teams.get(f"{team.group(1)}/{team.group(2)}")
        if members is None:
            raise _error(404)
        return 200, [fake.user(login) for login in members]
    match = re.fullmatch(r"/repos/([^/]+/[^/]+)(/.*)?", path)
    if not match:
        raise _error(404)
    state = fake.repos.get(match.group(1))
    if state is None:
        raise _error(404)
    rest = match.group(2) or ""
    if method == "GET" and rest == "":
        return 200, fake.repository(state)
    for pattern, verb, handler in ROUTES:
        found = re.fullmatch(pattern, rest)
        if found and verb == method:
            return handler(fake, state, query, body, *found.groups())
    raise _error(404)


Handler = Any


def get_ref(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
    if not ref.startswith("heads/"):
        raise _error(404)
    sha = fake.sha_of(state, ref[len("heads/") :])
    if sha is None:
        raise _error(404)
    return 200, fake.ref(state, "refs/" + ref, sha)


def create_ref(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any) -> tuple[int, Any]:
    if not isinstance(body, dict) or not str(body.get("ref", "")).startswith("refs/") or "sha" not in body:
        raise _error(422, "Reference name must start with 'refs/' and a sha is required")
    ref = body["ref"]
    if fake.git(state, "rev-parse", "--verify", "--quiet", ref).returncode == 0:
        raise _error(422, "Reference already exists")
    if fake.git(state, "cat-file", "-e", body["sha"] + "^{commit}").returncode != 0:
        raise _error(422, "Object does not exist")
    fake.git(state, "update-ref", ref, body["sha"])
    return 201, fake.ref(state, ref, body["sha"])


def delete_ref(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
    if fake.git(state, "rev-parse", "--verify", "--quiet", "refs/" + ref).returncode != 0:
        raise _error(422, "Reference does not exist")
    fake.git(state, "update-ref", "-d", "refs/" + ref)
    return 204, None


def compare(
    fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, base: str, head: str
) -> tuple[int, Any]:
    base_sha, head_sha = fake.sha_of(state, base), fake.sha_of(state, head)
    if base_sha is None or head_sha is None:
        raise _error(404)
    counts = fake.git(state, "rev-list", "--left-right", "--count", f"{base_sha}...{head_sha}").stdout.split()
    behind, ahead = int(counts[0]), int(counts[1])
    status = "identical" if ahead == behind == 0 else "ahead" if behind == 0 else "behind" if ahead == 0 else "diverged"
    url = f"{fake.api_url}/repos/{state.full_name}/compare/{base}...{head}"
    commit = fake.commit_payload(state, base_sha)
    return 200, {
        "url": url,
        "html_url": url,
        "permalink_url": url,
        "diff_url": url + ".diff",
        "patch_url": url + ".patch",
        "base_commit": commit,
        "merge_base_commit": commit,
        "status": status,
        "ahead_by": ahead,
        "behind_by": behind,
        "total_commits": ahead,
        "commits": [
            fake.commit_payload(state, sha)
            for sha in fake.git(state, "rev-list", "--reverse", f"{base_sha}..{head_sha}").stdout.split()
        ],
        "files": [],
    }


def list_pulls(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any) -> tuple[int, Any]:
    wanted = query.get("state", "open")
    result = []
    for pull in reversed(state.pulls):
        if wanted != "all" and pull["state"] != wanted:
            continue
        if "head" in query and query["head"] != f"{state.full_name.split('/')[0]}:{pull['head']}":
            continue
        if "base" in query and query["base"] != pull["base"]:
            continue
        result.append(fake.pull_payload(state, pull))
    return 200, result


def create_pull(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any) -> tuple[int, Any]:
    if not isinstance(body, dict) or not body.get("title") or not body.get("head") or not body.get("base"):
        raise _error(422, errors=[{"resource": "PullRequest", "code": "missing_field", "field": "title"}])
    head = body["head"].split(":")[-1]
    if fake.sha_of(state, head) is None:
        raise _error(422, errors=[{"resource": "PullRequest", "field": "head", "code": "invalid"}])
    for pull in state.pulls:
        if pull["head"] == head and pull["base"] == body["base"] and pull["state"] == "open":
            raise _error(
                422,
                errors=[
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"A pull request already exists for {body['head']}.",
                    }
                ],
            )
    compare_status, comparison = compare(fake, state, {}, None, body["base"], head)
    if comparison["ahead_by"] == 0:
        raise _error(
            422,
            errors=[
                {
                    "resource": "PullRequest",
                    "code": "custom",
                    "message": f"No commits between {body['base']} and {head}",
                }
            ],
        )
    pull = {
        "number": len(state.pulls) + 1,
        "id": fake.next_id(),
        "title": body["title"],
        "body": body.get("body"),
        "head": head,
        "base": body["base"],
        "state": "open",
        "merged": False,
        "reviewers": [],
        "teams": [],
        "reviews": [],  # (login, state), oldest first; tests add them as reviewers would
    }
    state.pulls.append(pull)
    return 201, fake.pull_payload(state, pull)


def pull_files(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
    pull = next((p for p in state.pulls if p["number"] == int(number)), None)
    if pull is None:
        raise _error(404)
    base, head = fake.sha_of(state, pull["base"]), fake.sha_of(state, pull["head"])
    names = fake.git(state, "diff", "--name-status", f"{base}...{head}").stdout.splitlines()
    status = {"A": "added", "M": "modified", "D": "removed"}
    return 200, [
        {
            "sha": "0" * 40,
            "filename": line.split("\t")[-1],
            "status": status.get(line[:1], "modified"),
            "additions": 1,
            "deletions": 0,
            "changes": 1,
            "blob_url": "",
            "raw_url": "",
            "contents_url": "",
            "patch": "",
        }
        for line in names
    ]


def pull_reviews(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
    pull = next((p for p in state.pulls if p["number"] == int(number)), None)
    if pull is None:
        raise _error(404)
    return 200, [
        {
            "id": index + 1,
            "node_id": "PRR_x",
            "user": fake.user(login),
            "body": "",
            "body_html": "",
            "body_text": "",
            "state": review_state,
            "html_url": "",
            "pull_request_url": f"{fake.api_url}/repos/{state.full_name}/pulls/{number}",
            "author_association": "MEMBER",
            "submitted_at": STAMP,
            "commit_id": fake.sha_of(state, pull["head"]) or "0" * 40,
            "_links": {"html": {"href": ""}, "pull_request": {"href": ""}},
        }
        for index, (login, review_state) in enumerate(pull.get("reviews", []))
    ]


def get_pull(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
    pull = next((p for p in state.pulls if p["number"] == int(number)), None)
    if pull is None:
        raise _error(404)
    return 200, fake.pull_payload(state, pull)


def update_pull(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str) -> tuple[int, Any]:
    pull = next((p for p in state.pulls if p["number"] == int(number)), None)
    if pull is None:
        raise _error(404)
    for key in ("title", "body", "state", "base"):
        if isinstance(body, dict) and key in body:
            pull[key] = body[key]
    return 200, fake.pull_payload(state, pull)


def request_reviewers(
    fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str
) -> tuple[int, Any]:
    pull = next((p for p in state.pulls if p["number"] == int(number)), None)
    if pull is None:
        raise _error(404)
    body = body or {}
    for login in body.get("reviewers", []):
        if login not in pull["reviewers"]:
            pull["reviewers"].append(login)
    for slug in body.get("team_reviewers", []):
        if slug not in pull["teams"]:
            pull["teams"].append(slug)
    return 201, fake.pull_payload(state, pull)


def combined_status(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
    sha = fake.sha_of(state, ref)
    if sha is None:
        raise _error(422, f"No commit found for SHA: {ref}")
    latest: dict[str, dict[str, Any]] = {}
    for status in state.statuses.get(sha, []):
        latest[status["context"]] = status
    states = [s["state"] for s in latest.values()]
    overall = (
        "failure"
        if any(s in ("failure", "error") for s in states)
        else "pending"
        if not states or any(s == "pending" for s in states)
        else "success"
    )
    return 200, {
        "state": overall,
        "statuses": list(latest.values()),
        "sha": sha,
        "total_count": len(latest),
        "repository": fake.repository(state),
        "commit_url": f"{fake.api_url}/repos/{state.full_name}/commits/{sha}",
        "url": f"{fake.api_url}/repos/{state.full_name}/commits/{sha}/status",
    }


def check_runs(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
    sha = fake.sha_of(state, ref)
    if sha is None:
        raise _error(422, f"No commit found for SHA: {ref}")
    runs = state.check_runs.get(sha, [])
    return 200, {"total_count": len(runs), "check_runs": runs}


def get_commit(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, ref: str) -> tuple[int, Any]:
    sha = fake.sha_of(state, ref)
    if sha is None:
        raise _error(422, f"No commit found for SHA: {ref}")
    payload = fake.commit_payload(state, sha)
    payload["stats"] = {"total": 0, "additions": 0, "deletions": 0}
    payload["files"] = []
    return 200, payload


def contents(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, path: str) -> tuple[int, Any]:
    ref = query.get("ref") or state.default_branch
    sha = fake.sha_of(state, ref)
    if sha is None:
        raise _error(404, f"No commit found for the ref {ref}")
    path = path.strip("/")
    kind = fake.git(state, "cat-file", "-t", f"{sha}:{path}").stdout.strip()
    base = f"{fake.api_url}/repos/{state.full_name}"

    def entry(item_path: str, item_type: str, item_sha: str, size: int) -> dict[str, Any]:
        url = f"{base}/contents/{item_path}?ref={ref}"
        return {
            "type": "file" if item_type == "blob" else "dir",
            "size": size,
            "name": item_path.rsplit("/", 1)[-1],
            "path": item_path,
            "sha": item_sha,
            "url": url,
            "git_url": f"{base}/git/{item_type}s/{item_sha}",
            "html_url": f"{fake.url}/{state.full_name}/blob/{ref}/{item_path}",
            "download_url": f"{fake.url}/raw/{state.full_name}/{ref}/{item_path}" if item_type == "blob" else None,
            "_links": {"self": url, "git": f"{base}/git/{item_type}s/{item_sha}", "html": ""},
        }

    if kind == "blob":
        data = subprocess.run(
            ["git", "cat-file", "blob", f"{sha}:{path}"], cwd=state.bare, capture_output=True, check=True
        ).stdout
        blob_sha = fake.git(state, "rev-parse", f"{sha}:{path}").stdout.strip()
        payload = entry(path, "blob", blob_sha, len(data))
        encoded = base64.b64encode(data).decode()
        payload["content"] = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
        payload["encoding"] = "base64"
        return 200, payload
    if kind == "tree":
        listing = fake.git(state, "ls-tree", "-l", f"{sha}:{path}" if path else sha).stdout.splitlines()
        items = []
        for line in listing:
            meta, name = line.split("\t", 1)
            _mode, item_type, item_sha, size = meta.split()
            items.append(
                entry(f"{path}/{name}" if path else name, item_type, item_sha, int(size) if size != "-" else 0)
            )
        return 200, items
    raise _error(404)


def create_deployment(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any) -> tuple[int, Any]:
    if not isinstance(body, dict) or not body.get("ref"):
        raise _error(422, errors=[{"resource": "Deployment", "code": "missing_field", "field": "ref"}])
    sha = fake.sha_of(state, body["ref"]) if state.bare else None
    if state.bare is not None and sha is None:
        raise _error(422, f"No ref found for: {body['ref']}")
    deployment = dict(body)
    deployment.update(
        {"id": fake.next_id(), "sha": sha or body["ref"], "environment": body.get("environment", "production")}
    )
    state.deployments.append(deployment)
    state.deployment_statuses[deployment["id"]] = []
    return 201, fake.deployment_payload(state, deployment)


def list_deployments(fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any) -> tuple[int, Any]:
    result = [
        fake.deployment_payload(state, d)
        for d in reversed(state.deployments)
        if "environment" not in query or d["environment"] == query["environment"]
    ]
    return 200, result


def create_deployment_status(
    fake: FakeGitHub, state: RepoState, query: dict[str, str], body: Any, number: str
) -> tuple[int, Any]:
    if int(number) not in state.deployment_statuses:
        raise _error(404)
    allowed = ("error", "failure", "inactive", "in_progress", "queued", "pending", "success")
    if not isinstance(body, dict) or body.get("state") not in allowed:
        raise _error(422, errors=[{"resource": "DeploymentStatus", "code": "invalid", "field": "state"}])
    status = {
        "url": f"{fake.api_url}/repos/{state.full_name}/deployments/{number}/statuses/{fake.next_id()}",
        "id": fake.next_id(),
        "node_id": "DES_x",
        "state": body["state"],
        "creator": fake.user("ws-bot"),
        "description": body.get("description", ""),
        "environment": body.get("environment", ""),
        "target_url": body.get("log_url", body.get("target_url", "")),
        "log_url": body.get("log_url", ""),
        "environment_url": body.get("environment_url", ""),
        "created_at": STAMP,
        "updated_at": STAMP,
        "deployment_url": f"{fake.api_url}/repos/{state.full_name}/deployments/{number}",
        "repository_url": f"{fake.api_url}/repos/{state.full_name}",
    }
    state.deployment_statuses[int(number)].append(status)
    return 201, status


ROUTES: list[tuple[str, str, Any]] = [
    (r"/git/ref/(heads/.+)", "GET", get_ref),
    (r"/git/refs", "POST", create_ref),
    (r"/git/refs/(heads/.+)", "DELETE", delete_ref),
    (r"/compare/(.+?)\.\.\.(.+)", "GET", compare),
    (r"/pulls", "GET", list_pulls),
    (r"/pulls", "POST", create_pull),
    (r"/pulls/(\d+)", "GET", get_pull),
    (r"/pulls/(\d+)", "PATCH", update_pull),
    (r"/pulls/(\d+)/requested_reviewers", "POST", request_reviewers),
    (r"/pulls/(\d+)/files", "GET", pull_files),
    (r"/pulls/(\d+)/reviews", "GET", pull_reviews),
    (r"/commits/(.+)/status", "GET", combined_status),
    (r"/commits/(.+)/check-runs", "GET", check_runs),
    (r"/commits/(.+)", "GET", get_commit),  # a branch name may hold slashes
    (r"/contents/?(.*)", "GET", contents),
    (r"/deployments", "POST", create_deployment),
    (r"/deployments", "GET", list_deployments),
    (r"/deployments/(\d+)/statuses", "POST", create_deployment_status),
]


def recording_policy(sleeps: list[float], messages: list[str], **overrides: Any) -> Any:
    """A retry policy whose waits are real but short (10 ms) and recorded with the duration asked for."""
    from infra.github.client import RetryPolicy

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(min(seconds, 0.01))

    return RetryPolicy(sleep=sleep, notify=messages.append, **overrides)
