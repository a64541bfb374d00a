"""The Pulumi program of a `target: kubernetes` environment (pulumi-kubernetes): the same workspace.yaml on a cluster.

Per repo with a service: a ConfigMap (plain env) and a Secret (``{secret:}`` values, as Pulumi secrets), a
Deployment (rolling update with ``maxUnavailable: 0``, startup/readiness/liveness probes on the health path,
requests and limits, a locked-down security context, spread across nodes and zones), a Service named after the
repo, a PodDisruptionBudget when it keeps more than one replica, a HorizontalPodAutoscaler when ``replicas.min <
replicas.max``, an Ingress when the environment gives it a host, and NetworkPolicies. Per repo with a
``migrate.command``: a migration Job from the repo's image at the release being migrated to
(``ws:services.<repo>.migration_tag``, else the deployed tag), after the database roles and the migration Jobs of
the repos it depends on (transitively), before the repo's own Deployment (Pulumi waits for a Job to complete and fails the
update when it fails). ``ws deploy``'s migrate step runs it, as an update targeted at it, before the validation;
the repo's deploy update then finds it unchanged and does not run it again. The database is a CloudNativePG ``Cluster`` (with a PgBouncer ``Pooler`` when asked) or an
external server; Redis a StatefulSet with a password Secret and a volume claim, or external.

Resource names follow the Docker stack's, which the pulumi runtime of ``ws deploy`` targets by name: the
infrastructure's start with ``network``, ``postgres`` or ``redis``; a repo's with the repo's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra.errors import UsageError
from infra.stack import cluster, naming
from infra.stack.budget import pooler_pool_size
from infra.stack.roles import JOB_SCRIPT_PATH, admin_environment, namespace_of, roles_script
from infra.stack.stackfiles import DEFAULT_IMAGE_TAG, StackSettings
from infra.workspace import images
from infra.workspace.env import (
    CACHE_HOST,
    CACHE_PASSWORD_SECRET,
    DATABASE_HOST,
    Value,
    database_password_secret,
    resolve,
    role_name,
)
from infra.workspace.graph import closure, edges_of, stages
from infra.workspace.located import LoadedWorkspace
from infra.workspace.model import SecretRef, Workspace

core = k8s.core.v1
meta = k8s.meta.v1
POSTGRES_PORT = 5432
REDIS_PORT = 6379
CLUSTER_NAME = "postgres-db"  # the CloudNativePG Cluster; its primary is reached through the Service `postgres`
ADMIN_SECRET = "postgres-admin"  # an external database's admin connection, as libpq's environment variables
# the database owner CloudNativePG creates at bootstrap (its password in its own Secret); the repos get their own
# roles from the roles Job, as on Docker
CNPG_OWNER = "app"
DNS_PORT = 53
SecretLookup = Callable[[str], pulumi.Output[str]]  # a secret's name -> its value, as a secret Output


@dataclass
class KubernetesStack:
    """What :func:`build_kubernetes` declared, for the program and the tests."""

    namespace: str
    deployments: dict[str, k8s.apps.v1.Deployment] = field(default_factory=dict)
    jobs: dict[str, k8s.batch.v1.Job] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)


class Objects:
    """Declares objects in the environment's namespace through one provider, with the common labels."""

    def __init__(self, workspace: Workspace, environment: str, provider: k8s.Provider, namespace: core.Namespace):
        self.ws = workspace
        self.environment = environment
        self.namespace = cluster.namespace(workspace, environment)
        self.provider = provider
        self.namespace_object = namespace

    def opts(self, depends_on: Sequence[pulumi.Resource] = (), **extra: Any) -> pulumi.ResourceOptions:
        """Every object: through the environment's provider, after its namespace (and ``depends_on``)."""
        return pulumi.ResourceOptions(provider=self.provider, depends_on=[self.namespace_object, *depends_on], **extra)

    def metadata(self, name: str | None, component: str, role: str) -> meta.ObjectMetaArgs:
        return meta.ObjectMetaArgs(
            name=name,
            namespace=self.namespace,
            labels=cluster.labels(self.ws, self.environment, component, role),
        )

    def selector(self, component: str) -> dict[str, str]:
        return cluster.selector(self.ws, self.environment, component)


def _password(name: str) -> pulumi.Output[str]:
    return pulumi.Output.secret(random.RandomPassword(name, length=32, special=False).result)


def container_security() -> core.SecurityContextArgs:
    return core.SecurityContextArgs(
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=True,
        run_as_non_root=True,
        run_as_user=cluster.POD_USER,
        run_as_group=cluster.POD_USER,
        capabilities=core.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


def pod_security() -> core.PodSecurityContextArgs:
    return core.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=cluster.POD_USER,
        run_as_group=cluster.POD_USER,
        fs_group=cluster.POD_USER,
        seccomp_profile=core.SeccompProfileArgs(type="RuntimeDefault"),
    )


