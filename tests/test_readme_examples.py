"""README's examples, run against the state `make demo` leaves (its quick settings), on a real
`dagster dev`: every command block of README taken by its fence (those that need a cloud or are not
examples listed with the reason), and what the launch examples must never do to that state. An
acquisition's variants (bands, tile size, source) live side by side, a prediction's margin is part of
its identity, and a run whose steps cannot agree is refused before any step writes."""

import json
import os
import re
import subprocess
import time
from contextlib import contextmanager

import dagster as dg
import pytest
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.scheduler.instigation import InstigatorStatus

from devtools import docs
from devtools.dagster_dev import BIN, LAUNCH, REPO, ROOT, dagster_dev
from devtools.dagster_dev import graphql as _gql
from devtools.dagster_dev import launch as _launch
from devtools.dagster_dev import wait as _wait
from geo_assets.cli.graphql import DEFAULT_URL
from geo_assets.geo.store import Store
from geo_assets.ml import registry
from resources.gate import gate_from_env

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the quick demo trains two models

README = docs.text(
    docs.user_pages()
)  # README.md and docs/, in reading order: their examples (deploy/README.md's run in containers)
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
    proc = subprocess.run(
        [BIN / "geo-assets", "demo", "--quick"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
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
    proc = subprocess.run(
        ["bash", "-c", block.replace("http://127.0.0.1:3000/graphql", url)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
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
    (predicted,) = [
        k
        for k in store.list("manifests/predictions/landcover-unet")
        if "region=synth-holdout/date=2024-06-01/" in k
        and store.read_json(k)["imagery"] == f"{FOLDER}/{SIX}.json"
        and k.endswith("/margin-32px.json")
    ]
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
        run_id = _launch(
            url, "prediction_job", PARTITION, {"predictions": {"config": {"model": "landcover-unet", "margin": margin}}}
        )
        assert _wait(url, run_id, timeout=600)["status"] == "SUCCESS", _failure(home, run_id)
    stored = {
        k.rsplit("/", 1)[1]: store.read_json(k)
        for k in store.list("manifests/predictions/landcover-unet")
        if f"/region=synth-holdout/date=2024-06-01/{SIX}/" in k
    }
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
        "executionMetadata": {
            "tags": [
                {"key": "dagster/partition", "value": partition},
                {"key": "dagster/partition/date", "value": date},
                {"key": "dagster/partition/region", "value": region},
            ]
        },
    }
    launched = _gql(url, LAUNCH, {"params": params})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _cli_example(command: str) -> list[str]:
    """The first line of the launching guide's bash block that starts with `.venv/bin/geo-assets COMMAND`, as
    written (the guide of launches and backfills on the demo's model; other pages launch models of their own)."""
    blocks = re.findall(r"```bash\n(.*?)```", docs.text([docs.ROOT / "docs/guide/launching.md"]), re.S)
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
        proc = subprocess.run(
            [BIN / "geo-assets", *argv[1:], "--url", url],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert store.read_bytes(f"{FOLDER}/{SIX}.json") == six
    for date in ("2024-06-01", "2024-06-02", "2024-06-03"):
        assert any(
            f"region=synth-holdout/date={date}/{SIX}/margin-32px.json" in k
            for k in store.list("manifests/predictions/landcover-unet")
        ), date
    assert store.read_json(evaluation_set) == registered


# README's command blocks this test does not run, by the start of their first line, and why. Every other
# bash or sh block of README runs in test_every_readme_command_block_runs_on_the_demos_state.
NOT_RUN = {
    "make demo": "the setup itself: the fixture runs `geo-assets demo --quick`, what make demo runs",
    "make dev ": "starts the UI for a person; the fixture serves the same instance with the same `dagster dev`",
    ".venv/bin/python -m pytest -p no:logging -m soak": "the soak test and a benchmark of sensor ticks, not examples on the demo's state",
    "GEO_ASSETS_COMPUTE=dask make dev": "starts the UI on a Dask cluster, the last line on a Kubernetes cluster (a cloud)",
    ".venv/bin/python -m pytest tests/ui": "a test suite (and Chromium's install)",
    ".venv/bin/python -m pytest tests/PATH": "how to run one test: PATH and NAME are placeholders",
    ".venv/bin/python -m bench.": "benchmarks (minutes; they write BENCHMARKS.md)",
}
# Blocks whose lines are alternatives: each line after the first runs after README's `region add` line again.
ALTERNATIVES = ["geo-assets region remove my-farm"]
EXAMPLE_VERSION = "3f2a9c1d0b7e"  # README's placeholder for a version id: the demo's serving version runs instead


def _command_blocks() -> list[str]:
    return re.findall(r"```(?:bash|sh)\n(.*?)```", README, re.S)


def _as_run(block: str, url: str, home, version: str) -> str:
    """A README block with only what ties it to a developer's checkout swapped: the virtual environment's
    folder, the Dagster home, the webserver's address (README's is make dev's port 3000) and the example
    version id."""
    block = (
        block.replace(".venv/bin/", f"{BIN}/")
        .replace("$PWD/.dagster_home", str(home))
        .replace(DEFAULT_URL, url)
        .replace(EXAMPLE_VERSION, version)
    )
    lines = []
    for line in block.replace("\\\n", " ").splitlines():  # continuation lines joined
        command, hash_, comment = line.partition(" #")
        if re.search(r"geo-assets (launch|backfill) ", command) and "--url" not in command:
            command += f" --url {url}"  # these default to make dev's address
        lines.append(command + hash_ + comment)
    return "\n".join(lines) + "\n"


def _wait_until_idle(home, timeout: float = 1800) -> None:
    """Until no run is queued or running and no backfill is being requested: what a block launched has ended."""
    busy = [
        dg.DagsterRunStatus.QUEUED,
        dg.DagsterRunStatus.NOT_STARTED,
        dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED,
        dg.DagsterRunStatus.CANCELING,
    ]
    deadline = time.monotonic() + timeout
    with _instance(home) as instance:
        while time.monotonic() < deadline:
            backfills = instance.get_backfills(status=BulkActionStatus.REQUESTED)
            if not backfills and not instance.get_runs(filters=dg.RunsFilter(statuses=busy)):
                return
            time.sleep(2)
    raise TimeoutError(f"runs or backfills still going after {timeout:.0f} s")


@pytest.mark.timeout(3600)  # a 7-day backfill and a 7-day range run among them
def test_every_readme_command_block_runs_on_the_demos_state(demo):
    """Every bash/sh block of README that works offline, extracted by its fence (a README edit is what
    runs), in README's order on the state `make demo` leaves: each command exits 0, and every run and
    backfill it starts succeeds. Runs last in this module: it changes the demo's state as a user would."""
    url, store, home = demo
    blocks = _command_blocks()
    for key in NOT_RUN:  # the list names blocks README still has
        assert any(b.startswith(key) for b in blocks), f"README has no block starting with {key!r}"
    with _instance(home) as instance:
        before_runs = {r.run_id for r in instance.get_runs()}
        before_backfills = {b.backfill_id for b in instance.get_backfills()}
    version = registry.serving_state(store, "landcover-unet", gate_from_env().min_miou)["serving"]
    assert version, "the demo left no serving version of landcover-unet"
    env = {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": store.root}
    (add,) = [
        line for b in blocks for line in b.splitlines() if line.startswith(".venv/bin/geo-assets region add my-farm ")
    ]
    ran = []
    for block in blocks:
        if block.startswith(tuple(NOT_RUN)):
            continue
        if any(a in block.splitlines()[0] for a in ALTERNATIVES):  # the region exists from the block before
            first, *others = block.splitlines()
            parts = [first + "\n", *(f"{add}\n{line}\n" for line in others)]
        else:
            parts = [block]
        for part in parts:
            script = _as_run(part, url, home, version)
            proc = subprocess.run(
                ["bash", "-e", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
            )
            assert proc.returncode == 0, f"README block failed:\n{script}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            _wait_until_idle(home)
            ran.append(block.splitlines()[0])
    assert len(ran) >= 12, ran  # the blocks above: model, map, regions, sensors, materialize, launch, backfill, curl

    # The sensors and the schedule the blocks started are running; stopped again for whoever comes next.
    with _instance(home) as instance:
        states = {state.name: state.status for state in instance.all_instigator_state()}
    for kind, name in (
        ("sensor", "scene_arrivals"),
        ("sensor", "predictions_follow_serving_model"),
        ("schedule", "monthly_predictions"),
    ):
        assert states.get(name) == InstigatorStatus.RUNNING, (name, states.get(name))
        subprocess.run(
            [BIN / "dagster", kind, "stop", name, "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=300,
        )
    _wait_until_idle(home)
    with _instance(home) as instance:
        runs = [r for r in instance.get_runs() if r.run_id not in before_runs]
        failed = {r.run_id: _failure(home, r.run_id) for r in runs if r.status != dg.DagsterRunStatus.SUCCESS}
        assert runs and not failed, failed
        backfills = [b for b in instance.get_backfills() if b.backfill_id not in before_backfills]
        assert len(backfills) >= 3 and all(b.status == BulkActionStatus.COMPLETED_SUCCESS for b in backfills), [
            (b.backfill_id, b.status) for b in backfills
        ]
