"""Kubernetes environments (issue 15): the same workspace.yaml on a cluster, built with the real pulumi-kubernetes
SDK under pulumi.runtime.set_mocks, every object checked offline (kubernetes-validate in strict mode for a named
Kubernetes version, checkov on the rendered manifests) and the links between objects asserted."""

from __future__ import annotations

import json
import secrets as token
from pathlib import Path
from typing import Any

import pulumi
import pytest
from ruamel.yaml import YAML

from infra.stack import budget, cluster
from infra.stack.roles import JOB_SCRIPT_PATH, admin_environment
from infra.stack.stackfiles import SERVICES_KEY, read_stack_config, stack_file, stack_file_name
from infra.workspace.loader import load_workspace
from infra.workspace.located import LoadedWorkspace
from infra.workspace.synthetic import fleet_repos
from tests.helpers import ROOT
from tests.test_stack_program import (
    PROJECT,
    Recorder,
    Registration,
    Secret,
    execute,
    external_secrets,
    plain_strings,
)
from tests.test_stack_program import Run as StackRun

FIXTURE = """\
version: 1
name: fleet
github: {owner: fleet-org, repo: workspace}
environments:
  local: {runtime: local}
  dev: {runtime: pulumi}
  cluster:
    runtime: pulumi
    target: kubernetes
    protected: true
    kubernetes:
      namespace: fleet-prod
      kubeconfig: KUBECONFIG_PROD
      ingress_class: nginx
      hosts: {admin: admin.fleet.example.com}
database:
  name: fleet
  max_connections: 200
  instances: 3
  storage: 20Gi
cache: {}
env:
  DATABASE_URL: ${database.url}
  REDIS_URL: ${cache.url}
  ADMIN_URL: ${services.admin.url}
repos:
  admin:
    github: fleet-org/admin
    role: primary
    schema: {prisma: prisma/schema.prisma, namespace: admin}
    service:
      port: 3000
      health: {path: /api/health, interval: 3, timeout: 2, retries: 4, start_period: 20}
      replicas: {min: 2, max: 6, cpu_percent: 60}
      resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {cpu: "2", memory: 1Gi}}
      pool_size: 5
    migrate: {command: npx prisma migrate deploy}
    env:
      NEXTAUTH_SECRET: {secret: NEXTAUTH_SECRET}
  agents:
    github: fleet-org/agents
    role: secondary
    depends_on: [admin]
    schema: {prisma: prisma/schema.prisma, namespace: agents, extends: admin}
    service:
      port: 3001
      replicas: {min: 3}
      pool_size: 8
    migrate: {command: npx prisma migrate deploy}
    env:
      OPENAI_API_KEY: {secret: OPENAI_API_KEY}
  specs:
    github: fleet-org/specs
    role: secondary
    depends_on: [admin]
    schema: {prisma: prisma/schema.prisma, namespace: specs, extends: admin}
    service: {port: 3002}
    migrate: {command: npx prisma migrate deploy}
  reports:
    github: fleet-org/reports
    role: secondary
    depends_on: [agents, specs]
    service: {port: 3003, run: {container: node server.js}}
"""


def write_fixture(folder: Path, text: str = FIXTURE) -> LoadedWorkspace:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "workspace.yaml").write_text(text, encoding="utf-8")
    return load_workspace(folder / "workspace.yaml")


class Run(StackRun):
    def of_kind(self, kind: str) -> list[Registration]:
        return [r for r in self.resources if r.inputs.get("kind") == kind]


class Mocks(pulumi.runtime.Mocks):
    def __init__(self, run: Run):
        self.run = run

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            value = "Pw" + token.token_hex(12)
            self.run.passwords[args.name] = value
            state["result"] = value
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def stack_config(loaded: LoadedWorkspace, environment: str, tag: str = "v1.0.0") -> dict[str, Any]:
    text = stack_file(loaded.model, environment, None)
    config = read_stack_config(text, stack_file_name(loaded.model, environment))
    for settings in config[SERVICES_KEY].values():
        settings["image_tag"] = tag
    return config