TMP_VOLUME = core.VolumeArgs(name="tmp", empty_dir=core.EmptyDirVolumeSourceArgs(size_limit="64Mi"))
TMP_MOUNT = core.VolumeMountArgs(name="tmp", mount_path="/tmp")


def job_resources() -> core.ResourceRequirementsArgs:
    return core.ResourceRequirementsArgs(
        requests={"cpu": "100m", "memory": "128Mi"}, limits={"cpu": "1", "memory": "512Mi"}
    )


def env_objects(
    objects: Objects, repo: str, env: Mapping[str, Value], secrets: SecretLookup
) -> tuple[core.ConfigMap, core.Secret]:
    """The repo's resolved env: plain values in a ConfigMap, values with a secret part in a Secret."""
    plain: dict[str, str] = {}
    secret: dict[str, pulumi.Input[str]] = {}
    for key, value in env.items():
        if any(isinstance(part, SecretRef) for part in value):
            pieces = [secrets(part.secret) if isinstance(part, SecretRef) else part for part in value]
            secret[key] = pulumi.Output.secret(pulumi.Output.concat(*pieces))
        else:
            plain[key] = "".join(str(part) for part in value)
    config_map = core.ConfigMap(
        f"{repo}-env",
        metadata=objects.metadata(f"{repo}-env", repo, "config"),
        data=plain,
        opts=objects.opts(),
    )
    secret_object = core.Secret(
        f"{repo}-secret-env",
        metadata=objects.metadata(f"{repo}-secret-env", repo, "config"),
        type="Opaque",
        string_data=secret,
        opts=objects.opts(additional_secret_outputs=["stringData"]),
    )
    return config_map, secret_object


def env_from(repo: str) -> list[core.EnvFromSourceArgs]:
    return [
        core.EnvFromSourceArgs(config_map_ref=core.ConfigMapEnvSourceArgs(name=f"{repo}-env")),
        core.EnvFromSourceArgs(secret_ref=core.SecretEnvSourceArgs(name=f"{repo}-secret-env")),
    ]


def image_of(ws: Workspace, repo: str, tag: str) -> str:
    return images.service_image_reference(ws, repo, tag)


def migration_job(
    objects: Objects, repo: str, tag: str, depends_on: Sequence[pulumi.Resource]
) -> k8s.batch.v1.Job | None:
    """The repo's `migrate.command` as a Job from its image at ``tag`` (auto-named: a new tag is a new Job)."""
    migrate = objects.ws.repos[repo].migrate
    if migrate is None or not migrate.command:
        return None  # builtin migrations are applied by `ws deploy`'s migrate step
    pod_labels = cluster.migration_labels(objects.ws, objects.environment, repo)
    return k8s.batch.v1.Job(
        f"{repo}-migrate",
        metadata=meta.ObjectMetaArgs(namespace=objects.namespace, labels=pod_labels),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=0,  # a failed migration fails the update at once, for a person to read its log
            active_deadline_seconds=cluster.MIGRATION_DEADLINE,
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=pod_labels),
                spec=core.PodSpecArgs(
                    restart_policy="Never",
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    volumes=[TMP_VOLUME],
                    containers=[
                        core.ContainerArgs(
                            name="migrate",
                            image=image_of(objects.ws, repo, tag),
                            image_pull_policy="Always",
                            command=["sh", "-c", migrate.command],
                            env_from=env_from(repo),
                            env=[core.EnvVarArgs(name="HOME", value="/tmp")],
                            resources=job_resources(),
                            security_context=container_security(),
                            volume_mounts=[TMP_MOUNT],
                        )
                    ],
                ),
            ),
        ),
        opts=objects.opts(depends_on),
    )


def probe(port: int, path: str, period: int, timeout: int, failures: int) -> core.ProbeArgs:
    return core.ProbeArgs(
        http_get=core.HTTPGetActionArgs(path=path, port=port),
        period_seconds=period,
        timeout_seconds=timeout,
        failure_threshold=failures,
    )


