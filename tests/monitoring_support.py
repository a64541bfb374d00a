"""Real Prometheus and Pushgateway processes for the monitoring tests: free loopback ports, temp dirs, bounded waits."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from infra.deploy.servers import free_port

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / ".ws" / "test-artifacts"


def require(binary: str, package: str) -> str:
    """The path of a Debian package's binary; the test is skipped (saying which package) when it is missing."""
    found = shutil.which(binary)
    if found is None:
        pytest.skip(f"{binary} not installed (Debian package {package}; scripts/install-debian-packages.sh)")
    return found


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60.0, every: float = 0.2) -> T:
    """Call ``probe`` until it returns something other than None/False, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except OSError as exc:
            last = exc
        else:
            if last is not None and last is not False:
                return last
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what} after {timeout}s (last: {last!r})")


def http_get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


class Prometheus:
    """A real Prometheus server on 127.0.0.1 scraping ``targets`` every second."""

    def __init__(self, binary: str, folder: Path, scrape: dict[str, list[str]], rules: list[Path] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        jobs = [
            {
                "job_name": job,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "honor_labels": job == "pushgateway",
                "static_configs": [{"targets": targets}],
            }
            for job, targets in scrape.items()
        ]
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"}, "scrape_configs": jobs}
        if rules:
            config["rule_files"] = [str(r) for r in rules]
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.log = open(folder / "prometheus.log", "wb")  # closed in stop()
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_for("Prometheus to be ready", lambda: self._ready(), timeout=60)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"prometheus exited: {Path(self.log.name).read_text()[-2000:]}")
        try:
            return "Ready" in http_get(f"{self.url}/-/ready", 1)
        except OSError:
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector result of ``promql`` (an error answer fails the test with Prometheus's message)."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            answer = json.loads(http_get(url))
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{promql}: {exc.read().decode()}") from None
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_query(self, promql: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        return wait_for(f"{promql} in Prometheus", lambda: self.query(promql) or None, timeout=timeout, every=0.5)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@contextmanager
def prometheus(scrape: dict[str, list[str]], rules: list[Path] | None = None) -> Iterator[Prometheus]:
    binary = require("prometheus", "prometheus")
    folder = Path(tempfile.mkdtemp(prefix="ws-prometheus-"))
    server = Prometheus(binary, folder, scrape, rules)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def pushgateway() -> Iterator[str]:
    """A real Pushgateway on a free loopback port; its base URL."""
    binary = require("prometheus-pushgateway", "prometheus-pushgateway")
    port = free_port()
    process = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for("the Pushgateway", lambda: "ok" in http_get(f"{url}/-/healthy", 1).lower() or None, timeout=30)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
