"""deploy/compose/, checked offline (tests/containers/test_compose_stack.py runs it): every service on
the host network, the services of the code location's image all on one image, the same the Helm values
name, and every variable the launcher copies into run containers given to the daemon."""

from __future__ import annotations

import string
from pathlib import Path

import yaml

from devtools.containers import APP_IMAGE

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yml").read_text())
INSTANCE = yaml.safe_load((ROOT / "deploy/compose/dagster.yaml").read_text())
APP_SERVICES = ("code-server", "webserver", "webserver-read-only", "daemon")


def test_every_service_is_on_the_host_network_and_runs_use_it_too():
    assert {name: s.get("network_mode") for name, s in COMPOSE["services"].items()} == dict.fromkeys(
        COMPOSE["services"], "host"
    )
    assert COMPOSE["services"]["postgres"]["build"]["network"] == "host"
    assert INSTANCE["run_launcher"]["config"]["network"] == "host"


def test_the_code_location_services_run_one_image_the_helm_values_name_too():
    images = {COMPOSE["services"][name]["image"] for name in APP_SERVICES}
    assert images == {"${GEO_ASSETS_IMAGE:-geo-assets:cpu}"} and APP_IMAGE == "geo-assets:cpu"
    assert (
        COMPOSE["services"]["code-server"]["environment"]["DAGSTER_CURRENT_IMAGE"]
        == "${GEO_ASSETS_IMAGE:-geo-assets:cpu}"
    )
    # The Helm values, filled in for this image (repository geo-assets, tag cpu), name it for every CPU part.
    repository, tag = APP_IMAGE.split(":")
    for cloud in ("gke", "eks"):
        text = (ROOT / f"deploy/helm/values-{cloud}.yaml").read_text()
        values = yaml.safe_load(string.Template(text).safe_substitute(IMAGE_REPOSITORY=repository, IMAGE_TAG=tag))
        cpu = next(d for d in values["dagster-user-deployments"]["deployments"] if d["name"] == "geo-assets")
        for part in (values["dagsterWebserver"], values["dagsterDaemon"], cpu):
            assert f"{part['image']['repository']}:{part['image']['tag']}" == APP_IMAGE, (cloud, part["image"])


def test_the_daemon_has_every_variable_the_launcher_copies_into_run_containers():
    environment = COMPOSE["x-environment"]
    for name in INSTANCE["run_launcher"]["config"]["env_vars"]:
        assert name in environment, name  # Dagster fails the launch on a variable that is not set
    for name in ("daemon", "webserver"):
        service = COMPOSE["services"][name]
        assert service["environment"] == environment
        assert "/var/run/docker.sock:/var/run/docker.sock" in service["volumes"] and service["group_add"]
    assert not any("docker.sock" in v for v in COMPOSE["services"]["webserver-read-only"]["volumes"])


def test_every_server_listens_on_loopback_only_and_runs_skip_the_code_servers_health_check():
    """Whoever reaches the webserver, the code server or the database can launch runs or read
    secrets, the webserver and daemon control the engine, and the map server reads the bucket with the
    stack's keys: on the host network each must listen on 127.0.0.1, never on every address
    (tests/containers/test_compose_stack.py checks the sockets of the running stack)."""
    services = COMPOSE["services"]
    for name in ("code-server", "webserver", "webserver-read-only"):
        assert " -h 127.0.0.1 " in services[name]["command"][-1], (name, services[name]["command"])
    # The map server reads the bucket with the stack's keys.
    assert " --host 127.0.0.1 " in services["map"]["command"][-1], services["map"]["command"]
    entrypoint = (ROOT / "deploy/compose/postgres/entrypoint.sh").read_text()
    assert "listen_addresses=127.0.0.1 " in entrypoint and "listen_addresses='*'" not in entrypoint
    # The image's HEALTHCHECK asks the code server; the other services and each run's container
    # run something else, so they carry none (it would call them unhealthy, every 30 s, at a cost).
    assert all(
        services[name]["healthcheck"] == {"disable": True} for name in ("webserver", "webserver-read-only", "daemon")
    )
    assert INSTANCE["run_launcher"]["config"]["container_kwargs"]["healthcheck"] == {"test": ["NONE"]}