def deployment(objects: Objects, repo: str, tag: str, depends_on: Sequence[pulumi.Resource]) -> k8s.apps.v1.Deployment:
    ws = objects.ws
    service = ws.repos[repo].service
    assert service is not None
    health, replicas, resources = service.health, service.replicas, service.resources
    selector = objects.selector(repo)
    period, timeout = cluster.seconds(health.interval), cluster.seconds(health.timeout)
    spread = [
        core.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=meta.LabelSelectorArgs(match_labels=selector),
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]
    command = service.run.container
    return k8s.apps.v1.Deployment(
        repo,
        metadata=objects.metadata(repo, repo, "service"),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            # with an autoscaler the replica count is the autoscaler's: the Deployment leaves it alone
            replicas=None if replicas.most > replicas.min else replicas.min,
            selector=meta.LabelSelectorArgs(match_labels=selector),
            strategy=k8s.apps.v1.DeploymentStrategyArgs(
                type="RollingUpdate",
                rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=cluster.MAX_SURGE),
            ),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=cluster.labels(ws, objects.environment, repo, "service")),
                spec=core.PodSpecArgs(
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    topology_spread_constraints=spread,
                    volumes=[TMP_VOLUME],
                    containers=[
                        core.ContainerArgs(
                            name=repo,
                            image=image_of(ws, repo, tag),
                            image_pull_policy="Always",
                            command=["sh", "-c", command] if command else None,
                            ports=[core.ContainerPortArgs(name="http", container_port=service.port)],
                            env_from=env_from(repo),
                            startup_probe=probe(
                                service.port, health.path, period, timeout, cluster.startup_failures(health)
                            ),
                            readiness_probe=probe(service.port, health.path, period, timeout, max(1, health.retries)),
                            liveness_probe=probe(
                                service.port, health.path, period, timeout, max(1, health.retries) + 2
                            ),
                            resources=core.ResourceRequirementsArgs(
                                requests={"cpu": resources.requests.cpu, "memory": resources.requests.memory},
                                limits={"cpu": resources.limits.cpu, "memory": resources.limits.memory},
                            ),
                            security_context=container_security(),
                            volume_mounts=[TMP_MOUNT],
                        )
                    ],
                ),
            ),
        ),
        opts=objects.opts(depends_on),
    )


def service_objects(objects: Objects, repo: str, deployment: k8s.apps.v1.Deployment) -> None:
    """The Service named after the repo, and its PodDisruptionBudget, autoscaler and Ingress when declared."""
    ws = objects.ws
    service = ws.repos[repo].service
    assert service is not None
    selector = objects.selector(repo)
    core.Service(
        f"{repo}-service",
        metadata=objects.metadata(repo, repo, "service"),
        spec=core.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[core.ServicePortArgs(name="http", port=service.port, target_port="http")],
        ),
        opts=objects.opts(),
    )
    replicas = service.replicas
    if replicas.min > 1:
        k8s.policy.v1.PodDisruptionBudget(
            f"{repo}-pdb",
            metadata=objects.metadata(repo, repo, "service"),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1, selector=meta.LabelSelectorArgs(match_labels=selector)
            ),
            opts=objects.opts(),
        )
    if replicas.most > replicas.min:
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{repo}-autoscaler",
            metadata=objects.metadata(repo, repo, "service"),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=repo
                ),
                min_replicas=replicas.min,
                max_replicas=replicas.most,
                metrics=[
                    k8s.autoscaling.v2.MetricSpecArgs(
                        type="Resource",
                        resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                            name="cpu",
                            target=k8s.autoscaling.v2.MetricTargetArgs(
                                type="Utilization", average_utilization=replicas.cpu_percent
                            ),
                        ),
                    )
                ],
            ),
            opts=objects.opts([deployment]),
        )
    settings = ws.environments[objects.environment].kubernetes
    host = settings.hosts.get(repo) if settings is not None else None
    if settings is not None and host:
        net = k8s.networking.v1
        net.Ingress(
            f"{repo}-ingress",
            metadata=objects.metadata(repo, repo, "service"),
            spec=net.IngressSpecArgs(
                ingress_class_name=settings.ingress_class,
                tls=[net.IngressTLSArgs(hosts=[host], secret_name=f"{repo}-tls")],
                rules=[
                    net.IngressRuleArgs(
                        host=host,
                        http=net.HTTPIngressRuleValueArgs(
                            paths=[
                                net.HTTPIngressPathArgs(
                                    path="/",
                                    path_type="Prefix",
                                    backend=net.IngressBackendArgs(
                                        service=net.IngressServiceBackendArgs(
                                            name=repo, port=net.ServiceBackendPortArgs(number=service.port)
                                        )
                                    ),
                                )
                            ]
                        ),
                    )
                ],
            ),
            opts=objects.opts(),
        )


# --- network policies -------------------------------------------------------------------------------------


def _pods(objects: Objects, *components: str) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=meta.LabelSelectorArgs(
            match_labels={"app.kubernetes.io/instance": f"{objects.ws.name}-{objects.environment}"},
            match_expressions=[
                meta.LabelSelectorRequirementArgs(
                    key="app.kubernetes.io/name", operator="In", values=sorted(components)
                )
            ],
        )
    )


def _tcp(port: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=port)]


