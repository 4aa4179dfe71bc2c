"""No run can move the quality gate: a run that carries `resources: {gate: {config: ...}}` is refused
before it exists, whatever launches it (GraphQL as the launchpad does, `dagster job execute`,
`dagster asset materialize`), and the threshold stays the deployment's GEO_ASSETS_MIN_MIOU."""

import json
import subprocess

import dagster as dg
import pytest

from devtools.dagster_dev import BIN, LAUNCH, REPO, ROOT, graphql
from geo_assets.definitions import defs

OVERRIDE = {"resources": {"gate": {"config": {"min_miou": 0.0}}}}
RUN_IDS = """{ runsOrError { ... on Runs { results { runId } } } }"""
# (job, partition, asset selection): the two jobs, and model_evaluation alone as the UI materialises it.
LAUNCHES = [
    ("training_job", "landcover-unet", None),
    ("prediction_job", "2024-06-01|tiny-field", None),
    ("__ASSET_JOB", "landcover-unet", ["model_evaluation"]),
]


def _run_ids(url) -> set[str]:
    return {r["runId"] for r in graphql(url, RUN_IDS)["runsOrError"]["results"]}


@pytest.mark.parametrize("job", ["training_job", "prediction_job", "__ASSET_JOB"])
def test_run_config_cannot_name_a_threshold(job):
    with pytest.raises(dg.DagsterInvalidConfigError) as refused:
        dg.validate_run_config(defs.resolve_job_def(job), OVERRIDE)
    assert 'unexpected config entry "min_miou" at path root:resources:gate:config' in str(refused.value)


def test_the_gate_is_the_deployment_setting(monkeypatch):
    from resources.profiles import resource_defs

    monkeypatch.setenv("GEO_ASSETS_MIN_MIOU", "0.8")
    assert resource_defs()["gate"].min_miou == 0.8
    monkeypatch.setenv("GEO_ASSETS_MIN_MIOU", "1.5")
    with pytest.raises(ValueError, match="GEO_ASSETS_MIN_MIOU='1.5': must be a number from 0 to 1"):
        resource_defs()


@pytest.mark.parametrize("job, partition, assets", LAUNCHES)
def test_a_graphql_launch_that_moves_the_gate_is_refused(server, job, partition, assets):
    before = _run_ids(server)
    tags = [{"key": "dagster/partition", "value": partition}]
    if "|" in partition:
        date, region = partition.split("|")
        tags += [{"key": "dagster/partition/date", "value": date}, {"key": "dagster/partition/region", "value": region}]
    selector = {**REPO, "jobName": job, **({"assetSelection": [{"path": [a]} for a in assets]} if assets else {})}
    params = {"selector": selector, "runConfigData": OVERRIDE, "executionMetadata": {"tags": tags}}
    launched = graphql(server, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "RunConfigValidationInvalid", launched
    assert any('unexpected config entry "min_miou"' in e["message"] for e in launched["errors"]), launched
    assert _run_ids(server) == before  # refused before a run exists, so no step ran


@pytest.mark.parametrize(
    "command",
    [
        [
            "job",
            "execute",
            "-m",
            "geo_assets.definitions",
            "-j",
            "training_job",
            "--tags",
            '{"dagster/partition": "landcover-unet"}',
        ],
        [
            "job",
            "execute",
            "-m",
            "geo_assets.definitions",
            "-j",
            "prediction_job",
            "--tags",
            json.dumps(
                {
                    "dagster/partition": "2024-06-01|tiny-field",
                    "dagster/partition/date": "2024-06-01",
                    "dagster/partition/region": "tiny-field",
                }
            ),
        ],
        [
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            "model_evaluation",
            "--partition",
            "landcover-unet",
        ],
    ],
)
def test_a_cli_run_that_moves_the_gate_is_refused(world, server, tmp_path, command):
    config = tmp_path / "run_config.yaml"
    config.write_text(json.dumps(OVERRIDE))  # JSON is YAML; `dagster job execute` takes config files only
    before = _run_ids(server)
    proc = subprocess.run(
        [str(BIN / "dagster"), *command, "-c", str(config)],
        cwd=ROOT,
        env=world.env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert 'unexpected config entry "min_miou" at path root:resources:gate:config' in proc.stdout + proc.stderr
    assert _run_ids(server) == before
