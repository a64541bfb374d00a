"""trackCrossRepositoryMetric: the exported TypeScript (compiled by tsc, run with node) and Python helpers push to a
real Pushgateway (Debian `prometheus-pushgateway`) that a real Prometheus scrapes; `ws up` starts a local one."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from infra.deploy.servers import answers, free_port, pid_alive
from infra.monitoring import pushgateway as gateway_module
from infra.workspace.loader import load_workspace
from tests import test_deploy_pipeline
from tests.fixtures.prisma.nodetools import tsc
from tests.helpers import EXAMPLES, run_ws
from tests.monitoring_support import Prometheus, http_get, prometheus, pushgateway, wait_for
from tests.test_deploy_pipeline import ExampleEnv

make_example = test_deploy_pipeline.make_example  # the fixture that writes a copy of the example workspace

NODE_SCRIPT = """
const metrics = require("./out/metrics.js");
async function main() {
  const pushed = await metrics.trackCrossRepositoryMetric(
    "app-agents", "agent_runs_total", 42, { agent: "planner", region: "eu \\"west\\"/1" });
  const unconfigured = await metrics.trackCrossRepositoryMetric("app-agents", "x", 1, {}, { url: "" });
  const unreachable = await metrics.trackCrossRepositoryMetric(
    "app-agents", "x", 1, {}, { url: "http://127.0.0.1:1", timeoutMs: 2000 });
  let refused = "";
  try {
    await metrics.trackCrossRepositoryMetric("app-agents", "bad name", 1);
  } catch (error) {
    refused = String(error.message);
  }
  console.log(JSON.stringify({ pushed, unconfigured, unreachable, refused }));
}
main();
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exported")
    done = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "schema", "export-types", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cross_repository_metrics_{abs(hash(path))}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gateway_and_prometheus() -> Iterator[tuple[str, Prometheus]]:
    with pushgateway() as url, prometheus({"pushgateway": [url.removeprefix("http://")]}) as server:
        yield url, server


