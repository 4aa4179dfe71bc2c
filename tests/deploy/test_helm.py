"""Helm values for GKE and EKS (deploy/helm/), checked offline: no cluster runs here.

- The run pods a launch creates are built with dagster-k8s's own job builder from what the values
  give the K8sRunLauncher (service account, the PostgreSQL secret, the GPU code location's container
  context) and validated with kubernetes-validate against the Kubernetes OpenAPI schema; the GPU
  location's runs ask for a GPU, select the GPU node pool and tolerate its taint.
- Each code location's Deployment, rendered minimally from the values as the chart lays it out,
  validates too; kubernetes-validate does reject a broken object.
- The instance settings agree with deploy/aws/dagster.yaml; no secret is written in any values file;
  the writable webserver is reachable only through oauth2-proxy, and a read-only one exists.

Not checked here: `helm template` with the chart itself (the chart is not a PyPI or npm package, so
neither it nor its values.schema.json is installable here), and anything a cluster would do.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
K8S = "1.33"
CLOUDS = {
    "gke": {
        "annotation": "iam.gke.io/gcp-service-account",
        "pool_label": "cloud.google.com/gke-nodepool",
        "profile": "gcp",
    },
    "eks": {"annotation": "eks.amazonaws.com/role-arn", "pool_label": "eks.amazonaws.com/nodegroup", "profile": "aws"},
}
# What .github/workflows/deploy.yml fills in with envsubst (test values here).
FILLED = {
    "PROJECT_ID": "my-project",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "IMAGE_REPOSITORY": "registry.invalid/geo-assets",
    "IMAGE_TAG": "0123abc",
    "CLOUD_SQL_PRIVATE_IP": "10.1.2.3",
    "RDS_ENDPOINT": "geo-assets.cluster.invalid",
    "BUCKET": "geo-assets-data",
    "MAP_HOST": "map.example.org",
}


def _render(text: str) -> str:
    return string.Template(text).substitute(FILLED)


def _values(cloud: str) -> dict:
    return yaml.safe_load(_render((ROOT / f"deploy/helm/values-{cloud}.yaml").read_text()))


def _deployment(values: dict, name: str) -> dict:
    return next(d for d in values["dagster-user-deployments"]["deployments"] if d["name"] == name)


def _container_context(deployment: dict) -> dict:
    args = deployment.get("codeServerArgs", [])
    return json.loads(args[args.index("--container-context") + 1]) if "--container-context" in args else {}


def _run_job(values: dict, deployment: dict) -> dict:
    """The Job the K8sRunLauncher creates for a run launched from `deployment` (dagster-k8s's builder)."""
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job

    launcher = K8sContainerContext(service_account_name=values["global"]["serviceAccountName"], namespace="geo-assets")
    context = launcher.merge(K8sContainerContext.create_from_config(_container_context(deployment)))
    image = f"{deployment['image']['repository']}:{deployment['image']['tag']}"
    job_config = DagsterK8sJobConfig(
        job_image=image,
        dagster_home="/opt/dagster/dagster_home",
        instance_config_map="dagster-instance",
        postgres_password_secret=values["global"]["postgresqlSecretName"],
    )
    job = construct_dagster_k8s_job(
        job_config,
        ["dagster", "api", "execute_run", "{}"],
        "dagster-run-0123abcd",
        user_defined_k8s_config=context.run_k8s_config,
        pod_name="dagster-run-0123abcd",
        component="run_worker",
    )
    return client.ApiClient().sanitize_for_serialization(job)


def _code_deployment(values: dict, deployment: dict) -> dict:
    """The code location's Deployment as the chart lays it out, from the values alone."""
    labels = {"app.kubernetes.io/name": "dagster-user-deployments", "deployment": deployment["name"]}
    container = {
        "name": deployment["name"],
        "image": f"{deployment['image']['repository']}:{deployment['image']['tag']}",
        "imagePullPolicy": deployment["image"]["pullPolicy"],
        "args": [
            "dagster",
            "code-server",
            "start",
            "-h",
            "0.0.0.0",
            "-p",
            str(deployment["port"]),
            *deployment["codeServerArgs"],
        ],
        "ports": [{"name": "grpc", "containerPort": deployment["port"]}],
        "env": deployment.get("env", []),
        "resources": deployment.get("resources", {}),
        "securityContext": deployment.get("securityContext", {}),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"dagster-{deployment['name']}", "namespace": "geo-assets", "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "serviceAccountName": values["dagster-user-deployments"]["serviceAccount"]["name"],
                    "nodeSelector": deployment.get("nodeSelector", {}),
                    "tolerations": deployment.get("tolerations", []),
                    "containers": [container],
                },
            },
        },
    }


