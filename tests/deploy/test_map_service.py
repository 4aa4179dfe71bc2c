"""The map service of deploy/compose/, checked offline: the code location's image, the host network,
127.0.0.1 only, the store's settings and nothing more (no database password, no engine socket), and
links that point at it."""

from __future__ import annotations

from pathlib import Path

import yaml

from devtools import docs

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yml").read_text())
INSTANCE = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())


def test_map_service_reads_the_store_and_nothing_else():
    service = COMPOSE["services"]["map"]
    assert service["image"] == COMPOSE["services"]["code-server"]["image"] and service["network_mode"] == "host"
    assert "geo-assets map-server --host 127.0.0.1 " in service["command"][-1]
    assert not any(k.startswith("DAGSTER_PG") for k in service["environment"])
    assert "volumes" not in service and "group_add" not in service  # no instance, no engine socket
    assert service["environment"]["GEO_ASSETS_STORAGE_ROOT"] == COMPOSE["x-environment"]["GEO_ASSETS_STORAGE_ROOT"]
    # The map's own settings pass through; left empty, the server's defaults hold (no proxy trusted).
    for name in ("GEO_ASSETS_MAP_RATE", "GEO_ASSETS_MAP_TRUSTED_PROXIES", "GEO_ASSETS_MAP_BASEMAP_URL"):
        assert service["environment"][name] == f"${{{name}:-}}"


def test_map_service_holds_keys_of_its_own():
    """Its keys are the map's (MAP_AWS_*, read-only: tests/containers/test_map_compose.py has the S3 server
    refuse their writes), never the stack's, which write; without them it refuses to start."""
    env, stack = COMPOSE["services"]["map"]["environment"], COMPOSE["x-environment"]
    assert env["AWS_ACCESS_KEY_ID"] == "${MAP_AWS_ACCESS_KEY_ID:-}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "${MAP_AWS_SECRET_ACCESS_KEY:-}"
    assert not {stack["AWS_ACCESS_KEY_ID"], stack["AWS_SECRET_ACCESS_KEY"]} & set(env.values())
    assert "MAP_AWS_ACCESS_KEY_ID" in (ROOT / "deploy/README.md").read_text()


def test_links_in_every_run_point_at_the_map():
    assert COMPOSE["x-environment"]["GEO_ASSETS_MAP_URL"] == "${GEO_ASSETS_MAP_URL:-http://127.0.0.1:3100}"
    assert "GEO_ASSETS_MAP_URL" in INSTANCE["run_launcher"]["config"]["env_vars"]  # runs write the links


def test_the_wheel_carries_the_map_page(wheel):
    """The page's own files, from a clean checkout; Leaflet is not in git (fetched by `make map-page`),
    and package-data takes it in wherever it was fetched before the build."""
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"geo_assets/map/page/index.html", "geo_assets/map/page/map.js", "geo_assets/map/page/map.css"} <= names
    text = (ROOT / "pyproject.toml").read_text()
    assert '"map/page/leaflet/*", "map/page/leaflet/images/*"' in text


# -- Kubernetes (deploy/helm/map-*.yaml, oauth2-proxy-map.yaml), offline as tests/deploy/test_helm.py does

K8S = "1.33"
FILLED = {
    "PROJECT_ID": "my-project",
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "IMAGE_REPOSITORY": "registry.invalid/geo-assets",
    "IMAGE_TAG": "0123abc",
    "BUCKET": "geo-assets-data",
    "MAP_HOST": "map.example.org",
}


def _manifests(cloud: str) -> dict:
    import string

    text = string.Template((ROOT / f"deploy/helm/map-{cloud}.yaml").read_text()).substitute(FILLED)
    return {d["kind"]: d for d in yaml.safe_load_all(text)}


def test_kubernetes_map_is_valid_read_only_and_has_its_own_identity():
    import kubernetes_validate
    import pytest

    for cloud, (profile, annotation) in {
        "gke": ("gcp", "iam.gke.io/gcp-service-account"),
        "eks": ("aws", "eks.amazonaws.com/role-arn"),
    }.items():
        found = _manifests(cloud)
        for obj in found.values():
            kubernetes_validate.validate(obj, K8S, strict=True)
        pod = found["Deployment"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["command"][:2] == ["geo-assets", "map-server"]
        assert container["image"] == "registry.invalid/geo-assets:0123abc"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["GEO_ASSETS_PROFILE"] == profile and env["GEO_ASSETS_STORAGE_ROOT"].endswith(
            "geo-assets-data/geo-assets"
        )
        assert not any("PG" in name or "SECRET" in name for name in env) and "envFrom" not in container
        # Its rate limit is per signed-in user: every peer is its proxy (test_helm.py checks the NetworkPolicy).
        assert env["GEO_ASSETS_MAP_TRUSTED_PROXIES"] == "*"
        assert env["GEO_ASSETS_MAP_URL"] == "https://map.example.org"  # the host oauth2-proxy-map serves
        assert pod["serviceAccountName"] == "geo-assets-map" != "geo-assets"  # not the read-write account of the runs
        assert "geo-assets-map" in found["ServiceAccount"]["metadata"]["annotations"][annotation]
        assert found["Service"]["spec"]["type"] == "ClusterIP"
    broken = _manifests("gke")["Deployment"]
    broken["spec"]["template"]["spec"]["containers"][0]["ports"] = "3100"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S, strict=True)


def test_map_only_behind_oauth2_proxy():
    proxy = yaml.safe_load((ROOT / "deploy/helm/oauth2-proxy-map.yaml").read_text())
    config = proxy["config"]["configFile"]
    assert 'upstreams = [ "http://geo-assets-map.geo-assets.svc.cluster.local:80/" ]' in config
    assert "allowed_groups" in config and "cookie_secure = true" in config
    assert proxy["config"]["existingSecret"] == "oauth2-proxy-map" and proxy["ingress"]["tls"]


def test_readme_lists_every_map_setting():
    """The docs' settings table (under "Profiles and storage") has a row for each GEO_ASSETS_MAP_* the
    runtime, the compose stack and the Helm files read."""
    import re
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "geo_assets", "deploy"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    used = {
        m
        for f in files
        if (ROOT / f).is_file() and f.endswith((".py", ".yml", ".yaml"))
        for m in re.findall(r"GEO_ASSETS_MAP_[A-Z_]+[A-Z]", (ROOT / f).read_text())
    }
    assert {"GEO_ASSETS_MAP_URL", "GEO_ASSETS_MAP_RATE", "GEO_ASSETS_MAP_TRUSTED_PROXIES"} <= used
    table = docs.section("Profiles and storage")
    listed = set(re.findall(r"^\| `(GEO_ASSETS_MAP_[A-Z_]+)` \|", table, flags=re.M))
    assert used == listed, (sorted(used - listed), sorted(listed - used))