def _policy(
    objects: Objects,
    name: str,
    component: str,
    ingress: list[k8s.networking.v1.NetworkPolicyIngressRuleArgs] | None,
    egress: list[k8s.networking.v1.NetworkPolicyEgressRuleArgs] | None,
    selector: Mapping[str, str] | None = None,
) -> k8s.networking.v1.NetworkPolicy:
    types = [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules is not None]
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=objects.metadata(name, component, "network-policy"),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=meta.LabelSelectorArgs(
                match_labels=dict(selector if selector is not None else objects.selector(component))
            ),
            policy_types=types,
            ingress=ingress,
            egress=egress,
        ),
        opts=objects.opts(),
    )


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                namespace_selector=meta.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": "kube-system"}),
                pod_selector=meta.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
            )
        ],
        ports=[
            k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=DNS_PORT),
            k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=DNS_PORT),
        ],
    )


def _anywhere(port: int) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0"))],
        ports=_tcp(port),
    )


PRIVATE_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]


def public_https() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """HTTPS to public addresses (a service's external APIs), never to the cluster's or the cloud's private ones."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(cidr="0.0.0.0/0", except_=PRIVATE_RANGES)
            )
        ],
        ports=_tcp(443),
    )


def data_egress(objects: Objects) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """Where a repo's pods (service and migration Job) may connect: DNS, PostgreSQL and Redis."""
    ws = objects.ws
    rules = [dns_egress()]
    if ws.database.provider == "external":
        rules.append(_anywhere(POSTGRES_PORT))
    elif ws.database.pooler:
        rules.append(k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[_pooler_pods()], ports=_tcp(POSTGRES_PORT)))
    else:
        rules.append(k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[_cnpg_pods(objects)], ports=_tcp(POSTGRES_PORT)))
    if ws.cache.provider == "external":
        rules.append(_anywhere(REDIS_PORT))
    else:
        rules.append(
            k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=[_pods(objects, "redis")], ports=_tcp(REDIS_PORT))
        )
    return rules


def _cnpg_pods(objects: Objects) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """The CloudNativePG instances (the operator labels their pods with the cluster's name)."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels={"cnpg.io/cluster": CLUSTER_NAME})
    )


def _pooler_pods() -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """The PgBouncer pods of the Pooler `postgres` (labelled by the operator, not by ws)."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=meta.LabelSelectorArgs(match_labels={"cnpg.io/poolerName": DATABASE_HOST})
    )


def network_policies(objects: Objects, with_service: Sequence[str], with_job: Sequence[str]) -> None:
    """Default deny, then: a service only from the repos that depend on it (and the ingress controller when it
    has a host); PostgreSQL and Redis only from the repos' pods and Jobs; each repo's pods only to DNS, the
    data services and the services it depends on."""
    ws, environment = objects.ws, objects.environment
    net = k8s.networking.v1
    _policy(objects, "network-default-deny", "default-deny", [], [], selector={})
    settings = ws.environments[environment].kubernetes
    edges = edges_of(ws)
    for repo in with_service:
        service = ws.repos[repo].service
        assert service is not None
        peers = [_pods(objects, *cluster.dependents_of(ws, repo))] if cluster.dependents_of(ws, repo) else []
        if settings is not None and settings.hosts.get(repo):
            peers.append(
                net.NetworkPolicyPeerArgs(
                    namespace_selector=meta.LabelSelectorArgs(
                        match_labels={"kubernetes.io/metadata.name": settings.ingress_namespace}
                    )
                )
            )
        ingress = [net.NetworkPolicyIngressRuleArgs(from_=peers, ports=_tcp(service.port))] if peers else []
        egress = [*data_egress(objects), public_https()]
        for dep in edges[repo]:
            dep_service = ws.repos[dep].service
            if dep_service is not None and dep in with_service:
                egress.append(net.NetworkPolicyEgressRuleArgs(to=[_pods(objects, dep)], ports=_tcp(dep_service.port)))
        _policy(objects, f"{repo}-network", repo, ingress, egress)
    for repo in with_job:
        _policy(objects, f"{repo}-migrate-network", f"{repo}-migrate", None, data_egress(objects))
    clients = sorted({*with_service, *(f"{repo}-migrate" for repo in with_job)})
    if ws.cache.provider == "in-cluster":
        _policy(
            objects,
            "redis-network",
            "redis",
            [net.NetworkPolicyIngressRuleArgs(from_=[_pods(objects, *clients)], ports=_tcp(REDIS_PORT))]
            if clients
            else [],
            [],
        )


# --- data services ----------------------------------------------------------------------------------------


@dataclass
class DataServices:
    superuser_password: pulumi.Output[str]
    cache_password: pulumi.Output[str]
    role_passwords: dict[str, pulumi.Output[str]]
    roles_job: k8s.batch.v1.Job
    ready: list[pulumi.Resource]  # what every migration Job and Deployment waits for