@pytest.mark.parametrize("cloud", CLOUDS)
def test_gpu_runs_are_valid_jobs_on_the_gpu_pool(cloud):
    values = _values(cloud)
    job = _run_job(values, _deployment(values, "geo-assets-gpu"))
    kubernetes_validate.validate(job, K8S, strict=True)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["nodeSelector"][CLOUDS[cloud]["pool_label"]] == "gpu"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["serviceAccountName"] == "geo-assets"
    env = {e["name"]: e for e in container["env"]}
    assert env["GEO_ASSETS_PROFILE"]["value"] == CLOUDS[cloud]["profile"]
    # The database password comes from the Kubernetes secret, never as a literal.
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "geo-assets-postgresql"
    assert container["image"] == "registry.invalid/geo-assets:0123abc-gpu"
    # Filling in the placeholders left the variables' names alone.
    assert env["GEO_ASSETS_LOG_BUCKET"]["value"] == "geo-assets-data"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_cpu_runs_and_code_locations_are_valid(cloud):
    values = _values(cloud)
    cpu = _deployment(values, "geo-assets")
    job = _run_job(values, cpu)
    kubernetes_validate.validate(job, K8S, strict=True)
    assert "nvidia.com/gpu" not in json.dumps(job)
    for deployment in values["dagster-user-deployments"]["deployments"]:
        rendered = _code_deployment(values, deployment)
        kubernetes_validate.validate(rendered, K8S, strict=True)
        # Code servers never sit on (or hold) a GPU node.
        assert rendered["spec"]["template"]["spec"]["nodeSelector"][CLOUDS[cloud]["pool_label"]] == "cpu"
        assert deployment["port"] == 4000 and deployment["codeServerArgs"][:2] == ["-m", "geo_assets.definitions"]
        assert deployment["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_validate_rejects_a_broken_object(tmp_path):
    values = _values("gke")
    job = _run_job(values, _deployment(values, "geo-assets-gpu"))
    job["spec"]["template"]["spec"]["tolerations"] = {"key": "nvidia.com/gpu"}  # an object, not a list
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, K8S, strict=True)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_runs_link_to_the_deployed_map(cloud, monkeypatch):
    """Both code locations, and the GPU location's runs (the CPU one's inherit its env), write map links
    to the host oauth2-proxy-map serves, as a URL the code location accepts."""
    from geo_assets.map.links import MAP_URL_ENV, map_url

    values = _values(cloud)
    for name in ("geo-assets", "geo-assets-gpu"):
        env = {e["name"]: e.get("value") for e in _deployment(values, name)["env"]}
        assert env[MAP_URL_ENV] == "https://map.example.org", name
    assert _deployment(values, "geo-assets")["includeConfigInLaunchedRuns"]["enabled"] is True
    (container,) = _run_job(values, _deployment(values, "geo-assets-gpu"))["spec"]["template"]["spec"]["containers"]
    run_env = {e["name"]: e.get("value") for e in container["env"]}
    assert run_env[MAP_URL_ENV] == "https://map.example.org"
    proxy = yaml.safe_load((ROOT / "deploy/helm/oauth2-proxy-map.yaml").read_text())
    assert proxy["ingress"]["hosts"] == ["${MAP_HOST}"]  # the same placeholder, so the same host
    monkeypatch.setenv(MAP_URL_ENV, run_env[MAP_URL_ENV])
    assert map_url("synth-holdout", "2024-06-01") == "https://map.example.org/map?region=synth-holdout&date=2024-06-01"


@pytest.mark.parametrize("cloud", CLOUDS)
def test_instance_settings_match_the_instance_yamls(cloud):
    values = _values(cloud)
    instance = yaml.safe_load((ROOT / f"deploy/{CLOUDS[cloud]['profile']}/dagster.yaml").read_text())
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert concurrency["pools"]["defaultLimit"] == instance["concurrency"]["pools"]["default_limit"]
    # The chart refuses run limits in both places: the queue itself carries none.
    assert values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"] == {}
    retries = values["dagsterDaemon"]["runRetries"]
    assert retries == {
        "enabled": True,
        "maxRetries": instance["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": instance["run_retries"]["retry_on_asset_or_op_failure"],
    }
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] is True
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is False
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["postgresql"]["postgresqlParams"] == instance["storage"]["postgres"]["postgres_db"]["params"]