def run_program(loaded: LoadedWorkspace, environment: str, config: dict[str, Any] | None = None) -> Run:
    run = Run(environment=environment)
    mocks = Mocks(run)
    stack = loaded.model.stack_of(environment)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=Recorder(mocks, run))
    values = {
        key: json.dumps(value) if isinstance(value, dict) else str(value)
        for key, value in (config if config is not None else stack_config(loaded, environment)).items()
    }
    names = external_secrets(loaded, environment)
    settings = loaded.model.environments[environment].kubernetes
    if settings is not None and settings.kubeconfig:
        names.add(settings.kubeconfig)
    if loaded.model.database.admin_url:
        names.add(loaded.model.database.admin_url)
    if loaded.model.cache.provider == "external":
        names.add("WS_CACHE_PASSWORD")  # an external Redis's password is the stack's secret, not generated
    run.config_secrets = {name: "ext-" + token.token_hex(10) for name in names}
    if loaded.model.database.admin_url:  # a URL, as a real one: the program takes it apart for psql
        admin_password = "ext-" + token.token_hex(10)
        run.config_secrets[loaded.model.database.admin_url] = (
            f"postgresql://fleet_admin:{admin_password}@db.fleet.example.com:5432/fleet?sslmode=verify-full"
        )
        run.config_secrets["(the admin URL's password)"] = admin_password  # checked like every secret value
    values.update({f"{PROJECT}:{n}": v for n, v in run.config_secrets.items() if n in names})
    pulumi.runtime.set_all_config(values, [f"{PROJECT}:{n}" for n in names])
    execute(loaded, environment, run)
    return run


SECRET_PLACEHOLDER = "c2VjcmV0"  # what a secret input is rendered as in the manifests (never its value)


def plain(value: Any) -> Any:
    """Registered inputs as a manifest: secret-wrapped values replaced by a placeholder."""
    if isinstance(value, Secret):
        inner = plain(value.value)
        return {k: SECRET_PLACEHOLDER for k in inner} if isinstance(inner, dict) else SECRET_PLACEHOLDER
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the engine's protobuf Struct carries every number as a double
    return value


def manifests(run: Run) -> list[dict[str, Any]]:
    """Every Kubernetes object the program declared, as the manifest the provider would apply."""
    result = []
    for resource in run.resources:
        if not resource.type.startswith("kubernetes:") or resource.type.startswith("pulumi:providers"):
            continue
        manifest = plain(resource.inputs)
        metadata = manifest.setdefault("metadata", {})
        metadata.setdefault("name", f"{resource.name}-a1b2c3d4")  # Pulumi auto-names (Jobs) with a suffix
        result.append(manifest)
    return result


VARIANTS = {
    "cloudnative-pg": FIXTURE,
    "pooler-external-cache": FIXTURE.replace(
        "  storage: 20Gi\ncache: {}\n",
        "  storage: 20Gi\n  pooler: true\ncache: {provider: external, host: redis.fleet.example.com}\n",
    ),
    "external-database": FIXTURE.replace(
        "  max_connections: 200\n  instances: 3\n  storage: 20Gi\n",
        "  max_connections: 200\n  provider: external\n  host: db.fleet.example.com\n  admin_url: FLEET_ADMIN_URL\n",
    ),
}
CHECKOV = ROOT / ".ws" / "tools" / "checkov" / "bin" / "checkov"
EXAMPLE = ROOT / "examples" / "workspace.yaml"
BUILT = [*VARIANTS, "example"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[LoadedWorkspace, Run]]:
    result = {}
    for variant, text in VARIANTS.items():
        loaded = write_fixture(tmp_path_factory.mktemp(variant), text)
        result[variant] = (loaded, run_program(loaded, "cluster"))
    example = load_workspace(EXAMPLE)  # its `cluster` environment, with image tags as a deploy sets them
    result["example"] = (example, run_program(example, "cluster"))
    return result


def objects(run: Run, kind: str) -> dict[str, dict[str, Any]]:
    """The manifests of one kind by name (Jobs by their resource name: Pulumi auto-names them)."""
    found = {}
    for resource in run.resources:
        if resource.inputs.get("kind") == kind:
            manifest = plain(resource.inputs)
            found[manifest.get("metadata", {}).get("name") or resource.name] = manifest
    return found