def test_both_helpers_reach_prometheus_through_a_real_pushgateway(
    exported: Path, gateway_and_prometheus: tuple[str, Prometheus]
) -> None:
    url, server = gateway_and_prometheus
    # Python
    helpers = load(exported / "python" / "cross_repository_metrics.py")
    assert helpers.trackCrossRepositoryMetric is helpers.track_cross_repository_metric
    assert helpers.track_cross_repository_metric(
        "saas-spec-driven-development", "spec_validations", 7.5, {"kind": "schema"}, url=url
    )
    assert helpers.track_cross_repository_metric("saas-spec-driven-development", "spec_validations", 2, url=url)
    assert not helpers.track_cross_repository_metric("a", "x", 1, url="")  # no Pushgateway configured
    assert not helpers.track_cross_repository_metric("a", "x", 1, url="http://127.0.0.1:1", timeout=2)
    with pytest.raises(ValueError, match="metric name 'bad name' is not a Prometheus name"):
        helpers.track_cross_repository_metric("a", "bad name", 1, url=url)
    with pytest.raises(ValueError, match="tag name 'job' is not allowed"):
        helpers.track_cross_repository_metric("a", "x", 1, {"job": "y"}, url=url)
    # TypeScript, compiled by tsc and run by node, the Pushgateway's URL from WS_PUSHGATEWAY_URL
    work = exported / "typescript"
    compiled = tsc(work, "--strict", "--target", "ES2022", "--module", "commonjs", "--outDir", "out", "metrics.ts")
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    (work / "push.cjs").write_text(NODE_SCRIPT)
    node = shutil.which("node")
    assert node is not None
    ran = subprocess.run(
        [node, "push.cjs"],
        cwd=work,
        env={**os.environ, "WS_PUSHGATEWAY_URL": url + "/"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {
        "pushed": True,
        "unconfigured": False,
        "unreachable": False,
        "refused": 'trackCrossRepositoryMetric: metric name "bad name" is not a Prometheus name',
    }
    # both reach Prometheus with the repository, the tags and the job, as pushed
    [from_node] = server.wait_query('agent_runs_total{job="cross_repository",repository="app-agents",agent="planner"}')
    assert from_node["metric"]["region"] == 'eu "west"/1' and from_node["value"][1] == "42"
    found = server.wait_query('spec_validations{job="cross_repository",repository="saas-spec-driven-development"}')
    assert sorted((r["metric"].get("kind", ""), r["value"][1]) for r in found) == [("", "2"), ("schema", "7.5")]


def test_the_pushgateway_url_is_resolved_into_every_repo_env(tmp_path: Path) -> None:
    text = (EXAMPLES / "workspace.yaml").read_text().replace("cache: {}", "cache: {}\nmonitoring:\n  pushgateway:"
                                                              "\n    port: 9391\n    url: http://pushgateway:9091")  # fmt: skip
    text = text.replace(
        "  DB_MAX_CONNECTIONS: 10\n", "  DB_MAX_CONNECTIONS: 10\n  METRICS_URL: ${monitoring.pushgateway_url}\n"
    )
    path = tmp_path / "workspace.yaml"
    path.write_text(text)
    local = run_ws("-w", str(path), "env", "--env", "local", "--repo", "app-agents")
    assert local.returncode == 0, local.stderr
    assert "WS_PUSHGATEWAY_URL=http://127.0.0.1:9391" in local.stdout
    assert "METRICS_URL=http://127.0.0.1:9391" in local.stdout
    staging = run_ws("-w", str(path), "env", "--env", "staging", "--repo", "app-agents")
    assert "WS_PUSHGATEWAY_URL=http://pushgateway:9091" in staging.stdout
    # without monitoring.pushgateway the reference is unknown: one clear error naming the key
    undeclared = tmp_path / "undeclared.yaml"
    undeclared.write_text(
        text.replace("monitoring:\n  pushgateway:\n    port: 9391\n    url: http://pushgateway:9091\n", "")
    )
    checked = run_ws("-w", str(undeclared), "env", "--env", "local", "--repo", "app-agents")
    assert checked.returncode == 2 and "monitoring.pushgateway_url" in checked.stderr
    assert "Traceback" not in checked.stderr
    plain = run_ws("-w", str(EXAMPLES / "workspace.yaml"), "env", "--env", "local", "--repo", "app-agents")
    assert "WS_PUSHGATEWAY_URL" not in plain.stdout  # nothing declared, nothing added


def test_without_the_binary_ws_up_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = (EXAMPLES / "workspace.yaml").read_text()
    port = free_port()
    path = tmp_path / "workspace.yaml"
    path.write_text(text.replace("cache: {}", f"cache: {{}}\nmonitoring:\n  pushgateway: {{port: {port}}}"))
    loaded = load_workspace(path)
    monkeypatch.setenv("WS_PUSHGATEWAY_BINARY", "no-such-pushgateway")
    message = gateway_module.start_local(loaded, "local")
    assert message is not None and "not installed (Debian package prometheus-pushgateway)" in message
    assert gateway_module.start_local(loaded, "staging") is None  # only local environments get one
    assert gateway_module.start_local(load_workspace(EXAMPLES / "workspace.yaml"), "local") is None


@pytest.mark.slow
def test_ws_up_starts_the_local_pushgateway_and_ws_down_stops_it(make_example: Callable[[float], ExampleEnv]) -> None:
    example: ExampleEnv = make_example(10.0)  # a start period long enough on a busy machine
    port = free_port()
    text = example.workspace.read_text()
    example.workspace.write_text(
        text.replace("cache: {}", f"cache: {{}}\nmonitoring:\n  pushgateway: {{port: {port}}}")
    )
    up = example.ws("up", "--env", "local")
    assert up.returncode == 0, up.stderr
    assert f"Pushgateway started on http://127.0.0.1:{port}" in up.stderr
    assert "ok" in http_get(f"http://127.0.0.1:{port}/-/healthy").lower()
    state_file = example.root / ".ws" / "local" / "state" / "pushgateway.json"
    state = json.loads(state_file.read_text())
    # its state, data and log are private like every file under .ws/ (0600 files in 0700 folders)
    for path in (state_file, example.root / ".ws" / "local" / "logs" / "pushgateway.log"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in ("state", "logs", "pushgateway"):
        assert stat.S_IMODE((example.root / ".ws" / "local" / folder).stat().st_mode) == 0o700, folder
    again = example.ws("up", "--env", "local")
    assert again.returncode == 0, again.stderr
    assert f"Pushgateway: http://127.0.0.1:{port} answers already" in again.stderr
    down = example.ws("down", "--env", "local")
    assert down.returncode == 0, down.stderr
    assert f"stopped Pushgateway (pid {state['pid']})" in down.stdout
    wait_for("the Pushgateway to stop", lambda: not pid_alive(int(state["pid"])) or None, timeout=15)
    assert not answers("127.0.0.1", port)