@pytest.mark.parametrize("cloud", CLOUDS)
def test_identities_not_keys_and_no_secrets_in_values(cloud):
    text = (ROOT / f"deploy/helm/values-{cloud}.yaml").read_text()
    values = yaml.safe_load(text)
    annotation = CLOUDS[cloud]["annotation"]
    assert annotation in values["serviceAccount"]["annotations"]
    assert annotation in values["dagster-user-deployments"]["serviceAccount"]["annotations"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    for key, value in _leaves(values):
        if re.search(r"password|secret|token|credential|private_?key|access_?key", key, re.I):
            # Only names of secrets, and booleans, may sit under such keys.
            assert key.endswith("SecretName") or isinstance(value, bool), f"{key} = {value!r} looks like a secret"
    assert not re.search(r"GOOGLE_APPLICATION_CREDENTIALS|AWS_SECRET_ACCESS_KEY|AWS_ACCESS_KEY_ID", text)
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(FILLED)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_writable_webserver_only_behind_oauth2_proxy_and_a_read_only_one(cloud):
    values = _values(cloud)
    web = values["dagsterWebserver"]
    assert web["enableReadOnly"] is True
    assert web["service"]["type"] == "ClusterIP"
    assert not values.get("ingress", {}).get("enabled", False)
    for who, service in (("editors", "dagster-dagster-webserver"), ("viewers", "dagster-dagster-webserver-read-only")):
        proxy = yaml.safe_load((ROOT / f"deploy/helm/oauth2-proxy-{who}.yaml").read_text())
        config = proxy["config"]["configFile"]
        assert f'upstreams = [ "http://{service}.geo-assets.svc.cluster.local:80/" ]' in config
        assert "allowed_groups" in config and "cookie_secure = true" in config
        assert proxy["config"]["existingSecret"] == f"oauth2-proxy-{who}"
        assert not {"clientSecret", "cookieSecret", "clientID"} & set(proxy["config"])
        assert proxy["ingress"]["enabled"] is True and proxy["ingress"]["tls"]


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, str(k))
    elif isinstance(node, list):
        for v in node:
            yield from _leaves(v, prefix)
    else:
        yield prefix, node


def _without_comments(text: str) -> str:
    return "\n".join(line.split(" #")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))


# --- Who may reach whom inside the cluster (deploy/helm/network-policies.yaml) ---------------------
NAMESPACE, AUTH = "geo-assets", "geo-assets-auth"
# Pod labels as the Dagster chart (release `dagster`) and the oauth2-proxy chart (releases
# oauth2-proxy-editors / -viewers) render them: selector labels plus `component`.
DAGSTER = {"app.kubernetes.io/name": "dagster", "app.kubernetes.io/instance": "dagster"}
WEBSERVER, READ_ONLY = (
    {**DAGSTER, "component": "dagster-webserver"},
    {**DAGSTER, "component": "dagster-webserver-read-only"},
)
DAEMON = {**DAGSTER, "component": "dagster-daemon", "deployment": "daemon"}
PROXY = {
    who: {"app.kubernetes.io/name": "oauth2-proxy", "app.kubernetes.io/instance": f"oauth2-proxy-{who}"}
    for who in ("editors", "viewers")
}


def _policies() -> list[dict]:
    return [p for p in yaml.safe_load_all((ROOT / "deploy/helm/network-policies.yaml").read_text()) if p]


def _matches(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels, matchExpressions with In / NotIn / Exists)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        ok = {
            "In": lambda e=e: labels.get(e["key"]) in e["values"],
            "NotIn": lambda e=e: labels.get(e["key"]) not in e["values"],
            "Exists": lambda e=e: e["key"] in labels,
            "DoesNotExist": lambda e=e: e["key"] not in labels,
        }[e["operator"]]()
        if not ok:
            return False
    return True


