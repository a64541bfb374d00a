"""The one GitHub client: github3.py on a session that waits out rate limits and retries network errors.

* The token comes only from GITHUB_TOKEN and is never printed (nor put in an error message).
* The API root comes from workspace.yaml `github.api_url` (default https://api.github.com); a GitHub
  Enterprise root (``https://host/api/v3``) uses :class:`github3.GitHubEnterprise`.
* Rate limits are honoured as GitHub documents them: a 429, or a 403 with ``x-ratelimit-remaining: 0``,
  waits for ``retry-after`` seconds or until ``x-ratelimit-reset`` (bounded by ``max_wait``), with a message.
* Connection errors, timeouts and 500/502/503/504 answers are retried with exponential backoff, a bounded number
  of times; then they end in one line.
* 401, 403 and 404 become one line each (bad token, missing scope, repo not found or no access), raised as
  :class:`GitHubError` (a :class:`~infra.errors.UsageError`, exit code 2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import github3
import requests
from github3 import exceptions as gh_exceptions
from github3.session import GitHubSession

from infra.errors import UsageError
from infra.workspace.located import LoadedWorkspace

DEFAULT_API_URL = "https://api.github.com"
TOKEN_VARIABLE = "GITHUB_TOKEN"
API_VERSION = "2022-11-28"
TRANSIENT_STATUSES = (500, 502, 503, 504)


class GitHubError(UsageError):
    """A GitHub call that failed for a reason the user must fix (token, scope, access, rate limit, outage)."""


def _print_to_stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


@dataclass
class RetryPolicy:
    """How long to wait and how often to retry. Tests inject ``sleep``/``now`` to keep waits short but real."""

    retries: int = field(default_factory=lambda: int(os.environ.get("WS_GITHUB_RETRIES", "4")))  # after the first
    backoff: float = field(default_factory=lambda: float(os.environ.get("WS_GITHUB_BACKOFF", "1")))  # doubles
    max_backoff: float = 30.0
    max_wait: float = field(default_factory=lambda: float(os.environ.get("WS_GITHUB_MAX_WAIT", "900")))
    rate_limit_waits: int = 3  # rate-limit waits per request before giving up
    sleep: Callable[[float], None] = time.sleep
    now: Callable[[], float] = time.time
    notify: Callable[[str], None] = field(default=_print_to_stderr)

    def backoff_for(self, attempt: int) -> float:
        return min(self.max_backoff, self.backoff * (2**attempt))


def rate_limit_wait(response: requests.Response, now: float, repeat: int = 0) -> float | None:
    """Seconds GitHub asks us to wait before retrying, or None when the answer is not a rate limit.

    Per GitHub's REST docs: a ``retry-after`` header gives the seconds to wait; otherwise, when
    ``x-ratelimit-remaining`` is 0, wait until ``x-ratelimit-reset`` (UTC epoch seconds); otherwise a
    secondary rate limit (403/429 whose message says so) asks for at least one minute, and for exponentially
    longer while it goes on: ``repeat`` is how many times this request already waited (60 s, 120 s, 240 s, ...).
    """
    if response.status_code not in (403, 429):
        return None
    headers = response.headers
    retry_after = headers.get("retry-after")
    if retry_after is not None:
        try:
            return max(0.0, float(retry_after))
        except ValueError:
            return 60.0
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        try:
            return max(0.0, float(headers["x-ratelimit-reset"]) - now) + 1.0
        except ValueError:
            return 60.0
    if secondary_rate_limit(response):
        return 60.0 * 2**repeat
    return None


def secondary_rate_limit(response: requests.Response) -> bool:
    """A secondary rate limit that says neither how long to wait (no ``retry-after``) nor waits for the primary
    limit's reset (``x-ratelimit-remaining`` is not 0; GitHub sends the reset header on every answer anyway)."""
    headers = response.headers
    if response.status_code not in (403, 429) or "retry-after" in headers:
        return False
    if headers.get("x-ratelimit-remaining") == "0" and headers.get("x-ratelimit-reset"):
        return False
    return response.status_code == 429 or "rate limit" in _message(response).lower()


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else ""