def database(objects: Objects, settings: StackSettings, secrets: SecretLookup, clients: Sequence[str]) -> DataServices:
    """PostgreSQL (CloudNativePG Cluster, optional Pooler; or external) reached as `postgres`, plus the roles Job."""
    ws = objects.ws
    db = ws.database
    net = k8s.networking.v1
    role_passwords = {repo: _password(f"postgres-{repo}-password") for repo in ws.repos}
    ready: list[pulumi.Resource] = []
    admin_env: list[core.EnvVarArgs]
    admin_from: list[core.EnvFromSourceArgs] = []  # an external database's admin connection, from its Secret
    if db.provider == "cloudnative-pg":
        superuser = _password("postgres-superuser-password")
        core.Secret(
            "postgres-superuser",
            metadata=objects.metadata("postgres-superuser", "postgres", "database"),
            type="kubernetes.io/basic-auth",
            string_data={"username": naming.POSTGRES_SUPERUSER, "password": superuser},
            opts=objects.opts(),
        )
        database_cluster = k8s.apiextensions.CustomResource(
            "postgres-cluster",
            api_version=cluster.CNPG_API_VERSION,
            kind="Cluster",
            metadata=objects.metadata(CLUSTER_NAME, "postgres", "database"),
            spec={
                "instances": db.instances,
                "imageName": cluster.cnpg_image(settings.postgres.version),
                "enableSuperuserAccess": True,
                "superuserSecret": {"name": "postgres-superuser"},
                "bootstrap": {"initdb": {"database": db.name, "owner": CNPG_OWNER}},
                "postgresql": {"parameters": {"max_connections": str(db.max_connections)}},
                "storage": {"size": db.storage},
                "affinity": {"enablePodAntiAffinity": True, "topologyKey": "kubernetes.io/hostname"},
            },
            opts=objects.opts(protect=ws.environments[objects.environment].protected),
        )
        ready.append(database_cluster)
        if db.pooler:
            pool = pooler_pool_size(ws)
            if pool < 1:
                raise UsageError(
                    f"database.max_connections {db.max_connections} leaves no server connection for the pooler; "
                    "raise it (`ws check` shows the connection budget)"
                )
            # the Pooler's own Service is named after it: `postgres`, the host in every repo's DATABASE_URL
            ready.append(
                k8s.apiextensions.CustomResource(
                    "postgres-pooler",
                    api_version=cluster.CNPG_API_VERSION,
                    kind="Pooler",
                    metadata=objects.metadata(DATABASE_HOST, "postgres-pooler", "database"),
                    spec={
                        "cluster": {"name": CLUSTER_NAME},
                        "instances": cluster.POOLER_INSTANCES,
                        "type": "rw",
                        "pgbouncer": {
                            "poolMode": "session",  # Prisma's migrate engine holds an advisory lock per session
                            "parameters": {
                                "max_client_conn": str(cluster.POOLER_MAX_CLIENT_CONN),
                                "default_pool_size": str(pool),
                            },
                        },
                    },
                    opts=objects.opts([database_cluster]),
                )
            )
        else:
            core.Service(
                "postgres-service",
                metadata=objects.metadata(DATABASE_HOST, "postgres", "database"),
                spec=core.ServiceSpecArgs(
                    type="ExternalName",
                    external_name=f"{CLUSTER_NAME}-rw.{objects.namespace}.svc.cluster.local",
                ),
                opts=objects.opts(),
            )
        admin_env = [
            core.EnvVarArgs(name="PGHOST", value=DATABASE_HOST),
            core.EnvVarArgs(name="PGPORT", value=str(POSTGRES_PORT)),
            core.EnvVarArgs(name="POSTGRES_USER", value=naming.POSTGRES_SUPERUSER),
            core.EnvVarArgs(name="POSTGRES_DB", value=db.name),
            core.EnvVarArgs(
                name="PGPASSWORD",
                value_from=core.EnvVarSourceArgs(
                    secret_key_ref=core.SecretKeySelectorArgs(name="postgres-superuser", key="password")
                ),
            ),
        ]
        # the cluster's pods: from the repos, their Jobs, the roles Job, the pooler and each other
        peers = [*clients, "postgres-roles"]
        _policy(
            objects,
            "postgres-network",
            "postgres",
            [
                net.NetworkPolicyIngressRuleArgs(
                    from_=[_pods(objects, *peers), _cnpg_pods(objects), _pooler_pods()], ports=_tcp(POSTGRES_PORT)
                ),
                net.NetworkPolicyIngressRuleArgs(  # the CloudNativePG operator's status probes
                    from_=[
                        net.NetworkPolicyPeerArgs(
                            namespace_selector=meta.LabelSelectorArgs(
                                match_labels={"kubernetes.io/metadata.name": "cnpg-system"}
                            )
                        )
                    ],
                    ports=_tcp(8000),
                ),
            ],
            # any destination: the instance manager talks to the Kubernetes API (whose address is the cluster's),
            # replicas stream from the primary, and backups go wherever the cluster sends them
            [net.NetworkPolicyEgressRuleArgs()],
            selector={"cnpg.io/cluster": CLUSTER_NAME},
        )
        if db.pooler:
            _policy(
                objects,
                "postgres-pooler-network",
                "postgres-pooler",
                [net.NetworkPolicyIngressRuleArgs(from_=[_pods(objects, *peers)], ports=_tcp(POSTGRES_PORT))],
                [dns_egress(), net.NetworkPolicyEgressRuleArgs(to=[_cnpg_pods(objects)], ports=_tcp(POSTGRES_PORT))],
                selector={"cnpg.io/poolerName": DATABASE_HOST},
            )
    else:
        assert db.host is not None and db.admin_url is not None  # the model requires both for `external`
        superuser = secrets(db.admin_url)
        core.Service(
            "postgres-service",
            metadata=objects.metadata(DATABASE_HOST, "postgres", "database"),
            spec=core.ServiceSpecArgs(type="ExternalName", external_name=db.host),
            opts=objects.opts(),
        )
        # The admin URL taken apart into libpq's variables (PGHOST, PGPASSWORD, ...) in a Secret of its own:
        # given whole as psql's --dbname, it would show its password in the Job's process list.
        core.Secret(
            ADMIN_SECRET,
            metadata=objects.metadata(ADMIN_SECRET, "postgres-roles", "database"),
            type="Opaque",
            string_data=superuser.apply(admin_environment),
            opts=objects.opts(additional_secret_outputs=["stringData"]),
        )
        admin_env = []
        admin_from.append(core.EnvFromSourceArgs(secret_ref=core.SecretEnvSourceArgs(name=ADMIN_SECRET)))
    roles_secret_data: dict[str, pulumi.Input[str]] = {
        database_password_secret(repo): password for repo, password in role_passwords.items()
    }
    roles_secret = core.Secret(
        "postgres-roles",
        metadata=objects.metadata("postgres-roles", "postgres-roles", "database"),
        type="Opaque",
        string_data=roles_secret_data,
        opts=objects.opts(additional_secret_outputs=["stringData"]),
    )
    script = core.ConfigMap(
        "postgres-roles-script",
        metadata=objects.metadata("postgres-roles-script", "postgres-roles", "database"),
        data={"roles.sh": roles_script(ws)},
        opts=objects.opts(),
    )
    role_labels = cluster.labels(ws, objects.environment, "postgres-roles", "database-roles")
    roles_job = k8s.batch.v1.Job(
        "postgres-roles",
        metadata=meta.ObjectMetaArgs(namespace=objects.namespace, labels=role_labels),
        spec=k8s.batch.v1.JobSpecArgs(
            backoff_limit=3,  # the database may still be starting
            active_deadline_seconds=cluster.MIGRATION_DEADLINE,
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=role_labels),
                spec=core.PodSpecArgs(
                    restart_policy="Never",
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    volumes=[
                        TMP_VOLUME,
                        core.VolumeArgs(
                            name="script",
                            config_map=core.ConfigMapVolumeSourceArgs(name="postgres-roles-script", default_mode=0o555),
                        ),
                    ],
                    containers=[
                        core.ContainerArgs(
                            name="roles",
                            image=naming.server_image(naming.POSTGRES_IMAGE, settings.postgres.version),
                            image_pull_policy="Always",
                            command=["sh", JOB_SCRIPT_PATH],
                            env=[core.EnvVarArgs(name="HOME", value="/tmp"), *admin_env],
                            env_from=[
                                core.EnvFromSourceArgs(secret_ref=core.SecretEnvSourceArgs(name="postgres-roles")),
                                *admin_from,
                            ],
                            resources=job_resources(),
                            security_context=container_security(),
                            volume_mounts=[
                                TMP_MOUNT,
                                core.VolumeMountArgs(
                                    name="script", mount_path=JOB_SCRIPT_PATH.rsplit("/", 1)[0], read_only=True
                                ),
                            ],
                        )
                    ],
                ),
            ),
        ),
        opts=objects.opts([*ready, roles_secret, script]),
    )
    _policy(objects, "postgres-roles-network", "postgres-roles", None, data_egress(objects))
    cache_password = redis(objects, settings, secrets)
    return DataServices(superuser, cache_password, role_passwords, roles_job, [*ready, roles_job])


