"""Limits: every size a user controls has a bound and one clear error, inf and nan are refused, enumerated
settings are refused before a run exists, and numeric ranges fail before the step does any work."""

import math

import dagster as dg
import pytest

from geo_assets.assets.imagery import imagery_tiles
from geo_assets.assets.labels import labels
from geo_assets.assets.models import trained_model, training_set
from geo_assets.cli.demo import failure_message
from geo_assets.config import ImageryConfig, PredictionConfig, TrainingConfig, TrainingSetConfig
from geo_assets.geo.grid import TileGrid
from geo_assets.geo.regions import Region, tile_count
from geo_assets.limits import max_backfill_partitions, max_tiles
from geo_assets.ml.models import check_hyperparameters
from geo_assets.partitions import region_date_key

INF, NAN = math.inf, math.nan


def _materialize(world, assets, key, ops, instance, **kw):
    return dg.materialize(
        assets,
        partition_key=key,
        resources=world.resources,
        instance=instance,
        run_config={"ops": ops},
        raise_on_error=False,
        **kw,
    )


@pytest.fixture
def instance(world):
    with dg.instance_for_test() as inst:
        inst.add_dynamic_partitions("regions", ["tiny-field", "tiny-holdout", "s2-sample"])
        inst.add_dynamic_partitions("models", ["landcover-unet"])
        yield inst


def _snapshot(world) -> dict[str, bytes]:
    return {
        k: world.store.read_bytes(k)
        for prefix in ("imagery", "labels", "models", "manifests")
        for k in world.store.list(prefix)
    }


@pytest.mark.parametrize(
    "asset, config, message",
    [
        (imagery_tiles, {"source": "sentinel-9"}, "not in enum type ImagerySource got sentinel-9"),
        (imagery_tiles, {"bands": ["blue", "coastal"]}, "not in enum type Band got coastal"),
        (labels, {"source": "osm"}, "not in enum type LabelSource got osm"),
        (trained_model, {"architecture": "resnet"}, "not in enum type Architecture got resnet"),
        (trained_model, {"device": "tpu"}, "not in enum type Device got tpu"),
    ],
)
def test_enumerated_settings_are_refused_before_a_run(world, instance, asset, config, message):
    key = (
        "landcover-unet"
        if asset is trained_model
        else "tiny-field"
        if asset is labels
        else region_date_key("tiny-field", "2024-06-01")
    )
    assets, selection = ([training_set, asset], ["trained_model"]) if asset is trained_model else ([asset], None)
    with pytest.raises(dg.DagsterInvalidConfigError, match=message):
        _materialize(world, assets, key, {asset.key.path[0]: {"config": config}}, instance, selection=selection)
    assert instance.get_runs() == []


@pytest.mark.parametrize(
    "config_type, fields, message",
    [
        (
            TrainingConfig,
            {"hyperparameters": {"depth": 99}},
            "hyperparameter depth of 'unet' must be a whole number from 1 to 6, got 99",
        ),
        (
            TrainingConfig,
            {"hyperparameters": {"base_channels": INF}},
            "hyperparameter base_channels of 'unet' must be a whole number from 1 to 256, got inf",
        ),
        (TrainingConfig, {"hyperparameters": {"depth": NAN}}, "must be a whole number from 1 to 6, got nan"),
        (
            TrainingConfig,
            {"hyperparameters": {"depth": 6, "base_channels": 128}},
            "parameters; the limit is 50,000,000",
        ),
        (
            TrainingConfig,
            {"architecture": "fcn", "hyperparameters": {"depth": 2}},
            "unknown hyperparameter(s) depth for architecture 'fcn'",
        ),
        (TrainingConfig, {"learning_rate": NAN}, "learning_rate must be in (0, 1), got nan"),
        (TrainingConfig, {"learning_rate": INF}, "learning_rate must be in (0, 1), got inf"),
        (TrainingConfig, {"epochs": 10**9}, "epochs must be from 1 to 1,000, got 1000000000"),
        (TrainingConfig, {"batch_size": 0}, "batch_size must be between 1 and 256, got 0"),
        (TrainingConfig, {"chip_size": 100}, "chip_size must be a multiple of 16 between 16 and 1024, got 100"),
        (TrainingConfig, {"chips_per_epoch": 10**7}, "chips_per_epoch must be from 1 to 100,000"),
        (TrainingConfig, {"seed": -1}, "seed must be from 0 to 4,294,967,295, got -1"),
        (
            TrainingConfig,
            {"batch_size": 256, "chip_size": 512},
            "batch_size x chip_size² is 67,108,864 pixels; the limit is 16,777,216",
        ),
        (
            TrainingConfig,
            {"hyperparameters": {"depth": 6}, "chip_size": 96},
            "chip_size 96 must be a multiple of 64 for a unet of depth 6",
        ),
        (ImageryConfig, {"max_cloud": NAN}, "max_cloud must be a percentage between 0 and 100, got nan"),
        (ImageryConfig, {"max_cloud": INF}, "max_cloud must be a percentage between 0 and 100, got inf"),
        (ImageryConfig, {"tile_size": 10**6}, "tile_size must be a multiple of 16 between 16 and 4096"),
        (PredictionConfig, {"batch_size": 10**6}, "batch_size must be between 1 and 256, got 1000000"),
        (TrainingSetConfig, {"regions": ["tiny-field"] * 257}, "regions must name at least one region and at most 256"),
        (TrainingSetConfig, {"dates": ["2024-06-01"] * 1001}, "dates must list at most 1,000 dates"),
    ],
)
def test_numeric_settings_have_bounds(config_type, fields, message):
    with pytest.raises(ValueError, match=None) as refused:
        config_type(**fields)
    assert message in str(refused.value)
    assert "\n" not in str(refused.value) and "Value error" not in str(refused.value)  # one line (ConfigError)


