"""`geo-assets launch` against a real `dagster dev`: a configured materialisation over GraphQL, followed to
the end; refusals before any run exists; the launchpad's config enums refuse bad values before a run."""

import datetime
import re

import pytest

from devtools.dagster_dev import free_port, graphql, wait
from geo_assets.cli.demo import only_output
from geo_assets.cli.graphql import DagsterClient, LaunchError

TOMORROW = (
    datetime.datetime.now(datetime.UTC).date() + datetime.timedelta(days=1)
).isoformat()  # UTC, as the partitions
RUN_IDS = """{ runsOrError { ... on Runs { results { runId } } } }"""


def _run_ids(url) -> set[str]:
    return {r["runId"] for r in graphql(url, RUN_IDS)["runsOrError"]["results"]}


def test_launch_waits_and_reports_each_step(world, server):
    proc = world.cli(
        "launch",
        "--region",
        "tiny-field",
        "--date",
        "2024-06-02",
        "--model",
        "landcover-unet",
        "--wait",
        "--url",
        server,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_id = re.search(r"launched run (\S+) ", proc.stdout).group(1)
    assert f"{server.removesuffix('/graphql')}/runs/{run_id}" in proc.stdout  # the UI link
    starts = re.findall(r"STEP_START\s+(\w+)", proc.stdout)
    assert starts == ["imagery_tiles", "predictions", "region_report"]
    for asset in ("imagery_tiles", "predictions", "region_report"):
        assert f"materialised {asset}[2024-06-02|tiny-field]" in proc.stdout
    assert proc.stdout.strip().endswith(f"run {run_id}: SUCCESS")

    run = wait(server, run_id)
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags["dagster/partition"] == "2024-06-02|tiny-field"
    assert (tags["geo-assets/model"], tags["geo-assets/model-version"]) == ("landcover-unet", world.version)
    assert tags["geo-assets/trigger"] == "cli-launch" and tags["geo-assets/source"] == "synthetic"
    manifest = world.store.read_json(
        only_output(world.store, "predictions", "landcover-unet", world.version, "tiny-field", "2024-06-02")
    )
    assert manifest["version"] == world.version and len(manifest["tiles"]) == 1


def test_a_failing_run_exits_non_zero_with_its_error(world, server):
    # The STAC API of earth-search is down in this world: the imagery step fails, predictions never run.
    proc = world.cli(
        "launch",
        "--region",
        "tiny-holdout",
        "--date",
        "2024-06-02",
        "--source",
        "earth-search",
        "--wait",
        "--url",
        server,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert re.search(r"STEP_FAILURE\s+imagery_tiles", proc.stdout)
    assert "STEP_START             predictions" not in proc.stdout
    assert proc.stdout.strip().endswith(": FAILURE")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--region", "atlantis", "--date", "2024-06-02"], "unknown region 'atlantis'; known regions: "),
        (
            ["--region", "s2-sample", "--date", "2020-01-02"],
            "source 'sample' of region 's2-sample' is one fixed scene of 2020-01-01: 1 of 1 date(s) have no imagery (2020-01-02)",
        ),
        (
            ["--region", "landsat-sample", "--date", "2020-05-18"],
            "reads bands blue, green, red, nir; source 'sample' of region 'landsat-sample' has blue, green, red",
        ),
        (
            ["--region", "tiny-field", "--date", "2024-06-02", "--model", "ghost-model"],
            "model 'ghost-model' has no trained versions",
        ),
        (
            ["--region", "tiny-field", "--date", "2024-06-02", "--source", "sentinel-9"],
            "unknown imagery source 'sentinel-9'",
        ),
        (
            ["--region", "tiny-field", "--date", "2014-01-01"],
            "date(s) 2014-01-01 lie outside the date partitions (2015-06-23 to ",
        ),
        (
            ["--region", "tiny-field", "--date", TOMORROW],
            f"date(s) {TOMORROW} lie outside the date partitions (2015-06-23 to ",
        ),
        (
            ["--region", "tiny-field", "--date", "2024-06-02", "--select", "imagery_tiles,labels"],
            "unknown asset(s) labels",
        ),
        (
            ["--region", "tiny-field", "--date", "2024-09-09", "--select", "predictions,region_report"],
            "no imagery_tiles for region 'tiny-field' on 2024-09-09: select imagery_tiles too",
        ),
        (
            ["--region", "tiny-field", "--date", "2024-06-02", "--version", "000000000000"],
            "model 'landcover-unet' has no version '000000000000'",
        ),
        (["--region", "tiny-field", "--date", "2024-06-02", "--model", "Bad_Name"], "invalid model name 'Bad_Name'"),
    ],
)
def test_a_launch_that_cannot_succeed_is_refused_before_any_run(world, server, args, message):
    before = _run_ids(server)
    # The first case in a fresh process, the others through the same code in this one.
    proc = (world.cli if args[1] == "atlantis" else world.main)("launch", *args, "--url", server)
    assert proc.returncode == 2 and proc.stdout == ""
    assert message in proc.stderr, proc.stderr
    assert _run_ids(server) == before


@pytest.mark.parametrize(
    "assets, ops, message",
    [
        (
            ["imagery_tiles"],
            {"imagery_tiles": {"config": {"source": "sentinel-9"}}},
            "not in enum type ImagerySource got sentinel-9",
        ),
        (
            ["imagery_tiles"],
            {"imagery_tiles": {"config": {"bands": ["red", "coastal"]}}},
            "not in enum type Band got coastal",
        ),
        (["predictions"], {"predictions": {"config": {"device": "tpu"}}}, "not in enum type Device got tpu"),
    ],
)
def test_the_launchpad_refuses_enumerated_settings_before_a_run(server, assets, ops, message):
    before = _run_ids(server)
    with pytest.raises(LaunchError, match="RunConfigValidationInvalid") as refused:
        DagsterClient(server).launch_run(assets, "2024-06-02|tiny-field", {"ops": ops}, {})
    assert message in str(refused.value)
    assert _run_ids(server) == before


def test_no_webserver_is_one_clear_error(world):
    url = f"http://127.0.0.1:{free_port()}/graphql"
    proc = world.main("launch", "--region", "tiny-field", "--date", "2024-06-02", "--url", url)
    assert proc.returncode == 2
    assert f"no Dagster webserver answers at {url}" in proc.stderr


def test_the_readme_curl_launch_works(world, server, readme_curl):
    answer = readme_curl(server, "Launching over GraphQL", {"synth-holdout": "tiny-field", "2024-06-01": "2024-08-01"})
    launched = answer["data"]["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", answer
    run = wait(server, launched["run"]["runId"])
    assert run["status"] == "SUCCESS"
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert (tags["dagster/partition"], tags["geo-assets/model"]) == ("2024-08-01|tiny-field", "landcover-unet")
    # Reports lie under their imagery variant and margin: one of each here, the default margin.
    (report,) = [
        k
        for k in world.store.list(f"reports/landcover-unet/{world.version}/tiny-field/2024-08-01")
        if k.endswith("/report.md")
    ]
    assert report.endswith("/margin-32px/report.md")
