"""ECS (deploy/ecs/): the task definitions of the webserver, the read-only webserver, the daemon, the
code location and the map server are accepted by an ECS API (moto's server, on 127.0.0.1), after botocore has
checked every field against the ECS API model; and they give the instance yaml every variable it
reads. Not run here: a cluster, Fargate, or a launched run task.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
import yaml
from moto.server import ThreadedMotoServer

from devtools.emulators import free_port

ROOT = Path(__file__).resolve().parents[2]
ECS = ROOT / "deploy/ecs"
TASKS = ["webserver.json", "webserver-read-only.json", "daemon.json", "code-location.json"]
VALUES = {
    "AWS_ACCOUNT_ID": "123456789012",
    "AWS_REGION": "eu-west-1",
    "BUCKET": "geo-assets-data",
    "IMAGE_REPOSITORY": "registry.invalid/geo-assets",
    "IMAGE_TAG": "0123abc",
    "RDS_ENDPOINT": "geo-assets.cluster.invalid",
    "PG_PASSWORD_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:geo-assets-pg",
    "MAP_HOST": "map.example.org",
}


def _render(name: str) -> dict:
    """The task definition with its ${PLACEHOLDERS} filled in, as envsubst does in the README."""
    text = (ECS / name).read_text()
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(VALUES), name
    return json.loads(string.Template(text).substitute(VALUES))


@pytest.fixture(scope="module")
def ecs():
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    try:
        yield boto3.client(
            "ecs",
            endpoint_url=f"http://127.0.0.1:{port}",
            region_name=VALUES["AWS_REGION"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    finally:
        server.stop()


@pytest.mark.parametrize("name", TASKS)
def test_task_definition_is_accepted(ecs, name):
    body = _render(name)
    registered = ecs.register_task_definition(**body)["taskDefinition"]
    assert registered["status"] == "ACTIVE" and registered["revision"] >= 1
    described = ecs.describe_task_definition(taskDefinition=body["family"])["taskDefinition"]
    (container,) = described["containerDefinitions"]
    assert container["image"] == "registry.invalid/geo-assets:0123abc"
    assert container["user"] == "10001"
    # The password is a Secrets Manager reference, never a plain variable.
    assert {"name": "DAGSTER_PG_PASSWORD", "valueFrom": VALUES["PG_PASSWORD_SECRET_ARN"]} in container["secrets"]
    assert "DAGSTER_PG_PASSWORD" not in {e["name"] for e in container["environment"]}


def test_an_invalid_task_definition_is_refused(ecs):
    body = _render("daemon.json")
    body["cpu"] = 1024  # the API takes a string
    with pytest.raises(botocore.exceptions.ParamValidationError):
        ecs.register_task_definition(**body)


def test_services_run_what_they_should():
    commands = {name: _render(name)["containerDefinitions"][0]["command"] for name in TASKS}
    assert commands["webserver-read-only.json"][-1] == "--read-only"
    assert "--read-only" not in commands["webserver.json"]
    assert commands["daemon.json"][:2] == ["dagster-daemon", "run"]
    assert commands["code-location.json"] == [
        "dagster",
        "code-server",
        "start",
        "-h",
        "0.0.0.0",
        "-p",
        "4000",
        "-m",
        "geo_assets.definitions",
    ]
    code_env = {e["name"]: e["value"] for e in _render("code-location.json")["containerDefinitions"][0]["environment"]}
    assert code_env["DAGSTER_CURRENT_IMAGE"] == "registry.invalid/geo-assets:0123abc"  # runs use the code's image


def test_daemon_and_webserver_give_the_instance_every_variable_it_reads():
    instance_text = (ECS / "dagster.yaml").read_text() + (ECS / "workspace.yaml").read_text()
    needed = set(re.findall(r"\{env: (\w+)\}", instance_text)) | set(re.findall(r"env: (\w+)\n", instance_text))
    needed |= set(yaml.safe_load((ECS / "dagster.yaml").read_text())["run_launcher"]["config"]["env_vars"])
    for name in ("daemon.json", "webserver.json", "webserver-read-only.json"):
        container = _render(name)["containerDefinitions"][0]
        given = {e["name"] for e in container["environment"]} | {s["name"] for s in container["secrets"]}
        assert needed <= given, (name, needed - given)
        assert {"name": "DAGSTER_HOME", "value": "/opt/dagster/instances/ecs"} in container["environment"]


def test_the_map_task_serves_the_store_read_only(ecs):
    """The map server on Fargate: the image's `geo-assets map-server` on its port, a task role of its own
    (the README's read-only one), no database, no secret, a read-only root file system."""
    body = _render("map.json")
    ecs.register_task_definition(**body)
    described = ecs.describe_task_definition(taskDefinition="geo-assets-map")["taskDefinition"]
    (container,) = described["containerDefinitions"]
    assert container["command"] == ["geo-assets", "map-server", "--host", "0.0.0.0", "--port", "3100"]
    assert [m["containerPort"] for m in container["portMappings"]] == [3100]
    assert container["image"] == "registry.invalid/geo-assets:0123abc" and container["user"] == "10001"
    assert described["taskRoleArn"] == "arn:aws:iam::123456789012:role/geo-assets-map"
    env = {e["name"]: e["value"] for e in container["environment"]}
    assert not container.get("secrets") and not any("PG" in name for name in env)
    web = {e["name"]: e["value"] for e in _render("webserver.json")["containerDefinitions"][0]["environment"]}
    assert env["GEO_ASSETS_PROFILE"] == "aws" and env["GEO_ASSETS_STORAGE_ROOT"] == web["GEO_ASSETS_STORAGE_ROOT"]
    assert container["readonlyRootFilesystem"] is True
    assert container["mountPoints"] == [{"sourceVolume": "tmp", "containerPath": "/tmp"}]  # GDAL's scratch


def test_the_dagster_ui_links_to_the_map_on_ecs(monkeypatch):
    """Every service, and every run (through the launcher's env_vars), writes map links to the host the
    map's load balancer rule serves, as a URL the code location accepts; the map's TileJSON names the same."""
    from geo_assets.map.links import MAP_URL_ENV, map_url

    for name in [*TASKS, "map.json"]:
        env = {e["name"]: e["value"] for e in _render(name)["containerDefinitions"][0]["environment"]}
        assert env[MAP_URL_ENV] == "https://map.example.org", name
    assert MAP_URL_ENV in yaml.safe_load((ECS / "dagster.yaml").read_text())["run_launcher"]["config"]["env_vars"]
    monkeypatch.setenv(MAP_URL_ENV, "https://map.example.org")
    assert map_url("synth-holdout", "2024-06-01") == "https://map.example.org/map?region=synth-holdout&date=2024-06-01"
    # The README's ECS steps register the map and say where users open it.
    ecs_steps = (ROOT / "deploy/README.md").read_text().split("## AWS without Kubernetes (ECS)", 1)[1].split("\n## ")[0]
    assert "`map.json`" in ecs_steps and "`https://MAP_HOST/`" in ecs_steps and "`geo-assets-map`" in ecs_steps