class PatientSession(GitHubSession):
    """github3's session, plus rate-limit waits and bounded retries with backoff."""

    def __init__(self, policy: RetryPolicy) -> None:
        super().__init__()
        self.policy = policy
        self.attempts = 0  # total HTTP attempts, for reporting

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:
        policy = self.policy
        failures = 0
        waits = 0
        secondary_waits = 0  # the exponent of a lasting secondary limit's wait
        what = f"{method.upper()} {_path_of(url)}"
        while True:
            self.attempts += 1
            try:
                response: requests.Response = super().request(method, url, *args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if failures >= policy.retries:
                    raise
                delay = policy.backoff_for(failures)
                failures += 1
                policy.notify(
                    f"GitHub: {what}: network error ({type(exc).__name__}); retry {failures}/{policy.retries}"
                    f" in {delay:.0f}s"
                )
                policy.sleep(delay)
                continue
            wait = rate_limit_wait(response, policy.now(), secondary_waits)
            if wait is not None:
                if waits >= policy.rate_limit_waits or wait > policy.max_wait:
                    return response
                waits += 1
                secondary_waits += secondary_rate_limit(response)
                policy.notify(f"GitHub: rate limit reached on {what}; waiting {wait:.0f}s as GitHub asks")
                policy.sleep(wait)
                continue
            if response.status_code in TRANSIENT_STATUSES and failures < policy.retries:
                delay = policy.backoff_for(failures)
                failures += 1
                policy.notify(
                    f"GitHub: {what}: server error {response.status_code}; retry {failures}/{policy.retries}"
                    f" in {delay:.0f}s"
                )
                policy.sleep(delay)
                continue
            return response


def _path_of(url: str) -> str:
    return requests.utils.urlparse(url).path or url


def explain(exc: Exception, what: str, policy: RetryPolicy | None = None) -> GitHubError:
    """One line for a failed GitHub call: what failed, why, and what to do."""
    policy = policy or RetryPolicy()
    if isinstance(exc, gh_exceptions.TransportError):
        return GitHubError(
            f"GitHub: {what}: cannot reach the GitHub API after {policy.retries + 1} attempts"
            f" ({type(getattr(exc, 'exception', exc)).__name__}); check the network and github.api_url in"
            " workspace.yaml"
        )
    if isinstance(exc, gh_exceptions.IncompleteResponse) or not isinstance(exc, gh_exceptions.GitHubError):
        return GitHubError(f"GitHub: {what}: unexpected answer from the API ({exc}); check github.api_url")
    response = exc.response
    code = exc.code
    message = str(exc.msg or "").strip().rstrip(".")
    if code == 401:
        return GitHubError(
            f"GitHub: {what}: 401 bad credentials: GITHUB_TOKEN is invalid, expired or revoked;"
            " create a new token and export GITHUB_TOKEN"
        )
    if code in (403, 429):
        wait = rate_limit_wait(response, policy.now())
        if wait is not None and secondary_rate_limit(response):
            return GitHubError(
                f"GitHub: {what}: {code} secondary rate limit ({message or 'too many requests'}), still limited "
                f"after ws waited as GitHub asks (1, 2, 4... minutes, at most {policy.rate_limit_waits} times and "
                f"{policy.max_wait:.0f}s each); slow down (fewer repos or requests at once) and run again in a few "
                "minutes"
            )
        if wait is not None:
            reset = response.headers.get("x-ratelimit-reset")
            when = (
                datetime.fromtimestamp(float(reset), UTC).strftime("%H:%M:%S UTC")
                if reset and reset.isdigit()
                else f"in {wait:.0f}s"
            )
            why = (
                f"longer than the {policy.max_wait:.0f}s ws waits"
                if wait > policy.max_wait
                else f"still limited after {policy.rate_limit_waits} waits"
            )
            return GitHubError(
                f"GitHub: {what}: {code} rate limit exhausted (resets {when}, {why}); run again after the reset"
                " or raise WS_GITHUB_MAX_WAIT"
            )
        needed = response.headers.get("x-accepted-oauth-scopes") or response.headers.get(
            "x-accepted-github-permissions"
        )
        has = response.headers.get("x-oauth-scopes")
        scopes = f"; it needs {needed}" if needed else ""
        scopes += f" and the token has {has or 'none'}" if has is not None else ""
        return GitHubError(
            f"GitHub: {what}: 403 forbidden ({message or 'no message'}): GITHUB_TOKEN lacks a scope or permission"
            f"{scopes}; grant `repo` (classic token) or read/write on Contents, Pull requests, Commit"
            " statuses and Deployments (fine-grained token)"
        )
    if code == 404:
        return GitHubError(
            f"GitHub: {what}: 404 not found: the repository does not exist or GITHUB_TOKEN has no access to it;"
            " check repos.<name>.github in workspace.yaml and the token's repository access"
        )
    if code == 422:
        details = "; ".join(
            str(e.get("message") or e.get("code") or e) if isinstance(e, dict) else str(e) for e in exc.errors
        )
        return GitHubError(f"GitHub: {what}: 422 {message}{': ' + details if details else ''}")
    if code >= 500:
        return GitHubError(f"GitHub: {what}: server error {code} after {policy.retries + 1} attempts; try again later")
    return GitHubError(f"GitHub: {what}: {code} {message}")


class GitHub:
    """A github3.py client for one API root, with the retrying session and one-line errors."""

    def __init__(self, api_url: str, token: str, policy: RetryPolicy | None = None) -> None:
        self.api_url = api_url.rstrip("/")
        self.policy = policy or RetryPolicy()
        self.session = PatientSession(self.policy)
        if self.api_url == DEFAULT_API_URL:
            self.gh: github3.GitHub = github3.GitHub(token=token, session=self.session)
        elif self.api_url.endswith("/api/v3"):
            self.gh = github3.GitHubEnterprise(self.api_url[: -len("/api/v3")], token=token, session=self.session)
        else:
            self.gh = github3.GitHub(token=token, session=self.session)
            self.session.base_url = self.api_url
        self.session.headers["X-GitHub-Api-Version"] = API_VERSION  # the REST version these calls follow
        self._repos: dict[str, Any] = {}

    @contextmanager
    def call(self, what: str) -> Iterator[None]:
        """Run GitHub calls; turn any failure into one :class:`GitHubError` line naming ``what``."""
        try:
            yield
        except GitHubError:
            raise
        except (gh_exceptions.GitHubException, requests.RequestException) as exc:
            if isinstance(exc, requests.RequestException):
                exc = gh_exceptions.ConnectionError(exc)
            raise explain(exc, what, self.policy) from None

    def repo(self, full_name: str) -> Any:
        """The github3 Repository for owner/name (fetched once)."""
        if full_name not in self._repos:
            owner, name = full_name.split("/", 1)
            with self.call(f"read repository {full_name}"):
                found = self.gh.repository(owner, name)
            if found is None:
                raise GitHubError(f"GitHub: read repository {full_name}: the API returned no repository")
            self._repos[full_name] = found
        return self._repos[full_name]

    def request_json(
        self,
        repo: Any,
        method: str,
        parts: list[str],
        expected: int,
        data: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """A documented endpoint under /repos/{owner}/{repo}/ that github3.py 4.0 has no method for."""
        url = repo._build_url(*parts, base_url=repo._api)
        if method == "GET":
            response = repo._get(url, params=params)
        elif method == "POST":
            response = repo._post(url, data=data)
        else:
            raise ValueError(method)
        return repo._json(response, expected)


def token_from_environment() -> str | None:
    token = os.environ.get(TOKEN_VARIABLE, "").strip()
    return token or None


def api_url_of(loaded: LoadedWorkspace) -> str:
    return loaded.model.github.api_url or DEFAULT_API_URL


def client(loaded: LoadedWorkspace, policy: RetryPolicy | None = None) -> GitHub:
    """The client for this workspace; a clear error when GITHUB_TOKEN is not set."""
    token = token_from_environment()
    if token is None:
        raise GitHubError(
            f"{TOKEN_VARIABLE} is not set; export a GitHub token with access to the workspace's repositories"
            " (in a workflow: env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }})"
        )
    return GitHub(api_url_of(loaded), token, policy)


def optional_client(loaded: LoadedWorkspace, policy: RetryPolicy | None = None) -> GitHub | None:
    """The client when GITHUB_TOKEN is set, else None (callers say visibly what they skip)."""
    return client(loaded, policy) if token_from_environment() else None