def redis(objects: Objects, settings: StackSettings, secrets: SecretLookup) -> pulumi.Output[str]:
    """Redis reached as `redis`: a StatefulSet with a password Secret and a volume claim, or external."""
    ws = objects.ws
    if ws.cache.provider == "external":
        assert ws.cache.host is not None
        core.Service(
            "redis-service",
            metadata=objects.metadata(CACHE_HOST, "redis", "cache"),
            spec=core.ServiceSpecArgs(type="ExternalName", external_name=ws.cache.host),
            opts=objects.opts(),
        )
        password: pulumi.Output[str] = secrets(CACHE_PASSWORD_SECRET)
        return password
    password = _password("redis-password")
    core.Secret(
        "redis-auth",
        metadata=objects.metadata("redis-auth", "redis", "cache"),
        type="Opaque",
        string_data={"password": password},
        opts=objects.opts(additional_secret_outputs=["stringData"]),
    )
    selector = objects.selector("redis")
    core.Service(
        "redis-service",
        metadata=objects.metadata(CACHE_HOST, "redis", "cache"),
        spec=core.ServiceSpecArgs(
            type="ClusterIP",
            selector=selector,
            ports=[core.ServicePortArgs(name="redis", port=REDIS_PORT, target_port="redis")],
        ),
        opts=objects.opts(),
    )
    from_secret = core.EnvVarSourceArgs(secret_key_ref=core.SecretKeySelectorArgs(name="redis-auth", key="password"))
    ping = core.ExecActionArgs(command=["sh", "-c", "redis-cli ping | grep -q PONG"])  # REDISCLI_AUTH: no -a
    k8s.apps.v1.StatefulSet(
        "redis",
        metadata=objects.metadata(CACHE_HOST, "redis", "cache"),
        spec=k8s.apps.v1.StatefulSetSpecArgs(
            service_name=CACHE_HOST,
            replicas=1,
            selector=meta.LabelSelectorArgs(match_labels=selector),
            template=core.PodTemplateSpecArgs(
                metadata=meta.ObjectMetaArgs(labels=cluster.labels(ws, objects.environment, "redis", "cache")),
                spec=core.PodSpecArgs(
                    automount_service_account_token=False,
                    security_context=pod_security(),
                    volumes=[TMP_VOLUME],
                    containers=[
                        core.ContainerArgs(
                            name="redis",
                            image=naming.server_image(naming.REDIS_IMAGE, settings.redis.version),
                            image_pull_policy="Always",
                            # the password reaches redis through the environment and its configuration on standard
                            # input (a here-document the shell fills in itself), never through an argument
                            command=[
                                "sh",
                                "-c",
                                'exec redis-server - <<EOF\nrequirepass "$REDIS_PASSWORD"\nappendonly yes\ndir /data\nEOF',
                            ],
                            env=[
                                core.EnvVarArgs(name="REDIS_PASSWORD", value_from=from_secret),
                                core.EnvVarArgs(name="REDISCLI_AUTH", value_from=from_secret),
                            ],
                            ports=[core.ContainerPortArgs(name="redis", container_port=REDIS_PORT)],
                            readiness_probe=core.ProbeArgs(exec_=ping, period_seconds=5, timeout_seconds=3),
                            liveness_probe=core.ProbeArgs(
                                exec_=ping, period_seconds=10, timeout_seconds=5, failure_threshold=5
                            ),
                            resources=core.ResourceRequirementsArgs(
                                requests={"cpu": "100m", "memory": "128Mi"},
                                limits={"cpu": "1", "memory": f"{settings.redis.memory_mb or 256}Mi"},
                            ),
                            security_context=container_security(),
                            volume_mounts=[TMP_MOUNT, core.VolumeMountArgs(name="data", mount_path="/data")],
                        )
                    ],
                ),
            ),
            volume_claim_templates=[
                core.PersistentVolumeClaimArgs(
                    metadata=meta.ObjectMetaArgs(name="data"),
                    spec=core.PersistentVolumeClaimSpecArgs(
                        access_modes=["ReadWriteOnce"],
                        resources=core.VolumeResourceRequirementsArgs(requests={"storage": ws.cache.storage}),
                    ),
                )
            ],
        ),
        opts=objects.opts(protect=ws.environments[objects.environment].protected),
    )
    return password


