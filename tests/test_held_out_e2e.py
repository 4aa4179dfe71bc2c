"""Held out on the ground the model read, through runs launched with `dagster asset materialize`.

Two regions whose boxes only touch (the Landsat sample split at x = 740000 m) share the middle column
of 256 px tiles: 5 of each one's 10 tiles, identical pixels and labels. A model trained on one may not
be judged on the other; a region apart (another UTM zone) may judge it."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
from local_world import local_world

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.cli.commands import register
from geo_assets.geo.acquisitions import pick_imagery
from geo_assets.geo.regions import Region
from geo_assets.partitions import region_date_key

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
RGB = ["blue", "green", "red"]
LANDSAT_DATE, SYNTHETIC_DATE = "2020-05-18", "2024-06-01"
WEST = Region(
    "ls-west", (731985.0, -2816025.0, 740000.0, -2784975.0), "EPSG:32621", "sample", "polygons", (LANDSAT_DATE,)
)
EAST = Region(
    "ls-east", (740000.0, -2816025.0, 748035.0, -2784975.0), "EPSG:32621", "sample", "polygons", (LANDSAT_DATE,)
)
APART = Region(
    "far-field", (400000.0, 5120000.0, 401280.0, 5121280.0), "EPSG:32631", "synthetic", "synthetic", (SYNTHETIC_DATE,)
)
TILE_M = 256 * 30.0  # the default tile: 256 px of 30 m
TRAIN = {
    "architecture": "fcn",
    "epochs": 1,
    "chips_per_epoch": 8,
    "chip_size": 64,
    "batch_size": 8,
    "hyperparameters": {"hidden_channels": 8},
}


@pytest.fixture
def world(tmp_path, monkeypatch):
    """A DAGSTER_HOME and a store holding RGB imagery and labels of the three regions."""
    home, store, resources = local_world(tmp_path, monkeypatch, [WEST, EAST, APART])
    with dg.DagsterInstance.from_config(str(home)) as instance:
        register(instance, regions=[WEST.name, EAST.name, APART.name], models=["ls-model"])
        for region, date, tile_size in (
            (WEST, LANDSAT_DATE, 256),
            (EAST, LANDSAT_DATE, 256),
            (APART, SYNTHETIC_DATE, 64),
        ):
            tiles = {"tile_size": tile_size}
            assert dg.materialize(
                [imagery_tiles],
                partition_key=region_date_key(region.name, date),
                instance=instance,
                resources=resources,
                run_config={"ops": {"imagery_tiles": {"config": {**tiles, "bands": RGB}}}},
            ).success
            assert dg.materialize(
                [labels],
                partition_key=region.name,
                instance=instance,
                resources=resources,
                run_config={"ops": {"labels": {"config": tiles}}},
            ).success
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "GEO_ASSETS_STORAGE_ROOT": store.root,
        "GEO_ASSETS_MIN_MIOU": "0",
    }  # the bar is not the point here: the ground is
    return env, store


def _materialize(env, select: str, ops: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            BIN / "dagster",
            "asset",
            "materialize",
            "-m",
            "geo_assets.definitions",
            "--select",
            select,
            "--partition",
            "ls-model",
            "--config-json",
            json.dumps({"ops": ops}),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _sets(train: Region, evaluate: Region, date: str) -> dict:
    return {
        "training_set": {"config": {"regions": [train.name], "dates": [LANDSAT_DATE]}},
        "evaluation_set": {"config": {"regions": [evaluate.name], "dates": [date]}},
    }


def test_abutting_regions_share_their_edge_tiles_and_are_refused_then_ground_apart_judges(world):
    env, store = world
    refused = _materialize(
        env,
        "training_set,evaluation_set,trained_model,model_evaluation",
        {**_sets(WEST, EAST, LANDSAT_DATE), "trained_model": {"config": TRAIN}},
    )
    out = refused.stdout + refused.stderr
    assert refused.returncode != 0, out[-3000:]
    # The run's own verdict (a step process's STEP_FAILURE line may be cut from a loaded machine's output).
    assert re.search(
        r"Steps failed: \['model_evaluation'\]|STEP_FAILURE - Execution of step \"model_evaluation\" failed", out
    ), out[-3000:]
    found = re.search(
        r"evaluation acquisition ls-east/2020-05-18 shares ([\d.]+) km² of ground with training "
        r"acquisition ls-west/2020-05-18: 5 of its 10 tiles overlap tiles the model was trained on "
        r"\(([^)]*)\); evaluate on held-out ground",
        out,
    )
    assert found, out[-3000:]
    # The middle column: 5 tiles of 7680 m, on the ellipsoid within 0.2 % of the map's area.
    assert float(found.group(1)) == pytest.approx(5 * TILE_M**2 / 1e6, rel=2e-3)
    middle = {t["key"] for t in pick_imagery(store, "ls-west", LANDSAT_DATE)[1]["tiles"]} & {
        t["key"] for t in pick_imagery(store, "ls-east", LANDSAT_DATE)[1]["tiles"]
    }
    assert set(found.group(2).split(", ")) == middle and len(middle) == 5
    versions = [k for k in store.list("models/ls-model") if k.endswith("/model.json")]
    assert len(versions) == 1 and not any("/evaluations/" in k for k in store.list("models/ls-model"))
    record = store.read_json(versions[0])
    assert [(i["region"], i["ground"]["crs"]) for i in record["training_set"]] == [("ls-west", "EPSG:32621")]

    # The same version judged on ground apart (another UTM zone, compared on the ellipsoid) is evaluated,
    # once that ground is made the model's registered evaluation set (the explicit act that changes it).
    registered = subprocess.run(
        [BIN / "geo-assets", "model", "evaluation-set", "ls-model", "--regions", APART.name, "--dates", SYNTHETIC_DATE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    judged = _materialize(env, "evaluation_set,model_evaluation", _sets(WEST, APART, SYNTHETIC_DATE))
    assert judged.returncode == 0, (judged.stdout + judged.stderr)[-3000:]
    evaluations = [store.read_json(k) for k in store.list("models/ls-model") if "/evaluations/" in k]
    assert [e["regions"] for e in evaluations] == [["far-field"]] and evaluations[0]["miou"] is not None