def pod_spec(manifest: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = manifest["spec"]["template"]["spec"]
    return spec


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a Kubernetes label selector (matchLabels / matchExpressions In) selects ``labels``."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def test_the_fixture_covers_stages_autoscaling_a_pdb_an_ingress_and_a_repo_without_job() -> None:
    loaded = load_workspace_text(FIXTURE)
    ws = loaded.model
    assert cluster.stage_of(ws) == {"admin": 0, "agents": 1, "specs": 1, "reports": 2}
    assert ws.repos["reports"].migrate is None and ws.repos["admin"].service is not None


def load_workspace_text(text: str) -> LoadedWorkspace:
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="ws-k8s-", dir=ROOT / ".ws" if (ROOT / ".ws").is_dir() else None))
    return write_fixture(folder, text)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("  local: {runtime: local}\n", "  local: {runtime: local, target: kubernetes}\n"),
            r"workspace.yaml:5:\d+: environments.local: .*`target: kubernetes` needs `runtime: pulumi`",
        ),
        (
            ("  dev: {runtime: pulumi}\n", "  dev: {runtime: pulumi, kubernetes: {namespace: x}}\n"),
            r"workspace.yaml:6:\d+: environments.dev: .*a `kubernetes:` block needs `target: kubernetes`",
        ),
        (
            ("      ingress_class: nginx\n", "      ingress_klass: nginx\n"),
            r"workspace.yaml:14:7: environments.cluster.kubernetes.ingress_klass",
        ),
        (
            ("      replicas: {min: 2, max: 6, cpu_percent: 60}\n", "      replicas: {min: 7, max: 6}\n"),
            r"workspace.yaml:\d+:\d+: repos.admin.service.replicas: .*max \(6\) is below min \(7\)",
        ),
        (
            ('{cpu: "2", memory: 1Gi}', '{cpu: "2", memory: 1GB}'),
            r"repos.admin.service.resources.limits.memory: String should match pattern",
        ),
        (
            ("  instances: 3\n", "  instances: 3\n  provider: external\n"),
            r"workspace.yaml:\d+:\d+: database: .*`provider: external` needs `host` and `admin_url`",
        ),
        (
            ("cache: {}\n", "cache: {provider: elsewhere}\n"),
            r"cache.provider: Input should be 'in-cluster' or 'external'",
        ),
    ],
)
def test_a_bad_kubernetes_declaration_is_one_located_message(edit: tuple[str, str], message: str) -> None:
    from infra.errors import WorkspaceError

    old, new = edit
    assert FIXTURE.count(old) == 1
    with pytest.raises(WorkspaceError, match=message):
        load_workspace_text(FIXTURE.replace(old, new))


def test_an_ingress_host_for_an_unknown_repo_is_refused_at_its_line() -> None:
    from infra.errors import WorkspaceError

    with pytest.raises(
        WorkspaceError,
        match=r"workspace.yaml:15:\d+: environments.cluster.kubernetes.hosts.admni: "
        r"an ingress host names unknown repo 'admni'. Fix: did you mean 'admin'",
    ):
        load_workspace_text(FIXTURE.replace("hosts: {admin: ", "hosts: {admni: "))


