"""End to end through the real command lines: geo-assets and dagster, in fresh processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def env(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return {**os.environ, "DAGSTER_HOME": str(home), "GEO_ASSETS_STORAGE_ROOT": (tmp_path / "storage").as_uri()}


def run(env, *args, ok=True):
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_region_add_and_materialise_through_dagster_cli(env, tmp_path, monkeypatch):
    run(
        env,
        BIN / "geo-assets",
        "region",
        "add",
        "e2e-field",
        "--bbox",
        "400000",
        "5120000",
        "401280",
        "5121280",
        "--crs",
        "EPSG:32631",
        "--labels",
        "synthetic",
    )
    listing = run(env, BIN / "geo-assets", "region", "list").stdout
    assert "e2e-field" in listing and "synth-holdout" in listing

    config = json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": 64}}}})
    run(
        env,
        BIN / "dagster",
        "asset",
        "materialize",
        "-m",
        "geo_assets.definitions",
        "--select",
        "imagery_tiles",
        "--partition",
        "2024-06-01|e2e-field",
        "--config-json",
        config,
    )
    manifest = (
        tmp_path
        / "storage/manifests/imagery_tiles/region=e2e-field/date=2024-06-01/synthetic-64px-blue-green-red-nir.json"
    )
    assert len(json.loads(manifest.read_text())["tiles"]) == 4

    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # dagster.yaml reads it
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("imagery_tiles"))
        assert event.dagster_event.partition == "2024-06-01|e2e-field"
        run_record = instance.get_run_by_id(event.run_id)
        assert run_record.tags["geo-assets/region"] == "e2e-field"


def test_region_remove_keeps_outputs_unless_asked(env, tmp_path, monkeypatch):
    run(
        env,
        BIN / "geo-assets",
        "region",
        "add",
        "e2e-field",
        "--bbox",
        "400000",
        "5120000",
        "401280",
        "5121280",
        "--crs",
        "EPSG:32631",
        "--labels",
        "synthetic",
    )
    config = json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": 64}}}})
    run(
        env,
        BIN / "dagster",
        "asset",
        "materialize",
        "-m",
        "geo_assets.definitions",
        "--select",
        "imagery_tiles",
        "--partition",
        "2024-06-01|e2e-field",
        "--config-json",
        config,
    )
    tiles = tmp_path / "storage/imagery/e2e-field"
    assert len(list(tiles.rglob("*.tif"))) == 8  # 4 tiles and their cloud masks

    # Its tiles and masks, their completion records and the manifest: every stored file naming the region.
    # (Not the store's own `.tmp-` files: the lock beside a released partition lease, which no listing shows.)
    stored = sum(
        1
        for p in (tmp_path / "storage").rglob("*")
        if p.is_file() and "e2e-field" in str(p.relative_to(tmp_path)) and not p.name.startswith(".tmp-")
    )
    proc = run(env, BIN / "geo-assets", "region", "remove", "e2e-field")
    assert f"kept its {stored} stored objects" in proc.stdout and "--delete-outputs" in proc.stdout
    assert len(list(tiles.rglob("*.tif"))) == 8  # 4 tiles and their cloud masks
    assert "e2e-field" not in run(env, BIN / "geo-assets", "region", "list").stdout
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])
    with dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance:
        assert not instance.has_dynamic_partition("regions", "e2e-field")

    run(
        env,
        BIN / "geo-assets",
        "region",
        "add",
        "e2e-field",
        "--bbox",
        "400000",
        "5120000",
        "401280",
        "5121280",
        "--crs",
        "EPSG:32631",
    )
    proc = run(env, BIN / "geo-assets", "region", "remove", "e2e-field", "--delete-outputs")
    assert f"deleted its {stored} stored objects" in proc.stdout
    assert not list(tiles.rglob("*.tif"))
    builtin = run(env, BIN / "geo-assets", "region", "remove", "synth-holdout", ok=False)
    assert builtin.returncode == 2 and "region 'synth-holdout' is built in and cannot be removed" in builtin.stderr


def test_model_commands_explain_what_is_missing(env):
    proc = run(env, BIN / "geo-assets", "model", "list", "landcover-unet", ok=False)
    assert proc.returncode == 2 and "model 'landcover-unet' has no trained versions" in proc.stderr
    proc = run(env, BIN / "geo-assets", "model", "promote", "landcover-unet", ok=False)
    assert proc.returncode == 2 and "name a VERSION to promote, or pass --auto" in proc.stderr


def test_train_refuses_what_cannot_be_launched_before_asking_any_webserver(env):
    """Bad input gets one line naming it, before any webserver is asked (none runs here)."""
    for args, message in [
        (["landcover-unet", "--regions", "synth-holdout", "--config", "{bad"], "--config is not JSON"),
        (["landcover-unet", "--regions", "synth-holdout", "--config", "[1]"], "--config must be a JSON object"),
        (["Bad_Model", "--regions", "synth-holdout"], "Bad_Model"),
        (["landcover-unet", "--regions", "no-such-region"], "no-such-region"),
    ]:
        proc = run(env, BIN / "geo-assets", "train", *args, "--url", "http://127.0.0.1:9/graphql", ok=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
        assert "no Dagster webserver answers" not in proc.stderr


def test_cli_refuses_bad_regions_clearly(env):
    for args, message in [
        (["Bad_Name", "--bbox", "0", "0", "10", "10", "--crs", "EPSG:32631"], "invalid region name 'Bad_Name'"),
        (["ok-name", "--bbox", "0", "0", "10", "10", "--crs", "EPSG:4326"], "is not projected"),
        (["ok-name", "--bbox", "10", "0", "0", "10", "--crs", "EPSG:32631"], "must be minx < maxx"),
        (
            ["ok-name", "--bbox", "-5e8", "0", "10", "10", "--crs", "EPSG:32631"],
            "reaches beyond 21,000 km",
        ),  # a number, not an option
        (
            ["synth-holdout", "--bbox", "0", "0", "10240", "10240", "--crs", "EPSG:32631", "--replace"],
            "region 'synth-holdout' is built in and cannot be redefined",
        ),
        (
            ["ok-name", "--bbox", "0", "0", "10", "10", "--crs", "EPSG:32631", "--source", "modis"],
            "unknown imagery source 'modis'",
        ),
    ]:
        proc = run(env, BIN / "geo-assets", "region", "add", *args, ok=False)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    listing = run(env, BIN / "geo-assets", "region", "list").stdout
    assert "ok-name" not in listing
    assert "440320 5.12e+06 450560 5.13024e+06" in next(
        line for line in listing.splitlines() if line.startswith("synth-holdout")
    )


def test_unregistered_partition_is_refused_by_dagster(env):
    proc = run(
        env,
        BIN / "dagster",
        "asset",
        "materialize",
        "-m",
        "geo_assets.definitions",
        "--select",
        "imagery_tiles",
        "--partition",
        "2024-06-01|../../etc",
        ok=False,
    )
    assert proc.returncode != 0


def test_definitions_validate(env):
    proc = run(env, BIN / "dagster", "definitions", "validate", "-w", "workspace.yaml")
    assert "Validation successful" in proc.stdout + proc.stderr


def test_a_date_after_the_last_partition_is_refused_in_the_step_before_any_write(env, tmp_path):
    """`dagster asset materialize` refuses such a key, but a job launched with the partition as a tag
    (`dagster job execute --tags`, GraphQL's launchRun) reaches the step: the step refuses it."""
    run(
        env,
        BIN / "geo-assets",
        "region",
        "add",
        "e2e-field",
        "--bbox",
        "400000",
        "5120000",
        "401280",
        "5121280",
        "--crs",
        "EPSG:32631",
        "--labels",
        "synthetic",
    )
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"ops": {"imagery_tiles": {"config": {"tile_size": 64}}}}))
    proc = run(
        env,
        BIN / "dagster",
        "job",
        "execute",
        "-m",
        "geo_assets.definitions",
        "-j",
        "imagery_job",
        "--tags",
        json.dumps({"dagster/partition": "2099-01-01|e2e-field"}),
        "--config",
        config,
        ok=False,
    )
    assert proc.returncode != 0
    assert "date(s) 2099-01-01 lie outside the date partitions (2015-06-23 to " in proc.stdout + proc.stderr
    assert not [p for p in (tmp_path / "storage").rglob("*") if "2099" in str(p)]