# --- the program ------------------------------------------------------------------------------------------


def build_kubernetes(
    loaded: LoadedWorkspace, environment: str, settings: StackSettings, secret_lookup: SecretLookup
) -> KubernetesStack:
    """Declare every object of a `target: kubernetes` environment and export the stack outputs.

    ``secret_lookup`` turns the name of a secret held outside workspace.yaml into a secret Output (the stack's
    secret config, :class:`infra.stack.program.Secrets`); the passwords this program generates (the repos' roles,
    Redis) are looked up first.
    """
    ws = loaded.model
    settings_k8s = ws.environments[environment].kubernetes
    name = cluster.namespace(ws, environment)
    kubeconfig = settings_k8s.kubeconfig if settings_k8s is not None else None
    provider = k8s.Provider(
        "network-cluster", kubeconfig=secret_lookup(kubeconfig) if kubeconfig else None, namespace=name
    )
    namespace_object = k8s.core.v1.Namespace(
        "network-namespace",
        metadata=meta.ObjectMetaArgs(
            name=name,
            labels={
                **cluster.labels(ws, environment, "namespace", "namespace"),
                # the built-in admission controller enforces what every pod here already declares
                "pod-security.kubernetes.io/enforce": "restricted",
            },
        ),
        opts=pulumi.ResourceOptions(provider=provider, protect=ws.environments[environment].protected),
    )
    objects = Objects(ws, environment, provider, namespace_object)
    stack = KubernetesStack(name)
    enabled = [r for r, repo in ws.repos.items() if repo.service is not None and settings.services[r].enabled]
    # declared even for a stopped service, as on Docker: the schema stays, and the next deploy's migrate step runs
    # the Job before the deploy enables the service again
    with_job = [r for r, repo in ws.repos.items() if repo.migrate is not None and repo.migrate.command]
    data = database(objects, settings, secret_lookup, sorted({*enabled, *(f"{r}-migrate" for r in with_job)}))
    generated = {
        CACHE_PASSWORD_SECRET: data.cache_password,
        **{database_password_secret(repo): pw for repo, pw in data.role_passwords.items()},
    }

    def secrets(secret: str) -> pulumi.Output[str]:
        found = generated.get(secret)
        return found if found is not None else secret_lookup(secret)

    network_policies(objects, enabled, with_job)
    edges = edges_of(ws)
    for stage in stages(edges):  # stage order: a repo's Job waits for the Jobs of every repo it depends on
        for repo in stage:
            if repo not in enabled and repo not in with_job:
                continue
            env_objects(objects, repo, resolve(ws, environment, repo), secrets)
            own = settings.services.get(repo)
            tag = own.image_tag if own is not None else DEFAULT_IMAGE_TAG
            # the migrate step runs the Job at the release it migrates to (migration_tag), the deploy update finds
            # it unchanged; without a migration_tag (a stack made by `pulumi up` alone) the deployed tag
            migration_tag = own.migration_tag if own is not None and own.migration_tag else tag
            before = [stack.jobs[dep] for dep in sorted(closure(edges, edges[repo])) if dep in stack.jobs]
            job = migration_job(objects, repo, migration_tag, [*data.ready, *before])
            if job is not None:
                stack.jobs[repo] = job
            if repo not in enabled:
                continue
            upstream = [stack.deployments[dep] for dep in edges[repo] if dep in stack.deployments]
            waits = [*data.ready, *([job] if job is not None else []), *upstream]
            stack.deployments[repo] = deployment(objects, repo, tag, waits)
            service_objects(objects, repo, stack.deployments[repo])
    stack.outputs = outputs(ws, environment, stack, data)
    return stack