def test_depth_99_fails_the_step_before_any_training(world, instance):
    before = _snapshot(world)
    ops = {"trained_model": {"config": {"hyperparameters": {"depth": 99}}}}
    result = _materialize(
        world, [training_set, trained_model], "landcover-unet", ops, instance, selection=["trained_model"]
    )
    assert not result.success
    assert "hyperparameter depth of 'unet' must be a whole number from 1 to 6, got 99" in failure_message(result)
    logs = [e.message for e in result.all_events if e.event_type == dg.DagsterEventType.ENGINE_EVENT or e.is_step_start]
    assert not any("epoch" in (m or "") for m in logs)
    assert _snapshot(world) == before


def test_hyperparameters_are_checked_without_allocating():
    # 16 * 2**6 channels at the bottom of a depth-6 U-Net of base 64: half a billion weights, never built.
    with pytest.raises(ValueError, match=r"unet with \{'depth': 6, 'base_channels': 64\} has 497,694,790 parameters"):
        check_hyperparameters("unet", {"depth": 6, "base_channels": 64}, in_channels=4, num_classes=6)
    assert check_hyperparameters("unet", {"depth": 3.0, "base_channels": 16}) == {"depth": 3, "base_channels": 16}


@pytest.mark.parametrize(
    "bbox, message",
    [
        ((0, 0, 1e9, 1e9), "reaches beyond 21,000 km from the origin of EPSG:32631"),
        ((0, 0, INF, 10), "must be finite numbers (no inf or nan)"),
        ((-INF, 0, INF, 10), "must be finite numbers (no inf or nan)"),
        ((0, NAN, 10, 10), "must be finite numbers (no inf or nan)"),
    ],
)
def test_region_boxes_are_finite_and_on_the_earth(bbox, message):
    with pytest.raises(ValueError) as refused:
        Region("huge", bbox, "EPSG:32631")
    assert message in str(refused.value)


def test_region_add_refuses_a_huge_box_and_stores_nothing(world):
    before = _snapshot(world), world.store.read_bytes("catalogue/regions.json")
    proc = world.cli("region", "add", "huge", "--bbox", "0", "0", "1e9", "1e9", "--crs", "EPSG:32631")
    assert proc.returncode == 2 and "reaches beyond 21,000 km" in proc.stderr, proc.stderr
    proc = world.main(
        "region", "add", "wide", "--bbox", "400000", "5000000", "700000", "5300000", "--crs", "EPSG:32631"
    )
    assert proc.returncode == 2
    assert (
        "region 'wide' covers 13,924 tiles of 256 px at 10 m (300.0 x 300.0 km); the limit is 10,000 tiles per "
        "partition (GEO_ASSETS_MAX_TILES)"
    ) in proc.stderr, proc.stderr
    assert (_snapshot(world), world.store.read_bytes("catalogue/regions.json")) == before


def test_tile_limit_fails_imagery_and_labels_before_any_tile(world, instance, monkeypatch):
    monkeypatch.setenv("GEO_ASSETS_MAX_TILES", "3")  # tiny-field has 4 tiles of 64 px
    before = _snapshot(world)
    key = region_date_key("tiny-field", "2024-06-09")
    result = _materialize(world, [imagery_tiles], key, {"imagery_tiles": {"config": {"tile_size": 64}}}, instance)
    assert (
        "region 'tiny-field' covers 4 tiles of 64 px at 10 m (1.3 x 1.3 km); the limit is 3 tiles"
        in failure_message(result)
    )
    result = _materialize(world, [labels], "tiny-field", {"labels": {"config": {"tile_size": 64}}}, instance)
    assert "region 'tiny-field' covers 4 tiles of 64 px" in failure_message(result)
    assert _snapshot(world) == before


def test_a_sample_date_without_its_scene_fails_instead_of_succeeding(world, instance):
    result = _materialize(world, [imagery_tiles], region_date_key("s2-sample", "2020-01-02"), {}, instance)
    assert "source 'sample' of region 's2-sample' is one fixed scene of 2020-01-01" in failure_message(result)


@pytest.mark.parametrize("raw", ["inf", "nan", "0", "-5", "1e3", "2.5", "99999999999"])
def test_limit_settings_are_whole_and_bounded(monkeypatch, raw):
    for name, read in (
        ("GEO_ASSETS_MAX_TILES", max_tiles),
        ("GEO_ASSETS_MAX_BACKFILL_PARTITIONS", max_backfill_partitions),
    ):
        monkeypatch.setenv(name, raw)
        with pytest.raises(ValueError, match=f"{name}='{raw}': must be a whole number from 1 to 10,000,000"):
            read()


def test_tile_count_matches_the_grid():
    cases = [
        ((400000, 5120000, 401280, 5121280), 10, 64, (0, 0)),
        ((399999.5, -2816025, 748035, -2784975), 30, 256, (15, 15)),
        ((600000, 4698020, 603000, 4700020), 10, 16, (0, 0)),
        ((-1000.5, -20, 15, 7000), 20, 512, (5, 7)),
    ]
    for bbox, resolution, size, origin in cases:
        grid = TileGrid("EPSG:32631", resolution, size, origin)
        assert tile_count(grid, bbox) == len(grid.tiles(bbox))