# Three writers adding the same 100 partitions at once, as `region add` and the daemon's region sensor do.
RACE = """
import sys, time
from dagster import DagsterInstance
from geo_assets.cli.commands import register
start = float(sys.argv[1])
with DagsterInstance.get() as instance:
    while time.time() < start:
        time.sleep(0.001)
    for i in range(100):
        register(instance, regions=[f"race-{i}"])
"""


def test_partitions_added_by_several_writers_at_once_are_added_once_without_error(env, monkeypatch):
    """CI met this: `region add` failed with a unique-key error when the daemon's region sensor added the new
    region's partition in the same instant (Dagster's add checks, then inserts). Writers in real processes, on the
    real SQLite instance; without the re-check, several of the 300 adds fail."""
    import time

    run(env, BIN / "dagster", "instance", "migrate")  # the instance's databases made before the race
    start = str(time.time() + 8)  # after every process has imported Dagster
    procs = [
        subprocess.Popen([sys.executable, "-c", RACE, start], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], "\n".join(e[-2000:] for e in errors)
    monkeypatch.setenv("DAGSTER_HOME", env["DAGSTER_HOME"])  # dagster.yaml places its databases by it
    with dg.DagsterInstance.get() as instance:
        keys = instance.get_dynamic_partitions("regions")
    assert sorted(keys) == sorted(f"race-{i}" for i in range(100))
