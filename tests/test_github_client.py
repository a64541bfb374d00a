"""The GitHub client against the local fake GitHub: auth, one-line errors, rate-limit waits, bounded retries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.github.client import GitHub, GitHubError, client, rate_limit_wait
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from tests.fake_github import FakeGitHub, recording_policy
from tests.helpers import run_ws
from tests.workspace_builder import GIT_IDENTITY, build_workspace

REPO = "acme/app-agents"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        server.add_repo(REPO)
        yield server


def test_requests_go_to_the_enterprise_api_root_with_the_token(fake: FakeGitHub) -> None:
    github = GitHub(fake.api_url, fake.token)
    repository = github.repo(REPO)
    assert repository.full_name == REPO
    assert fake.calls() == [("GET", f"/repos/{REPO}")]
    assert fake.requests[0].headers["authorization"] == f"token {fake.token}"
    assert fake.requests[0].headers["x-github-api-version"] == "2022-11-28"
    github.repo(REPO)
    assert len(fake.requests) == 1, "the repository is fetched once per client"


def test_bad_token_is_one_line_without_the_token(fake: FakeGitHub) -> None:
    github = GitHub(fake.api_url, "not-the-token-s3cr3t")
    with pytest.raises(GitHubError) as caught:
        github.repo(REPO)
    message = str(caught.value)
    assert message.startswith(f"GitHub: read repository {REPO}: 401 bad credentials")
    assert "GITHUB_TOKEN" in message and "\n" not in message
    assert "s3cr3t" not in message


def test_missing_scope_names_the_scope_needed_and_held(fake: FakeGitHub) -> None:
    fake.fail(403, headers={"x-accepted-oauth-scopes": "repo", "x-oauth-scopes": "read:org"})
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token).repo(REPO)
    message = str(caught.value)
    assert "403 forbidden (Resource not accessible by personal access token)" in message
    assert "it needs repo and the token has read:org" in message
    assert "\n" not in message


def test_unknown_repo_is_404_not_found_or_no_access(fake: FakeGitHub) -> None:
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token).repo("acme/nope")
    message = str(caught.value)
    assert message.startswith("GitHub: read repository acme/nope: 404 not found")
    assert "does not exist or GITHUB_TOKEN has no access" in message
    assert fake.calls() == [("GET", "/repos/acme/nope")]


def test_exhausted_rate_limit_waits_until_the_reset_then_retries(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    messages: list[str] = []
    fake.rate_limit_exhausted(reset_in=30)
    repository = GitHub(fake.api_url, fake.token, recording_policy(sleeps, messages)).repo(REPO)
    assert repository.full_name == REPO
    assert fake.calls() == [("GET", f"/repos/{REPO}")] * 2
    assert len(sleeps) == 1 and 28 <= sleeps[0] <= 32  # reset is 30 s away (+1 s margin), computed, not timed
    assert messages == [
        f"GitHub: rate limit reached on GET /api/v3/repos/{REPO}; waiting {sleeps[0]:.0f}s as GitHub asks"
    ]


def test_retry_after_is_honoured_exactly(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.fail(429, headers={"retry-after": "7"})
    GitHub(fake.api_url, fake.token, recording_policy(sleeps, [])).repo(REPO)
    assert sleeps == [7.0]
    assert len(fake.requests) == 2


def test_rate_limit_longer_than_the_maximum_wait_is_one_line(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.rate_limit_exhausted(reset_in=3600)
    policy = recording_policy(sleeps, [], max_wait=60)
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token, policy).repo(REPO)
    message = str(caught.value)
    assert "403 rate limit exhausted (resets " in message and "UTC" in message
    assert "WS_GITHUB_MAX_WAIT" in message and "\n" not in message
    assert sleeps == [] and len(fake.requests) == 1


def test_rate_limit_wait_reads_githubs_headers() -> None:
    import requests

    response = requests.Response()
    response.status_code = 403
    response.headers["x-ratelimit-remaining"] = "0"
    response.headers["x-ratelimit-reset"] = "1000"
    assert rate_limit_wait(response, now=990.0) == 11.0
    response.headers["retry-after"] = "5"
    assert rate_limit_wait(response, now=990.0) == 5.0
    plain = requests.Response()
    plain.status_code = 403
    plain._content = b'{"message": "Must have admin rights to Repository."}'
    assert rate_limit_wait(plain, now=0.0) is None
    secondary = requests.Response()
    secondary.status_code = 403
    secondary._content = b'{"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}'
    assert rate_limit_wait(secondary, now=0.0) == 60.0  # GitHub: wait at least one minute
    assert rate_limit_wait(secondary, now=0.0, repeat=2) == 240.0  # ... and exponentially longer while it lasts


def test_a_lasting_secondary_rate_limit_waits_longer_each_time_then_gives_up(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    message = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."
    fake.fail(403, times=2, message=message)
    assert GitHub(fake.api_url, fake.token, recording_policy(sleeps, [])).repo(REPO).full_name == REPO
    assert sleeps == [60.0, 120.0] and len(fake.requests) == 3
    sleeps.clear()
    # as GitHub answers it: the primary limit's headers are there too, with requests left
    fake.fail(403, times=10, message=message, headers={"x-ratelimit-remaining": "4987", "x-ratelimit-reset": "1"})
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token, recording_policy(sleeps, [])).repo(REPO)
    assert sleeps == [60.0, 120.0, 240.0]  # the policy's three waits, then the error
    assert "secondary rate limit" in str(caught.value) and "\n" not in str(caught.value)


def test_dropped_connections_are_retried_with_growing_backoff(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    messages: list[str] = []
    fake.drop(times=2)
    repository = GitHub(fake.api_url, fake.token, recording_policy(sleeps, messages, backoff=0.5)).repo(REPO)
    assert repository.full_name == REPO
    assert sleeps == [0.5, 1.0]
    assert len(fake.requests) == 3
    assert all("network error" in m for m in messages)


def test_network_errors_give_up_after_the_bounded_retries(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.drop(times=10)
    policy = recording_policy(sleeps, [], retries=2, backoff=0.1)
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token, policy).repo(REPO)
    assert str(caught.value).startswith(f"GitHub: read repository {REPO}: cannot reach the GitHub API after 3 attempts")
    assert len(fake.requests) == 3
    assert sleeps == [0.1, 0.2]


def test_server_errors_are_retried_then_reported(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.fail(500, times=10)
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token, recording_policy(sleeps, [], retries=2, backoff=0.1)).repo(REPO)
    assert "server error 500 after 3 attempts" in str(caught.value)
    assert len(fake.requests) == 3


def test_a_server_error_then_success_recovers(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.fail(502)
    assert GitHub(fake.api_url, fake.token, recording_policy(sleeps, [], backoff=0.1)).repo(REPO).name == "app-agents"
    assert sleeps == [0.1]


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeGitHub, Path]]:
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    with FakeGitHub() as server:
        yield server, build_workspace(tmp_path, server)


def test_client_needs_github_token(workspace: tuple[FakeGitHub, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    loaded: LoadedWorkspace = load_workspace(workspace[1])
    with pytest.raises(GitHubError, match="GITHUB_TOKEN is not set"):
        client(loaded)
    monkeypatch.setenv("GITHUB_TOKEN", "x")
    assert client(loaded).api_url == workspace[0].api_url


@pytest.mark.parametrize(
    ("token", "failure", "expected"),
    [
        ("wrong-s3cr3t", None, "401 bad credentials: GITHUB_TOKEN is invalid, expired or revoked"),
        ("test-token", 403, "403 forbidden (Resource not accessible by personal access token)"),
        ("test-token", 404, "404 not found: the repository does not exist or GITHUB_TOKEN has no access to it"),
    ],
)
def test_cli_explains_github_errors_in_one_line(
    workspace: tuple[FakeGitHub, Path], token: str, failure: int | None, expected: str
) -> None:
    fake, path = workspace
    if failure:
        fake.fail(failure, times=5)
    result = run_ws("-w", str(path), "pr", "status", "feature", env={"GITHUB_TOKEN": token})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "s3cr3t" not in result.stderr + result.stdout
    assert len(fake.requests) == 1  # 401/403/404 are answers, not retried


def test_a_rate_limit_that_persists_gives_up_after_the_bounded_waits(fake: FakeGitHub) -> None:
    sleeps: list[float] = []
    fake.fail(429, headers={"retry-after": "2"}, times=10)
    with pytest.raises(GitHubError) as caught:
        GitHub(fake.api_url, fake.token, recording_policy(sleeps, [], rate_limit_waits=2)).repo(REPO)
    assert sleeps == [2.0, 2.0] and len(fake.requests) == 3
    assert "429 rate limit exhausted (resets in 2s, still limited after 2 waits)" in str(caught.value)
