"""The docs' launch examples, run as written against the state `make demo` leaves (its quick settings),
on a real `dagster dev`: and what they must never do to that state. An acquisition's variants (bands,
tile size, source) live side by side, a prediction's margin is part of its identity, and a run whose
steps cannot agree is refused before any step writes."""

import json
import os
import re
import subprocess
from contextlib import contextmanager

import dagster as dg
import pytest

from devtools import docs
from devtools.dagster_dev import BIN, LAUNCH, REPO, ROOT, dagster_dev
from devtools.dagster_dev import graphql as _gql
from devtools.dagster_dev import launch as _launch
from devtools.dagster_dev import wait as _wait
from geo_assets.geo.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the quick demo trains two models

README = docs.text()  # README.md and the pages under docs/, whose examples these are
PARTITION = "2024-06-01|synth-holdout"  # the demo's evaluation date of its held-out region
FOLDER = "manifests/imagery_tiles/region=synth-holdout/date=2024-06-01"
SIX = "synthetic-256px-blue-green-red-nir-swir1-swir2"  # the variant the demo cut: landcover-unet reads 6 bands
FOUR = "synthetic-256px-blue-green-red-nir"  # the source's default bands


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("readme")
    home = tmp / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp / "storage").as_uri()}
    proc = subprocess.run([BIN / "geo-assets", "demo", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    store = Store((tmp / "storage").as_uri())
    assert store.list(FOLDER) == [f"{FOLDER}/{SIX}.json"]
    with dagster_dev(env, tmp / "dev.log") as url:
        yield url, store, home


def _curl_examples(mutation: str) -> list[str]:
    """README's bash blocks that post `mutation` with curl, as written."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    found = [b for b in blocks if b.startswith("curl ") and f"mutation {mutation}" in b]
    assert found, f"README has no curl example of {mutation}"
    return found


def _run_curl(block: str, url: str, edit=None) -> dict:
    """Run a README curl block with bash (only the URL swapped for the test server's, and the request
    body edited by `edit` where a test varies it); its JSON answer."""
    if edit is not None:
        head, body, tail = re.match(r"(.*?<<'EOF'\n)(.*?)(\nEOF.*)", block, re.S).groups()
        block = head + json.dumps(edit(json.loads(body))) + tail
    proc = subprocess.run(["bash", "-c", block.replace("http://127.0.0.1:3000/graphql", url)],
                          capture_output=True, text=True, timeout=120, check=True)
    return json.loads(proc.stdout)


@contextmanager
def _instance(home):
    """The demo's instance (its dagster.yaml reads DAGSTER_HOME)."""
    before = os.environ["DAGSTER_HOME"]
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            yield instance
    finally:
        os.environ["DAGSTER_HOME"] = before


def _failure(home, run_id: str) -> str:
    """The user's error message behind a failed run's step."""
    with _instance(home) as instance:
        for record in instance.all_logs(run_id):
            event = record.dagster_event
            if event is not None and event.is_step_failure:
                error = event.event_specific_data.error
                while error.cause is not None:
                    error = error.cause
                return error.message
    return ""


def _with_imagery_bands(bands):
    def edit(body):
        body["variables"]["params"]["runConfigData"]["ops"]["imagery_tiles"]["config"]["bands"] = bands
        return body

    return edit


def test_readme_curl_launch_keeps_the_demo_imagery_and_predicts_with_the_models_bands(demo):
    url, store, home = demo
    (block,) = _curl_examples("Launch")
    before = store.read_bytes(f"{FOLDER}/{SIX}.json")

    # As written: imagery_tiles names no bands, predictions the 6-band landcover-unet. The imagery step
    # cuts the bands the run's model reads, so the run succeeds and rewrites the same variant identically.
    answer = _run_curl(block, url)["data"]["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer
    run_id = answer["run"]["runId"]
    assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
    assert store.list(FOLDER) == [f"{FOLDER}/{SIX}.json"]
    assert store.read_bytes(f"{FOLDER}/{SIX}.json") == before
    (predicted,) = [k for k in store.list("manifests/predictions/landcover-unet") if "region=synth-holdout/date=2024-06-01/" in k
                    and store.read_json(k)["imagery"] == f"{FOLDER}/{SIX}.json" and k.endswith("/margin-32px.json")]
    assert f"/{SIX}/margin-32px.json" in predicted


def test_a_run_whose_imagery_bands_the_model_cannot_read_is_refused_before_any_write(demo):
    url, store, home = demo
    (block,) = _curl_examples("Launch")
    before = {k: store.read_bytes(k) for k in store.list(FOLDER)}
    tiles_before = store.list("imagery/synth-holdout/2024-06-01")

    # The README's launch with the source's default 4 bands spelled out: landcover-unet reads 6.
    answer = _run_curl(block, url, _with_imagery_bands(["blue", "green", "red", "nir"]))["data"]["launchRun"]
    assert answer["__typename"] == "LaunchRunSuccess", answer  # Dagster's config schema cannot see it
    run_id = answer["run"]["runId"]
    assert _wait(url, run_id, timeout=600)["status"] == "FAILURE"
    message = _failure(home, run_id)
    assert "imagery_tiles config bands [blue, green, red, nir] lack swir1, swir2" in message, message
    assert "predictions model landcover-unet" in message, message
    assert {k: store.read_bytes(k) for k in store.list(FOLDER)} == before  # no manifest written or replaced
    assert store.list("imagery/synth-holdout/2024-06-01") == tiles_before  # and no tile


def test_an_acquisitions_variants_live_side_by_side(demo):
    url, store, home = demo
    six = store.read_bytes(f"{FOLDER}/{SIX}.json")

    # imagery_tiles alone with the launchpad's defaults: the source's 4 bands, beside the demo's 6.
    run_id = _launch(url, "imagery_job", PARTITION, {})
    assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
    assert store.list(FOLDER) == sorted([f"{FOLDER}/{SIX}.json", f"{FOLDER}/{FOUR}.json"])
    assert store.read_bytes(f"{FOLDER}/{SIX}.json") == six
    assert store.read_json(f"{FOLDER}/{FOUR}.json")["bands"] == ["blue", "green", "red", "nir"]

    # Predicting afterwards picks the variant the model reads.
    run_id = _launch(url, "prediction_job", PARTITION, {"predictions": {"config": {"model": "landcover-unet"}}})
    assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
    with _instance(home) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("predictions"))
        assert event.run_id == run_id and event.asset_materialization.metadata["variant"].value == SIX


def test_predictions_of_each_margin_keep_their_own_manifest_and_report(demo):
    url, store, home = demo
    for margin in (0, 32):
        run_id = _launch(url, "prediction_job", PARTITION, {"predictions": {"config": {"model": "landcover-unet", "margin": margin}}})
        assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
    stored = {k.rsplit("/", 1)[1]: store.read_json(k) for k in store.list("manifests/predictions/landcover-unet")
              if f"/region=synth-holdout/date=2024-06-01/{SIX}/" in k}
    assert {"margin-0px.json", "margin-32px.json"} <= set(stored)
    assert stored["margin-0px.json"]["prefix"].endswith("/margin-0px")
    assert stored["margin-32px.json"]["prefix"].endswith("/margin-32px")

    # region_report alone, after the margin-32 run: it reports the margin asked for, not the last run's.
    for asked, expected in (({"margin": 0}, 0), ({}, 32)):  # unset: the default margin of the tile size
        run_id = _launch_assets(url, ["region_report"], PARTITION, {"region_report": {"config": asked}})
        assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
        with _instance(home) as instance:
            event = instance.get_latest_materialization_event(dg.AssetKey("region_report"))
        assert event.run_id == run_id
        report = store.read_json(event.asset_materialization.metadata["manifest"].value.split("/storage/", 1)[1])
        assert report["margin"] == expected and report["predictions"].endswith(f"/{SIX}/margin-{expected}px.json")


def _launch_assets(url: str, assets: list[str], partition: str, ops: dict) -> str:
    """A run of these assets alone (the implicit asset job), as the UI's launchpad makes it."""
    date, region = partition.split("|")
    params = {
        "selector": {**REPO, "jobName": "__ASSET_JOB", "assetSelection": [{"path": [a]} for a in assets]},
        "runConfigData": {"ops": ops},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": partition},
                                       {"key": "dagster/partition/date", "value": date},
                                       {"key": "dagster/partition/region", "value": region}]},
    }
    launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _cli_example(command: str) -> list[str]:
    """The first line of README's bash block that starts with `.venv/bin/geo-assets COMMAND`, as written."""
    blocks = re.findall(r"```bash\n(.*?)```", README, re.S)
    (block,) = [b for b in blocks if b.startswith(f".venv/bin/geo-assets {command} ")]
    return block.splitlines()[0].split()


def test_readme_launch_and_backfill_examples_leave_the_registered_evaluation_set_as_it_was(demo):
    """`geo-assets launch` and `geo-assets backfill` as README writes them (the URL aside: the test's server),
    on the demo's state: they succeed, predict with the model's bands, and whatever dates they add, the
    set landcover-unet is judged on stays what it was."""
    url, store, home = demo
    evaluation_set = "models/landcover-unet/evaluation_set.json"
    registered, six = store.read_json(evaluation_set), store.read_bytes(f"{FOLDER}/{SIX}.json")
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": store.root}
    for command in ("launch", "backfill"):
        argv = _cli_example(command)
        assert argv[0] == ".venv/bin/geo-assets" and "--wait" in argv
        proc = subprocess.run([BIN / "geo-assets", *argv[1:], "--url", url], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=1200)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert store.read_bytes(f"{FOLDER}/{SIX}.json") == six
    for date in ("2024-06-01", "2024-06-02", "2024-06-03"):
        assert any(f"region=synth-holdout/date={date}/{SIX}/margin-32px.json" in k
                   for k in store.list("manifests/predictions/landcover-unet")), date
    assert store.read_json(evaluation_set) == registered