@pytest.mark.parametrize("variant", BUILT)
def test_every_object_is_valid_for_the_named_kubernetes_version_in_strict_mode(runs: Any, variant: str) -> None:
    import kubernetes_validate  # type: ignore[import-untyped]

    _, run = runs[variant]
    checked = 0
    for manifest in manifests(run):
        if manifest["apiVersion"].startswith("postgresql.cnpg.io/"):
            continue  # a CloudNativePG custom resource: its schema is the operator's (asserted below)
        try:
            kubernetes_validate.validate(manifest, cluster.KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {exc.message}")
        checked += 1
    assert checked >= 25


def test_checkov_finds_nothing_outside_the_reasoned_skip_list(runs: Any, tmp_path: Path) -> None:
    import subprocess

    if not CHECKOV.is_file():
        pytest.skip(f"checkov is not installed at {CHECKOV} (run scripts/install-checkov.sh)")
    kinds: set[str] = set()
    for variant, (_, run) in runs.items():
        folder = tmp_path / variant
        folder.mkdir()
        for index, manifest in enumerate(manifests(run)):
            kinds.add(manifest["kind"])
            name = f"{index:03d}-{manifest['kind']}-{manifest['metadata']['name']}.yaml"
            (folder / name).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    done = subprocess.run(
        [
            str(CHECKOV),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--config-file",
            str(ROOT / "infra" / "stack" / "checkov.yaml"),
            "--output",
            "json",
            "--quiet",
            "--compact",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(done.stdout)
    reports = report if isinstance(report, list) else [report]
    failed = [
        f"{check['check_id']} {check['check_name']} ({check['resource']})"
        for item in reports
        for check in item["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    summary = reports[0]["summary"]
    assert summary["passed"] > 500 and summary["parsing_errors"] == 0
    assert {"Deployment", "StatefulSet", "Job", "NetworkPolicy", "Service", "Secret"} <= kinds
    skips = YAML(typ="safe").load((ROOT / "infra" / "stack" / "checkov.yaml").read_text())["skip-check"]
    assert len(skips) <= 3  # short, and each one reasoned in the file


def test_each_repo_gets_its_deployment_service_and_env_objects_linked_by_labels(runs: Any) -> None:
    loaded, run = runs["cloudnative-pg"]
    ws = loaded.model
    deployments = objects(run, "Deployment")
    services = objects(run, "Service")
    assert set(deployments) == {"admin", "agents", "specs", "reports"}
    for repo, manifest in deployments.items():
        declared = ws.repos[repo].service
        assert declared is not None
        spec = manifest["spec"]
        assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
        pod_labels = spec["template"]["metadata"]["labels"]
        assert matches(spec["selector"], pod_labels)
        pod = pod_spec(manifest)
        (container,) = pod["containers"]
        assert container["image"] == f"ghcr.io/fleet-org/{repo}:v1.0.0"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"http": declared.port}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            http = container[kind]["httpGet"]
            assert http == {"path": declared.health.path, "port": declared.port}
        assert container["resources"] == {
            "requests": {"cpu": declared.resources.requests.cpu, "memory": declared.resources.requests.memory},
            "limits": {"cpu": declared.resources.limits.cpu, "memory": declared.resources.limits.memory},
        }
        security = container["securityContext"]
        assert security["runAsNonRoot"] and security["readOnlyRootFilesystem"]
        assert security["capabilities"] == {"drop": ["ALL"]} and not security["allowPrivilegeEscalation"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
            "topology.kubernetes.io/zone",
            "kubernetes.io/hostname",
        }
        assert all(matches(c["labelSelector"], pod_labels) for c in pod["topologySpreadConstraints"])
        service = services[repo]  # the name every repo's env uses: http://<repo>:<port>
        assert matches({"matchLabels": service["spec"]["selector"]}, pod_labels)
        assert service["spec"]["ports"] == [{"name": "http", "port": declared.port, "targetPort": "http"}]
        refs = [next(iter(source.values()))["name"] for source in container["envFrom"]]
        assert refs == [f"{repo}-env", f"{repo}-secret-env"]
    assert deployments["reports"]["spec"]["template"]["spec"]["containers"][0]["command"] == [
        "sh",
        "-c",
        "node server.js",
    ]
    # the admin app autoscales (2..6): the autoscaler owns its replica count; agents keeps 3, specs 1
    assert "replicas" not in deployments["admin"]["spec"]
    assert deployments["agents"]["spec"]["replicas"] == 3 and deployments["specs"]["spec"]["replicas"] == 1
    assert deployments["admin"]["spec"]["template"]["spec"]["containers"][0]["startupProbe"]["failureThreshold"] == 11


def test_disruption_budgets_autoscalers_and_ingresses_only_where_declared(runs: Any) -> None:
    _, run = runs["cloudnative-pg"]
    pdbs = objects(run, "PodDisruptionBudget")
    assert set(pdbs) == {"admin", "agents"}  # more than one replica; specs and reports run one
    assert pdbs["agents"]["spec"]["maxUnavailable"] == 1
    (hpa,) = objects(run, "HorizontalPodAutoscaler").values()
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "admin"}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    (ingress,) = objects(run, "Ingress").values()
    assert ingress["spec"]["ingressClassName"] == "nginx"
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "admin.fleet.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"] == {"name": "admin", "port": {"number": 3000}}
    assert run.outputs["service_urls"]["admin"] == "https://admin.fleet.example.com"
    assert run.outputs["service_urls"]["agents"] == "http://agents:3001"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_env_is_exactly_what_ws_env_resolves_with_secret_parts_only_in_secrets(runs: Any, variant: str) -> None:
    from infra.workspace.env import is_secret, resolve

    loaded, run = runs[variant]
    config_maps, secrets = (
        objects(run, "ConfigMap"),
        {r.name: r for r in run.resources if r.inputs.get("kind") == "Secret"},
    )
    for repo in loaded.model.repos:
        resolved = resolve(loaded.model, "cluster", repo)
        data = config_maps[f"{repo}-env"]["data"]
        assert set(data) == {k for k, v in resolved.items() if not is_secret(v)}
        for key, value in data.items():
            assert value == "".join(str(p) for p in resolved[key])
        string_data = secrets[f"{repo}-secret-env"].inputs["stringData"]
        assert isinstance(string_data, Secret) or all(isinstance(v, Secret) for v in string_data.values())
        keys = set(string_data.value if isinstance(string_data, Secret) else string_data)
        assert keys == {k for k, v in resolved.items() if is_secret(v)}
    assert "DATABASE_URL" in keys and "REDIS_URL" in keys
    values = [*run.passwords.values(), *run.config_secrets.values()]
    assert len(values) >= 6
    for resource in run.resources:
        for text in plain_strings(resource.inputs):
            assert not [v for v in values if v in text], f"{resource.name} has a secret value in a plain input"
    assert run.outputs["database_urls"]["agents"].startswith(
        f"postgresql://agents:{run.passwords['postgres-agents-password']}@postgres:5432/fleet?schema=agents"
    )


def _peers(policy: dict[str, Any], direction: str) -> list[dict[str, Any]]:
    key = "from" if direction == "ingress" else "to"
    return [peer for rule in policy["spec"].get(direction, []) for peer in rule.get(key, [])]


def _reaches(policy: dict[str, Any], direction: str, labels: dict[str, str]) -> bool:
    return any(
        "podSelector" in p and "namespaceSelector" not in p and matches(p["podSelector"], labels)
        for p in _peers(policy, direction)
    )


def test_network_policies_deny_by_default_and_follow_the_dependency_graph(runs: Any) -> None:
    loaded, run = runs["cloudnative-pg"]
    ws = loaded.model
    policies = objects(run, "NetworkPolicy")
    deny = policies["network-default-deny"]["spec"]
    assert not any(deny["podSelector"].values())  # selects every pod of the namespace
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert "ingress" not in deny and "egress" not in deny or (deny.get("ingress") == [] and deny.get("egress") == [])
    pods = {name: m["spec"]["template"]["metadata"]["labels"] for name, m in objects(run, "Deployment").items()}
    pods.update(
        {
            f"{r}-migrate": objects(run, "Job")[f"{r}-migrate"]["spec"]["template"]["metadata"]["labels"]
            for r in ("admin", "agents", "specs")
        }
    )
    for repo in ws.repos:
        policy = policies[f"{repo}-network"]
        assert matches(policy["spec"]["podSelector"], pods[repo])
        allowed = {other for other, labels in pods.items() if _reaches(policy, "ingress", labels)}
        assert allowed == set(cluster.dependents_of(ws, repo)), repo  # only the repos that depend on it
        controller = [p for p in _peers(policy, "ingress") if "namespaceSelector" in p]
        assert bool(controller) == (repo == "admin")  # the ingress controller only where there is a host
        reached = {other for other, labels in pods.items() if _reaches(policy, "egress", labels)}
        assert reached == set(ws.repos[repo].depends_on)
        (public,) = [p["ipBlock"] for p in _peers(policy, "egress") if "ipBlock" in p]  # external APIs on 443 only
        assert public["cidr"] == "0.0.0.0/0" and {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"} <= set(
            public["except"]
        )
    assert cluster.dependents_of(ws, "admin") == ["agents", "specs"] and cluster.dependents_of(ws, "reports") == []
    clients = set(pods)
    redis_policy = policies["redis-network"]
    assert {name for name, labels in pods.items() if _reaches(redis_policy, "ingress", labels)} == clients
    postgres_policy = policies["postgres-network"]
    assert postgres_policy["spec"]["podSelector"] == {"matchLabels": {"cnpg.io/cluster": "postgres-db"}}
    assert {name for name, labels in pods.items() if _reaches(postgres_policy, "ingress", labels)} == clients
    roles = objects(run, "Job")["postgres-roles"]["spec"]["template"]["metadata"]["labels"]
    assert _reaches(postgres_policy, "ingress", roles)
    unrelated = {**pods["admin"], "app.kubernetes.io/name": "intruder"}
    assert not _reaches(postgres_policy, "ingress", unrelated) and not _reaches(redis_policy, "ingress", unrelated)
    # default deny covers the database pods too: their own policy lets them out (Kubernetes API, replication)
    assert postgres_policy["spec"]["policyTypes"] == ["Ingress", "Egress"] and postgres_policy["spec"]["egress"] == [{}]

    _, pooled = runs["pooler-external-cache"]
    policies = objects(pooled, "NetworkPolicy")
    pooler_pod = {"cnpg.io/poolerName": "postgres", "cnpg.io/cluster": "postgres-db"}
    for repo in ws.repos:  # the repos reach PostgreSQL through the pooler's pods; the pooler reaches the cluster
        assert _reaches(policies[f"{repo}-network"], "egress", pooler_pod)
    assert _reaches(policies["postgres-network"], "ingress", pooler_pod)
    assert _reaches(policies["postgres-pooler-network"], "egress", {"cnpg.io/cluster": "postgres-db"})
    assert matches(policies["postgres-pooler-network"]["spec"]["podSelector"], pooler_pod)


def test_migration_jobs_run_in_stage_order_before_their_deployment(runs: Any) -> None:
    loaded, run = runs["cloudnative-pg"]
    ws = loaded.model
    jobs = {r.name: r for r in run.resources if r.inputs.get("kind") == "Job"}
    deployments = {r.name: r for r in run.resources if r.inputs.get("kind") == "Deployment"}
    assert set(jobs) == {"postgres-roles", "admin-migrate", "agents-migrate", "specs-migrate"}  # reports: none

    def upstream(resource: Registration) -> set[str]:
        return {run.by_urn(u).name for u in resource.dependencies}

    for repo in ("admin", "agents", "specs"):
        job = jobs[f"{repo}-migrate"]
        (container,) = pod_spec(plain(job.inputs))["containers"]
        assert container["image"] == f"ghcr.io/fleet-org/{repo}:v1.0.0"
        assert container["command"] == ["sh", "-c", "npx prisma migrate deploy"]
        assert plain(job.inputs)["spec"]["backoffLimit"] == 0
        assert {"postgres-roles", "postgres-cluster"} <= upstream(job)
        assert f"{repo}-migrate" in upstream(deployments[repo])  # the Job precedes its Deployment
    assert not {"agents", "specs", "reports"} & upstream(jobs["admin-migrate"])
    # stage 2's Jobs wait for stage 1's Job (ws's migrate step runs them all, in stage order, before any
    # Deployment changes), and the stage-3 Deployment for stage 2's Deployments
    assert "admin-migrate" in upstream(jobs["agents-migrate"]) and "admin-migrate" in upstream(jobs["specs-migrate"])
    assert not {"admin", "agents", "specs"} & upstream(jobs["agents-migrate"])
    assert {"agents", "specs"} <= upstream(deployments["reports"])
    assert "postgres-cluster" in upstream(jobs["postgres-roles"])
    assert stages_of(ws) == run.outputs["stages"]


def test_a_migration_job_runs_the_release_of_its_migration_tag(runs: Any) -> None:
    """`ws deploy`'s migrate step sets ws:services.<repo>.migration_tag and runs the Job at that release; the
    Deployment keeps its image_tag until the repo's deploy update (which finds the Job unchanged)."""
    loaded, _ = runs["cloudnative-pg"]
    config = stack_config(loaded, "cluster")
    config[SERVICES_KEY]["agents"]["migration_tag"] = "v2.0.0"
    run = run_program(loaded, "cluster", config)
    images = {
        name: pod_spec(manifest)["containers"][0]["image"]
        for name, manifest in {**objects(run, "Job"), **objects(run, "Deployment")}.items()
        if name.startswith(("admin", "agents"))
    }
    assert images == {
        "admin-migrate": "ghcr.io/fleet-org/admin:v1.0.0",
        "admin": "ghcr.io/fleet-org/admin:v1.0.0",
        "agents-migrate": "ghcr.io/fleet-org/agents:v2.0.0",
        "agents": "ghcr.io/fleet-org/agents:v1.0.0",
    }


def stages_of(ws: Any) -> list[list[str]]:
    from infra.workspace.graph import edges_of, stages

    return stages(edges_of(ws))


def test_data_services_follow_the_declared_providers(runs: Any) -> None:
    loaded, run = runs["cloudnative-pg"]
    (db,) = objects(run, "Cluster").values()
    assert db["apiVersion"] == "postgresql.cnpg.io/v1"
    assert db["spec"]["instances"] == 3 and db["spec"]["storage"] == {"size": "20Gi"}
    assert db["spec"]["postgresql"]["parameters"]["max_connections"] == "200"
    assert db["spec"]["imageName"].startswith("ghcr.io/cloudnative-pg/postgresql:")
    assert db["spec"]["superuserSecret"] == {"name": "postgres-superuser"}
    assert objects(run, "Service")["postgres"]["spec"] == {
        "type": "ExternalName",
        "externalName": "postgres-db-rw.fleet-prod.svc.cluster.local",
    }
    assert not objects(run, "Pooler")
    (redis,) = objects(run, "StatefulSet").values()
    assert redis["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {"storage": "1Gi"}
    (container,) = pod_spec(redis)["containers"]
    assert "-a " not in " ".join(container["readinessProbe"]["exec"]["command"])
    redis_starts_with_its_password_off_the_command_line(container["command"])
    assert {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]} == {
        "REDIS_PASSWORD": "redis-auth",
        "REDISCLI_AUTH": "redis-auth",
    }
    assert matches(
        {"matchLabels": objects(run, "Service")["redis"]["spec"]["selector"]},
        redis["spec"]["template"]["metadata"]["labels"],
    )

    _, pooled = runs["pooler-external-cache"]
    (pooler,) = objects(pooled, "Pooler").values()
    assert pooler["metadata"]["name"] == "postgres"  # its Service is the host in every DATABASE_URL
    assert pooler["spec"]["cluster"] == {"name": "postgres-db"}
    assert pooler["spec"]["pgbouncer"]["parameters"]["default_pool_size"] == str(budget.pooler_pool_size(loaded.model))
    assert (
        "postgres" not in objects(pooled, "Service")
        or objects(pooled, "Service")["postgres"]["spec"]["type"] != "ExternalName"
    )
    assert objects(pooled, "Service")["redis"]["spec"] == {
        "type": "ExternalName",
        "externalName": "redis.fleet.example.com",
    }
    assert not objects(pooled, "StatefulSet")
    assert "WS_CACHE_PASSWORD" in pooled.config_secrets  # an external Redis's password is the stack's secret

    _, external = runs["external-database"]
    assert not objects(external, "Cluster")
    assert objects(external, "Service")["postgres"]["spec"] == {
        "type": "ExternalName",
        "externalName": "db.fleet.example.com",
    }
    # Found by review: the admin URL reached psql whole, as --dbname, with its password in the process list.
    # It now reaches the roles Job taken apart into libpq's variables, from a Secret of its own.
    admin_url = external.config_secrets["FLEET_ADMIN_URL"]
    secrets = {r.name: r for r in external.resources if r.inputs.get("kind") == "Secret"}
    admin = secrets["postgres-admin"].inputs["stringData"]
    assert isinstance(admin, Secret)
    assert admin.value == admin_environment(admin_url)
    assert admin.value["PGPASSWORD"] == external.config_secrets["(the admin URL's password)"]
    assert admin.value["PGSSLMODE"] == "verify-full" and admin.value["POSTGRES_USER"] == "fleet_admin"
    assert admin_url not in json.dumps(secrets["postgres-roles"].inputs["stringData"].value)
    (roles_job,) = [job for name, job in objects(external, "Job").items() if name.startswith("postgres-roles")]
    (container,) = pod_spec(roles_job)["containers"]
    assert {"secretRef": {"name": "postgres-admin"}} in container["envFrom"]
    assert not {"POSTGRES_DB", "PGPASSWORD"} & {variable["name"] for variable in container["env"]}
    assert container["command"] == ["sh", JOB_SCRIPT_PATH]  # psql's arguments come from the script alone
    assert external.outputs["database_superuser_url"] == external.config_secrets["FLEET_ADMIN_URL"]


def test_a_stopped_service_declares_no_deployment_and_its_dependents_run_without_it(tmp_path: Path) -> None:
    loaded = write_fixture(tmp_path)
    config = stack_config(loaded, "cluster")
    config[SERVICES_KEY]["specs"]["enabled"] = "false"
    run = run_program(loaded, "cluster", config)
    assert set(objects(run, "Deployment")) == {"admin", "agents", "reports"}
    # its migration Job stays declared, with the env it reads and its network policy (as the Docker stack keeps
    # its migration container): the next deploy's migrate step runs it before enabling the service again
    assert {r.name for r in run.resources if r.name.startswith("specs")} == {
        "specs-migrate",
        "specs-migrate-network",
        "specs-env",
        "specs-secret-env",
    }
    assert "specs" not in run.outputs["service_urls"]


def test_the_stack_file_of_a_kubernetes_environment_publishes_no_host_port(tmp_path: Path) -> None:
    loaded = write_fixture(tmp_path)
    config = read_stack_config(stack_file(loaded.model, "cluster", None), "Pulumi.cluster.yaml")
    assert config["ws:postgres"]["host_port"] is None and config["ws:redis"]["host_port"] is None
    assert {s["host_port"] for s in config[SERVICES_KEY].values()} == {None}
    dev = read_stack_config(stack_file(loaded.model, "dev", None), "Pulumi.dev.yaml")
    assert dev["ws:postgres"]["host_port"] == 15432  # a Docker environment still publishes


# --- the connection budget ----------------------------------------------------------------------------------


def test_the_connection_budget_fits_and_shows_its_sum(tmp_path: Path) -> None:
    loaded = write_fixture(tmp_path)
    results = {r.name: r for r in budget.check_connection_budget(loaded)}
    assert set(results) == {"connection budget dev", "connection budget cluster"}
    cluster_result = results["connection budget cluster"]
    assert cluster_result.status == "ok", cluster_result.detail
    # admin 5 x (6 + 1 surge), agents 8 x (3 + 1), specs 10 x 2, reports 10 x 2; two Jobs in stage 2; reserve 5
    assert "admin 5 x 7 + agents 8 x 4 + specs 10 x 2 + reports 10 x 2 = 107" in cluster_result.detail
    assert "migration Jobs 4 + reserve 5 = 116 of max_connections (200)" in cluster_result.detail
    assert results["connection budget dev"].detail.endswith("= 38 of max_connections (200)")


def test_an_over_committed_environment_fails_naming_the_repos_and_numbers(tmp_path: Path) -> None:
    over = FIXTURE.replace(
        "replicas: {min: 3}\n      pool_size: 8\n", "replicas: {min: 3, max: 20}\n      pool_size: 8\n"
    )
    loaded = write_fixture(tmp_path / "over", over)
    (result,) = [r for r in budget.check_connection_budget(loaded) if r.name == "connection budget cluster"]
    assert result.status == "fail"
    assert "agents 8 x 21" in result.detail and "over by " in result.detail
    assert "the most go to agents (168), admin (35)" in result.detail
    assert "database.pooler: true" in result.detail

    pooled = write_fixture(tmp_path / "pooled", over.replace("  storage: 20Gi\n", "  storage: 20Gi\n  pooler: true\n"))
    (result,) = [r for r in budget.check_connection_budget(pooled) if r.name == "connection budget cluster"]
    assert result.status == "ok" and "pooler default_pool_size 24" in result.detail  # (200 - 5) // (2 x 4)

    tiny = over.replace("  max_connections: 200\n", "  max_connections: 10\n").replace(
        "  storage: 20Gi\n", "  storage: 20Gi\n  pooler: true\n"
    )
    (result,) = [
        r
        for r in budget.check_connection_budget(write_fixture(tmp_path / "tiny", tiny))
        if r.name == "connection budget cluster"
    ]
    assert result.status == "fail" and "leaves no server connection" in result.detail


def test_ws_check_reports_the_over_committed_environment_and_exits_1(tmp_path: Path) -> None:
    import subprocess
    import sys

    over = FIXTURE.replace("pool_size: 8\n", "pool_size: 80\n")
    write_fixture(tmp_path, over)
    done = subprocess.run(
        [sys.executable, "-m", "infra.cli", "-w", str(tmp_path / "workspace.yaml"), "check", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "connection budget cluster" in done.stdout and "agents 80 x 4" in done.stdout


# --- scale ----------------------------------------------------------------------------------------------------


def synthetic(repos: int) -> str:
    """A workspace of ``repos`` repos in chains of five (each depends on the one before), on a cluster."""
    head = FIXTURE.split("repos:\n")[0].replace("  max_connections: 200\n", "  max_connections: 5000\n")
    head = head.replace(
        "      hosts: {admin: admin.fleet.example.com}\n", "      hosts: {r000: r0.fleet.example.com}\n"
    )
    return head.replace("  ADMIN_URL: ${services.admin.url}\n", "") + fleet_repos(repos)


def test_a_50_repo_workspace_builds_under_mocks(tmp_path: Path) -> None:
    loaded = write_fixture(tmp_path, synthetic(50))
    run = run_program(loaded, "cluster")
    assert (
        len(objects(run, "Deployment")) == 50 and len([r for r in run.resources if r.name.endswith("-migrate")]) == 50
    )
    assert len(objects(run, "HorizontalPodAutoscaler")) == 50
    assert len(run.outputs["stages"]) == 5


def test_the_example_workspace_has_a_kubernetes_environment_that_builds(runs: Any) -> None:
    loaded, run = runs["example"]
    assert loaded.model.environments["cluster"].target == "kubernetes"
    assert set(objects(run, "Deployment")) == set(loaded.model.repos)
    assert set(objects(run, "HorizontalPodAutoscaler")) == {"saas-ecosystem-architecture"}
    assert not [r for r in run.resources if r.name.endswith("-migrate")]  # built-in migrations: ws deploy applies them
    assert run.outputs["namespace"] == "example-ecosystem-cluster"
    committed = read_stack_config((EXAMPLE.parent / "Pulumi.cluster.yaml").read_text(), "Pulumi.cluster.yaml")
    assert committed == stack_config(loaded, "cluster", tag="latest")  # the generated stack file is committed


def test_the_budget_counts_the_pool_the_services_size_with_db_max_connections(tmp_path: Path) -> None:
    """The services size their pools with DB_MAX_CONNECTIONS: the budget counts that, not a default it assumes."""
    loaded = write_fixture(tmp_path, FIXTURE.replace("\nenv:\n", "\nenv:\n  DB_MAX_CONNECTIONS: '60'\n", 1))
    (result,) = [r for r in budget.check_connection_budget(loaded) if r.name == "connection budget dev"]
    assert result.status == "fail", result.detail
    assert "admin 60 x 1" in result.detail and "(DB_MAX_CONNECTIONS)" in result.detail


def test_the_real_and_example_workspaces_fit_their_connection_budget() -> None:
    for path in (ROOT / "workspace.yaml", ROOT / "examples" / "workspace.yaml"):
        loaded = load_workspace(path)
        failing = [r.detail for r in budget.check_connection_budget(loaded) if r.status != "ok"]
        assert failing == [], path


def redis_starts_with_its_password_off_the_command_line(command: list[str]) -> None:
    """Run the container's own command with a real redis-server (its folder and port moved for this machine): the
    password works and appears in no process's arguments (found by review: `--requirepass "$REDIS_PASSWORD"`)."""
    import shutil
    import subprocess
    import tempfile
    import time

    import redis as redis_client

    from infra.deploy.servers import free_port

    server = shutil.which("redis-server")
    assert server is not None, "redis-server is not installed (scripts/start-services.sh expects it on this machine)"
    password = token.token_urlsafe(24)
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        script = command[2].replace("dir /data", f"dir {folder}\nport {port}\nbind 127.0.0.1\nsave ''")
        process = subprocess.Popen(
            [command[0], command[1], script.replace("redis-server", server, 1)],
            env={"PATH": "/usr/bin:/bin", "REDIS_PASSWORD": password},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis_client.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2)
            for _ in range(100):
                try:
                    assert client.ping() is True
                    break
                except redis_client.ConnectionError:
                    time.sleep(0.05)
            else:
                raise AssertionError("redis did not start from the container's command")
            assert password.encode() not in Path(f"/proc/{process.pid}/cmdline").read_bytes()
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=10)