def outputs(ws: Workspace, environment: str, stack: KubernetesStack, data: DataServices) -> dict[str, Any]:
    """The same outputs as a Docker stack's; addresses are the cluster's (an Ingress host where one is given)."""
    settings = ws.environments[environment].kubernetes
    hosts = settings.hosts if settings is not None else {}
    internal: dict[str, str] = {}
    for repo in stack.deployments:
        service = ws.repos[repo].service
        assert service is not None
        internal[repo] = f"http://{repo}:{service.port}"
    service_urls = {repo: (f"https://{hosts[repo]}" if repo in hosts else url) for repo, url in internal.items()}
    database_urls: dict[str, pulumi.Output[str]] = {
        repo: pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{role_name(repo)}:",
                password,
                f"@{DATABASE_HOST}:{POSTGRES_PORT}/{ws.database.name}?schema={namespace_of(ws, repo) or 'public'}",
            )
        )
        for repo, password in data.role_passwords.items()
    }
    superuser_url: pulumi.Output[str] = (
        pulumi.Output.secret(
            pulumi.Output.concat(
                f"postgresql://{naming.POSTGRES_SUPERUSER}:",
                data.superuser_password,
                f"@{DATABASE_HOST}:{POSTGRES_PORT}/{ws.database.name}",
            )
        )
        if ws.database.provider == "cloudnative-pg"
        else data.superuser_password  # external: the admin URL itself
    )
    return {
        "workspace": ws.name,
        "environment": environment,
        "namespace": stack.namespace,
        "service_urls": service_urls,
        "internal_service_urls": internal,
        "database_host": DATABASE_HOST,
        "database_port": POSTGRES_PORT,
        "database_name": ws.database.name,
        "database_urls": database_urls,
        "database_superuser_url": superuser_url,
        "cache_url": pulumi.Output.secret(
            pulumi.Output.concat("redis://:", data.cache_password, f"@{CACHE_HOST}:{REDIS_PORT}/{ws.cache.db}")
        ),
        "stages": stages(edges_of(ws)),
    }