def _admits(policies: list[dict], to: tuple[str, dict, int], source: tuple[str, dict]) -> bool:
    """Whether a pod (namespace, labels) may open `to` = (namespace, labels, port) under NetworkPolicy rules:
    open unless a policy selects the target for ingress; then some rule of one of them must admit the source."""
    (to_ns, to_labels, port), (from_ns, from_labels) = to, source
    selecting = [
        p
        for p in policies
        if to_ns == NAMESPACE
        and "Ingress" in p["spec"]["policyTypes"]
        and _matches(p["spec"]["podSelector"], to_labels)
    ]
    if not selecting:
        return True
    namespace_labels = {"kubernetes.io/metadata.name": from_ns}
    for policy in selecting:
        for rule in policy["spec"].get("ingress", []):
            if rule.get("ports") and not any(p["port"] == port for p in rule["ports"]):
                continue
            for peer in rule.get("from", []):
                in_namespace = (
                    _matches(peer["namespaceSelector"], namespace_labels)
                    if "namespaceSelector" in peer
                    else from_ns == NAMESPACE
                )
                if in_namespace and ("podSelector" not in peer or _matches(peer["podSelector"], from_labels)):
                    return True
    return False


def test_network_policies_are_valid_objects():
    for policy in _policies():
        kubernetes_validate.validate(policy, K8S, strict=True)


@pytest.mark.parametrize("cloud", CLOUDS)
def test_only_the_sign_in_proxies_reach_the_webservers(cloud):
    values, policies = _values(cloud), _policies()
    port = values["dagsterWebserver"]["service"]["port"]
    code = _deployment(values, "geo-assets")
    code_server = (
        NAMESPACE,
        {"app.kubernetes.io/name": "dagster-user-deployments", "deployment": code["name"]},
        code["port"],
    )
    run_pod = _run_job(values, code)["spec"]["template"]["metadata"]["labels"]  # as dagster-k8s labels it
    webserver, read_only = (NAMESPACE, WEBSERVER, port), (NAMESPACE, READ_ONLY, port)

    assert _admits(policies, webserver, (AUTH, PROXY["editors"]))
    assert _admits(policies, read_only, (AUTH, PROXY["viewers"]))
    assert not _admits(policies, webserver, (AUTH, PROXY["viewers"]))  # viewers never reach the writable one
    for source in [
        (NAMESPACE, run_pod),
        (NAMESPACE, DAEMON),
        (NAMESPACE, {}),
        ("default", PROXY["editors"]),
        # a run whose dagster-k8s/config tag copies the proxy's labels onto its pod
        (NAMESPACE, {**run_pod, **PROXY["editors"]}),
    ]:
        assert not _admits(policies, webserver, source), source
        assert not _admits(policies, read_only, source), source
    # The map server, its own proxy only (its pods' labels and port as map-<cloud>.yaml gives them).
    map_deployment = next(
        d
        for d in yaml.safe_load_all(_render((ROOT / f"deploy/helm/map-{cloud}.yaml").read_text()))
        if d and d["kind"] == "Deployment"
    )
    pod = map_deployment["spec"]["template"]
    (map_port,) = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    map_server = (NAMESPACE, pod["metadata"]["labels"], map_port)
    map_proxy = {"app.kubernetes.io/name": "oauth2-proxy", "app.kubernetes.io/instance": "oauth2-proxy-map"}
    assert _admits(policies, map_server, (AUTH, map_proxy))
    for source in [(NAMESPACE, run_pod), (NAMESPACE, {**run_pod, **map_proxy}), (AUTH, PROXY["editors"])]:
        assert not _admits(policies, map_server, source), source
    # The code servers answer the system pods of their namespace, nobody outside it.
    for source in [(NAMESPACE, WEBSERVER), (NAMESPACE, READ_ONLY), (NAMESPACE, DAEMON)]:
        assert _admits(policies, code_server, source)
    assert not _admits(policies, code_server, ("default", DAEMON))
    assert not _admits(policies, code_server, (AUTH, PROXY["editors"]))
    # The proxies' upstreams are the services of those pods.
    for who, service in (("editors", "dagster-dagster-webserver"), ("viewers", "dagster-dagster-webserver-read-only")):
        config = yaml.safe_load((ROOT / f"deploy/helm/oauth2-proxy-{who}.yaml").read_text())["config"]["configFile"]
        assert f"http://{service}.{NAMESPACE}.svc.cluster.local:{port}/" in config
