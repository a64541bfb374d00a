"""How long the Pulumi program takes to build a large Kubernetes environment under mocks, side by side with the
Docker program on the same workspace.

    .venv/bin/python scripts/bench_kubernetes.py [--repos 50] [--runs 3]

Writes a synthetic workspace of ``--repos`` repos (chains of five: each depends on the one before; every repo a
service with 2..4 replicas and a migration command) with a Docker environment (`dev`) and a Kubernetes one
(`cluster`), runs the program for each under ``pulumi.runtime.set_mocks`` (no engine, cluster or Docker) and
prints the median wall time, the objects declared and the ratio Kubernetes / Docker, plus the connection budget
`ws check` reports for the cluster. Each run is a fresh process, so imports count the same for both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from infra.workspace.synthetic import fleet_repos

ROOT = Path(__file__).resolve().parent.parent

HEADER = """\
version: 1
name: fleet
github: {owner: fleet-org, repo: workspace}
environments:
  dev: {runtime: pulumi}
  cluster:
    runtime: pulumi
    target: kubernetes
    kubernetes: {ingress_class: nginx, hosts: {r000: r0.fleet.example.com}}
database: {name: fleet, max_connections: 5000, pooler: true}
env:
  DATABASE_URL: ${database.url}
  REDIS_URL: ${cache.url}
"""

CHILD = """\
import json, sys, time
start = time.perf_counter()
from pathlib import Path

from infra.workspace.synthetic import fleet_repos
import pulumi
from infra.stack.program import build, read_settings
from infra.stack.stackfiles import read_stack_config, stack_file, stack_file_name
from infra.workspace.loader import load_workspace

path, environment = Path(sys.argv[1]), sys.argv[2]
loaded = load_workspace(path)
count = 0


class Mocks(pulumi.runtime.Mocks):
    def new_resource(self, args):
        global count
        count += 1
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            state["result"] = "generated-password"
        if args.typ == "docker:index/remoteImage:RemoteImage":
            state["imageId"] = "sha256:" + args.name
        if args.typ == "docker:index/container:Container" and args.inputs.get("attach"):
            state["exitCode"] = 0
        return args.name + "-id", state

    def call(self, args):
        return {}, None


pulumi.runtime.set_mocks(Mocks(), project="bench", stack=loaded.model.stack_of(environment), preview=False)
config = read_stack_config(stack_file(loaded.model, environment, None), stack_file_name(loaded.model, environment))
for settings in config["ws:services"].values():
    settings["image_tag"] = "v1.0.0"
pulumi.runtime.set_all_config(
    {k: json.dumps(v) if isinstance(v, dict) else str(v) for k, v in config.items()}, []
)


@pulumi.runtime.test
def program():
    result = build(loaded, environment, read_settings(loaded, environment))
    return pulumi.Output.all(*[pulumi.Output.from_input(v) for v in result.outputs.values()])


program()
print(json.dumps({"seconds": time.perf_counter() - start, "resources": count}))
"""


def run_once(path: Path, environment: str) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), environment], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise SystemExit(f"the {environment} program failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "workspace.yaml"
        path.write_text(HEADER + fleet_repos(args.repos), encoding="utf-8")
        times: dict[str, list[float]] = {"dev": [], "cluster": []}
        counts: dict[str, float] = {}
        for _ in range(args.runs):  # interleaved, so machine load hits both alike
            for environment in times:
                result = run_once(path, environment)
                times[environment].append(result["seconds"])
                counts[environment] = result["resources"]
        from infra.stack.budget import budget, describe
        from infra.workspace.loader import load_workspace

        connection_budget = describe(budget(load_workspace(path).model, "cluster"))
    docker, kubernetes = statistics.median(times["dev"]), statistics.median(times["cluster"])
    print(f"{args.repos} repos, median of {args.runs} fresh processes (imports, load, build under mocks):")
    print(f"  docker (dev)         {docker:6.2f} s  {int(counts['dev']):5d} resources")
    print(f"  kubernetes (cluster) {kubernetes:6.2f} s  {int(counts['cluster']):5d} resources")
    print(f"  ratio kubernetes / docker: {kubernetes / docker:.2f}x")
    print(f"  connection budget (cluster): {connection_budget}")


if __name__ == "__main__":
    main()
